"""EEV: evoked facial expression scores (6 Hz) resampled to the 1 Hz frame grid.

Input (:func:`read_eev`): the released CSV, ``Video ID``, a timestamp column
whose name gives its unit (``Timestamp (microseconds)`` as released;
``(milliseconds)`` and ``(seconds)`` are understood too) and one column per
expression (the 15 EEV expressions by default: amusement, anger, awe,
concentration, confusion, contempt, contentment, disappointment, doubt,
elation, interest, pain, sadness, surprise, triumph), scores in [0, 1].

Output (:func:`eev_1hz`), one row per video and second that has samples,
sorted by ``video_id, time_s``:

============  ========  ======================================================
column        type      meaning
============  ========  ======================================================
video_id      str
split         str       from the video list (null without one)
time_s        float64   t = 0, 1, 2 ...: the second [t, t + 1) of the frame grid
n_samples     int32     samples in the window
{expression}  int8      ``method="majority"`` (default): 1 when more than half of
              /float64  the window's samples score >= ``threshold`` (0.5);
                        ``method="mean"``: the mean score
============  ========  ======================================================

The window of second t is ``window_s`` (3 s) long and centred on the middle
of the second: [t + 0.5 - 1.5, t + 0.5 + 1.5) = [t - 1, t + 2); the stride is
``stride_s`` (1 s). Seconds whose window holds no sample are absent (no label).

Dropped and counted: ``missing_id``, ``unknown_video``, ``impossible_timestamp``
(not a number, not finite, or negative), ``after_video_end`` (at or past the
video's end, when known: :func:`eev_1hz`'s ``durations``, the CLI's ``--probe``:
how far the file decodes, else its header's duration,
:func:`evoke.labels.common.video_durations`), ``score_out_of_range`` (a score not in
[0, 1] or not a number: the whole row), ``no_scores`` (every score empty: EEV's
test split), ``all_zero`` (every score 0: the reaction video's face was lost),
``duplicate_timestamp`` (the first is kept). There is no fixed cap on times:
a reaction to a live-stream replay can run past 100 hours, and only the video's
own duration says a time is too late. The seconds are found from the samples
(only seconds whose window holds one are computed), so one far-off time costs
a row, not a grid up to it.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from evoke.labels.common import (
    BuilderConfig,
    BuildResult,
    Dropped,
    LabelBuilder,
    LabelError,
    VideoIndex,
    after_video_end,
    probe_durations,
    read_table,
    register_label_builder,
    split_column,
    to_float,
    with_row_numbers,
)

log = logging.getLogger(__name__)

EEV_EXPRESSIONS: tuple[str, ...] = (
    "amusement", "anger", "awe", "concentration", "confusion", "contempt", "contentment",
    "disappointment", "doubt", "elation", "interest", "pain", "sadness", "surprise", "triumph",
)
_UNITS = {"microseconds": 1e-6, "us": 1e-6, "µs": 1e-6, "milliseconds": 1e-3, "ms": 1e-3,
          "seconds": 1.0, "s": 1.0, "sec": 1.0}


@dataclass(frozen=True)
class EevConfig(BuilderConfig):
    expressions: tuple[str, ...] = EEV_EXPRESSIONS
    method: str = "majority"  # majority | mean
    threshold: float = 0.5
    window_s: float = 3.0
    stride_s: float = 1.0

    def __post_init__(self):
        if self.method not in ("majority", "mean"):
            raise LabelError(f"eev: method must be majority or mean, not '{self.method}'")
        if self.window_s <= 0 or self.stride_s <= 0:
            raise LabelError("eev: window_s and stride_s must be positive")


def read_eev(path: str | Path, expressions: tuple[str, ...] = EEV_EXPRESSIONS,
             encoding: str | None = None) -> pl.DataFrame:
    """Read an EEV CSV into ``row, video_id, time_s`` (Float64) + one Float64 column per expression."""
    raw = read_table(path, "EEV scores", encoding)
    cols = {c.lower().replace("_", " "): c for c in raw.columns}
    vid = cols.get("video id") or cols.get("videoid")
    if vid is None:
        raise LabelError(f"{path}: EEV scores need a 'Video ID' column; it has {', '.join(raw.columns)}")
    ts_col, scale = None, None
    for c in raw.columns:
        m = re.match(r"^\s*timestamp\s*(?:\((.+)\))?\s*$", c, re.IGNORECASE)
        if m:
            unit = (m.group(1) or "microseconds").strip().lower()
            if unit not in _UNITS:
                raise LabelError(f"{path}: unknown timestamp unit '{m.group(1)}' in column '{c}'")
            ts_col, scale = c, _UNITS[unit]
            break
    if ts_col is None:
        raise LabelError(f"{path}: EEV scores need a 'Timestamp (microseconds)' column")
    lower = {c.lower(): c for c in raw.columns}
    missing = [e for e in expressions if e not in lower]
    if missing:
        raise LabelError(f"{path}: EEV scores lack expression column(s) {', '.join(missing)}")
    raw = with_row_numbers(raw)
    return raw.select(
        "row", pl.col(vid).alias("video_id"),
        (to_float(pl.col(ts_col)) * scale).alias("time_s"),
        *[to_float(pl.col(lower[e])).alias(e) for e in expressions],
    )


def _window_seconds(times: np.ndarray, stride: float, half: float) -> np.ndarray:
    """The grid indices k (as floats) whose window [k*stride + stride/2 - half, ... + half)
    may hold one of the sorted ``times``: a superset of those that do, from 0 to the
    last sample's second, found from the samples (no grid up to a far-off time)."""
    first = np.floor((times - stride / 2 - half) / stride)
    steps = int(np.ceil(2 * half / stride)) + 2  # a window spans at most this many strides
    k = (first[:, None] + np.arange(steps)[None, :]).ravel()
    k = np.unique(k)
    return k[(k >= 0) & (k <= np.floor(times[-1] / stride))]


def eev_1hz(df: pl.DataFrame, config: EevConfig | None = None,
            videos: VideoIndex | None = None, durations: dict[str, float] | None = None) -> BuildResult:
    """Resample EEV scores to 1 Hz (see the module docstring).

    ``durations`` (video id -> seconds, e.g. :func:`~evoke.labels.common.probe_durations`)
    drops the samples at or past a video's end (``after_video_end``,
    :func:`~evoke.labels.common.after_video_end`); a video without one has no upper bound.
    """
    config = config or EevConfig()
    expr = list(config.expressions)
    dropped = Dropped()
    if "row" not in df.columns:
        df = with_row_numbers(df)
    df = df.with_columns(pl.col("time_s").cast(pl.Float64), *[pl.col(e).cast(pl.Float64) for e in expr])
    miss = df.filter(pl.col("video_id").is_null() | (pl.col("video_id") == ""))
    dropped.add_frame("missing_id", miss)
    df = df.filter(pl.col("video_id").is_not_null() & (pl.col("video_id") != ""))
    if videos is not None:
        df = videos.filter_known(df, ["video_id"], dropped)
    t = pl.col("time_s")
    bad_t = df.filter(t.is_null() | ~t.is_finite() | (t < 0))
    dropped.add_frame("impossible_timestamp", bad_t)
    df = df.join(bad_t.select("row"), on="row", how="anti")
    if durations:
        ends = pl.DataFrame({"video_id": list(durations), "_end_s": list(durations.values())},
                            schema={"video_id": pl.String, "_end_s": pl.Float64})
        late = df.join(ends, on="video_id", how="inner").filter(after_video_end(t, pl.col("_end_s")))
        dropped.add_frame("after_video_end", late.drop("_end_s"))
        df = df.join(late.select("row"), on="row", how="anti")
    no_scores = df.filter(pl.all_horizontal(pl.col(e).is_null() for e in expr))
    dropped.add_frame("no_scores", no_scores)
    df = df.join(no_scores.select("row"), on="row", how="anti")
    bad = df.filter(pl.any_horizontal(pl.col(e).is_null() | pl.col(e).is_nan() | (pl.col(e) < 0) | (pl.col(e) > 1)
                                      for e in expr))
    dropped.add_frame("score_out_of_range", bad)
    df = df.join(bad.select("row"), on="row", how="anti")
    zero = df.filter(pl.all_horizontal(pl.col(e) == 0 for e in expr))
    dropped.add_frame("all_zero", zero)
    df = df.join(zero.select("row"), on="row", how="anti").sort("row")
    dup = df.filter(pl.int_range(pl.len()).over("video_id", "time_s") > 0)
    dropped.add_frame("duplicate_timestamp", dup)
    df = df.join(dup.select("row"), on="row", how="anti")

    half = config.window_s / 2
    out = []
    for (vid,), g in df.sort("video_id", "time_s").group_by(["video_id"], maintain_order=True):
        times = g["time_s"].to_numpy()
        scores = g.select(expr).to_numpy()
        grid = _window_seconds(times, config.stride_s, half) * config.stride_s
        centre = grid + config.stride_s / 2
        lo = np.searchsorted(times, centre - half, side="left")
        hi = np.searchsorted(times, centre + half, side="left")
        n = hi - lo
        if config.method == "mean":
            cum = np.vstack([np.zeros((1, len(expr))), np.cumsum(scores, axis=0)])
            with np.errstate(invalid="ignore", divide="ignore"):
                vals = (cum[hi] - cum[lo]) / n[:, None]
        else:
            cum = np.vstack([np.zeros((1, len(expr)), dtype=np.int64),
                             np.cumsum(scores >= config.threshold, axis=0)])
            vals = ((cum[hi] - cum[lo]) * 2 > n[:, None]).astype(np.int8)
        keep = n > 0
        frame = {"video_id": [vid] * int(keep.sum()), "time_s": grid[keep], "n_samples": n[keep].astype(np.int32)}
        for k, e in enumerate(expr):
            frame[e] = vals[keep, k]
        out.append(pl.DataFrame(frame))
    dtype = pl.Float64 if config.method == "mean" else pl.Int8
    schema = {"video_id": pl.String, "time_s": pl.Float64, "n_samples": pl.Int32, **{e: dtype for e in expr}}
    table = pl.concat(out).cast(schema) if out else pl.DataFrame(schema=schema)
    table = split_column(table, videos)
    table = table.select("video_id", "split", "time_s", "n_samples", *expr)
    info = {"n_videos": table["video_id"].n_unique(), "n_seconds": table.height, "n_samples": df.height}
    return BuildResult(table, dropped, info)


@register_label_builder
class EevBuilder(LabelBuilder):
    """EEV expression scores at 6 Hz to 1 Hz labels (3 s window, 1 s stride)."""

    name = "eev"
    config_type = EevConfig
    inputs = ("csv", "durations?")
    description = "EEV CSV -> per-second expression labels"

    def read(self, csv, encoding=None, probe=None):
        tables = {"csv": read_eev(csv, self.config.expressions, encoding)}
        if probe is not None:
            tables["durations"] = probe_durations(read_table(probe, "probe table"), probe)
        return tables

    def build(self, videos=None, csv=None, durations=None):
        return eev_1hz(csv, self.config, videos, durations)
