"""``vce``: the 27-emotion response distribution of a video (VCE, Mazeika et al. 2022).

Labels: ``labels/vce.parquet`` (:mod:`evoke.labels.vce`): ``p_{emotion}`` (the
distribution; null on all-zero rows, which are left out), ``split``. Units are
whole videos. Full head: softmax output, L1 loss to the distribution. Metrics:
top-3 accuracy (:func:`evoke.metrics.top_k_accuracy`) and the six LDL measures
(:func:`evoke.metrics.ldl_metrics`, predictions renormalised). Baselines,
computed from the training split: the majority emotion (one-hot of the most
frequent top emotion) and the mean distribution; ``random``: the chance top-3
of a uniformly random emotion on the same test videos under the rule in force
(3/27 under the paper's rule).

Settings (``train`` block): ``top3_ties`` (``paper``, the default: exactly the
3 largest label entries, ties in taxonomy order; ``inclusive``: every entry
tied at the third value) and ``kl`` (``pyldl``, the default: both
distributions clipped to [float64 eps, 1] as PyLDL does; ``floor``: only the
prediction floored, zero label terms exactly 0). An imported release's topK
(:func:`released_top`) is scored as given, whatever ``top3_ties`` says; the
metrics name the rule used (``top3_rule``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from evoke.labels.common import VCE_EMOTIONS
from evoke.metrics import KL_RULES, TOP_K_TIES, ldl_metrics, random_top_k_baseline, top_k_accuracy
from evoke.tasks.base import Task, TaskData, TaskError, Units, register_task, split_units, with_split


def distribution_metrics(pred: np.ndarray, y: np.ndarray, kl: str = "pyldl") -> dict:
    """LDL measures of predictions renormalised to sum 1 (rows of zeros become uniform)."""
    p = np.clip(np.asarray(pred, dtype=np.float64), 0, None)
    s = p.sum(1, keepdims=True)
    p = np.where(s > 0, p / np.where(s > 0, s, 1), 1.0 / p.shape[1])
    return ldl_metrics(p, y, normalize=True, kl=kl)


def metric_rules(settings: dict) -> tuple[str, str]:
    """``(top3_ties, kl)`` of a task's settings, checked."""
    ties, kl = settings.get("top3_ties", "paper"), settings.get("kl", "pyldl")
    if ties not in TOP_K_TIES:
        raise TaskError(f"top3_ties must be one of {', '.join(TOP_K_TIES)}, got {ties!r}")
    if kl not in KL_RULES:
        raise TaskError(f"kl must be one of {', '.join(KL_RULES)}, got {kl!r}")
    return ties, kl


def released_top(df: pl.DataFrame) -> list[list[str]] | None:
    """Each row's top emotions as a released dataset lists them, or None for evoke's own labels.

    A ``topK`` column (list of names), or the ``top1``-``top3`` columns of a
    table whose ``n_annotators`` is null throughout: what ``evoke import vce``
    writes (the release has no responses, so no counts; its topK goes to
    ``top1``-``top3``). evoke's builder always counts annotators, and its
    ``top1``-``top3`` follow the paper's rule anyway."""
    if "topK" in df.columns:
        return [[e for e in (t or []) if e] for t in df["topK"].to_list()]
    tops = [c for c in ("top1", "top2", "top3") if c in df.columns]
    if tops and "n_annotators" in df.columns and df["n_annotators"].null_count() == df.height:
        return [[e for e in row if e] for row in df.select(tops).iter_rows()]
    return None


@register_task
class VceTask(Task):
    name = "vce"
    description = "27-emotion response distribution per video"
    unit = "videos"
    citation = ("Mazeika et al. 2022, \"How Would The Viewer Feel? Estimating Wellbeing From Video Scenarios\", "
                "NeurIPS Datasets and Benchmarks (VCE)")
    label_files = {"vce": "labels/vce.parquet"}
    kind = "distribution"
    full_loss = "l1_softmax"
    emotions = VCE_EMOTIONS

    def load(self, dataset_dir: Path, paths: dict[str, Path]) -> TaskData:
        df = pl.read_parquet(paths["vce"])
        cols = [f"p_{e}" for e in self.emotions if f"p_{e}" in df.columns]
        if not cols:
            raise TaskError(f"{paths['vce']}: no p_{{emotion}} columns")
        df = with_split(df, dataset_dir, str(paths["vce"]))
        df = df.filter(pl.all_horizontal(pl.col(c).is_not_null() for c in cols))
        y = df.select(cols).to_numpy().astype(np.float64)
        units = Units(df["video_id"].to_list(), None, y)
        splits, from_train = split_units(units, df["split"].to_list(), self.val_fraction, self.seed)
        extra = {"label_table": df}
        released = released_top(df)
        if released is not None:
            names = [c[2:] for c in cols]
            pos = {e: j for j, e in enumerate(names)}
            given = {}
            for vid, top in zip(df["video_id"].to_list(), released):
                unknown = [e for e in top if e not in pos]
                if unknown:
                    raise TaskError(f"{paths['vce']}: video {vid}: the released topK names unknown emotion(s) "
                                    f"{unknown}")
                given[vid] = [pos[e] for e in top][:3]
            extra["label_top"] = given
        return TaskData(splits, [c[2:] for c in cols], extra, from_train)

    def _label_top(self, units, data) -> np.ndarray | None:
        given = data.extra.get("label_top")
        if given is None:
            return None
        out = np.full((len(units), 3), -1, dtype=np.int64)
        for i, v in enumerate(units.video_id):
            top = given.get(v, [])
            out[i, :len(top)] = top
        return out

    def evaluate(self, pred, units, data):
        if len(units) == 0:
            return {"n": 0}
        ties, kl = metric_rules(self.settings)
        given = self._label_top(units, data)
        out = {"n": len(units), "top3_accuracy": top_k_accuracy(pred, units.y, k=3, ties=ties, label_top=given),
               "top3_rule": "released topK" if given is not None else ties}
        out.update(distribution_metrics(pred, units.y, kl=kl))
        return out

    def baselines(self, data, split="test"):
        tr, te = data.splits["train"], data.splits[split]
        if len(te) == 0:
            return {}
        c = tr.y.shape[1]
        majority = np.bincount(tr.y.argmax(1), minlength=c).argmax()
        onehot = np.zeros((len(te), c))
        onehot[:, majority] = 1.0
        mean = np.repeat(tr.y.mean(0, keepdims=True), len(te), 0)
        return {"majority_emotion": self.evaluate(onehot, te, data),
                "mean_distribution": self.evaluate(mean, te, data),
                "random": {"n": len(te), "top3_accuracy": random_top_k_baseline(
                    c, 3, target=te.y, ties=metric_rules(self.settings)[0], label_top=self._label_top(te, data))}}
