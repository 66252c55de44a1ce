"""Thin wrappers around the ffmpeg/ffprobe binaries and PyAV's demuxer.

:func:`probe` reads a file in-process with PyAV (the PyAV wheel's FFmpeg)
in one open: the streams, the video packets, and a decode of the last group
of pictures (for how far the file really decodes). The ``ffprobe`` binary runs
only when PyAV cannot open a file, so that an unreadable file keeps ffprobe's
one-line reason. Starting ffprobe cost about 0.1 s a video, a third of ingest
(bench/RESULTS.md). :func:`probe_packets` adds a digest of the video packets,
with which ingest checks its muted copy without decoding it again.

Everything here raises :class:`MediaError` with a one-line message that names
the file and what is wrong with it; stage code records that message as the
video's failure.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
import struct
import subprocess
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterator, NamedTuple

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
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
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


def _packet_times(container, stream, digest=None, on_packet=None) -> tuple[np.ndarray, np.ndarray, float]:
    tb = float(stream.time_base) if stream.time_base else 0.0
    times, keys = [], []
    for packet in container.demux(stream):
        if on_packet is not None:
            on_packet(packet)
        ts = packet.pts if packet.pts is not None else packet.dts
        if digest is not None and packet.size:
            digest.update(_PACKET_HEAD.pack(_tick(packet.pts), _tick(packet.dts), packet.is_keyframe, packet.size))
            digest.update(packet)
        if ts is None or packet.size == 0:
            continue
        times.append(ts * tb)
        keys.append(packet.is_keyframe)
    order = np.argsort(times, kind="stable")
    return np.asarray(times, dtype=np.float64)[order], np.asarray(keys, dtype=bool)[order], tb


# a packet's timestamps, keyframe flag and size, ahead of its bytes in a packet digest
_PACKET_HEAD = struct.Struct("<qq?q")
_NO_TICK = -(2**63)


def _tick(ts: int | None) -> int:
    return _NO_TICK if ts is None else ts


def _digest(stream) -> "hashlib._Hash":
    """A sha256 that :func:`_packet_times` feeds the video packets to: two streams with equal
    digests hold the same packets (bytes, pts, dts, keyframe flags), in the same order, with
    the same time base and codec extradata, so they decode to the same frames at the same times."""
    cc = stream.codec_context
    h = hashlib.sha256(f"{stream.time_base} {cc.name if cc else None}\n".encode())
    extradata = cc.extradata if cc is not None else None
    h.update(len(extradata or b"").to_bytes(8, "little"))
    h.update(extradata or b"")
    return h


class VideoPackets(NamedTuple):
    """What :func:`probe_packets` learns of a video stream besides the probe row: the number of
    packets with a timestamp, the first one's time (s), the digest of every packet
    (:func:`_digest`; empty when the last group of pictures did not decode to the end of the
    file, so that another file of the same packets could decode further), and the time (s) of
    the last frame that decodes."""

    count: int
    first_s: float
    digest: str
    last_decoded_s: float


def video_packet_times(path: Path, name: str | None = None, on_packet=None) -> tuple[np.ndarray, np.ndarray, float]:
    """Presentation times (s) of every video packet, sorted, their keyframe flags, and the time base.

    Demuxes without decoding (cheap). Packets without timestamps are skipped.
    ``on_packet`` is called with every packet demuxed, in decode order (a caller that needs
    more of the same scan, e.g. :mod:`evoke.frames` finding where the stream splits).
    """
    return _scan_file(path, name, False, on_packet)[:3]


def video_packet_digest(path: Path, name: str | None = None) -> tuple[int, str]:
    """(packets with a timestamp, :func:`_digest` of every packet) of the first video
    stream, by demuxing only; MediaError when it does not demux."""
    times, _, _, hexdigest = _scan_file(path, name, True)
    return times.size, hexdigest


def _scan_file(path: Path, name: str | None, digest: bool, on_packet=None) -> tuple[np.ndarray, np.ndarray, float, str]:
    try:
        with av.open(str(path)) as container:
            return _scan(container, name or path.name, digest, on_packet)
    except (av.FFmpegError, IndexError) as exc:
        raise MediaError(f"{name or path.name}: cannot demux video packets: {exc}") from exc


def _scan(container, name: str, digest: bool, on_packet=None) -> tuple[np.ndarray, np.ndarray, float, str]:
    """:func:`_packet_times` of an open container's first video stream and, with ``digest``, the
    hex :func:`_digest` of its packets ("" without)."""
    stream = container.streams.video[0]
    h = _digest(stream) if digest else None
    try:
        times, keys, tb = _packet_times(container, stream, h, on_packet)
    except av.FFmpegError as exc:
        raise MediaError(f"{name}: cannot demux video packets: {exc}") from exc
    return times, keys, tb, h.hexdigest() if h is not None else ""


def decoded_end_time(path: Path, key_times: np.ndarray, time_base: float) -> float | None:
    """Presentation time (s) of the last frame that decodes, or None when none does.

    Decodes only from the last keyframe on (one group of pictures), skipping
    packets that do not decode, and steps back a keyframe at a time while nothing
    decodes there (a truncated or damaged last group).
    """
    return _last_decoded(path, key_times, time_base)[0]


def demux_from_keyframe(container, stream, key: int, first_key_s: float) -> Iterator[av.Packet]:
    """The packets of ``stream`` from the keyframe whose timestamp is ``key`` (ticks) on, once
    ``container`` was seeked to it (``backward=True``); ``first_key_s``: the stream's first
    keyframe (s), where the stream starts.

    An MP4 or Matroska seek lands on the keyframe asked for. MPEG-TS seeks by byte position
    and can land past it (on H.264 with scene-cut keyframes, 6 of 33 frames-stage targets at 2.9 Hz
    took the next group's first frame; a whole TS file with B-frames failed probe, nothing
    decoding where its last-group decode landed) or before it. Landed before: the packets up
    to the keyframe are passed over (demuxed, never decoded). Landed past: the container is
    seeked again, 1, 2, 4 ... s earlier (down to the start of the stream), and the packets up
    to the keyframe passed over. The frames sampler and probe's last-group decode both read
    through this."""
    tb = float(stream.time_base)
    packets = container.demux(stream)
    back, first = 1.0, True
    for packet in packets:
        ts = packet.pts if packet.pts is not None else packet.dts
        if ts == key:
            yield packet
            break
        if first and ts is not None and ts > key and back < 2 * (key * tb - first_key_s) + 2:
            at = max(key * tb - back, first_key_s - 1.0)
            container.seek(int(round(at / tb)), stream=stream, backward=True)
            back *= 2
            continue  # (the next packet is the first of the new position)
        first = False
    yield from packets

# decoders that honour a change of skip_frame from one packet to the next (probe's last group of
# pictures here, and the frames stage's sampler: evoke.frames imports it)
SKIP_NONREF_CODECS = ("h264", "hevc")


def _last_decoded(path: Path, key_times: np.ndarray, time_base: float,
                  container=None) -> tuple[float | None, int | None, bool]:
    """:func:`decoded_end_time`, the display rotation (degrees counter-clockwise, as
    ffprobe reports it) of the frames decoded there, and whether the answer came from
    the last keyframe on with the demuxer reading to the end (then another file of the
    same packets gives the same answer); (None, None, False) when nothing decodes.

    ``container``: ``path`` already open (its first video stream not yet decoded), used
    for the first try instead of opening the file again. The first try decodes with frame
    threads, and H.264 and HEVC without the non-reference frames that cannot be the latest
    (:func:`_decode_tail`); it counts only when it proves its answer (the frame of the
    highest timestamp came out at a clean end: no decode can go further). Otherwise the
    group decodes whole on one thread, the reference: on a cut or damaged end, frame
    threads lose the frames still inside them (a cut MP4 with B-frames reached 1.6 s with
    them and 1.8 s on one thread), so the answer is always a single-thread full decode's."""
    for i, key in enumerate(key_times[::-1][:4]):
        tail = None
        try:
            if i == 0 and container is not None:
                tail = _decode_tail(container, key, time_base, True, key_times[0])
            else:
                with av.open(str(path)) as c:
                    tail = _decode_tail(c, key, time_base, True, key_times[0])
        except (av.FFmpegError, IndexError):
            pass  # it does not open: try the whole group below
        if tail is None or not tail.proven:
            tail = None
            try:
                with av.open(str(path)) as c:
                    tail = _decode_tail(c, key, time_base, False, key_times[0])
            except (av.FFmpegError, IndexError):
                pass  # it does not open: nothing decodes from this keyframe
        if tail is not None and tail.last is not None:
            return tail.last, tail.rotation, tail.ended and i == 0
    return None, None, False


class _Tail(NamedTuple):
    last: float | None  # the latest frame time (s)
    rotation: int | None  # of the last frame out
    ended: bool  # the demuxer read to the end (the decoder was flushed)
    skipped: bool  # non-reference frames were skipped
    proven: bool  # the frame of the highest timestamp fed came out at a clean end: no decode goes further


def _decode_tail(container, key: float, time_base: float, fast: bool, first_key_s: float) -> _Tail:
    """Decode the first video stream from the keyframe at ``key`` (s) to the end
    (:func:`demux_from_keyframe`; ``first_key_s``: the stream's first keyframe).

    ``fast``: with frame threads and, for H.264 and HEVC, skipping: a packet whose
    timestamp is below one already fed is decoded with ``skip_frame = NONREF``: the
    decoder drops it only if no frame refers to it, and a frame not referred to
    changes no other frame. The latest frame of a full decode has one of the fed
    packets' timestamps, at most the highest, and the packet of each new highest
    timestamp is decoded in full; so when that frame comes out and the demuxer read to
    the end (``proven``), the answer is the full decode's. That pass also skips the
    deblocking filter (``skip_loop_filter``): it changes pixels only, never which frames
    come out or their times (about a fifth less decoding). Otherwise (a damaged or cut
    end: which frames are still inside the decoder's threads when the packets run out
    depends on the threads and on what was skipped) the caller decodes again with
    ``fast`` False: every frame, on one thread, the decoder drained even when the
    demuxer fails (the frames it holds for reordering still come out).
    """
    stream = container.streams.video[0]
    cc = stream.codec_context
    if fast:
        stream.thread_type = "AUTO"  # frame threads: the same frames on a clean end (proven below)
    else:
        cc.thread_count = 1  # the reference: a cut end loses no frame inside other threads
    skip_nonref = fast and cc.name in SKIP_NONREF_CODECS
    if skip_nonref:  # nor deblock: no frame's time or decoding depends on it, and this pass is checked
        cc.options = {**cc.options, "skip_loop_filter": "all"}
    packets = container.demux(stream)
    if time_base > 0:
        key_tick = int(round(key / time_base))
        container.seek(key_tick, stream=stream, backward=True)
        packets = demux_from_keyframe(container, stream, key_tick, first_key_s)
    state = {"last": None, "rotation": None}

    def take(frames) -> None:
        for frame in frames:
            if frame.time is not None:
                state["last"] = float(frame.time) if state["last"] is None else max(state["last"], float(frame.time))
                state["rotation"] = frame.rotation

    top, ended = None, False
    try:
        for packet in packets:  # the last, empty packet flushes the decoder
            below = packet.pts is not None and top is not None and packet.pts < top
            if skip_nonref:
                cc.skip_frame = "NONREF" if below else "DEFAULT"
            if packet.pts is not None and not below and packet.size:
                top = packet.pts
            try:
                take(packet.decode())
            except av.FFmpegError:
                continue  # a damaged packet costs only its own frame
        ended = True
    except (av.FFmpegError, IndexError):
        pass  # the file ends in a way the demuxer cannot read past: what decoded counts
    if not ended:
        try:
            take(cc.decode(None))  # drain: the frames the decoder still holds
        except av.FFmpegError:
            pass
    tb = stream.time_base
    top_s = float(top) * tb.numerator / tb.denominator if top is not None and tb else None  # as frame.time
    last = state["last"]
    return _Tail(last, state["rotation"], ended, skip_nonref, ended and last is not None and last == top_s)


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

    Reads the file in-process with PyAV, in one open: the streams, the packet
    scan, and the decode of the last group of pictures. Only when PyAV cannot
    open it (or ``via_ffprobe``) does the ``ffprobe`` binary describe the
    streams (its message names what is wrong; if it can read the file after
    all, the packet scan decides).

    Raises MediaError for empty files, files that are not media and files
    without a video stream.
    """
    return _probe(path, name, via_ffprobe, digest=False)[0]


def probe_packets(path: Path, name: str | None = None,
                  on_streams: Callable[[bool], None] | None = None) -> tuple[dict, VideoPackets]:
    """:func:`probe`'s row and, from the same reading of the file, :class:`VideoPackets`
    (with the digest of every video packet, which :func:`probe` does not compute).

    ``on_streams(has_audio)`` is called once the file is known to have a video stream,
    before its packets are read (ingest starts writing its outputs then)."""
    return _probe(path, name, False, digest=True, on_streams=on_streams)


def _probe(path: Path, name: str | None, via_ffprobe: bool, digest: bool,
           on_streams: Callable[[bool], None] | None = None) -> tuple[dict, VideoPackets]:
    name = name or path.name
    _check_file(path, name)
    container = None
    try:
        if not via_ffprobe:
            container = av.open(str(path))
    except (av.FFmpegError, UnicodeDecodeError) as exc:
        log.info("%s: PyAV cannot open it (%s); asking ffprobe", name, exc)
    if container is None:
        return _describe(path, name, ffprobe(path, name), None, digest, on_streams)
    with container:
        return _describe(path, name, pyav_streams(container), container, digest, on_streams)


def _describe(path: Path, name: str, info: dict, container, digest: bool,
              on_streams: Callable[[bool], None] | None) -> tuple[dict, VideoPackets]:
    """:func:`_probe` from the stream description ``info``: ffprobe's JSON when ``container``
    is None, else :func:`pyav_streams` of the open ``container``, which the packet scan and
    the decode then read too."""
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
    if on_streams is not None:
        on_streams(bool(audio))
    if container is None:
        times, keys, tb, hexdigest = _scan_file(path, name, digest)
    else:
        times, keys, tb, hexdigest = _scan(container, name, digest)
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
    last_decoded, frame_rotation, ended = _last_decoded(path, key_times if key_times.size else times[:1], tb,
                                                        container)
    if last_decoded is None:
        raise MediaError(f"{name}: no frame of the video stream decodes")
    frame_s = 1.0 / avg if avg else last_frame
    decoded_duration = max(last_decoded - float(times[0]) + frame_s, 0.0)
    # ffprobe's JSON has the stream's display matrix; PyAV gives it on each decoded frame
    rotation = stream_rotation(v) if container is None else \
        clockwise_rotation(-frame_rotation if frame_rotation else None)
    width, height = int(v.get("width") or 0), int(v.get("height") or 0)
    if width <= 0 or height <= 0:
        raise MediaError(f"{name}: the video stream has no picture size")
    swap = rotation in (90, 270)
    row = {
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
    return row, VideoPackets(int(times.size), float(times[0]), hexdigest if ended else "", last_decoded)
