"""``motion``: motion energy per second from the full-rate video (weight-free).

The muted video is decoded at its own frame rate, each frame turned to grey
and scaled to ``width`` pixels wide; for every second ``[k, k+1)`` the
extractor reports the mean and the maximum over consecutive frame pairs of the
mean absolute grey-level difference (0-1), and the fraction of pixels that
changed by more than ``threshold``. Three values per second; masked for
seconds with fewer than two frames. Sampled 1 Hz frames are too far apart for
this, hence ``modality = "video"``.
"""

from __future__ import annotations

from dataclasses import dataclass

import av
import numpy as np

from evoke.features.base import (
    ExtractorConfig,
    FeatureError,
    FeatureExtractor,
    FeatureResult,
    VideoInput,
    register_extractor,
)


@dataclass(frozen=True)
class MotionConfig(ExtractorConfig):
    width: int = 64
    threshold: float = 0.1

    def __post_init__(self):
        if self.width < 8:
            raise ValueError("width must be >= 8")


@register_extractor
class MotionExtractor(FeatureExtractor):
    name = "motion"
    config_type = MotionConfig
    modality = "video"
    description = "mean/max frame difference and changed-pixel fraction per second (no weights)"

    @property
    def step_shape(self):
        return (3,)

    @property
    def dim_names(self) -> tuple[str, ...]:
        """Names of the three values (the shard file's ``dim_names`` attribute)."""
        return ("diff_mean", "diff_max", "changed_fraction")

    def extract(self, video: VideoInput) -> FeatureResult:
        if video.video_path is None:
            raise FeatureError(f"{video.video_id}: motion needs the video file")
        T = video.n_steps
        rate = 1.0 / (video.timestamps_s[1] - video.timestamps_s[0]) if T > 1 else 1.0
        sums, maxes, changed, counts = np.zeros(T), np.zeros(T), np.zeros(T), np.zeros(T)
        prev = None
        try:
            with av.open(str(video.video_path)) as c:
                s = c.streams.video[0]
                s.thread_type = "AUTO"
                height = None
                for frame in c.decode(s):
                    if height is None:
                        height = max(2, round(frame.height * self.config.width / frame.width))
                    g = frame.to_ndarray(format="gray", width=self.config.width, height=height)
                    g = g.astype(np.float32) / 255.0
                    t = float(frame.time) if frame.time is not None else 0.0
                    k = int(np.floor(t * rate + 1e-9))
                    if prev is not None and 0 <= k < T:
                        d = np.abs(g - prev)
                        m = float(d.mean())
                        sums[k] += m
                        maxes[k] = max(maxes[k], m)
                        changed[k] += float((d > self.config.threshold).mean())
                        counts[k] += 1
                    prev = g
        except av.FFmpegError as exc:
            raise FeatureError(f"{video.video_id}: cannot decode for motion: {exc}") from exc
        mask = counts > 0
        n = np.maximum(counts, 1)
        values = np.stack([sums / n, maxes, changed / n], axis=1).astype(np.float32)
        values[~mask] = 0
        return FeatureResult(values, mask)
