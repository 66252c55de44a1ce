"""Import benchmark: ``evoke import vce`` on a synthetic VCE-sized folder (61,046 videos).

    .venv/bin/python bench/datasets.py            # writes bench/out/datasets.json, prints a Markdown table
    .venv/bin/python bench/datasets.py --keep DIR # keep the generated folder

The folder has VCE's released layout and sizes: ``metadata.json`` (61,046
entries), ``train_labels.json`` (50,000) and ``test_labels.json`` (11,046),
each entry 27 intensities under the released names and a ``topK``, written by
``tests/datasets/dataset_writers.py``'s ``vce_entry``. Three runs, each
alone in a fresh process (wall time and peak RSS of that process):

1. ``reference``: ``json.load`` of the three files, nothing else: what any
   reader of the release pays;
2. ``import, --no-video-check``: the importer on the JSON only (no videos);
3. ``import, placeholders``: the importer checking 61,046 video files, each an
   empty placeholder file in ``videos/`` (the check is a stat per file).

Ratios are to the reference of the same run.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
N_TRAIN, N_TEST = 50_000, 11_046

RUNNER = r"""
import json, sys, time
t = time.perf_counter()
mode, src, out = sys.argv[1:4]
if mode == "reference":
    for name in ("metadata.json", "train_labels.json", "test_labels.json"):
        with open(f"{src}/{name}") as fh:
            json.load(fh)
    n = None
else:
    from evoke.datasets import run_import
    n = run_import("vce", src, out, check_videos=(mode == "placeholders"))["videos"]
wall = time.perf_counter() - t
# VmHWM, not ru_maxrss: after fork + exec Linux's ru_maxrss keeps the parent's peak (this
# script's parent held the generated folder), VmHWM is this program's own
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print(json.dumps({"wall_s": wall, "videos": n, "peak_rss_mib": hwm / 1024}))
"""


def make_folder(root: Path, placeholders: bool) -> None:
    sys.path.insert(0, str(REPO / "tests" / "datasets"))
    from dataset_writers import vce_entry

    rng = np.random.default_rng(0)
    ids = [f"{i:05d}" for i in range(N_TRAIN + N_TEST)]
    root.mkdir(parents=True)
    meta = {}
    for split, chunk in (("train", ids[:N_TRAIN]), ("test", ids[N_TRAIN:])):
        entries = {v: vce_entry(rng, v) for v in chunk}
        (root / f"{split}_labels.json").write_text(json.dumps(entries, indent=4))
        meta.update({v: {"codec_name": "h264", "duration": "12.000000", "file": f"videos/{v}.mp4",
                         "frame_rate": "30/1", "height": 320, "number_of_frames": "360", "width": 256}
                     for v in chunk})
    (root / "metadata.json").write_text(json.dumps(meta, indent=4))
    if placeholders:
        (root / "videos").mkdir()
        for v in ids:
            (root / "videos" / f"{v}.mp4").touch()


def run(mode: str, src: Path, out: Path) -> dict:
    env_path = str(REPO / "src")
    proc = subprocess.run([sys.executable, "-c", RUNNER, mode, str(src), str(out)], capture_output=True, text=True,
                          env={"PYTHONPATH": env_path, "PATH": "/usr/bin:/bin"})
    if proc.returncode != 0:
        raise SystemExit(f"{mode} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--keep", type=Path, help="generate the folder here and keep it")
    ap.add_argument("--reps", type=int, default=2, help="best of N (default 2)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="evoke-bench-datasets-"))
    src = args.keep or tmp / "vce_dataset"
    try:
        t = time.perf_counter()
        make_folder(src, placeholders=True)
        size = sum(p.stat().st_size for p in src.glob("*.json"))
        gen_s = time.perf_counter() - t
        results = {}
        for mode in ("reference", "no-video-check", "placeholders"):
            reps = [run(mode, src, tmp / f"out-{mode}-{i}") for i in range(args.reps)]
            results[mode] = min(reps, key=lambda r: r["wall_s"])
            results[mode]["peak_rss_mib"] = max(r["peak_rss_mib"] for r in reps)
        ref = results["reference"]["wall_s"]
        record = {"videos": N_TRAIN + N_TEST, "json_bytes": size, "generate_s": gen_s, "reps": args.reps,
                  "results": results, "ratios_to_reference": {m: r["wall_s"] / ref for m, r in results.items()}}
        out = REPO / "bench" / "out"
        out.mkdir(parents=True, exist_ok=True)
        (out / "datasets.json").write_text(json.dumps(record, indent=2))
        print(f"VCE-sized folder: {N_TRAIN + N_TEST} videos, JSON {size / 2**20:.0f} MiB\n")
        print("| run | wall | peak RSS | ratio to reference |\n|---|---|---|---|")
        for mode, r in results.items():
            print(f"| {mode} | {r['wall_s']:.2f} s | {r['peak_rss_mib']:.0f} MiB | "
                  f"{r['wall_s'] / ref:.1f}x |")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
