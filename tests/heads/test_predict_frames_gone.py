"""A model trained where the frames files are gone (``frames.keep: false``) predicts new videos:
the features store records the frames settings it was extracted from, the model card takes
them from there, and ``evoke predict --video`` reproduces the run's predictions. A store from
before those attributes still gives the clear refusal; frames files that disagree with the
store stop the card with both files named.

Lean: six short demo clips through the workflow's own ingest, frames and features code on one
shard (:func:`evoke.predict.run._extract`, the ``colour`` extractor at 64 px), EEV labels from the
demo's CSV, linear heads.
"""

import shutil

import h5py
import polars as pl
import pytest

from evoke.config import validate_config
from evoke.features.stage import FRAMES_SETTINGS
from evoke.frames import settings_fingerprint
from evoke.labels import get_label_builder
from evoke.labels.common import VideoIndex
from evoke.predict.model import PredictError, frames_identity, read_card
from evoke.predict.run import SHARD, _extract, predict_videos
from evoke.store import write_parquet
from evoke.tasks import run_task

from .conftest import FAST
from .test_predict_e2e import DEMO, _clips

SPLITS = {"demo_007": "train", "demo_009": "train", "demo_026": "train", "demo_028": "train",
          "demo_029": "val", "demo_000": "test"}
FRAMES = {"rate_hz": 1.0, "short_side": 64, "backend": "pyav"}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A dataset folder whose frames were removed after its features were extracted, its frames
    file kept aside (``kept``), and a linear EEV model trained on it."""
    d = tmp_path_factory.mktemp("keepfalse") / "tiny"
    clips = _clips()
    manifest = pl.DataFrame([{"video_id": v, "source": str(clips[v]), "split": s} for v, s in SPLITS.items()])
    full = validate_config({"manifest": "-", "frames": FRAMES})
    _extract(d, manifest, full["ingest"], full["frames"],
             {"colour": {"config": {}, "device": "cpu", "weights": {}}})
    write_parquet(manifest, d / "manifest.parquet")
    eev = get_label_builder("eev")
    labels = eev().run(VideoIndex.from_file(d / "manifest.parquet"), csv=DEMO / "annotations" / "eev.csv",
                       probe=d / "ingest" / "probe.parquet")
    write_parquet(labels.table, d / "labels" / "eev.parquet")
    kept = d.parent / "kept_frames.h5"
    shutil.move(d / "frames" / f"{SHARD}.h5", kept)  # what frames.keep: false leaves
    run = d / "train" / "eev" / "linear" / "colour"
    run_task("eev", "linear", ["colour"], d, run, FAST, ingest_settings=full["ingest"])
    return d, kept, run


def test_keep_false_card_records_the_frames_and_predict_video_reproduces_training(store):
    d, _, run = store
    card = read_card(run)
    assert card["frames"] == {**FRAMES, "config_hash": settings_fingerprint(FRAMES)}
    with h5py.File(d / "features" / "colour" / f"{SHARD}.h5", "r") as f:
        assert {k: f["demo_000"].attrs[f"frames_{k}"] for k in FRAMES_SETTINGS} == card["frames"]
    clips = _clips()
    new = ["demo_029", "demo_000"]
    predicted = predict_videos(run, [str(clips[v]) for v in new])  # what evoke predict --video runs
    trained = pl.read_parquet(run / "predictions.parquet")
    j = trained.join(predicted, on=["video_id", "time_s"], suffix="_new", how="left")
    assert set(trained["video_id"]) == set(new) and j.height == trained.height > 10
    for c in (c for c in trained.columns if c.startswith("pred_")):
        assert j[f"{c}_new"].null_count() == 0, c
        assert float((j[c] - j[f"{c}_new"]).abs().max()) < 1e-6, c


def test_frames_files_and_store_agree_or_stop_naming_both(store, tmp_path):
    d, kept, run = store
    frames = d / "frames" / f"{SHARD}.h5"
    shutil.copy(kept, frames)
    try:
        assert frames_identity(d, "demo_000", ["colour"]) == read_card(run)["frames"]
        with h5py.File(frames, "r+") as f:
            f["demo_000"].attrs["short_side"] = 96
        with pytest.raises(PredictError, match=r"^demo_000: .* records frames settings .* the features were not") as e:
            frames_identity(d, "demo_000", ["colour"])
        assert str(frames) in str(e.value) and "features/colour/s00000.h5" in str(e.value)
        assert "96" in str(e.value) and "64" in str(e.value)
    finally:
        frames.unlink()


def test_a_store_from_before_the_frames_attributes_is_refused_as_today(store, tmp_path):
    d, _, _ = store
    old = shutil.copytree(d, tmp_path / "tiny", ignore=shutil.ignore_patterns("train"))
    with h5py.File(old / "features" / "colour" / f"{SHARD}.h5", "r+") as f:
        for g in f.values():
            for k in FRAMES_SETTINGS[:-1]:  # what an older evoke wrote: frames_config_hash only
                del g.attrs[f"frames_{k}"]
    assert frames_identity(old, "demo_000", ["colour"]) is None
    run = tmp_path / "run"
    run_task("eev", "linear", ["colour"], old, run, FAST)
    assert read_card(run)["frames"] is None
    with pytest.raises(PredictError, match="model.json records no frames settings"):
        predict_videos(run, [str(_clips()["demo_000"])])
