

def test_vce_released_topk_is_used_as_given(syn_dir, tmp_path):
    """An imported VCE table (no responses, so null n_annotators; the release's topK in top1-top3)
    is scored against its topK as given, not against a ranking of the intensities."""
    d = tmp_path / "imported"
    d.mkdir()
    for sub in ("features", "ingest"):
        (d / sub).symlink_to(syn_dir / sub)
    (d / "labels").mkdir()
    vce = pl.read_parquet(syn_dir / "labels" / "vce.parquet")
    # a release whose topK puts the label's third emotion first and drops the others
    cols = [c for c in vce.columns if c.startswith("p_")]
    third = [cols[int(np.argsort(-np.array(r))[2])][2:] for r in vce.select(cols).iter_rows()]
    vce = vce.with_columns(pl.Series("top1", third), pl.lit(None, dtype=pl.String).alias("top2"),
                           pl.lit(None, dtype=pl.String).alias("top3"),
                           pl.lit(None, dtype=pl.Int32).alias("n_annotators"))
    vce.write_parquet(d / "labels" / "vce.parquet")
    rec = run_task("vce", "linear", ["colour"], d, tmp_path / "run", FAST)
    test = rec["metrics"]["test"]
    assert test["top3_rule"] == "released topK"
    pred = pl.read_parquet(tmp_path / "run" / "predictions.parquet").filter(pl.col("split") == "test")
    pcols = [c for c in pred.columns if c.startswith("pred_")]
    top = dict(zip(vce["video_id"], vce["top1"]))
    hits = [pcols[int(np.argmax(r[1:]))][5:] == top[r[0]] for r in pred.select("video_id", *pcols).iter_rows()]
    assert test["top3_accuracy"] == pytest.approx(np.mean(hits))
    assert rec["baselines"]["random"]["top3_accuracy"] == pytest.approx(1 / 27)  # one given emotion per video
