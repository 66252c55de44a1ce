"""The frames sampler's decoding modes, A/B in one process (issue 16, item 5): `sample_frames` at
1 Hz with the parts of the stream decoded side by side (the default, `workers` = the CPUs), with
one decoder and its read-on plan (`workers=1`, `evoke.frames._skip_points`), and with one decoder
and an empty plan (it then drains and seeks at every drain point, as before the read-on),
against `ffmpeg -an -f null` (a full decode), interleaved, best of N, wall and CPU seconds.
Outputs are the same in every mode (tests/test_frames.py, tests/test_frames_parts.py).

    .venv/bin/python bench/frames_readon.py bench/out/seg_60s_g250.mp4 bench/out/seg_60s_g60.mp4

(the files are the ones `bench/run.py` makes in bench/out). Figures: bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import time
from pathlib import Path

import evoke.frames as frames
from evoke.media import probe

READ_ON = frames._skip_points
MODES = {"parts side by side": (None, True), "one decoder, read on": (1, True), "one decoder, seek": (1, False)}


def run(path: Path, workers: int | None, read_on: bool) -> tuple[float, float]:
    frames._skip_points = READ_ON if read_on else (lambda *a, **k: {})
    try:
        info = probe(path)
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in frames.sample_frames(path, 1.0, 360, "pyav", info, workers=workers):
            pass
        return time.perf_counter() - wall, time.process_time() - cpu
    finally:
        frames._skip_points = READ_ON


def null_decode(path: Path) -> tuple[float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = time.perf_counter()
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-an", "-f", "null", "-"], check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.perf_counter() - wall, (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="+", type=Path)
    ap.add_argument("--reps", type=int, default=4)
    args = ap.parse_args()
    print(f"decode workers (parts side by side): {frames.decode_workers()}")
    for path in args.files:
        got: dict[str, list] = {"ffmpeg -f null": []} | {m: [] for m in MODES}
        for _ in range(args.reps):
            got["ffmpeg -f null"].append(null_decode(path))
            for mode, (workers, read_on) in MODES.items():
                got[mode].append(run(path, workers, read_on))
        ref_wall = min(w for w, _ in got["ffmpeg -f null"])
        ref_cpu = min(c for _, c in got["ffmpeg -f null"])
        for mode, runs in got.items():
            wall, cpu = min(w for w, _ in runs), min(c for _, c in runs)
            print(f"{path.name} {mode:<22}: best wall {wall:.2f} s ({wall / ref_wall:.3f}x), "
                  f"best cpu {cpu:.2f} s ({cpu / ref_cpu:.3f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
