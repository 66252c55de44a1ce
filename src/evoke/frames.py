"""Stage 2, frames: sample every video at a fixed rate (1 Hz by default), by timestamp.

The frame for target time ``t`` is the frame on screen at ``t``: the last frame
whose presentation time is ``<= t`` (the first frame for targets before it).
Targets are ``t = 0, 1/rate, 2/rate, ...`` strictly before the video's
duration, so a 10.0 s video gives 10 frames at 1 Hz and a one-frame video one.

Decoding streams through the file (bounded memory on a 2-hour film) and seeks
only when the next target lies past the next keyframe, the fastest exact
method we measured (bench/RESULTS.md). Where a seek lands is checked: an
MPEG-TS seek can land past the keyframe asked for, and is then made again
earlier. Since the packet scan tells which frame each target takes, only what
those frames depend on is decoded: non-reference frames no target takes are
skipped, and before a seek the decoder is drained right after the last frame
taken instead of decoding ahead; when that keyframe is an IDR picture and near,
it reads on to it instead of seeking, sending the decoder none of the packets
between (its frame threads stay busy).

Where the stream splits into independent parts (keyframes that start afresh and that no
frame crosses, in a container whose seeks are exact: :class:`_Splits`), the parts are decoded
side by side instead, one single-threaded decoder per CPU (:func:`decode_workers`, at most 8),
each seeking to its part's keyframe and decoding it exactly as above, and the frames are
handed over in order with a bounded number of parts in flight. The frames are the same as one
decoder's; on 2 cores at 1 Hz this takes about 0.45x of a full decode's time where one
frame-threaded decoder took 0.7x (bench/RESULTS.md). Only the chosen frames are converted to
RGB, scaled so their short side is at most ``short_side`` and turned upright
by the stream's rotation.

Storage: one HDF5 file per shard, ``results/{dataset}/frames/{shard}.h5``, one
group per video with ``frames`` (T, H, W, 3) uint8, ``timestamps_s`` (T,)
float64 target times, ``frame_time_s`` (T,) the presentation time of the frame
taken, and ``mask`` (T,) bool (False where no frame could be decoded, e.g. past
the point where a truncated file ends).

A truncated file can declare more than it holds (an MP4 cut mid-stream keeps its
header's 8 s). The decoder itself tells where the pictures end: a target ``t`` is
taken only while the decoder is still inside the stream at ``t``, i.e. a later
frame decodes, or ``t`` lies before the end of the last decoded frame's display
(its presentation time plus its duration). A second after that has no decoded
frame at or before its end and is masked; it never gets copies of the last
picture marked valid. A packet that does not decode costs only its own picture (a full
decode skips it too), and a file whose probe found its last packets not decoding is decoded on
one thread: frame threads drop damaged pictures that one thread gives. While a shard runs,
each finished video is its own small file in ``frames/parts/{shard}/``, committed by a rename.
"""

from __future__ import annotations

import logging
import math
import os
import queue
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import av
import h5py
import numpy as np
import polars as pl
from av.video.reformatter import VideoReformatter

from evoke import EvokeError
from evoke.config import fingerprint as make_fingerprint
from evoke.media import SKIP_NONREF_CODECS, MediaError, demux_from_keyframe, probe, video_packet_times
from evoke.store import atomic_path, h5_attrs, mark_part, run_shard

log = logging.getLogger(__name__)

# frames a decoder may hand out ahead of an earlier-presented one (packed B-frames)
REORDER_DEPTH = 4


# NAL unit types of a picture that starts afresh (the decoder drops every reference
# before it): H.264 IDR; HEVC IDR_W_RADL and IDR_N_LP (a CRA or BLA may have leading
# pictures that refer to the group before it, so it is not one)
_IDR_NAL = {"h264": (5,), "hevc": (19, 20)}

# at most this many packets are read past, rather than seeked over, to the keyframe
# after a drain point (demuxing one costs about 10 us; a seek flushes the decoder and
# its frame threads start again empty)
MAX_SKIP_PACKETS = 300

STATUS_SCHEMA = {
    "video_id": pl.String,
    "shard": pl.String,
    "status": pl.String,
    "error": pl.String,
    "n_frames": pl.Int64,
    "n_valid": pl.Int64,
    "height": pl.Int64,
    "width": pl.Int64,
    "h5_path": pl.String,
    "h5_group": pl.String,
}


def target_times(duration_s: float, rate_hz: float) -> np.ndarray:
    """``k / rate_hz`` for every k with ``k / rate_hz < duration_s``; at least ``[0.0]``."""
    n = max(1, math.ceil(duration_s * rate_hz - 1e-9))
    return np.arange(n, dtype=np.float64) / rate_hz


def frame_on_screen(times: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Index into the sorted presentation ``times`` of the frame on screen at each target
    (the last frame at or before it; the first frame for targets before it)."""
    return np.maximum(np.searchsorted(times, targets + 1e-9, side="right") - 1, 0)


def output_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """Scaled (width, height) of a stored picture: short side at most ``short_side``, never upscaled."""
    if short_side <= 0 or min(width, height) <= short_side:
        return width, height
    s = short_side / min(width, height)
    return max(1, round(width * s)), max(1, round(height * s))


def _upright(img: np.ndarray, rotation: int) -> np.ndarray:
    """Turn a decoded picture by ``rotation`` degrees clockwise (the display rotation)."""
    k = (rotation // 90) % 4
    return np.ascontiguousarray(np.rot90(img, k=-k)) if k else img


def _frame_time(frame: av.VideoFrame, fallback: float) -> float:
    return float(frame.time) if frame.pts is not None and frame.time is not None else fallback


def _frame_duration(frame: av.VideoFrame, time_base: float, fallback: float) -> float:
    """How long ``frame`` is displayed (s): its own duration when the container gives one."""
    d = getattr(frame, "duration", None)
    return d * time_base if d and time_base else fallback


def _nal_length_size(codec: str, extradata: bytes | None) -> int:
    """Bytes of the length before each NAL unit in a packet (avcC / hvcC extradata); 0: Annex B start codes."""
    if not extradata or extradata[0] != 1:
        return 0
    at = {"h264": 4, "hevc": 21}.get(codec)
    return (extradata[at] & 3) + 1 if at is not None and len(extradata) > at else 0


def _first_picture_nal_type(data: bytes, codec: str, length_size: int) -> int | None:
    """The NAL unit type of the first coded slice in a packet of ``codec``; None when there is none."""
    units: list[int] = []  # offsets of the NAL headers
    if length_size:
        i = 0
        while i + length_size < len(data):
            units.append(i + length_size)
            i += length_size + int.from_bytes(data[i:i + length_size], "big")
    else:
        i = data.find(b"\0\0\1")
        while i >= 0:
            units.append(i + 3)
            i = data.find(b"\0\0\1", i + 3)
    for at in units:
        if at >= len(data):
            break
        kind = data[at] & 0x1F if codec == "h264" else (data[at] >> 1) & 0x3F
        if (1 <= kind <= 5) if codec == "h264" else kind <= 31:
            return kind
    return None


class _PyAVSampler:
    """Sequential decoder with keyframe-aware seeking (see the module docstring).

    ``taken_pts`` are the timestamps (stream time-base ticks) of the frames the
    targets take, when known: every other packet is then decoded with
    ``skip_frame = NONREF``, so a frame that is neither taken nor referred to by
    another frame is never decoded (x264 output at 1 Hz: 45% fewer frames
    decoded, about 30% less CPU; bench/RESULTS.md).
    Reference frames always decode, so each taken frame is exactly the frame a
    full decode gives.

    ``drain_pts`` maps taken frames after which the next target lies past a
    keyframe (the sampler seeks there next) to the target that takes them
    (ticks to seconds): once such a packet is fed, the
    decoder is drained instead of being fed packets whose frames a seek would
    throw away (frame threads decode several packets ahead; 1 Hz on 2 s
    keyframes: about a quarter less decoding). Should the seek not come, the
    sampler seeks back to the keyframe before the target and decodes on
    without draining, so the frame returned never depends on the plan.

    ``skip_to`` maps some drain points to the timestamp (ticks) of that next
    keyframe: there the sampler neither drains nor seeks but reads on, sending
    the decoder no packet until that keyframe's, so its frame threads stay busy
    across the gap (7 seeks on 8.3 s keyframes at 1 Hz, 29 on 2 s ones). Only an
    IDR picture is read into this way (it drops every reference before it, so the
    packets left out cannot matter); at any other keyframe, or when the keyframe
    does not come, the sampler drains there and seeks as above. If the frame
    returned for the drain point's target is not the planned one, it seeks back
    and decodes on without the plan.
    """

    def __init__(self, path: Path, keyframes: np.ndarray, fps: float | None,
                 taken_pts: set[int] | None = None, drain_pts: dict[int, float] | None = None,
                 skip_to: dict[int, int] | None = None, threads: int | None = None):
        self.container = av.open(str(path))
        self.stream = self.container.streams.video[0]
        if threads is None:
            self.stream.thread_type = "AUTO"
        else:
            self.stream.codec_context.thread_count = threads
        self.landing: int | None = None  # the keyframe (ticks) a seek must land on (demux_from_keyframe)
        self.tb = float(self.stream.time_base)
        self.keyframes = keyframes
        self.taken_pts = taken_pts
        self.skip_nonref = bool(taken_pts) and self.stream.codec_context.name in SKIP_NONREF_CODECS
        self.drain_pts = drain_pts or {}
        self.skip_to = skip_to or {}
        codec = self.stream.codec_context.name
        self._idr = _IDR_NAL.get(codec)
        self._nal_length = _nal_length_size(codec, self.stream.codec_context.extradata) if self._idr else 0
        self.serving = -1.0  # the target frame_at is looking for (drains happen only for it)
        self.paused = False  # the decoder was drained at a drain point: the next frame needs a seek
        self.step = 1.0 / fps if fps else 0.04
        self._frames: Iterator[av.VideoFrame] | None = None
        self.prev: tuple[float, av.VideoFrame] | None = None
        self.ahead: tuple[float, av.VideoFrame] | None = None
        self.exhausted = False
        # the end of the display of the latest frame decoded (s): past it, once the
        # decoder is exhausted, nothing is on screen (a truncated file)
        self.decoded_end = -math.inf
        self._seek(None)

    def close(self):
        self.container.close()

    def _seek(self, t: float | None, drain: bool = True):
        """Decode from the keyframe at ``t`` (s; None: from where the container is). A seek to a
        keyframe is checked where it lands (:func:`evoke.media.demux_from_keyframe`)."""
        self.landing = None
        if t is not None:
            self.container.seek(int(round(t / self.tb)), stream=self.stream, backward=True)
            if self.paused:
                self.stream.codec_context.flush_buffers()  # leave the drained (end of stream) state
            if self.keyframes.size and np.abs(self.keyframes - t).min() < 1e-9:
                self.landing = int(round(t / self.tb))
        self.paused = False
        self.heading: float | None = None  # the keyframe (s) read on to, skipping the packets before it
        self.skipped_for: tuple[float, int] | None = None  # (target, planned frame's ticks) of that read
        self._frames = self._decode_packets(drain)
        self.prev, self.ahead, self.exhausted = None, None, False
        self._buffer: list[tuple[float, av.VideoFrame]] = []
        self._count_time = t or 0.0

    def seek_to_split(self, pts: int) -> None:
        """Seek to the splitting keyframe at ``pts`` (ticks; see :class:`_Splits`)."""
        self._seek(pts * self.tb)

    def _decode_packets(self, drain: bool = True) -> Iterator[av.VideoFrame]:
        """``container.decode(stream)``, choosing per packet whether a non-reference frame may be
        skipped; past a drain point, reading on to the next keyframe or draining the decoder
        (then ``paused``)."""
        cc = self.stream.codec_context
        skipping_to = None  # the keyframe (ticks) read on to
        fed = None  # a drain point fed while an earlier target was served, before its keyframe
        packets = self.container.demux(self.stream) if self.landing is None else \
            demux_from_keyframe(self.container, self.stream, self.landing, float(self.keyframes[0]))
        for packet in packets:
            if fed is not None and abs(self.drain_pts[fed] - self.serving) < 1e-9:
                skipping_to, fed = self._read_on(fed), None  # now serving the target that takes it
            elif fed is not None and self.serving > self.drain_pts[fed]:
                fed = None  # its target was served before the next packet was needed
            if skipping_to is not None:  # read on to the keyframe: no target needs these packets
                if packet.pts is not None and packet.pts != skipping_to:
                    continue
                skipping_to = None
                if packet.pts is None or not self._starts_afresh(packet):
                    yield from self._drain(cc)  # not an IDR (or no keyframe came): drain, the sampler seeks
                    return
            if fed is not None and (packet.is_keyframe or packet.pts is None or packet.pts >= self.skip_to[fed]):
                fed = None  # the keyframe is being fed: nothing left to read past
            if self.skip_nonref:
                taken = packet.pts is None or packet.pts in self.taken_pts
                cc.skip_frame = "DEFAULT" if taken else "NONREF"
            try:
                frames = packet.decode()
            except av.InvalidDataError as exc:  # a damaged packet costs only its own picture, as in a full decode
                log.debug("%s: packet at %s does not decode: %s", self.container.name, packet.pts, exc)
                continue
            yield from frames
            if not drain or packet.pts is None or packet.pts not in self.drain_pts:
                continue
            # past a drain point only while serving the target that takes its frame: with B-frames
            # a later target's packet is fed (decode order) before an earlier target's frame decodes
            if abs(self.drain_pts[packet.pts] - self.serving) < 1e-9:
                skipping_to = self._read_on(packet.pts)
                if skipping_to is None:
                    yield from self._drain(cc)
                    return
            elif packet.pts in self.skip_to:
                fed = packet.pts  # read on from here once its target is served, if the keyframe is not fed by then

    def _read_on(self, pts: int) -> int | None:
        """The keyframe (ticks) to read on to from drain point ``pts``; None: drain there."""
        key = self.skip_to.get(pts)
        if key is not None:
            self.heading, self.skipped_for = key * self.tb, (self.serving, pts)
        return key

    def _drain(self, cc) -> Iterator[av.VideoFrame]:
        """The frames still inside the decoder's threads, after which it is ``paused``."""
        self.paused = True
        for frame in cc.decode(None):
            frame.time_base = self.stream.time_base  # (a flush packet carries none)
            yield frame

    def _starts_afresh(self, packet: av.Packet) -> bool:
        """Whether ``packet`` is an IDR picture, which drops every reference before it."""
        if not self._idr or not packet.is_keyframe:
            return False
        kind = _first_picture_nal_type(bytes(packet), self.stream.codec_context.name, self._nal_length)
        return kind in self._idr

    def _decode_one(self) -> tuple[float, av.VideoFrame] | None:
        try:
            frame = next(self._frames)
        except StopIteration:
            return None
        except av.FFmpegError as exc:  # corrupt data: keep what was decoded
            log.warning("decoding stopped early: %s", exc)
            return None
        t = _frame_time(frame, self._count_time)
        self._count_time = t + self.step
        self.decoded_end = max(self.decoded_end, t + _frame_duration(frame, self.tb, self.step))
        return t, frame

    def _next(self) -> tuple[float, av.VideoFrame] | None:
        """The next frame in presentation order.

        Some containers (AVI with packed B-frames) hand frames out of
        presentation order; a small reorder buffer sorts them by time.
        """
        while not self.exhausted and len(self._buffer) < REORDER_DEPTH:
            got = self._decode_one()
            if got is None:
                if self.paused:
                    break  # drained before a seek: not the end of the stream
                self.exhausted = True
            else:
                self._buffer.append(got)
        if not self._buffer:
            return None
        i = min(range(len(self._buffer)), key=lambda j: self._buffer[j][0])
        return self._buffer.pop(i)

    def frame_at(self, t: float) -> tuple[float, av.VideoFrame] | None:
        """The frame on screen at ``t``; None when nothing at or after the current position decodes."""
        self.serving = t
        key = self.keyframes[self.keyframes <= t + 1e-9]
        last_seen = (self.ahead or self.prev or (None, None))[0]
        if (key.size and (last_seen is None or key[-1] > last_seen + 1e-9) and self.prev is not None
                and not (self.heading is not None and abs(key[-1] - self.heading) < 1e-9)):
            self._seek(key[-1])  # the target lies past the next keyframe: jump there
        while True:
            if self.ahead is None:
                self.ahead = self._next()
                if self.ahead is None and self.paused:
                    if self.prev is not None and abs(self.drain_pts.get(self.prev[1].pts, -1.0) - t) < 1e-9:
                        break  # drained right after the frame the plan has t take: it is on screen at t
                    if self.heading is not None:  # read on to a keyframe that is no IDR: seek there instead
                        self._seek(self.heading)
                        continue
                    self._seek(float(key[-1]) if key.size else 0.0, drain=False)  # a seek that did not come
                    continue
            if self.ahead is None or self.ahead[0] > t + 1e-9:
                break
            self.prev, self.ahead = self.ahead, None
        if (self.skipped_for is not None and abs(self.skipped_for[0] - t) < 1e-9
                and (self.prev is None or self.prev[1].pts != self.skipped_for[1])):
            # read on past packets while serving t, but t's frame is not the planned one
            self._seek(float(key[-1]) if key.size else 0.0, drain=False)
            return self.frame_at(t)
        if self.prev is None and self.ahead is not None:
            return self.ahead  # target before the first frame: take the first frame
        if self.ahead is None and self.exhausted and t >= self.decoded_end - 1e-9:
            return None  # the decoded stream ended before t (truncated): nothing is on screen
        return self.prev


def sample_frames(
    path: str | Path,
    rate_hz: float = 1.0,
    short_side: int = 360,
    backend: str = "pyav",
    info: dict | None = None,
    targets: np.ndarray | None = None,
    workers: int | None = None,
) -> Iterator[tuple[int, float, float, np.ndarray]]:
    """Yield ``(index, target_time_s, frame_time_s, rgb)`` for each target time.

    ``rgb`` is (H, W, 3) uint8, upright and scaled (see :func:`output_size`).
    Targets whose frame cannot be decoded are not yielded (callers mask them).
    ``info`` is the :func:`evoke.media.probe` dict when the caller has it.
    ``targets``: ascending times (s) to sample instead of the ``rate_hz`` grid
    (:func:`target_times`), e.g. the seconds of a segment of the video.
    ``workers``: decoders run side by side on independent parts of the stream (PyAV backend;
    default :func:`decode_workers`; 1: one frame-threaded decoder); the frames are the same.
    """
    path = Path(path)
    info = info or probe(path)
    if targets is None:
        targets = target_times(info["duration_s"], rate_hz)
    targets = np.asarray(targets, dtype=np.float64)
    if backend == "decord":
        yield from _sample_decord(path, targets, short_side, info)
        return
    if backend == "nvdec":
        from evoke.frames_nvdec import sample_nvdec

        yield from sample_nvdec(path, targets, short_side, info)
        return
    if backend != "pyav":
        raise EvokeError(f"unknown frames backend {backend!r} (pyav, decord or nvdec)")
    splits = _Splits()
    times, keys, tb = video_packet_times(path, on_packet=splits)
    taken_pts, drain_pts, skip_to = None, None, None
    if times.size and tb:  # the timestamp of the frame each target takes: only these must decode
        taken = times[frame_on_screen(times, targets)]
        taken_pts = {int(round(x / tb)) for x in taken}
        drain_pts = _drain_points(taken, times[keys], targets, tb)
        skip_to = _skip_points(drain_pts, times, times[keys], targets, tb)
    w, h = output_size(info["width"], info["height"], short_side)
    picture = _Picture(w, h, info["rotation"])
    parts = _parts(targets, splits.times(tb), tb) if tb and splits.seeks_exactly else []
    workers = min(decode_workers() if workers is None else max(1, int(workers)), len(parts))
    if workers >= 2:  # independent parts of the stream, decoded side by side
        plan = (times[keys], info.get("fps_avg"), taken_pts, drain_pts)
        yield from _sample_parts(path, targets, parts, plan, picture, workers)
        return
    # a file whose last packets do not decode (cut mid-stream): frame threads drop the damaged
    # pictures one thread decodes, so the decoded end would fall short of the probe's
    threads = 1 if _tail_damaged(info, times) else None
    sampler = _PyAVSampler(path, times[keys], info.get("fps_avg"), taken_pts, drain_pts, skip_to, threads)
    try:
        yield from picture.serve(sampler, targets, range(len(targets)))
    finally:
        sampler.close()


def _tail_damaged(info: dict, times: np.ndarray) -> bool:
    """Whether the probe found the last video packets not decoding (``decoded_duration_s``,
    measured from the first packet on one thread, ends before the last packet's time)."""
    decoded = info.get("decoded_duration_s")
    if decoded is None or not times.size or not math.isfinite(decoded):
        return False
    step = 1.0 / info["fps_avg"] if info.get("fps_avg") else 0.0
    return decoded < (times[-1] - times[0]) + 0.5 * step - 1e-9


def decode_workers() -> int:
    """Decoders the PyAV backend runs side by side on the independent parts of a video: the CPUs
    this process may run on (``os.sched_getaffinity``; a SLURM job's allocation), at most 8."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    return max(1, min(n, MAX_DECODE_WORKERS))


class _Picture:
    """Turns the frame each target takes into the output picture: RGB, scaled, upright.

    One scaler per instance (set up once per video and thread), and a frame on screen for
    several targets is converted once (the later targets get copies)."""

    def __init__(self, width: int, height: int, rotation: int):
        self.size, self.rotation = (width, height), rotation

    def serve(self, sampler: "_PyAVSampler", targets: np.ndarray,
              indices) -> Iterator[tuple[int, float, float, np.ndarray]]:
        """``(index, target, frame time, rgb)`` for each of ``targets[indices]`` whose frame decodes."""
        reformatter = VideoReformatter()
        w, h = self.size
        shown, img = None, None
        for i in map(int, indices):
            t = float(targets[i])
            got = sampler.frame_at(t)
            if got is None:
                continue
            ft, frame = got
            if frame is shown:  # on screen for several targets: converted once
                yield i, t, ft, img.copy()
                continue
            rgb = reformatter.reformat(frame, format="rgb24", width=w, height=h, interpolation="AREA")
            shown, img = frame, _upright(rgb.to_ndarray(), self.rotation)
            yield i, t, ft, img


def _vp9_key_frame(data: bytes) -> bool:
    """Whether a VP9 packet starts with a key frame (uncompressed header: frame_marker, profile,
    show_existing_frame, frame_type = 0). A VP9 key frame refreshes all eight reference slots, so
    no later frame refers to one before it."""
    if not data or data[0] >> 6 != 0b10:
        return False
    bits = data[0]
    profile = ((bits >> 5) & 1) | (((bits >> 4) & 1) << 1)
    at = 2 if profile == 3 else 3  # show_existing_frame's bit (profile 3 has a reserved bit first)
    show_existing = (bits >> at) & 1
    frame_type = (bits >> (at - 1)) & 1
    return not show_existing and frame_type == 0


class _Splits:
    """Called with every packet of the packet scan (decode order): finds the keyframes where the
    stream splits into parts that decode independently of each other.

    A keyframe splits the stream when it starts afresh (H.264 IDR; HEVC IDR_W_RADL or IDR_N_LP;
    a VP9 key frame: the decoder drops or replaces every reference before it, so nothing after it
    refers to a frame before it) and no frame crosses it in presentation order: every packet
    before it in decode order is shown before it and every packet from it on is shown at or after it (an HEVC IDR
    with leading pictures, or a stream whose reordering straddles the keyframe, does not split).
    Packets without a timestamp make the whole stream one part."""

    def __init__(self):
        self.pts: list[int] = []
        self.idr: list[bool] = []
        self.usable = True
        self.seeks_exactly = False  # the container's seeks land on the keyframe asked for
        self._codec, self._idr_types, self._nal_length = None, None, 0

    def __call__(self, packet: av.Packet) -> None:
        if not packet.size or not self.usable:
            return
        if packet.pts is None:
            self.usable = False
            return
        if self._codec is None:
            cc = packet.stream.codec_context
            self.seeks_exactly = bool(set(packet.stream.container.format.name.split(",")) & _EXACT_SEEK_FORMATS)
            self._codec = cc.name
            self._idr_types = _IDR_NAL.get(self._codec)
            self._nal_length = _nal_length_size(self._codec, cc.extradata) if self._idr_types else 0
        if not packet.is_keyframe:
            idr = False
        elif self._codec == "vp9":
            idr = _vp9_key_frame(bytes(packet))
        else:
            idr = bool(self._idr_types) and \
                _first_picture_nal_type(bytes(packet), self._codec, self._nal_length) in self._idr_types
        self.pts.append(packet.pts)
        self.idr.append(idr)

    def times(self, tb: float) -> np.ndarray:
        """Presentation times (s) of the splitting keyframes, ascending."""
        if not self.usable or not self.pts:
            return np.zeros(0)
        pts = np.asarray(self.pts, dtype=np.int64)
        before = np.concatenate([[np.iinfo(np.int64).min], np.maximum.accumulate(pts)[:-1]])
        from_here = np.minimum.accumulate(pts[::-1])[::-1]
        at = np.asarray(self.idr) & (before < pts) & (from_here >= pts)
        return np.sort(pts[at]) * tb


# container formats (the demuxer's names) whose seeks land exactly on the keyframe asked for (an
# index of the keyframes: MP4/MOV, Matroska/WebM); others (MPEG-TS, AVI, FLV) are one part
_EXACT_SEEK_FORMATS = {"mov", "mp4", "matroska", "webm"}

# decoders run side by side on one video at most (8.3 s keyframes at 1 Hz: 8 targets a part)
MAX_DECODE_WORKERS = 8

# decoded pictures a part may hold ready for the consumer before its decoder waits
PART_QUEUE = 8


def _parts(targets: np.ndarray, split_times: np.ndarray, tb: float) -> list[tuple[int | None, np.ndarray]]:
    """The targets grouped by the part of the stream their frame lies in: ``(start, indices)`` per
    part that has targets, in order; ``start`` is the splitting keyframe's timestamp (ticks), None
    for the part that starts the stream (decoded from the first packet, as without parts). A
    target takes a frame of the part whose splitting keyframe is the last at or before it."""
    if split_times.size < 2 or targets.size < 2:
        return []
    k = np.searchsorted(split_times, targets + 1e-9, side="right") - 1
    k = np.maximum(k, 0)  # before the first split: the part that starts the stream
    out = []
    for part in np.unique(k):
        start = None if part == 0 else int(round(split_times[part] / tb))
        out.append((start, np.flatnonzero(k == part)))
    return out if len(out) >= 2 else []


class _Stopped(Exception):
    """The consumer of the parts went away."""


def _sample_parts(path: Path, targets: np.ndarray, parts: list, plan: tuple, picture: _Picture,
                  workers: int) -> Iterator[tuple[int, float, float, np.ndarray]]:
    """:func:`sample_frames` over independent parts of the stream (see :class:`_Splits`), each
    decoded by one of ``workers`` single-threaded decoders (PyAV releases the GIL while decoding
    and scaling), the pictures handed over in target order.

    Each thread keeps one sampler (an open container) and seeks it to the start of each part it
    takes, so every part decodes exactly as the sequential sampler decodes it after its seek: the
    same frames, taken by the same "frame on screen" rule. At most ``workers + 1`` parts are in
    flight and each holds at most ``PART_QUEUE`` pictures, so memory does not grow with the video.

    Why: one frame-threaded decoder uses about 1.3 of 2 cores on 1 Hz targets (each group's
    decoding waits on its references, and a drain empties its threads); two single-threaded ones
    on different groups keep both busy, and a single-threaded decode costs less CPU."""
    keys, fps, taken_pts, drain_pts = plan
    stop = threading.Event()
    local = threading.local()
    opened: list[_PyAVSampler] = []
    lock = threading.Lock()

    def fresh() -> _PyAVSampler:
        s = _PyAVSampler(path, keys, fps, taken_pts, drain_pts, threads=1)
        with lock:
            opened.append(s)
        return s

    def put(q: queue.Queue, item) -> None:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return
            except queue.Full:
                continue
        raise _Stopped

    def decode(start: int | None, indices: np.ndarray, q: queue.Queue) -> None:
        try:
            sampler = getattr(local, "sampler", None)
            if start is None or sampler is None:
                sampler = local.sampler = fresh()  # the first part: from the first packet, unseeked
            if start is not None:
                sampler.seek_to_split(start)
            for item in picture.serve(sampler, targets, indices):
                put(q, item)
            put(q, _PART_END)
        except _Stopped:
            pass
        except BaseException as exc:  # handed to the consumer, raised there
            try:
                put(q, _PartFailed(exc))
            except _Stopped:
                pass

    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="evoke-frames")
    pending: deque = deque()
    todo = iter(parts)
    try:
        while True:
            while len(pending) < workers + 1:
                part = next(todo, None)
                if part is None:
                    break
                q = queue.Queue(maxsize=PART_QUEUE)
                pending.append((pool.submit(decode, part[0], part[1], q), q))
            if not pending:
                break
            _, q = pending.popleft()
            while (item := q.get()) is not _PART_END:
                if isinstance(item, _PartFailed):
                    raise item.exc
                yield item
    finally:
        stop.set()
        for future, _ in pending:
            future.cancel()
        pool.shutdown(wait=True)
        for s in opened:
            s.close()


_PART_END = object()


class _PartFailed:
    def __init__(self, exc: BaseException):
        self.exc = exc


def _drain_points(taken: np.ndarray, key_times: np.ndarray, targets: np.ndarray, tb: float) -> dict[int, float]:
    """The taken frames (timestamp in ticks: its target time in s) after which the next target's
    keyframe lies later than them: the sampler seeks from there, so nothing after them needs decoding."""
    if not key_times.size or targets.size < 2:
        return {}
    ki = np.searchsorted(key_times, targets[1:] + 1e-9, side="right") - 1
    next_key = np.where(ki >= 0, key_times[np.maximum(ki, 0)], -np.inf)
    return {int(round(x / tb)): float(t) for x, t, k in zip(taken[:-1], targets[:-1], next_key) if k > x + 1e-9}


def _skip_points(drain_pts: dict[int, float], times: np.ndarray, key_times: np.ndarray, targets: np.ndarray,
                 tb: float) -> dict[int, int]:
    """The drain points (ticks) from which the sampler reads on to the next target's keyframe (its
    timestamp in ticks) instead of seeking: those with at most ``MAX_SKIP_PACKETS`` packets between."""
    out = {}
    for x, t in drain_pts.items():
        j = int(np.searchsorted(targets, t + 1e-9, side="right"))  # the next target
        ki = int(np.searchsorted(key_times, targets[j] + 1e-9, side="right")) - 1 if j < targets.size else -1
        if ki < 0:
            continue
        key = float(key_times[ki])
        between = int(np.searchsorted(times, key - 1e-9)) - int(np.searchsorted(times, x * tb + 1e-9))
        if between <= MAX_SKIP_PACKETS:
            out[x] = int(round(key / tb))
    return out


def _sample_decord(path: Path, targets: np.ndarray, short_side: int, info: dict):
    """The decord backend of :func:`sample_frames` (same targets, same masking).

    decord raises a plain ``RuntimeError`` ("Error reading ...") when it cannot open
    a file (zero bytes, random bytes, no moov atom) and ``decord.DECORDError`` when
    a packet does not decode: both are the video's fault and become a
    :class:`~evoke.media.MediaError` (one failed row, the shard goes on). A packet
    that does not decode ends the video there, the later seconds masked, as with
    PyAV ("keep what was decoded"). decord not installed is the environment's
    fault (:class:`~evoke.media.EnvironmentFailure`: the job stops, no video fails).
    """
    from evoke.media import EnvironmentFailure

    try:
        import decord
    except ImportError as exc:
        raise EnvironmentFailure(
            "frames backend 'decord' is not installed: pip install decord, or set frames.backend: pyav"
        ) from exc
    decord_errors = (RuntimeError, decord.DECORDError)
    w, h = output_size(info["width"], info["height"], short_side)
    try:
        vr = decord.VideoReader(str(path), width=w, height=h, num_threads=1)
        n = len(vr)
        stamps = vr.get_frame_timestamp(np.arange(n)) if n else np.zeros((0, 2))
    except decord_errors as exc:  # one video's failure, in the shard's error list
        raise MediaError(f"{path.name}: decord cannot open the video: {_one_line(exc)}") from exc
    if n == 0:
        raise MediaError(f"{path.name}: decord finds no video frame")
    starts, ends = stamps[:, 0], stamps[:, 1]
    for i, t in enumerate(targets):
        idx = int(np.searchsorted(starts, t + 1e-9, side="right")) - 1
        idx = max(idx, 0)
        if t >= ends[idx] - 1e-9 and idx == n - 1:
            return  # past the last frame's display: masked, as with PyAV
        try:
            img = vr[idx].asnumpy()
        except decord_errors as exc:  # a corrupt packet: the rest is masked
            log.warning("%s: decord stopped at frame %d: %s", path.name, idx, _one_line(exc))
            return
        yield i, float(t), float(starts[idx]), _upright(img, info["rotation"])


def _one_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return lines[0] if lines else type(exc).__name__


def settings_fingerprint(settings: dict) -> str:
    return make_fingerprint({k: settings[k] for k in ("rate_hz", "short_side", "backend")}, "frames-v1")


def write_video_frames(
    video: Path, dest: Path, group: str, settings: dict, info: dict | None = None,
    fingerprint: str | None = None, workers: int | None = None,
) -> dict:
    """Sample ``video`` and write its frames to a new HDF5 file ``dest`` (group ``group``).

    Written to a temporary name and renamed when complete. Returns a status dict
    (``n_frames``, ``n_valid``, ``height``, ``width``), also recorded in the
    group with ``fingerprint`` when one is given (a resumable shard part).
    Raises MediaError when no frame at all can be decoded. ``workers``: see :func:`sample_frames`.
    """
    info = info or probe(video)
    targets = target_times(info["duration_s"], settings["rate_hz"])
    w, h = output_size(info["display_width"], info["display_height"], settings["short_side"])
    with atomic_path(dest) as tmp, h5py.File(tmp, "w") as f:
        g = f.create_group(group)
        frames = g.create_dataset(
            "frames", shape=(len(targets), h, w, 3), dtype=np.uint8,
            chunks=(1, h, w, 3), compression="lzf",
        )
        frame_time = np.full(len(targets), np.nan)
        mask = np.zeros(len(targets), dtype=bool)
        for i, _, ft, img in sample_frames(
            video, settings["rate_hz"], settings["short_side"], settings["backend"], info, workers=workers
        ):
            if img.shape[:2] != (h, w):
                raise MediaError(f"{video.name}: picture size changed mid-stream ({img.shape[1]}x{img.shape[0]})")
            frames[i] = img
            frame_time[i], mask[i] = ft, True
        if not mask.any():
            raise MediaError(f"{video.name}: no frame could be decoded")
        g.create_dataset("timestamps_s", data=targets)
        g.create_dataset("frame_time_s", data=frame_time)
        g.create_dataset("mask", data=mask)
        g.attrs.update(h5_attrs(
            extractor="frames", rate_hz=settings["rate_hz"], short_side=settings["short_side"],
            backend=settings["backend"], config_hash=settings_fingerprint(settings),
            source_fps=info.get("fps_avg"), rotation=info["rotation"], duration_s=info["duration_s"],
        ))
        stats = {"n_frames": len(targets), "n_valid": int(mask.sum()), "height": h, "width": w}
        if fingerprint is not None:
            mark_part(g, fingerprint, stats)
    return stats


def part_size_bound(row: dict, settings: dict) -> int:
    """Bytes a video's frames part takes at most (its frames uncompressed, plus 1 MiB)."""
    w, h = output_size(int(row["display_width"]), int(row["display_height"]), settings["short_side"])
    n = len(target_times(float(row["duration_s"]), settings["rate_hz"]))
    return n * w * h * 3 + (1 << 20)


def frames_shard(probe_rows: pl.DataFrame, dataset_dir: Path, settings: dict, shard: str, out: Path,
                 status_out: Path | None = None, workers: int | None = None) -> pl.DataFrame:
    """Sample the frames of every ingested video of a shard into ``out`` (HDF5).

    Videos whose ingest failed are skipped (their failure is already recorded).
    Finished videos of a killed earlier run are reused when their settings
    fingerprint matches. Returns one ``STATUS_SCHEMA`` row per ingested video,
    also written to ``status_out`` when given (before the parts are removed). ``workers``:
    see :func:`sample_frames`.
    """
    dataset_dir = Path(dataset_dir)
    sfp = settings_fingerprint(settings)
    info_keys = ("duration_s", "decoded_duration_s", "fps_avg", "width", "height", "rotation", "display_width",
                 "display_height")
    items = [
        (r["video_id"], make_fingerprint(sfp, r["fingerprint"]), r)
        for r in probe_rows.filter(pl.col("status") == "ok").to_dicts()
    ]

    def work(row: dict, part: Path, fp: str) -> dict:
        info = {k: row[k] for k in info_keys}
        return write_video_frames(dataset_dir / row["video_path"], part, row["video_id"], settings, info,
                                  fingerprint=fp, workers=workers)

    def table(status: list[dict]) -> pl.DataFrame:
        for r in status:
            r["shard"] = shard
            if r["status"] == "ok":
                r |= {"h5_path": f"frames/{shard}.h5", "h5_group": r["video_id"]}
        return pl.DataFrame(status, schema=STATUS_SCHEMA)

    status = run_shard(
        items, dataset_dir / "frames" / "parts" / shard, out, work,
        root_attrs={"stage": "frames", "shard": shard, "config_hash": sfp},
        desc=f"frames {shard}", errors=(EvokeError, OSError, av.FFmpegError),
        status_out=status_out, status_table=table, part_bytes=lambda row: part_size_bound(row, settings),
    )
    return table(status)
