"""CLI: ``evoke features ...`` and ``evoke weights ...``."""

from __future__ import annotations

import logging
import subprocess
import tempfile
import time
from pathlib import Path

import polars as pl

from evoke import EvokeError
from evoke.cli import _settings as _json_object
from evoke.cli import add_settings_argument
from evoke.config import load_config, validate_config

log = logging.getLogger(__name__)


def features_settings(features_cfg: dict, name: str) -> dict:
    """What the features job of extractor ``name`` needs from the ``features`` config block."""
    return {
        "config": features_cfg.get("settings", {}).get(name, {}),
        "device": features_cfg.get("device", "auto"),
        "weights": features_cfg.get("weights", {}),
        "torch_threads": features_cfg.get("torch_threads"),
    }


def with_runtime(settings: dict, runtime: dict | None, name: str) -> dict:
    """``settings`` (what changes the numbers, the workflow's params) plus ``runtime`` (device,
    weights paths and each extractor's runtime settings such as batch_size, which the
    workflow passes outside its params so that changing them reruns nothing)."""
    if not runtime:
        return settings
    out = dict(settings)
    out["config"] = {**settings.get("config", {}), **runtime.get("settings", {}).get(name, {})}
    for key in ("device", "weights"):
        if key in runtime:
            out[key] = runtime[key]
    return out


def validate_features_config(features_cfg: dict) -> None:
    """Check extractor names and their settings blocks; raise FeatureError naming the problem."""
    from evoke.features import FeatureError, get_extractor

    for name in list(features_cfg.get("extractors", [])) + list(features_cfg.get("settings", {})):
        cls = get_extractor(name)
        try:
            cls.config_type.from_dict(features_cfg.get("settings", {}).get(name))
        except FeatureError as exc:
            raise FeatureError(f"features.settings.{name}: {exc}") from exc


def _load_features_cfg(args) -> dict:
    if getattr(args, "config", None) is not None and Path(args.config).is_file():
        return load_config(args.config)["features"]
    return validate_config({"manifest": "-"})["features"]


def cmd_list(args) -> int:
    from evoke.features import EXTRACTORS
    from evoke.weights import find

    cfg = _load_features_cfg(args)
    print(f"{'extractor':<18} {'input':<7} {'shape':<10} {'weights':<32} description")
    for name in sorted(EXTRACTORS):
        cls = EXTRACTORS[name]
        try:
            ext = cls(cfg["settings"].get(name), weights_paths=cfg["weights"])
            shape = "x".join(map(str, ext.step_shape))
            specs = ext.weights()
            if not specs:
                state = "none needed"
            else:
                missing = [s.filename for s in specs if find(s, cfg["weights"]) is None]
                state = "present" if not missing else f"missing: {', '.join(missing)}"
        except EvokeError as exc:
            shape, state = "?", f"error: {exc}"
        print(f"{name:<18} {cls.modality:<7} {shape:<10} {state:<32} {cls.description}")
    return 0


def cmd_weights(args) -> int:
    from evoke.features import create_extractor
    from evoke.weights import WeightsMissing, find, resolve

    cfg = _load_features_cfg(args)
    names = args.extractor or cfg["extractors"]
    missing = 0
    for name in names:
        ext = create_extractor(name, cfg["settings"].get(name), weights_paths=cfg["weights"])
        for spec in ext.weights():
            try:
                path = resolve(spec, cfg["weights"], allow_download=True) if args.fetch else find(spec, cfg["weights"])
            except WeightsMissing as exc:
                print(f"{name}: {exc}")
                missing += 1
                continue
            if path is None:
                print(f"{name}: {spec.name}: missing ({spec.filename}; evoke weights fetch)")
                missing += 1
            else:
                print(f"{name}: {spec.name}: {path}")
    return 1 if missing else 0


def cmd_shard(args) -> int:
    from evoke.features.stage import features_shard
    from evoke.status import log_shard_summary

    started = time.monotonic()
    settings = args.settings if args.settings is not None else features_settings(
        load_config(args.config)["features"], args.extractor)
    settings = with_runtime(settings, args.runtime, args.extractor)
    # the status table is written by the stage, before it removes the per-video parts
    status = features_shard(args.extractor, settings, args.frames, pl.read_parquet(args.probe),
                   Path("results") / args.dataset, args.shard, args.out, status_out=args.status)
    log_shard_summary(f"features {args.extractor}", args.shard, status, started)
    return 0


def cmd_extract(args) -> int:
    """One extractor on one video file, outside the workflow: probe, frames, audio, features."""
    import h5py

    from evoke.features import create_extractor
    from evoke.features.base import VideoInput
    from evoke.features.stage import dim_names_attr, frames_provenance, run_extractor, write_features
    from evoke.frames import write_video_frames
    from evoke.media import probe, run_ffmpeg

    full = load_config(args.config) if args.config and Path(args.config).is_file() else \
        validate_config({"manifest": "-"})
    settings = args.settings if args.settings is not None else features_settings(full["features"], args.extractor)
    from evoke.features.stage import job_device

    ext = create_extractor(args.extractor, settings["config"], device=job_device(args.extractor, settings),
                           weights_paths=settings["weights"])
    ext.ensure_loaded()
    info = probe(args.input)
    with tempfile.TemporaryDirectory() as tmpd:
        tmp = Path(tmpd)
        write_video_frames(args.input, tmp / "frames.h5", "v", full["frames"], info)
        wav = None
        if info["has_audio"] and ext.modality == "audio":
            wav = tmp / "audio.wav"
            run_ffmpeg(["-i", str(args.input), "-map", "0:a:0", "-ac", "1", "-ar", "16000",
                        "-c:a", "pcm_s16le", str(wav)], "audio extraction", args.input)
        with h5py.File(tmp / "frames.h5", "r") as f:
            g = f["v"]
            video = VideoInput(args.input.stem, g["timestamps_s"][()], g["mask"][()], info["duration_s"],
                               args.input, wav, _frames_dataset=g["frames"])
            result = run_extractor(ext, video)
            stats = write_features(args.out, args.group or args.input.stem, result, video.timestamps_s, ext,
                                   dim_names=dim_names_attr(ext),  # one video: on its group
                                   **frames_provenance(g.attrs))
    print(f"{args.out}: {args.extractor} {stats['n_valid']}/{stats['n_steps']} valid steps of {ext.step_shape}")
    return 0


def register(sub) -> None:
    fe = sub.add_parser("features", help="feature extractors").add_subparsers(dest="sub", required=True)
    p = fe.add_parser("list", help="every extractor, its input, output shape and whether its weights are here")
    p.add_argument("--config", type=Path, default=Path("config.yaml"),
                   help="config file whose weights paths are checked (default: config.yaml)")
    p.set_defaults(func=cmd_list)
    p = fe.add_parser("extract", help="run one extractor on one video file into an HDF5 file")
    p.add_argument("--extractor", required=True, help="extractor name (evoke features list)")
    p.add_argument("--input", type=Path, required=True, help="a video file")
    p.add_argument("--out", type=Path, required=True, help="features file (.h5)")
    p.add_argument("--group", help="HDF5 group name (default: the file's stem)")
    add_settings_argument(p, "extractor (config, device, weights)")
    p.set_defaults(func=cmd_extract)
    p = fe.add_parser("shard", help="run one extractor over one shard (a workflow job)")
    for a, text in (("--extractor", "extractor name"), ("--shard", "shard name, e.g. s00000"),
                    ("--dataset", "dataset name (results/{dataset})")):
        p.add_argument(a, required=True, help=text)
    p.add_argument("--frames", type=Path, required=True, help="the shard's frames file (.h5)")
    p.add_argument("--probe", type=Path, required=True, help="the shard's ingest table")
    p.add_argument("--out", type=Path, required=True, help="the shard's features file (.h5)")
    p.add_argument("--status", type=Path, required=True, help="the shard's status table (.parquet)")
    add_settings_argument(p, "extractor (config, device, weights)")
    p.add_argument("--runtime", type=_json_object, default=None,
                   help="JSON object: device, weights and per-extractor settings that change no "
                        "number (batch_size); overrides --settings")
    p.set_defaults(func=cmd_shard)
    from evoke.cli_stages import add_merge_parser

    add_merge_parser(fe, "features", "merge shard status tables into the features index and record failures")

    we = sub.add_parser("weights", help="pretrained weights").add_subparsers(dest="sub", required=True)
    for verb, fetch, text in (("list", False, "where each configured extractor's weights are"),
                              ("fetch", True, "download every weights file a config needs (login node)")):
        p = we.add_parser(verb, help=text)
        p.add_argument("--config", type=Path, default=Path("config.yaml"),
                       help="config file naming the extractors (default: config.yaml)")
        p.add_argument("--extractor", action="append", help="only this extractor (repeatable)")
        p.set_defaults(func=cmd_weights, fetch=fetch)
