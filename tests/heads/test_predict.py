"""Saved models and evoke predict on stored features: every task and head round-trips, refusals.

The end-to-end path (raw clips through ingest, frames and features) is in
``test_predict_e2e.py`` (slow).
"""

import json
import shutil

import h5py
import numpy as np
import polars as pl
import pytest

from evoke.predict.model import MODEL_FORMAT, PredictError, predict_models, read_card, run_key
from evoke.predict.run import check_extractors, predict_dataset, work_manifest
from evoke.tasks import TASKS, run_task

from .conftest import FAST

# two epochs are enough to test the round trip of a trained network
QUICK = {**FAST, "full": {**FAST["full"], "epochs": 2}, "lightgbm": {"n_estimators": 20}}
RUNS = [(t, h) for t in sorted(TASKS) for h in TASKS[t].heads]


def _features(task):
    return ["colour", "motion"] if TASKS[task].uses_features else []


def _max_diff(trained: pl.DataFrame, predicted: pl.DataFrame) -> tuple[int, float]:
    keys = ["video_id"] + (["time_s"] if "time_s" in trained.columns else [])
    j = trained.join(predicted, on=keys, suffix="_p", how="left")
    cols = [c for c in trained.columns if c.startswith("pred_")]
    assert j.select(pl.col(f"{c}_p").null_count() for c in cols).sum_horizontal().item() == 0, \
        "a trained unit is missing from the predictions"
    return j.height, max(float((j[c] - j[f"{c}_p"]).abs().max()) for c in cols)


@pytest.fixture(scope="module")
def runs(syn_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    for task, head in RUNS:
        # viewer_valence per second here (every second of a video is a unit); a segment run (the
        # default protocol) predicts its segments: test_a_segment_model_predicts_its_own_segments
        settings = QUICK | ({"viewer_valence": {"units": "second"}} if task == "viewer_valence" else {})
        run_task(task, head, _features(task), syn_dir, root / task / head, settings)
    return root


@pytest.mark.parametrize("task,head", RUNS)
def test_a_copied_model_folder_gives_the_run_predictions(runs, syn_dir, tmp_path, task, head):
    # the run folder copied elsewhere is enough: predict from the copy
    run = shutil.copytree(runs / task / head, tmp_path / "copied")
    shutil.rmtree(run / "checkpoint", ignore_errors=True)
    trained = pl.read_parquet(run / "predictions.parquet")
    predicted = predict_dataset(run, syn_dir, tmp_path / "out.parquet")
    assert pl.read_parquet(tmp_path / "out.parquet").equals(predicted)
    assert predicted.columns == trained.columns  # video_id[, time_s], split, pred_*
    n, diff = _max_diff(trained, predicted)
    assert n == trained.height and diff < 1e-6, (task, head, diff)
    # every video with features (labelled or not) is predicted, with its split
    assert predicted["video_id"].n_unique() == 70
    split = dict(pl.read_parquet(syn_dir / "ingest" / "probe.parquet").iter_rows())
    assert all(split[v] == s for v, s in predicted.select("video_id", "split").unique().iter_rows())
    card = read_card(run)
    assert card["task"] == task and card["head"] == head and card["format_version"] == MODEL_FORMAT
    assert card["classes"] == [c[len("pred_"):] for c in trained.columns if c.startswith("pred_")]
    assert card["training"]["dataset"] == syn_dir.name
    assert card["metrics"]["test"] == json.loads((run / "metrics.json").read_text())["metrics"]["test"]
    if TASKS[task].per_second:  # every second of every video: the synthetic videos have 5 to 7
        assert predicted.height == sum(
            pl.read_parquet(syn_dir / "features" / "index.parquet").filter(pl.col("extractor") == "colour")["n_steps"])


def test_full_head_card_records_the_constructor_and_normalisation(runs):
    card = read_card(runs / "vce" / "full")
    (part,) = card["parts"]
    assert part["kwargs"]["modality_dims"] == {"colour": 8, "motion": 3}
    assert part["kwargs"]["gru_hidden"] == {"colour": QUICK["full"]["gru_hidden"], "motion": QUICK["full"]["gru_hidden"]}
    assert part["kwargs"]["n_outputs"] == 27 and part["kwargs"]["moe"] == "youtube8m"
    with np.load(runs / "vce" / "full" / "model" / part["input_stats"]) as z:
        assert set(z.files) == {"mean_colour", "std_colour", "mean_motion", "std_motion"}
        assert z["std_colour"].shape == (8,) and np.all(z["std_colour"] > 0)
    light = read_card(runs / "vce" / "linear")["parts"][0]["model"]
    with np.load(runs / "vce" / "linear" / "model" / light["arrays"]) as z:
        assert z["W"].shape[0] == z["mean"].shape[0] == 3 * (8 + 3)  # mean, max, std pooled
    lgbm = read_card(runs / "eev" / "lightgbm")["parts"][0]["model"]
    files = [c["booster"] for c in lgbm["columns"] if "booster" in c]
    assert files and (runs / "eev" / "lightgbm" / "model" / files[0]).read_text().startswith("tree")


def _stamp(ddir, extractor, **attrs):
    for p in sorted((ddir / "features" / extractor).glob("*.h5")):
        with h5py.File(p, "r+") as f:
            f.attrs.update(attrs)


@pytest.fixture()
def stamped(syn_dir, tmp_path):
    """A copy of the synthetic set whose colour features say how they were made, and a run on it."""
    d = shutil.copytree(syn_dir, tmp_path / "stamped")
    _stamp(d, "colour", config_hash="aaaa1111", weights="none")
    _stamp(d, "motion", config_hash="cccc3333", weights="none")
    run = tmp_path / "run"
    run_task("vce", "linear", ["colour", "motion"], d, run, QUICK)
    return d, run


def test_features_made_otherwise_are_refused_naming_extractor_and_hashes(stamped):
    d, run = stamped
    assert read_card(run)["extractors"]["colour"]["config_hash"] == "aaaa1111"
    predict_dataset(run, d)  # same settings: fine
    _stamp(d, "colour", config_hash="bbbb2222")
    with pytest.raises(PredictError, match=r"extractor colour: .*config hash aaaa1111 .*config hash bbbb2222"):
        predict_dataset(run, d)
    _stamp(d, "colour", config_hash="aaaa1111", weights="resnet:0123")
    with pytest.raises(PredictError, match=r"extractor colour: .*weights none .*weights resnet:0123"):
        predict_dataset(run, d)


def test_shards_made_with_different_settings_are_refused(stamped, tmp_path):
    d, run = stamped
    index = pl.read_parquet(d / "features" / "index.parquet")
    # split colour's shard into two files, one of them re-stamped
    vids = sorted(index.filter(pl.col("extractor") == "colour")["video_id"])
    with h5py.File(d / "features" / "colour" / "s00000.h5", "r") as src, \
            h5py.File(d / "features" / "colour" / "s00001.h5", "w") as dst:
        for v in vids[:5]:
            src.copy(src[v], dst, name=v)
        dst.attrs.update(config_hash="dddd4444", weights="none")
    index = index.with_columns(
        pl.when((pl.col("extractor") == "colour") & pl.col("video_id").is_in(vids[:5]))
        .then(pl.lit("features/colour/s00001.h5")).otherwise(pl.col("h5_path")).alias("h5_path"))
    index.write_parquet(d / "features" / "index.parquet")
    with pytest.raises(PredictError, match=r"extractor colour: its shard files .*aaaa1111.*dddd4444"):
        predict_dataset(run, d)


def test_this_evokes_extractor_with_other_settings_is_refused():
    card = {"extractors": {"colour": {"config": {}, "config_hash": "0000feed", "weights": "none"}}}
    frames = {"rate_hz": 1.0, "short_side": 360, "backend": "pyav"}
    with pytest.raises(PredictError, match=r"extractor colour: .*config hash 0000feed but .*config hash [0-9a-f]{16}"):
        check_extractors(card, {"colour": {"config": {}, "weights": {}}}, frames)


def test_a_newer_model_format_is_refused(runs, tmp_path):
    run = shutil.copytree(runs / "vce" / "lightgbm", tmp_path / "run")
    card = json.loads((run / "model" / "model.json").read_text())
    card["format_version"] = MODEL_FORMAT + 1
    card["evoke_version"] = "9.0.0"
    (run / "model" / "model.json").write_text(json.dumps(card))
    with pytest.raises(PredictError, match=rf"model format {MODEL_FORMAT + 1} \(written by evoke 9.0.0\) is newer"):
        read_card(run)
    with pytest.raises(PredictError, match="no model/model.json"):
        read_card(tmp_path)


def test_a_broken_model_folder_names_the_missing_file(runs, tmp_path, syn_dir):
    run = shutil.copytree(runs / "eev" / "full", tmp_path / "run")
    (run / "model" / "part0.pt").unlink()
    with pytest.raises(PredictError, match="part0.pt: state dict missing"):
        predict_dataset(run, syn_dir)


def test_workflow_model_keys_from_cards_and_paths(runs, tmp_path):
    assert run_key(runs / "eev" / "lightgbm") == ("eev", "lightgbm", "colour+motion")
    future = tmp_path / "results" / "x" / "train" / "vce" / "full" / "colour+motion"
    assert run_key(future) == ("vce", "full", "colour+motion")  # not trained yet: from the path
    with pytest.raises(PredictError, match="is not a run folder"):
        run_key(tmp_path / "somewhere")
    with pytest.raises(PredictError, match="same file"):
        predict_models([str(future), str(future) + "/"])


def test_video_ids_are_stems_and_clashes_are_refused(tmp_path):
    (tmp_path / "a").mkdir()
    for p in (tmp_path / "clip.mp4", tmp_path / "a" / "clip.mkv"):
        p.write_bytes(b"x")
    m = work_manifest([str(tmp_path / "clip.mp4"), "https://example.org/v/other.webm?x=1"])
    assert m["video_id"].to_list() == ["clip", "other"]
    with pytest.raises(PredictError, match="same stem 'clip'"):
        work_manifest([str(tmp_path / "clip.mp4"), str(tmp_path / "a" / "clip.mkv")])
    with pytest.raises(PredictError, match="no such file"):
        work_manifest([str(tmp_path / "missing.mp4")])


@pytest.mark.parametrize("task,head", [("eev", "lightgbm"), ("vce", "linear"), ("v2v", "linear")])
def test_timelines_one_png_per_video(runs, syn_dir, tmp_path, task, head):
    from PIL import Image

    from evoke.predict.plot import plot_timelines

    table = predict_dataset(runs / task / head, syn_dir)
    table = table.filter(pl.col("video_id").is_in(sorted(table["video_id"].unique())[:3]))
    written = plot_timelines(table, read_card(runs / task / head), tmp_path / "plots")
    pngs = sorted(tmp_path.glob("plots/*.png"))
    assert pngs == sorted(written) and [p.stem for p in pngs] == sorted(table["video_id"].unique())
    with Image.open(pngs[0]) as im:
        w, h = im.size
        pixels = np.asarray(im.convert("L"))
    assert w > 200 and h > 100 and pixels.std() > 10  # drawn, not blank



def test_a_segment_model_predicts_its_own_segments(syn_dir, tmp_path):
    """units: segment (the default) on fixed 2-second segments: the card records the unit and the
    length; predict pools each window over every video as training pooled its segments, one row
    per segment with its start and end (cues: tests/heads/test_cognimuse.py)."""
    run = tmp_path / "run"
    run_task("viewer_valence", "linear", ["colour", "motion"], syn_dir, run, QUICK)
    card = read_card(run)
    assert card["unit"] == "segment" and card["segments"] == {"source": "fixed", "segment_s": 2.0}
    trained = pl.read_parquet(run / "predictions.parquet")
    predicted = predict_dataset(run, syn_dir)
    assert predicted.columns[:6] == ["video_id", "segment", "start_s", "end_s", "time_s", "split"]
    n, diff = _max_diff(trained, predicted)
    assert n == trained.height and diff < 1e-6, diff
    assert predicted.select("video_id", "time_s").is_duplicated().sum() == 0
    assert predicted["video_id"].n_unique() == 70 and set(predicted["end_s"] - predicted["start_s"]) == {2.0}
