"""Batches across videos and front ends run ahead of the model (issue 16, items 1-2): the
features stage the way it ran before against the new way, in the same run, on the demo.

* ``cross``: frames extractors (colour, efficientnet, inception_v3, facenet, fer) over a
  whole demo shard, with per-video batches (``features_shard(..., cross_video=False)``,
  the path before: a 10 s clip makes one batch of 10 frames) against batches that span
  videos (the default: ``batch_size`` frames each). Both with the frame prefetch thread.
* ``overlap``: i3d, vggish and logmel on the first ``--overlap-videos`` videos of the
  shard with their front end in line (``prefetch_batches=0``, the path before) against
  run ahead in the prefetch thread (the default).

With ``--base REV`` (e.g. the commit this work started from), a third way runs the
code of that commit (``git archive REV src``, in a child process, the stage alone
timed): today's code, in the same run.

Each repetition runs the ways in turn, so a change in the machine's load hits both;
the table shows the best of ``--reps`` of each, their ratio (new / before: below 1 is
faster) and whether the two stores are equal bit for bit. Torch at 2 threads (the
stage's default). Inception-v3, I3D and VGGish run with seeded random weights (the
same compute as the real ones). Needs the demo's frames (``bash scripts/demo.sh frames``
or ``snakemake frames --cores 2 --configfile data/demo/config.yaml``).

    .venv/bin/python bench/batching.py [--extractors colour,efficientnet] [--overlap i3d,vggish,logmel]
        [--shards s00000,s00001] [--reps 2]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import polars as pl
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from features import DEMO, REPO, same_store, stage_seconds  # noqa: E402

NEEDS = {"efficientnet": "efficientnet_lite_pytorch", "facenet": "dlib", "fer": "ai_edge_litert"}


def random_weights(folder: Path) -> dict[str, str]:
    """Seeded random weights of the extractors whose real weights cannot be downloaded here."""
    import torchvision

    from evoke.features.i3d import build_i3d
    from evoke.features.vggish import build_network

    torch.manual_seed(0)
    paths = {"inception_v3": folder / "inception.pth", "i3d_rgb": folder / "i3d.pt", "vggish": folder / "vggish.pth"}
    torch.save(torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=False).state_dict(),
               paths["inception_v3"])
    torch.save({k: v for k, v in build_i3d().state_dict().items() if not k.endswith("num_batches_tracked")},
               paths["i3d_rgb"])
    torch.save(build_network().state_dict(), paths["vggish"])
    return {k: str(v) for k, v in paths.items()}


def max_difference(a: Path, b: Path) -> dict[str, float]:
    """Per dataset name, the largest absolute difference between two stores of the same videos."""
    import h5py
    import numpy as np

    out: dict[str, float] = {}
    with h5py.File(a) as fa, h5py.File(b) as fb:
        for v in fa:
            for d in fa[v]:
                x, y = fa[v][d][()].astype(np.float64), fb[v][d][()].astype(np.float64)
                out[d] = max(out.get(d, 0.0), float(np.abs(x - y).max()) if x.size else 0.0)
    return out


def base_sources(rev: str, dest: Path) -> Path:
    """``src`` of commit ``rev`` in ``dest`` (git archive); returns the folder to put on the path."""
    archive = subprocess.run(["git", "-C", str(REPO), "archive", rev, "src"], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest / "src"


def base_seconds(src: Path, name: str, settings: dict, frames: Path, probe: pl.DataFrame, shard: str,
                 prefetch_batches: int, keep: Path) -> float:
    """Seconds of the stage of the code in ``src`` (a child process; only the stage is timed)."""
    probe_file = keep.with_suffix(".probe.parquet")
    probe.write_parquet(probe_file)
    code = ("import json, sys; from pathlib import Path; import polars as pl; "
            f"sys.path.insert(0, {str(Path(__file__).resolve().parent)!r}); from features import stage_seconds; "
            f"print(json.dumps(stage_seconds({name!r}, {settings!r}, Path({str(frames)!r}), "
            f"pl.read_parquet({str(probe_file)!r}), {shard!r}, {prefetch_batches}, Path({str(keep)!r}))))")
    env = dict(os.environ, PYTHONPATH=str(src))
    out = subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True)
    return float(out.stdout.strip().splitlines()[-1])


def compare(name: str, shard: str, probe: pl.DataFrame, weights: dict, reps: int, before: dict, after: dict,
            n_frames: int, base: Path | None = None) -> dict:
    frames = DEMO / "frames" / f"{shard}.h5"
    settings = {"config": {}, "device": "cpu", "weights": weights}
    times: dict[str, list[float]] = {"before": [], "after": []} | ({"base": []} if base else {})
    with tempfile.TemporaryDirectory() as keep:
        stores = {k: Path(keep) / f"{k}.h5" for k in times}
        for _ in range(reps):
            for way, kw in (("before", before), ("after", after)):
                times[way].append(stage_seconds(name, settings, frames, probe, shard, keep=stores[way], **kw))
            if base:
                times["base"].append(base_seconds(base, name, settings, frames, probe, shard,
                                                  before["prefetch_batches"], stores["base"]))
        identical = same_store(stores["before"], stores["after"])
        difference = None if identical else max_difference(stores["before"], stores["after"])
        base_identical = same_store(stores["base"], stores["after"]) if base else None
    best = {k: min(v) for k, v in times.items()}
    return {"extractor": name, "shard": shard, "videos": probe.height, "frames": n_frames,
            "before_s": best["before"], "after_s": best["after"], "ratio": best["after"] / best["before"],
            "base_s": best.get("base"), "ratio_base": best["after"] / best["base"] if base else None,
            "base_identical": base_identical, "identical": identical, "max_abs_difference": difference,
            "all_seconds": times, "load_after": os.getloadavg()[0]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--extractors", default="colour,efficientnet,inception_v3,facenet,fer")
    ap.add_argument("--overlap", default="i3d,vggish,logmel", help="'' to skip")
    ap.add_argument("--shards", default="s00000,s00001")
    ap.add_argument("--overlap-videos", type=int, default=3)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--base", default="", help="also time the stage of this commit's code (today's)")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "out" / "batching.json")
    args = ap.parse_args()
    torch.set_num_threads(2)
    shards = [s for s in args.shards.split(",") if s]
    for shard in shards:
        if not (DEMO / "frames" / f"{shard}.h5").exists():
            raise SystemExit(f"results/demo/frames/{shard}.h5 is missing: run the demo's frames first")
    load_before = os.getloadavg()[0]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        weights = random_weights(Path(tmp))
        base = base_sources(args.base, Path(tmp)) if args.base else None
        for name in [n for n in args.extractors.split(",") if n]:
            if name in NEEDS and importlib.util.find_spec(NEEDS[name]) is None:
                print(f"{name}: skipped ({NEEDS[name]} not installed)", file=sys.stderr)
                continue
            for shard in shards:
                probe = pl.read_parquet(DEMO / "ingest" / "shards" / f"{shard}.parquet").filter(pl.col("status") == "ok")
                n = int(pl.read_parquet(DEMO / "frames" / f"{shard}.status.parquet")["n_valid"].sum())
                rows.append(compare(name, shard, probe, weights, args.reps, {"prefetch_batches": 2, "cross_video": False},
                                    {"prefetch_batches": 2}, n, base) | {"kind": "cross"})
                print(rows[-1], file=sys.stderr)
        for name in [n for n in args.overlap.split(",") if n]:
            shard = shards[0]
            probe = pl.read_parquet(DEMO / "ingest" / "shards" / f"{shard}.parquet").filter(
                pl.col("status") == "ok").head(args.overlap_videos)
            seconds = float(probe["duration_s"].sum())
            rows.append(compare(name, shard, probe, weights, args.reps, {"prefetch_batches": 0},
                                {"prefetch_batches": 2}, 0, base) | {"kind": "overlap", "video_s": seconds})
            print(rows[-1], file=sys.stderr)
    load_after = os.getloadavg()[0]
    print(f"{time.strftime('%H:%M UTC', time.gmtime())}; load average (1 min) {load_before:.2f} before, "
          f"{load_after:.2f} after; best of {args.reps}")
    print("| kind | extractor | shard | videos | before s | after s | after / before | stores equal | "
          "base s | after / base | equal to base |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        equal = "yes" if r["identical"] else "no: max abs difference " + ", ".join(
            f"{k} {v:.2g}" for k, v in r["max_abs_difference"].items() if v)
        print(f"| {r['kind']} | {r['extractor']} | {r['shard']} | {r['videos']} | {r['before_s']:.2f} | "
              f"{r['after_s']:.2f} | {r['ratio']:.2f}x | {equal} | "
              + (f"{r['base_s']:.2f} | {r['ratio_base']:.2f}x | {'yes' if r['base_identical'] else 'no'} |"
                 if r["base_s"] else "| | |"))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"rows": rows, "reps": args.reps, "load_before": load_before,
                                    "load_after": load_after}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
