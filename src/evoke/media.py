"""Thin wrappers around the ffmpeg/ffprobe binaries and PyAV's demuxer.

:func:`probe` reads a file in-process with PyAV (the PyAV wheel's FFmpeg);
the ``ffprobe`` binary runs only when PyAV cannot open a file, so that an
unreadable file keeps ffprobe's one-line reason. Starting ffprobe cost about
0.1 s a video, a third of ingest (bench/RESULTS.md).

Everything here raises :class:`MediaError` with a one-line message that names
the file and what is wrong with it; stage code records that message as the
video's failure.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from evoke import EvokeError

log = logging.getLogger(__name__)

class MediaError(EvokeError):
    """A media file cannot be read or converted (the data's fault: the video fails)."""


class EnvironmentFailure(EvokeError):
    """The machine, not the data, failed (a full disk, a quota, a read-only or lost file
    system): the job stops with this one-line message and nothing is recorded against
    the video, so a rerun retries it."""


# what tools print when the disk, not the input, is the problem (ffmpeg can exit 0 after it)
_ENVIRONMENT_MESSAGES = re.compile(
    r"No space left on device|Disk quota exceeded|Read-only file system|Errno (28|122|30)\b", re.I)


def environment_message(text: str) -> str | None:
    """The first line of ``text`` that reports a full disk, quota or read-only file system."""
    for line in text.splitlines():
        if _ENVIRONMENT_MESSAGES.search(line):
            return line.strip()
    return None


def require_binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise EvokeError(
            f"'{name}' not found on PATH: install it (Debian: apt-get install ffmpeg) "
            "or run scripts/setup.sh"
        )
    return path


def run_ffmpeg(args: list[str], what: str, path: Path, name: str | None = None) -> None:
    """Run ``ffmpeg -nostdin -v error -y ARGS``; raise MediaError with its last stderr line.

    ``name`` is how the file is called in the message (default: its file name). A
    full disk (or quota, or read-only file system) raises :class:`EnvironmentFailure`
    even when ffmpeg exits 0, which it does after failing to write a trailer."""
    cmd = [require_binary("ffmpeg"), "-nostdin", "-hide_banner", "-v", "error", "-y", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    env = environment_message(proc.stderr)
    if env:
        raise EnvironmentFailure(f"{name or path.name}: {what}: the disk failed, not the video: {env}")
    if proc.returncode != 0:
        msg = _last_line(proc.stderr).replace(str(path), name or path.name)
        raise MediaError(f"{name or path.name}: {what} failed: {msg}")


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "no message"


def _rate(text: str | None) -> float | None:
    if not text or text in ("0/0", "N/A"):
        return None
    try:
        value = float(Fraction(text))
    except (ValueError, ZeroDivisionError):
        return None
    return value if value > 0 else None


def _float(text) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if np.isfinite(value) else None


def clockwise_rotation(angle: float | None) -> int:
    """``angle`` (degrees, clockwise) rounded to 0, 90, 180 or 270; 0 for None."""
    if angle is None:
        return 0
    return int(round(angle / 90.0)) * 90 % 360


def stream_rotation(stream: dict) -> int:
    """Clockwise display rotation in degrees (0, 90, 180, 270) from ffprobe's stream info.

    ffprobe reports the display matrix angle counter-clockwise ("rotation": -90
    means the picture must be turned 90 degrees clockwise for display).
    """
    angle = None
    for sd in stream.get("side_data_list", []) or []:
        if "rotation" in sd:
            angle = -float(sd["rotation"])
    if angle is None and "rotate" in (stream.get("tags") or {}):
        angle = float(stream["tags"]["rotate"])
    return clockwise_rotation(angle)


def _check_file(path: Path, name: str) -> None:
    if not path.exists():
        raise MediaError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise MediaError(f"{name}: empty file (0 bytes)")


def ffprobe(path: Path, name: str | None = None) -> dict:
    """ffprobe's JSON (format and streams) for ``path``; MediaError if it is not media."""
    name = name or path.name
    _check_file(path, name)
    cmd = [
        require_binary("ffprobe"), "-v", "error", "-print_format", "json",
        "-show_format", "-show_streams", str(path),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        msg = _last_line(proc.stderr).replace(f"{path}: ", "")
        raise MediaError(f"{name}: not a readable media file: {msg}")
    return json.loads(proc.stdout or "{}")


def _seconds(value, time_base) -> str | None:
    """A duration in stream ticks as ffprobe prints it (seconds, a string), None when unknown."""
    if value is None or not time_base:
        return None
    return f"{value * (time_base.numerator / time_base.denominator):.6f}"  # ffprobe's ts * av_q2d(tb)


def _ratio_text(rate) -> str:
    return f"{rate.numerator}/{rate.denominator}" if rate else "0/0"


def pyav_streams(container: av.container.InputContainer) -> dict:
    """The parts of ffprobe's JSON (``-show_format -show_streams``) that :func:`probe` reads,
    from an open PyAV container: the same keys and the same units, so both describe a file
    alike. ``tests/test_media.py`` compares them on real files. The display rotation, which
    PyAV has no stream getter for, is not included (:func:`probe` reads it off a decoded frame)."""
    streams = []
    for s in container.streams:
        d = {"index": s.index, "codec_type": s.type,
             "disposition": {"attached_pic": int(bool(s.disposition & av.stream.Disposition.attached_pic))}}
        cc = s.codec_context
        if cc is not None and s.type in ("video", "audio"):
            d["codec_name"] = cc.codec.canonical_name
            d["duration"] = _seconds(s.duration, s.time_base)
            if s.type == "video":
                d |= {"width": cc.width, "height": cc.height, "avg_frame_rate": _ratio_text(s.average_rate),
                      "r_frame_rate": _ratio_text(s.base_rate)}
            else:
                d |= {"channels": cc.layout.nb_channels, "sample_rate": str(cc.sample_rate)}
        streams.append(d)
    duration = container.duration  # AV_TIME_BASE (microsecond) ticks
    fmt = {"format_name": container.format.name,
           "duration": f"{duration / 1e6:.6f}" if duration is not None else None}
    return {"format": fmt, "streams": streams}


def _packet_times(container, stream) -> tuple[np.ndarray, np.ndarray, float]:
    tb = float(stream.time_base) if stream.time_base else 0.0
    times, keys = [], []
    for packet in container.demux(stream):
        ts = packet.pts if packet.pts is not None else packet.dts
        if ts is None or packet.size == 0:
            continue
        times.append(ts * tb)
        keys.append(packet.is_keyframe)
    order = np.argsort(times, kind="stable")
    return np.asarray(times, dtype=np.float64)[order], np.asarray(keys, dtype=bool)[order], tb


def video_packet_times(path: Path, name: str | None = None) -> tuple[np.ndarray, np.ndarray, float]:
    """Presentation times (s) of every video packet, sorted, their keyframe flags, and the time base.

    Demuxes without decoding (cheap). Packets without timestamps are skipped.
    """
    try:
        with av.open(str(path)) as container:
            return _packet_times(container, container.streams.video[0])
    except (av.FFmpegError, IndexError) as exc:
        raise MediaError(f"{name or path.name}: cannot demux video packets: {exc}") from exc


def decoded_end_time(path: Path, key_times: np.ndarray, time_base: float) -> float | None:
    """Presentation time (s) of the last frame that decodes, or None when none does.

    Decodes only from the last keyframe on (one group of pictures), skipping
    packets that do not decode, and steps back a keyframe at a time while nothing
    decodes there (a truncated or damaged last group).
    """
    return _last_decoded(path, key_times, time_base)[0]


def _last_decoded(path: Path, key_times: np.ndarray, time_base: float) -> tuple[float | None, int | None]:
    """:func:`decoded_end_time` and the display rotation (degrees counter-clockwise, as
    ffprobe reports it) of the frames decoded there; (None, None) when none decodes."""
    for key in key_times[::-1][:4]:
        last, rotation = None, None
        try:
            with av.open(str(path)) as container:
                stream = container.streams.video[0]
                stream.thread_type = "AUTO"  # frame threads: the same frames (checked on the bad-input corpus)
                if time_base > 0:
                    container.seek(int(round(key / time_base)), stream=stream, backward=True)
                for packet in container.demux(stream):  # the last, empty packet flushes the decoder
                    try:
                        frames = packet.decode()
                    except av.FFmpegError:
                        continue  # a damaged packet costs only its own frame
                    for frame in frames:
                        if frame.time is not None:
                            last = float(frame.time) if last is None else max(last, float(frame.time))
                            rotation = frame.rotation
        except (av.FFmpegError, IndexError):
            pass  # the file ends in a way the demuxer cannot read past: what decoded counts
        if last is not None:
            return last, rotation
    return None, None


def is_variable_rate(times: np.ndarray, time_base: float) -> bool:
    """True when more than 1% of frame intervals differ from the median interval
    by more than 10% (and more than two time-base ticks, to ignore rounding)."""
    if times.size < 3:
        return False
    deltas = np.diff(times)
    deltas = deltas[deltas > 0]
    if deltas.size < 2:
        return False
    median = float(np.median(deltas))
    tolerance = max(0.1 * median, 2 * time_base)
    return bool(np.mean(np.abs(deltas - median) > tolerance) > 0.01)


def probe(path: Path, name: str | None = None, via_ffprobe: bool = False) -> dict:
    """Describe a video file.

    Returns ``duration_s`` (the video stream's declared duration: what the header
    says), ``decoded_duration_s`` (from the first packet to the end of the last
    frame that actually decodes: shorter than ``duration_s`` when the file was cut
    mid-stream), ``fps_avg, fps_is_variable, n_frames, width, height,
    rotation`` (clockwise degrees), ``display_width, display_height`` (after
    rotation), ``video_codec, audio_codec, audio_channels, audio_sample_rate,
    has_audio, container, size_bytes, keyframe_interval_s, audio_duration_s``.

    Reads the file in-process with PyAV. Only when PyAV cannot open it (or
    ``via_ffprobe``) does the ``ffprobe`` binary describe the streams (its
    message names what is wrong; if it can read the file after all, the packet
    scan decides).

    Raises MediaError for empty files, files that are not media and files
    without a video stream.
    """
    name = name or path.name
    _check_file(path, name)
    scan: tuple | MediaError | None = None  # the video packet scan, done while the file is open
    container = None
    try:
        if not via_ffprobe:
            container = av.open(str(path))
    except (av.FFmpegError, UnicodeDecodeError) as exc:
        log.info("%s: PyAV cannot open it (%s); asking ffprobe", name, exc)
    if container is None:
        info, from_ffprobe = ffprobe(path, name), True
    else:
        with container:
            info, from_ffprobe = pyav_streams(container), False
            if container.streams.video:
                try:
                    scan = _packet_times(container, container.streams.video[0])
                except av.FFmpegError as exc:
                    scan = MediaError(f"{name}: cannot demux video packets: {exc}")
    streams = info.get("streams", [])
    fmt = info.get("format", {})
    video = [
        s for s in streams
        if s.get("codec_type") == "video" and not (s.get("disposition") or {}).get("attached_pic")
    ]
    if not video:
        kinds = sorted({s.get("codec_type", "?") for s in streams}) or ["none"]
        raise MediaError(f"{name}: no video stream (streams: {', '.join(kinds)})")
    v = video[0]
    audio = [s for s in streams if s.get("codec_type") == "audio"]
    if isinstance(scan, MediaError):
        raise scan
    times, keys, tb = scan if scan is not None else video_packet_times(path, name)
    if times.size == 0:
        raise MediaError(f"{name}: the video stream has no frames")
    avg = _rate(v.get("avg_frame_rate")) or _rate(v.get("r_frame_rate"))
    last_frame = 1.0 / avg if avg else 0.0
    # the video stream's own duration: the container's may include a longer audio track
    duration = _float(v.get("duration")) or _float(fmt.get("duration"))
    if duration is None or duration <= 0:
        duration = float(times[-1] - times[0] + last_frame)
    if times.size > 1:
        span = float(times[-1] - times[0])
        measured = (times.size - 1) / span if span > 0 else None
        avg = measured or avg
    key_times = times[keys]
    last_decoded, frame_rotation = _last_decoded(path, key_times if key_times.size else times[:1], tb)
    if last_decoded is None:
        raise MediaError(f"{name}: no frame of the video stream decodes")
    frame_s = 1.0 / avg if avg else last_frame
    decoded_duration = max(last_decoded - float(times[0]) + frame_s, 0.0)
    # ffprobe's JSON has the stream's display matrix; PyAV gives it on each decoded frame
    rotation = stream_rotation(v) if from_ffprobe else \
        clockwise_rotation(-frame_rotation if frame_rotation else None)
    width, height = int(v.get("width") or 0), int(v.get("height") or 0)
    if width <= 0 or height <= 0:
        raise MediaError(f"{name}: the video stream has no picture size")
    swap = rotation in (90, 270)
    return {
        "duration_s": float(duration),
        "decoded_duration_s": float(min(decoded_duration, duration)) if duration else decoded_duration,
        "fps_avg": float(avg) if avg else None,
        "fps_is_variable": is_variable_rate(times, tb),
        "n_frames": int(times.size),
        "width": width,
        "height": height,
        "rotation": rotation,
        "display_width": height if swap else width,
        "display_height": width if swap else height,
        "video_codec": v.get("codec_name"),
        "audio_codec": audio[0].get("codec_name") if audio else None,
        "audio_channels": int(audio[0].get("channels") or 0) if audio else 0,
        "audio_sample_rate": int(audio[0].get("sample_rate") or 0) if audio else 0,
        # the first audio stream's own duration (else the container's): what a WAV made from it must last
        "audio_duration_s": (_float(audio[0].get("duration")) or _float(fmt.get("duration"))) if audio else None,
        "has_audio": bool(audio),
        "container": fmt.get("format_name"),
        "size_bytes": int(path.stat().st_size),
        "keyframe_interval_s": float(np.mean(np.diff(key_times))) if key_times.size > 1 else None,
    }
