"""Shared fixtures: small real media files made with ffmpeg/PyAV from Debian's opencv-doc clips.

Every test that needs a video asks for one of these; they are built once per
test session in a temporary folder.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
OPENCV_DATA = Path("/usr/share/doc/opencv-doc/examples/data")
VTEST = OPENCV_DATA / "vtest.avi"  # 80 s of pedestrians, 768x576, 10 fps, no audio
MEGAMIND = OPENCV_DATA / "Megamind.avi"  # 11 s trailer, 720x528, 23.976 fps, AC3 audio


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *args], check=True)


def require_media():
    for p in (VTEST, MEGAMIND):
        if not p.exists():
            pytest.fail(f"{p} missing: run scripts/setup.sh (Debian package opencv-doc)")
    if shutil.which("ffmpeg") is None:
        pytest.fail("ffmpeg missing: run scripts/setup.sh")


def write_vfr(path: Path, n_frames: int = 90, size=(320, 240)) -> list[float]:
    """Encode frames of vtest.avi with irregular presentation times; return those times (s).

    Intervals cycle through 20, 60, 33 and 120 ms, with a 0.7 s hold every 25
    frames, so the frame on screen at t = 0, 1, 2 ... is not where a constant
    rate would put it.
    """
    times, t = [], 0.0
    for i in range(n_frames):
        times.append(round(t, 3))
        t += [0.020, 0.060, 0.033, 0.120][i % 4] + (0.7 if i % 25 == 24 else 0.0)
    src = av.open(str(VTEST))
    out = av.open(str(path), "w")
    stream = out.add_stream("libx264", rate=30)
    stream.width, stream.height = size
    stream.pix_fmt = "yuv420p"
    stream.codec_context.time_base = Fraction(1, 1000)
    stream.time_base = Fraction(1, 1000)
    stream.options = {"g": "12", "bf": "0"}
    decoded = src.decode(video=0)
    for ts in times:
        frame = next(decoded).reformat(width=size[0], height=size[1], format="yuv420p")
        frame.pts = int(round(ts * 1000))
        frame.time_base = Fraction(1, 1000)
        for packet in stream.encode(frame):
            out.mux(packet)
    for packet in stream.encode():
        out.mux(packet)
    out.close()
    src.close()
    return times


@pytest.fixture(scope="session")
def media(tmp_path_factory) -> dict[str, Path]:
    """Real and broken media files, built once: see the keys below."""
    require_media()
    d = tmp_path_factory.mktemp("media")
    m = {}
    m["cfr"] = d / "cfr.mp4"  # 6 s 25 fps 320x240 H.264 with AAC audio, keyframes every 1 s
    ffmpeg("-i", str(MEGAMIND), "-t", "6", "-vf", "scale=320:240,fps=25", "-c:v", "libx264",
           "-preset", "veryfast", "-g", "25", "-keyint_min", "25", "-sc_threshold", "0", "-c:a", "aac", "-ac", "2", str(m["cfr"]))
    m["noaudio"] = d / "noaudio.mp4"  # 5 s of vtest, no audio
    ffmpeg("-i", str(VTEST), "-t", "5", "-vf", "scale=256:192", "-c:v", "libx264", "-preset",
           "veryfast", "-an", str(m["noaudio"]))
    m["vfr"] = d / "vfr.mp4"
    m["vfr_times"] = write_vfr(m["vfr"])
    m["rotated"] = d / "rotated.mp4"  # cfr.mp4 with a 90-degree display rotation (stream copy)
    ffmpeg("-i", str(m["cfr"]), "-c", "copy", "-metadata:s:v:0", "rotate=90", str(m["rotated"]))
    m["uhd"] = d / "uhd.mp4"  # 2 s of 3840x2160
    ffmpeg("-i", str(VTEST), "-t", "2", "-vf", "scale=3840:2160", "-c:v", "libx264", "-preset",
           "ultrafast", "-an", str(m["uhd"]))
    m["oneframe"] = d / "oneframe.mp4"
    ffmpeg("-i", str(VTEST), "-frames:v", "1", "-vf", "scale=160:120", "-c:v", "libx264", str(m["oneframe"]))
    m["audioonly"] = d / "audioonly.m4a"
    ffmpeg("-i", str(MEGAMIND), "-t", "3", "-vn", "-c:a", "aac", str(m["audioonly"]))
    m["empty"] = d / "empty.mp4"
    m["empty"].write_bytes(b"")
    m["text"] = d / "notes.mp4"
    m["text"].write_text("this is not a video\n" * 20)
    m["truncated"] = d / "truncated.mp4"  # moov at the end, cut in half: unreadable
    data = m["cfr"].read_bytes()
    m["truncated"].write_bytes(data[: len(data) // 2])
    m["truncated_faststart"] = d / "truncated_faststart.mp4"  # moov first, cut: partly decodable
    fast = d / "faststart.mp4"
    ffmpeg("-i", str(m["noaudio"]), "-c", "copy", "-movflags", "+faststart", str(fast))
    data = fast.read_bytes()
    m["truncated_faststart"].write_bytes(data[: int(len(data) * 0.6)])
    return m


def single_thread_last_frame(path: Path, frame_threads: bool = False) -> float | None:
    """Independent reference for where a file's pictures end: the latest frame time (s) of
    every packet decoded from the start, on one thread (or, with ``frame_threads``, FFmpeg's
    frame threads), no seek, no skipping; None when nothing decodes. bench/probe_tail.py
    checks probe against it too."""
    last = None
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        if frame_threads:
            stream.thread_type = "AUTO"
        else:
            stream.codec_context.thread_count = 1
        for packet in c.demux(stream):
            try:
                frames = packet.decode()
            except av.FFmpegError:
                continue
            for f in frames:
                if f.time is not None:
                    last = f.time if last is None else max(last, f.time)
    return last


def reference_frames(path: Path, targets: np.ndarray) -> list[tuple[float, np.ndarray]]:
    """Independent reference: decode every frame in order (no seeking), then take for
    each target the last frame presented at or before it (the first frame before that)."""
    with av.open(str(path)) as c:
        frames = [(float(f.time), f.to_ndarray(format="rgb24")) for f in c.decode(video=0)]
    frames.sort(key=lambda x: x[0])
    times = np.array([t for t, _ in frames])
    out = []
    for t in targets:
        i = max(int(np.searchsorted(times, t + 1e-9, side="right")) - 1, 0)
        out.append(frames[i])
    return out
