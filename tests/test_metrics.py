"""evoke.metrics against independent computations: scikit-learn, SciPy, loops, hand cases.

Every metric is checked on random inputs against a computation written
differently (library or plain Python loops) and on small hand-made cases with
ties and zeros. All tests are small and fast (well under a second each).
"""

from __future__ import annotations

import itertools
import math
import random

import numpy as np
import pytest
from scipy import stats
from scipy.spatial import distance
from sklearn.metrics import average_precision_score, mean_squared_error

from evoke import metrics as M
from evoke.metrics import MetricInputError


@pytest.fixture
def rng():
    return np.random.default_rng(20240611)


# --------------------------------------------------------------------------- #
# top-k accuracy (VCE)
# --------------------------------------------------------------------------- #


def _top_k_loop(pred, target, k):
    """Plain-Python top-k: the argmax class is correct when fewer than k label
    entries are strictly larger than its label value, and that value is > 0."""
    hits, used = 0, 0
    for p_row, t_row in zip(pred.tolist(), target.tolist()):
        if sum(t_row) == 0:
            continue
        used += 1
        best = max(range(len(p_row)), key=lambda j: (p_row[j], -j))  # first maximum
        v = t_row[best]
        if v > 0 and sum(1 for x in t_row if x > v) < k:
            hits += 1
    return hits / used if used else float("nan"), used


def test_top_k_random_against_loop(rng):
    for trial in range(5):
        n, c = 300, 27
        pred = rng.random((n, c))
        # rounded labels: plenty of ties and zeros
        target = np.round(rng.dirichlet(np.full(c, 0.3), size=n), 1)
        target[:7] = 0.0  # all-zero rows
        for k in (1, 3, 5):
            acc, used = M.top_k_accuracy(pred, target, k=k, return_count=True, ties="inclusive")
            want, want_used = _top_k_loop(pred, target, k)
            assert used == want_used == n - 7
            assert acc == pytest.approx(want, abs=1e-12)


def _top_k_paper_loop(pred, target, k):
    """Plain-Python paper rule: the k first classes after sorting the label by (-value, index)."""
    hits, used = 0, 0
    for p_row, t_row in zip(pred.tolist(), target.tolist()):
        if sum(t_row) == 0:
            continue
        used += 1
        best = max(range(len(p_row)), key=lambda j: (p_row[j], -j))
        top = sorted(range(len(t_row)), key=lambda j: (-t_row[j], j))[:k]
        hits += best in top
    return hits / used if used else float("nan"), used


def test_top_k_paper_rule_random_against_loop(rng):
    for trial in range(3):
        n, c = 300, 27
        pred = rng.random((n, c))
        target = np.round(rng.dirichlet(np.full(c, 0.3), size=n), 1)  # ties and zeros
        target[:5] = 0.0
        for k in (1, 3, 5):
            acc, used = M.top_k_accuracy(pred, target, k=k, return_count=True)  # paper is the default
            want, want_used = _top_k_paper_loop(pred, target, k)
            assert used == want_used == n - 5
            assert acc == pytest.approx(want, abs=1e-12)


def test_top_k_paper_rule_breaks_label_ties_in_taxonomy_order():
    target = np.array([[0.4, 0.2, 0.2, 0.2, 0.0]] * 3 + [[0.7, 0.3, 0.0, 0.0, 0.0]] * 2)
    pred = np.zeros((5, 5))
    pred[0, 2] = pred[1, 3] = pred[2, 0] = pred[3, 2] = pred[4, 4] = 1.0
    # paper: top-3 of row 0-2 is {0, 1, 2} (class 3 loses the tie to the earlier emotions);
    # rows 3-4 have two non-zero entries, so argsort's third is class 2 (the first zero)
    per_row = [1, 0, 1, 1, 0]
    assert M.top_k_accuracy(pred, target, k=3) == pytest.approx(np.mean(per_row))
    # inclusive: class 3 ties at the 3rd value and counts; zero entries never count
    assert M.top_k_accuracy(pred, target, k=3, ties="inclusive") == pytest.approx(np.mean([1, 1, 1, 0, 0]))
    # an imported topK is used as given (-1 = none)
    given = np.array([[3, 0, -1]] * 3 + [[0, 1, -1]] * 2)
    assert M.top_k_accuracy(pred, target, k=3, label_top=given) == pytest.approx(np.mean([0, 1, 1, 0, 0]))
    with pytest.raises(ValueError, match="ties must be"):
        M.top_k_accuracy(pred, target, ties="loose")


def test_top_k_chance_baseline_under_each_rule(rng):
    """The baseline equals the exact mean accuracy of predicting each class in turn."""
    n, c, k = 200, 27, 3
    target = np.round(rng.dirichlet(np.full(c, 0.2), size=n), 1)
    target[:4] = 0.0
    given = np.where(rng.random((n, k)) < 0.8, rng.integers(0, c, (n, k)), -1)
    for kwargs in ({"ties": "paper"}, {"ties": "inclusive"}, {"label_top": given}):
        accs = [M.top_k_accuracy(np.eye(c)[[j] * n], target, k=k, **kwargs) for j in range(c)]
        assert M.random_top_k_baseline(c, k, target=target, **kwargs) == pytest.approx(np.mean(accs), abs=1e-12)
    assert M.random_top_k_baseline(c, k, target=target) == pytest.approx(3 / 27)
    # these labels tie a lot at the third place: the inclusive rule's chance is above k / C
    assert M.random_top_k_baseline(c, k, target=target, ties="inclusive") > 3 / 27


def test_top_k_hand_cases_with_ties_and_zeros():
    target = np.array(
        [
            [0.4, 0.2, 0.2, 0.2, 0.0],  # classes 1, 2, 3 tie at the 3rd place: all top-3
            [0.4, 0.2, 0.2, 0.2, 0.0],
            [0.7, 0.3, 0.0, 0.0, 0.0],  # only two nonzero: zeros are never top-3
            [0.7, 0.3, 0.0, 0.0, 0.0],
            [0.0, 0.0, 0.0, 0.0, 0.0],  # excluded
            [0.1, 0.2, 0.3, 0.4, 0.5],
        ]
    )
    pred = np.array(
        [
            [0, 0, 0, 9, 0],  # class 3, tied for 3rd place -> hit
            [0, 0, 0, 0, 9],  # class 4, label 0 -> miss
            [0, 9, 0, 0, 0],  # class 1 (0.3) -> hit
            [0, 0, 9, 0, 0],  # class 2, label 0 tied with the "3rd largest" 0 -> miss
            [9, 0, 0, 0, 0],  # excluded row
            [5, 5, 5, 0, 0],  # tie in pred: argmax is class 0 (0.1, 5th) -> miss
        ],
        dtype=float,
    )
    acc, used = M.top_k_accuracy(pred, target, k=3, return_count=True, ties="inclusive")
    assert used == 5
    assert acc == pytest.approx(2 / 5)
    assert M.top_k_accuracy(pred, target, k=3, ties="inclusive") == pytest.approx(0.4)
    # a single (C,) pair
    assert M.top_k_accuracy([0, 0, 1.0], [0.5, 0.1, 0.4], k=1) == 0.0
    assert M.top_k_accuracy([0, 0, 1.0], [0.5, 0.1, 0.4], k=2) == 1.0


def test_top_k_empty_and_all_zero_rows():
    assert math.isnan(M.top_k_accuracy(np.zeros((0, 27)), np.zeros((0, 27))))
    acc, used = M.top_k_accuracy(np.ones((4, 5)), np.zeros((4, 5)), return_count=True)
    assert math.isnan(acc) and used == 0


def test_top_k_chance_level_is_k_over_c(rng):
    n, c = 20000, 27
    pred = rng.random((n, c))
    target = rng.dirichlet(np.ones(c), size=n)  # continuous: no ties
    assert M.random_top_k_baseline(27, 3) == pytest.approx(0.1111, abs=1e-4)
    assert M.top_k_accuracy(pred, target, k=3) == pytest.approx(3 / 27, abs=0.01)


def test_top_k_bad_input():
    with pytest.raises(ValueError, match="k must be"):
        M.top_k_accuracy(np.ones((2, 3)), np.ones((2, 3)), k=4)
    with pytest.raises(ValueError, match="k must be"):
        M.top_k_accuracy(np.ones((2, 3)), np.ones((2, 3)), k=0)
    with pytest.raises(ValueError, match="negative"):
        M.top_k_accuracy(np.ones((2, 3)), -np.ones((2, 3)))


# --------------------------------------------------------------------------- #
# pairwise and listwise accuracy (V2V)
# --------------------------------------------------------------------------- #


def test_pairwise_hand_case_ties_wrong():
    scores = [0.1, 0.5, 0.5, 0.9]
    pairs = [(0, 1), (1, 2), (3, 0), (0, 3), (2, 1)]  # (less, more pleasant)
    # correct: (0,1) yes; (1,2) tie -> wrong; (3,0) wrong; (0,3) yes; (2,1) tie -> wrong
    assert M.pairwise_accuracy(scores, pairs) == pytest.approx(2 / 5)
    assert M.pairwise_accuracy(np.zeros(4), pairs) == 0.0  # constant score: all ties
    assert math.isnan(M.pairwise_accuracy(scores, np.zeros((0, 2), dtype=int)))
    assert M.random_pairwise_baseline() == 0.5


def test_pairwise_random_against_loop(rng):
    scores = np.round(rng.normal(size=200), 1)  # ties included
    pairs = rng.integers(0, 200, size=(1000, 2))
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    want = sum(1 for i, j in pairs.tolist() if scores[j] > scores[i]) / len(pairs)
    assert M.pairwise_accuracy(scores, pairs) == pytest.approx(want)


def test_pairwise_bad_input():
    with pytest.raises(ValueError, match="itself"):
        M.pairwise_accuracy([1, 2], [(0, 0)])
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        M.pairwise_accuracy([1, 2], [(0, 2)])
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        M.pairwise_accuracy([1, 2], [(-1, 0)])
    with pytest.raises(ValueError, match="integers"):
        M.pairwise_accuracy([1, 2], [(0.0, 1.0)])
    with pytest.raises(ValueError, match=r"\(M, 2\)"):
        M.pairwise_accuracy([1, 2, 3], [(0, 1, 2)])


def test_listwise_hand_cases_mixed_lengths():
    scores = [0.0, 1.0, 2.0, 3.0, 2.0]
    lists = [
        [0, 1, 2],  # increasing -> right
        [0, 1, 2, 3],  # right
        [0, 2, 1],  # one swap -> wrong
        [3, 2, 1, 0],  # reversed -> wrong
        [1, 2, 4],  # 2.0 then 2.0: tie -> wrong
        [1, 4, 3],  # 1, 2, 3 -> right
    ]
    assert M.listwise_accuracy(scores, lists) == pytest.approx(3 / 6)
    assert M.listwise_accuracy(scores, np.array([[0, 1, 2], [2, 1, 0]])) == 0.5
    assert math.isnan(M.listwise_accuracy(scores, []))


def test_listwise_random_against_loop_and_chance(rng):
    n = 60
    scores = rng.random(n)
    picks = np.argsort(rng.random((20000, n)), axis=1)  # each row a random order of the videos
    lists = [row[: 3 + (m % 2)].tolist() for m, row in enumerate(picks)]  # lengths 3 and 4
    right = sum(all(scores[a] < scores[b] for a, b in itertools.pairwise(lst)) for lst in lists)
    want = right / len(lists)
    got = M.listwise_accuracy(scores, lists)
    assert got == pytest.approx(want)
    # a random score gets the chance level 1/n! on average
    assert got == pytest.approx(M.random_listwise_baseline(lists), abs=0.01)


def test_random_listwise_baseline():
    assert M.random_listwise_baseline([3]) == pytest.approx(1 / 6)
    assert M.random_listwise_baseline([3, 4]) == pytest.approx((1 / 6 + 1 / 24) / 2)
    assert M.random_listwise_baseline([[0, 1, 2], [4, 5, 6, 7]]) == pytest.approx((1 / 6 + 1 / 24) / 2)
    assert round(M.random_listwise_baseline([3] * 10), 2) == 0.17
    assert math.isnan(M.random_listwise_baseline([]))


def test_listwise_bad_input():
    with pytest.raises(ValueError, match="repeats"):
        M.listwise_accuracy([1, 2, 3], [[0, 1, 1]])
    with pytest.raises(ValueError, match="at least 2"):
        M.listwise_accuracy([1, 2, 3], [[0]])
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        M.listwise_accuracy([1, 2, 3], [[0, 1, 3]])


# --------------------------------------------------------------------------- #
# AP, MAP, GAP (YouTube-8M)
# --------------------------------------------------------------------------- #


def _ap_loop(scores_in_order, labels_in_order, num_positives):
    """AP of a list already in ranked order: YouTube-8M's ap_at_n loop."""
    ap, poscount = 0.0, 0
    for i, y in enumerate(labels_in_order):
        if y > 0:
            poscount += 1
            ap += poscount / (i + 1) / num_positives
    return ap


def _yt8m_ap(predictions, actuals, total_num_positives=None):
    """YouTube-8M's AveragePrecisionCalculator.ap_at_n(n=None), re-typed: seeded shuffle, stable sort, loop."""
    predictions, actuals = list(predictions), list(actuals)
    r = random.Random(0)
    idx = r.sample(range(len(predictions)), len(predictions))
    predictions = [predictions[i] for i in idx]
    actuals = [actuals[i] for i in idx]
    order = sorted(range(len(predictions)), key=lambda k: predictions[k], reverse=True)
    numpos = sum(1 for a in actuals if a > 0) if total_num_positives is None else total_num_positives
    if numpos == 0:
        return 0.0
    return _ap_loop(None, [actuals[i] for i in order], numpos)


def _ap_over_all_tie_orders(scores, labels, num_positives=None):
    """Mean AP over every order of the tied scores, by enumeration."""
    scores, labels = list(scores), list(labels)
    numpos = sum(labels) if num_positives is None else num_positives
    blocks = []
    for value in sorted(set(scores), reverse=True):
        blocks.append([y for s, y in zip(scores, labels) if s == value])
    total, count = 0.0, 0
    for combo in itertools.product(*[list(itertools.permutations(b)) for b in blocks]):
        total += _ap_loop(None, [y for block in combo for y in block], numpos)
        count += 1
    return total / count


def test_ap_matches_sklearn_without_ties(rng):
    for trial in range(20):
        n = int(rng.integers(2, 400))
        scores = rng.random(n)
        labels = (rng.random(n) < rng.uniform(0.05, 0.6)).astype(int)
        if labels.sum() == 0:
            labels[0] = 1
        want = average_precision_score(labels, scores)
        assert M.average_precision(scores, labels) == pytest.approx(want, abs=1e-12)
        assert M.average_precision(scores, labels) == pytest.approx(_yt8m_ap(scores, labels), abs=1e-12)


def test_ap_ties_hand_case():
    scores = [0.9, 0.5, 0.5, 0.1]
    labels = [0, 1, 0, 1]
    # the positive of the tied pair is at rank 2 or 3 with equal chance:
    # (1/2 + 2/4)/2 = 1/2 and (1/3 + 2/4)/2 = 5/12, mean 11/24
    assert M.average_precision(scores, labels) == pytest.approx(11 / 24)
    # scikit-learn gives the tied block the precision at its end (pessimistic): 5/12
    assert average_precision_score(labels, scores) == pytest.approx(5 / 12)
    # YouTube-8M's seeded shuffle picks one of the two orders
    assert _yt8m_ap(scores, labels) in (pytest.approx(0.5), pytest.approx(5 / 12))


def test_ap_ties_against_enumeration(rng):
    for trial in range(30):
        n = int(rng.integers(1, 9))
        scores = rng.integers(0, 3, size=n).astype(float)  # heavy ties
        labels = rng.integers(0, 2, size=n)
        if labels.sum() == 0:
            labels[0] = 1
        want = _ap_over_all_tie_orders(scores, labels)
        assert M.average_precision(scores, labels) == pytest.approx(want, abs=1e-12)
        extra = int(rng.integers(0, 3))  # a denominator with positives outside the list
        assert M.average_precision(scores, labels, num_positives=labels.sum() + extra) == pytest.approx(
            _ap_over_all_tie_orders(scores, labels, labels.sum() + extra), abs=1e-12
        )


def test_ap_constant_scores_is_mean_over_random_orders():
    n, p = 7, 3
    labels = [1] * p + [0] * (n - p)
    want = _ap_over_all_tie_orders([0.5] * n, labels)
    assert M.average_precision([0.5] * n, labels) == pytest.approx(want)
    assert want > p / n  # a little above the prevalence


def test_ap_no_positives_and_bad_labels():
    assert math.isnan(M.average_precision([0.1, 0.2], [0, 0]))
    with pytest.raises(ValueError, match="0 or 1"):
        M.average_precision([0.1, 0.2], [0, 2])
    with pytest.raises(ValueError, match="num_positives"):
        M.average_precision([0.1, 0.2], [1, 1], num_positives=1)


def test_map_matches_sklearn_per_class(rng):
    n, c = 300, 15
    scores = rng.random((n, c))
    labels = (rng.random((n, c)) < 0.2).astype(int)
    labels[:, 4] = 0  # a class with no positive: skipped
    per = M.per_class_average_precision(scores, labels)
    assert np.isnan(per[4])
    for j in range(c):
        if j != 4:
            assert per[j] == pytest.approx(average_precision_score(labels[:, j], scores[:, j]), abs=1e-12)
    want = np.mean([average_precision_score(labels[:, j], scores[:, j]) for j in range(c) if j != 4])
    assert M.mean_average_precision(scores, labels) == pytest.approx(want, abs=1e-12)
    # C <= top_k: YouTube-8M's top-k variant ranks every video, same numbers
    assert M.mean_average_precision(scores, labels, top_k=20) == pytest.approx(want, abs=1e-12)


def test_map_top_k_variant_against_loop(rng):
    n, c, k = 120, 30, 5
    scores = rng.random((n, c))
    labels = (rng.random((n, c)) < 0.1).astype(int)
    aps = []
    for j in range(c):
        positives = labels[:, j].sum()
        if positives == 0:
            continue
        kept = [
            (scores[v, j], labels[v, j])
            for v in range(n)
            if j in sorted(range(c), key=lambda q: -scores[v, q])[:k]
        ]
        kept.sort(key=lambda t: -t[0])
        aps.append(_ap_loop(None, [y for _, y in kept], positives))
    assert M.mean_average_precision(scores, labels, top_k=k) == pytest.approx(np.mean(aps), abs=1e-12)


def test_map_empty_and_no_positives():
    assert math.isnan(M.mean_average_precision(np.zeros((0, 3)), np.zeros((0, 3))))
    assert math.isnan(M.mean_average_precision(np.ones((4, 3)), np.zeros((4, 3))))


def _gap_loop(scores, labels, top_k):
    """GAP re-implemented the way YouTube-8M's eval_util does it, with Python loops."""
    pooled = []
    for s_row, y_row in zip(scores.tolist(), labels.tolist()):
        best = sorted(range(len(s_row)), key=lambda j: s_row[j], reverse=True)[:top_k]
        pooled.extend((s_row[j], y_row[j]) for j in best)
    total = sum(sum(row) for row in labels.tolist())
    pooled.sort(key=lambda t: t[0], reverse=True)
    return _yt8m_ap([s for s, _ in pooled], [y for _, y in pooled], total)


def test_gap_random_against_loop(rng):
    for n, c, top_k in [(50, 40, 20), (80, 15, 20), (60, 10, 3), (30, 5, 1)]:
        scores = rng.random((n, c))
        labels = (rng.random((n, c)) < 0.15).astype(int)
        assert M.global_average_precision(scores, labels, top_k=top_k) == pytest.approx(
            _gap_loop(scores, labels, top_k), abs=1e-12
        )


def test_gap_hand_case():
    scores = np.array([[0.9, 0.2, 0.1], [0.8, 0.7, 0.3]])
    labels = np.array([[1, 0, 1], [0, 1, 0]])
    # top 2 per video: (0.9,1) (0.2,0) | (0.8,0) (0.7,1); pooled 0.9 1, 0.8 0, 0.7 1, 0.2 0
    # positives at ranks 1 and 3; total positives 3 (one outside the top 2)
    assert M.global_average_precision(scores, labels, top_k=2) == pytest.approx((1 / 1 + 2 / 3) / 3)
    # top_k >= C: everything pooled, the third positive at rank 6 of 6
    assert M.global_average_precision(scores, labels, top_k=20) == pytest.approx((1 + 2 / 3 + 3 / 6) / 3)
    assert math.isnan(M.global_average_precision(scores, np.zeros_like(labels)))


def test_gap_ties_in_pooled_list_against_enumeration():
    scores = np.array([[0.5, 0.5, 0.1], [0.5, 0.3, 0.3]])
    labels = np.array([[0, 1, 0], [1, 0, 1]])
    # top 2; row 1 ties at the cut (0.3, 0.3): the lower class index (1) is kept
    pooled_s = [0.5, 0.5, 0.5, 0.3]
    pooled_y = [0, 1, 1, 0]
    want = _ap_over_all_tie_orders(pooled_s, pooled_y, num_positives=3)
    assert M.global_average_precision(scores, labels, top_k=2) == pytest.approx(want)


def test_ap_bad_input():
    with pytest.raises(ValueError, match="top_k"):
        M.global_average_precision(np.ones((2, 2)), np.ones((2, 2)), top_k=0)
    with pytest.raises(ValueError, match="2-D"):
        M.mean_average_precision(np.ones(3), np.ones(3))


# --------------------------------------------------------------------------- #
# LDL metrics
# --------------------------------------------------------------------------- #


def test_ldl_identical_distributions(rng):
    p = rng.dirichlet(np.ones(6), size=20)
    p[0] = [0, 0, 1, 0, 0, 0]
    p[1] = [0.5, 0.5, 0, 0, 0, 0]
    out = M.ldl_metrics(p, p)
    for name in M.LDL_LOWER_IS_BETTER:
        assert out[name] == pytest.approx(0.0, abs=1e-12)
    for name in M.LDL_HIGHER_IS_BETTER:
        assert out[name] == pytest.approx(1.0, abs=1e-12)
    assert set(out) == set(M.LDL_LOWER_IS_BETTER) | set(M.LDL_HIGHER_IS_BETTER)


def test_ldl_hand_case_with_zeros():
    target = np.array([0.5, 0.5, 0.0, 0.0])
    pred = np.array([0.25, 0.25, 0.5, 0.0])
    out = M.ldl_metrics(pred, target)
    assert out["chebyshev"] == pytest.approx(0.5)
    # terms: 1/3, 1/3, 1 (0.5 vs 0), 0 (0/0)
    assert out["canberra"] == pytest.approx(1 / 3 + 1 / 3 + 1)
    assert out["clark"] == pytest.approx(math.sqrt(1 / 9 + 1 / 9 + 1))
    assert out["kl"] == pytest.approx(math.log(2))  # 2 * 0.5 ln(0.5/0.25), zero-P terms are 0
    assert out["cosine"] == pytest.approx(0.25 / (math.sqrt(0.5) * math.sqrt(0.375)))
    assert out["intersection"] == pytest.approx(0.5)


def test_ldl_kl_zero_prediction_uses_eps():
    target = np.array([0.5, 0.5])
    pred = np.array([1.0, 0.0])
    out = M.ldl_metrics(pred, target, eps=1e-12)
    assert out["kl"] == pytest.approx(0.5 * math.log(0.5) + 0.5 * math.log(0.5 / 1e-12))
    assert math.isfinite(out["kl"])


def _pyldl_kl(D, D_pred):
    """PyLDL's kl_divergence (pyldl/algorithms/utils.py), re-implemented: both clipped to [eps, 1]."""
    eps = np.finfo(np.float64).eps
    D, D_pred = np.clip(D, eps, 1), np.clip(D_pred, eps, 1)
    return np.sum(D * (np.log(D) - np.log(D_pred)), 1)


def test_ldl_kl_matches_pyldl_with_zero_predictions(rng):
    n, c = 40, 27
    target = rng.dirichlet(np.full(c, 0.3), size=n)
    target[::3, :5] = 0.0
    target /= target.sum(1, keepdims=True)
    onehot = np.zeros((n, c))
    onehot[:, 4] = 1.0  # the majority-emotion baseline: zeros on 26 classes
    sparse = rng.dirichlet(np.ones(c), size=n)
    sparse[:, ::2] = 0.0
    sparse /= sparse.sum(1, keepdims=True)
    for pred in (onehot, sparse, rng.dirichlet(np.ones(c), size=n)):
        per = M.ldl_metrics_per_sample(pred, target)
        assert per["kl"] == pytest.approx(_pyldl_kl(target, pred), rel=1e-12, abs=1e-13)
        assert M.ldl_metrics(pred, target)["kl"] == pytest.approx(_pyldl_kl(target, pred).mean(), rel=1e-12)
    # the old 1e-12 floor scores the one-hot baseline lower than PyLDL does (~36 vs ~27.6 nats per unit mass)
    floor = M.ldl_metrics(onehot, target, eps=1e-12, kl="floor")["kl"]
    pyldl = M.ldl_metrics(onehot, target)["kl"]
    assert pyldl > floor * 1.25
    with pytest.raises(ValueError, match="kl must be"):
        M.ldl_metrics(onehot, target, kl="clip")


def test_ldl_random_against_scipy(rng):
    n, c = 50, 6
    target = rng.dirichlet(np.full(c, 0.5), size=n)
    target[::5, 0] = 0.0
    target /= target.sum(axis=1, keepdims=True)
    pred = rng.dirichlet(np.ones(c), size=n)  # strictly positive, like a softmax
    per = M.ldl_metrics_per_sample(pred, target)
    for i in range(n):
        p, q = target[i], pred[i]
        assert per["chebyshev"][i] == pytest.approx(distance.chebyshev(p, q))
        assert per["canberra"][i] == pytest.approx(distance.canberra(p, q))
        clark = math.sqrt(sum(((a - b) / (a + b)) ** 2 for a, b in zip(p, q) if a + b))
        assert per["clark"][i] == pytest.approx(clark)
        assert per["kl"][i] == pytest.approx(stats.entropy(p, q))
        assert per["cosine"][i] == pytest.approx(1 - distance.cosine(p, q))
        assert per["intersection"][i] == pytest.approx(sum(min(a, b) for a, b in zip(p, q)))
    means = M.ldl_metrics(pred, target)
    for name, values in per.items():
        assert means[name] == pytest.approx(values.mean())


def test_ldl_normalize_and_bad_rows():
    counts = np.array([[2, 2, 0], [1, 0, 3]])
    dists = counts / counts.sum(axis=1, keepdims=True)
    assert M.ldl_metrics(counts, counts * 3, normalize=True) == pytest.approx(M.ldl_metrics(dists, dists))
    with pytest.raises(ValueError, match="sum to 1"):
        M.ldl_metrics(counts, dists)
    with pytest.raises(ValueError, match="all-zero"):
        M.ldl_metrics(np.zeros((1, 3)), dists[:1], normalize=True)
    with pytest.raises(ValueError, match="negative"):
        M.ldl_metrics([[1.5, -0.5]], [[0.5, 0.5]])
    empty = M.ldl_metrics(np.zeros((0, 6)), np.zeros((0, 6)))
    assert all(math.isnan(v) for v in empty.values())


# --------------------------------------------------------------------------- #
# emodiversity
# --------------------------------------------------------------------------- #


def test_emodiversity(rng):
    assert M.emodiversity(np.ones(27)) == pytest.approx(27.0)
    assert M.emodiversity([0, 0, 5, 0]) == pytest.approx(1.0)
    assert M.emodiversity([1, 1, 0, 0]) == pytest.approx(2.0)  # counts are normalised, zeros skipped
    d = rng.dirichlet(np.full(27, 0.3), size=40)
    d[3] = 0.0
    d[5, :20] = 0.0
    out = M.emodiversity(d * 7.0)
    assert out.shape == (40,)
    assert np.isnan(out[3])
    keep = np.arange(40) != 3
    want = np.exp(stats.entropy(d[keep], axis=1))
    np.testing.assert_allclose(out[keep], want, rtol=1e-12)
    assert math.isnan(M.emodiversity(np.zeros(5)))
    with pytest.raises(ValueError, match="negative"):
        M.emodiversity([0.5, -0.1])


# --------------------------------------------------------------------------- #
# Pearson r and MSE
# --------------------------------------------------------------------------- #


def test_pearson_against_scipy(rng):
    a = rng.normal(size=200)
    b = 0.3 * a + rng.normal(size=200)
    assert M.pearson(a, b) == pytest.approx(stats.pearsonr(a, b)[0], abs=1e-12)
    A = rng.normal(size=(100, 15))
    B = A * 0.2 + rng.normal(size=(100, 15))
    B[:, 7] = 0.4  # constant label column
    r = M.pearson(A, B, axis=0)
    assert r.shape == (15,)
    assert np.isnan(r[7])
    for j in range(15):
        if j != 7:
            assert r[j] == pytest.approx(stats.pearsonr(A[:, j], B[:, j])[0], abs=1e-12)
    rows = M.pearson(A, B, axis=1)
    assert rows[0] == pytest.approx(stats.pearsonr(A[0], B[0])[0], abs=1e-12)
    assert M.pearson(A, B) == pytest.approx(stats.pearsonr(A.ravel(), B.ravel())[0], abs=1e-12)


def test_pearson_constant_and_short_inputs_are_nan():
    assert math.isnan(M.pearson([0.1, 0.1, 0.1], [1, 2, 3]))
    assert math.isnan(M.pearson([1.0], [2.0]))
    assert math.isnan(M.pearson([], []))
    assert M.pearson([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)


def test_mean_pearson_per_expression_and_per_video(rng):
    t, c = 90, 15
    a = rng.normal(size=(t, c))
    b = 0.5 * a + rng.normal(size=(t, c))
    b[:, 2] = 1.0  # constant everywhere: skipped
    cols = [stats.pearsonr(a[:, j], b[:, j])[0] for j in range(c) if j != 2]
    assert M.mean_pearson(a, b) == pytest.approx(np.mean(cols), abs=1e-12)
    videos = np.repeat(["v1", "v2", "v3"], 30)
    b[30:60, 5] = 0.0  # constant inside video v2 only
    per_video = []
    for v in ("v1", "v2", "v3"):
        rows = videos == v
        rs = [
            stats.pearsonr(a[rows, j], b[rows, j])[0]
            for j in range(c)
            if np.ptp(b[rows, j]) > 0 and np.ptp(a[rows, j]) > 0
        ]
        per_video.append(np.mean(rs))
    assert M.mean_pearson(a, b, groups=videos) == pytest.approx(np.mean(per_video), abs=1e-12)
    assert math.isnan(M.mean_pearson(np.ones((5, 2)), a[:5, :2]))
    with pytest.raises(ValueError, match="one group id per row"):
        M.mean_pearson(a, b, groups=videos[:10])


def test_mse_against_sklearn(rng):
    a = rng.normal(size=(40, 6))
    b = rng.normal(size=(40, 6))
    assert M.mse(a, b) == pytest.approx(mean_squared_error(a.ravel(), b.ravel()))
    np.testing.assert_allclose(M.mse(a, b, axis=0), mean_squared_error(a, b, multioutput="raw_values"))
    assert M.mse([1, 2], [1, 2]) == 0.0
    assert math.isnan(M.mse([], []))


# --------------------------------------------------------------------------- #
# shared input checks
# --------------------------------------------------------------------------- #

_TWO_MATRIX_FUNCS = [
    ("top_k_accuracy", lambda p, t: M.top_k_accuracy(p, t)),
    ("mean_average_precision", lambda p, t: M.mean_average_precision(p, (t > 0.5).astype(int))),
    ("global_average_precision", lambda p, t: M.global_average_precision(p, (t > 0.5).astype(int))),
    ("ldl_metrics", lambda p, t: M.ldl_metrics(p, t, normalize=True)),
    ("pearson", lambda p, t: M.pearson(p, t)),
    ("mean_pearson", lambda p, t: M.mean_pearson(p, t)),
    ("mse", lambda p, t: M.mse(p, t)),
]


@pytest.mark.parametrize("name,fn", _TWO_MATRIX_FUNCS, ids=[n for n, _ in _TWO_MATRIX_FUNCS])
def test_shape_mismatch_and_nan_raise(name, fn):
    good = np.full((4, 5), 0.2)
    with pytest.raises(MetricInputError, match="shape"):
        fn(good, np.full((4, 6), 0.2))
    bad = good.copy()
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        fn(bad, good)
    bad[1, 2] = np.inf
    with pytest.raises(ValueError, match="infinite"):
        fn(bad, good)


def test_nan_scores_raise_for_rankings():
    with pytest.raises(ValueError, match="scores.*NaN"):
        M.pairwise_accuracy([0.1, np.nan], [(0, 1)])
    with pytest.raises(ValueError, match="scores.*NaN"):
        M.listwise_accuracy([0.1, np.nan, 0.3], [[0, 1, 2]])
    with pytest.raises(ValueError, match="dist.*NaN"):
        M.emodiversity([0.1, np.nan])
    with pytest.raises(ValueError, match="labels.*NaN"):
        M.mean_average_precision(np.ones((2, 2)), [[0, 1], [np.nan, 1]])
    with pytest.raises(ValueError, match="target.*infinite"):
        M.top_k_accuracy(np.ones((1, 2)), [[0, np.inf]])
    assert issubclass(MetricInputError, ValueError)
