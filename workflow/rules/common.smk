# Helpers shared by every rule file: validated config, the manifest's shards, paths.
import json
import os
import re
import shlex
import sys

from pathlib import Path

from evoke.config import read_config_file, validate_layers
from evoke.features import EXTRACTORS
from evoke.features.cli import features_settings, validate_features_config
from evoke.manifest import assign_shards, read_manifest


def config_layers():
    """Where the config came from, lowest first: the Snakefile's configfile (config.yaml),
    each --configfile, then --config (untyped: evoke.config.coerce types it)."""
    cli_files = [Path(f).absolute() for f in workflow.config_settings.configfiles]
    layers = []
    if not workflow.config_settings.replace_workflow_config:
        for f in workflow.configfiles:
            if Path(f).absolute() not in cli_files:
                layers.append((str(f), read_config_file(f)))
    for f in workflow.config_settings.configfiles:
        shown = os.path.relpath(f) if not os.path.relpath(f).startswith("..") else str(f)
        layers.append((f"--configfile {shown}", read_config_file(f)))
    layers.append(("--config", workflow.config_settings.config or {}))
    return layers


# Validate once (defaults filled in); a bad key or value stops here, naming the key and
# the file or option it came from.
_validated = validate_layers(config_layers())
config.clear()
config.update(_validated)

validate_features_config(config["features"])

DATASET = config["dataset"]
EXTRACTOR_NAMES = list(config["features"]["extractors"])
D = f"results/{DATASET}"
MANIFEST = read_manifest(config["manifest"])
SHARDS = assign_shards(MANIFEST, config["shard_size"])
# Extractors whose shard jobs ask for a GPU (rule features_shard_gpu): those that run a
# torch model, unless features.device is cpu (the job would leave the GPU idle). The
# rest, and every extractor under device: cpu, run in rule features_shard.
GPU_EXTRACTORS = sorted(
    name
    for name, cls in EXTRACTORS.items()
    if cls.uses_torch and config["features"]["device"] != "cpu"
)
CPU_EXTRACTORS = sorted(set(EXTRACTORS) - set(GPU_EXTRACTORS))
# The package CLI run by the interpreter that runs Snakemake (the project's venv),
# so jobs find it on a cluster node without an activated environment.
EVOKE = f"{shlex.quote(sys.executable)} -m evoke"


wildcard_constraints:
    shard=r"s[0-9]{5}[0-9]*",
    extractor=r"[a-z0-9_]+",


def one_of(names):
    """A wildcard constraint matching exactly ``names`` (nothing when there are none)."""
    return "|".join(re.escape(n) for n in names) or "(?!)"


def settings(section):
    """A config section as one shell-quoted JSON argument (a params value: changing
    it reruns exactly the rules that take it)."""
    return shlex.quote(json.dumps(config[section], sort_keys=True))


def extractor_settings(wildcards):
    """One extractor's settings block (plus device and weights) as a JSON argument."""
    block = features_settings(config["features"], wildcards.extractor)
    return shlex.quote(json.dumps(block, sort_keys=True))


def shard_digest(wildcards):
    """Changes only when a row of this shard changes in the manifest."""
    return SHARDS[wildcards.shard].digest


def frames_file(path):
    """A shard's frames HDF5: temp() under frames.keep: false (removed once every
    extractor of the shard has read it)."""
    return path if config["frames"]["keep"] else temp(path)


def shard_files(pattern):
    return expand(pattern, shard=sorted(SHARDS))


def record_plan():
    """results/{dataset}/plan.json: what `evoke status` compares the results with."""
    from evoke.status import write_plan

    write_plan(
        D,
        manifest=config["manifest"],
        shard_size=config["shard_size"],
        shards={name: shard.videos["video_id"].to_list() for name, shard in SHARDS.items()},
        extractors=EXTRACTOR_NAMES,
        outputs={
            "labels": list(LABEL_TARGETS),
            "train": train_outputs(),
            "report": list(rules.report_build.output) if train_outputs() else [],
        },
    )


onstart:
    record_plan()


localrules:
    ingest_merge,
    frames_merge,
    features_merge,
    features,
    ingest,
    frames,
    all,
