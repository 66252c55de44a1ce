# Helpers shared by every rule file: validated config, the manifest's shards, paths.
import json
import re
import shlex
import sys

from evoke.config import validate_config
from evoke.features import EXTRACTORS
from evoke.features.cli import features_settings, validate_features_config
from evoke.manifest import assign_shards, read_manifest

# Validate once (defaults filled in); a bad key or value stops here with its name.
_validated = validate_config(config, source="config.yaml")
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


def shard_files(pattern):
    return expand(pattern, shard=sorted(SHARDS))


localrules:
    ingest_merge,
    frames_merge,
    features_merge,
    features,
    ingest,
    frames,
    all,
