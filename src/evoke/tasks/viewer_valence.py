"""``viewer_valence``: binary valence per second, per viewer and for the average viewer (COGNIMUSE).

Labels: ``labels/viewer_valence.parquet`` (:mod:`evoke.labels.viewers`):
``video_id, split, time_s``, ``valence_bin`` (the average viewer) and
``valence_bin__{viewer}`` (null where the viewer has no sample). Targets, in
order: ``average`` then each viewer. Units are seconds (the 60-s window ending
at t).

Heads: ``lightgbm`` and ``linear`` fit one classifier per target (single-task);
``full`` trains one FullHead per target (single-task); ``full_multitask`` one
FullHead with ``n_branches`` = viewers + 1 on a shared trunk (the COGNIMUSE
multi-task model), BCE over the labelled entries. A target with a single class
in training predicts its training rate (a documented skip, named in
``info``). Metrics: accuracy (threshold 0.5) per target over its labelled
seconds, ``mean_viewer_accuracy`` over the individual viewers and
``average_viewer_accuracy``. Baseline: each target's majority class in training.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from evoke.heads.full import fit_full
from evoke.predict.model import ConstantPart
from evoke.tasks.base import Task, TaskData, TaskError, Units, register_task, split_units, with_split


@register_task
class ViewerValenceTask(Task):
    name = "viewer_valence"
    description = "per-second binary valence per viewer and the average viewer"
    per_second = True
    heads = ("lightgbm", "linear", "full", "full_multitask")
    label_files = {"viewer_valence": "labels/viewer_valence.parquet"}
    kind = "binary"
    full_loss = "bce"
    dimension = "valence"

    def load(self, dataset_dir: Path, paths: dict[str, Path]) -> TaskData:
        df = pl.read_parquet(paths["viewer_valence"])
        avg = f"{self.dimension}_bin"
        if avg not in df.columns:
            raise TaskError(f"{paths['viewer_valence']}: no {avg} column")
        viewers = sorted(c.split("__", 1)[1] for c in df.columns if c.startswith(f"{avg}__"))
        cols = [avg] + [f"{avg}__{v}" for v in viewers]
        df = with_split(df, dataset_dir, str(paths["viewer_valence"])).sort("video_id", "time_s")
        raw = df.select(cols).to_numpy().astype(np.float64)
        mask = ~np.isnan(raw)
        units = Units(df["video_id"].to_list(), df["time_s"].to_list(), np.nan_to_num(raw), mask)
        splits, from_train = split_units(units, df["split"].to_list(), self.val_fraction, self.seed)
        return TaskData(splits, ["average"] + viewers, {}, from_train)

    def fit_predict(self, head, feats, data, out_dir, stop_after_epoch=None):
        self.check_head(head)
        if head == "full_multitask":
            self._check_classes(data)
            d = {s: data.splits[s].as_dict() for s in data.splits}
            preds, history, net = fit_full(feats, d["train"], d["val"], [d["val"], d["test"]], "bce", 1,
                                           self.full_cfg, out_dir / "checkpoint",
                                           n_branches=len(data.target_names), stop_after_epoch=stop_after_epoch)
            self.fitted = self.head_model(head, feats, data.target_names,
                                          [(None, self.full_part(net, feats, "bce", 1, len(data.target_names)))])
            return {"val": preds[0], "test": preds[1]}, {"history": history}
        if head != "full":
            return super().fit_predict(head, feats, data, out_dir, stop_after_epoch)
        self._check_classes(data)
        tr = data.splits["train"]
        out = {s: np.zeros((len(data.splits[s]), len(data.target_names))) for s in ("val", "test")}
        histories, constant, parts = {}, [], []
        for k, name in enumerate(data.target_names):
            sub = {s: {**data.splits[s].as_dict(), "y": data.splits[s].y[:, [k]], "mask": data.splits[s].mask[:, [k]]}
                   for s in data.splits}
            yk = tr.y[tr.mask[:, k], k]
            if np.unique(yk).size < 2:
                constant.append(name)
                parts.append(([k], ConstantPart(yk.mean() if yk.size else 0.5)))
                for s in out:
                    out[s][:, k] = parts[-1][1].value
                continue
            preds, histories[name], net = fit_full(feats, sub["train"], sub["val"], [sub["val"], sub["test"]],
                                                 "bce", 1, self.full_cfg, out_dir / "checkpoint" / name,
                                                 stop_after_epoch=stop_after_epoch)
            out["val"][:, k], out["test"][:, k] = preds[0][:, 0], preds[1][:, 0]
            parts.append(([k], self.full_part(net, feats, "bce", 1)))
        self.fitted = self.head_model(head, feats, data.target_names, parts)
        return out, {"history": histories, "constant_columns": constant}

    def evaluate(self, pred, units, data):
        if len(units) == 0:
            return {"n": 0}
        pred = np.asarray(pred).reshape(len(units), -1)
        out = {"n": len(units)}
        accs = {}
        for k, name in enumerate(data.target_names):
            m = units.mask[:, k]
            accs[name] = float(((pred[m, k] >= 0.5) == (units.y[m, k] >= 0.5)).mean()) if m.any() else float("nan")
        out["accuracy"] = accs
        viewers = [accs[v] for v in data.target_names[1:] if np.isfinite(accs[v])]
        out["mean_viewer_accuracy"] = float(np.mean(viewers)) if viewers else float("nan")
        out["average_viewer_accuracy"] = accs["average"]
        return out

    def baselines(self, data, split="test"):
        tr, te = data.splits["train"], data.splits[split]
        if len(te) == 0:
            return {}
        maj = np.array([float((tr.y[tr.mask[:, k], k] >= 0.5).mean() >= 0.5) if tr.mask[:, k].any() else 0.0
                        for k in range(tr.y.shape[1])])
        return {"majority_class": self.evaluate(np.repeat(maj[None], len(te), 0), te, data)}
