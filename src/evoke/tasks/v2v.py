"""``v2v``: a scalar pleasantness score per video, learnt from pairwise comparisons (V2V).

Labels: ``labels/v2v_pairs.parquet`` (``less_pleasant, more_pleasant, split``)
and, when present, ``labels/v2v_lists.parquet`` (``videos``: least to most
pleasant, ``split``) (:mod:`evoke.labels.v2v`). A pair or list without a
split (its videos are in different splits) is left out; without any val pair,
a seeded ``val_fraction`` of the training pairs validates. Units are the
videos of each split's pairs and lists.

Heads: ``full``: BCE on ``sigmoid(f(x_more) - f(x_less))``; ``linear``:
logistic regression without intercept on feature differences (the same loss
with a linear f); ``lightgbm``: ``LGBMRanker`` (lambdarank) with every pair a
query of two videos, which gives a per-video score (the trees are fitted to
pairs; the listwise lists are only scored, never trained on). Metrics:
pairwise accuracy (ties wrong) and listwise accuracy (whole order right).
Baseline: random scores (0.5 pairwise, the mean of 1/n! listwise).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from evoke.heads.light import LIGHT_HEADS, fit_pairwise_model
from evoke.metrics import listwise_accuracy, pairwise_accuracy, random_listwise_baseline, \
    random_pairwise_baseline
from evoke.predict.model import LightPart
from evoke.tasks.base import SPLITS, Task, TaskData, TaskError, Units, normalise_split, register_task


def _split_of(units: Units, data: TaskData) -> str:
    return next(s for s, u in data.splits.items() if u is units)


@register_task
class V2vTask(Task):
    name = "v2v"
    description = "pairwise pleasantness: one score per video"
    unit = "videos"  # n counts the videos of the split's pairs; the metrics are over n_pairs and n_lists
    citation = ("Mazeika et al. 2022, \"How Would The Viewer Feel? Estimating Wellbeing From Video Scenarios\", "
                "NeurIPS Datasets and Benchmarks (V2V)")
    label_files = {"pairs": "labels/v2v_pairs.parquet"}
    optional_label_files = {"lists": "labels/v2v_lists.parquet"}

    def label_paths(self, dataset_dir, overrides=None):
        paths = super().label_paths(dataset_dir, overrides)
        for key, rel in self.optional_label_files.items():
            p = Path((overrides or {}).get(key) or dataset_dir / rel)
            if p.exists():
                paths[key] = p
        return paths

    def load(self, dataset_dir: Path, paths: dict[str, Path]) -> TaskData:
        pairs = pl.read_parquet(paths["pairs"])
        for c in ("less_pleasant", "more_pleasant", "split"):
            if c not in pairs.columns:
                raise TaskError(f"{paths['pairs']}: no {c} column")
        pairs = pairs.with_columns(normalise_split(pairs["split"]).alias("split"))
        lists = pl.DataFrame(schema={"videos": pl.List(pl.String), "split": pl.String})
        if "lists" in paths:
            lists = pl.read_parquet(paths["lists"]).select("videos", "split")
            lists = lists.with_columns(normalise_split(lists["split"]).alias("split"))
        by_split = {s: [tuple(r) for r in pairs.filter(pl.col("split") == s)
                        .select("less_pleasant", "more_pleasant").iter_rows()] for s in SPLITS}
        if not by_split["train"]:
            raise TaskError(f"{paths['pairs']}: no training pairs (pairs whose two videos are both in train)")
        from_train = not by_split["val"]
        if from_train:
            if len(by_split["train"]) < 2:
                raise TaskError("one training pair: too few to hold out validation pairs")
            rng = np.random.default_rng(self.seed)
            n = min(len(by_split["train"]) - 1, max(1, round(self.val_fraction * len(by_split["train"]))))
            held = set(rng.choice(len(by_split["train"]), n, replace=False).tolist())
            by_split["val"] = [p for i, p in enumerate(by_split["train"]) if i in held]
            by_split["train"] = [p for i, p in enumerate(by_split["train"]) if i not in held]
        list_split = {s: [list(r) for r in lists.filter(pl.col("split") == s)["videos"].to_list()] for s in SPLITS}
        splits = {}
        for s in SPLITS:
            vids = sorted({v for p in by_split[s] for v in p} | {v for l in list_split[s] for v in l})
            splits[s] = Units(vids, None, np.zeros((len(vids), 0)))
        return TaskData(splits, ["score"], {"pairs": by_split, "lists": list_split}, from_train)

    # pairs and lists as indices into a list of video ids (dropping any with an unknown video)
    @staticmethod
    def _pair_index(pairs, vids) -> np.ndarray:
        pos = {v: i for i, v in enumerate(vids)}
        idx = [(pos[a], pos[b]) for a, b in pairs if a in pos and b in pos]
        return np.asarray(idx, dtype=np.int64).reshape(-1, 2)

    @staticmethod
    def _list_index(lists, vids) -> list[list[int]]:
        pos = {v: i for i, v in enumerate(vids)}
        return [[pos[v] for v in l] for l in lists if all(v in pos for v in l)]

    def video_matrix(self, feats, vids) -> np.ndarray:
        return feats.pooled_matrix(vids, None, self.seq_len)

    def fit_predict(self, head, feats, data, out_dir, stop_after_epoch=None):
        self.check_head(head)
        tr, va, te = (data.splits[s] for s in SPLITS)
        pairs = data.extra["pairs"]
        if head in LIGHT_HEADS:
            X = {s: self.video_matrix(feats, data.splits[s].video_id) for s in SPLITS}
            p_tr = self._pair_index(pairs["train"], tr.video_id)
            if len(p_tr) == 0:
                raise TaskError("no training pair has features for both videos")
            model, info = fit_pairwise_model(head, X["train"], p_tr, self.seed, self._params(head))
            self.fitted = self.head_model(head, feats, data.target_names, [(None, LightPart(model))])
            return {"val": model.predict(X["val"]), "test": model.predict(X["test"])}, info
        if head == "full":
            vids = list(dict.fromkeys(tr.video_id + va.video_id + te.video_id))
            p_tr, p_va = self._pair_index(pairs["train"], vids), self._pair_index(pairs["val"], vids)
            if len(p_tr) == 0 or len(p_va) == 0:
                raise TaskError(f"full head needs training and validation pairs with features "
                                f"(have {len(p_tr)} and {len(p_va)})")
            from evoke.heads.full import fit_full_pairwise  # torch: only when a full head is fitted

            scores, history, net = fit_full_pairwise(feats, vids, p_tr, p_va, self.full_cfg,
                                                     out_dir / "checkpoint", stop_after_epoch=stop_after_epoch)
            self.fitted = self.head_model(head, feats, data.target_names,
                                          [(None, self.full_part(net, feats, "pairwise_bce", 1))])
            pos = {v: i for i, v in enumerate(vids)}
            return {s: scores[[pos[v] for v in data.splits[s].video_id]] for s in ("val", "test")}, \
                {"history": history}
        raise TaskError(f"task {self.name}: head {head!r} is not implemented")

    def evaluate(self, pred, units, data):
        split = _split_of(units, data)
        p = self._pair_index(data.extra["pairs"][split], units.video_id)
        lists = self._list_index(data.extra["lists"][split], units.video_id)
        scores = np.asarray(pred, dtype=np.float64).reshape(-1)
        return {"n_pairs": len(p), "n_lists": len(lists),
                "pairwise_accuracy": pairwise_accuracy(scores, p) if len(p) else float("nan"),
                "listwise_accuracy": listwise_accuracy(scores, lists) if lists else float("nan")}

    def baselines(self, data, split="test"):
        lists = data.extra["lists"][split]
        return {"random": {"n_pairs": len(data.extra["pairs"][split]), "n_lists": len(lists),
                           "pairwise_accuracy": random_pairwise_baseline(),
                           "listwise_accuracy": random_listwise_baseline([len(l) for l in lists])}}
