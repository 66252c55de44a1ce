"""Bad input stops a run with a clear error: NaN features, disjoint videos, no training rows, one class."""

import h5py
import numpy as np
import polars as pl
import pytest

from evoke.heads.data import HeadDataError
from evoke.heads.synthetic import write_synthetic_dataset
from evoke.tasks import TaskError, run_task

from .conftest import FAST, FEATURES


@pytest.fixture
def small(tmp_path):
    d = tmp_path / "ds"
    write_synthetic_dataset(d, n_videos=16, seconds=(4, 5), seed=1)
    return d


def test_nan_features_name_the_video(small, tmp_path):
    with h5py.File(small / "features" / "motion" / "s00000.h5", "r+") as f:
        v = f["v0003/values"][()]
        v[1, 0] = np.nan
        f["v0003/values"][...] = v
    with pytest.raises(HeadDataError, match=r"v0003.*motion.*NaN"):
        run_task("vce", "linear", FEATURES, small, tmp_path / "out", FAST)


def test_disjoint_labels_and_features_name_counts(small, tmp_path):
    p = small / "labels" / "vce.parquet"
    pl.read_parquet(p).with_columns(("other_" + pl.col("video_id")).alias("video_id")).write_parquet(p)
    with pytest.raises(TaskError, match=r"share no video: the labels name 16 video\(s\), the features hold 16"):
        run_task("vce", "lightgbm", FEATURES, small, tmp_path / "out", FAST)


def test_no_training_examples(small, tmp_path):
    p = small / "labels" / "eev.parquet"
    pl.read_parquet(p).with_columns(pl.lit("test").alias("split")).write_parquet(p)
    with pytest.raises(TaskError, match="no training examples"):
        run_task("eev", "linear", FEATURES, small, tmp_path / "out", FAST)


def test_unknown_extractor(small, tmp_path):
    with pytest.raises(HeadDataError, match="vggish"):
        run_task("vce", "linear", ["colour", "vggish"], small, tmp_path / "out", FAST)


@pytest.mark.parametrize("head", ["linear", "full"])
def test_single_class_split(small, tmp_path, head):
    for name in ("viewer_valence.parquet", "viewer_valence_segments.parquet"):
        p = small / "labels" / name
        df = pl.read_parquet(p)
        df.with_columns(pl.col(c).fill_null(1) * 0 + 1 for c in df.columns
                        if c.startswith("valence_bin")).write_parquet(p)
    with pytest.raises((TaskError, HeadDataError), match="single class"):
        run_task("viewer_valence", head, FEATURES, small, tmp_path / "out", FAST)


def test_single_emotion_distribution(small, tmp_path):
    p = small / "labels" / "vce.parquet"
    df = pl.read_parquet(p)
    cols = [c for c in df.columns if c.startswith("p_")]
    df.with_columns([pl.lit(1.0 if c == "p_joy" else 0.0).alias(c) for c in cols]).write_parquet(p)
    with pytest.raises(HeadDataError, match="single class"):
        run_task("vce", "lightgbm", FEATURES, small, tmp_path / "out", FAST)


def test_head_not_offered_by_task(small, tmp_path):
    with pytest.raises(TaskError, match="has no head 'full'"):
        run_task("v2v_from_emotions", "full", [], small, tmp_path / "out", FAST)
