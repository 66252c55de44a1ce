"""A/B of the frames sampler's read-on (issue 16, item 5): `sample_frames` at 1 Hz with its
read-on plan (`evoke.frames._skip_points`) against the same sampler with an empty plan (it then
drains and seeks at every drain point, as before the read-on), interleaved, best of N, wall and
CPU seconds. Outputs are the same either way (tests/test_frames.py).

    .venv/bin/python bench/frames_readon.py bench/out/seg_60s_g250.mp4 bench/out/seg_60s_g60.mp4

(the files are the ones `bench/run.py` makes in bench/out). Figures: bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import evoke.frames as frames
from evoke.media import probe

READ_ON = frames._skip_points


def run(path: Path, read_on: bool) -> tuple[float, float]:
    frames._skip_points = READ_ON if read_on else (lambda *a, **k: {})
    try:
        info = probe(path)
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in frames.sample_frames(path, 1.0, 360, "pyav", info):
            pass
        return time.perf_counter() - wall, time.process_time() - cpu
    finally:
        frames._skip_points = READ_ON


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="+", type=Path)
    ap.add_argument("--reps", type=int, default=4)
    args = ap.parse_args()
    for path in args.files:
        got = {True: [], False: []}
        for _ in range(args.reps):
            for read_on in (True, False):
                got[read_on].append(run(path, read_on))
        for read_on in (True, False):
            print(f"{path.name} {'read on' if read_on else 'seek   '}: best wall {min(w for w, _ in got[read_on]):.2f} s,"
                  f" best cpu {min(c for _, c in got[read_on]):.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
