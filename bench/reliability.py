"""Reliability benchmark (jobs side): what the per-video commits and fixed torch threads cost.

* per-video commits: the frames stage as it runs (``frames_shard``: each video its own
  part file, committed by a rename, then the shard file assembled from the parts, the
  status written, the parts removed) against writing the same frames straight into one
  shard file (no parts, no assembly: what a run without resume would do), on the same
  demo clips, alternating the two per repetition so a change in the machine's load hits
  both; the stored frames must be equal;
* torch threads: efficientnet (Lite0, CPU) over the same frames with 1 and 2 intra-op
  threads: seconds, and the largest relative difference between the two (why
  ``features.torch_threads`` is fixed).

    .venv/bin/python bench/reliability.py [--videos 10] [--reps 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import polars as pl

from evoke.frames import frames_shard, output_size, sample_frames, target_times
from evoke.media import probe

REPO = Path(__file__).resolve().parents[1]
SETTINGS = {"rate_hz": 1.0, "short_side": 360, "backend": "pyav"}


def probe_rows(root: Path, clips: list[Path]) -> pl.DataFrame:
    rows = []
    for clip in clips:
        vid = clip.stem
        vdir = root / "ingest" / "videos" / vid
        vdir.mkdir(parents=True)
        (vdir / "video.mp4").symlink_to(clip)
        rows.append({"video_id": vid, "status": "ok", "video_path": f"ingest/videos/{vid}/video.mp4",
                     "fingerprint": vid, **probe(clip)})
    return pl.DataFrame(rows, infer_schema_length=None)


def direct(rows: pl.DataFrame, root: Path, out: Path) -> None:
    """The same frames written straight into one shard file: no part files, no assembly."""
    with h5py.File(out, "w") as f:
        for r in rows.to_dicts():
            w, h = output_size(r["display_width"], r["display_height"], SETTINGS["short_side"])
            n = len(target_times(r["duration_s"], SETTINGS["rate_hz"]))
            g = f.create_group(r["video_id"])
            frames = g.create_dataset("frames", shape=(n, h, w, 3), dtype=np.uint8, chunks=(1, h, w, 3),
                                      compression="lzf")
            mask = np.zeros(n, bool)
            for i, _, _, img in sample_frames(root / r["video_path"], SETTINGS["rate_hz"],
                                              SETTINGS["short_side"], "pyav", r):
                frames[i], mask[i] = img, True
            g.create_dataset("mask", data=mask)


def commits(clips: list[Path], reps: int) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="evoke-rel-"))
    try:
        rows = probe_rows(tmp, clips)
        best = {"with": np.inf, "without": np.inf}
        for _ in range(reps):
            out = tmp / "frames" / "s00000.h5"
            t = time.perf_counter()
            frames_shard(rows, tmp, SETTINGS, "s00000", out, status_out=out.with_suffix(".status.parquet"))
            best["with"] = min(best["with"], time.perf_counter() - t)
            t = time.perf_counter()
            direct(rows, tmp, tmp / "direct.h5")
            best["without"] = min(best["without"], time.perf_counter() - t)
            with h5py.File(out) as a, h5py.File(tmp / "direct.h5") as b:
                for vid in b:
                    np.testing.assert_array_equal(a[vid]["frames"][()], b[vid]["frames"][()])
            out.unlink()
        n = int(sum(len(target_times(d, 1.0)) for d in rows["duration_s"]))
        print(f"frames of {len(clips)} videos ({n} frames): per-video commits {best['with']:.2f} s, "
              f"straight into the shard file {best['without']:.2f} s, ratio {best['with'] / best['without']:.3f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def threads(clips: list[Path], reps: int) -> None:
    import torch

    from evoke.features import create_extractor
    from evoke.features.base import VideoInput

    frames = []
    for clip in clips:
        frames += [img for _, _, _, img in sample_frames(clip, 1.0, 224, "pyav")]
    shape = frames[0].shape
    imgs = np.stack([f for f in frames if f.shape == shape][:32])
    video = VideoInput("bench", np.arange(len(imgs), dtype=np.float64), np.ones(len(imgs), bool),
                       float(len(imgs)), _frames_dataset=imgs)
    ext = create_extractor("efficientnet", {}, device="cpu")
    ext.ensure_loaded()
    values, secs = {}, {}
    for n in (1, 2):
        torch.set_num_threads(n)
        secs[n] = np.inf
        for _ in range(reps):
            t = time.perf_counter()
            values[n] = ext.extract(video).values
            secs[n] = min(secs[n], time.perf_counter() - t)
    rel = float(np.linalg.norm(values[1] - values[2]) / np.linalg.norm(values[1]))
    print(f"efficientnet Lite0 CPU, {len(imgs)} frames: 1 thread {secs[1]:.2f} s, 2 threads {secs[2]:.2f} s "
          f"(1 thread / 2 threads {secs[1] / secs[2]:.2f}); relative L2 difference 1 vs 2 threads: {rel:.1e}, "
          f"identical: {np.array_equal(values[1], values[2])}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", type=int, default=10)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    clips = sorted((REPO / "data" / "demo" / "clips").glob("demo_*.mp4"))[: args.videos]
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    commits(clips, args.reps)
    threads(clips, args.reps)
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
