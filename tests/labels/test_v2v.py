"""V2V: 8-of-9 filtering, list building, pair sampling (determinism, no duplicates, proportions, balance)."""

from __future__ import annotations

import itertools

import numpy as np
import polars as pl
import pytest

from evoke.labels.common import LabelError, VideoIndex
from evoke.labels.v2v import (
    V2VListsConfig,
    V2VPairsConfig,
    V2VSampleConfig,
    read_v2v_votes,
    v2v_lists,
    v2v_pairs,
    v2v_sample,
)

from .conftest import demo_file


def votes_for(a, b, choices, start=0):
    return [(f"ann{start + i}", a, b, c) for i, c in enumerate(choices)]


def frame(rows):
    return pl.DataFrame(rows, schema=["annotator_id", "video_a", "video_b", "choice"], orient="row")


def test_eight_of_nine_and_direction():
    rows = (
        votes_for("x", "y", ["strong_b"] * 5 + ["slight_b"] * 3 + ["slight_a"])       # 8/9 for y: kept, x < y
        + votes_for("p", "q", ["strong_a"] * 9)                                        # 9/9 for p: kept, q < p
        + votes_for("m", "n", ["slight_a"] * 7 + ["skip"] * 2)                         # 7/9: dropped
        + votes_for("s", "t", ["slight_b"] * 8 + ["skip"])                             # skip counts against: 8/9 kept
        + votes_for("u", "w", ["slight_b"] * 8)                                        # too few votes
    )
    res = v2v_pairs(frame(rows))
    t = res.table
    assert t.select("less_pleasant", "more_pleasant").rows() == [("q", "p"), ("s", "t"), ("x", "y")]
    xy = t.filter(pl.col("less_pleasant") == "x").row(0, named=True)
    assert (xy["n_votes"], xy["n_agree"], xy["n_strong"], xy["n_skip"]) == (9, 8, 5, 0)
    assert xy["agreement"] == pytest.approx(8 / 9)
    assert res.dropped.counts == {"pair_below_agreement": 1, "pair_too_few_votes": 1}
    # a looser rule keeps the 7/9 pair
    loose = v2v_pairs(frame(rows), V2VPairsConfig(agree=7, of=9))
    assert ("n", "m") in loose.table.select("less_pleasant", "more_pleasant").rows()


def test_votes_in_either_order_are_one_pair_and_never_reversed():
    rng = np.random.default_rng(0)
    rows, truth = [], {}
    for k in range(40):
        a, b = f"v{k:02d}", f"v{k + 1:02d}"
        better = b if rng.random() < 0.5 else a
        truth[(a, b)] = better
        dissent = k % 3 == 0
        for i in range(9):
            first, second = (b, a) if rng.random() < 0.5 else (a, b)  # shown in either order
            says = better if not (dissent and i < 2) else ({a, b} - {better}).pop()
            choice = ("strong_" if i % 2 else "slight_") + ("a" if says == first else "b")
            rows.append((f"ann{i}", first, second, choice))
    res = v2v_pairs(frame(rows))
    # 7/9 where two dissent: dropped; 9/9 elsewhere: kept, the better video second
    assert res.table.height == sum(1 for k in range(40) if k % 3 != 0)
    assert res.dropped.counts == {"pair_below_agreement": 14}
    for lo, hi in res.table.select("less_pleasant", "more_pleasant").rows():
        assert truth[tuple(sorted((lo, hi)))] == hi


def test_bad_votes(tmp_path):
    rows = (votes_for("a", "b", ["strong_b"] * 9)
            + [("z1", "a", "a", "strong_a"),          # self-pair
               ("z2", "a", "ghost", "slight_a"),       # unknown video
               ("z3", "a", "b", "maybe"),              # unknown choice
               ("ann0", "b", "a", "strong_a"),         # ann0 again on the same pair (reversed order)
               ("", "a", "b", "skip")])                # no annotator
    p = tmp_path / "votes.csv"
    p.write_text("annotator_id,video_a,video_b,choice\n" + "\n".join(",".join(r) for r in rows) + "\n")
    res = v2v_pairs(read_v2v_votes(p), videos=VideoIndex.from_ids(["a", "b"], {"a": "train", "b": "train"}))
    assert res.dropped.counts == {"self_pair": 1, "unknown_video": 1, "unknown_choice": 1, "duplicate_vote": 1,
                                  "missing_id": 1}
    assert res.table.rows() == [("a", "b", 9, 9, 0, 9, 1.0, "train")]
    with pytest.raises(LabelError, match="lacks column"):
        (tmp_path / "x.csv").write_text("a,b\n1,2\n")
        read_v2v_votes(tmp_path / "x.csv")


def pairs_table(edges):
    return pl.DataFrame({"less_pleasant": [a for a, _ in edges], "more_pleasant": [b for _, b in edges],
                         "agreement": [1.0] * len(edges)})


def test_lists_from_chains():
    # a < b < c < d, plus e < c; and a cycle x < y < z < x
    edges = [("a", "b"), ("b", "c"), ("c", "d"), ("e", "c"), ("x", "y"), ("y", "z"), ("z", "x")]
    res = v2v_lists(pairs_table(edges), V2VListsConfig(lengths=(3, 4)))
    lists = {tuple(v) for v in res.table["videos"].to_list()}
    assert lists == {("a", "b", "c"), ("b", "c", "d"), ("e", "c", "d"), ("a", "b", "c", "d")}
    assert res.dropped.counts["chain_contradicted_n3"] == 3  # each rotation of the cycle
    assert set(res.table["n"].to_list()) == {3, 4}
    assert res.table["list_id"].to_list() == list(range(res.table.height))
    # every consecutive pair of a list is a kept pair, in the kept direction
    E = set(edges)
    for v in res.table["videos"].to_list():
        assert all((p, q) in E for p, q in zip(v, v[1:]))
    capped = v2v_lists(pairs_table(edges), V2VListsConfig(lengths=(3,), max_lists=2, seed=1))
    again = v2v_lists(pairs_table(edges), V2VListsConfig(lengths=(3,), max_lists=2, seed=1))
    assert capped.table.height == 2 and capped.table.equals(again.table)


def labels_table(n_per_split: dict[str, int], k: int = 6, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for split, n in n_per_split.items():
        for i in range(n):
            p = rng.dirichlet(np.ones(k) * 0.5)
            rows.append({"video_id": f"{split}_{i:03d}", "split": split, **{f"p_e{j}": p[j] for j in range(k)}})
    return pl.DataFrame(rows)


def test_sample_determinism_duplicates_proportions_balance():
    labels = labels_table({"train": 60, "val": 25, "test": 25})
    preds = labels.select("video_id", pl.Series("score", np.random.default_rng(5).normal(size=labels.height)))
    cfg = V2VSampleConfig(n=90, seed=3, balance_by="split")
    a = v2v_sample(labels, cfg, preds).table
    b = v2v_sample(labels.sample(fraction=1.0, shuffle=True, seed=9), cfg, preds).table  # input order irrelevant
    assert a.equals(b)
    assert a.height == 90
    assert (a["video_a"] != a["video_b"]).all()
    keys = {tuple(sorted(x)) for x in a.select("video_a", "video_b").rows()}
    assert len(keys) == a.height
    # balanced across splits, pairs within a split
    assert a.group_by("split").len().sort("split")["len"].to_list() == [30, 30, 30]
    split_of = dict(labels.select("video_id", "split").rows())
    assert all(split_of[x] == split_of[y] == s for x, y, s in a.select("video_a", "video_b", "split").rows())
    # proportions 0.6 / 0.2 / 0.2 per split
    per = a.group_by("split", "kind").len()
    assert set(per.filter(pl.col("kind") == "informative")["len"].to_list()) == {18}
    assert set(per.filter(pl.col("kind") == "random")["len"].to_list()) == {6}
    assert set(per.filter(pl.col("kind") == "similar")["len"].to_list()) == {6}
    # informative pairs: far apart in labels, close in predictions; similar: close labels
    inf = a.filter(pl.col("kind") == "informative")
    sim = a.filter(pl.col("kind") == "similar")
    rnd = a.filter(pl.col("kind") == "random")
    assert inf["label_l1"].mean() > rnd["label_l1"].mean() > sim["label_l1"].mean()
    assert inf["prediction_distance"].mean() < rnd["prediction_distance"].mean()
    # another seed gives other random pairs
    c = v2v_sample(labels, V2VSampleConfig(n=90, seed=4, balance_by="split"), preds).table
    assert not c.filter(pl.col("kind") == "random").equals(rnd)


def test_sample_exclusions_small_groups_and_large_groups():
    labels = labels_table({"train": 5, "test": 200})
    done = pl.DataFrame({"less_pleasant": ["train_000"], "more_pleasant": ["train_001"]})
    res = v2v_sample(labels, V2VSampleConfig(n=40, candidate_factor=5, max_exhaustive=50, balance_by="split",
                                             proportions=(("random", 0.5), ("similar", 0.5))), exclude=done)
    t = res.table
    train = t.filter(pl.col("split") == "train")
    assert train.height == 9  # 10 possible pairs of 5 videos, one already annotated
    assert ("train_000", "train_001") not in {tuple(sorted(x)) for x in train.select("video_a", "video_b").rows()}
    assert res.info["shortfall"] == 11
    assert t.filter(pl.col("split") == "test").height == 20  # drawn from random candidates
    keys = [tuple(sorted(x)) for x in t.select("video_a", "video_b").rows()]
    assert len(set(keys)) == len(keys)


def test_sample_without_groups_or_predictions():
    labels = labels_table({"all": 30}).drop("split")
    t = v2v_sample(labels, V2VSampleConfig(n=20, balance_by=None)).table
    assert t.height == 20 and t["prediction_distance"].null_count() == 20
    with pytest.raises(LabelError, match="unknown pair kind"):
        V2VSampleConfig(proportions=(("hard", 1.0),))


def _evoke_predictions(labels: pl.DataFrame, rng) -> pl.DataFrame:
    """A VCE run's predictions.parquet: video_id, split, pred_{emotion} (every split predicted)."""
    cols = [c for c in labels.columns if c.startswith("p_")]
    noisy = labels.select(cols).to_numpy() + rng.normal(0, 0.05, (labels.height, len(cols)))
    return labels.select("video_id", "split").with_columns(
        pl.Series(f"pred_{c[2:]}", noisy[:, j]) for j, c in enumerate(cols))


def test_sample_reads_evoke_predictions_and_ranks_as_the_paper_says():
    rng = np.random.default_rng(11)
    labels = labels_table({"train": 14})
    preds = _evoke_predictions(labels, rng)
    cfg = V2VSampleConfig(n=30, balance_by=None, proportions=(("informative", 0.5), ("similar_prediction", 0.5)))
    res = v2v_sample(labels, cfg, preds)
    assert res.info["predictions"] == "distribution" and res.info["warnings"] == []
    # independent computation over every pair of the group
    ids = labels["video_id"].to_list()
    P = labels.select([c for c in labels.columns if c.startswith("p_")]).to_numpy()
    Q = preds.select([c for c in preds.columns if c.startswith("pred_")]).to_numpy()
    pairs = list(itertools.combinations(range(len(ids)), 2))
    l1 = np.array([np.abs(P[i] - P[j]).sum() for i, j in pairs])
    pd = np.array([np.abs(Q[i] - Q[j]).sum() for i, j in pairs])
    informative = [pairs[k] for k in np.lexsort((np.arange(len(pairs)), -(l1 / 2 - pd / pd.max())))[:15]]
    t = res.table
    got = [tuple(sorted((ids.index(a), ids.index(b)))) for a, b in
           t.filter(pl.col("kind") == "informative").sort("rank").select("video_a", "video_b").rows()]
    assert got == informative
    rest = [k for k in np.argsort(pd, kind="stable") if pairs[k] not in set(informative)][:15]
    sim = t.filter(pl.col("kind") == "similar_prediction").sort("rank")
    assert sim["prediction_distance"].to_numpy() == pytest.approx(pd[rest])
    assert sim["label_l1"].to_numpy() == pytest.approx(l1[rest])
    # a per-second predictions table is averaged per video: the same pairs
    twice = pl.concat([preds, preds.with_columns(pl.col(c) * 1.0 for c in preds.columns if c.startswith("pred_"))])
    assert v2v_sample(labels, cfg, twice).table.equals(t)


def test_sample_without_predictions_warns_loudly(caplog):
    labels = labels_table({"train": 10})
    with caplog.at_level("WARNING", logger="evoke.labels.v2v"):
        res = v2v_sample(labels, V2VSampleConfig(n=10, balance_by=None))
    assert "uninformative" in caplog.text and res.info["warnings"] and "uninformative" in res.info["warnings"][0]
    with pytest.raises(LabelError, match="similar_prediction pairs need"):
        v2v_sample(labels, V2VSampleConfig(n=10, proportions=(("similar_prediction", 1.0),)))


def test_sample_balances_by_source_site_or_any_column():
    labels = labels_table({"train": 24}).drop("split")
    sites = ["https://www.youtube.com/watch?v={}", "https://www.bilibili.com/video/{}", "/data/clips/{}.mp4"]
    manifest = pl.DataFrame({"video_id": labels["video_id"],
                             "source": [sites[i % 3].format(i) for i in range(labels.height)],
                             "creator": [f"c{i % 2}" for i in range(labels.height)]})
    res = v2v_sample(labels, V2VSampleConfig(n=30, proportions=(("random", 1.0),)), video_table=manifest)
    t = res.table
    assert res.info["balance_by"] == "source" and sorted(res.info["groups"]) == ["bilibili.com", "local",
                                                                                 "youtube.com"]
    assert t.group_by("source").len()["len"].to_list() == [10, 10, 10]
    site = {v: s for v, s in zip(manifest["video_id"], ["youtube.com", "bilibili.com", "local"] * 8)}
    assert all(site[a] == site[b] == g for a, b, g in t.select("video_a", "video_b", "source").rows())
    by_creator = v2v_sample(labels, V2VSampleConfig(n=20, balance_by="creator", proportions=(("random", 1.0),)),
                            video_table=manifest).table
    assert by_creator.group_by("creator").len().sort("creator")["len"].to_list() == [10, 10]
    creator = dict(manifest.select("video_id", "creator").rows())
    assert all(creator[a] == creator[b] for a, b in by_creator.select("video_a", "video_b").rows())


def test_vce_run_predicts_every_split_for_sampling(tmp_path):
    from evoke.heads.synthetic import write_synthetic_dataset
    from evoke.tasks import run_task

    d = tmp_path / "syn"
    write_synthetic_dataset(d, n_videos=20, seconds=(3, 4), seed=1, tables=("vce",))
    run_task("vce", "linear", ["colour"], d, tmp_path / "run", {"predict_all_splits": True})
    pred = pl.read_parquet(tmp_path / "run" / "predictions.parquet")
    assert set(pred["split"]) == {"train", "val", "test"} and pred["video_id"].n_unique() == 20
    labels = pl.read_parquet(d / "labels" / "vce.parquet")
    res = v2v_sample(labels, V2VSampleConfig(n=20, balance_by=None), pred)
    assert res.info["n_videos_with_predictions"] == 20
    assert res.table["prediction_distance"].null_count() == 0


def test_workflow_wires_the_sampling_predictions(tmp_path):
    import subprocess
    import sys

    from .conftest import DEMO_ANNOTATIONS, REPO

    if not (DEMO_ANNOTATIONS / "vce_responses.csv").is_file():
        pytest.skip("demo not built")
    (tmp_path / "data").symlink_to(REPO / "data")
    run = "train/vce/linear/colour+motion/predictions.parquet"
    import yaml

    from evoke.config import merge
    from evoke.demo import demo_config

    # the demo's config (its annotations and training) over the repository's
    config = merge(yaml.safe_load((REPO / "config.yaml").read_text()), demo_config(REPO / "data" / "demo"))
    config["labels"]["v2v_sample"] = {"predictions": run}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    r = subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "-n", "-p",
                        "--cores", "1", "results/demo/labels/v2v_sample.parquet"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    plan = r.stdout
    assert f"--predictions results/demo/{run}" in plan
    train = next(line for line in plan.splitlines() if "train --task vce --head linear" in line)
    assert "predict_all_splits" in train


def test_demo_votes_end_to_end():
    res = v2v_pairs(read_v2v_votes(demo_file("v2v_votes.csv")))
    assert res.table.height > 0
    assert (res.table["n_agree"] * 9 >= 8 * res.table["n_votes"]).all()
    lists = v2v_lists(res.table)
    for v in lists.table["videos"].to_list():
        pairs = set(res.table.select("less_pleasant", "more_pleasant").rows())
        assert all((p, q) in pairs for p, q in itertools.pairwise(v))
