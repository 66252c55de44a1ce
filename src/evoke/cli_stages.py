"""CLI commands of the ingest and frames stages (and the shared failures table)."""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import polars as pl

from evoke.cli import _settings as _json_object
from evoke.cli import add_settings_argument
from evoke.config import ConfigError, load_config, validate_config
from evoke.manifest import SHARD_MAP, assign_shards, read_manifest, shard_rows
from evoke.status import log_shard_summary
from evoke.store import dataset_dir, failures_from_status, merge_failures, shard_lock, write_parquet

log = logging.getLogger(__name__)


def _section(args, name: str) -> dict:
    """The stage's settings: --settings JSON (validated) or the config file's section."""
    if args.settings is not None:
        full = validate_config({"manifest": "-", name: args.settings}, source="--settings")
        return full[name]
    return load_config(args.config)[name]


def _common(args, need=("manifest", "dataset", "shard_size")) -> dict:
    """The dataset arguments a command needs: from the command line, else from the config file."""
    given = {"manifest": args.manifest, "dataset": args.dataset, "shard_size": args.shard_size}
    cfg = load_config(args.config) if any(given[k] is None for k in need) else {}
    for k in need:
        if given[k] is None and k not in cfg:
            raise ConfigError(f"{args.config}: no {k}: give --{k.replace('_', '-')}")
    return {k: given[k] if given[k] is not None else cfg[k] for k in need}


def _add_dataset_args(p):
    p.add_argument("--manifest", type=Path, help="manifest (default: the config's)")
    p.add_argument("--dataset", help="dataset name (default: the config's)")
    p.add_argument("--shard-size", type=int, help="videos per shard (default: the config's)")


def cmd_manifest_check(args) -> int:
    manifest = read_manifest(args.manifest)
    if args.shard_size is None:  # the config's shard_size (checked by the schema), else its default
        cfg = load_config(args.config) if args.config.is_file() else validate_config({"manifest": "-"})
        args.shard_size = cfg["shard_size"]
    shards = assign_shards(manifest, args.shard_size)
    splits = manifest.group_by("split").len().sort("split")
    print(f"{args.manifest}: {manifest.height} videos, {len(shards)} shards of {args.shard_size}")
    for r in splits.iter_rows():
        print(f"  split {r[0]}: {r[1]}")
    return 0


def cmd_ingest_shard(args) -> int:
    from evoke.ingest import ingest_shard

    started = time.monotonic()
    c = _common(args)
    rows = shard_rows(read_manifest(Path(c["manifest"])), c["shard_size"], args.shard,
                      shard_map=dataset_dir(c["dataset"]) / SHARD_MAP)
    if args.download_settings is not None and args.settings is not None:
        args.settings = {**args.download_settings, **args.settings}
    out = Path(args.out)
    with shard_lock(out.with_name(f".{out.name}.lock"), f"ingest {args.shard} ({out})"):  # one copy at a time
        status = ingest_shard(rows, dataset_dir(c["dataset"]), _section(args, "ingest"), args.shard)
        write_parquet(status, out)
    failed = status.filter(pl.col("status") == "failed").height
    log.info("ingest %s: %d ok, %d failed -> %s", args.shard, status.height - failed, failed, args.out)
    log_shard_summary("ingest", args.shard, status, started)
    return 0


def _merge(inputs: list[Path], stage: str, out: Path, ddir: Path) -> pl.DataFrame:
    frames = [pl.read_parquet(p) for p in inputs]
    merged = pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()
    write_parquet(merged, out)
    write_parquet(failures_from_status(merged, stage), ddir / stage / "failures.parquet")
    merge_failures(ddir)
    return merged


def cmd_stage_merge(args) -> int:
    ddir = dataset_dir(args.dataset)
    merged = _merge(args.inputs, args.stage, args.out, ddir)
    n_failed = merged.filter(pl.col("status") == "failed").height if merged.height else 0
    log.info("%s: %d videos, %d failed -> %s, %s", args.stage, merged.height, n_failed, args.out,
             ddir / "failures.parquet")
    return 0


def cmd_frames_shard(args) -> int:
    from evoke.frames import frames_shard

    started = time.monotonic()
    c = _common(args, need=("dataset",))
    probe_rows = pl.read_parquet(args.probe)
    # the status table is written by the stage, before it removes the per-video parts
    status = frames_shard(probe_rows, dataset_dir(c["dataset"]), _section(args, "frames"), args.shard, args.out,
                 status_out=args.status, workers=args.threads)
    log_shard_summary("frames", args.shard, status, started)
    return 0


def cmd_frames_extract(args) -> int:
    from evoke.frames import write_video_frames

    settings = _section(args, "frames") if (args.settings or args.config.is_file()) else \
        validate_config({"manifest": "-"})["frames"]
    stats = write_video_frames(args.input, args.out, args.group or args.input.stem, settings, workers=args.threads)
    print(f"{args.out}: {stats['n_valid']}/{stats['n_frames']} frames of {stats['width']}x{stats['height']}")
    return 0


def cmd_failures_merge(args) -> int:
    out = merge_failures(dataset_dir(args.dataset))
    print(out)
    return 0


def _add_threads_argument(p) -> None:
    p.add_argument("--threads", type=int, default=None,
                   help="decoders run side by side on a video's independent parts (default: the CPUs this "
                   "process may use, at most 8; the workflow passes the rule's threads); the frames are the same")


def add_merge_parser(stage_sub, stage: str, text: str) -> None:
    """The ``merge`` subcommand every sharded stage has (ingest, frames, features)."""
    m = stage_sub.add_parser("merge", help=text)
    m.add_argument("inputs", nargs="*", type=Path, help="the shards' tables (.parquet)")
    m.add_argument("--out", type=Path, required=True, help="the merged table (.parquet)")
    m.add_argument("--dataset", required=True, help="dataset name (results/{dataset})")
    m.set_defaults(func=cmd_stage_merge, stage=stage)


def register(sub) -> None:
    p = sub.add_parser("manifest", help="check a manifest").add_subparsers(dest="sub", required=True)
    c = p.add_parser("check", help="validate a manifest and show its shards")
    c.add_argument("manifest", type=Path, help="CSV, TSV or Parquet: video_id, source, split, ...")
    c.add_argument("--shard-size", type=int,
                   help="videos per shard (default: the config file's shard_size, else the schema's 200)")
    c.add_argument("--config", type=Path, default=Path("config.yaml"),
                   help="config file for the shard size (default: config.yaml, when there is one)")
    c.set_defaults(func=cmd_manifest_check)

    ing = sub.add_parser("ingest", help="download, probe and strip audio").add_subparsers(dest="sub", required=True)
    s = ing.add_parser("shard", help="ingest the videos of one shard")
    s.add_argument("--shard", required=True, help="shard name, e.g. s00000")
    s.add_argument("--out", type=Path, required=True, help="shard probe table (.parquet)")
    _add_dataset_args(s)
    add_settings_argument(s, "ingest")
    s.add_argument("--download-settings", type=_json_object, default=None,
                   help="JSON object of download-only ingest settings (retries, rate_limit, cookies, ...), "
                   "merged under --settings; the workflow passes them apart so they rerun nothing")
    s.set_defaults(func=cmd_ingest_shard)
    add_merge_parser(ing, "ingest", "merge shard probe tables into probe.parquet and record failures")

    fr = sub.add_parser("frames", help="sample frames at a fixed rate").add_subparsers(dest="sub", required=True)
    s = fr.add_parser("shard", help="sample the frames of one shard into HDF5")
    s.add_argument("--shard", required=True, help="shard name, e.g. s00000")
    s.add_argument("--probe", type=Path, required=True, help="the shard's ingest table")
    s.add_argument("--out", type=Path, required=True, help="shard frames file (.h5)")
    s.add_argument("--status", type=Path, required=True, help="shard status table (.parquet)")
    _add_threads_argument(s)
    _add_dataset_args(s)
    add_settings_argument(s, "frames")
    s.set_defaults(func=cmd_frames_shard)
    add_merge_parser(fr, "frames", "merge shard status tables into the frames index and record failures")
    e = fr.add_parser("extract", help="sample one video file into an HDF5 file (outside the workflow)")
    e.add_argument("--input", type=Path, required=True, help="a video file")
    e.add_argument("--out", type=Path, required=True, help="frames file (.h5)")
    e.add_argument("--group", help="HDF5 group name (default: the file's stem)")
    _add_threads_argument(e)
    add_settings_argument(e, "frames")
    e.set_defaults(func=cmd_frames_extract)

    f = sub.add_parser("failures", help="the failures table").add_subparsers(dest="sub", required=True)
    m = f.add_parser("merge", help="rebuild results/{dataset}/failures.parquet from the stage tables")
    m.add_argument("--dataset", required=True, help="dataset name (results/{dataset})")
    m.set_defaults(func=cmd_failures_merge)
