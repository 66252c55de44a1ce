"""Features larger than the memory budget are read from the store as the heads ask, with the
same values as when they are all held in memory."""

import h5py
import numpy as np
import pytest

from evoke.heads.data import FeatureSet, HeadDataError, VideoStore
from evoke.heads.full import input_stats
from evoke.heads.synthetic import write_synthetic_dataset
from evoke.tasks import run_task

from .conftest import FAST, FEATURES


@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
    d = tmp_path_factory.mktemp("sharded") / "ds"
    write_synthetic_dataset(d, n_videos=30, seconds=(4, 9), seed=3, shard_size=7, tables=("vce",))
    return d


def test_store_layout_has_shards_and_index_columns(sharded):
    import polars as pl

    from evoke.features.stage import STATUS_SCHEMA

    index = pl.read_parquet(sharded / "features" / "index.parquet")
    assert sorted(index["shard"].unique()) == ["s00000", "s00001", "s00002", "s00003", "s00004"]
    assert dict(index.schema) == STATUS_SCHEMA  # the features stage's index
    with h5py.File(sharded / "features" / "colour" / "s00004.h5") as f:
        assert len(f) == 2  # 30 videos, 7 per shard
        values = f[next(iter(f))]["values"]  # written as the features stage writes them
        assert (values.compression, values.compression_opts, values.chunks) == ("gzip", 4, values.shape)


def test_a_shard_drawn_at_once_is_the_stream_of_one_video_at_a_time(sharded, tmp_path):
    """Generating a whole shard at once draws the same values as one video per shard, and
    writing only viewer_valence gives the table that writing every per-second table gives."""
    import polars as pl

    d = tmp_path / "one"
    write_synthetic_dataset(d, n_videos=30, seconds=(4, 9), seed=3, shard_size=1, tables=("vce",))
    a, b = FeatureSet.load(sharded, FEATURES, memory_mb=None), FeatureSet.load(d, FEATURES, memory_mb=None)
    for v in sorted(a.video_ids):
        for e in FEATURES:
            np.testing.assert_array_equal(a.data[v][e].values, b.data[v][e].values)
    write_synthetic_dataset(tmp_path / "all", n_videos=20, seconds=(3, 4), seed=4,
                            tables=("eev", "danmaku", "viewer_valence"))
    write_synthetic_dataset(tmp_path / "vv", n_videos=20, seconds=(3, 4), seed=4, tables=("viewer_valence",))
    for name in ("viewer_valence", "viewer_valence_segments"):
        full, alone = (pl.read_parquet(tmp_path / k / "labels" / f"{name}.parquet") for k in ("all", "vv"))
        assert full.equals(alone)
    assert full.height == 20 * 2 and alone["valence_bin__b"].null_count() == 0  # segments
    seconds = pl.read_parquet(tmp_path / "vv" / "labels" / "viewer_valence.parquet")
    assert seconds["valence_bin__b"].null_count() == 20  # viewer b has no label at each video's first second


def test_bounded_cache_gives_the_in_memory_values(sharded):
    full = FeatureSet.load(sharded, FEATURES, memory_mb=None)
    lazy = FeatureSet.load(sharded, FEATURES, memory_mb=0.004)  # about 4 KB: a few videos at a time
    assert isinstance(lazy.data, VideoStore) and lazy.data.reads == 0
    assert full.data.reads == 30
    assert lazy.video_ids == full.video_ids and lazy.dims == full.dims == {"colour": 8, "motion": 3}
    vids = sorted(full.video_ids)
    for _ in range(2):  # two passes: the second reads from disk again (the cache is bounded)
        np.testing.assert_array_equal(lazy.pooled_matrix(vids, None, 6), full.pooled_matrix(vids, None, 6))
    assert lazy.data.reads >= 60 and len(lazy.data._cache) < 30
    assert lazy.data._bytes <= 0.004 * 2 ** 20 or len(lazy.data._cache) == 1
    for v in vids[:5]:
        a, b = lazy.sequence(v, 3.0, 5), full.sequence(v, 3.0, 5)
        for e in FEATURES:
            np.testing.assert_array_equal(a[e], b[e])


def test_streamed_input_stats_match_numpy(sharded):
    fs = FeatureSet.load(sharded, FEATURES, memory_mb=0.004)
    vids = sorted(fs.video_ids)[:20]
    stats = input_stats(fs, vids)
    for e in FEATURES:
        allv = np.concatenate([fs.data[v][e].values for v in vids]).astype(np.float64)
        np.testing.assert_allclose(stats[e][0], allv.mean(0), rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(stats[e][1], allv.std(0), rtol=1e-7, atol=1e-9)


def test_nan_in_a_lazily_read_video_names_it(sharded, tmp_path):
    import shutil

    d = tmp_path / "ds"
    shutil.copytree(sharded, d)
    with h5py.File(d / "features" / "motion" / "s00002.h5", "r+") as f:
        f["v0015/values"][2, 1] = np.inf
    fs = FeatureSet.load(d, FEATURES, memory_mb=0.004)  # nothing read yet
    with pytest.raises(HeadDataError, match=r"v0015.*motion"):
        fs.pooled_matrix(sorted(fs.video_ids), None, 6)


def test_training_with_a_small_budget_equals_in_memory(sharded, tmp_path):
    fast = dict(FAST, full=dict(FAST["full"], epochs=2))
    a = run_task("vce", "full", FEATURES, sharded, tmp_path / "a", dict(fast, feature_memory_mb=0.004))
    b = run_task("vce", "full", FEATURES, sharded, tmp_path / "b", fast)
    assert a["metrics"] == b["metrics"]
    assert a["config_hash"] == b["config_hash"]  # the cache size does not change what is trained
