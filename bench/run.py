"""Foundation benchmarks of evoke (issue 2): frames, memory, ingest.

Every figure is a ratio to a reference measured in the same run on the same
file, never an absolute time checked by a test:

* frames: ``evoke.frames.sample_frames`` (1 Hz, short side 360, PyAV) on a 60 s
  1280x720 30 fps H.264 file, keyframes every 8.3 s and every 2 s, against
  ``ffmpeg -i FILE -an -f null -`` (a full decode). Targets: at most 1.0x and
  0.7x. For context: the decord backend, ffmpeg ``fps=1`` to a raw pipe, and a
  PyAV seek per frame.
* memory: peak RSS of ``evoke frames extract`` (a subprocess) on a 2-hour 720p
  file (target below 1 GiB), its wall time and its ratio to the null decode.
* ingest: ``evoke.ingest.ingest_video`` on a local 60 s 720p file with audio
  (muted copy + 16 kHz WAV) against the frames stage on the same file
  (target below 0.1x).

* before_after (``--before GIT_REF``): frames and ingest as above for the
  ``src/`` of that revision and for this tree, interleaved in one run, each
  tree in its own warm ``bench/worker.py`` process, outputs compared by hash.

Each timing is the best of ``--reps`` repetitions (default 3), measured
interleaved with its reference so that load from other processes hits both.
CPU time (user + system, all threads and child processes) is recorded too: it
is far less sensitive than wall time to a busy machine.

Test videos are generated with ffmpeg from a real clip (OpenCV's
Megamind.avi, an animated film excerpt with cuts, looped and scaled to 720p
30 fps) and cached under ``--out`` (gitignored).

    .venv/bin/python bench/run.py                 # everything (about 25 min on 2 cores)
    .venv/bin/python bench/run.py --only frames   # one benchmark
    .venv/bin/python bench/run.py --quick         # smoke run (short files, 1 repetition)
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import io
import json
import os
import platform
import pstats
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import av
import numpy as np
import psutil

import evoke
import evoke.frames as F
from evoke.config import validate_config
from evoke.frames import output_size, sample_frames, target_times, write_video_frames
from evoke.ingest import ingest_video
from evoke.media import probe, video_packet_times

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/proposals.py
CLIP_CANDIDATES = [
    Path("/usr/share/doc/opencv-doc/examples/data/Megamind.avi"),
    Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi"),
]
TARGETS = {"frames_g250": 1.0, "frames_g60": 0.7, "memory_gib": 1.0, "ingest": 0.1}
GIB = 1024**3


# --------------------------------------------------------------------------- helpers


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def ffmpeg(*args: str) -> None:
    cmd = ["ffmpeg", "-nostdin", "-hide_banner", "-v", "error", "-y", *args]
    subprocess.run(cmd, check=True)


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def measure(fn) -> dict:
    """Run ``fn()`` once; wall seconds and CPU seconds (this process's threads + waited children)."""
    c0, k0, t0 = time.process_time(), children_cpu(), time.perf_counter()
    value = fn()
    wall = time.perf_counter() - t0
    cpu = (time.process_time() - c0) + (children_cpu() - k0)
    return {"wall_s": wall, "cpu_s": cpu, "value": value}


def best_of(runs: list[dict]) -> dict:
    return {
        "wall_s": min(r["wall_s"] for r in runs),
        "cpu_s": min(r["cpu_s"] for r in runs),
        "walls_s": [round(r["wall_s"], 3) for r in runs],
    }


def null_decode(path: Path) -> None:
    """The reference: a full decode of the video stream, default threads."""
    subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-v", "error", "-i", str(path), "-an", "-f", "null", "-"],
                   check=True)


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def wait_until_idle(max_wait_s: float) -> float:
    """Wait (at most ``max_wait_s``) until the 1-minute load average is below half the cores; seconds waited."""
    t0, limit = time.perf_counter(), 0.5 * (os.cpu_count() or 1)
    while os.getloadavg()[0] >= limit and time.perf_counter() - t0 < max_wait_s:
        time.sleep(10)
    return time.perf_counter() - t0


# --------------------------------------------------------------------------- test videos


def source_clip() -> Path:
    for p in CLIP_CANDIDATES:
        if p.is_file():
            return p
    raise SystemExit("no source clip found (apt-get install opencv-doc): " + ", ".join(map(str, CLIP_CANDIDATES)))


def _cached(path: Path, make) -> Path:
    if path.is_file() and path.stat().st_size > 0:
        return path
    tmp = path.with_name(f".{path.name}.tmp{path.suffix}")
    t0 = time.perf_counter()
    make(tmp)
    os.replace(tmp, path)
    log(f"made {path.name} in {time.perf_counter() - t0:.1f} s")
    return path


def make_segment(out: Path, seconds: int, gop: int) -> Path:
    """720p 30 fps H.264 (libx264 veryfast), a keyframe exactly every ``gop`` frames, no audio."""
    def make(tmp):
        ffmpeg("-stream_loop", "-1", "-i", str(source_clip()), "-t", str(seconds),
               "-vf", "scale=1280:720:force_original_aspect_ratio=increase,crop=1280:720,fps=30",
               "-an", "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
               "-g", str(gop), "-keyint_min", str(gop), "-sc_threshold", "0", "-f", "mp4", str(tmp))
    return _cached(out / f"seg_{seconds}s_g{gop}.mp4", make)


def make_soundtrack(out: Path) -> Path:
    """The clip's own soundtrack (AC3 in Megamind.avi) as a WAV; a sine tone if it has none."""
    clip = source_clip()

    def make(tmp):
        has_audio = subprocess.run(
            ["ffprobe", "-v", "error", "-select_streams", "a", "-show_entries", "stream=index", "-of", "csv=p=0",
             str(clip)], capture_output=True, text=True).stdout.strip()
        if has_audio:  # "-v fatal": Megamind.avi's last AC3 frame is incomplete, which ffmpeg reports
            ffmpeg("-v", "fatal", "-i", str(clip), "-map", "0:a:0", "-ac", "2", "-ar", "48000", "-f", "wav", str(tmp))
        else:
            ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=10", "-ac", "2",
                   "-f", "wav", str(tmp))
    return _cached(out / "soundtrack.wav", make)


def make_with_audio(out: Path, video: Path) -> Path:
    """``video`` (stream copy) plus the clip's soundtrack, looped, as 128 kb/s stereo AAC."""
    def make(tmp):
        ffmpeg("-i", str(video), "-stream_loop", "-1", "-i", str(make_soundtrack(out)),
               "-map", "0:v:0", "-map", "1:a:0", "-c:v", "copy", "-c:a", "aac", "-b:a", "128k",
               "-shortest", "-f", "mp4", str(tmp))
    return _cached(out / f"{video.stem}_aac.mp4", make)


def make_long(out: Path, segment: Path, copies: int) -> Path:
    """``copies`` back-to-back copies of ``segment`` with the concat demuxer and ``-c copy`` (no encode)."""
    def make(tmp):
        lst = out / f".{segment.stem}_x{copies}.txt"
        lst.write_text("".join(f"file '{segment.name}'\n" for _ in range(copies)))
        ffmpeg("-f", "concat", "-safe", "0", "-i", str(lst), "-c", "copy", "-f", "mp4", str(tmp))
        lst.unlink()
    return _cached(out / f"{segment.stem}_x{copies}.mp4", make)


# --------------------------------------------------------------------------- frame samplers


def exact_frame_times(path: Path, targets: np.ndarray) -> np.ndarray:
    """The presentation time of the frame on screen at each target (the definition in evoke.frames)."""
    times, _, _ = video_packet_times(path)
    idx = np.searchsorted(times, targets + 1e-9, side="right") - 1
    return times[np.maximum(idx, 0)]


def run_evoke(path: Path, backend: str):
    out = [(ft, img) for _, _, ft, img in sample_frames(path, 1.0, 360, backend)]
    return [o[0] for o in out], [o[1] for o in out]


def run_ffmpeg_fps(path: Path):
    """ffmpeg ``fps=1`` + area scaling to an RGB raw pipe (ffmpeg's fps filter takes the nearest frame)."""
    info = probe(path)
    w, h = output_size(info["width"], info["height"], 360)
    cmd = ["ffmpeg", "-nostdin", "-hide_banner", "-v", "error", "-i", str(path), "-an",
           "-vf", f"fps=1,scale={w}:{h}:flags=area", "-pix_fmt", "rgb24", "-f", "rawvideo", "-"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE)
    imgs, size = [], w * h * 3
    while True:
        buf = proc.stdout.read(size)
        if len(buf) < size:
            break
        imgs.append(np.frombuffer(buf, np.uint8).reshape(h, w, 3))
    if proc.wait() != 0:
        raise RuntimeError("ffmpeg fps pipe failed")
    return None, imgs


def run_seek_per_frame(path: Path):
    """PyAV: for every target, seek to the keyframe at or before it and decode up to it."""
    info = probe(path)
    targets = target_times(info["duration_s"], 1.0)
    w, h = output_size(info["width"], info["height"], 360)
    times, imgs = [], []
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        s.thread_type = "AUTO"
        tb = float(s.time_base)
        for t in targets:
            c.seek(int(t / tb), stream=s, backward=True)
            prev = None
            for f in c.decode(s):
                if f.time > t + 1e-9:
                    prev = prev or f
                    break
                prev = f
            if prev is None:
                continue
            times.append(float(prev.time))
            imgs.append(prev.to_ndarray(format="rgb24", width=w, height=h, interpolation="AREA"))
    return times, imgs


def run_decord_threads(path: Path):
    """decord with its own thread choice (num_threads=0) instead of evoke's num_threads=1."""
    import decord
    info = probe(path)
    targets = target_times(info["duration_s"], 1.0)
    w, h = output_size(info["width"], info["height"], 360)
    vr = decord.VideoReader(str(path), width=w, height=h, num_threads=0)
    starts = vr.get_frame_timestamp(np.arange(len(vr)))[:, 0]
    idx = np.maximum(np.searchsorted(starts, targets + 1e-9, side="right") - 1, 0)
    return [float(starts[i]) for i in idx], [vr[int(i)].asnumpy() for i in idx]


def decord_available() -> bool:
    try:
        import decord  # noqa: F401
    except ImportError:
        return False
    return True


def sampler_counts(path: Path) -> dict:
    """How many frames evoke's PyAV sampler decodes and how many seeks it makes (untimed run)."""
    counts = {"decoded": 0, "seeks": -1}  # the constructor's initial "seek" is not a seek
    dec, seek = F._PyAVSampler._decode_one, F._PyAVSampler._seek

    def counting_dec(self):
        counts["decoded"] += 1
        return dec(self)

    def counting_seek(self, t):
        counts["seeks"] += 1
        return seek(self, t)

    F._PyAVSampler._decode_one, F._PyAVSampler._seek = counting_dec, counting_seek
    try:
        n_out = sum(1 for _ in sample_frames(path))
    finally:
        F._PyAVSampler._decode_one, F._PyAVSampler._seek = dec, seek
    with av.open(str(path)) as c:
        total = c.streams.video[0].frames
    return {**counts, "decoded_fraction": counts["decoded"] / total if total else None,
            "frames_in_file": total, "frames_out": n_out}


def stage_breakdown(path: Path, reps: int) -> dict:
    """Best-of wall times of the parts of sample_frames that are not decoding."""
    info = probe(path)
    w, h = output_size(info["width"], info["height"], 360)
    with av.open(str(path)) as c:
        frame = next(c.decode(video=0))
        conv = best_of([measure(lambda: [frame.to_ndarray(format="rgb24", width=w, height=h,
                                                          interpolation="AREA") for _ in range(60)])
                        for _ in range(reps)])
    return {
        "probe_s": best_of([measure(lambda: probe(path)) for _ in range(reps)])["wall_s"],
        "packet_scan_s": best_of([measure(lambda: video_packet_times(path)) for _ in range(reps)])["wall_s"],
        "rgb_scale_60_frames_s": conv["wall_s"],
    }


def profile_sampler(path: Path, dest: Path) -> str:
    prof = cProfile.Profile()
    prof.enable()
    for _ in sample_frames(path):
        pass
    prof.disable()
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(18)
    text = buf.getvalue()
    dest.write_text(text)
    return text


# --------------------------------------------------------------------------- benchmarks


def run_skip_nonref(path: Path):
    from proposals import sample_frames_skip_nonref
    out = [(ft, img) for _, _, ft, img in sample_frames_skip_nonref(path, 1.0, 360)]
    return [o[0] for o in out], [o[1] for o in out]


def bench_frames(out: Path, seconds: int, reps: int, profile: bool, proposals: bool) -> dict:
    methods = {
        "evoke pyav (default)": lambda p: run_evoke(p, "pyav"),
    }
    if proposals:
        methods["evoke pyav, skip unneeded non-ref (proposal)"] = run_skip_nonref
    if decord_available():
        methods["evoke decord backend"] = lambda p: run_evoke(p, "decord")
        methods["decord num_threads=0 (context)"] = run_decord_threads
    methods["ffmpeg fps=1 raw pipe (context)"] = run_ffmpeg_fps
    methods["pyav seek per frame (context)"] = run_seek_per_frame

    results = {}
    for gop, target_key in ((250, "frames_g250"), (60, "frames_g60")):
        path = make_segment(out, seconds, gop)
        info = probe(path)
        key_s = info["keyframe_interval_s"]
        log(f"frames: {path.name} ({seconds} s, keyframes every {key_s:.2f} s), load {loadavg()}")
        targets = target_times(info["duration_s"], 1.0)
        exact = exact_frame_times(path, targets)
        runs = {"ffmpeg -f null (reference)": []} | {m: [] for m in methods}
        outputs = {}
        null_decode(path)  # warm the page cache
        for rep in range(reps):
            runs["ffmpeg -f null (reference)"].append(measure(lambda: null_decode(path)))
            for name, fn in methods.items():
                r = measure(lambda: fn(path))
                outputs.setdefault(name, r.pop("value"))
                r.pop("value", None)
                runs[name].append(r)
        ref = best_of(runs["ffmpeg -f null (reference)"])
        exact_imgs = outputs["evoke pyav (default)"][1]
        rows = {}
        for name, rs in runs.items():
            b = best_of(rs)
            row = {**b, "ratio_wall": b["wall_s"] / ref["wall_s"], "ratio_cpu": b["cpu_s"] / ref["cpu_s"]}
            if name in outputs:
                times, imgs = outputs[name]
                row["n_frames"] = len(imgs)
                if times is not None:
                    n = min(len(times), len(exact))
                    row["exact_frames"] = int(np.sum(np.abs(np.asarray(times[:n]) - exact[:n]) < 1e-6))
                n = min(len(imgs), len(exact_imgs))
                row["mean_abs_diff_vs_exact"] = float(np.mean([
                    np.mean(np.abs(a.astype(np.int16) - b.astype(np.int16)))
                    for a, b in zip(imgs[:n], exact_imgs[:n])
                    if a.shape == b.shape
                ] or [np.nan]))
            rows[name] = row
        main = rows["evoke pyav (default)"]
        results[f"g{gop}"] = {
            "file": path.name,
            "seconds": seconds,
            "keyframe_interval_s": key_s,
            "targets": len(targets),
            "target_ratio": TARGETS[target_key],
            "ratio": main["ratio_wall"],
            "ratio_cpu": main["ratio_cpu"],
            "meets_target": main["ratio_wall"] <= TARGETS[target_key],
            "methods": rows,
            "sampler": sampler_counts(path),
            "breakdown": stage_breakdown(path, reps),
            "loadavg_after": loadavg(),
        }
        if profile:
            dest = out / f"profile_frames_g{gop}.txt"
            profile_sampler(path, dest)
            results[f"g{gop}"]["profile_file"] = dest.name
        log(f"  evoke pyav {main['wall_s']:.2f} s = {main['ratio_wall']:.2f}x of null decode "
            f"{ref['wall_s']:.2f} s (cpu {main['ratio_cpu']:.2f}x)")
    return results


def _evoke_cli() -> list[str]:
    script = Path(sys.executable).with_name("evoke")
    return [str(script)] if script.exists() else [sys.executable, "-m", "evoke"]


def _vm_hwm(pid: int) -> int | None:
    """The kernel's peak resident set size (VmHWM) of one process, in bytes; None once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def run_with_peak_rss(cmd: list[str], interval: float = 0.05) -> dict:
    """Run ``cmd``; its wall and CPU time and three views of its peak memory.

    * ``peak_rss_bytes``: the largest of the three below (the headline figure);
    * ``peak_rss_vmhwm_bytes``: the process's own high-water mark (``VmHWM``, read
      while it runs; monotonic, so the last read is the peak up to ~interval
      before it exits);
    * ``peak_rss_wait4_bytes``: ``ru_maxrss`` from ``wait4``, the largest of the
      process and its waited-for children (a child started with vfork + exec
      inherits its parent's high-water mark here, so this is never a sum);
    * ``peak_rss_polled_tree_bytes``: the largest sum of the RSS of the process
      and all its children seen by polling every ``interval`` seconds.
    """
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    trace, hwm, stop = [], [0], threading.Event()
    ps = psutil.Process(proc.pid)

    def poll():
        while not stop.is_set():
            h = _vm_hwm(proc.pid)
            if h is not None:
                hwm[0] = max(hwm[0], h)
            try:
                rss = ps.memory_info().rss + sum(c.memory_info().rss for c in ps.children(recursive=True))
            except psutil.Error:
                rss = None
            if rss is not None and rss > 0:
                trace.append((time.perf_counter() - t0, rss))
            stop.wait(interval)

    th = threading.Thread(target=poll, daemon=True)
    th.start()
    output = proc.stdout.read()
    stop.set()  # stop polling before the zombie is reaped (its /proc entry goes with it)
    th.join()
    _, status, ru = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed ({proc.returncode}): {output.decode(errors='replace')[-2000:]}")
    # a coarse trace for the results: the largest polled RSS in each tenth of the run
    tenths = []
    for k in range(10):
        inside = [r for t, r in trace if wall * k / 10 <= t < wall * (k + 1) / 10]
        tenths.append(round(max(inside) / 2**20, 1) if inside else None)
    return {
        "wall_s": wall,
        "cpu_s": ru.ru_utime + ru.ru_stime,
        "peak_rss_bytes": max(hwm[0], ru.ru_maxrss * 1024, max((r for _, r in trace), default=0)),
        "peak_rss_vmhwm_bytes": hwm[0],
        "peak_rss_wait4_bytes": ru.ru_maxrss * 1024,  # KiB on Linux
        "peak_rss_polled_tree_bytes": max((r for _, r in trace), default=0),
        "max_rss_mib_per_tenth": tenths,
        "output": output.decode(errors="replace").strip()[-500:],
    }


def bench_memory(out: Path, seg_seconds: int, copies: int, ratio_copies: int, proposals: bool = False) -> dict:
    """Peak RSS and wall time of ``evoke frames extract`` on ``copies`` x the segment (2 h in the full run).

    The ratio to the null decode is measured on ``ratio_copies`` x the segment
    (10 min in the full run) so both decodes of it fit the time budget; 0 skips it,
    ``ratio_copies == copies`` measures it on the long file itself.
    """
    seg = make_segment(out, seg_seconds, 250)
    settings = validate_config({"manifest": "-"})["frames"]
    workdir = out / "memory"

    def frames_stage(video: Path, proposal: bool = False) -> tuple[dict, list[str], int]:
        shutil.rmtree(workdir, ignore_errors=True)
        workdir.mkdir()
        dest = workdir / f"{video.stem}.h5"
        args = ["frames", "extract", "--input", str(video), "--out", str(dest), "--settings", json.dumps(settings)]
        cmd = [*_evoke_cli(), *args]
        if proposal:  # the same command with bench/proposals.py's sampler patched in
            code = ("import sys; sys.path.insert(0, sys.argv[1]); import proposals, evoke.frames as F; "
                    "F.sample_frames = proposals.sample_frames_skip_nonref; from evoke.cli import main; "
                    "sys.exit(main(sys.argv[2:]))")
            cmd = [sys.executable, "-c", code, str(Path(__file__).resolve().parent), *args]
        stage = run_with_peak_rss(cmd)
        h5_bytes = dest.stat().st_size
        shutil.rmtree(workdir, ignore_errors=True)
        return stage, cmd, h5_bytes

    t0 = time.perf_counter()
    existed = (out / f"{seg.stem}_x{copies}.mp4").is_file()
    long = make_long(out, seg, copies)
    concat_s = None if existed else time.perf_counter() - t0
    info = probe(long)
    log(f"memory: {long.name} ({info['duration_s'] / 3600:.2f} h, {long.stat().st_size / 2**20:.0f} MiB), "
        f"load {loadavg()}")
    # what the evoke command line costs before any frame is decoded (imports of every command group)
    baseline = run_with_peak_rss([*_evoke_cli(), "--version"])
    baseline = {k: baseline[k] for k in ("wall_s", "cpu_s", "peak_rss_bytes")}
    log(f"  evoke --version: {baseline['wall_s']:.1f} s, peak RSS {baseline['peak_rss_bytes'] / 2**20:.0f} MiB")
    stage, cmd, h5_bytes = frames_stage(long)
    log(f"  frames extract: {stage['wall_s']:.0f} s, peak RSS {stage['peak_rss_bytes'] / 2**20:.0f} MiB")
    result = {
        "file": long.name,
        "duration_s": info["duration_s"],
        "size_bytes": long.stat().st_size,
        "made_by": f"concat demuxer, -c copy, {copies} x {seg.name}",
        "concat_s": concat_s,
        "command": " ".join(Path(c).name if i == 0 else c for i, c in enumerate(cmd)),
        "frames_stage": stage,
        "cli_baseline": baseline,
        "h5_bytes": h5_bytes,
        "target_gib": TARGETS["memory_gib"],
        "peak_rss_gib": stage["peak_rss_bytes"] / GIB,
        "meets_target": stage["peak_rss_bytes"] < TARGETS["memory_gib"] * GIB,
        "loadavg_after": loadavg(),
    }
    if ratio_copies:
        rfile = long if ratio_copies == copies else make_long(out, seg, ratio_copies)
        rinfo = probe(rfile)
        log(f"  ratio on {rfile.name} ({rinfo['duration_s'] / 60:.0f} min): null decode, then frames extract")
        ref = measure(lambda: null_decode(rfile))
        ref.pop("value")
        rstage = stage if rfile == long else frames_stage(rfile)[0]
        result["ratio_file"] = {"file": rfile.name, "duration_s": rinfo["duration_s"]}
        result["ratio_frames_stage"] = {k: rstage[k] for k in ("wall_s", "cpu_s", "peak_rss_bytes")}
        result["null_decode"] = ref
        result["ratio"] = rstage["wall_s"] / ref["wall_s"]
        result["ratio_cpu"] = rstage["cpu_s"] / ref["cpu_s"]
        log(f"  frames extract {rstage['wall_s']:.0f} s, null decode {ref['wall_s']:.0f} s: {result['ratio']:.2f}x")
        if proposals:
            pstage = frames_stage(rfile, proposal=True)[0]
            result["ratio_frames_stage_proposal"] = {k: pstage[k] for k in ("wall_s", "cpu_s", "peak_rss_bytes")}
            result["ratio_proposal"] = pstage["wall_s"] / ref["wall_s"]
            result["ratio_cpu_proposal"] = pstage["cpu_s"] / ref["cpu_s"]
            log(f"  frames extract, skip-nonref proposal: {pstage['wall_s']:.0f} s: {result['ratio_proposal']:.2f}x")
    return result


def bench_ingest(out: Path, seconds: int, reps: int, proposals: bool) -> dict:
    video = make_with_audio(out, make_segment(out, seconds, 250))
    info = probe(video)
    log(f"ingest: {video.name} (audio {info['audio_codec']}), load {loadavg()}")
    ingest_settings = validate_config({"manifest": "-"})["ingest"]
    frames_settings = validate_config({"manifest": "-"})["frames"]
    work = out / "ingest"
    shutil.rmtree(work, ignore_errors=True)
    row = {"video_id": "bench", "source": str(video), "split": "train"}
    counter = iter(range(10**6))

    def one_ingest():
        videos = work / f"videos{next(counter)}"
        result = ingest_video(row, videos, ingest_settings)
        assert result["status"] == "ok" and result["audio_path"] and result["video_path"], result
        return result, videos / "bench"

    def one_ingest_proposal():
        from proposals import patched_strip_audio
        with patched_strip_audio():
            return one_ingest()

    def one_frames():
        return write_video_frames(video, work / f"frames{next(counter)}.h5", "bench", frames_settings)

    def one_frames_proposal():
        from proposals import sample_frames_skip_nonref
        original, F.sample_frames = F.sample_frames, sample_frames_skip_nonref
        try:
            return one_frames()
        finally:
            F.sample_frames = original

    # the parts of ingest_video that cost time, run the way ingest runs them
    rate = str(ingest_settings["audio_rate"])
    parts = {
        "probe (ffprobe + packet scan)": lambda: probe(video),
        "ffmpeg stream copy to MP4": lambda: ffmpeg(
            "-fflags", "+genpts", "-i", str(video), "-map", "0:v:0", "-c", "copy", "-an", "-sn", "-dn",
            "-movflags", "+faststart", str(work / "part.mp4")),
        "ffmpeg audio to 16 kHz WAV": lambda: ffmpeg(
            "-i", str(video), "-map", "0:a:0", "-vn", "-ac", "1", "-ar", rate, "-c:a", "pcm_s16le",
            str(work / "part.wav")),
        "ffmpeg startup alone (ffmpeg -version)": lambda: subprocess.run(
            ["ffmpeg", "-version"], capture_output=True, check=True),
    }
    runs = {"ingest_video": [], "frames stage (write_video_frames)": []}
    if proposals:
        runs["ingest_video, one-pass strip_audio (proposal)"] = []
        runs["frames stage, skip unneeded non-ref (proposal)"] = []
    runs |= {k: [] for k in parts}
    fns = {"ingest_video": one_ingest, "frames stage (write_video_frames)": one_frames,
           "ingest_video, one-pass strip_audio (proposal)": one_ingest_proposal,
           "frames stage, skip unneeded non-ref (proposal)": one_frames_proposal, **parts}
    outputs = {}
    work.mkdir(parents=True)
    for _ in range(reps):
        for name in runs:
            r = measure(fns[name])
            outputs.setdefault(name, r.pop("value"))
            runs[name].append(r)
    made, folder = outputs["ingest_video"]
    sizes = {p.name: p.stat().st_size for p in folder.iterdir()}
    if proposals:  # the proposal must write the same files (the WAV byte for byte)
        _, pfolder = outputs["ingest_video, one-pass strip_audio (proposal)"]
        same_wav = (pfolder / "audio.wav").read_bytes() == (folder / "audio.wav").read_bytes()
        psizes = {p.name: p.stat().st_size for p in pfolder.iterdir() if p.name != "probe.json"}
    shutil.rmtree(work, ignore_errors=True)
    best = {k: best_of(v) for k, v in runs.items()}
    ref = best["frames stage (write_video_frames)"]
    rows = {k: {**b, "ratio_wall": b["wall_s"] / ref["wall_s"], "ratio_cpu": b["cpu_s"] / ref["cpu_s"]}
            for k, b in best.items()}
    ratio = rows["ingest_video"]["ratio_wall"]
    log(f"  ingest {best['ingest_video']['wall_s']:.2f} s = {ratio:.3f}x of frames stage {ref['wall_s']:.2f} s")
    result = {
        "file": video.name,
        "seconds": seconds,
        "settings": {k: ingest_settings[k] for k in ("local_files", "audio_rate")},
        "ratio": ratio,
        "ratio_cpu": rows["ingest_video"]["ratio_cpu"],
        "target_ratio": TARGETS["ingest"],
        "meets_target": ratio < TARGETS["ingest"],
        "rows": rows,
        "outputs": sizes,
        "has_audio": made["has_audio"],
        "loadavg_after": loadavg(),
    }
    if proposals:
        result["proposal_same_outputs"] = {"wav_identical": same_wav,
                                           "sizes": psizes, "sizes_current": sizes}
        # both proposals applied: a faster frames stage makes ingest's share larger
        both = rows["ingest_video, one-pass strip_audio (proposal)"]["wall_s"] / \
            rows["frames stage, skip unneeded non-ref (proposal)"]["wall_s"]
        cur_vs_new = rows["ingest_video"]["wall_s"] / rows["frames stage, skip unneeded non-ref (proposal)"]["wall_s"]
        result["ratio_with_proposals"] = {"one-pass ingest / skip-nonref frames": both,
                                          "current ingest / skip-nonref frames": cur_vs_new}
    return result


# --------------------------------------------------------------------------- before/after in one run


class _Worker:
    """A ``bench/worker.py`` process importing evoke from ``src`` (one tree)."""

    def __init__(self, src: Path):
        env = {**os.environ, "PYTHONPATH": str(src)}
        self.proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("worker.py"))], env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        ready = json.loads(self.proc.stdout.readline())["ready"]
        if not ready.startswith(str(src)):
            raise SystemExit(f"worker imported evoke from {ready}, not from {src}")

    def run(self, **cmd) -> dict:
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"worker failed on {cmd}")
        return json.loads(line)

    def close(self):
        self.proc.stdin.close()
        self.proc.wait()


def tree_at(ref: str, out: Path) -> tuple[Path, str]:
    """``src/`` (and the config schema it reads) of git revision ``ref``, unpacked under ``out``; (src, commit)."""
    sha = subprocess.run(["git", "-C", str(ROOT), "rev-parse", ref], capture_output=True, text=True,
                         check=True).stdout.strip()
    dest = out / f"tree-{sha[:12]}"
    if not (dest / "workflow" / "schemas").is_dir():
        dest.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", sha, "src", "workflow/schemas"], capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    return dest / "src", sha


def bench_before_after(out: Path, ref: str, seconds: int, reps: int) -> dict:
    """The frames and ingest benchmarks for the code at ``ref`` (before) and this tree (after),
    interleaved in one run: each repetition times the null decodes, then each step with both
    trees, so load from elsewhere hits before and after alike. Every output is compared
    between the two (sha256 of the frames and times, of the WAV and the probe row)."""
    g250, g60 = make_segment(out, seconds, 250), make_segment(out, seconds, 60)
    aac = make_with_audio(out, g250)
    before_src, sha = tree_at(ref, out)
    trees = {"before": _Worker(before_src), "after": _Worker(ROOT / "src")}
    work = {k: out / f"work-{k}" for k in trees}
    for d in work.values():
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir()
    steps = {"frames g250": ("frames", g250), "frames g60": ("frames", g60),
             "frames stage": ("frames_stage", aac), "ingest": ("ingest", aac)}
    runs = {"null g250": [], "null g60": []} | {f"{s} {t}": [] for s in steps for t in trees}
    digests: dict[str, set] = {}
    log(f"before/after: {ref} ({sha[:12]}) vs this tree, {reps} repetitions, load {loadavg()}")
    try:
        for rep in range(reps + 1):  # repetition 0 warms both workers and the page cache (not counted)
            for key, path in (("null g250", g250), ("null g60", g60)):
                r = measure(lambda: null_decode(path))
                r.pop("value")
                if rep:
                    runs[key].append(r)
            for step, (fn, path) in steps.items():
                for tree, worker in trees.items():
                    r = worker.run(fn=fn, path=str(path), work=str(work[tree]))
                    digests.setdefault(step, set()).add(r.pop("digest"))
                    if rep:
                        runs[f"{step} {tree}"].append(r)
    finally:
        for w in trees.values():
            w.close()
        for d in work.values():
            shutil.rmtree(d, ignore_errors=True)
    best = {k: best_of(v) for k, v in runs.items()}
    result = {"before": {"ref": ref, "commit": sha}, "reps": reps, "times": best,
              "identical_outputs": {step: len(d) == 1 for step, d in digests.items()}, "ratios": {}}
    for tree in trees:
        ratios = {}
        for g in ("g250", "g60"):
            f, n = best[f"frames {g} {tree}"], best[f"null {g}"]
            ratios[f"frames {g} / null decode"] = {"wall": f["wall_s"] / n["wall_s"], "cpu": f["cpu_s"] / n["cpu_s"]}
        i, st = best[f"ingest {tree}"], best[f"frames stage {tree}"]
        ratios["ingest / frames stage"] = {"wall": i["wall_s"] / st["wall_s"], "cpu": i["cpu_s"] / st["cpu_s"]}
        result["ratios"][tree] = ratios
        log("  " + tree + ": " + ", ".join(f"{k} {v['wall']:.3f}x (cpu {v['cpu']:.3f}x)" for k, v in ratios.items()))
    result["loadavg_after"] = loadavg()
    return result


# --------------------------------------------------------------------------- report


def machine() -> dict:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    ff = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True).stdout.splitlines()[0]
    versions = {"python": platform.python_version(), "ffmpeg": ff, "pyav": av.__version__,
                "libavcodec (PyAV)": ".".join(map(str, av.library_versions["libavcodec"])),
                "numpy": np.__version__, "evoke": evoke.__version__}
    try:
        import decord
        versions["decord"] = decord.__version__
    except ImportError:
        pass
    try:
        import h5py
        versions["h5py"] = h5py.__version__
    except ImportError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "ram_gib": round(psutil.virtual_memory().total / GIB, 1),
            "os": platform.platform(), "versions": versions}


def print_table(results: dict) -> None:
    lines = ["", f"{'benchmark':<48} {'value':>10} {'target':>8}  ok"]

    def row(name, value, target, ok):
        lines.append(f"{name:<48} {value:>10} {target:>8}  {'yes' if ok else 'NO'}")

    fr = {k: v for k, v in results.get("frames", {}).items() if isinstance(v, dict) and "methods" in v}
    if fr:
        for key, r in fr.items():
            row(f"frames {r['keyframe_interval_s']:.1f} s keyframes (x null decode)", f"{r['ratio']:.2f}x",
                f"<={r['target_ratio']}x", r["meets_target"])
        lines.append("")
        lines.append(f"  {'method':<46} {'8.3 s kf':>9} {'2 s kf':>9}   (wall ratio to ffmpeg -f null, best of reps)")
        names = list(next(iter(fr.values()))["methods"])
        for m in names:
            vals = [f"{r['methods'][m]['ratio_wall']:.2f}x" for r in fr.values()]
            lines.append(f"  {m:<46} " + " ".join(f"{v:>9}" for v in vals))
        lines.append("")
    mem = results.get("memory")
    if mem:
        row(f"memory: peak RSS, {mem['duration_s'] / 3600:.1f} h 720p (GiB)", f"{mem['peak_rss_gib']:.2f}",
            f"<{mem['target_gib']}", mem["meets_target"])
        lines.append(f"  frames stage on it: {mem['frames_stage']['wall_s']:.0f} s wall; `evoke --version` alone: "
                     f"{mem['cli_baseline']['peak_rss_bytes'] / 2**20:.0f} MiB, {mem['cli_baseline']['wall_s']:.1f} s")
        if "ratio" in mem:
            row(f"frames stage on {mem['ratio_file']['duration_s'] / 60:.0f} min (x null decode)",
                f"{mem['ratio']:.2f}x", "", True)
        if "ratio_proposal" in mem:
            row("  the same, skip-nonref proposal", f"{mem['ratio_proposal']:.2f}x", "", True)
    ba = results.get("before_after")
    if ba:
        lines.append(f"before/after (before = {ba['before']['ref']}, {ba['before']['commit'][:12]}; "
                     f"identical outputs: {ba['identical_outputs']})")
        for tree, ratios in ba["ratios"].items():
            for name, v in ratios.items():
                lines.append(f"  {tree:<7} {name:<38} {v['wall']:7.3f}x  (cpu {v['cpu']:.3f}x)")
    ing = results.get("ingest")
    if ing:
        row("ingest (x frames stage, same file)", f"{ing['ratio']:.3f}x", f"<{ing['target_ratio']}x",
            ing["meets_target"])
        for name, r in ing["rows"].items():
            lines.append(f"  {name:<46} {r['wall_s']:6.2f} s {r['ratio_wall']:6.3f}x  (cpu {r['ratio_cpu']:.3f}x)")
        for name, v in ing.get("ratio_with_proposals", {}).items():
            lines.append(f"  {name:<46} {v:15.3f}x")
    print("\n".join(lines))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", choices=["frames", "memory", "ingest", "before_after"], action="append",
                    help="run only this benchmark (repeatable)")
    ap.add_argument("--quick", action="store_true", help="smoke run: 10 s files, a 5 min long file, 1 repetition")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out", help="videos, profiles, results.json")
    ap.add_argument("--reps", type=int, default=None, help="repetitions per timing (default 3; 1 with --quick)")
    ap.add_argument("--ratio-minutes", type=int, default=None,
                    help="length of the file the memory benchmark's ratio to the null decode is measured on "
                         "(default 10; 1 with --quick; 0 skips it; 120 uses the 2-hour file)")
    ap.add_argument("--proposals", action="store_true",
                    help="also time the src changes proposed in bench/proposals.py (patched in, bench only)")
    ap.add_argument("--wait-idle", type=float, default=0, metavar="SECONDS",
                    help="before each benchmark, wait up to this long for the load average to drop "
                         "below half the cores (the machine may be shared)")
    ap.add_argument("--profile", action="store_true", help="write cProfile tables of sample_frames to --out")
    ap.add_argument("--before", metavar="GIT_REF", default=None,
                    help="with --only before_after: time the frames and ingest benchmarks for the src/ of "
                         "this git revision and for this tree, interleaved in one run")
    args = ap.parse_args(argv)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    only = set(args.only or ["frames", "memory", "ingest"])
    reps = args.reps or (1 if args.quick else 3)
    seconds = 10 if args.quick else 60
    copies = 30 if args.quick else 120  # long file: copies x segment (5 min quick, 2 h full)
    ratio_minutes = args.ratio_minutes if args.ratio_minutes is not None else (1 if args.quick else 10)
    ratio_copies = min(copies, round(ratio_minutes * 60 / seconds))

    results = {
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "quick": args.quick,
        "reps": reps,
        "machine": machine(),
        "loadavg_start": loadavg(),
    }
    t0 = time.perf_counter()
    waited = {}

    def idle(name):
        if args.wait_idle:
            waited[name] = round(wait_until_idle(args.wait_idle))
        results.setdefault("loadavg_before", {})[name] = loadavg()

    if "frames" in only:
        idle("frames")
        results["frames"] = bench_frames(out, seconds, reps, args.profile, args.proposals)
    if "ingest" in only:
        idle("ingest")
        results["ingest"] = bench_ingest(out, seconds, reps, args.proposals)
    if "before_after" in only:
        if not args.before:
            raise SystemExit("--only before_after needs --before GIT_REF")
        idle("before_after")
        results["before_after"] = bench_before_after(out, args.before, seconds, reps)
    if "memory" in only:
        idle("memory")
        results["memory"] = bench_memory(out, seconds, copies, ratio_copies, args.proposals)
    results["waited_for_idle_s"] = waited
    results["total_s"] = time.perf_counter() - t0
    for name in ("frames", "ingest", "memory", "before_after"):
        if name in results:  # each section says when and how it was made (sections of other runs are kept)
            results[name] |= {"date": results["date"], "command": results["command"],
                              "loadavg_before": results["loadavg_before"][name]}
    name = "results_quick.json" if args.quick else "results.json"
    path = out / name
    if args.only and path.is_file():
        previous = json.loads(path.read_text())
        results = {**{k: previous[k] for k in ("frames", "ingest", "memory", "before_after") if k in previous},
                   **results}
    path.write_text(json.dumps(results, indent=1, default=float))
    print_table(results)
    sections = [k for k in ("frames", "ingest", "memory", "before_after") if k in results]
    print(f"\nwritten: {path} (sections: {', '.join(sections)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
