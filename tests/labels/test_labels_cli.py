"""The `evoke labels ...` and `evoke danmaku ...` commands: outputs, errors (exit 2, one line), --strict."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from evoke.danmaku import EMOTIONS

from .conftest import DEMO_ANNOTATIONS, FIXTURES, demo_file


def one_line_error(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.startswith("evoke: error:")]
    assert len(lines) == 1, err
    return lines[0]


def test_vce_cli_with_report_and_strict(tmp_path, run_cli):
    r = tmp_path / "r.csv"
    r.write_text("annotator_id,video_id,emotion,intensity\na,v1,joy,5\nb,v1,awe,11\nc,v2,joy,3\n")
    videos = tmp_path / "videos.csv"
    videos.write_text("video_id,source,split\nv1,x,train\nv3,y,test\n")
    rc, err = run_cli("labels", "vce", "--responses", r, "--videos", videos, "--out", tmp_path / "vce.parquet",
                      "--report", tmp_path / "rep.json")
    assert rc == 0, err
    t = pl.read_parquet(tmp_path / "vce.parquet")
    assert t.select("video_id", "split").rows() == [("v1", "train")]
    rep = json.loads((tmp_path / "rep.json").read_text())
    assert rep["dropped"]["counts"] == {"intensity_out_of_range": 1, "unknown_video": 1}
    before = (tmp_path / "vce.parquet").read_bytes()
    rc, err = run_cli("labels", "vce", "--responses", r, "--out", tmp_path / "vce.parquet", "--strict")
    assert rc == 2 and "intensity_out_of_range" in one_line_error(err) and str(r) in err
    assert (tmp_path / "vce.parquet").read_bytes() == before  # nothing already written is lost
    rc, err = run_cli("labels", "vce", "--responses", tmp_path / "missing.csv", "--out", tmp_path / "x.parquet")
    assert rc == 2 and "missing.csv: VCE responses not found" in one_line_error(err)
    rc, err = run_cli("labels", "vce", "--responses", r, "--emotions", "joy,awe", "--positive", "joy",
                      "--out", tmp_path / "two.parquet")
    assert rc == 0 and [c for c in pl.read_parquet(tmp_path / "two.parquet").columns if c.startswith("p_")] == \
        ["p_joy", "p_awe"]


def test_every_builder_on_the_demo(tmp_path, run_cli):
    if not (DEMO_ANNOTATIONS / "vce_responses.csv").is_file():
        pytest.skip("demo not built")
    ann = DEMO_ANNOTATIONS
    manifest = ann.parent / "manifest.csv"
    out = tmp_path
    steps = [
        ("labels", "vce", "--responses", ann / "vce_responses.csv", "--videos", manifest,
         "--min-annotator-agreement", "0.1", "--out", out / "vce.parquet"),
        ("labels", "v2v-votes", "--votes", ann / "v2v_votes.csv", "--videos", manifest, "--out", out / "pairs.parquet"),
        ("labels", "v2v-lists", "--pairs", out / "pairs.parquet", "--out", out / "lists.parquet"),
        ("labels", "v2v-sample", "--labels", out / "vce.parquet", "--n", "30", "--exclude", out / "pairs.parquet",
         "--out", out / "sample.parquet"),
        ("labels", "eev", "--csv", ann / "eev.csv", "--videos", manifest, "--out", out / "eev.parquet"),
        ("labels", "viewers", "--ratings", ann / "viewer_valence.csv", "--segment-length", "5",
         "--segments-out", out / "seg.parquet", "--out", out / "vv.parquet"),
        ("danmaku", "parse", *sorted((ann / "danmaku").glob("*.xml")), "--out", out / "comments.parquet"),
        ("danmaku", "train", "--corpus", ann / "danmaku_corpus.csv", "--out", out / "model"),
        ("danmaku", "classify", "--model", out / "model", "--comments", out / "comments.parquet",
         "--out", out / "scored.parquet"),
        ("danmaku", "review", "--scored", out / "scored.parquet", "--labelled", out / "auto.parquet",
         "--queue", out / "queue.csv"),
        ("danmaku", "accept", "--labelled", out / "auto.parquet", "--queue", out / "queue.csv",
         "--out", out / "labelled.parquet"),
        ("danmaku", "train", "--corpus", ann / "danmaku_corpus.csv", "--extra", out / "labelled.parquet",
         "--split", "1,0,0", "--out", out / "model2"),
        ("danmaku", "windows", "--scored", out / "scored.parquet", "--window", "5", "--out", out / "windows.parquet",
         "--seconds-out", out / "seconds.parquet"),
    ]
    for args in steps:
        rc, err = run_cli(*args)
        assert rc == 0, (args[:2], err)
    vce = pl.read_parquet(out / "vce.parquet")
    assert vce["split"].null_count() == 0
    sample = pl.read_parquet(out / "sample.parquet")
    done = {tuple(sorted(r)) for r in pl.read_parquet(out / "pairs.parquet").select(
        "less_pleasant", "more_pleasant").rows()}
    assert not done & {tuple(sorted(r)) for r in sample.select("video_a", "video_b").rows()}
    w = pl.read_parquet(out / "windows.parquet")
    full = w.filter(~pl.col("is_empty"))
    np.testing.assert_allclose(full.select(pl.sum_horizontal(f"p_{e}" for e in EMOTIONS)).to_series(), 1.0)
    meta = json.loads((out / "model" / "model.json").read_text())
    assert meta["metrics"]["macro_auc"] > 0.9
    # the simulated 'past the end' comments are kept without a duration; with the ingest
    # stage's durations they are dropped (see test_danmaku_parse.test_probe_mode_records_failures)
    assert pl.read_parquet(out / "comments.parquet").height > 100


def test_danmaku_cli_errors(tmp_path, run_cli):
    bad = tmp_path / "bad.xml"
    bad.write_text("<i><d p='1,1,25,0,0,0,u,1'>x</i>")
    rc, err = run_cli("danmaku", "parse", bad, "--out", tmp_path / "c.parquet")
    assert rc == 2 and "bad.xml: malformed XML" in one_line_error(err)
    assert not (tmp_path / "c.parquet").exists()
    rc, err = run_cli("danmaku", "parse", "--out", tmp_path / "c.parquet")
    assert rc == 2 and "give one or more danmaku files" in one_line_error(err)
    corpus = tmp_path / "c.csv"
    corpus.write_text("text,label\n好,joy\n怪,weird\n")
    rc, err = run_cli("danmaku", "train", "--corpus", corpus, "--out", tmp_path / "m")
    assert rc == 2 and "weird (1)" in one_line_error(err) and not (tmp_path / "m").exists()
    rc, err = run_cli("danmaku", "classify", "--model", tmp_path / "nomodel", "--comments", corpus,
                      "--out", tmp_path / "s.parquet")
    assert rc == 2 and "no model.json" in one_line_error(err)
    rc, err = run_cli("danmaku", "parse", FIXTURES / "bilibili_8729348.xml", "--strict",
                      "--out", tmp_path / "c.parquet")
    assert rc == 2 and "mode_dropped_positioned" in one_line_error(err)


def test_probe_mode_cli_writes_failures(tmp_path, run_cli, monkeypatch):
    monkeypatch.chdir(tmp_path)
    vdir = tmp_path / "results" / "ds" / "ingest" / "videos"
    (vdir / "a").mkdir(parents=True)
    (vdir / "b").mkdir(parents=True)
    (vdir / "a" / "danmaku.xml").write_bytes((FIXTURES / "bilibili_8729348.xml").read_bytes())
    (vdir / "b" / "danmaku.xml").write_text("<i><d p='1,1,25,0,0,0,u,1'>")
    probe = tmp_path / "results" / "ds" / "ingest" / "probe.parquet"
    pl.DataFrame({"video_id": ["a", "b"], "split": ["train", "test"], "shard": ["s00000"] * 2,
                  "status": ["ok", "ok"], "duration_s": [100.0, 10.0],
                  "danmaku_path": ["ingest/videos/a/danmaku.xml", "ingest/videos/b/danmaku.xml"]}).write_parquet(probe)
    rc, err = run_cli("danmaku", "parse", "--probe", probe, "--dataset", "ds", "--out", tmp_path / "c.parquet")
    assert rc == 0, err
    c = pl.read_parquet(tmp_path / "c.parquet")
    assert c["video_id"].unique().to_list() == ["a"] and c["time_s"].max() < 100
    fail = pl.read_parquet(tmp_path / "results" / "ds" / "failures.parquet")
    assert fail.select("video_id", "stage").rows() == [("b", "labels")]
    # windows up to each video's end; b (unparsable) has no comments but a file: all empty
    model_dir = tmp_path / "m"
    assert run_cli("danmaku", "train", "--corpus", FIXTURES / "danmaku_corpus_zh.csv", "--split", "1,0,0",
                   "--out", model_dir)[0] == 0
    assert run_cli("danmaku", "classify", "--model", model_dir, "--comments", tmp_path / "c.parquet",
                   "--out", tmp_path / "s.parquet")[0] == 0
    rc, err = run_cli("danmaku", "windows", "--scored", tmp_path / "s.parquet", "--probe", probe,
                      "--out", tmp_path / "w.parquet", "--seconds-out", tmp_path / "sec.parquet")
    assert rc == 0, err
    w = pl.read_parquet(tmp_path / "w.parquet")
    assert w.filter(pl.col("video_id") == "a").height == 20
    assert w.filter(pl.col("video_id") == "b")["is_empty"].to_list() == [True, True]
    sec = pl.read_parquet(tmp_path / "sec.parquet")
    assert sec.filter(pl.col("video_id") == "a").height == 100


def test_list_builders(run_cli, capsys):
    from evoke.cli import main

    assert main(["labels", "list"]) == 0
    out = capsys.readouterr().out
    for name in ("vce", "v2v_pairs", "v2v_lists", "v2v_sample", "eev", "continuous", "danmaku_windows"):
        assert name in out


def test_demo_file_helper_skips_cleanly():
    with pytest.raises(pytest.skip.Exception):
        demo_file("no_such_annotation.csv")
