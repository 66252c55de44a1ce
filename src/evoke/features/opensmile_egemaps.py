"""``opensmile_egemaps``: eGeMAPS v02 functionals (88-d) per second, via the ``opensmile`` package.

Optional: ``pip install opensmile`` (audEERING's Python wrapper, which bundles
the SMILExtract library). **Licence**: openSMILE and the ``opensmile`` Python
package are free for research and personal, non-commercial use only
(audEERING's openSMILE research licence); commercial use needs a licence from
audEERING. evoke does not install it by default.

For step ``k`` the audio of ``[t_k, t_k + window_s)`` (1 s by default, starting
on the same 10 ms grid as ``vggish`` and ``logmel``) is summarised by the 88
eGeMAPSv02 functionals (``FeatureSet.eGeMAPSv02``, ``FeatureLevel.Functionals``;
the order is ``opensmile``'s ``feature_names``, stored in the HDF5 attributes by
whoever writes them). A step is valid when the audio covers at least
``min_coverage_s`` of its window (default 0.96 s, the rule of the other audio
extractors); no audio or less than that: masked zeros. Functionals that
openSMILE leaves undefined (NaN, e.g. on digital silence) are written as 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from evoke.features import _audio
from evoke.features.base import (
    ExtractorConfig,
    FeatureError,
    FeatureExtractor,
    FeatureResult,
    VideoInput,
    register_extractor,
)

DIM = 88
INSTALL_HINT = "pip install opensmile==2.6.0 (research/non-commercial licence)"


@dataclass(frozen=True)
class EGeMAPSConfig(ExtractorConfig):
    """``window_s``: seconds per step; ``min_coverage_s``: audio a step needs to be valid."""

    window_s: float = 1.0
    min_coverage_s: float = 0.96

    def __post_init__(self):
        if not 0.1 <= self.min_coverage_s <= self.window_s:
            raise ValueError("need 0.1 <= min_coverage_s <= window_s")


def require_opensmile():
    try:
        import opensmile
    except ImportError as exc:
        raise FeatureError(f"opensmile_egemaps needs the 'opensmile' package: {INSTALL_HINT}") from exc
    return opensmile


@register_extractor
class OpenSmileEGeMAPS(FeatureExtractor):
    name = "opensmile_egemaps"
    config_type = EGeMAPSConfig
    modality = "audio"
    description = "eGeMAPSv02 functionals per second via opensmile (research licence), 88-d"

    @property
    def step_shape(self) -> tuple[int, ...]:
        return (DIM,)

    @property
    def dim_names(self) -> tuple[str, ...]:
        """opensmile's names of the 88 functionals, in their order (loads opensmile)."""
        self.ensure_loaded()
        return tuple(self.feature_names)

    def load(self) -> None:
        opensmile = require_opensmile()
        self._smile = opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02,
                                      feature_level=opensmile.FeatureLevel.Functionals)
        self.feature_names = list(self._smile.feature_names)
        if len(self.feature_names) != DIM:
            raise FeatureError(f"opensmile_egemaps: eGeMAPSv02 has {len(self.feature_names)} functionals "
                               f"in this opensmile version, expected {DIM}")

    def inputs(self, video: VideoInput):
        """All of the work (the features stage runs it ahead, beside the writes): first the
        steps' valid mask (T,), then per valid step (its index (1,), its functionals (1, 88))."""
        cfg = self.config
        windows = _audio.step_windows(
            video.audio_path, video.timestamps_s, window=round(cfg.window_s * _audio.SAMPLE_RATE),
            min_samples=round(cfg.min_coverage_s * _audio.SAMPLE_RATE))
        yield windows.valid
        for k in np.flatnonzero(windows.valid):
            x = windows.step_samples(k).astype(np.float32)
            row = self._smile.process_signal(x, _audio.SAMPLE_RATE).to_numpy(dtype=np.float64)
            yield np.array([k]), np.nan_to_num(row[:1], nan=0.0, posinf=0.0, neginf=0.0)

    def extract(self, video: VideoInput) -> FeatureResult:
        self.ensure_loaded()
        return _audio.assemble(self.read_inputs(video), video.n_steps, DIM)
