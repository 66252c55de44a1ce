"""V2V: pairwise pleasantness votes to comparisons, listwise chains and new pairs to annotate.

**Votes** (:func:`read_v2v_votes`): ``annotator_id, video_a, video_b, choice``
with ``choice`` one of ``strong_a, slight_a, slight_b, strong_b, skip`` (which
video is more pleasant; case and ``-``/space are ignored).

**Pairs** (:func:`v2v_pairs`), one row per kept unordered pair, the less
pleasant video first:

================  =======  =====================================================
column            type     meaning
================  =======  =====================================================
less_pleasant     str      the video the agreeing votes found less pleasant
more_pleasant     str      the other one
n_votes           int32    votes on the pair (skips included)
n_agree           int32    votes for the winning direction
n_skip            int32    skips
n_strong          int32    "strong" votes among the agreeing ones
agreement         float64  n_agree / n_votes
split             str      the videos' split when both share one (else null)
================  =======  =====================================================

A pair is kept when ``n_votes >= min_votes`` and ``n_agree / n_votes >= agree
/ of`` (default 8 of 9, the V2V rule; a skip counts as not agreeing). Dropped
and counted: ``missing_id``, ``self_pair`` (a video against itself),
``unknown_video``, ``unknown_choice``, ``duplicate_vote`` (an annotator's second
vote on the same pair, in either order), and per pair ``pair_too_few_votes``,
``pair_below_agreement`` (including ties).

**Lists** (:func:`v2v_lists`): chains v1 < v2 < ... < vn of kept pairs
(consecutive videos form a kept pair, no video twice), n in ``lengths``
(default 3 and 4); a chain is left out when any kept pair among its videos
contradicts its order (a cycle). Columns: ``list_id`` (int64), ``n`` (int8),
``videos`` (list of str, least to most pleasant), ``min_agreement`` (float64,
the weakest consecutive pair), ``split`` (shared split or null).

**Pair sampling** (:func:`v2v_sample`) for a new annotation round (VCE
paper, section 8.3), from a label table with an emotion distribution (``p_*``
columns, e.g. ``vce.parquet``) and model predictions: evoke's own
``predictions.parquet`` (``pred_*`` columns: a VCE run's distribution, or a
V2V run's ``pred_score``), or any table with ``video_id`` and a ``score`` /
``pleasantness`` / ``prediction`` column or ``p_*`` columns. Several rows of
one video (a per-second task) are averaged. Per group of ``balance_by`` the
same number of pairs (pairs never cross groups), split between kinds by
``proportions``:

* ``informative``: far apart in label L1 while the predictions are close:
  ranked by ``label_l1 / 2 - prediction_distance / max`` (both 0-1). Without
  predictions these are only the pairs furthest apart in label L1, which the
  paper calls uninformative: the sampler then logs a warning and says so in
  ``info["warnings"]``;
* ``similar``: the smallest label L1;
* ``similar_prediction``: the smallest prediction distance (needs
  predictions);
* ``random``: uniform.

``balance_by`` is any column of the label table or of the ``video_table``
(the manifest); the default, ``source``, groups a manifest's ``source`` URLs
by site (the host without ``www.``; local paths and ``file://`` are
``local``); when the column is nowhere, all videos form one group (logged).
``None`` makes one group.

Candidates are every pair of a group (up to ``max_exhaustive`` videos) or a
seeded random draw of ``candidate_factor`` times the pairs needed. No
duplicates (also not of ``exclude`` pairs, e.g. those already annotated), no
self-pairs; which video is ``video_a`` is drawn at random. The same inputs and
seed give the same pairs. Columns: ``video_a, video_b`` (str), ``kind`` (str),
the group column (str), ``label_l1`` (float64, 0-2), ``prediction_distance``
(float64, null without predictions), ``rank`` (int32, within group and kind).
A group too small for its share yields what it can (``shortfall`` in info).
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from evoke.labels.common import (
    BuilderConfig,
    BuildResult,
    Dropped,
    LabelBuilder,
    LabelError,
    VideoIndex,
    load_table,
    read_table,
    register_label_builder,
    require_columns,
    with_row_numbers,
)

log = logging.getLogger(__name__)

CHOICES = {"strong_a": -2, "slight_a": -1, "slight_b": 1, "strong_b": 2, "skip": 0}
PAIR_SCHEMA = {
    "less_pleasant": pl.String, "more_pleasant": pl.String, "n_votes": pl.Int32, "n_agree": pl.Int32,
    "n_skip": pl.Int32, "n_strong": pl.Int32, "agreement": pl.Float64, "split": pl.String,
}
LIST_SCHEMA = {"list_id": pl.Int64, "n": pl.Int8, "videos": pl.List(pl.String),
               "min_agreement": pl.Float64, "split": pl.String}
KINDS = ("informative", "similar", "similar_prediction", "random")
SCORE_COLUMNS = ("score", "pleasantness", "prediction", "pred_score")


@dataclass(frozen=True)
class V2VPairsConfig(BuilderConfig):
    agree: int = 8
    of: int = 9
    min_votes: int = 9

    def __post_init__(self):
        if not 0 < self.agree <= self.of:
            raise LabelError(f"v2v: need 0 < agree <= of, got {self.agree} of {self.of}")
        if self.min_votes < 1:
            raise LabelError("v2v: min_votes must be at least 1")


@dataclass(frozen=True)
class V2VListsConfig(BuilderConfig):
    lengths: tuple[int, ...] = (3, 4)
    max_lists: int | None = None  # per length; a seeded sample when more chains exist
    seed: int = 0
    max_chains: int = 2_000_000  # enumeration guard per length


@dataclass(frozen=True)
class V2VSampleConfig(BuilderConfig):
    n: int = 100
    proportions: tuple[tuple[str, float], ...] = (("informative", 0.6), ("random", 0.2), ("similar", 0.2))
    seed: int = 0
    balance_by: str | None = "source"
    candidate_factor: int = 20
    max_exhaustive: int = 2000

    def __post_init__(self):
        props = dict(self.proportions)
        unknown = set(props) - set(KINDS)
        if unknown:
            raise LabelError(f"v2v-sample: unknown pair kind(s) {', '.join(sorted(unknown))}; "
                             f"known: {', '.join(KINDS)}")
        if any(v < 0 for v in props.values()) or sum(props.values()) <= 0:
            raise LabelError("v2v-sample: proportions must be non-negative and not all zero")
        if self.n < 0:
            raise LabelError("v2v-sample: n must be non-negative")


# --------------------------------------------------------------------------- votes


def read_v2v_votes(path: str | Path, encoding: str | None = None) -> pl.DataFrame:
    """Read votes: ``row, annotator_id, video_a, video_b, choice`` (choice normalised)."""
    raw = read_table(path, "V2V votes", encoding)
    require_columns(raw, ["annotator_id", "video_a", "video_b", "choice"], path, "V2V votes")
    return with_row_numbers(raw).select(
        "row", "annotator_id", "video_a", "video_b",
        pl.col("choice").str.to_lowercase().str.replace_all(r"[\s-]+", "_").alias("choice"))


def v2v_pairs(votes: pl.DataFrame, config: V2VPairsConfig | None = None,
              videos: VideoIndex | None = None) -> BuildResult:
    """Votes to kept comparisons (see the module docstring)."""
    config = config or V2VPairsConfig()
    dropped = Dropped()
    if "row" not in votes.columns:
        votes = with_row_numbers(votes)
    v = votes.select("row", *[pl.col(c).cast(pl.String) for c in ("annotator_id", "video_a", "video_b", "choice")])
    blank = lambda c: pl.col(c).is_null() | (pl.col(c) == "")  # noqa: E731
    missing = v.filter(blank("annotator_id") | blank("video_a") | blank("video_b"))
    dropped.add_frame("missing_id", missing)
    v = v.filter(~(blank("annotator_id") | blank("video_a") | blank("video_b")))
    selfp = v.filter(pl.col("video_a") == pl.col("video_b"))
    dropped.add_frame("self_pair", selfp)
    v = v.filter(pl.col("video_a") != pl.col("video_b"))
    if videos is not None:
        v = videos.filter_known(v, ["video_a", "video_b"], dropped)
    bad = v.filter(~pl.col("choice").is_in(list(CHOICES)) | pl.col("choice").is_null())
    if bad.height:
        dropped.add("unknown_choice", bad.height,
                    (f"row {r}: {c}" for r, c in bad.select("row", "choice").head(3).iter_rows()))
    v = v.filter(pl.col("choice").is_in(list(CHOICES)))
    # canonical unordered pair (x < y); signed preference toward y (the second id)
    swap = pl.col("video_a") > pl.col("video_b")
    sign = pl.col("choice").replace_strict(CHOICES, return_dtype=pl.Int8)
    v = v.with_columns(
        pl.when(swap).then(pl.col("video_b")).otherwise(pl.col("video_a")).alias("x"),
        pl.when(swap).then(pl.col("video_a")).otherwise(pl.col("video_b")).alias("y"),
        pl.when(swap).then(-sign).otherwise(sign).alias("pref_y"),
    ).sort("row")
    dup = v.filter(pl.int_range(pl.len()).over("annotator_id", "x", "y") > 0)
    dropped.add_frame("duplicate_vote", dup)
    v = v.join(dup.select("row"), on="row", how="anti")
    g = v.group_by("x", "y").agg(
        pl.len().cast(pl.Int32).alias("n_votes"),
        (pl.col("pref_y") > 0).sum().cast(pl.Int32).alias("n_y"),
        (pl.col("pref_y") < 0).sum().cast(pl.Int32).alias("n_x"),
        (pl.col("pref_y") == 0).sum().cast(pl.Int32).alias("n_skip"),
        (pl.col("pref_y") == 2).sum().cast(pl.Int32).alias("n_strong_y"),
        (pl.col("pref_y") == -2).sum().cast(pl.Int32).alias("n_strong_x"),
    ).sort("x", "y")
    few = g.filter(pl.col("n_votes") < config.min_votes)
    dropped.add("pair_too_few_votes", few.height, (f"{a}|{b}" for a, b in few.select("x", "y").head(3).iter_rows()))
    g = g.filter(pl.col("n_votes") >= config.min_votes)
    y_wins = pl.col("n_y") > pl.col("n_x")
    g = g.with_columns(
        pl.when(y_wins).then(pl.col("x")).otherwise(pl.col("y")).alias("less_pleasant"),
        pl.when(y_wins).then(pl.col("y")).otherwise(pl.col("x")).alias("more_pleasant"),
        pl.max_horizontal("n_x", "n_y").alias("n_agree"),
        pl.when(y_wins).then(pl.col("n_strong_y")).otherwise(pl.col("n_strong_x")).alias("n_strong"),
    ).with_columns((pl.col("n_agree") / pl.col("n_votes")).alias("agreement"))
    # n_agree / n_votes >= agree / of, in integers (no rounding surprises); a tie never passes
    ok = (pl.col("n_agree") * config.of >= config.agree * pl.col("n_votes")) & (pl.col("n_x") != pl.col("n_y"))
    low = g.filter(~ok)
    dropped.add("pair_below_agreement", low.height,
                (f"{a}|{b} {n}/{m}" for a, b, n, m in low.select("x", "y", "n_agree", "n_votes").head(3).iter_rows()))
    kept = g.filter(ok)
    if videos is not None and videos.split:
        s = videos.split
        kept = kept.with_columns(pl.Series("split", [
            s.get(a) if s.get(a) == s.get(b) else None
            for a, b in kept.select("less_pleasant", "more_pleasant").iter_rows()], dtype=pl.String))
    else:
        kept = kept.with_columns(pl.lit(None, dtype=pl.String).alias("split"))
    table = kept.select(list(PAIR_SCHEMA)).cast(PAIR_SCHEMA).sort("less_pleasant", "more_pleasant")
    info = {"n_pairs_voted": g.height + few.height, "n_pairs_kept": table.height, "n_votes": v.height}
    return BuildResult(table, dropped, info)


# --------------------------------------------------------------------------- lists


def _chains(succ: dict[str, list[str]], edges: dict, n: int, limit: int) -> tuple[list[tuple[str, ...]], int]:
    """Every simple path of n videos along ``succ`` (depth first, sorted) that no kept pair
    contradicts; returns ``(chains, number of extensions refused as contradicted)``."""
    chains: list[tuple[str, ...]] = []
    refused = 0
    stack = [(start,) for start in sorted(succ, reverse=True)]
    while stack:
        path = stack.pop()
        if len(path) == n:
            chains.append(path)
            if len(chains) > limit:
                raise LabelError(f"v2v-lists: more than {limit} chains of length {n}; "
                                 "set max_lists or use fewer pairs")
            continue
        nxt = []
        for w in succ.get(path[-1], ()):
            if w in path:
                continue
            if any((w, u) in edges for u in path):
                refused += 1  # a kept pair says w is less pleasant than an earlier video
                continue
            nxt.append(path + (w,))
        stack.extend(reversed(nxt))
    return chains, refused


def v2v_lists(pairs: pl.DataFrame, config: V2VListsConfig | None = None) -> BuildResult:
    """Chains of kept pairs (see the module docstring); ``pairs`` as :func:`v2v_pairs` writes them."""
    config = config or V2VListsConfig()
    require_columns(pairs, ["less_pleasant", "more_pleasant"], "pairs table", "V2V pairs")
    dropped = Dropped()
    succ: dict[str, list[str]] = defaultdict(list)
    edges: dict[tuple[str, str], float] = {}
    split_of: dict[str, set] = defaultdict(set)
    has_agreement = "agreement" in pairs.columns
    has_split = "split" in pairs.columns
    for r in pairs.iter_rows(named=True):
        lo, hi = r["less_pleasant"], r["more_pleasant"]
        if lo == hi or lo is None or hi is None:
            dropped.add("invalid_pair", 1, [f"{lo}|{hi}"])
            continue
        if (hi, lo) in edges or (lo, hi) in edges:
            dropped.add("contradicting_or_duplicate_pair", 1, [f"{lo}|{hi}"])
            continue
        edges[(lo, hi)] = float(r["agreement"]) if has_agreement and r["agreement"] is not None else 1.0
        succ[lo].append(hi)
        if has_split:
            split_of[lo].add(r["split"])
            split_of[hi].add(r["split"])
    for k in succ:
        succ[k].sort()
    rows = []
    rng = np.random.default_rng(config.seed)
    for n in sorted(set(config.lengths)):
        if n < 2:
            raise LabelError(f"v2v-lists: list length must be at least 2, got {n}")
        chains, n_contradicted = _chains(succ, edges, n, config.max_chains)
        if n_contradicted:
            dropped.add(f"chain_contradicted_n{n}", n_contradicted)
        if config.max_lists is not None and len(chains) > config.max_lists:
            keep = np.sort(rng.choice(len(chains), size=config.max_lists, replace=False))
            chains = [chains[i] for i in keep]
        for c in chains:
            splits = set().union(*(split_of.get(x, {None}) for x in c)) if has_split else {None}
            rows.append({"n": n, "videos": list(c),
                         "min_agreement": min(edges[(a, b)] for a, b in zip(c, c[1:])),
                         "split": next(iter(splits)) if len(splits) == 1 else None})
    table = pl.DataFrame(rows, schema={k: v for k, v in LIST_SCHEMA.items() if k != "list_id"})
    table = table.with_row_index("list_id").select(list(LIST_SCHEMA)).cast(LIST_SCHEMA)
    info = {f"n_lists_{n}": int((table["n"] == n).sum()) for n in sorted(set(config.lengths))}
    return BuildResult(table, dropped, info)


# --------------------------------------------------------------------------- sampling


def _distribution_matrix(df: pl.DataFrame, source: str) -> tuple[list[str], np.ndarray]:
    cols = [c for c in df.columns if c.startswith("p_")]
    if not cols:
        raise LabelError(f"{source}: no distribution columns (p_*)")
    return cols, df.select(pl.col(c).cast(pl.Float64) for c in cols).to_numpy()


def _largest_remainder(total: int, weights: list[float]) -> list[int]:
    w = np.asarray(weights, dtype=float)
    if total <= 0 or w.sum() <= 0:
        return [0] * len(weights)
    exact = total * w / w.sum()
    base = np.floor(exact).astype(int)
    rest = total - int(base.sum())
    order = np.argsort(-(exact - base), kind="stable")
    base[order[:rest]] += 1
    return base.tolist()


def _candidate_pairs(m: int, need: int, factor: int, max_exhaustive: int,
                     rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs i < j of m items: all of them, or a random draw for large m."""
    if m < 2:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    if m <= max_exhaustive or m * (m - 1) // 2 <= need * factor:
        i, j = np.triu_indices(m, k=1)
        return i.astype(np.int64), j.astype(np.int64)
    k = max(need * factor, 1000)
    i = rng.integers(0, m, size=k)
    j = rng.integers(0, m, size=k)
    lo, hi = np.minimum(i, j), np.maximum(i, j)
    keep = lo != hi
    code = np.unique(lo[keep] * m + hi[keep])
    return code // m, code % m


def source_site(value: str | None) -> str:
    """The site of a manifest ``source``: a URL's host without ``www.``; local paths and file:// are ``local``."""
    from urllib.parse import urlparse

    if not value:
        return "(none)"
    u = urlparse(value)
    if u.scheme in ("", "file") or len(u.scheme) == 1:  # a path (C: on Windows) or file://
        return "local"
    host = u.netloc.lower().rsplit("@", 1)[-1].split(":", 1)[0]
    return host[4:] if host.startswith("www.") else host


def _groups(lab: pl.DataFrame, group_col: str | None, videos: VideoIndex | None,
            video_table: pl.DataFrame | None) -> tuple[pl.DataFrame, str]:
    """``lab`` with its balancing group column (see the module docstring) and that column's name."""
    if not group_col:
        return lab.with_columns(pl.lit("all").alias("group")), "group"
    if group_col not in lab.columns or lab[group_col].null_count() == lab.height:
        lab = lab.drop(group_col, strict=False)
        if video_table is not None and group_col in video_table.columns:
            vt = video_table.select(pl.col("video_id").cast(pl.String), pl.col(group_col).cast(pl.String))
            lab = lab.join(vt.unique("video_id", keep="first"), on="video_id", how="left")
        elif videos is not None and group_col == "split" and videos.split:
            lab = lab.with_columns(pl.col("video_id").replace_strict(videos.split, default=None,
                                                                      return_dtype=pl.String).alias("split"))
        else:
            log.info("v2v-sample: no '%s' column in the labels or the video list: one group", group_col)
            lab = lab.with_columns(pl.lit("all").alias(group_col))
    col = pl.col(group_col).cast(pl.String)
    if group_col == "source":
        col = col.map_elements(source_site, return_dtype=pl.String)
    return lab.with_columns(col.fill_null("(none)").alias(group_col)), group_col


def _prediction_map(predictions: pl.DataFrame) -> tuple[str, dict[str, np.ndarray]]:
    """``(kind, {video_id: vector})`` from a predictions table; rows of one video are averaged."""
    require_columns(predictions, ["video_id"], "predictions", "predictions")
    score_col = next((c for c in SCORE_COLUMNS if c in predictions.columns), None)
    if score_col:
        kind, cols = "score", [score_col]
    else:
        cols = [c for c in predictions.columns if c.startswith("pred_")] or \
            [c for c in predictions.columns if c.startswith("p_")]
        if not cols:
            raise LabelError("predictions: no score column (score, pleasantness, prediction, pred_score) and "
                             "no distribution columns (pred_* or p_*)")
        kind = "distribution"
    per_video = predictions.select("video_id", *[pl.col(c).cast(pl.Float64, strict=False) for c in cols]).group_by(
        "video_id", maintain_order=True).agg(*[pl.col(c).mean() for c in cols], pl.len().alias("_n"))
    if int(per_video["_n"].max() or 0) > 1:
        log.info("v2v-sample: predictions have several rows per video: averaged per video")
    out = {}
    for vid, *row in per_video.select("video_id", *cols).iter_rows():
        vec = np.array(row, dtype=np.float64)
        if np.isfinite(vec).all():
            out[vid] = vec
    return kind, out


def v2v_sample(labels: pl.DataFrame, config: V2VSampleConfig | None = None,
               predictions: pl.DataFrame | None = None, exclude: pl.DataFrame | None = None,
               videos: VideoIndex | None = None, video_table: pl.DataFrame | None = None) -> BuildResult:
    """Propose pairs for a new annotation round (see the module docstring)."""
    config = config or V2VSampleConfig()
    dropped = Dropped()
    require_columns(labels, ["video_id"], "labels table", "labels")
    cols, _ = _distribution_matrix(labels, "labels table")
    lab = labels.unique("video_id", keep="first").sort("video_id")
    null_dist = lab.filter(pl.any_horizontal(pl.col(c).is_null() for c in cols))
    dropped.add("video_without_distribution", null_dist.height, null_dist["video_id"].head(3))
    lab = lab.filter(~pl.any_horizontal(pl.col(c).is_null() for c in cols))
    if videos is not None:
        lab = videos.filter_known(lab, ["video_id"], dropped)
    lab, gname = _groups(lab, config.balance_by, videos, video_table)
    pred_kind = None
    pred_map: dict[str, np.ndarray] = {}
    if predictions is not None:
        pred_kind, pred_map = _prediction_map(predictions)
    excluded: set[tuple[str, str]] = set()
    if exclude is not None and exclude.height:
        for x, y in pair_columns(exclude, "pairs to exclude").iter_rows():
            excluded.add((min(x, y), max(x, y)))
    props = dict(config.proportions)
    kinds = [k for k in KINDS if props.get(k, 0) > 0]
    warnings = []
    if pred_kind is None and "similar_prediction" in kinds:
        raise LabelError("v2v-sample: similar_prediction pairs need model predictions (--predictions)")
    if pred_kind is None and "informative" in kinds:
        warnings.append("no model predictions: the 'informative' pairs are only the furthest apart in label L1, "
                        "the pairs the VCE paper calls uninformative; give --predictions (e.g. a vce run's "
                        "predictions.parquet) for pairs far apart in labels but close in predictions")
        log.warning("v2v-sample: %s", warnings[-1])
    groups = sorted(lab[gname].unique().to_list())
    per_group = _largest_remainder(config.n, [1.0] * len(groups)) if groups else []
    out = []
    shortfall = 0
    for gi, (g, n_g) in enumerate(zip(groups, per_group)):
        sub = lab.filter(pl.col(gname) == g)
        ids = sub["video_id"].to_list()
        _, P = _distribution_matrix(sub, "labels table")
        rng = np.random.default_rng([config.seed, gi])
        m = len(ids)
        ci, cj = _candidate_pairs(m, n_g, config.candidate_factor, config.max_exhaustive, rng)
        if excluded and ci.size:
            keep = np.array([(min(ids[a], ids[b]), max(ids[a], ids[b])) not in excluded for a, b in zip(ci, cj)],
                            dtype=bool)
            ci, cj = ci[keep], cj[keep]
        l1 = np.abs(P[ci] - P[cj]).sum(axis=1) if ci.size else np.zeros(0)
        pdist = np.full(ci.size, np.nan)
        if pred_kind is not None and ci.size:
            has = np.array([ids[k] in pred_map for k in range(m)], dtype=bool)
            both = has[ci] & has[cj]
            if both.any():
                A = np.stack([pred_map[ids[a]] for a in ci[both]])
                B = np.stack([pred_map[ids[b]] for b in cj[both]])
                pdist[both] = np.abs(A - B).sum(axis=1)
        counts = _largest_remainder(n_g, [props.get(k, 0) for k in kinds])
        available = np.ones(ci.size, dtype=bool)
        for kind, n_k in zip(kinds, counts):
            if n_k == 0:
                continue
            idx = np.flatnonzero(available)
            if kind == "informative":
                if pred_kind is not None:
                    idx = idx[~np.isnan(pdist[idx])]
                    top = np.nanmax(pdist[idx]) if idx.size else 0.0
                    score = l1[idx] / 2 - (pdist[idx] / top if top > 0 else 0.0)
                else:
                    score = l1[idx]
                order = idx[np.lexsort((idx, -score))]
            elif kind == "similar":
                order = idx[np.lexsort((idx, l1[idx]))]
            elif kind == "similar_prediction":
                idx = idx[~np.isnan(pdist[idx])]
                order = idx[np.lexsort((idx, pdist[idx]))]
            else:
                order = rng.permutation(idx)
            chosen = order[:n_k]
            if chosen.size < n_k:
                shortfall += n_k - chosen.size
            available[chosen] = False
            flip = rng.random(chosen.size) < 0.5
            for rank, (c, f) in enumerate(zip(chosen, flip)):
                a, b = ids[ci[c]], ids[cj[c]]
                if f:
                    a, b = b, a
                out.append({"video_a": a, "video_b": b, "kind": kind, gname: g,
                            "label_l1": float(l1[c]),
                            "prediction_distance": None if np.isnan(pdist[c]) else float(pdist[c]),
                            "rank": rank})
    schema = {"video_a": pl.String, "video_b": pl.String, "kind": pl.String, gname: pl.String,
              "label_l1": pl.Float64, "prediction_distance": pl.Float64, "rank": pl.Int32}
    table = pl.DataFrame(out, schema=schema)
    if shortfall:
        log.warning("v2v-sample: %d pairs fewer than asked for (groups too small)", shortfall)
    info = {"n_pairs": table.height, "shortfall": shortfall, "groups": groups, "balance_by": gname,
            "predictions": pred_kind, "n_videos_with_predictions": len(pred_map), "warnings": warnings}
    return BuildResult(table, dropped, info)


# --------------------------------------------------------------------------- builders


def pair_columns(df: pl.DataFrame, source) -> pl.DataFrame:
    """A pairs table (v2v pairs, samples or votes) as ``video_a, video_b``."""
    for a, b in (("less_pleasant", "more_pleasant"), ("video_a", "video_b")):
        if a in df.columns and b in df.columns:
            return df.select(pl.col(a).alias("video_a"), pl.col(b).alias("video_b"))
    raise LabelError(f"{source}: a pairs table needs less_pleasant/more_pleasant or video_a/video_b columns")


@register_label_builder
class V2VPairsBuilder(LabelBuilder):
    """Pairwise votes to comparisons agreed on by at least 8 of 9 votes."""

    name = "v2v_pairs"
    config_type = V2VPairsConfig
    inputs = ("votes",)
    description = "V2V votes -> kept pairs, less pleasant first"

    def read(self, votes, encoding=None):
        return {"votes": read_v2v_votes(votes, encoding)}

    def build(self, videos=None, votes=None):
        return v2v_pairs(votes, self.config, videos)


@register_label_builder
class V2VListsBuilder(LabelBuilder):
    """Kept pairs to listwise comparisons (chains of 3 and 4)."""

    name = "v2v_lists"
    config_type = V2VListsConfig
    inputs = ("pairs",)
    description = "V2V pairs -> lists of n videos ordered by pleasantness"

    def read(self, pairs):
        return {"pairs": load_table(pairs, "V2V pairs", floats=("agreement",))}

    def build(self, videos=None, pairs=None):
        return v2v_lists(pairs, self.config)


@register_label_builder
class V2VSampleBuilder(LabelBuilder):
    """Propose new pairs for annotation (informative, similar and random)."""

    name = "v2v_sample"
    config_type = V2VSampleConfig
    inputs = ("labels", "predictions?", "exclude?")
    description = "label distributions (+ predictions) -> pairs to annotate"

    def read(self, labels, predictions=None, exclude=(), video_table=None):
        tables = {"labels": load_table(labels, "labels", floats=("p_*",)),
                  "predictions": load_table(predictions, "predictions", floats=("p_*", *SCORE_COLUMNS))
                  if predictions else None,
                  "video_table": load_table(video_table, "video list") if video_table else None}
        ex = [pair_columns(load_table(p, "pairs to exclude"), p) for p in (exclude or ())]
        tables["exclude"] = pl.concat(ex) if ex else None
        return tables

    def build(self, videos=None, labels=None, predictions=None, exclude=None, video_table=None):
        return v2v_sample(labels, self.config, predictions, exclude, videos, video_table)
