"""Shared audio helpers of the audio extractors: reading the WAV, each step's audio window
(:func:`step_windows`: starts, lengths and the valid mask on the time grid) and the
AudioSet log-mel front end.

The front end follows the AudioSet / VGGish reference (``vggish_input.py`` and
``mel_features.py`` in tensorflow/models, research/audioset/vggish) exactly:

* 16 kHz mono; 16-bit PCM scaled by 1/32768 to [-1, 1);
* frames of 25 ms (400 samples) every 10 ms (160 samples), no padding, a
  *periodic* Hann window, FFT length 512 (the next power of two), magnitude
  (not power) spectrum;
* 64 triangular mel bands from 125 to 7500 Hz on the HTK mel scale
  ``mel = 1127 ln(1 + f / 700)``, triangles linear in mel, the DC bin zeroed;
* ``log(mel + 0.01)``;
* examples of 96 frames x 64 bands (0.96 s: 15,600 samples).

evoke frames the examples on the video's time grid instead of the reference's
0.96 s hop: the example of step ``k`` starts at frame ``round(100 t_k)``, i.e.
at ``t_k`` itself on the 1 Hz grid (frame ``100 k``, sample ``16000 k``). Every
example is computed from its own 15,600 samples, which gives exactly the values
of framing the whole signal's log-mel spectrogram, without holding a 2-hour
film's spectrogram in memory.

The WAV is memory-mapped, so a long file is read one block of steps at a time.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from evoke.features.base import FeatureError

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
STFT_WINDOW_SAMPLES = 400  # 25 ms
STFT_HOP_SAMPLES = 160  # 10 ms
FFT_LENGTH = 512  # 2 ** ceil(log2(400))
NUM_MEL_BINS = 64
MEL_MIN_HZ = 125.0
MEL_MAX_HZ = 7500.0
LOG_OFFSET = 0.01
EXAMPLE_FRAMES = 96  # 0.96 s
EXAMPLE_SAMPLES = (EXAMPLE_FRAMES - 1) * STFT_HOP_SAMPLES + STFT_WINDOW_SAMPLES  # 15,600
FRAMES_PER_SECOND = SAMPLE_RATE // STFT_HOP_SAMPLES  # 100

_MEL_BREAK_HZ = 700.0
_MEL_HIGH_Q = 1127.0


# -- reading ---------------------------------------------------------------
class Audio:
    """A mono waveform at 16 kHz, read lazily from a WAV file (memory-mapped when possible).

    ``segment(start, stop)`` returns float64 samples in [-1, 1] for the sample
    range, clipped to the file; ``n_samples`` is the length at 16 kHz.
    """

    def __init__(self, path: Path | str):
        from scipy.io import wavfile

        self.path = Path(path)
        try:
            try:
                rate, data = wavfile.read(self.path, mmap=True)
            except ValueError:  # formats the memory map cannot take (24-bit, ...)
                rate, data = wavfile.read(self.path, mmap=False)
        except Exception as exc:  # noqa: BLE001  (scipy raises several kinds)
            raise FeatureError(f"{self.path}: not a readable WAV file ({exc})") from exc
        self._raw = data
        self._scale, self._offset = _pcm_scale(data.dtype, self.path)
        if rate != SAMPLE_RATE:
            # ingest writes 16 kHz; anything else is resampled once, in memory
            from math import gcd

            from scipy.signal import resample_poly

            log.warning("%s: %d Hz audio, resampling to %d Hz", self.path, rate, SAMPLE_RATE)
            mono = self._convert(data)
            g = gcd(int(rate), SAMPLE_RATE)
            self._raw = resample_poly(mono, SAMPLE_RATE // g, int(rate) // g)
            self._scale, self._offset = 1.0, 0.0
        self.n_samples = int(self._raw.shape[0])

    @property
    def duration_s(self) -> float:
        return self.n_samples / SAMPLE_RATE

    def _convert(self, block: np.ndarray) -> np.ndarray:
        x = np.asarray(block, dtype=np.float64)
        if self._offset:
            x = x - self._offset
        if self._scale != 1.0:
            x = x * self._scale
        if x.ndim == 2:  # channels last, as scipy reads them
            x = x.mean(axis=1)
        return x

    def segment(self, start: int, stop: int) -> np.ndarray:
        start = max(int(start), 0)
        stop = min(int(stop), self.n_samples)
        if stop <= start:
            return np.zeros(0, dtype=np.float64)
        return self._convert(self._raw[start:stop])


def _pcm_scale(dtype: np.dtype, path: Path) -> tuple[float, float]:
    """(scale, offset) that map the file's samples to [-1, 1], as vggish_input does for int16."""
    if dtype == np.int16:
        return 1.0 / 32768.0, 0.0
    if dtype == np.int32:
        return 1.0 / 2147483648.0, 0.0
    if dtype == np.uint8:
        return 1.0 / 128.0, 128.0
    if dtype.kind == "f":
        return 1.0, 0.0
    raise FeatureError(f"{path}: unsupported WAV sample type {dtype}")


def open_audio(path: Path | str | None) -> Audio | None:
    """The video's audio, or None when it has none (``audio_path`` None or an empty file)."""
    if path is None:
        return None
    p = Path(path)
    if not p.exists():
        raise FeatureError(f"{p}: audio file missing")
    if p.stat().st_size == 0:
        return None
    return Audio(p)


# -- the AudioSet log-mel front end ------------------------------------------
def periodic_hann(n: int) -> np.ndarray:
    """The periodic Hann window of ``mel_features.periodic_hann``: 0.5 - 0.5 cos(2 pi k / n)."""
    return 0.5 - 0.5 * np.cos(2.0 * np.pi / n * np.arange(n))


def hertz_to_mel(f) -> np.ndarray:
    return _MEL_HIGH_Q * np.log(1.0 + np.asarray(f, dtype=np.float64) / _MEL_BREAK_HZ)


@lru_cache(maxsize=4)
def mel_matrix(num_mel_bins: int = NUM_MEL_BINS, num_spectrogram_bins: int = FFT_LENGTH // 2 + 1,
               sample_rate: int = SAMPLE_RATE, lower_hz: float = MEL_MIN_HZ,
               upper_hz: float = MEL_MAX_HZ) -> np.ndarray:
    """(num_spectrogram_bins, num_mel_bins) triangular weights, ``spectrogram_to_mel_matrix``."""
    nyquist = sample_rate / 2.0
    if not 0.0 <= lower_hz < upper_hz <= nyquist:
        raise ValueError(f"mel range {lower_hz}-{upper_hz} Hz must lie within 0-{nyquist} Hz")
    bins_mel = hertz_to_mel(np.linspace(0.0, nyquist, num_spectrogram_bins))
    edges = np.linspace(hertz_to_mel(lower_hz), hertz_to_mel(upper_hz), num_mel_bins + 2)
    lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (bins_mel[:, None] - lower) / (centre - lower)
    falling = (upper - bins_mel[:, None]) / (upper - centre)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights[0, :] = 0.0  # HTK excludes the DC bin
    weights.setflags(write=False)
    return weights


def frame_signal(x: np.ndarray, window: int, hop: int) -> np.ndarray:
    """(n_frames, window) views of ``x`` (last axis), no padding: incomplete frames are dropped."""
    n = x.shape[-1]
    if n < window:
        return np.zeros((*x.shape[:-1], 0, window), dtype=x.dtype)
    n_frames = 1 + (n - window) // hop
    view = np.lib.stride_tricks.sliding_window_view(x, window, axis=-1)
    return view[..., ::hop, :][..., :n_frames, :]


def log_mel(x: np.ndarray) -> np.ndarray:
    """AudioSet log-mel spectrogram of 16 kHz samples ``x`` (..., n): (..., n_frames, 64) float64."""
    frames = frame_signal(np.asarray(x, dtype=np.float64), STFT_WINDOW_SAMPLES, STFT_HOP_SAMPLES)
    spectrum = np.abs(np.fft.rfft(frames * periodic_hann(STFT_WINDOW_SAMPLES), FFT_LENGTH))
    return np.log(spectrum @ mel_matrix() + LOG_OFFSET)


def example_starts(timestamps_s: np.ndarray) -> np.ndarray:
    """First sample of the example of each step: the STFT frame nearest ``t`` (frame 100 k at t = k)."""
    frames = np.round(np.asarray(timestamps_s, dtype=np.float64) * FRAMES_PER_SECOND).astype(np.int64)
    return frames * STFT_HOP_SAMPLES


@dataclass(frozen=True)
class StepWindows:
    """Where the audio window of every step of a video's time grid lies.

    ``starts`` (T,) int64: first sample of step ``k``'s window (:func:`example_starts`);
    ``lengths`` (T,) int64: samples of the window inside the audio, 0..``window``
    (shorter only at the end of the audio); ``valid`` (T,) bool: at least
    ``min_samples`` of them (the step's mask); ``audio``: None when the video has
    none (every step invalid).
    """

    audio: Audio | None
    window: int
    starts: np.ndarray
    lengths: np.ndarray
    valid: np.ndarray

    @property
    def full_steps(self) -> np.ndarray:
        """Indices of the valid steps whose whole window lies inside the audio."""
        return np.flatnonzero(self.valid & (self.lengths == self.window))

    @property
    def partial_steps(self) -> np.ndarray:
        """Indices of the valid steps whose window the audio ends inside (the last partial second)."""
        return np.flatnonzero(self.valid & (self.lengths < self.window))

    def samples(self, steps: np.ndarray) -> np.ndarray:
        """(len(steps), window) float64 samples of full-window ``steps``, read in one block."""
        if len(steps) == 0:
            return np.zeros((0, self.window))
        starts = self.starts[steps]
        lo = int(starts.min())
        block = self.audio.segment(lo, int(starts.max()) + self.window)
        segments = np.stack([block[s - lo:s - lo + self.window] for s in starts])
        if segments.shape[1] != self.window:
            raise ValueError("a step's window lies outside the audio (pass full_steps)")
        return segments

    def step_samples(self, k: int) -> np.ndarray:
        """The samples of step ``k``'s window that lie inside the audio (``lengths[k]`` of them)."""
        return self.audio.segment(self.starts[k], self.starts[k] + self.lengths[k])


def step_windows(audio_path: Path | str | None, timestamps_s: np.ndarray, window: int,
                 min_samples: int) -> StepWindows:
    """The audio windows of the steps at ``timestamps_s`` (seconds), ``window`` samples each.

    Step ``k``'s window starts at :func:`example_starts` (``t_k`` on the 10 ms
    frame grid) and is valid when at least ``min_samples`` of it lie inside the
    audio. No audio (``audio_path`` None or an empty file), audio shorter than
    ``min_samples``, the seconds past its end: invalid steps, not an error.
    """
    window, min_samples = int(window), int(min_samples)
    if not 1 <= min_samples <= window:
        raise ValueError(f"need 1 <= min_samples ({min_samples}) <= window ({window})")
    audio = open_audio(audio_path)
    starts = example_starts(timestamps_s)
    n_samples = 0 if audio is None else audio.n_samples
    lengths = np.clip(n_samples - starts, 0, window)
    valid = (starts >= 0) & (lengths >= min_samples)
    return StepWindows(audio=audio, window=window, starts=starts, lengths=lengths, valid=valid)


def waveform_examples(x: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """(len(starts), 96, 64) log-mel examples, example i from samples [starts[i], starts[i] + 15600).

    Every range must lie inside ``x``.
    """
    if len(starts) == 0:
        return np.zeros((0, EXAMPLE_FRAMES, NUM_MEL_BINS))
    segments = np.stack([x[s:s + EXAMPLE_SAMPLES] for s in starts])
    if segments.shape[1] != EXAMPLE_SAMPLES:
        raise ValueError("an example range lies outside the waveform")
    return log_mel(segments)


def reference_examples(x: np.ndarray, hop_frames: int = EXAMPLE_FRAMES) -> np.ndarray:
    """The reference ``vggish_input.waveform_to_examples`` framing (0.96 s hop by default):
    for golden checks against published numbers, not used on the time grid."""
    spec = log_mel(x)
    n = spec.shape[0]
    if n < EXAMPLE_FRAMES:
        return np.zeros((0, EXAMPLE_FRAMES, NUM_MEL_BINS))
    k = 1 + (n - EXAMPLE_FRAMES) // hop_frames
    return np.stack([spec[i * hop_frames:i * hop_frames + EXAMPLE_FRAMES] for i in range(k)])


def step_blocks(indices: np.ndarray, size: int):
    """Split step indices into consecutive blocks of at most ``size``."""
    for i in range(0, len(indices), max(int(size), 1)):
        yield indices[i:i + size]


def assemble(items, n_steps: int, dim: int):
    """The :class:`~evoke.features.base.FeatureResult` of an audio front end's items: first
    the steps' valid mask (T,), then (step indices (B,), values (B, dim)) blocks; steps
    without a block are zeros."""
    from evoke.features.base import FeatureResult

    valid = next(items)
    values = np.zeros((n_steps, dim), dtype=np.float32)
    for steps, block in items:
        values[steps] = block
    return FeatureResult(values, valid)
