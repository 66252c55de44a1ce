"""Stage 2, frames: sample every video at a fixed rate (1 Hz by default), by timestamp.

The frame for target time ``t`` is the frame on screen at ``t``: the last frame
whose presentation time is ``<= t`` (the first frame for targets before it).
Targets are ``t = 0, 1/rate, 2/rate, ...`` strictly before the video's
duration, so a 10.0 s video gives 10 frames at 1 Hz and a one-frame video one.

Decoding streams through the file (bounded memory on a 2-hour film) and seeks
only when the next target lies past the next keyframe, the fastest exact
method we measured (bench/RESULTS.md). Since the packet scan tells which frame
each target takes, only what those frames depend on is decoded: non-reference
frames no target takes are skipped, and before a seek the decoder is drained
right after the last frame taken instead of decoding ahead. Only the chosen frames are converted to
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
picture marked valid. While a shard runs, each finished video
is its own small file in ``frames/parts/{shard}/``, committed by a rename.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Iterator

import av
import h5py
import numpy as np
import polars as pl

from evoke import EvokeError
from evoke.config import fingerprint as make_fingerprint
from evoke.media import MediaError, probe, video_packet_times
from evoke.store import atomic_path, h5_attrs, mark_part, run_shard

log = logging.getLogger(__name__)

# frames a decoder may hand out ahead of an earlier-presented one (packed B-frames)
REORDER_DEPTH = 4

# decoders that honour a change of skip_frame from one packet to the next (they
# decide per picture); other codecs decode every frame as before
SKIP_NONREF_CODECS = ("h264", "hevc")

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
    """

    def __init__(self, path: Path, keyframes: np.ndarray, fps: float | None,
                 taken_pts: set[int] | None = None, drain_pts: dict[int, float] | None = None):
        self.container = av.open(str(path))
        self.stream = self.container.streams.video[0]
        self.stream.thread_type = "AUTO"
        self.tb = float(self.stream.time_base)
        self.keyframes = keyframes
        self.taken_pts = taken_pts
        self.skip_nonref = bool(taken_pts) and self.stream.codec_context.name in SKIP_NONREF_CODECS
        self.drain_pts = drain_pts or {}
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
        if t is not None:
            self.container.seek(int(round(t / self.tb)), stream=self.stream, backward=True)
            if self.paused:
                self.stream.codec_context.flush_buffers()  # leave the drained (end of stream) state
        self.paused = False
        self._frames = self._decode_packets(drain)
        self.prev, self.ahead, self.exhausted = None, None, False
        self._buffer: list[tuple[float, av.VideoFrame]] = []
        self._count_time = t or 0.0

    def _decode_packets(self, drain: bool = True) -> Iterator[av.VideoFrame]:
        """``container.decode(stream)``, choosing per packet whether a non-reference frame may be
        skipped, and draining the decoder after a drain point (then ``paused``)."""
        cc = self.stream.codec_context
        for packet in self.container.demux(self.stream):
            if self.skip_nonref:
                taken = packet.pts is None or packet.pts in self.taken_pts
                cc.skip_frame = "DEFAULT" if taken else "NONREF"
            yield from packet.decode()
            # drain only while serving the target that takes this frame: with B-frames a later
            # target's packet is fed (decode order) before an earlier target's frame is decoded
            if (drain and packet.pts is not None and packet.pts in self.drain_pts
                    and abs(self.drain_pts[packet.pts] - self.serving) < 1e-9):
                self.paused = True
                for frame in cc.decode(None):  # the frames still inside the decoder's threads
                    frame.time_base = self.stream.time_base  # (a flush packet carries none)
                    yield frame
                return

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
        if key.size and (last_seen is None or key[-1] > last_seen + 1e-9) and self.prev is not None:
            self._seek(key[-1])  # the target lies past the next keyframe: jump there
        while True:
            if self.ahead is None:
                self.ahead = self._next()
                if self.ahead is None and self.paused:
                    if self.prev is not None and abs(self.drain_pts.get(self.prev[1].pts, -1.0) - t) < 1e-9:
                        break  # drained right after the frame the plan has t take: it is on screen at t
                    self._seek(float(key[-1]) if key.size else 0.0, drain=False)  # a seek that did not come
                    continue
            if self.ahead is None or self.ahead[0] > t + 1e-9:
                break
            self.prev, self.ahead = self.ahead, None
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
) -> Iterator[tuple[int, float, float, np.ndarray]]:
    """Yield ``(index, target_time_s, frame_time_s, rgb)`` for each target time.

    ``rgb`` is (H, W, 3) uint8, upright and scaled (see :func:`output_size`).
    Targets whose frame cannot be decoded are not yielded (callers mask them).
    ``info`` is the :func:`evoke.media.probe` dict when the caller has it.
    ``targets``: ascending times (s) to sample instead of the ``rate_hz`` grid
    (:func:`target_times`), e.g. the seconds of a segment of the video.
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
    times, keys, tb = video_packet_times(path)
    taken_pts, drain_pts = None, None
    if times.size and tb:  # the timestamp of the frame each target takes: only these must decode
        taken = times[frame_on_screen(times, targets)]
        taken_pts = {int(round(x / tb)) for x in taken}
        drain_pts = _drain_points(taken, times[keys], targets, tb)
    sampler = _PyAVSampler(path, times[keys], info.get("fps_avg"), taken_pts, drain_pts)
    try:
        w, h = output_size(info["width"], info["height"], short_side)
        for i, t in enumerate(targets):
            got = sampler.frame_at(float(t))
            if got is None:
                continue
            ft, frame = got
            img = frame.to_ndarray(format="rgb24", width=w, height=h, interpolation="AREA")
            yield i, float(t), ft, _upright(img, info["rotation"])
    finally:
        sampler.close()


def _drain_points(taken: np.ndarray, key_times: np.ndarray, targets: np.ndarray, tb: float) -> dict[int, float]:
    """The taken frames (timestamp in ticks: its target time in s) after which the next target's
    keyframe lies later than them: the sampler seeks from there, so nothing after them needs decoding."""
    if not key_times.size or targets.size < 2:
        return {}
    ki = np.searchsorted(key_times, targets[1:] + 1e-9, side="right") - 1
    next_key = np.where(ki >= 0, key_times[np.maximum(ki, 0)], -np.inf)
    return {int(round(x / tb)): float(t) for x, t, k in zip(taken[:-1], targets[:-1], next_key) if k > x + 1e-9}


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
    fingerprint: str | None = None,
) -> dict:
    """Sample ``video`` and write its frames to a new HDF5 file ``dest`` (group ``group``).

    Written to a temporary name and renamed when complete. Returns a status dict
    (``n_frames``, ``n_valid``, ``height``, ``width``), also recorded in the
    group with ``fingerprint`` when one is given (a resumable shard part).
    Raises MediaError when no frame at all can be decoded.
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
            video, settings["rate_hz"], settings["short_side"], settings["backend"], info
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
                 status_out: Path | None = None) -> pl.DataFrame:
    """Sample the frames of every ingested video of a shard into ``out`` (HDF5).

    Videos whose ingest failed are skipped (their failure is already recorded).
    Finished videos of a killed earlier run are reused when their settings
    fingerprint matches. Returns one ``STATUS_SCHEMA`` row per ingested video,
    also written to ``status_out`` when given (before the parts are removed).
    """
    dataset_dir = Path(dataset_dir)
    sfp = settings_fingerprint(settings)
    info_keys = ("duration_s", "fps_avg", "width", "height", "rotation", "display_width", "display_height")
    items = [
        (r["video_id"], make_fingerprint(sfp, r["fingerprint"]), r)
        for r in probe_rows.filter(pl.col("status") == "ok").to_dicts()
    ]

    def work(row: dict, part: Path, fp: str) -> dict:
        info = {k: row[k] for k in info_keys}
        return write_video_frames(dataset_dir / row["video_path"], part, row["video_id"], settings, info,
                                  fingerprint=fp)

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
