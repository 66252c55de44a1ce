"""``i3d``: Kinetics-400 RGB I3D (Inception-v1 inflated to 3D) clip features on the 1 Hz grid.

The network (Carreira & Zisserman, "Quo Vadis, Action Recognition?", 2017) is
written here in PyTorch with the module names of the common PyTorch port
(piergiaj/pytorch-i3d: ``Conv3d_1a_7x7``, ``Mixed_3b`` ... ``Mixed_5c``, each
unit a ``conv3d`` + ``bn``, inception branches ``b0 b1a b1b b2a b2b b3b``,
``logits``), so that port's checkpoints load with ``load_state_dict(strict=True)``.
Convolutions and max pools use TensorFlow's "SAME" padding, computed from the
input size as the original does.

Weights: ``rgb_imagenet.pt`` from piergiaj/pytorch-i3d, DeepMind's RGB I3D
(ImageNet-inflated, then trained on Kinetics-400; the name refers to the
ImageNet initialisation) converted to PyTorch. Not shipped by any package:
``evoke weights fetch`` downloads it, or point ``features.weights.i3d_rgb`` at
a local copy.

Input (``modality = "video"``): the muted video file, decoded here with PyAV
as a stream and resampled to ``fps`` (25) by timestamp: the frame for time
``k / fps`` is the frame on screen then (the last one presented at or before
it, with the frames stage's own reader), for every ``k / fps`` before the
video's duration (variable frame rate safe; the display rotation of the probe
row is applied). Each frame: short side scaled to 256
(bilinear), the central 224 x 224, values ``x / 255 * 2 - 1`` in [-1, 1].
Clips of ``clip_len`` (16) frames start every ``stride`` (8) frames (only
whole clips); each clip's Mixed_5c output is averaged over time and space to
1024-d. Only a sliding window of frames is kept in memory (at most
``clip_len`` frames plus one batch of clips), whatever the video's length.
In the features stage the decoding, clip assembly and scaling (``inputs``) run
in a prefetch thread, ahead of the network.

Aggregation onto the frames grid (``timestamps_s``, T steps):

* ``aggregate: per_second`` (default): a clip belongs to the step its centre
  falls in (centre ``(start + clip_len / 2) / fps``; step ``i`` covers
  ``[timestamps_s[i], timestamps_s[i+1])``); each step gets the element-wise
  max over its clips; steps with no clip (a video shorter than one clip, the
  last partial second) are zero with mask False.
* ``aggregate: video``: the element-wise max over all clips of the video,
  repeated on every step, mask True everywhere (all False when the video has
  no whole clip). This is the COGNIMUSE paper's per-video I3D feature put on
  the common grid, so heads that pool over time see the same vector.

``extract_clips(video)`` returns the clip-level features (start frames,
centres, (N, 1024)) for inspection and tests; ``classify_clips`` the Kinetics
logits of preprocessed clips.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Iterator

import numpy as np

from evoke.features.base import (
    ExtractorConfig,
    FeatureError,
    FeatureExtractor,
    FeatureResult,
    VideoInput,
    check_amp,
    register_extractor,
)
from evoke.weights import WeightSpec, resolve

log = logging.getLogger(__name__)

I3D_URL = "https://raw.githubusercontent.com/piergiaj/pytorch-i3d/master/models/rgb_imagenet.pt"
SHORT_SIDE = 256
CROP = 224
FEATURE_DIM = 1024
N_CLASSES = 400


@dataclass(frozen=True)
class I3DConfig(ExtractorConfig):
    """``fps``: decoding rate; ``clip_len``/``stride``: clip length and hop in frames;
    ``batch_clips``: clips per forward pass; ``aggregate``: per_second | video (module
    docstring); ``amp``: autocast on CUDA: auto (fp16) | fp16 | bf16 | off (ignored on the CPU; ``_torch.amp_dtype``)."""

    fps: float = 25.0
    clip_len: int = 16
    stride: int = 8
    batch_clips: int = 8
    aggregate: str = "per_second"
    amp: bool | str = "auto"

    def __post_init__(self):
        check_amp(self.amp)
        if self.aggregate not in ("per_second", "video"):
            raise ValueError(f"aggregate must be per_second or video, not {self.aggregate!r}")
        if not self.fps > 0:
            raise ValueError(f"fps must be > 0, not {self.fps}")
        if int(self.clip_len) < 8:  # the network downsamples time by 8
            raise ValueError(f"clip_len must be >= 8, not {self.clip_len}")
        if int(self.stride) < 1 or int(self.batch_clips) < 1:
            raise ValueError("stride and batch_clips must be >= 1")


# -- the network --------------------------------------------------------------

def _build_network(num_classes: int = N_CLASSES):
    """The I3D module tree (torch imported here so importing this module stays cheap)."""
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    def same_padding(x, kernel, stride):
        """TF 'SAME' padding of (B, C, T, H, W) for ``kernel``/``stride``: (w0, w1, h0, h1, t0, t1)."""
        pads = []
        for size, k, s in zip(x.shape[2:], kernel, stride):
            total = max(k - s, 0) if size % s == 0 else max(k - size % s, 0)
            pads.append((total // 2, total - total // 2))
        (t0, t1), (h0, h1), (w0, w1) = pads
        return (w0, w1, h0, h1, t0, t1)

    class Unit3D(nn.Module):
        """Conv3d (no bias unless no BN) + BatchNorm3d(eps 1e-3) + ReLU, 'SAME' padded."""

        def __init__(self, cin, cout, kernel=(1, 1, 1), stride=(1, 1, 1), batch_norm=True, relu=True,
                     bias=False):
            super().__init__()
            self.kernel, self.stride, self.relu = tuple(kernel), tuple(stride), relu
            self.conv3d = nn.Conv3d(cin, cout, kernel_size=self.kernel, stride=self.stride, padding=0, bias=bias)
            self.bn = nn.BatchNorm3d(cout, eps=1e-3, momentum=0.01) if batch_norm else None

        def forward(self, x):
            pad = same_padding(x, self.kernel, self.stride)
            if pad[0::2] == pad[1::2]:  # symmetric: the convolution pads (zeros, same result, no copy)
                x = F.conv3d(x, self.conv3d.weight, self.conv3d.bias, self.stride, padding=pad[4::-2])
            else:
                x = self.conv3d(F.pad(x, pad))
            if self.bn is not None:
                x = self.bn(x)
            return F.relu(x) if self.relu else x

    class MaxPool3dSame(nn.Module):
        """Max pool with 'SAME' padding (zeros: every pooled input follows a ReLU).

        Computed separably (time, then height, then width) as maxima of strided
        slices: exactly the same values as ``max_pool3d``, several times faster on
        the CPU (no argmax indices).
        """

        def __init__(self, kernel, stride):
            super().__init__()
            self.kernel, self.stride = tuple(kernel), tuple(stride)

        def forward(self, x):
            x = F.pad(x, same_padding(x, self.kernel, self.stride))
            for dim, k, s in zip((2, 3, 4), self.kernel, self.stride):
                if k == 1 and s == 1:
                    continue
                n = (x.shape[dim] - k) // s + 1
                out = x.narrow(dim, 0, (n - 1) * s + 1)[(slice(None),) * dim + (slice(None, None, s),)]
                for j in range(1, k):
                    part = x.narrow(dim, j, (n - 1) * s + 1)[(slice(None),) * dim + (slice(None, None, s),)]
                    out = torch.maximum(out, part)
                x = out
            return x

    class Mixed(nn.Module):
        """An inflated Inception-v1 block: 1x1 | 1x1 -> 3x3 | 1x1 -> 3x3 | pool -> 1x1."""

        def __init__(self, cin, widths):
            super().__init__()
            c0, c1a, c1b, c2a, c2b, c3 = widths
            self.b0 = Unit3D(cin, c0)
            self.b1a = Unit3D(cin, c1a)
            self.b1b = Unit3D(c1a, c1b, kernel=(3, 3, 3))
            self.b2a = Unit3D(cin, c2a)
            self.b2b = Unit3D(c2a, c2b, kernel=(3, 3, 3))
            self.b3a = MaxPool3dSame((3, 3, 3), (1, 1, 1))
            self.b3b = Unit3D(cin, c3)
            self.out_channels = c0 + c1b + c2b + c3

        def forward(self, x):
            return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], 1)

    class InceptionI3d(nn.Module):
        """RGB I3D up to Mixed_5c, plus the Kinetics logits (1x1x1 conv with bias)."""

        def __init__(self, num_classes=N_CLASSES):
            super().__init__()
            self.Conv3d_1a_7x7 = Unit3D(3, 64, kernel=(7, 7, 7), stride=(2, 2, 2))
            self.MaxPool3d_2a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2))
            self.Conv3d_2b_1x1 = Unit3D(64, 64)
            self.Conv3d_2c_3x3 = Unit3D(64, 192, kernel=(3, 3, 3))
            self.MaxPool3d_3a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2))
            self.Mixed_3b = Mixed(192, (64, 96, 128, 16, 32, 32))
            self.Mixed_3c = Mixed(256, (128, 128, 192, 32, 96, 64))
            self.MaxPool3d_4a_3x3 = MaxPool3dSame((3, 3, 3), (2, 2, 2))
            self.Mixed_4b = Mixed(480, (192, 96, 208, 16, 48, 64))
            self.Mixed_4c = Mixed(512, (160, 112, 224, 24, 64, 64))
            self.Mixed_4d = Mixed(512, (128, 128, 256, 24, 64, 64))
            self.Mixed_4e = Mixed(512, (112, 144, 288, 32, 64, 64))
            self.Mixed_4f = Mixed(528, (256, 160, 320, 32, 128, 128))
            self.MaxPool3d_5a_2x2 = MaxPool3dSame((2, 2, 2), (2, 2, 2))
            self.Mixed_5b = Mixed(832, (256, 160, 320, 32, 128, 128))
            self.Mixed_5c = Mixed(832, (384, 192, 384, 48, 128, 128))
            self.logits = Unit3D(FEATURE_DIM, num_classes, batch_norm=False, relu=False, bias=True)
            self.trunk = [
                "Conv3d_1a_7x7", "MaxPool3d_2a_3x3", "Conv3d_2b_1x1", "Conv3d_2c_3x3", "MaxPool3d_3a_3x3",
                "Mixed_3b", "Mixed_3c", "MaxPool3d_4a_3x3", "Mixed_4b", "Mixed_4c", "Mixed_4d",
                "Mixed_4e", "Mixed_4f", "MaxPool3d_5a_2x2", "Mixed_5b", "Mixed_5c",
            ]

        def mixed_5c(self, x):
            """(B, 3, T, H, W) in [-1, 1] -> the Mixed_5c map (B, 1024, T/8, H/32, W/32)."""
            for name in self.trunk:
                x = getattr(self, name)(x)
            return x

        def forward(self, x):
            """Clip features: Mixed_5c averaged over time and space, (B, 1024)."""
            return self.mixed_5c(x).mean(dim=(2, 3, 4))

        def kinetics_logits(self, x):
            """Kinetics logits (B, classes) as the original computes them: average pool
            [2, 7, 7] (stride 1), the 1x1x1 logits conv, then the mean over time."""
            m = F.avg_pool3d(self.mixed_5c(x), kernel_size=(2, 7, 7), stride=1)
            return self.logits(m).mean(dim=(3, 4)).mean(dim=2)

    return InceptionI3d(num_classes)


def build_i3d(num_classes: int = N_CLASSES):
    """A randomly initialised RGB I3D (torch's default init) in eval mode."""
    return _build_network(num_classes).eval()


# -- decoding -----------------------------------------------------------------

def _rotation(path: Path) -> int:
    """The display rotation of ``path`` (for callers without the probe row's)."""
    from evoke.media import MediaError, probe

    try:
        return int(probe(path)["rotation"])
    except MediaError as exc:
        raise FeatureError(str(exc)) from exc


def resampled_frames(path: str | Path, fps: float, duration_s: float, short_side: int = SHORT_SIDE,
                     crop: int = CROP, rotation: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(k, rgb)`` for the frame on screen at each ``k / fps < duration_s``.

    ``rgb`` is (crop, crop, 3) uint8: upright (``rotation`` degrees clockwise, the probe
    row's; None: probed here), short side scaled to ``short_side`` (bilinear),
    centre-cropped. The frame on screen at ``t`` is what the frames stage takes
    (:class:`evoke.frames._PyAVSampler`'s ``frame_at``: the last frame presented at or
    before ``t``, the first one for targets before it, a small reorder buffer for
    decoders that hand frames out of order), decoded as one stream (the targets are
    1 / fps apart: no seeking). Streams: holds the frame on screen, the next one and the
    reorder buffer. Targets after the last decodable frame's display (a truncated file)
    are not yielded.
    """
    import av

    from evoke.frames import _PyAVSampler

    path = Path(path)
    if rotation is None:
        rotation = _rotation(path)
    n_targets = max(1, math.ceil(duration_s * fps - 1e-9))
    try:
        sampler = _PyAVSampler(path, np.zeros(0), None)
    except av.FFmpegError as exc:
        raise FeatureError(f"{path.name}: cannot open video: {exc}") from exc
    except IndexError:
        raise FeatureError(f"{path.name}: no video stream") from None
    try:
        if sampler.stream.average_rate:  # a frame's display time when the container gives none
            sampler.step = 1.0 / float(sampler.stream.average_rate)
        shown, img = None, None
        for k in range(n_targets):
            got = sampler.frame_at(k / fps)
            if got is None:
                if k == 0:
                    raise FeatureError(f"{path.name}: no frame could be decoded")
                return
            frame = got[1]
            if frame is not shown:  # a frame on screen for several targets is converted once
                shown, img = frame, _crop_upright(frame, short_side, crop, rotation)
            yield k, img
    finally:
        sampler.close()


def _crop_upright(frame, short_side: int, crop: int, rotation: int) -> np.ndarray:
    """(crop, crop, 3) uint8 of a decoded frame: short side scaled to ``short_side``
    (bilinear), turned by ``rotation``, the centre cropped."""
    s = short_side / min(frame.width, frame.height)
    w, h = max(short_side, round(frame.width * s)), max(short_side, round(frame.height * s))
    img = frame.to_ndarray(format="rgb24", width=w, height=h, interpolation="BILINEAR")
    if rotation:
        img = np.rot90(img, k=-(rotation // 90))
    top, left = (img.shape[0] - crop) // 2, (img.shape[1] - crop) // 2
    return np.ascontiguousarray(img[top:top + crop, left:left + crop])


# -- the extractor ------------------------------------------------------------

@dataclass
class ClipFeatures:
    """Clip-level I3D output: ``starts`` (N,) first frame index at ``fps``, ``centres_s``
    (N,) clip centres in seconds, ``features`` (N, 1024)."""

    starts: np.ndarray
    centres_s: np.ndarray
    features: np.ndarray


def clip_steps(centres_s: np.ndarray, timestamps_s: np.ndarray) -> np.ndarray:
    """The grid step each clip centre falls in (``-1`` when outside the grid).

    Step ``i`` covers ``[timestamps_s[i], timestamps_s[i+1])``; the last step is as
    long as the one before it (the whole grid when there is only one step).
    """
    ts = np.asarray(timestamps_s, dtype=np.float64)
    c = np.asarray(centres_s, dtype=np.float64)
    if ts.size == 0:
        return np.full(c.shape, -1, dtype=np.int64)
    step = float(ts[1] - ts[0]) if ts.size > 1 else np.inf
    idx = np.searchsorted(ts, c + 1e-9, side="right") - 1
    idx[(idx < 0) | (c >= ts[-1] + step - 1e-9)] = -1
    return idx.astype(np.int64)


@register_extractor
class I3DExtractor(FeatureExtractor):
    name: ClassVar[str] = "i3d"
    config_type = I3DConfig
    modality = "video"
    uses_torch = True  # the network runs on the job's device (GPU when one is visible)
    description = "Kinetics-400 RGB I3D Mixed_5c (1024-d), 16-frame clips at 25 fps, max per second"
    config: I3DConfig

    @property
    def step_shape(self) -> tuple[int, ...]:
        return (FEATURE_DIM,)

    @property
    def dim_names(self) -> tuple[str, ...]:
        """mixed5c_0000 .. mixed5c_1023 (the pooled Mixed-5c channels)."""
        return tuple(f"mixed5c_{i:04d}" for i in range(FEATURE_DIM))

    def weights(self) -> list[WeightSpec]:
        return [WeightSpec(
            name="i3d_rgb", filename="rgb_imagenet.pt", url=I3D_URL,
            note="piergiaj/pytorch-i3d's conversion of DeepMind's Kinetics-400 RGB I3D "
                 "(ImageNet-inflated, Kinetics-trained).",
        )]

    def load(self) -> None:
        from evoke.features import _torch as T

        self._device = T.torch_device(self.device)
        path = resolve(self.weights()[0], self.weights_paths)
        model = _build_network(N_CLASSES)
        T.load_checkpoint(model, path, "I3D (piergiaj/pytorch-i3d layout)")
        self.model = model.eval().to(self._device)

    # -- computing ------------------------------------------------------------
    def preprocess(self, clips: np.ndarray):
        """(B, L, 224, 224, 3) uint8 -> (B, 3, L, 224, 224) float in [-1, 1] on the device.

        Float input is taken as already scaled to [-1, 1] (e.g. DeepMind's sample clip).
        """
        import torch

        clips = np.asarray(clips)
        if clips.ndim != 5 or clips.shape[-1] != 3:
            raise FeatureError(f"expected clips (B, L, H, W, 3), got shape {clips.shape}")
        t = torch.from_numpy(np.ascontiguousarray(clips))
        if self._device.type == "cuda":
            t = t.pin_memory().to(self._device, non_blocking=True)
        t = t.permute(0, 4, 1, 2, 3)
        if clips.dtype == np.uint8:
            return t.float() / 255.0 * 2.0 - 1.0
        return t.float()

    def clip_features(self, clips: np.ndarray) -> np.ndarray:
        """(B, L, 224, 224, 3) clips (uint8, or float in [-1, 1]) -> (B, 1024) features."""
        from evoke.features import _torch as T

        self.ensure_loaded()
        with T.inference(self._device, self.config.amp):
            return self.model(self.preprocess(clips)).float().cpu().numpy()

    def classify_clips(self, clips: np.ndarray) -> np.ndarray:
        """(B, L, 224, 224, 3) clips (uint8, or float in [-1, 1]) -> (B, 400) Kinetics logits."""
        from evoke.features import _torch as T

        self.ensure_loaded()
        with T.inference(self._device, self.config.amp):
            return self.model.kinetics_logits(self.preprocess(clips)).float().cpu().numpy()

    def _clips(self, video: VideoInput) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Batches of (start frame indices (B,), clips (B, L, 224, 224, 3) uint8)."""
        if video.video_path is None:
            raise FeatureError(f"{video.video_id}: i3d needs the video file (video_path is None)")
        cfg = self.config
        L, S = int(cfg.clip_len), int(cfg.stride)
        window: deque = deque()  # frames k >= the next clip's start (resampled_frames yields every k in order)
        next_start, starts, batch = 0, [], []
        for k, frame in resampled_frames(video.video_path, cfg.fps, video.duration_s, rotation=video.rotation):
            if k >= next_start:
                window.append(frame)
            if len(window) == L:
                starts.append(next_start)
                batch.append(np.stack(window))
                next_start += S
                for _ in range(min(S, L)):
                    window.popleft()
                if len(batch) == cfg.batch_clips:
                    yield np.asarray(starts), np.stack(batch)
                    starts, batch = [], []
        if batch:
            yield np.asarray(starts), np.stack(batch)

    def inputs(self, video: VideoInput) -> Iterator[tuple[np.ndarray, object]]:
        """The front end, which the features stage runs ahead of the network: batches of
        (start frame indices (B,), ``preprocess(clips)``), decoded, resampled and scaled."""
        from evoke.features import _torch as T

        for starts, clips in self._clips(video):
            with T.preprocessing(self._device, self.config.amp):
                x = self.preprocess(clips)
            yield starts, x  # outside the context: a suspended generator must not hold it

    def _iter_clip_features(self, video: VideoInput) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        from evoke.features import _torch as T

        self.ensure_loaded()
        for starts, x in self.read_inputs(video):
            with T.inference(self._device, self.config.amp):
                feats = self.model(x).float().cpu().numpy()
            yield starts, feats

    def centres(self, starts: np.ndarray) -> np.ndarray:
        """Clip centres in seconds: ``(start + clip_len / 2) / fps``."""
        return (np.asarray(starts, dtype=np.float64) + self.config.clip_len / 2.0) / self.config.fps

    def extract_clips(self, video: VideoInput) -> ClipFeatures:
        """Every clip's feature (kept in memory: for inspection and short videos)."""
        starts, feats = [], []
        for s, f in self._iter_clip_features(video):
            starts.append(s)
            feats.append(f)
        starts_a = np.concatenate(starts) if starts else np.zeros(0, dtype=np.int64)
        feats_a = np.concatenate(feats) if feats else np.zeros((0, FEATURE_DIM), dtype=np.float32)
        return ClipFeatures(starts_a, self.centres(starts_a), feats_a)

    def extract(self, video: VideoInput) -> FeatureResult:
        agg = ClipAggregator(video.timestamps_s, self.config.aggregate)
        for starts, feats in self._iter_clip_features(video):  # running max: O(T) memory
            agg.add(self.centres(starts), feats)
        return agg.result()


class ClipAggregator:
    """Streaming max of clip features onto the grid (module docstring, "Aggregation")."""

    def __init__(self, timestamps_s: np.ndarray, mode: str = "per_second", dim: int = FEATURE_DIM):
        if mode not in ("per_second", "video"):
            raise FeatureError(f"aggregate must be per_second or video, not {mode!r}")
        self.timestamps_s, self.mode = np.asarray(timestamps_s), mode
        self.best = np.full((self.timestamps_s.shape[0], dim), -np.inf, dtype=np.float32)
        self.overall = np.full(dim, -np.inf, dtype=np.float32)
        self.n_clips = 0

    def add(self, centres_s: np.ndarray, feats: np.ndarray) -> None:
        feats = np.asarray(feats, dtype=np.float32)
        if feats.shape[0] == 0:
            return
        self.n_clips += feats.shape[0]
        self.overall = np.maximum(self.overall, feats.max(axis=0))
        steps = clip_steps(centres_s, self.timestamps_s)
        ok = steps >= 0
        np.maximum.at(self.best, steps[ok], feats[ok])

    def result(self) -> FeatureResult:
        T = self.best.shape[0]
        if self.mode == "video":
            mask = np.full(T, self.n_clips > 0)
            values = np.where(mask[:, None], self.overall[None, :], 0.0)
        else:
            mask = np.isfinite(self.best[:, 0])
            values = np.where(mask[:, None], self.best, 0.0)
        return FeatureResult(values=values.astype(np.float32), mask=mask)
