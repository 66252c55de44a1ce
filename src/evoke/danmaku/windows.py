"""Scored comments to per-window emotion label distributions, inherited by the 1 Hz frames.

Window ``w`` of a video covers [w * window_s, (w + 1) * window_s) (5 s by
default). A comment expresses an emotion when its probability is at least
``threshold`` (0.5); a window's label is the share of each emotion among all
emotions expressed in it (``soft=True`` sums probabilities instead of
counting decisions). A window where no emotion is expressed (no comments, or
only neutral ones) is marked empty and has null shares: a distribution either
sums to 1 or is empty.

Windows table (:func:`danmaku_windows`), every window of every video (up to
its end when known, :func:`danmaku_durations`: how far the file decodes, else
its header's duration; else up to its last comment), sorted by
``video_id, window``:

=============  =======  =====================================================
column         type     meaning
=============  =======  =====================================================
video_id       str
window         int32    w
start_s        float64  w * window_s
end_s          float64  (w + 1) * window_s (the video's end for the last one)
n_comments     int32    comments in the window
n_expressed    float64  emotions expressed (a count; a sum of probabilities
                        when soft)
is_empty       bool     nothing expressed: the ``p_*`` are null
p_{emotion}    float64  share of the emotion (sums to 1 over the six, or over the
                        emotions the classifier was trained on)
=============  =======  =====================================================

Seconds table (:func:`window_seconds`): ``video_id, time_s`` (t = 0, 1, 2 ...
below the duration; t = k / ``rate_hz`` for another frame rate), ``window``,
``is_empty`` and the window's ``p_*``: each frame inherits the label of the
window it falls in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from evoke.danmaku import EMOTIONS
from evoke.danmaku.parse import DanmakuError
from evoke.labels.common import (BuilderConfig, BuildResult, LabelBuilder, load_table, probe_durations,
                                 register_label_builder)


@dataclass(frozen=True)
class WindowsConfig(BuilderConfig):
    window_s: float = 5.0
    threshold: float = 0.5
    soft: bool = False
    rate_hz: float = 1.0  # the frame grid that inherits the window labels

    def __post_init__(self):
        if self.window_s <= 0 or self.rate_hz <= 0:
            raise DanmakuError("danmaku windows: window_s and rate_hz must be positive")
        if not 0 < self.threshold <= 1:
            raise DanmakuError("danmaku windows: threshold must be in (0, 1]")


def _schema(emotions=EMOTIONS) -> dict:
    return {"video_id": pl.String, "window": pl.Int32, "start_s": pl.Float64, "end_s": pl.Float64,
            "n_comments": pl.Int32, "n_expressed": pl.Float64, "is_empty": pl.Boolean,
            **{f"p_{e}": pl.Float64 for e in emotions}}


def present_emotions(df: pl.DataFrame, what: str) -> list[str]:
    """The emotions with a ``p_`` column in ``df`` (a model trained on a corpus lacking some has fewer)."""
    found = [e for e in EMOTIONS if f"p_{e}" in df.columns]
    if not found:
        raise DanmakuError(f"{what} have no p_{{emotion}} column ({', '.join(EMOTIONS)}); "
                           "run `evoke danmaku classify`")
    return found


def danmaku_windows(scored: pl.DataFrame, config: WindowsConfig | None = None,
                    durations: dict[str, float] | None = None) -> pl.DataFrame:
    """Per-window label distributions (see the module docstring).

    ``durations`` (video id -> seconds) sets how many windows a video has
    (videos listed there without comments get all-empty windows); without it a
    video ends at its last comment.
    """
    config = config or WindowsConfig()
    emotions = present_emotions(scored, "scored comments")
    cols = [f"p_{e}" for e in emotions]
    missing = [c for c in ["video_id", "time_s", *cols] if c not in scored.columns]
    if missing:
        raise DanmakuError(f"scored comments lack column(s) {', '.join(missing)}; run `evoke danmaku classify`")
    durations = {k: float(v) for k, v in (durations or {}).items() if v is not None and math.isfinite(v) and v > 0}
    groups = {vid: g for (vid,), g in scored.group_by(["video_id"])}
    out = []
    w = config.window_s
    for vid in sorted(set(groups) | set(durations)):
        g = groups.get(vid)
        t = g["time_s"].to_numpy() if g is not None else np.zeros(0)
        P = g.select(cols).to_numpy() if g is not None else np.zeros((0, len(emotions)))
        keep = np.isfinite(t) & (t >= 0)
        dur = durations.get(vid)
        if dur is not None:
            keep &= t < dur  # labels.common.after_video_end: t >= the end has no frame
        t, P = t[keep], P[keep]
        if dur is not None:
            n_win = max(1, math.ceil(dur / w - 1e-9))
        elif t.size:
            n_win = int(np.floor(t.max() / w)) + 1
        else:
            continue
        idx = np.minimum((t // w).astype(np.int64), n_win - 1)
        E = np.nan_to_num(P, nan=0.0) if config.soft else (np.nan_to_num(P, nan=0.0) >= config.threshold)
        counts = np.zeros((n_win, len(emotions)))
        np.add.at(counts, idx, E.astype(np.float64))
        n_comments = np.bincount(idx, minlength=n_win)
        total = counts.sum(axis=1)
        empty = total <= 0
        with np.errstate(invalid="ignore", divide="ignore"):
            shares = np.where(empty[:, None], np.nan, counts / total[:, None])
        starts = np.arange(n_win) * w
        ends = starts + w
        if dur is not None:
            ends[-1] = min(ends[-1], dur)
        frame = {"video_id": [vid] * n_win, "window": np.arange(n_win, dtype=np.int32), "start_s": starts,
                 "end_s": ends, "n_comments": n_comments.astype(np.int32), "n_expressed": total, "is_empty": empty}
        for k, e in enumerate(emotions):
            frame[f"p_{e}"] = shares[:, k]
        out.append(pl.DataFrame(frame))
    if not out:
        return pl.DataFrame(schema=_schema(emotions))
    df = pl.concat(out).cast(_schema(emotions))
    return df.with_columns(pl.col(c).fill_nan(None) for c in cols)


def window_seconds(windows: pl.DataFrame, durations: dict[str, float] | None = None,
                   rate_hz: float = 1.0) -> pl.DataFrame:
    """The window labels at the frame times t = 0, 1/rate, 2/rate ... below each video's end."""
    cols = [f"p_{e}" for e in present_emotions(windows, "windows")]
    rows = []
    durations = durations or {}
    for (vid,), g in windows.sort("video_id", "window").group_by(["video_id"], maintain_order=True):
        end = durations.get(vid) or float(g["end_s"].max())
        n = int(math.ceil(end * rate_hz - 1e-9))
        times = np.arange(n) / rate_hz
        starts = g["start_s"].to_numpy()
        wi = np.clip(np.searchsorted(starts, times, side="right") - 1, 0, g.height - 1)
        sel = g.select(pl.all().gather(wi))
        rows.append(sel.select(pl.lit(vid).alias("video_id"), pl.Series("time_s", times, dtype=pl.Float64),
                               "window", "is_empty", *cols))
    if not rows:
        return pl.DataFrame(schema={"video_id": pl.String, "time_s": pl.Float64, "window": pl.Int32,
                                    "is_empty": pl.Boolean, **{c: pl.Float64 for c in cols}})
    return pl.concat(rows)


def danmaku_durations(probe: pl.DataFrame, source: str | Path = "probe table") -> dict[str, float]:
    """``video_id -> seconds`` (:func:`evoke.labels.common.probe_durations`: how far each file
    decodes, else its header's duration) of the ingested videos (status ok) that have a
    danmaku file.

    Videos without a danmaku file get no windows at all (no label), unlike a
    video whose file has no usable comments (all windows empty).
    """
    if "danmaku_path" in probe.columns:
        probe = probe.filter(pl.col("danmaku_path").is_not_null())
    return probe_durations(probe, source)


@register_label_builder
class DanmakuWindowsBuilder(LabelBuilder):
    """Scored danmaku comments to per-window emotion label distributions (+ the 1 Hz frames)."""

    name = "danmaku_windows"
    config_type = WindowsConfig
    inputs = ("scored", "durations?")
    description = "scored comments -> 5 s emotion distributions, inherited by the 1 Hz frames"

    def read(self, scored: str | Path, probe: str | Path | None = None) -> dict:
        tables = {"scored": load_table(scored, "scored comments", floats=("p_*", "time_s")), "durations": None}
        if probe is not None:
            tables["durations"] = danmaku_durations(load_table(probe, "probe table"), probe)
        return tables

    def build(self, videos=None, scored=None, durations=None) -> BuildResult:
        if videos is not None:
            scored = scored.filter(pl.col("video_id").is_in(list(videos.ids)))
        table = danmaku_windows(scored, self.config, durations)
        return BuildResult(table, info={"n_windows": table.height, "n_empty": int(table["is_empty"].sum() or 0)},
                           extra={"seconds": window_seconds(table, durations, self.config.rate_hz)})
