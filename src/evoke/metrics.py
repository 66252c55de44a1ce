"""Paper-exact evaluation metrics: plain functions on NumPy arrays.

Every head, report and user computes its numbers through these functions, so
each one states its definition (with the paper or code it follows), the shapes
and units of its inputs, and what it does with ties, zeros and empty inputs.

Conventions shared by every function here:

* inputs are anything :func:`numpy.asarray` accepts; they are read as float64
  (integer index arrays as int64);
* a shape mismatch, a NaN or an infinite value raises :class:`MetricInputError`
  (a :class:`ValueError`) whose message names the argument;
* when nothing can be scored (no samples, no pairs, no class with a positive)
  the result is ``nan``, never a made-up 0 or 1, so a report shows "n/a";
* scalar results are Python floats.

Tasks and the metrics they report (DESIGN.md, stage 6 "report"):

==================  ==========================================================
``vce``             :func:`top_k_accuracy` (k=3) and :func:`ldl_metrics`
``v2v``             :func:`pairwise_accuracy`, :func:`listwise_accuracy`
``eev``             :func:`mean_average_precision`,
                    :func:`global_average_precision`, :func:`mean_pearson`
``danmaku_ldl``     :func:`ldl_metrics`
regressions         :func:`mse`, :func:`pearson`
==================  ==========================================================

The chance levels the reports print beside them come from
:func:`random_top_k_baseline`, :func:`random_pairwise_baseline` and
:func:`random_listwise_baseline`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from evoke import EvokeError

__all__ = [
    "MetricInputError",
    "top_k_accuracy",
    "pairwise_accuracy",
    "listwise_accuracy",
    "average_precision",
    "per_class_average_precision",
    "mean_average_precision",
    "global_average_precision",
    "ldl_metrics",
    "ldl_metrics_per_sample",
    "LDL_LOWER_IS_BETTER",
    "LDL_HIGHER_IS_BETTER",
    "emodiversity",
    "pearson",
    "mean_pearson",
    "mse",
    "random_top_k_baseline",
    "top_k_label_sets",
    "TOP_K_TIES",
    "KL_EPS",
    "KL_RULES",
    "random_pairwise_baseline",
    "random_listwise_baseline",
]

LDL_LOWER_IS_BETTER = ("chebyshev", "clark", "canberra", "kl")
LDL_HIGHER_IS_BETTER = ("cosine", "intersection")


class MetricInputError(EvokeError, ValueError):
    """Bad input to a metric: shape mismatch, NaN/inf, out-of-range index or value."""


# --------------------------------------------------------------------------- #
# input checking
# --------------------------------------------------------------------------- #


def _floats(x: Any, name: str) -> np.ndarray:
    """``x`` as a float64 array; NaN or infinite values raise."""
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise MetricInputError(f"{name}: cannot be read as an array of numbers ({exc})") from None
    bad = ~np.isfinite(arr)
    if bad.any():
        n_nan = int(np.isnan(arr).sum())
        n_inf = int(bad.sum()) - n_nan
        raise MetricInputError(
            f"{name}: {n_nan} NaN and {n_inf} infinite value(s) out of {arr.size}; "
            "metrics take finite numbers only (drop or impute those entries first)"
        )
    return arr


def _same_shape(a: np.ndarray, b: np.ndarray, na: str, nb: str) -> None:
    if a.shape != b.shape:
        raise MetricInputError(f"{na} has shape {a.shape} but {nb} has shape {b.shape}; they must match")


def _matrix(x: Any, name: str, allow_1d: bool = True) -> np.ndarray:
    """(N, C) float matrix; a (C,) vector is one sample when ``allow_1d``."""
    arr = _floats(x, name)
    if arr.ndim == 1 and allow_1d:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise MetricInputError(f"{name}: expected a 2-D (N, C) array, got shape {arr.shape}")
    return arr


def _non_negative(arr: np.ndarray, name: str) -> None:
    if (arr < 0).any():
        raise MetricInputError(
            f"{name}: {int((arr < 0).sum())} negative value(s) (min {arr.min():g}); "
            "a distribution has entries >= 0"
        )


def _binary(x: Any, name: str) -> np.ndarray:
    arr = _floats(x, name)
    if not np.isin(arr, (0.0, 1.0)).all():
        bad = np.unique(arr[~np.isin(arr, (0.0, 1.0))])[:5]
        raise MetricInputError(f"{name}: labels must be 0 or 1, found e.g. {bad.tolist()}")
    return arr


def _indices(x: Any, name: str, n: int) -> np.ndarray:
    arr = np.asarray(x)
    if arr.size == 0:
        return arr.astype(np.int64)
    if arr.dtype.kind not in "iu":
        raise MetricInputError(f"{name}: video indices must be integers, got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    if arr.min() < 0 or arr.max() >= n:
        raise MetricInputError(
            f"{name}: indices must lie in [0, {n}) (there are {n} scores), found "
            f"min {arr.min()} and max {arr.max()}"
        )
    return arr


def _mean_or_nan(x: np.ndarray) -> float:
    return float(x.mean()) if x.size else float("nan")


# --------------------------------------------------------------------------- #
# VCE: top-k accuracy
# --------------------------------------------------------------------------- #


TOP_K_TIES = ("paper", "inclusive")


def _check_k(k: Any, c: int) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or (c and not 1 <= k <= c):
        raise MetricInputError(f"k must be an integer in [1, C={c}], got {k!r}")
    return int(k)


def top_k_label_sets(target: Any, k: int = 3, ties: str = "paper", label_top: Any = None) -> np.ndarray:
    """(N, C) bool: the label classes that count as "top k" for each row, under the rule ``ties``.

    * ``ties="paper"`` (default): exactly the k largest entries, as the VCE
      paper's code takes them (``argsort(y)[-3:]``); ties in the label are
      broken in taxonomy order (column order: the earlier emotion first, as
      the ``top1``-``top3`` columns of :mod:`evoke.labels.vce` do). Every row
      has exactly k such classes, so a label with fewer than k non-zero
      entries fills its set with zero entries, as ``argsort`` does;
    * ``ties="inclusive"``: every entry equal to or above the k-th largest
      value counts, but never a zero entry (a label (.4, .2, .2, .2, 0) has
      four top-3 emotions; (.7, .3, 0, 0, 0) has two);
    * ``label_top`` (N, k') integer class indices, e.g. an imported dataset's
      own ``topK`` list: used as given (entries < 0 mean "none"), whatever
      ``ties`` says.
    """
    t = _matrix(target, "target")
    _non_negative(t, "target")
    n, c = t.shape
    k = _check_k(k, c)
    mask = np.zeros((n, c), dtype=bool)
    if label_top is not None:
        top = np.asarray(label_top)
        top = top[None, :] if top.ndim == 1 else top
        if top.ndim != 2 or top.shape[0] != n or top.dtype.kind not in "iu":
            raise MetricInputError(f"label_top: expected an (N={n}, k) integer array, got shape {top.shape}")
        if top.size and top.max() >= c:
            raise MetricInputError(f"label_top: class index {top.max()} is out of range for C={c}")
        rows, cols = np.nonzero(top >= 0)
        mask[rows, top[rows, cols]] = True
        return mask
    if ties == "paper":
        order = np.argsort(-t, axis=1, kind="stable")[:, :k]
        mask[np.arange(n)[:, None], order] = True
    elif ties == "inclusive":
        if n:
            kth = np.partition(t, c - k, axis=1)[:, c - k]  # k-th largest per row
            mask = (t >= kth[:, None]) & (t > 0)
    else:
        raise MetricInputError(f"ties must be one of {', '.join(TOP_K_TIES)}, got {ties!r}")
    return mask


def top_k_accuracy(pred: Any, target: Any, k: int = 3, return_count: bool = False, ties: str = "paper",
                   label_top: Any = None):
    """Top-k accuracy of the VCE paper: is the predicted top emotion among the label's top k?

    Shapes: ``pred`` (N, C) scores of any scale (probabilities, logits) and
    ``target`` (N, C) label distributions (non-negative; they need not sum to
    1, only their order matters); a (C,) pair is one sample. Units: fraction
    of counted samples in [0, 1].

    Definition (Mazeika et al. 2022, "How Would The Viewer Feel?", VCE): a
    sample is correct when the argmax of the prediction is among the 3 largest
    entries of the label, ``argmax(pred) in argsort(y)[-3:]``. Random chance is k/C: 3/27 = 11.1%
    for the 27 VCE emotions (:func:`random_top_k_baseline`).

    Ties and zeros:

    * ties in the label: ``ties="paper"`` (default) takes exactly the k
      largest entries, ties broken in taxonomy (column) order, the earlier
      emotion first; ``ties="inclusive"`` counts every entry tied at the k-th
      value (never a zero one), which is independent of the class order but
      raises the chance level above k/C; ``label_top`` gives each row's top
      classes as an imported dataset lists them (see
      :func:`top_k_label_sets`);
    * zero label entries: under ``"paper"`` they count when the label has
      fewer than k non-zero entries (``argsort`` takes k entries whatever
      their value); under ``"inclusive"`` they never count;
    * ties in the prediction: ``numpy.argmax`` takes the first (lowest class
      index) of the tied maxima;
    * all-zero label rows carry no information and are excluded from the mean
      under every rule (``return_count=True`` also returns how many rows were
      counted);
    * no counted row (N = 0 or all rows zero): ``nan``.

    Returns the accuracy, or ``(accuracy, n_counted)`` with ``return_count``.
    """
    p = _matrix(pred, "pred")
    t = _matrix(target, "target")
    _same_shape(p, t, "pred", "target")
    sets = top_k_label_sets(t, k, ties, label_top)
    used = t.sum(axis=1) > 0
    if t.shape[0] == 0 or not used.any():
        return (float("nan"), 0) if return_count else float("nan")
    top = np.argmax(p[used], axis=1)
    hits = sets[used][np.arange(int(used.sum())), top]
    acc = float(hits.mean())
    return (acc, int(used.sum())) if return_count else acc


# --------------------------------------------------------------------------- #
# V2V: pairwise and listwise accuracy
# --------------------------------------------------------------------------- #


def pairwise_accuracy(scores: Any, pairs: Any) -> float:
    """Pairwise accuracy of a pleasantness score (V2V).

    Shapes: ``scores`` (N,) one score per video (higher = more pleasant);
    ``pairs`` (M, 2) integer indices into ``scores``. Row ``(i, j)`` says that
    video ``j`` is MORE pleasant than video ``i`` (the less pleasant one comes
    first). Units: fraction of pairs in [0, 1].

    A pair is correct when ``scores[j] > scores[i]`` strictly; a tie counts as
    wrong, so a constant score gets 0, not 0.5 (the random baseline is 0.5,
    :func:`random_pairwise_baseline`). A pair of a video with itself is
    rejected. No pairs (M = 0): ``nan``.
    """
    s = _floats(scores, "scores")
    if s.ndim != 1:
        raise MetricInputError(f"scores: expected a 1-D (N,) array, got shape {s.shape}")
    pr = np.asarray(pairs)
    if pr.size == 0:
        return float("nan")
    if pr.ndim != 2 or pr.shape[1] != 2:
        raise MetricInputError(
            f"pairs: expected an (M, 2) array of (less, more) pleasant indices, got shape {pr.shape}"
        )
    pr = _indices(pr, "pairs", len(s))
    if (pr[:, 0] == pr[:, 1]).any():
        same = int((pr[:, 0] == pr[:, 1]).sum())
        raise MetricInputError(f"pairs: {same} pair(s) compare a video with itself")
    return float((s[pr[:, 1]] > s[pr[:, 0]]).mean())


def _as_lists(lists: Any) -> list[np.ndarray]:
    if isinstance(lists, np.ndarray):
        if lists.size == 0:
            return []
        if lists.ndim != 2:
            raise MetricInputError(
                f"lists: expected an (M, n) array or a sequence of index sequences, got shape {lists.shape}"
            )
        return list(lists)
    return [np.asarray(x) for x in lists]


def listwise_accuracy(scores: Any, lists: Any) -> float:
    """Listwise accuracy (V2V): a list counts only when its whole order is right.

    Shapes: ``scores`` (N,) one score per video; ``lists`` a sequence of index
    sequences (or an (M, n) integer array), each ordered from the LEAST to the
    MOST pleasant video. Lengths may be mixed (V2V uses 3 and 4). Units:
    fraction of lists in [0, 1].

    A list is correct when the scores of its videos, in the list's order, are
    strictly increasing; any tie makes the list wrong. Random chance is 1/n!
    per list of length n (1/6 = 16.7% for n = 3, 1/24 = 4.2% for n = 4);
    :func:`random_listwise_baseline` averages it over the lists. Lists shorter
    than 2 or repeating a video are rejected. No lists: ``nan``.
    """
    s = _floats(scores, "scores")
    if s.ndim != 1:
        raise MetricInputError(f"scores: expected a 1-D (N,) array, got shape {s.shape}")
    rows = _as_lists(lists)
    if not rows:
        return float("nan")
    by_len: dict[int, list[np.ndarray]] = {}
    for m, row in enumerate(rows):
        if row.ndim != 1 or len(row) < 2:
            raise MetricInputError(f"lists[{m}]: a list needs at least 2 video indices, got {row.tolist()}")
        by_len.setdefault(len(row), []).append(row)
    correct = 0
    for length, group in by_len.items():
        idx = _indices(np.stack(group), f"lists (length {length})", len(s))
        srt = np.sort(idx, axis=1)
        if (srt[:, 1:] == srt[:, :-1]).any():
            raise MetricInputError(f"lists: a list of length {length} repeats a video index")
        v = s[idx]
        correct += int((np.diff(v, axis=1) > 0).all(axis=1).sum())
    return correct / len(rows)


# --------------------------------------------------------------------------- #
# EEV / YouTube-8M: AP, MAP, GAP
# --------------------------------------------------------------------------- #


def _expected_ap(scores: np.ndarray, positive: np.ndarray, num_positives: float) -> float:
    """Non-interpolated AP of one ranked list, averaged over the orders of tied scores.

    sum over ranks r of [item r positive] * precision@r, divided by
    ``num_positives``. Within a block of n tied scores holding p positives,
    behind N0 items of which P0 are positive, rank N0+t (t = 1..n) is positive
    with probability p/n and, given that, the expected number of positives
    among the block's first t-1 ranks is (t-1)(p-1)/(n-1) (hypergeometric), so
    its expected term is (p/n) * (P0 + 1 + (t-1)(p-1)/(n-1)) / (N0 + t), exact
    because precision is linear in that count.
    """
    if scores.size == 0:
        return 0.0
    order = np.argsort(-scores)  # the order inside a tie block does not matter here
    s = scores[order]
    y = positive[order].astype(np.float64)
    size = s.size
    new_block = np.empty(size, dtype=bool)
    new_block[0] = True
    np.not_equal(s[1:], s[:-1], out=new_block[1:])
    starts = np.flatnonzero(new_block)
    block = np.cumsum(new_block) - 1
    sizes = np.diff(np.append(starts, size))
    pos_in_block = np.add.reduceat(y, starts)
    pos_before = np.cumsum(pos_in_block) - pos_in_block
    n = sizes[block].astype(np.float64)
    p = pos_in_block[block]
    rank = np.arange(1, size + 1, dtype=np.float64)
    t = rank - starts[block]
    slope = np.where(n > 1, (p - 1) / np.maximum(n - 1, 1), 0.0)
    terms = (p / n) * (pos_before[block] + 1 + (t - 1) * slope) / rank
    return float(terms.sum() / num_positives)


def average_precision(scores: Any, labels: Any, num_positives: float | None = None) -> float:
    """Non-interpolated average precision of one ranked list (YouTube-8M's ``ap_at_n``, n=None).

    Shapes: ``scores`` (L,) and ``labels`` (L,) in {0, 1}. Units: [0, 1].

    Definition (YouTube-8M starter code, ``average_precision_calculator.py``):
    sort by score, descending; at each positive, take the precision of the
    list down to it; sum these precisions and divide by the number of
    positives, ``num_positives`` (default: the positives in ``labels``; GAP
    passes the positives of all videos, some of which are not in its list).

    Ties: YouTube-8M shuffles the list with ``random.seed(0)`` before a stable
    sort, so tied scores are ranked in one pseudo-random order. We return the
    exact mean of that AP over all orders of the tied items (deterministic, no
    seed; computed in closed form, see ``_expected_ap``). Without ties this is
    the plain AP and equals scikit-learn's ``average_precision_score``; with
    ties scikit-learn instead gives every tied positive the precision at the
    end of its block, which is the pessimistic end.

    No positive (``num_positives`` = 0): ``nan`` (YouTube-8M returns 0; its
    MAP skips such classes, as :func:`mean_average_precision` does).
    """
    s = _floats(scores, "scores")
    y = _binary(labels, "labels")
    _same_shape(s, y, "scores", "labels")
    if s.ndim != 1:
        raise MetricInputError(f"scores: expected a 1-D (L,) array, got shape {s.shape}")
    in_list = float(y.sum())
    if num_positives is None:
        num_positives = in_list
    elif num_positives < in_list:
        raise MetricInputError(
            f"num_positives={num_positives} is below the {in_list:g} positives in the list"
        )
    if num_positives <= 0:
        return float("nan")
    return _expected_ap(s, y > 0, float(num_positives))


def _top_k_mask(s: np.ndarray, top_k: int) -> np.ndarray:
    """(N, C) bool: the top_k classes of each row; ties go to the lower class index."""
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k <= 0:
        raise MetricInputError(f"top_k must be a positive integer, got {top_k!r}")
    n, c = s.shape
    k = min(int(top_k), c)
    cols = np.argsort(-s, axis=1, kind="stable")[:, :k]
    mask = np.zeros((n, c), dtype=bool)
    mask[np.arange(n)[:, None], cols] = True
    return mask


def _scores_labels(scores: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    s = _matrix(scores, "scores", allow_1d=False)
    y = _binary(labels, "labels")
    _same_shape(s, y, "scores", "labels")
    return s, y


def per_class_average_precision(scores: Any, labels: Any, top_k: int | None = None) -> np.ndarray:
    """AP of each class over the videos (one column of ``scores`` ranked at a time).

    Shapes: ``scores`` (N, C), ``labels`` (N, C) in {0, 1}; returns (C,), with
    ``nan`` for classes without a positive (those :func:`mean_average_precision`
    skips). Tie handling as in :func:`average_precision`.

    ``top_k=None`` (default) ranks every video in every class. ``top_k=K``
    reproduces YouTube-8M's ``eval.py``, which feeds each class only the
    videos that have that class among their K highest scores (its
    ``top_k_by_class``) while still dividing by all of the class's positives;
    when C <= K (EEV: 15 expressions, K = 20) both are the same. At the K-th
    place, tied scores go to the lower class index (YouTube-8M's
    ``argpartition`` leaves that choice to NumPy).
    """
    s, y = _scores_labels(scores, labels)
    mask = np.ones(s.shape, dtype=bool) if top_k is None else _top_k_mask(s, top_k)
    positives = y.sum(axis=0)
    out = np.full(s.shape[1], np.nan)
    for c in np.flatnonzero(positives > 0):
        rows = mask[:, c]
        out[c] = _expected_ap(s[rows, c], y[rows, c] > 0, float(positives[c]))
    return out


def mean_average_precision(scores: Any, labels: Any, top_k: int | None = None) -> float:
    """MAP as YouTube-8M's evaluation computes it: the mean per-class AP over classes with a positive.

    Shapes: ``scores`` (N, C) (any monotone scale: probabilities or logits),
    ``labels`` (N, C) in {0, 1}. Units: [0, 1].

    Each class's AP is :func:`average_precision` of that class's column (see
    :func:`per_class_average_precision` for ``top_k``); classes with no
    positive are skipped (YouTube-8M's ``filter_empty_classes``), so the mean
    is over the classes that have one. No class with a positive (or N = 0):
    ``nan``. The class-prior baseline (same scores for every video) gets, per
    class, the mean AP of a random order, which is a little above the class
    prevalence.
    """
    aps = per_class_average_precision(scores, labels, top_k=top_k)
    aps = aps[~np.isnan(aps)]
    return _mean_or_nan(aps)


def global_average_precision(scores: Any, labels: Any, top_k: int = 20) -> float:
    """GAP, YouTube-8M's global average precision over the top ``top_k`` predictions per video.

    Shapes: ``scores`` (N, C), ``labels`` (N, C) in {0, 1}. Units: [0, 1].

    Definition (YouTube-8M ``eval_util.calculate_gap``): keep each video's
    ``top_k`` highest-scoring classes (all C when C <= top_k), pool these
    (score, label) pairs of all videos into one list, sort it by score and
    compute :func:`average_precision` over it with the denominator set to the
    number of positive labels of ALL videos (``labels.sum()``), so positives
    that fall outside a video's top_k lower the GAP. Ties in the pooled list
    as in :func:`average_precision`; ties at the top_k cut go to the lower
    class index. No positive label at all: ``nan`` (YouTube-8M: 0).
    """
    s, y = _scores_labels(scores, labels)
    total = float(y.sum())
    if total == 0:
        return float("nan")
    mask = _top_k_mask(s, top_k)
    return _expected_ap(s[mask], y[mask] > 0, total)


# --------------------------------------------------------------------------- #
# Label distribution learning
# --------------------------------------------------------------------------- #


def _distributions(x: Any, name: str, normalize: bool) -> np.ndarray:
    d = _matrix(x, name)
    _non_negative(d, name)
    sums = d.sum(axis=1)
    if normalize:
        if (sums == 0).any():
            raise MetricInputError(f"{name}: {int((sums == 0).sum())} all-zero row(s) cannot be normalised")
        return d / sums[:, None]
    off = np.abs(sums - 1) > 1e-4
    if off.any():
        raise MetricInputError(
            f"{name}: {int(off.sum())} row(s) do not sum to 1 (e.g. {sums[off][0]:.6g}); "
            "pass normalize=True to divide each row by its sum"
        )
    return d


KL_EPS = float(np.finfo(np.float64).eps)  # 2.22e-16, PyLDL's EPS
KL_RULES = ("pyldl", "floor")


def ldl_metrics_per_sample(
    pred: Any, target: Any, eps: float = KL_EPS, normalize: bool = False, kl: str = "pyldl"
) -> dict[str, np.ndarray]:
    """The six LDL measures of each sample; see :func:`ldl_metrics` for definitions. Returns (N,) arrays."""
    q = _distributions(pred, "pred", normalize)
    p = _distributions(target, "target", normalize)
    _same_shape(q, p, "pred", "target")
    if not eps > 0:
        raise MetricInputError(f"eps must be > 0, got {eps!r}")
    diff = np.abs(p - q)
    total = p + q
    ratio = np.divide(diff, total, out=np.zeros_like(diff), where=total > 0)  # 0/0 terms are 0
    if kl == "pyldl":
        pc, qc = np.clip(p, eps, 1.0), np.clip(q, eps, 1.0)
        kl_terms = pc * (np.log(pc) - np.log(qc))
    elif kl == "floor":
        kl_terms = p * np.log(np.divide(p, np.maximum(q, eps), out=np.ones_like(p), where=p > 0))
    else:
        raise MetricInputError(f"kl must be one of {', '.join(KL_RULES)}, got {kl!r}")
    norms = np.linalg.norm(p, axis=1) * np.linalg.norm(q, axis=1)
    return {
        "chebyshev": diff.max(axis=1) if diff.shape[1] else np.zeros(len(diff)),
        "clark": np.sqrt((ratio**2).sum(axis=1)),
        "canberra": ratio.sum(axis=1),
        "kl": kl_terms.sum(axis=1),
        "cosine": (p * q).sum(axis=1) / norms,
        "intersection": np.minimum(p, q).sum(axis=1),
    }


def ldl_metrics(pred: Any, target: Any, eps: float = KL_EPS, normalize: bool = False,
                kl: str = "pyldl") -> dict[str, float]:
    """The six label-distribution-learning measures of Geng (2016), averaged over samples.

    Shapes: ``pred`` (N, C) predicted distributions Q, ``target`` (N, C) true
    distributions P (a (C,) pair is one sample); rows must be non-negative and
    sum to 1 (within 1e-4) unless ``normalize=True``, which divides each row
    by its sum (all-zero rows then raise). Returns a dict of floats, each the
    mean over the N samples (``nan`` for N = 0). Definitions (X. Geng, "Label
    Distribution Learning", IEEE TKDE 2016, Table 2), per sample, sums over the
    C labels j:

    * chebyshev = max_j |P_j - Q_j| (lower is better)
    * clark = sqrt(sum_j (P_j - Q_j)^2 / (P_j + Q_j)^2) (lower is better)
    * canberra = sum_j |P_j - Q_j| / (P_j + Q_j) (lower is better)
    * kl = sum_j P_j ln(P_j / Q_j), i.e. KL(target || pred) (lower is better)
    * cosine = sum_j P_j Q_j / (||P||_2 ||Q||_2) (higher is better)
    * intersection = sum_j min(P_j, Q_j) (higher is better)

    Zero handling:

    * Clark and Canberra: a term with P_j = Q_j = 0 is 0/0 and counts as 0
      (the two distributions agree there); if only one is 0 the term is 1.
      Clark lies in [0, sqrt(C)], Canberra in [0, C]. (PyLDL clips both
      distributions to [eps, 1] here too, which gives 0 and 1 - 2 eps / P_j
      for those terms: the same numbers to 1e-15 for any P_j above 1e-3.)
    * KL, ``kl="pyldl"`` (default): as PyLDL (the field's LDL library,
      ``pyldl.algorithms.utils.kl_divergence``) computes it, both P and Q are
      clipped to [``eps``, 1] with ``eps`` = float64 machine epsilon
      (2.22e-16), no renormalisation, then sum_j P_j (ln P_j - ln Q_j). A
      prediction that puts 0 on a true label costs P_j ln(P_j / 2.22e-16)
      (a one-hot baseline scores far worse than with a 1e-12 floor); a zero
      label entry contributes eps (ln eps - ln Q_j), below 1e-14.
      ``kl="floor"``: terms with P_j = 0 are exactly 0 (0 ln 0 = 0) and only
      Q is floored at ``eps``. Outputs of a softmax are never 0, so for them
      both rules give the exact KL up to 1e-14;
    * identical distributions give 0 for the four distances and 1 for cosine
      and intersection.

    ``LDL_LOWER_IS_BETTER`` / ``LDL_HIGHER_IS_BETTER`` list the keys by direction.
    """
    per = ldl_metrics_per_sample(pred, target, eps=eps, normalize=normalize, kl=kl)
    return {name: _mean_or_nan(values) for name, values in per.items()}


def emodiversity(dist: Any):
    """Emodiversity: the perplexity exp(-sum_j p_j ln p_j) of an emotion distribution.

    Shapes: (C,) gives a float, (N, C) gives an (N,) array. Entries must be
    non-negative; each row is divided by its sum first, so counts work too.
    Units: "effective number of emotions", from 1 (one emotion) to C (uniform).
    Zero entries contribute 0 (0 ln 0 = 0). An all-zero row has no
    distribution and gives ``nan`` (use ``numpy.nanmean`` over rows).
    """
    d = _floats(dist, "dist")
    single = d.ndim == 1
    d = _matrix(d, "dist")
    _non_negative(d, "dist")
    sums = d.sum(axis=1)
    p = np.divide(d, sums[:, None], out=np.zeros_like(d), where=sums[:, None] > 0)
    plogp = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)
    out = np.exp(-plogp.sum(axis=1))
    out[sums == 0] = np.nan
    return float(out[0]) if single else out


# --------------------------------------------------------------------------- #
# Regression: Pearson r, MSE
# --------------------------------------------------------------------------- #


def _pearson_along(a: np.ndarray, b: np.ndarray, axis: int) -> np.ndarray:
    n = a.shape[axis]
    if n < 2:
        return np.full(np.delete(a.shape, axis), np.nan) if a.ndim > 1 else np.array(np.nan)
    const = (np.ptp(a, axis=axis) == 0) | (np.ptp(b, axis=axis) == 0)
    am = a - a.mean(axis=axis, keepdims=True)
    bm = b - b.mean(axis=axis, keepdims=True)
    num = (am * bm).sum(axis=axis)
    den = np.sqrt((am * am).sum(axis=axis) * (bm * bm).sum(axis=axis))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.clip(num / den, -1.0, 1.0)
    bad = const | ~(den > 0)
    return np.where(bad, np.nan, r)


def pearson(a: Any, b: Any, axis: int | None = None):
    """Pearson correlation coefficient r.

    Shapes: ``a`` and ``b`` of the same shape. ``axis=None`` flattens both and
    returns one float; ``axis=0`` on (T, C) inputs returns the (C,) r of each
    column (each expression over time), ``axis=1`` the r of each row.
    Definition: r = sum (a - mean a)(b - mean b) / sqrt(sum (a - mean a)^2
    sum (b - mean b)^2), in [-1, 1], the same value as ``scipy.stats.pearsonr``.
    A constant input (all values equal) or fewer than 2 values gives ``nan``
    (r is undefined there), without a warning.
    """
    x = _floats(a, "a")
    y = _floats(b, "b")
    _same_shape(x, y, "a", "b")
    if axis is None:
        return float(_pearson_along(x.ravel(), y.ravel(), 0))
    if not -x.ndim <= axis < x.ndim:
        raise MetricInputError(f"axis {axis} is out of range for {x.ndim}-D inputs")
    r = _pearson_along(x, y, axis)
    return float(r) if r.ndim == 0 else r


def mean_pearson(a: Any, b: Any, groups: Any = None) -> float:
    """Mean Pearson r per expression, the EEV 2021 challenge metric.

    Shapes: ``a`` (predictions) and ``b`` (labels), both (T, C): T time steps
    (rows, possibly from many videos), C expressions; a (T,) pair is one
    expression. Units: r in [-1, 1].

    * ``groups=None``: r of each column over all T rows, averaged over the
      columns;
    * ``groups`` (T,) video ids: r of each expression within each video,
      averaged over the expressions of the video, then over the videos (the
      2021 challenge's "correlation for each expression in each video,
      averaged over expressions and videos").

    Constant columns (in a or b, within the video when grouped) have no r
    (``nan``) and are skipped in the means; a video with no defined r is
    skipped. Nothing defined: ``nan``.
    """
    x = _floats(a, "a")
    y = _floats(b, "b")
    _same_shape(x, y, "a", "b")
    if x.ndim == 1:
        x, y = x[:, None], y[:, None]
    if x.ndim != 2:
        raise MetricInputError(f"a: expected a (T, C) or (T,) array, got shape {x.shape}")
    if groups is None:
        r = _pearson_along(x, y, 0)
        return _mean_or_nan(r[~np.isnan(r)])
    g = np.asarray(groups)
    if g.shape != (x.shape[0],):
        raise MetricInputError(
            f"groups has shape {g.shape} but a has {x.shape[0]} rows; one group id per row"
        )
    per_video = []
    for key in np.unique(g):
        rows = g == key
        r = _pearson_along(x[rows], y[rows], 0)
        r = r[~np.isnan(r)]
        if r.size:
            per_video.append(r.mean())
    return _mean_or_nan(np.asarray(per_video))


def mse(a: Any, b: Any, axis: int | None = None):
    """Mean squared error mean((a - b)^2), in the squared units of the inputs.

    Shapes: ``a`` and ``b`` of the same shape; ``axis=None`` averages over all
    entries (a float), an integer axis averages along it (an array). Empty
    input: ``nan``.
    """
    x = _floats(a, "a")
    y = _floats(b, "b")
    _same_shape(x, y, "a", "b")
    if axis is None:
        return _mean_or_nan((x - y).ravel() ** 2)
    if not -x.ndim <= axis < x.ndim:
        raise MetricInputError(f"axis {axis} is out of range for {x.ndim}-D inputs")
    if x.shape[axis] == 0:
        return np.full(np.delete(x.shape, axis), np.nan)
    return ((x - y) ** 2).mean(axis=axis)


# --------------------------------------------------------------------------- #
# Chance levels
# --------------------------------------------------------------------------- #


def random_top_k_baseline(num_classes: int = 27, k: int = 3, target: Any = None, ties: str = "paper",
                          label_top: Any = None) -> float:
    """Chance top-k accuracy of a uniformly random predicted class, under the tie rule in force.

    Without ``target`` (or with ``ties="paper"``, where every row has exactly
    k top classes): k / C, 3/27 = 0.111 for VCE. With ``target`` (N, C) and
    ``ties="inclusive"`` or ``label_top``: the mean over the counted
    (non-all-zero) rows of (number of classes counted as top k) / C, which is
    above k / C when labels tie at the k-th place and below it when they have
    fewer than k non-zero entries. No counted row: ``nan``.
    """
    if num_classes < 1 or not 1 <= k <= num_classes:
        raise MetricInputError(f"need 1 <= k <= num_classes, got k={k}, num_classes={num_classes}")
    if target is None or (ties == "paper" and label_top is None):
        if ties not in TOP_K_TIES:
            raise MetricInputError(f"ties must be one of {', '.join(TOP_K_TIES)}, got {ties!r}")
        return k / num_classes
    t = _matrix(target, "target")
    if t.shape[1] != num_classes:
        raise MetricInputError(f"target has {t.shape[1]} classes but num_classes={num_classes}")
    used = t.sum(axis=1) > 0
    if not used.any():
        return float("nan")
    sets = top_k_label_sets(t, k, ties, label_top)
    return float(sets[used].sum(axis=1).mean() / num_classes)


def random_pairwise_baseline() -> float:
    """Chance pairwise accuracy: 0.5 (a random score orders each pair right half the time)."""
    return 0.5


def random_listwise_baseline(lists_or_lengths: Iterable[int] | Iterable[Sequence[int]]) -> float:
    """Chance listwise accuracy: the mean over lists of 1/n! for a list of length n.

    Takes the list lengths (e.g. ``[3, 3, 4]``) or the lists themselves, as
    given to :func:`listwise_accuracy`. 1/3! = 0.167 (about 17%) for lists of
    3, 1/4! = 0.042 for lists of 4. No lists: ``nan``.
    """
    lengths = []
    for item in lists_or_lengths:
        n = int(item) if np.ndim(item) == 0 else len(item)
        if n < 1:
            raise MetricInputError(f"list length must be >= 1, got {n}")
        lengths.append(n)
    if not lengths:
        return float("nan")
    return float(np.mean([1.0 / math.factorial(n) for n in lengths]))
