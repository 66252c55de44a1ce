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
"""

from __future__ import annotations

import logging

import numpy as np

from evoke.heads.data import HeadDataError

log = logging.getLogger(__name__)

LIGHT_HEADS = ("lightgbm", "linear")


def _lgbm_params(params: dict | None, seed: int) -> dict:
    p = {"n_estimators": 200, "learning_rate": 0.05, "num_leaves": 15, "min_child_samples": 5,
         "subsample": 0.8, "subsample_freq": 1, "colsample_bytree": 0.8, "verbose": -1, "n_jobs": 1}
    p.update(params or {})
    p["random_state"] = seed
    return p


class _Scaler:
    def __init__(self, X: np.ndarray):
        self.mean = X.mean(0)
        std = X.std(0)
        self.std = np.where(std > 1e-8, std, 1.0)

    def __call__(self, X: np.ndarray) -> np.ndarray:
        return (X - self.mean) / self.std


C_GRID = (0.001, 0.01, 0.1, 1.0, 10.0)


def fit_distribution(head: str, X: np.ndarray, P: np.ndarray, predict: list[np.ndarray], seed: int = 0,
                     params: dict | None = None,
                     val: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[list[np.ndarray], dict]:
    """Fit to label distributions ``P`` (N, C); return predicted (M, C) distributions for each
    array in ``predict`` and an info dict.

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
        prob = [_softmax_rows(booster.predict(Z, raw_score=True, num_iteration=best)) for Z in predict]
    elif head == "linear":
        scale = _Scaler(X)
        grid = [float(params["C"])] if params and "C" in params else (list(C_GRID) if Xv is not None else [1.0])
        fits = [(C, *_soft_logistic_regression(scale(Xk), Pk, C=C)) for C in grid]
        if len(fits) > 1:
            ce = [_cross_entropy(_softmax_rows(scale(Xv) @ W + b), Pv) for _, W, b in fits]
            info["val_cross_entropy"] = dict(zip(map(str, grid), map(float, ce)))
            fits = [fits[int(np.argmin(ce))]]
        C, W, b = fits[0]
        info["C"] = C
        prob = [_softmax_rows(scale(Z) @ W + b) for Z in predict]
    else:
        raise HeadDataError(f"unknown lightweight head {head!r} (known: {', '.join(LIGHT_HEADS)})")
    out = []
    for pr in prob:
        full = np.zeros((pr.shape[0], c))
        full[:, present] = pr
        out.append(full)
    return out, info


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
    Yb = (Y >= 0.5).astype(int)
    M = np.ones(Y.shape, bool) if M is None else M
    outs = [np.zeros((Z.shape[0], Y.shape[1])) for Z in predict]
    constant = []
    scale = _Scaler(X) if head == "linear" else None
    for k in range(Y.shape[1]):
        rows = M[:, k]
        yk = Yb[rows, k]
        if rows.sum() == 0 or np.unique(yk).size < 2:
            prior = float(yk.mean()) if yk.size else 0.5
            constant.append(names[k])
            for o in outs:
                o[:, k] = prior
            continue
        if head == "lightgbm":
            from lightgbm import LGBMClassifier

            model = LGBMClassifier(objective="binary", **_lgbm_params(params, seed))
            model.fit(X[rows], yk)
            for o, Z in zip(outs, predict):
                o[:, k] = model.predict_proba(Z)[:, 1]
        elif head == "linear":
            from sklearn.linear_model import LogisticRegression

            model = LogisticRegression(C=(params or {}).get("C", 1.0), max_iter=2000)
            model.fit(scale(X[rows]), yk)
            for o, Z in zip(outs, predict):
                o[:, k] = model.predict_proba(scale(Z))[:, 1]
        else:
            raise HeadDataError(f"unknown lightweight head {head!r} (known: {', '.join(LIGHT_HEADS)})")
    if len(constant) == Y.shape[1]:
        raise HeadDataError(
            f"every target ({', '.join(names)}) has a single class in the training split: nothing to learn")
    if constant:
        log.warning("single class in training, predicting the prior for: %s", ", ".join(constant))
    return outs, {"constant_columns": constant}


def fit_pairwise(head: str, X: np.ndarray, pairs: np.ndarray, predict: list[np.ndarray], seed: int = 0,
                 params: dict | None = None, standardise: bool = True) -> tuple[list[np.ndarray], dict]:
    """Scores (M_i,) for each array in ``predict``, from ``pairs`` (M, 2) of row indices into
    ``X`` (less, more pleasant), and an info dict (linear: the coefficients)."""
    if len(pairs) == 0:
        raise HeadDataError("no training pairs")
    less, more = X[pairs[:, 0]], X[pairs[:, 1]]
    if head == "linear":
        from sklearn.linear_model import LogisticRegression

        scale = _Scaler(X) if standardise else (lambda Z: Z)
        diff = scale(more) - scale(less)
        model = LogisticRegression(C=(params or {}).get("C", 1.0), fit_intercept=False, max_iter=2000)
        model.fit(np.vstack([diff, -diff]), np.r_[np.ones(len(diff)), np.zeros(len(diff))])
        return [scale(Z) @ model.coef_[0] for Z in predict], {"coef": model.coef_[0].tolist()}
    if head == "lightgbm":
        from lightgbm import LGBMRanker

        p = _lgbm_params(params, seed)
        p.update(min_child_samples=min(p["min_child_samples"], 2))
        model = LGBMRanker(objective="lambdarank", **p)
        Xq = np.empty((2 * len(pairs), X.shape[1]), X.dtype)
        Xq[0::2], Xq[1::2] = less, more
        rel = np.tile([0, 1], len(pairs))
        model.fit(Xq, rel, group=np.full(len(pairs), 2))
        return [model.predict(Z) for Z in predict], {}
    raise HeadDataError(f"unknown lightweight head {head!r} (known: {', '.join(LIGHT_HEADS)})")
