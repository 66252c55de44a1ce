"""The distribution heads fit soft labels without expanding rows, and match the expanded form."""

import numpy as np
import pytest

from evoke.heads.light import fit_distribution


@pytest.fixture
def case():
    rng = np.random.default_rng(7)
    X = rng.normal(size=(120, 5))
    W = rng.normal(size=(5, 4))
    logits = X @ W
    P = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    P[:, 3] = 0.0  # a class never seen in training
    P /= P.sum(1, keepdims=True)
    P[P < 0.05] = 0.0
    P /= P.sum(1, keepdims=True)
    Z = rng.normal(size=(30, 5))
    return X, P, Z


def test_linear_equals_scikit_learn_on_weighted_rows(case):
    from sklearn.linear_model import LogisticRegression

    X, P, Z = case
    (pred,), info = fit_distribution("linear", X, P, [Z], params={"C": 0.5})
    assert info["classes_seen"] == 3
    assert np.all(pred[:, 3] == 0) and np.allclose(pred.sum(1), 1)
    rows, cols = np.nonzero(P > 0)
    mean, std = X.mean(0), X.std(0)
    ref = LogisticRegression(C=0.5, max_iter=5000, tol=1e-10).fit((X[rows] - mean) / std, cols,
                                                                   sample_weight=P[rows, cols])
    np.testing.assert_allclose(pred[:, ref.classes_], ref.predict_proba((Z - mean) / std), atol=2e-4)


def test_lightgbm_on_one_hot_labels_equals_multiclass(case):
    from lightgbm import LGBMClassifier

    X, P, Z = case
    hard = np.eye(4)[P.argmax(1)]
    params = {"n_estimators": 30, "subsample": 1.0, "colsample_bytree": 1.0, "min_child_samples": 5}
    (pred,), _ = fit_distribution("lightgbm", X, hard, [Z], params=params)
    ref = LGBMClassifier(objective="multiclass", n_estimators=30, learning_rate=0.05, num_leaves=15,
                         min_child_samples=5, verbose=-1, n_jobs=1, boost_from_average=False)
    ref.fit(X, hard.argmax(1))
    np.testing.assert_allclose(pred[:, ref.classes_], ref.predict_proba(Z), atol=1e-6)
    assert pred.shape == (30, 4) and np.allclose(pred.sum(1), 1)


def test_lightgbm_follows_soft_labels(case):
    X, P, Z = case
    (fit,), _ = fit_distribution("lightgbm", X, P, [X], params={"n_estimators": 150})
    mean = np.repeat(P.mean(0, keepdims=True), len(P), 0)
    ce = lambda q: -(P * np.log(np.clip(q, 1e-12, 1))).sum(1).mean()  # noqa: E731
    assert ce(fit) < ce(mean) - 0.2
