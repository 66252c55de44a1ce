"""``liris_accede``: valence and arousal of a video excerpt, regression (LIRIS-ACCEDE).

Labels: ``labels/liris_accede.parquet`` (:mod:`evoke.datasets.liris_accede`:
``video_id, split, valence, arousal`` and the ranks and variances). Units are
whole excerpts (8-12 s). Targets, in order: ``valence``, ``arousal`` (the
released values).

Heads: ``lightgbm`` (``LGBMRegressor``, L2 loss) and ``linear`` (ridge
regression on standardised pooled features, ``alpha`` = ``train.linear.alpha``
or 1) fit one regressor per target; ``full`` one FullHead with two outputs and
the mean squared error as its loss. Metrics per target, as the LIRIS-ACCEDE
benchmarks report them (Baveye et al. 2015; MediaEval 2015's affective task):
the mean squared error (:func:`evoke.metrics.mse`) and Pearson's r
(:func:`evoke.metrics.pearson`) between predicted and released values, as
``{target}_mse`` and ``{target}_pearson``. Baseline: the training split's mean
for every excerpt (its r is undefined: a constant prediction).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from evoke.heads.light import LIGHT_HEADS
from evoke.metrics import mse, pearson
from evoke.tasks.base import Task, TaskData, TaskError, Units, register_task, split_units, with_split

TARGETS = ("valence", "arousal")


def fit_regression(head: str, X: np.ndarray, Y: np.ndarray, predict: list[np.ndarray], seed: int,
                   params: dict) -> tuple[list[np.ndarray], dict]:
    """One regressor per column of ``Y`` (N, K); predictions (M_i, K) for each array in ``predict``."""
    outs = [np.zeros((Z.shape[0], Y.shape[1])) for Z in predict]
    if head == "lightgbm":
        from lightgbm import LGBMRegressor

        from evoke.heads.light import _lgbm_params

        for k in range(Y.shape[1]):
            model = LGBMRegressor(objective="regression", **_lgbm_params(params, seed))
            model.fit(X, Y[:, k])
            for o, Z in zip(outs, predict):
                o[:, k] = model.predict(Z)
        return outs, {}
    if head == "linear":
        from sklearn.linear_model import Ridge

        mean, std = X.mean(0), X.std(0)
        std = np.where(std > 1e-8, std, 1.0)
        alpha = float(params.get("alpha", 1.0))
        model = Ridge(alpha=alpha).fit((X - mean) / std, Y)
        for o, Z in zip(outs, predict):
            o[:] = model.predict((Z - mean) / std).reshape(len(Z), -1)
        return outs, {"alpha": alpha}
    raise TaskError(f"unknown lightweight head {head!r} (known: {', '.join(LIGHT_HEADS)})")


@register_task
class LirisAccedeTask(Task):
    name = "liris_accede"
    description = "valence and arousal per excerpt, regression (MSE, Pearson r)"
    label_files = {"liris_accede": "labels/liris_accede.parquet"}
    kind = "regression"
    full_loss = "mse"

    def load(self, dataset_dir: Path, paths: dict[str, Path]) -> TaskData:
        df = pl.read_parquet(paths["liris_accede"])
        missing = [c for c in ("video_id", *TARGETS) if c not in df.columns]
        if missing:
            raise TaskError(f"{paths['liris_accede']}: no column(s) {', '.join(missing)}")
        df = with_split(df, dataset_dir, str(paths["liris_accede"]))
        df = df.filter(pl.all_horizontal(pl.col(t).is_not_null() for t in TARGETS)).sort("video_id")
        units = Units(df["video_id"].to_list(), None, df.select(TARGETS).to_numpy().astype(np.float64))
        splits, from_train = split_units(units, df["split"].to_list(), self.val_fraction, self.seed)
        return TaskData(splits, list(TARGETS), {}, from_train)

    def fit_predict(self, head, feats, data, out_dir, stop_after_epoch=None):
        self.check_head(head)
        if head not in LIGHT_HEADS:
            return super().fit_predict(head, feats, data, out_dir, stop_after_epoch)
        X = {s: feats.pooled_matrix(u.video_id, None, self.seq_len) for s, u in data.splits.items()}
        preds, info = fit_regression(head, X["train"], data.splits["train"].y, [X["val"], X["test"]],
                                     self.seed, self._params(head))
        return {"val": preds[0], "test": preds[1]}, info

    def evaluate(self, pred, units, data):
        if len(units) == 0:
            return {"n": 0}
        pred = np.asarray(pred, dtype=np.float64).reshape(len(units), -1)
        out = {"n": len(units)}
        for k, t in enumerate(data.target_names):
            out[f"{t}_mse"] = mse(pred[:, k], units.y[:, k])
            out[f"{t}_pearson"] = pearson(pred[:, k], units.y[:, k])
        return out

    def baselines(self, data, split="test"):
        tr, te = data.splits["train"], data.splits[split]
        if len(te) == 0:
            return {}
        return {"train_mean": self.evaluate(np.repeat(tr.y.mean(0, keepdims=True), len(te), 0), te, data)}
