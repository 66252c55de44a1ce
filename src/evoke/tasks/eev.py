"""``eev``: evoked facial expressions per second, multi-label (EEV).

Labels: ``labels/eev.parquet`` (:mod:`evoke.labels.eev`): ``video_id, split,
time_s`` and the 15 expression columns (0/1 with the default majority
resampling; mean scores are binarised at 0.5 for training the classifiers and
for MAP/GAP, and kept as they are for Pearson r). A sample is (video, t) with
the 60-step window ending at t, padded by repeating its first step. Full head:
BCE with logits. Metrics: MAP and GAP (top 20) as YouTube-8M computes them
(classes without a positive skipped), mean Pearson r per expression within
each video (the 2021 challenge metric), per-class AP for the report.
Baseline: class priors (the training rate of each expression, for every second).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from evoke.labels.eev import EEV_EXPRESSIONS
from evoke.metrics import global_average_precision, mean_average_precision, mean_pearson, \
    per_class_average_precision
from evoke.tasks.base import Task, TaskData, TaskError, Units, register_task, split_units, with_split


@register_task
class EevTask(Task):
    name = "eev"
    description = "per-second evoked expressions, multi-label"
    unit = "seconds"
    citation = ("Sun et al. 2021, \"EEV: A Large-Scale Dataset for Studying Evoked Expressions from Video\", "
                "arXiv:2001.05488; MAP and GAP as YouTube-8M's eval.py")
    per_second = True
    label_files = {"eev": "labels/eev.parquet"}
    kind = "binary"
    full_loss = "bce"

    def load(self, dataset_dir: Path, paths: dict[str, Path]) -> TaskData:
        df = pl.read_parquet(paths["eev"])
        cols = [c for c in EEV_EXPRESSIONS if c in df.columns]
        if not cols:
            raise TaskError(f"{paths['eev']}: none of the expression columns ({', '.join(EEV_EXPRESSIONS)})")
        df = with_split(df, dataset_dir, str(paths["eev"])).sort("video_id", "time_s")
        y = df.select(cols).to_numpy().astype(np.float64)
        units = Units(df["video_id"].to_list(), df["time_s"].to_list(), y)
        splits, from_train = split_units(units, df["split"].to_list(), self.val_fraction, self.seed)
        return TaskData(splits, cols, {}, from_train)

    def evaluate(self, pred, units, data):
        if len(units) == 0:
            return {"n": 0}
        yb = (units.y >= 0.5).astype(float)
        return {"n": len(units), "map": mean_average_precision(pred, yb),
                "gap": global_average_precision(pred, yb, top_k=20),
                "mean_pearson": mean_pearson(pred, units.y, groups=np.asarray(units.video_id)),
                "per_class_ap": dict(zip(data.target_names, per_class_average_precision(pred, yb).tolist()))}

    def baselines(self, data, split="test"):
        tr, te = data.splits["train"], data.splits[split]
        if len(te) == 0:
            return {}
        prior = np.repeat((tr.y >= 0.5).mean(0, keepdims=True), len(te), 0)
        return {"class_prior": self.evaluate(prior, te, data)}
