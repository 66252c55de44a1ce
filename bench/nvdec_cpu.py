"""The CPU's share of ``frames.backend: nvdec`` (issue 16, item 4), measurable without a GPU.

With a GPU, NVDEC decodes; what stays on the CPU is the plan (packet scan, which frame
each target takes), the vessel frame (one frame PyAV decodes) and the RGB conversion
and scaling of the taken frames. This times those on bench/gpu.py's 720p H.264 clip
(60 s, 30 fps, keyframes every 8.3 s) against the PyAV backend's whole 1 Hz sampler in
the same run, wall and CPU (process) time. The NV12 samples of the taken frames are
made by PyAV here (NVDEC's job on a GPU; not timed), and the converted frames are
checked equal to the PyAV backend's. Run (repository root)::

    PYTHONPATH=src .venv/bin/python bench/nvdec_cpu.py [--reps 2]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "src"), str(REPO / "bench")]

import av  # noqa: E402
import numpy as np  # noqa: E402

from gpu import make_clip  # noqa: E402
from evoke import frames_nvdec as nv  # noqa: E402
from evoke.frames import output_size, sample_frames, target_times  # noqa: E402


def clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=2)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        clip = Path(d) / "clip.mp4"
        info = make_clip(clip, 60.0, 1280, 720, gop=250)
        targets = target_times(info["duration_s"], 1.0)
        w, h = output_size(info["width"], info["height"], 360)
        for rep in range(args.reps):
            w0, c0 = clock()
            ref = list(sample_frames(clip, 1.0, 360, "pyav", info))
            w1, c1 = clock()
            plan = nv.plan_targets(clip, targets, info["fps_avg"])
            like = nv.first_frame(clip)
            w2, c2 = clock()
            taken = set(plan.index.tolist())
            with av.open(str(clip)) as c:
                nv12 = {k: f.reformat(format="nv12").to_ndarray()
                        for k, f in enumerate(c.decode(video=0)) if k in taken}
            w3, c3 = clock()
            out = [nv.rgb_from_nv12(nv12[k], like, w, h) for k in plan.index]
            w4, c4 = clock()
            same = len(out) == len(ref) and all(np.array_equal(a[3], b) for a, b in zip(ref, out))
            cpu_side = (c2 - c1) + (c4 - c3)
            print(f"rep {rep}: PyAV 1 Hz sampler wall {w1 - w0:.2f} s, cpu {c1 - c0:.2f} s | nvdec's CPU side: "
                  f"plan + vessel wall {w2 - w1:.3f} s, cpu {c2 - c1:.3f} s; {len(out)} conversions wall "
                  f"{w4 - w3:.3f} s, cpu {c4 - c3:.3f} s | cpu ratio {cpu_side / (c1 - c0):.3f} | "
                  f"equal to PyAV's frames: {same}", flush=True)


if __name__ == "__main__":
    main()
