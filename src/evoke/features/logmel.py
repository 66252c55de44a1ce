"""``logmel``: log-mel statistics per second, 129-d; weight-free, runs anywhere.

For step ``k`` (time ``t_k``) the audio of ``[t_k, t_k + window_s)`` (1 s by
default, starting on the 10 ms frame grid like ``vggish``) goes through the
AudioSet log-mel front end (:mod:`evoke.features._audio`: 25 ms periodic-Hann
frames every 10 ms, 64 HTK mel bands 125-7500 Hz, ``log(mel + 0.01)``; the 98
frames whose windows lie inside the second). Layout of the 129 values:

* ``[0:64]``: mean over the frames of each mel band's log-mel value (band 0 = 125 Hz end);
* ``[64:128]``: standard deviation (population, ddof 0) of the same;
* ``[128]``: RMS energy of the window's samples in dBFS, ``10 log10(mean(x^2) + 1e-10)``
  (a full-scale sine is -3 dB, digital silence -100 dB).

A step is valid when the audio covers at least ``min_coverage_s`` of its window
(default 0.96 s, the same rule as ``vggish``, so the two audio features share
one mask); a shorter final window is summarised over what there is. No audio,
or audio shorter than ``min_coverage_s``: every step masked, values zero.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from evoke.features import _audio
from evoke.features.base import (
    ExtractorConfig,
    FeatureExtractor,
    FeatureResult,
    VideoInput,
    register_extractor,
)

DIM = 2 * _audio.NUM_MEL_BINS + 1


@dataclass(frozen=True)
class LogMelConfig(ExtractorConfig):
    """``window_s``: seconds summarised per step; ``min_coverage_s``: audio a step needs to be valid;
    ``batch_size``: steps computed together."""

    window_s: float = 1.0
    min_coverage_s: float = 0.96
    batch_size: int = 128

    def __post_init__(self):
        if not 0.025 <= self.min_coverage_s <= self.window_s:
            raise ValueError("need 0.025 <= min_coverage_s <= window_s")
        if self.batch_size < 1:
            raise ValueError("batch_size must be >= 1")


def window_stats(x: np.ndarray) -> np.ndarray:
    """The 129 statistics of one window (or (B, n) windows of equal length) of 16 kHz samples."""
    spec = _audio.log_mel(x)  # (..., frames, 64)
    rms_db = 10.0 * np.log10(np.mean(np.square(x), axis=-1) + 1e-10)
    return np.concatenate([spec.mean(axis=-2), spec.std(axis=-2), rms_db[..., None]], axis=-1)


@register_extractor
class LogMel(FeatureExtractor):
    name = "logmel"
    config_type = LogMelConfig
    modality = "audio"
    description = "per-second mean and std of the 64 AudioSet log-mel bands + RMS dBFS, 129-d"

    @property
    def step_shape(self) -> tuple[int, ...]:
        return (DIM,)

    @property
    def dim_names(self) -> tuple[str, ...]:
        """Names of the 129 values (the shard file's ``dim_names`` attribute): mel_mean_00 ..
        mel_mean_63, mel_std_00 .. mel_std_63 (band 0 the lowest), rms_db."""
        bands = range(_audio.NUM_MEL_BINS)
        return (*(f"mel_mean_{b:02d}" for b in bands), *(f"mel_std_{b:02d}" for b in bands), "rms_db")

    def inputs(self, video: VideoInput):
        """All of the work (the features stage runs it ahead, beside the writes): first the
        steps' valid mask (T,), then blocks of (step indices (B,), statistics (B, 129))."""
        cfg = self.config
        windows = _audio.step_windows(
            video.audio_path, video.timestamps_s, window=round(cfg.window_s * _audio.SAMPLE_RATE),
            min_samples=max(round(cfg.min_coverage_s * _audio.SAMPLE_RATE), _audio.STFT_WINDOW_SAMPLES))
        yield windows.valid
        for block in _audio.step_blocks(windows.full_steps, cfg.batch_size):
            yield block, window_stats(windows.samples(block))
        for k in windows.partial_steps:  # a short final window
            yield np.array([k]), window_stats(windows.step_samples(k))[None]

    def extract(self, video: VideoInput) -> FeatureResult:
        return _audio.assemble(self.read_inputs(video), video.n_steps, DIM)
