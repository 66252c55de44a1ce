"""``colour``: cheap, weight-free colour statistics of each 1 Hz frame.

Per frame (23 values): brightness (mean luma, Rec. 601, 0-1), contrast (luma
std), mean saturation (HSV, 0-1), colourfulness (Hasler & Süsstrunk 2003:
``sqrt(std_rg^2 + std_yb^2) + 0.3 sqrt(mean_rg^2 + mean_yb^2)`` on 0-255 RGB),
warmth (mean of R - B, -1..1) and a ``hue_bins``-bin hue histogram weighted by
saturation (sums to 1, or all zeros for a grey frame). Masked where the frame
is missing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from evoke.features.base import ExtractorConfig, FeatureExtractor, register_extractor


@dataclass(frozen=True)
class ColourConfig(ExtractorConfig):
    hue_bins: int = 18
    batch_size: int = 64

    def __post_init__(self):
        if self.hue_bins < 1:
            raise ValueError("hue_bins must be >= 1")


# frames per vectorised step: the statistics make about a dozen float temporaries of the
# frames' size, and in steps of a few frames they stay small (64 frames of 640 x 360 at
# once ran 2x slower than 4 at a time here); every frame's numbers are its own either way
CHUNK_FRAMES = 4


def colour_stats(frames: np.ndarray, hue_bins: int) -> np.ndarray:
    """(B, H, W, 3) uint8 RGB -> (B, 5 + hue_bins) float32 statistics (see the module docstring)."""
    if len(frames) > CHUNK_FRAMES:
        return np.concatenate([_colour_stats(frames[i:i + CHUNK_FRAMES], hue_bins)
                               for i in range(0, len(frames), CHUNK_FRAMES)])
    return _colour_stats(frames, hue_bins)


def _colour_stats(frames: np.ndarray, hue_bins: int) -> np.ndarray:
    x = frames.astype(np.float32)
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    luma = (0.299 * r + 0.587 * g + 0.114 * b) / 255.0
    mx, mn = x.max(-1), x.min(-1)
    sat = np.where(mx > 0, (mx - mn) / np.maximum(mx, 1e-6), 0.0)
    rg, yb = r - g, 0.5 * (r + g) - b
    axes = (1, 2)
    colourful = np.sqrt(rg.std(axes) ** 2 + yb.std(axes) ** 2) + 0.3 * np.sqrt(
        rg.mean(axes) ** 2 + yb.mean(axes) ** 2
    )
    warmth = (r - b).mean(axes) / 255.0
    # hue in [0, 1) from the HSV hexcone
    delta = np.maximum(mx - mn, 1e-6)
    hue = np.where(
        mx == r, ((g - b) / delta) % 6, np.where(mx == g, (b - r) / delta + 2, (r - g) / delta + 4)
    ) / 6.0
    bins = np.minimum((hue * hue_bins).astype(np.int64), hue_bins - 1)
    hist = np.zeros((frames.shape[0], hue_bins), np.float32)
    for i in range(frames.shape[0]):
        hist[i] = np.bincount(bins[i].ravel(), weights=sat[i].ravel(), minlength=hue_bins)
    total = hist.sum(1, keepdims=True)
    hist = np.divide(hist, total, out=np.zeros_like(hist), where=total > 0)
    stats = np.stack([luma.mean(axes), luma.std(axes), sat.mean(axes), colourful, warmth], axis=1)
    return np.concatenate([stats, hist], axis=1).astype(np.float32)


@register_extractor
class ColourExtractor(FeatureExtractor):
    name = "colour"
    config_type = ColourConfig
    modality = "frames"
    description = "brightness, contrast, saturation, colourfulness, warmth, hue histogram (no weights)"

    @property
    def step_shape(self):
        return (5 + self.config.hue_bins,)

    @property
    def dim_names(self) -> tuple[str, ...]:
        """Names of the values' last axis (the shard file's ``dim_names`` attribute): the five
        statistics, then each hue bin by its range in degrees (hue_000_020 ...)."""
        step = 360 / self.config.hue_bins
        hues = tuple(f"hue_{round(i * step):03d}_{round((i + 1) * step):03d}" for i in range(self.config.hue_bins))
        return ("brightness", "contrast", "saturation", "colourfulness", "warmth", *hues)

    def frame_step(self, frames: np.ndarray) -> dict[str, np.ndarray]:
        """The statistics (B, 5 + hue_bins) of a (B, H, W, 3) uint8 batch (``extract`` is
        ``per_frame`` over these; the stage batches across videos)."""
        return {"values": colour_stats(frames, self.config.hue_bins)}
