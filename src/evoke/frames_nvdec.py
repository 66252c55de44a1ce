"""``frames.backend: nvdec``: the frames stage's pictures decoded on the GPU (NVDEC, through
NVIDIA's PyNvVideoCodec), giving the same "frame on screen at t" as the PyAV backend.

Never run on a GPU yet: it was written from PyNvVideoCodec 2.2.4's documentation,
samples and Python sources on a machine without one (README, "Frames"); its GPU tests
(``tests/test_frames_nvdec.py``) skip where no CUDA device and package are present.

How a video is sampled:

1. *The plan, on the CPU* (:func:`plan_targets`): the packet scan
   (:func:`evoke.media.video_packet_times`) and :func:`evoke.frames.frame_on_screen`, the
   one home of the mapping the PyAV backend uses, give the index (in presentation
   order) of the frame each target takes. A target past the end of the last frame's
   display (its time plus its duration, from the last group of pictures' packets) is
   masked, as the PyAV backend masks it.
2. *The decode, on the GPU*: every packet goes to NVDEC (``CreateDemuxer`` /
   ``CreateDecoder``, output NV12 in GPU memory, in display order); only the frames the
   plan takes are copied to the host (``torch.from_dlpack``).
3. *The picture, on the CPU*: the NV12 samples are written into a frame PyAV decoded
   from the same stream (:func:`rgb_from_nv12`), which goes through the very call the PyAV
   backend makes (``to_ndarray(format="rgb24", width, height, interpolation="AREA")``), then
   :func:`evoke.frames._upright` with the probe row's rotation. The codecs' standards
   define a conformant decoder's samples exactly, so the stored frames are meant to
   equal the PyAV backend's: tolerance 0, which the GPU tests assert. Converting only
   the ~1 frame a second taken costs little CPU (bench/RESULTS.md: about 4% of the
   PyAV backend's CPU time on a 720p clip).

Per video, the GPU is not used, and the PyAV backend decodes instead, logged as
``decoded on CPU: <reason>`` and counted (:data:`CPU_FALLBACKS`), when: the codec is
not one routed to NVDEC (:data:`NVDEC_CODECS`: H.264, HEVC, AV1, VP9), the pixel
format is not 8-bit 4:2:0, or the GPU's decoder caps say no (AV1 before Ampere,
sizes past its limits), or PyAV's first frame is not the probe row's size. Should
NVDEC hand out a frame the plan does not expect (a damaged stream, a timestamp it reads
otherwise, a picture of another size, an error), the remaining targets are decoded by
PyAV from there, also logged and counted: which frame a target takes never rests on
NVDEC's timestamps.

PyNvVideoCodec missing, its driver libraries missing (``libcuda``, ``libnvcuvid``), or no
CUDA device is the environment's fault: :class:`~evoke.media.EnvironmentFailure`, the
job stops with one message and no video fails.
"""

from __future__ import annotations

import logging
from collections import Counter
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from typing import Iterator, NamedTuple

import av
import numpy as np

from evoke.frames import _frame_duration, _upright, frame_on_screen, output_size, sample_frames
from evoke.media import EnvironmentFailure, MediaError, video_packet_times

log = logging.getLogger(__name__)

# codecs (PyAV's canonical names) routed to NVDEC (PyNvVideoCodec's cudaVideoCodec member names);
# anything else (MPEG-4 part 2, VP8, ProRes ...) is decoded by PyAV
NVDEC_CODECS = {"h264": "H264", "hevc": "HEVC", "av1": "AV1", "vp9": "VP9"}
# pixel formats whose NV12 NVDEC output maps back onto the stream's own format losslessly
NV12_FORMATS = ("yuv420p", "yuvj420p")

CPU_FALLBACKS: Counter[str] = Counter()  # reason -> videos (this process), for logs and the benchmark

REQUIREMENTS = "pip install -r requirements-gpu.txt (PyNvVideoCodec) on a machine with an NVIDIA GPU and driver"


class Plan(NamedTuple):
    """What the CPU decides before any decoding: ``index[k]`` is the presentation-order
    index of the frame target ``k`` takes, -1 where the target is masked (past the end of
    the last frame's display); ``times`` are the frames' presentation times (s)."""

    index: np.ndarray
    times: np.ndarray
    time_base: float


class StreamInfo(NamedTuple):
    codec: str
    pix_fmt: str | None


def plan_targets(path: Path, targets: np.ndarray, fps: float | None) -> Plan:
    """The frame each target takes, exactly as the PyAV backend decides it (see the module
    docstring); raises MediaError when the file cannot be demuxed or has no video packet."""
    times, keys, tb = video_packet_times(path)
    if not times.size:
        raise MediaError(f"{path.name}: no video packet to decode")
    index = frame_on_screen(times, targets)
    end = _display_end(path, float(times[keys][-1]) if keys.any() else float(times[0]), tb,
                       1.0 / fps if fps else 0.04)
    index = np.where((index == times.size - 1) & (targets >= end - 1e-9), -1, index)
    return Plan(index.astype(np.int64), times, tb)


def _display_end(path: Path, last_key: float, tb: float, step: float) -> float:
    """End (s) of the display of the frames of the last group of pictures: the latest packet
    time plus its duration (``step`` where the container gives none), as PyAV's sampler
    measures it from the decoded frames (:func:`evoke.frames._frame_duration`)."""
    end = -np.inf
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        if tb > 0:
            container.seek(int(round(last_key / tb)), stream=stream, backward=True)
        try:
            for packet in container.demux(stream):
                if packet.pts is not None and packet.size:
                    end = max(end, packet.pts * tb + _frame_duration(packet, tb, step))
        except av.FFmpegError:
            pass  # a damaged tail: the packets read count (NVDEC then stops early, PyAV takes over)
    return end


def stream_info(path: Path) -> StreamInfo:
    with av.open(str(path)) as container:
        cc = container.streams.video[0].codec_context
        return StreamInfo(cc.codec.canonical_name, cc.pix_fmt)  # the codec, not its decoder (libdav1d)


def cpu_reason(info: dict, stream: StreamInfo) -> str | None:
    """Why this video is not decoded on the GPU, from what the CPU knows; None when it can be."""
    if stream.codec not in NVDEC_CODECS:
        return f"codec {stream.codec} is not routed to NVDEC (only {', '.join(NVDEC_CODECS)})"
    if stream.pix_fmt not in NV12_FORMATS:
        return f"pixel format {stream.pix_fmt} (the GPU path takes 8-bit 4:2:0 only)"
    if info["width"] % 2 or info["height"] % 2:
        return f"odd picture size {info['width']}x{info['height']}"
    return None


def first_frame(path: Path) -> av.VideoFrame:
    """The first frame PyAV decodes, writable: the vessel NVDEC's samples are poured into."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            frame.make_writable()
            return frame
    raise MediaError(f"{path.name}: no frame decodes")


def rgb_from_nv12(nv12: np.ndarray, like: av.VideoFrame, width: int, height: int) -> np.ndarray:
    """The PyAV backend's picture from NVDEC's NV12 samples ((H * 3/2, W) uint8: the luma
    plane, then U/V interleaved): the same swscale call on the same samples.

    The samples are written into ``like``, a frame PyAV decoded from the same stream
    (:func:`first_frame`), so swscale sees what it sees for PyAV's own frames (pixel
    format, colour space and range, chroma siting, line sizes). A frame built from the
    samples alone (``VideoFrame.from_ndarray``) converts differently: up to 13 levels
    apart at 160x120 with AREA on the test clips."""
    h, w = like.height, like.width
    if nv12.shape != (h * 3 // 2, w):
        raise ValueError(f"NV12 samples of shape {nv12.shape} for a {w}x{h} stream")
    uv = nv12[h:].reshape(h // 2, w // 2, 2)
    for plane, samples in zip(like.planes, (nv12[:h], uv[..., 0], uv[..., 1])):
        rows = np.frombuffer(plane, dtype=np.uint8).reshape(-1, plane.line_size)
        rows[:samples.shape[0], :samples.shape[1]] = samples
    return like.to_ndarray(format="rgb24", width=width, height=height, interpolation="AREA")


@lru_cache(maxsize=1)
def load_nvc():
    """PyNvVideoCodec, with a CUDA device torch can see; EnvironmentFailure otherwise."""
    try:
        import PyNvVideoCodec as nvc
    except Exception as exc:  # not installed (ImportError), or no driver (RuntimeError, OSError)
        raise EnvironmentFailure(
            f"frames backend 'nvdec' cannot load PyNvVideoCodec ({type(exc).__name__}: {_first_line(exc)}): "
            f"{REQUIREMENTS}, or set frames.backend: pyav") from exc
    import torch

    if not torch.cuda.is_available():
        raise EnvironmentFailure(f"frames backend 'nvdec': no CUDA device is visible to torch: {REQUIREMENTS}, "
                                 "or set frames.backend: pyav")
    return nvc


@lru_cache(maxsize=None)
def _caps(codec: str) -> dict:
    """NVDEC's decoder caps of this GPU for ``codec`` (8-bit 4:2:0); EnvironmentFailure when
    they cannot be read (no device, no libnvcuvid)."""
    nvc = load_nvc()
    try:
        return dict(nvc.GetDecoderCaps(gpuid=0, codec=getattr(nvc.cudaVideoCodec, codec),
                                       chromaformat=getattr(nvc.cudaVideoChromaFormat, "420"), bitdepth=8))
    except Exception as exc:
        raise EnvironmentFailure(f"frames backend 'nvdec': cannot read the GPU's decoder caps for {codec}: "
                                 f"{_first_line(exc)}") from exc


def caps_reason(codec: str, width: int, height: int) -> str | None:
    caps = _caps(NVDEC_CODECS[codec])
    if not caps.get("supported"):
        return f"this GPU's NVDEC cannot decode {codec} (decoder caps: not supported)"
    if not (caps.get("width_min", 0) <= width <= caps.get("width_max", width)
            and caps.get("height_min", 0) <= height <= caps.get("height_max", height)):
        return (f"{width}x{height} is outside this GPU's {codec} decoder limits "
                f"({caps.get('width_max')}x{caps.get('height_max')})")
    return None


def _on_cpu(path: Path, targets: np.ndarray, short_side: int, info: dict, reason: str, detail: str = "",
            start: int = 0) -> Iterator[tuple[int, float, float, np.ndarray]]:
    """The PyAV backend's frames of ``targets[start:]``, the video logged and counted by ``reason``."""
    CPU_FALLBACKS[reason] += 1
    log.warning("%s: decoded on CPU: %s%s (%d videos for this reason so far)", path.name, reason,
                f" ({detail})" if detail else "", CPU_FALLBACKS[reason])
    for i, t, ft, img in sample_frames(path, short_side=short_side, backend="pyav", info=info,
                                       targets=targets[start:]):
        yield start + i, t, ft, img


def sample_nvdec(path: Path, targets: np.ndarray, short_side: int, info: dict
                 ) -> Iterator[tuple[int, float, float, np.ndarray]]:
    """:func:`evoke.frames.sample_frames` for ``backend="nvdec"`` (same yields, same masking)."""
    nvc = load_nvc()  # the environment first: a missing GPU fails the job, not the videos
    stream = stream_info(path)
    reason = cpu_reason(info, stream) or caps_reason(stream.codec, info["width"], info["height"])
    if reason is None:
        like = first_frame(path)
        if (like.width, like.height) != (info["width"], info["height"]):
            reason = (f"its first frame is {like.width}x{like.height}, "
                      f"the probe row says {info['width']}x{info['height']}")
    if reason:
        yield from _on_cpu(path, targets, short_side, info, reason)
        return
    plan = plan_targets(path, targets, info.get("fps_avg"))
    w, h = output_size(info["width"], info["height"], short_side)
    done = 0  # targets handled (yielded or masked), in order
    try:
        for rank, ft, nv12 in _decode_taken(nvc, path, plan, info):
            while done < len(targets) and plan.index[done] == rank:
                yield done, float(targets[done]), ft, _upright(
                    rgb_from_nv12(nv12, like, w, h), info["rotation"])
                done += 1
        while done < len(targets) and plan.index[done] == -1:
            done += 1  # masked: past the end of the last frame's display
        if done < len(targets):
            raise _Diverged(f"NVDEC ended before the frame at {plan.times[plan.index[done]]:.3f} s")
    except _Diverged as exc:
        yield from _on_cpu(path, targets, short_side, info, "NVDEC's frames differ from the packet scan",
                           f"targets from {targets[done]:.3f} s; {exc}", start=done)


class _Diverged(Exception):
    """NVDEC's frames are not the ones the plan expects (the rest goes to PyAV)."""


def _decode_taken(nvc, path: Path, plan: Plan, info: dict) -> Iterator[tuple[int, float, np.ndarray]]:
    """``(rank, time_s, nv12)`` for each frame the plan takes, in display order, decoded by NVDEC.

    A decoded frame's rank is its place among the packet scan's sorted presentation times
    (its PTS in the demuxer's time base); frames must come out with ranks 0, 1, 2 ... ,
    every packet giving one frame, else :class:`_Diverged`."""
    import torch

    wanted = set(plan.index[plan.index >= 0].tolist())
    last = max(wanted) if wanted else -1
    try:
        demuxer = nvc.CreateDemuxer(filename=str(path))
        tb = Fraction(demuxer.GetTimebaseNum(), demuxer.GetTimebaseDen())
        decoder = nvc.CreateDecoder(gpuid=0, codec=demuxer.GetNvCodecId(), usedevicememory=True)
        packets = iter(demuxer)
    except Exception as exc:  # PyNvVideoCodec's own exceptions derive from Exception only
        raise _Diverged(f"NVDEC cannot open the stream: {_first_line(exc)}") from exc
    expect, ended = 0, False
    while expect <= last and not ended:
        try:
            packet = next(packets, None)
            if packet is None:  # the end: an empty packet flushes the frames NVDEC still holds
                ended, packet = True, nvc.PacketData()
            frames = decoder.Decode(packet)
        except Exception as exc:
            raise _Diverged(f"NVDEC stopped at frame {expect}: {_first_line(exc)}") from exc
        for frame in frames:
            t = float(frame.getPTS() * tb)  # as PyAV computes frame.time: the same float
            if expect >= plan.times.size or abs(plan.times[expect] - t) > max(plan.time_base, float(tb)) / 2 + 1e-9:
                want = f"{plan.times[expect]:.3f} s" if expect < plan.times.size else "no more frames"
                raise _Diverged(f"NVDEC gave the frame at {t:.3f} s where the packet scan has {want}")
            if expect in wanted:
                nv12 = torch.from_dlpack(frame).cpu().numpy()  # copied before the next Decode reuses it
                if nv12.shape != (info["height"] * 3 // 2, info["width"]):
                    raise _Diverged(f"NVDEC gave a {nv12.shape[1]}x{nv12.shape[0] * 2 // 3} picture, "
                                    f"the stream is {info['width']}x{info['height']}")
                yield expect, t, nv12
            expect += 1


def _first_line(exc: BaseException) -> str:
    return next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), type(exc).__name__)
