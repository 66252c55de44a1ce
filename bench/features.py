"""Features-stage benchmark: the whole stage against the bare model forward, same run.

For each extractor, on the demo's first frames shard (run `bash scripts/demo.sh`
or `snakemake --cores 2 frames` first):

* stage: ``evoke.features.stage.features_shard`` end to end (model loading,
  HDF5 frame reads, preprocessing, forward, per-video parts, consolidation) ->
  frames per second, twice: with the frame prefetch thread (the default) and
  with ``prefetch_batches=0`` (reads and preprocessing in line with the
  forward, as before the prefetcher); the two stores must be equal bit for bit;
* bare forward: the same frames read into memory and preprocessed beforehand,
  timing only the model call on the same batches -> frames per second (for
  extractors without a separate preprocessing step, such as ``facenet`` and
  ``fer``: ``extract`` on the frames already in memory, without the stage's
  reads, writes and bookkeeping);
* ratio = stage seconds / bare seconds (target <= 1.15x: decoding and I/O cost
  little next to inference).

Each repetition runs the three in turn (serial stage, prefetched stage, bare
forward), so a change in the machine's load hits all three; the table shows the
best of ``--reps`` for each, and the load average (1 min) before and after.
``--busy N`` adds N busy-looping processes for the duration (a repeatable
stand-in for a shared, oversubscribed machine). The ``OMP_WAIT_POLICY`` in the
environment is printed: under load it matters more than anything measured here.

Inception-v3 and I3D run with seeded random weights (same compute as the real
ones, which cannot be downloaded here) and are reported as seconds per
video-minute on a 60 s 720p clip.

    .venv/bin/python bench/features.py [--extractors efficientnet,colour] [--shard s00000]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import polars as pl
import torch

from evoke.features import create_extractor
from evoke.features.base import VideoInput
from evoke.features.stage import PREFETCH_BATCHES, features_shard

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "results" / "demo"


def bare_seconds(ext, frames_file: Path, video_ids: list[str], batch: int) -> tuple[float, int]:
    """Seconds of only the model calls over pre-read, pre-processed batches."""
    batches = []
    with h5py.File(frames_file) as f:
        for vid in video_ids:
            g = f[vid]
            frames = g["frames"][()][g["mask"][()]]
            for s in range(0, len(frames), batch):
                batches.append(frames[s:s + batch])
    n = sum(len(b) for b in batches)
    ext.ensure_loaded()
    if ext.name == "colour":
        from evoke.features.colour import colour_stats

        t = time.perf_counter()
        for b in batches:
            colour_stats(b, ext.config.hue_bins)
        return time.perf_counter() - t, n
    if not hasattr(ext, "preprocess"):
        with h5py.File(frames_file) as f:
            videos = [VideoInput(vid, f[vid]["timestamps_s"][()], f[vid]["mask"][()], 0.0,
                                 _frames_dataset=f[vid]["frames"][()]) for vid in video_ids]
        t = time.perf_counter()
        for video in videos:
            ext.extract(video)
        return time.perf_counter() - t, n
    pre = [ext.preprocess(b) for b in batches]
    with torch.inference_mode():
        ext._features(pre[0])  # warm-up
        t = time.perf_counter()
        for x in pre:
            ext._features(x)
        return time.perf_counter() - t, n


def stage_seconds(name: str, settings: dict, frames: Path, probe: pl.DataFrame, shard: str,
                  prefetch_batches: int, keep: Path, **kw) -> float:
    """Seconds of one whole features stage run (``kw``: more arguments of ``features_shard``);
    its store is moved to ``keep``."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "ingest").symlink_to(DEMO / "ingest")
        t = time.perf_counter()
        features_shard(name, settings, frames, probe, root, shard, root / "out.h5", prefetch_batches=prefetch_batches,
                       **kw)
        sec = time.perf_counter() - t
        shutil.move(root / "out.h5", keep)
    return sec


def same_store(a: Path, b: Path) -> bool:
    with h5py.File(a) as fa, h5py.File(b) as fb:
        return sorted(fa) == sorted(fb) and all(
            sorted(fa[v]) == sorted(fb[v]) and all(np.array_equal(fa[v][d][()], fb[v][d][()]) for d in fa[v])
            for v in fa)


def stage_vs_bare(name: str, shard: str, reps: int) -> dict:
    probe = pl.read_parquet(DEMO / "ingest" / "shards" / f"{shard}.parquet")
    frames = DEMO / "frames" / f"{shard}.h5"
    settings = {"config": {}, "device": "cpu", "weights": {}}
    ext = create_extractor(name, {}, device="cpu")
    with h5py.File(frames) as f:
        vids = [v for v in probe.filter(pl.col("status") == "ok")["video_id"] if v in f]
    times: dict[str, list[float]] = {"serial": [], "prefetch": [], "bare": []}
    with tempfile.TemporaryDirectory() as keep:
        stores = {k: Path(keep) / f"{k}.h5" for k in ("serial", "prefetch")}
        for _ in range(reps):
            times["serial"].append(stage_seconds(name, settings, frames, probe, shard, 0, stores["serial"]))
            times["prefetch"].append(stage_seconds(name, settings, frames, probe, shard, PREFETCH_BATCHES,
                                                   stores["prefetch"]))
            sec, n = bare_seconds(ext, frames, vids, ext.frame_batch_size)
            times["bare"].append(sec)
        identical = same_store(stores["serial"], stores["prefetch"])
    best = {k: min(v) for k, v in times.items()}
    return {"extractor": name, "frames": n, "stage_serial_s": best["serial"], "stage_s": best["prefetch"],
            "bare_s": best["bare"], "stage_serial_fps": n / best["serial"], "stage_fps": n / best["prefetch"],
            "bare_fps": n / best["bare"], "ratio_serial": best["serial"] / best["bare"],
            "ratio": best["prefetch"] / best["bare"], "identical": identical, "all_seconds": times}


def per_video_minute(name: str) -> dict:
    """Seconds per video-minute of a random-weight model on a 60 s 720p clip."""
    import torchvision

    from evoke.features.i3d import build_i3d
    from evoke.frames import write_video_frames
    from evoke.media import probe

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        clip = tmp / "clip.mp4"
        subprocess.run(["ffmpeg", "-v", "error", "-stream_loop", "6", "-i",
                        "/usr/share/doc/opencv-doc/examples/data/vtest.avi", "-t", "60", "-vf",
                        "scale=1280:720,fps=30", "-c:v", "libx264", "-preset", "veryfast", "-an",
                        str(clip)], check=True)
        torch.manual_seed(0)
        if name == "inception_v3":
            sd = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=False).state_dict()
            key = "inception_v3"
        else:
            sd = {k: v for k, v in build_i3d().state_dict().items() if not k.endswith("num_batches_tracked")}
            key = "i3d_rgb"
        torch.save(sd, tmp / "w.pt")
        info = probe(clip)
        write_video_frames(clip, tmp / "f.h5", "v", {"rate_hz": 1.0, "short_side": 360, "backend": "pyav"}, info)
        ext = create_extractor(name, {}, device="cpu", weights_paths={key: str(tmp / "w.pt")})
        ext.ensure_loaded()
        with h5py.File(tmp / "f.h5") as f:
            g = f["v"]
            video = VideoInput("v", g["timestamps_s"][()], g["mask"][()], info["duration_s"], clip, None,
                               _frames_dataset=g["frames"])
            t = time.perf_counter()
            ext.extract(video)
            sec = time.perf_counter() - t
    return {"extractor": name, "seconds_per_video_minute": sec * 60 / info["duration_s"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--extractors", default="efficientnet,colour")
    ap.add_argument("--per-minute", default="inception_v3,i3d", help="'' to skip")
    ap.add_argument("--shard", default="s00000")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--busy", type=int, default=0, help="busy-looping processes to run meanwhile (load)")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "out" / "features.json")
    args = ap.parse_args()
    torch.set_num_threads(2)
    if not (DEMO / "frames" / f"{args.shard}.h5").exists():
        raise SystemExit("run the demo first (bash scripts/demo.sh): results/demo/frames is missing")
    omp = os.environ.get("OMP_WAIT_POLICY", "(unset)")
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy)]
    try:
        load_before = os.getloadavg()[0]
        rows = [stage_vs_bare(n, args.shard, args.reps) for n in args.extractors.split(",") if n]
        minutes = [per_video_minute(n) for n in args.per_minute.split(",") if n]
        load_after = os.getloadavg()[0]
    finally:
        for p in busy:
            p.kill()
            p.wait()
    print(f"load average (1 min): {load_before:.2f} before, {load_after:.2f} after; best of {args.reps}; "
          f"OMP_WAIT_POLICY={omp}; {args.busy} busy processes")
    print("| extractor | frames | stage fps: serial / prefetch | bare forward fps | stage / bare: serial / prefetch "
          "| stores equal |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['extractor']} | {r['frames']} | {r['stage_serial_fps']:.1f} / {r['stage_fps']:.1f} | "
              f"{r['bare_fps']:.1f} | {r['ratio_serial']:.2f}x / {r['ratio']:.2f}x | {r['identical']} |")
    for m in minutes:
        print(f"| {m['extractor']} (random weights) | CPU seconds per video-minute: {m['seconds_per_video_minute']:.0f} | | | |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"stage_vs_bare": rows, "per_video_minute": minutes, "reps": args.reps,
                                    "omp_wait_policy": omp, "busy": args.busy, "load_before": load_before,
                                    "load_after": load_after}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
