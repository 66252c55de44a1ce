"""The semi-automatic labelling loop and the per-window label distributions."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from evoke.danmaku import EMOTIONS
from evoke.danmaku.classify import read_corpus, targets, train_model
from evoke.danmaku.loop import accept_reviews, propose_labels, read_queue, write_queue
from evoke.danmaku.parse import DanmakuError
from evoke.danmaku.windows import WindowsConfig, danmaku_windows, window_seconds
from evoke.labels.common import Dropped

from .conftest import FIXTURES

P_COLS = [f"p_{e}" for e in EMOTIONS]


def scored(rows):
    """rows: (video_id, time_s, text, [six probabilities])."""
    return pl.DataFrame({"video_id": [r[0] for r in rows], "time_s": [float(r[1]) for r in rows],
                         "text": [r[2] for r in rows],
                         **{c: [float(r[3][k]) for r in rows] for k, c in enumerate(P_COLS)}})


def test_propose_thresholds_and_queue(tmp_path):
    s = scored([
        ("v", 1, "a", [0.95, 0.10, 0.50, 0.80, 0.39, 0.40]),
        ("v", 2, "a", [0.95, 0.10, 0.50, 0.80, 0.39, 0.40]),  # same text: one item
        ("v", 3, "b", [0.81, 0.79, 0.05, 0.0, 1.0, 0.6]),
    ])
    lab, queue = propose_labels(s, accept=0.8, reject=0.4)
    a = lab.filter(pl.col("text") == "a").row(0, named=True)
    assert a["n_comments"] == 2
    # above 0.8 positive, below 0.4 negative, 0.4 <= p <= 0.8 to a person
    assert (a["y_like"], a["y_joy"], a["y_surprise"], a["y_fear"], a["y_disgust"], a["y_sadness"]) == \
        (1, 0, None, None, 0, None)
    assert a["source_like"] == "auto" and a["source_surprise"] is None
    assert set(queue.filter(pl.col("text") == "a")["emotion"].to_list()) == {"surprise", "fear", "sadness"}
    assert queue["emotion"].to_list() == sorted(queue["emotion"].to_list(), key=EMOTIONS.index)
    assert queue["decision"].null_count() == queue.height
    write_queue(queue, tmp_path / "q.csv")
    assert (tmp_path / "q.csv").read_bytes().startswith(b"\xef\xbb\xbf")
    with pytest.raises(DanmakuError, match="reject <= accept"):
        propose_labels(s, accept=0.3, reject=0.6)


def test_accept_reviews_and_retrain(tmp_path):
    s = scored([
        ("v", 1, "哈哈哈笑死", [0.1, 0.6, 0.1, 0.1, 0.1, 0.1]),   # joy queued
        ("v", 2, "好吓人啊", [0.1, 0.1, 0.5, 0.9, 0.1, 0.1]),     # surprise queued, fear positive
        ("v", 3, "打卡路过", [0.1, 0.1, 0.1, 0.1, 0.1, 0.45]),    # sadness queued
    ])
    lab, queue = propose_labels(s)
    assert queue.select("text", "emotion").rows() == [
        ("哈哈哈笑死", "joy"), ("好吓人啊", "surprise"), ("打卡路过", "sadness")]
    write_queue(queue, tmp_path / "q.csv")
    q = read_queue(tmp_path / "q.csv")
    # the person: yes, no, and leaves the third; plus a stray row
    q = q.with_columns(pl.Series("decision", ["yes", "0", ""]))
    q = pl.concat([q, pl.DataFrame({"text": ["never seen"], "emotion": ["joy"], "p": ["0.5"], "n_comments": ["1"],
                                    "decision": ["1"]})], how="diagonal_relaxed")
    d = Dropped()
    out = accept_reviews(lab, q, "q.csv", d)
    assert d.counts == {"unknown_text": 1}
    r = {row["text"]: row for row in out.iter_rows(named=True)}
    assert (r["哈哈哈笑死"]["y_joy"], r["哈哈哈笑死"]["source_joy"]) == (1, "review")
    assert (r["好吓人啊"]["y_surprise"], r["好吓人啊"]["y_fear"], r["好吓人啊"]["source_fear"]) == (0, 1, "auto")
    assert r["打卡路过"]["y_sadness"] is None and r["打卡路过"]["y_like"] == 0
    # retrain with the labelled set added: unknowns stay out of their emotion's classifier
    corpus = read_corpus(FIXTURES / "danmaku_corpus_zh.csv")
    data = pl.concat([corpus, out.select("text", *[pl.col(f"y_{e}").cast(pl.Int8) for e in EMOTIONS])])
    assert np.isnan(targets(data)).sum() == 1
    model = train_model(data, "light", split=(1, 0, 0))
    assert model.meta["n_train"] == corpus.height + 3 and model.meta["positives"]["fear"] == 31
    bad = q.with_columns(pl.lit("perhaps").alias("decision"))
    with pytest.raises(DanmakuError, match="line 2: 'perhaps'"):
        accept_reviews(lab, bad, "q.csv")


def test_windows_sum_to_one_or_are_empty():
    s = scored([
        ("v", 0.5, "x", [0.9, 0.9, 0.1, 0.1, 0.1, 0.1]),   # like + joy
        ("v", 3.0, "y", [0.9, 0.1, 0.1, 0.1, 0.1, 0.1]),   # like
        ("v", 4.99, "z", [0.1, 0.1, 0.1, 0.1, 0.1, 0.1]),  # nothing expressed
        ("v", 7.0, "n", [0.2, 0.1, 0.1, 0.1, 0.1, 0.1]),   # window 1: only neutral -> empty
        ("v", 13.0, "s", [0.1, 0.1, 0.1, 0.1, 0.1, 0.7]),  # window 2: sadness
        ("v", 30.0, "late", [0.9] * 6),                    # past the end: ignored
        ("w", 1.0, "q", [0.1, 0.1, 0.6, 0.6, 0.1, 0.1]),
    ])
    t = danmaku_windows(s, WindowsConfig(), durations={"v": 14.0, "u": 3.0})
    v = t.filter(pl.col("video_id") == "v")
    assert v["window"].to_list() == [0, 1, 2] and v["end_s"].to_list() == [5.0, 10.0, 14.0]
    assert v["n_comments"].to_list() == [3, 1, 1] and v["is_empty"].to_list() == [False, True, False]
    w0 = v.row(0, named=True)
    assert (w0["p_like"], w0["p_joy"], w0["n_expressed"]) == (pytest.approx(2 / 3), pytest.approx(1 / 3), 3)
    assert v.row(1, named=True)["p_like"] is None
    u = t.filter(pl.col("video_id") == "u")  # a video without comments: one empty window
    assert u["is_empty"].to_list() == [True] and u["n_comments"].to_list() == [0]
    sums = t.filter(~pl.col("is_empty")).select(pl.sum_horizontal(P_COLS)).to_series()
    np.testing.assert_allclose(sums.to_numpy(), 1.0)
    assert t.filter(pl.col("is_empty")).select(pl.all_horizontal(pl.col(c).is_null() for c in P_COLS)).to_series().all()
    soft = danmaku_windows(s, WindowsConfig(soft=True), durations={"v": 14.0})
    r = soft.filter((pl.col("video_id") == "v") & (pl.col("window") == 0)).row(0, named=True)
    assert r["p_like"] == pytest.approx((0.9 + 0.9 + 0.1) / (2.2 + 1.4 + 0.6))  # sums of probabilities
    # the 1 Hz frames inherit their window's label
    sec = window_seconds(t, {"v": 14.0, "u": 3.0, "w": 2.0})
    vs = sec.filter(pl.col("video_id") == "v")
    assert vs["time_s"].to_list() == [float(i) for i in range(14)]
    assert vs["window"].to_list() == [0] * 5 + [1] * 5 + [2] * 4
    assert vs.filter(pl.col("window") == 0)["p_like"].to_list() == [pytest.approx(2 / 3)] * 5
    # a classifier trained without an emotion: shares over the others, no column for it
    no_joy = danmaku_windows(s.drop("p_joy"), durations={"v": 14.0})
    assert "p_joy" not in no_joy.columns and "p_like" in no_joy.columns
    with pytest.raises(DanmakuError, match="no p_"):
        danmaku_windows(s.drop(*P_COLS))


def test_windows_end_where_the_file_stops_decoding(tmp_path):
    """The builder's --probe: a cut file (header 12 s, decodes to 7 s) has windows and 1 Hz
    seconds up to 7 s only; a video without a danmaku file gets none."""
    from evoke.danmaku.windows import DanmakuWindowsBuilder

    probe = tmp_path / "probe.parquet"
    pl.DataFrame({"video_id": ["cut", "plain"], "status": ["ok", "ok"], "duration_s": [12.0, 9.0],
                  "decoded_duration_s": [7.0, 9.0], "danmaku_path": ["cut.xml", None]}).write_parquet(probe)
    comments = tmp_path / "scored.parquet"
    scored([("cut", 1.0, "a", [0.9] + [0.1] * 5), ("cut", 6.9, "b", [0.1, 0.9] + [0.1] * 4)]).write_parquet(comments)
    res = DanmakuWindowsBuilder().run(scored=comments, probe=probe)
    assert res.table.select("video_id", "window", "end_s").rows() == [("cut", 0, 5.0), ("cut", 1, 7.0)]
    assert res.extra["seconds"]["time_s"].to_list() == [float(t) for t in range(7)]


def test_random_windows_property():
    rng = np.random.default_rng(0)
    n = 2000
    s = pl.DataFrame({"video_id": rng.choice(["a", "b", "c"], n), "time_s": rng.uniform(0, 120, n),
                      "text": ["t"] * n, **{c: rng.beta(0.5, 2.0, n) for c in P_COLS}})
    for cfg in (WindowsConfig(), WindowsConfig(soft=True), WindowsConfig(window_s=2.5, threshold=0.3)):
        t = danmaku_windows(s, cfg)
        full = t.filter(~pl.col("is_empty"))
        np.testing.assert_allclose(full.select(pl.sum_horizontal(P_COLS)).to_series().to_numpy(), 1.0, atol=1e-12)
        assert t["n_comments"].sum() == n
