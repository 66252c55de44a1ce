"""``danmaku_ldl``: the per-second 6-emotion distribution of danmaku comments.

Labels: ``labels/danmaku_seconds.parquet`` (:func:`evoke.danmaku.windows.window_seconds`:
``video_id, time_s, is_empty, p_{like, joy, surprise, fear, disgust, sadness}``);
a windows table (:func:`~evoke.danmaku.windows.danmaku_windows`, ``window,
start_s, end_s`` instead of ``time_s``) is expanded to its seconds. Empty
seconds are left out; the split comes from the table or the ingest stage.
Units are seconds (the 60-s window ending at t). Full head: output clamped to
[0, 1] then softmaxed, KL loss. Metrics: the six LDL measures
(:func:`evoke.metrics.ldl_metrics`; zeros as documented there). Baseline: the
training split's mean distribution.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from evoke.danmaku import EMOTIONS
from evoke.tasks.base import Task, TaskData, TaskError, Units, register_task, split_units, with_split
from evoke.tasks.vce import distribution_metrics, metric_rules


def seconds_from_windows(df: pl.DataFrame) -> pl.DataFrame:
    """Expand a windows table (``start_s, end_s``) to one row per second t in [start, end)."""
    rows = df.with_columns(
        pl.int_ranges(pl.col("start_s").ceil().cast(pl.Int64), pl.col("end_s").ceil().cast(pl.Int64)).alias("t"))
    return rows.explode("t").filter(pl.col("t").is_not_null()).with_columns(
        pl.col("t").cast(pl.Float64).alias("time_s")).drop("t")


@register_task
class DanmakuLdlTask(Task):
    name = "danmaku_ldl"
    description = "per-second 6-emotion danmaku distribution"
    unit = "seconds"
    citation = ("emotions after Parrott 2001, \"Emotions in Social Psychology\"; the six LDL measures of "
                "Geng 2016, \"Label Distribution Learning\", IEEE TKDE 28(7)")
    per_second = True
    label_files = {"danmaku": "labels/danmaku_seconds.parquet"}
    kind = "distribution"
    full_loss = "kl_clamp_softmax"

    def load(self, dataset_dir: Path, paths: dict[str, Path]) -> TaskData:
        df = pl.read_parquet(paths["danmaku"])
        # the emotions the comment classifier was trained on (a corpus may lack some)
        cols = [f"p_{e}" for e in EMOTIONS if f"p_{e}" in df.columns]
        if len(cols) < 2:
            raise TaskError(f"{paths['danmaku']}: needs at least 2 of the p_{{emotion}} columns "
                            f"({', '.join(EMOTIONS)}), found {cols}")
        if "time_s" not in df.columns:
            if not {"start_s", "end_s"} <= set(df.columns):
                raise TaskError(f"{paths['danmaku']}: needs time_s, or start_s and end_s (a windows table)")
            df = seconds_from_windows(df)
        df = with_split(df, dataset_dir, str(paths["danmaku"]))
        df = df.filter(pl.all_horizontal(pl.col(c).is_not_null() for c in cols)).sort("video_id", "time_s")
        y = df.select(cols).to_numpy().astype(np.float64)
        units = Units(df["video_id"].to_list(), df["time_s"].to_list(), y)
        splits, from_train = split_units(units, df["split"].to_list(), self.val_fraction, self.seed)
        return TaskData(splits, [c[2:] for c in cols], {}, from_train)

    def evaluate(self, pred, units, data):
        if len(units) == 0:
            return {"n": 0}
        return {"n": len(units), **distribution_metrics(pred, units.y, kl=metric_rules(self.settings)[1])}

    def baselines(self, data, split="test"):
        tr, te = data.splits["train"], data.splits[split]
        if len(te) == 0:
            return {}
        return {"mean_distribution": self.evaluate(np.repeat(tr.y.mean(0, keepdims=True), len(te), 0), te, data)}
