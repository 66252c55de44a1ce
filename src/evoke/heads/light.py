"""Lightweight heads on pooled features: LightGBM and linear (scikit-learn) models.

Three shapes of target cover every task:

* :func:`fit_distribution` (VCE, danmaku LDL): an (N, C) label distribution.
  A softmax model is fitted to the distribution itself with the cross-entropy
  to it as the loss (the log-loss of one row per class weighted by its share,
  computed without making those rows, so memory stays N x features): LightGBM
  with that loss as a custom objective (LightGBM's multiclass gradient and
  hessian), or multinomial logistic regression (L-BFGS, scikit-learn's
  ``C``). Classes that never occur in training get probability 0.
* :func:`fit_binary_columns` (EEV expressions, viewers' valence): one binary
  classifier per column (``LGBMClassifier`` or ``LogisticRegression``), only on
  the rows where that column is labelled. A column with a single class in
  training is a documented skip: it predicts its training rate (the prior)
  and is named in ``info["constant_columns"]``; when every column is so the
  run stops (:class:`HeadDataError`).
* :func:`fit_pairwise` (V2V): a per-video score from (less, more) pleasant
  pairs. Linear: logistic regression without intercept on the feature
  differences ``x_more - x_less`` (label 1) and their negation (label 0), so
  ``score = w . x`` (the BCE of ``sigmoid(f(x_j) - f(x_i))`` with a linear f).
  LightGBM: ``LGBMRanker`` (lambdarank) with each pair as a query of two
  videos, relevance 1 for the more pleasant one.

Inputs are standardised with the training rows' mean and deviation for the
linear models (trees do not need it).

Each ``fit_*`` has a ``fit_*_model`` twin that returns the fitted model
(:class:`DistributionModel`, :class:`BinaryColumnsModel`,
:class:`PairwiseModel`) instead of predictions; the ``fit_*`` functions
predict with that model's :meth:`predict`, so the predictions a run writes
are the ones the saved model gives back. A model saves itself into a folder
(:meth:`save`: LightGBM boosters in their own text format, linear
coefficients and the standardisation statistics in ``.npz`` files) and
:func:`load_light_model` reads it back.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from evoke.heads.data import HeadDataError
from evoke.store import atomic_path

log = logging.getLogger(__name__)

LIGHT_HEADS = ("lightgbm", "linear")


def _lgbm_params(params: dict | None, seed: int) -> dict:
    p = {"n_estimators": 200, "learning_rate": 0.05, "num_leaves": 15, "min_child_samples": 5,
         "subsample": 0.8, "subsample_freq": 1, "colsample_bytree": 0.8, "verbose": -1, "n_jobs": 1}
    p.update(params or {})
    p["random_state"] = seed
    return p


class _Scaler:
    """Standardisation with the training rows' mean and deviation (deviation 0 counts as 1)."""

    def __init__(self, X: np.ndarray | None = None, mean: np.ndarray | None = None, std: np.ndarray | None = None):
        if X is not None:
            mean, std = X.mean(0), X.std(0)
            std = np.where(std > 1e-8, std, 1.0)
        self.mean, self.std = np.asarray(mean), np.asarray(std)

    def __call__(self, X: np.ndarray) -> np.ndarray:
        return (X - self.mean) / self.std


def _identity(X: np.ndarray) -> np.ndarray:
    return X


# ---------------------------------------------------------------- saved models


def _save_booster(booster, path: Path, num_iteration: int | None = None) -> str:
    with atomic_path(path) as tmp:
        booster.save_model(str(tmp), num_iteration=num_iteration)
    return path.name


def _load_booster(path: Path):
    import lightgbm as lgb

    if not path.is_file():
        raise HeadDataError(f"{path}: LightGBM model file missing from the model folder")
    return lgb.Booster(model_file=str(path))


def _save_npz(path: Path, **arrays) -> str:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **{k: np.asarray(v) for k, v in arrays.items()})
    return path.name


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise HeadDataError(f"{path}: coefficients file missing from the model folder")
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


class DistributionModel:
    """A fitted distribution head: pooled features (M, D) -> distributions (M, C).

    ``present``: the training classes the softmax covers (the rest get 0);
    LightGBM: ``booster`` with ``best_iteration`` trees used; linear: ``W``
    (D, k), ``b`` (k,) on features standardised by ``mean``/``std``.
    """

    kind = "distribution"

    def __init__(self, head: str, n_classes: int, present: np.ndarray, booster=None, best_iteration: int = 0,
                 W=None, b=None, mean=None, std=None):
        self.head, self.n_classes, self.present = head, int(n_classes), np.asarray(present, dtype=np.int64)
        self.booster, self.best_iteration = booster, int(best_iteration)
        self.W, self.b = W, b
        self.scale = _Scaler(mean=mean, std=std) if mean is not None else None

    def predict(self, X: np.ndarray) -> np.ndarray:
        if self.head == "lightgbm":
            pr = _softmax_rows(self.booster.predict(X, raw_score=True, num_iteration=self.best_iteration))
        else:
            pr = _softmax_rows(self.scale(X) @ self.W + self.b)
        full = np.zeros((pr.shape[0], self.n_classes))
        full[:, self.present] = pr
        return full

    def save(self, folder: Path, prefix: str) -> dict:
        spec = {"kind": self.kind, "head": self.head, "n_classes": self.n_classes, "present": self.present.tolist()}
        if self.head == "lightgbm":
            spec["booster"] = _save_booster(self.booster, folder / f"{prefix}.lgbm.txt", self.best_iteration)
            spec["best_iteration"] = self.best_iteration
        else:
            spec["arrays"] = _save_npz(folder / f"{prefix}.npz", W=self.W, b=self.b, mean=self.scale.mean,
                                       std=self.scale.std)
        return spec

    @classmethod
    def load(cls, folder: Path, spec: dict) -> "DistributionModel":
        if spec["head"] == "lightgbm":
            return cls("lightgbm", spec["n_classes"], spec["present"], booster=_load_booster(folder / spec["booster"]),
                       best_iteration=spec["best_iteration"])
        a = _load_npz(folder / spec["arrays"])
        return cls("linear", spec["n_classes"], spec["present"], W=a["W"], b=a["b"], mean=a["mean"], std=a["std"])


class BinaryColumnsModel:
    """One fitted binary classifier per column: pooled features (M, D) -> probabilities (M, K).

    ``columns[k]``: a LightGBM booster (binary objective: ``predict`` gives the
    probability), ``(coef (D,), intercept)`` of a logistic regression on
    features standardised by ``mean``/``std``, or a float: the training rate of
    a column with a single class (the documented skip).
    """

    kind = "binary_columns"

    def __init__(self, head: str, columns: list, mean=None, std=None):
        self.head, self.columns = head, columns
        self.scale = _Scaler(mean=mean, std=std) if mean is not None else None

    def predict(self, X: np.ndarray) -> np.ndarray:
        from scipy.special import expit

        out = np.zeros((X.shape[0], len(self.columns)))
        Xs = self.scale(X) if self.scale is not None else X
        for k, c in enumerate(self.columns):
            if isinstance(c, float):
                out[:, k] = c
            elif self.head == "lightgbm":
                out[:, k] = c.predict(X)
            else:
                coef, intercept = c
                out[:, k] = expit(Xs @ coef + intercept)
        return out

    def save(self, folder: Path, prefix: str) -> dict:
        cols = []
        for k, c in enumerate(self.columns):
            if isinstance(c, float):
                cols.append({"constant": c})
            elif self.head == "lightgbm":
                cols.append({"booster": _save_booster(c, folder / f"{prefix}.col{k}.lgbm.txt")})
            else:
                cols.append({"coef": np.asarray(c[0]).tolist(), "intercept": float(c[1])})
        spec = {"kind": self.kind, "head": self.head, "columns": cols}
        if self.scale is not None:
            spec["arrays"] = _save_npz(folder / f"{prefix}.npz", mean=self.scale.mean, std=self.scale.std)
        return spec

    @classmethod
    def load(cls, folder: Path, spec: dict) -> "BinaryColumnsModel":
        cols = []
        for c in spec["columns"]:
            if "constant" in c:
                cols.append(float(c["constant"]))
            elif "booster" in c:
                cols.append(_load_booster(folder / c["booster"]))
            else:
                cols.append((np.asarray(c["coef"], dtype=np.float64), float(c["intercept"])))
        a = _load_npz(folder / spec["arrays"]) if "arrays" in spec else {}
        return cls(spec["head"], cols, a.get("mean"), a.get("std"))


class PairwiseModel:
    """A fitted pairwise head: pooled features (M, D) -> scores (M,) (higher: more pleasant).

    Linear: ``coef`` (D,) on features standardised by ``mean``/``std`` (or raw
    when ``standardise`` was off); LightGBM: a lambdarank booster.
    """

    kind = "pairwise"

    def __init__(self, head: str, booster=None, coef=None, mean=None, std=None):
        self.head, self.booster, self.coef = head, booster, None if coef is None else np.asarray(coef)
        self.scale = _Scaler(mean=mean, std=std) if mean is not None else _identity

    def predict(self, X: np.ndarray) -> np.ndarray:
        if self.head == "lightgbm":
            return self.booster.predict(X)
        return self.scale(X) @ self.coef

    def save(self, folder: Path, prefix: str) -> dict:
        spec = {"kind": self.kind, "head": self.head}
        if self.head == "lightgbm":
            spec["booster"] = _save_booster(self.booster, folder / f"{prefix}.lgbm.txt")
        else:
            arrays = {"coef": self.coef}
            if isinstance(self.scale, _Scaler):
                arrays |= {"mean": self.scale.mean, "std": self.scale.std}
            spec["arrays"] = _save_npz(folder / f"{prefix}.npz", **arrays)
        return spec

    @classmethod
    def load(cls, folder: Path, spec: dict) -> "PairwiseModel":
        if spec["head"] == "lightgbm":
            return cls("lightgbm", booster=_load_booster(folder / spec["booster"]))
        a = _load_npz(folder / spec["arrays"])
        return cls("linear", coef=a["coef"], mean=a.get("mean"), std=a.get("std"))


LIGHT_MODELS = {c.kind: c for c in (DistributionModel, BinaryColumnsModel, PairwiseModel)}


def load_light_model(folder: Path, spec: dict):
    """The model :meth:`save` wrote into ``folder`` with this ``spec`` (its JSON description)."""
    try:
        cls = LIGHT_MODELS[spec["kind"]]
    except KeyError:
        raise HeadDataError(f"{folder}: unknown lightweight model kind {spec.get('kind')!r}") from None
    return cls.load(Path(folder), spec)


C_GRID = (0.001, 0.01, 0.1, 1.0, 10.0)


def fit_distribution(head: str, X: np.ndarray, P: np.ndarray, predict: list[np.ndarray], seed: int = 0,
                     params: dict | None = None,
                     val: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[list[np.ndarray], dict]:
    """Fit to label distributions ``P`` (N, C); return predicted (M, C) distributions for each
    array in ``predict`` and an info dict (see :func:`fit_distribution_model`)."""
    model, info = fit_distribution_model(head, X, P, seed, params, val)
    return [model.predict(Z) for Z in predict], info


def fit_distribution_model(head: str, X: np.ndarray, P: np.ndarray, seed: int = 0, params: dict | None = None,
                           val: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[DistributionModel, dict]:
    """Fit to label distributions ``P`` (N, C); return the :class:`DistributionModel` and an info dict.

    With ``val`` = (X_val, P_val) the model is chosen on the validation
    cross-entropy: LightGBM stops adding trees 20 rounds after the best one
    (``info["best_iteration"]``); the linear model takes the best ``C`` of
    :data:`C_GRID` unless ``params`` sets one (``info["C"]``).
    """
    n, c = P.shape
    rows, cols = np.nonzero(P > 0)
    if rows.size == 0:
        raise HeadDataError("no training example has a non-empty label distribution")
    present = np.unique(cols)
    if present.size < 2:
        raise HeadDataError(f"the training labels use a single class (index {int(present[0])}): "
                            "a classifier needs at least two")
    Xk, Pk = _on_classes(X, P, present)
    Xv, Pv = _on_classes(*val, present) if val is not None and len(val[0]) else (None, None)
    info: dict = {"classes_seen": int(present.size)}
    if head == "lightgbm":
        import lightgbm as lgb

        p = _lgbm_params(params, seed)
        rounds = int(p.pop("n_estimators"))
        p.update(objective=_soft_softmax_objective(Pk), num_class=int(present.size), metric="None")
        dparams = {"verbose": -1, "min_data_in_leaf": p["min_child_samples"], "feature_pre_filter": False}
        data = lgb.Dataset(Xk, params=dparams, free_raw_data=True)
        kw = {}
        if Xv is not None and len(Xv):
            kw = {"valid_sets": [lgb.Dataset(Xv, params=dparams, reference=data)], "valid_names": ["val"],
                  "feval": _soft_ce_metric(Pv), "callbacks": [lgb.early_stopping(20, verbose=False)]}
        booster = lgb.train(p, data, num_boost_round=rounds, **kw)
        best = booster.best_iteration if kw and booster.best_iteration > 0 else booster.current_iteration()
        info["best_iteration"] = int(best)
        return DistributionModel("lightgbm", c, present, booster=booster, best_iteration=best), info
    if head == "linear":
        scale = _Scaler(X)
        grid = [float(params["C"])] if params and "C" in params else (list(C_GRID) if Xv is not None else [1.0])
        fits = [(C, *_soft_logistic_regression(scale(Xk), Pk, C=C)) for C in grid]
        if len(fits) > 1:
            ce = [_cross_entropy(_softmax_rows(scale(Xv) @ W + b), Pv) for _, W, b in fits]
            info["val_cross_entropy"] = dict(zip(map(str, grid), map(float, ce)))
            fits = [fits[int(np.argmin(ce))]]
        C, W, b = fits[0]
        info["C"] = C
        return DistributionModel("linear", c, present, W=W, b=b, mean=scale.mean, std=scale.std), info
    raise HeadDataError(f"unknown lightweight head {head!r} (known: {', '.join(LIGHT_HEADS)})")


def _on_classes(X: np.ndarray, P: np.ndarray, present: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The rows of ``X``/``P`` whose distribution has mass on the ``present`` classes, with ``P``
    cut to those classes and renormalised (an all-zero row carries no target)."""
    Pp = P[:, present]
    mass = Pp.sum(1)
    keep = mass > 0
    return X[keep], Pp[keep] / mass[keep, None]


def _cross_entropy(q: np.ndarray, p: np.ndarray) -> float:
    return float(-(p * np.log(np.clip(q, 1e-12, 1.0))).sum(1).mean())


def _soft_ce_metric(P: np.ndarray):
    """LightGBM eval function: mean cross-entropy of softmax(raw scores) to ``P`` (lower is better)."""
    def metric(preds, _data):
        return "soft_cross_entropy", _cross_entropy(_softmax_rows(preds), P), False

    return metric


def _softmax_rows(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64).reshape(z.shape[0], -1)
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def _soft_softmax_objective(P: np.ndarray):
    """LightGBM objective: cross-entropy of softmax(z) to the distributions ``P`` (N, K).

    Gradient ``q - p``; hessian ``K / (K - 1) q (1 - q)``, LightGBM's own multiclass
    factor, so this equals its ``multiclass`` objective with one row per class
    weighted by its share, without making those rows.
    """
    k = P.shape[1]
    factor = k / (k - 1.0)

    def objective(preds, _data):
        q = _softmax_rows(preds)
        return (q - P), np.maximum(factor * q * (1.0 - q), 1e-12)

    return objective


def _soft_logistic_regression(X: np.ndarray, P: np.ndarray, C: float = 1.0,
                              max_iter: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression to distributions: minimise
    ``-sum_i sum_c P_ic log softmax(X W + b)_ic + |W|^2 / (2 C)`` (L-BFGS), the objective
    of scikit-learn's ``LogisticRegression(C)`` on one row per class weighted by its share."""
    from scipy.optimize import minimize

    X = np.asarray(X, dtype=np.float64)
    n, d = X.shape
    k = P.shape[1]

    def f(w):
        W, b = w[:d * k].reshape(d, k), w[d * k:]
        z = X @ W + b
        z -= z.max(1, keepdims=True)
        logq = z - np.log(np.exp(z).sum(1, keepdims=True))
        g = np.exp(logq) - P
        loss = -(P * logq).sum() + 0.5 / C * np.square(W).sum()
        return loss, np.concatenate([(X.T @ g + W / C).ravel(), g.sum(0)])

    res = minimize(f, np.zeros(d * k + k), jac=True, method="L-BFGS-B",
                   options={"maxiter": max_iter, "gtol": 1e-6})
    return res.x[:d * k].reshape(d, k), res.x[d * k:]


def fit_binary_columns(head: str, X: np.ndarray, Y: np.ndarray, M: np.ndarray | None,
                       predict: list[np.ndarray], names: list[str], seed: int = 0,
                       params: dict | None = None) -> tuple[list[np.ndarray], dict]:
    """One binary classifier per column of ``Y`` (N, K) in {0, 1}, trained where ``M`` (N, K) is
    true; return (M_i, K) probabilities for each array in ``predict`` and an info dict."""
    model, info = fit_binary_columns_model(head, X, Y, M, names, seed, params)
    return [model.predict(Z) for Z in predict], info


def fit_binary_columns_model(head: str, X: np.ndarray, Y: np.ndarray, M: np.ndarray | None, names: list[str],
                             seed: int = 0, params: dict | None = None) -> tuple[BinaryColumnsModel, dict]:
    """:func:`fit_binary_columns`, returning the :class:`BinaryColumnsModel` and the info dict."""
    if head not in LIGHT_HEADS:
        raise HeadDataError(f"unknown lightweight head {head!r} (known: {', '.join(LIGHT_HEADS)})")
    Yb = (Y >= 0.5).astype(int)
    M = np.ones(Y.shape, bool) if M is None else M
    columns: list = []
    constant = []
    scale = _Scaler(X) if head == "linear" else None
    for k in range(Y.shape[1]):
        rows = M[:, k]
        yk = Yb[rows, k]
        if rows.sum() == 0 or np.unique(yk).size < 2:
            columns.append(float(yk.mean()) if yk.size else 0.5)
            constant.append(names[k])
            continue
        if head == "lightgbm":
            from lightgbm import LGBMClassifier

            model = LGBMClassifier(objective="binary", **_lgbm_params(params, seed))
            model.fit(X[rows], yk)
            columns.append(model.booster_)
        else:
            from sklearn.linear_model import LogisticRegression

            model = LogisticRegression(C=(params or {}).get("C", 1.0), max_iter=2000)
            model.fit(scale(X[rows]), yk)
            columns.append((model.coef_[0].astype(np.float64), float(model.intercept_[0])))
    if len(constant) == Y.shape[1]:
        raise HeadDataError(
            f"every target ({', '.join(names)}) has a single class in the training split: nothing to learn")
    if constant:
        log.warning("single class in training, predicting the prior for: %s", ", ".join(constant))
    mean, std = (scale.mean, scale.std) if scale is not None else (None, None)
    return BinaryColumnsModel(head, columns, mean, std), {"constant_columns": constant}


def fit_pairwise(head: str, X: np.ndarray, pairs: np.ndarray, predict: list[np.ndarray], seed: int = 0,
                 params: dict | None = None, standardise: bool = True) -> tuple[list[np.ndarray], dict]:
    """Scores (M_i,) for each array in ``predict``, from ``pairs`` (M, 2) of row indices into
    ``X`` (less, more pleasant), and an info dict (linear: the coefficients)."""
    model, info = fit_pairwise_model(head, X, pairs, seed, params, standardise)
    return [model.predict(Z) for Z in predict], info


def fit_pairwise_model(head: str, X: np.ndarray, pairs: np.ndarray, seed: int = 0, params: dict | None = None,
                       standardise: bool = True) -> tuple[PairwiseModel, dict]:
    """:func:`fit_pairwise`, returning the :class:`PairwiseModel` and the info dict."""
    if len(pairs) == 0:
        raise HeadDataError("no training pairs")
    less, more = X[pairs[:, 0]], X[pairs[:, 1]]
    if head == "linear":
        from sklearn.linear_model import LogisticRegression

        scale = _Scaler(X) if standardise else _identity
        diff = scale(more) - scale(less)
        model = LogisticRegression(C=(params or {}).get("C", 1.0), fit_intercept=False, max_iter=2000)
        model.fit(np.vstack([diff, -diff]), np.r_[np.ones(len(diff)), np.zeros(len(diff))])
        coef = model.coef_[0].astype(np.float64)
        mean, std = (scale.mean, scale.std) if standardise else (None, None)
        return PairwiseModel("linear", coef=coef, mean=mean, std=std), {"coef": coef.tolist()}
    if head == "lightgbm":
        from lightgbm import LGBMRanker

        p = _lgbm_params(params, seed)
        p.update(min_child_samples=min(p["min_child_samples"], 2))
        model = LGBMRanker(objective="lambdarank", **p)
        Xq = np.empty((2 * len(pairs), X.shape[1]), X.dtype)
        Xq[0::2], Xq[1::2] = less, more
        rel = np.tile([0, 1], len(pairs))
        model.fit(Xq, rel, group=np.full(len(pairs), 2))
        return PairwiseModel("lightgbm", booster=model.booster_), {}
    raise HeadDataError(f"unknown lightweight head {head!r} (known: {', '.join(LIGHT_HEADS)})")
