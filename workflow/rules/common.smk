# Helpers shared by every rule file: validated config, the manifest's shards, paths.
import functools
import json
import os
import re
import shlex
import sys

from pathlib import Path

from evoke.config import read_config_file, validate_layers
from evoke.features import EXTRACTORS
from evoke.features.cli import features_settings, validate_features_config
from evoke.manifest import SHARD_MAP, assign_shards, read_manifest
from evoke.store import clear_stale_snakemake_locks, run_records, write_run_record
from evoke.weights import WeightsMissing
from snakemake.exceptions import WorkflowError


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
# slots from the append-only shard map beside the results: deleting a manifest row
# moves no other video to another shard (evoke.manifest)
SHARDS = assign_shards(MANIFEST, config["shard_size"], shard_map=f"{D}/{SHARD_MAP}")
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


@functools.cache
def weights_identities():
    """Every configured extractor's weights identity (name:sha256 of each file), computed
    once per run; one error listing every missing file, before any job starts (instead
    of one failure per extractor and shard)."""
    found, missing = {}, []
    for name in EXTRACTOR_NAMES:
        ext = EXTRACTORS[name](config["features"]["settings"].get(name),
                               weights_paths=config["features"]["weights"])
        try:
            found[name] = ext.weights_identity()
        except WeightsMissing as exc:
            missing.append(f"{name}: {exc}")
    if missing:
        raise WeightsMissing("pretrained weights missing, no features job started:\n  " + "\n  ".join(missing))
    return found


def extractor_settings(wildcards):
    """What changes one extractor's numbers, as a JSON argument (a params value): its
    settings without the runtime keys (batch_size), its weights' content and the torch
    thread count. Device, weights paths and batch sizes travel in FEATURES_RUNTIME."""
    name = wildcards.extractor
    block = features_settings(config["features"], name)
    runtime_keys = EXTRACTORS[name].RUNTIME_KEYS
    numbers = {
        "config": {k: v for k, v in block["config"].items() if k not in runtime_keys},
        "weights_identity": weights_identities()[name],
        "torch_threads": block["torch_threads"] if EXTRACTORS[name].uses_torch else None,
    }
    return shlex.quote(json.dumps(numbers, sort_keys=True))


# The features jobs' settings that change no number (device, where the weights lie,
# batch sizes): a global in the shell command, not a params value, so changing them
# reruns nothing (Snakemake's code trigger compares the command's template only).
FEATURES_RUNTIME = shlex.quote(json.dumps({
    "device": config["features"]["device"],
    "weights": config["features"]["weights"],
    "settings": {
        name: {k: v for k, v in block.items() if k in EXTRACTORS[name].RUNTIME_KEYS}
        for name, block in config["features"]["settings"].items() if name in EXTRACTORS
    },
}, sort_keys=True))


def shard_digest(wildcards):
    """Changes only when a row of this shard changes in the manifest."""
    return SHARDS[wildcards.shard].digest


def frames_file(path):
    """A shard's frames HDF5: temp() under frames.keep: false (removed once every
    extractor of the shard has read it)."""
    return path if config["frames"]["keep"] else temp(path)


def shard_files(pattern):
    return expand(pattern, shard=sorted(SHARDS))


def target_files(*groups):
    """A target rule's input: the files of ``groups`` (lists, other targets' inputs), each once.
    Every user-facing target lists its own stage's files and those of the stages it reads, not
    only the merged tables: after an interrupted --forcerun, the killed job's outputs are gone
    while the merges and later stages are still newer, and Snakemake rebuilds a missing file
    only when a target asks for it."""
    return list(dict.fromkeys(str(f) for group in groups for f in group))


# Runs on this results folder: onstart records the Snakemake process (host, PID) in
# {D}/.runs/, onsuccess/onerror remove it. A record whose process died on this host is a
# killed run: its Snakemake locks are removed here, while parsing (what --unlock does), so
# running the same command again works. A run that still holds the folder is named here;
# Snakemake's own lock then refuses this run (a dry run only warns), and onstart refuses it
# even with overlapping targets Snakemake would not lock (unless --nolock is given).
RUNS_DIR = f"{D}/.runs"
_RUN_RECORD = []


def _in_use_message(live):
    who = "; ".join(f"PID {r['pid']} on host {r['host']} since {r['since']}" for r in live)
    return (f"{D} is in use by another Snakemake run ({who}); wait for it to finish, or if it "
            f"is gone, delete {', '.join(r['file'] for r in live)}")


if workflow.is_main_process:
    _live, _dead = run_records(RUNS_DIR)
    if _dead and not _live:
        _n = clear_stale_snakemake_locks(".snakemake/locks", D)
        for _p in _dead:
            _p.unlink(missing_ok=True)
        if _n:
            print(f"evoke: removed the Snakemake locks of a killed run on {D} ({_n})", file=sys.stderr)
    if _live:
        print(f"evoke: {_in_use_message(_live)}", file=sys.stderr)


onstart:
    _live = run_records(RUNS_DIR)[0]
    _settings = getattr(workflow, "execution_settings", None)
    if _live and getattr(_settings, "lock", True):
        raise WorkflowError(_in_use_message(_live))
    _RUN_RECORD.append(write_run_record(RUNS_DIR))
    record_plan()  # defined below: results/{dataset}/plan.json for evoke status


def _drop_run_record():
    for p in _RUN_RECORD:
        p.unlink(missing_ok=True)


onsuccess:
    _drop_run_record()


onerror:
    _drop_run_record()


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


localrules:
    ingest_merge,
    frames_merge,
    features_merge,
    features,
    ingest,
    frames,
    all,
