"""``liris_accede``: valence and arousal of a video excerpt, regression (LIRIS-ACCEDE).

Labels: ``labels/liris_accede.parquet`` (:mod:`evoke.datasets.liris_accede`:
``video_id, split, valence, arousal`` and the ranks and variances). Units are
whole excerpts (8-12 s). Targets, in order: ``valence``, ``arousal`` (the
released values).

Heads: ``lightgbm`` (``LGBMRegressor``, L2 loss) and ``linear`` (ridge
regression on standardised pooled features, ``alpha`` = ``train.linear.alpha``
or 1) fit one regressor per target; ``full`` one FullHead with two outputs and
the mean squared error as its loss, trained on targets standardised with the
training split's mean and deviation, the scale then folded into its output
layer. Every head is saved (``model/``) like the other tasks' heads. Metrics per target, as the LIRIS-ACCEDE
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

from evoke.heads.light import LIGHT_HEADS, RegressionModel, _lgbm_params
from evoke.predict.model import LightPart
from evoke.metrics import mse, pearson
from evoke.tasks.base import Task, TaskData, TaskError, Units, register_task, split_units, with_split

TARGETS = ("valence", "arousal")


def fit_regression_model(head: str, X: np.ndarray, Y: np.ndarray, seed: int, params: dict
                         ) -> tuple[RegressionModel, dict]:
    """One regressor per column of ``Y`` (N, K) on pooled features ``X`` (N, D)."""
    if head == "lightgbm":
        import lightgbm as lgb

        p = _lgbm_params(params, seed)
        rounds = int(p.pop("n_estimators"))
        p.update(objective="regression", verbose=-1)
        boosters = [lgb.train(p, lgb.Dataset(X, Y[:, k], params={"verbose": -1}), num_boost_round=rounds)
                    for k in range(Y.shape[1])]
        return RegressionModel("lightgbm", boosters=boosters), {}
    if head == "linear":
        from sklearn.linear_model import Ridge

        mean, std = X.mean(0), X.std(0)
        std = np.where(std > 1e-8, std, 1.0)
        alpha = float(params.get("alpha", 1.0))
        ridge = Ridge(alpha=alpha).fit((X - mean) / std, Y)
        return RegressionModel("linear", coef=np.atleast_2d(ridge.coef_).T, intercept=np.atleast_1d(
            ridge.intercept_), mean=mean, std=std), {"alpha": alpha}
    raise TaskError(f"unknown lightweight head {head!r} (known: {', '.join(LIGHT_HEADS)})")


def fit_regression(head: str, X: np.ndarray, Y: np.ndarray, predict: list[np.ndarray], seed: int,
                   params: dict) -> tuple[list[np.ndarray], dict]:
    """:func:`fit_regression_model`, then its predictions (M_i, K) for each array in ``predict``."""
    model, info = fit_regression_model(head, X, Y, seed, params)
    return [model.predict(Z) for Z in predict], info


@register_task
class LirisAccedeTask(Task):
    name = "liris_accede"
    description = "valence and arousal per excerpt, regression (MSE, Pearson r)"
    unit = "excerpts"
    citation = ("Baveye et al. 2015, \"LIRIS-ACCEDE: A Video Database for Affective Content Analysis\", "
                "IEEE Transactions on Affective Computing 6(1)")
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
            return self._fit_full_standardised(head, feats, data, out_dir, stop_after_epoch)
        X = {s: feats.pooled_matrix(u.video_id, None, self.seq_len) for s, u in data.splits.items()}
        model, info = fit_regression_model(head, X["train"], data.splits["train"].y, self.seed, self._params(head))
        self.fitted = self.head_model(head, feats, data.target_names, [(None, LightPart(model))])
        return {s: model.predict(X[s]) for s in ("val", "test")}, info

    def _fit_full_standardised(self, head, feats, data, out_dir, stop_after_epoch):
        """The full head on targets standardised by the training split's mean and deviation (its
        zero-centred output then starts at the mean); afterwards the scale is folded into the
        output layer (``W std``, ``b std + mean``: exact, the layer is linear), so the network,
        and the model saved from it, predict on the released scale."""
        import torch

        tr = data.splits["train"].y
        mean, std = tr.mean(0), np.where(tr.std(0) > 1e-8, tr.std(0), 1.0)
        scaled = TaskData({k: Units(u.video_id, u.time_s, (u.y - mean) / std, u.mask)
                           for k, u in data.splits.items()}, data.target_names, data.extra, data.val_from_train)
        preds, info = super().fit_predict(head, feats, scaled, out_dir, stop_after_epoch)
        for _, part in self.fitted.parts:
            for branch in part.net.branches:
                if getattr(branch, "kind", None) != "hidden_layer":
                    raise TaskError("liris_accede's full head regresses unbounded values: it needs moe: hidden_layer")
                with torch.no_grad():
                    branch.out.weight.mul_(torch.as_tensor(std, dtype=branch.out.weight.dtype)[:, None])
                    branch.out.bias.mul_(torch.as_tensor(std, dtype=branch.out.bias.dtype)).add_(
                        torch.as_tensor(mean, dtype=branch.out.bias.dtype))
        info["target_mean"], info["target_std"] = mean.tolist(), std.tolist()
        return {k: np.asarray(p) * std + mean for k, p in preds.items()}, info

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
