import os

import polars as pl
import pytest

from evoke.config import ConfigError, load_config, validate_config
from evoke.manifest import ManifestError, assign_shards, read_manifest, shard_rows
from evoke.store import atomic_path, clean_stale_temporaries, merge_failures, write_parquet


def write_csv(path, text):
    path.write_text(text)
    return path


# --- config ------------------------------------------------------------------

def test_defaults_are_filled_in():
    cfg = validate_config({"manifest": "videos/m.csv"})
    assert cfg["dataset"] == "m" and cfg["shard_size"] == 200  # dataset: the manifest's name
    assert cfg["frames"] == {"rate_hz": 1.0, "short_side": 360, "backend": "pyav", "keep": True}
    assert cfg["ingest"]["retries"] == 3 and cfg["ingest"]["max_height"] == 720


def test_unknown_key_and_bad_value_are_named():
    with pytest.raises(ConfigError, match=r"frames: Additional properties are not allowed \('fps' was unexpected\)"):
        validate_config({"manifest": "m", "frames": {"fps": 2}})
    with pytest.raises(ConfigError, match=r"frames\.rate_hz: -1 is less than or equal to the minimum of 0"):
        validate_config({"manifest": "m", "frames": {"rate_hz": -1}})
    with pytest.raises(ConfigError, match=r"shard_size: 0 is less than the minimum of 1"):
        validate_config({"manifest": "m", "shard_size": 0})
    with pytest.raises(ConfigError, match=r"no manifest given\. .*--config dataset=NAME manifest=FILE"):
        validate_config({})


def test_repository_config_is_valid_with_a_manifest_and_trains_nothing():
    from conftest import REPO

    cfg = load_config(REPO / "config.yaml", {"manifest": "my_videos.csv"})
    assert cfg["dataset"] == "my_videos" and cfg["labels"]["annotations"] is None
    # a command that needs only the sections reads it without one
    assert "manifest" not in load_config(REPO / "config.yaml")
    assert load_config(REPO / "config.yaml")["features"]["extractors"][0] == "colour"


# --- manifest ----------------------------------------------------------------

def test_manifest_csv_resolves_sources(tmp_path):
    (tmp_path / "clips").mkdir()
    m = write_csv(tmp_path / "m.csv",
                  "video_id,source,split,start_s,end_s\n"
                  "a,clips/a.mp4,train,,\n"
                  "b,https://www.youtube.com/watch?v=xyz,test,1.5,9\n"
                  "c,file:///data/c.mp4,val,,\n")
    df = read_manifest(m)
    assert df["source"].to_list() == [str(tmp_path / "clips" / "a.mp4"),
                                      "https://www.youtube.com/watch?v=xyz", "file:///data/c.mp4"]
    assert df["start_s"].to_list() == [None, 1.5, None]
    assert df["danmaku"].to_list() == [None, None, None]


def test_manifest_parquet(tmp_path):
    p = tmp_path / "m.parquet"
    pl.DataFrame({"video_id": ["x"], "source": ["/v/x.mp4"], "split": ["train"]}).write_parquet(p)
    assert read_manifest(p)["video_id"].to_list() == ["x"]


@pytest.mark.parametrize("rows, message", [
    ("a,/x.mp4,train\na,/y.mp4,train\n", "duplicate video_id 'a'"),
    ("../x,/x.mp4,train\n", "may not start with '.'"),
    ("a/b,/x.mp4,train\n", "path separator"),
    ("a\x01b,/x.mp4,train\n", "control character"),
    ("a,,train\n", "empty source"),
    ("a,/x.mp4,\n", "empty split"),
])
def test_manifest_rejects_bad_rows(tmp_path, rows, message):
    m = write_csv(tmp_path / "m.csv", "video_id,source,split\n" + rows)
    with pytest.raises(ManifestError, match=message) as err:
        read_manifest(m)
    assert str(m) in str(err.value) and "line" in str(err.value)


def test_manifest_rejects_missing_columns_and_bad_bounds(tmp_path):
    with pytest.raises(ManifestError, match="missing column"):
        read_manifest(write_csv(tmp_path / "a.csv", "video_id,url\na,b\n"))
    with pytest.raises(ManifestError, match="end_s .* must be greater than start_s"):
        read_manifest(write_csv(tmp_path / "b.csv", "video_id,source,split,start_s,end_s\na,/x,train,5,2\n"))
    with pytest.raises(ManifestError, match="manifest not found"):
        read_manifest(tmp_path / "none.csv")


def test_shards_are_stable_when_videos_are_appended(tmp_path):
    body = "".join(f"v{i},/v/{i}.mp4,train\n" for i in range(25))
    m1 = read_manifest(write_csv(tmp_path / "m1.csv", "video_id,source,split\n" + body))
    m2 = read_manifest(write_csv(tmp_path / "m2.csv", "video_id,source,split\n" + body + "v25,/v/25.mp4,test\n"))
    s1, s2 = assign_shards(m1, 10), assign_shards(m2, 10)
    assert list(s1) == ["s00000", "s00001", "s00002"]
    assert [s.videos.height for s in s1.values()] == [10, 10, 5]
    for name in ("s00000", "s00001"):  # untouched shards keep their digest (no rerun)
        assert s1[name].digest == s2[name].digest
    assert s1["s00002"].digest != s2["s00002"].digest
    assert shard_rows(m1, 10, "s00001")["video_id"].to_list() == [f"v{i}" for i in range(10, 20)]
    with pytest.raises(ManifestError, match="shard s00003 is empty"):
        shard_rows(m1, 10, "s00003")


# --- store -------------------------------------------------------------------

def test_atomic_path_never_leaves_a_half_written_final_file(tmp_path):
    final = tmp_path / "out.txt"
    final.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(final) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert final.read_text() == "old" and os.listdir(tmp_path) == ["out.txt"]
    with atomic_path(final) as tmp:
        tmp.write_text("new")
    assert final.read_text() == "new" and os.listdir(tmp_path) == ["out.txt"]


def test_stale_temporaries_of_dead_writers_are_removed(tmp_path):
    (tmp_path / ".a.h5.tmp-999999-deadbeef").write_text("x")
    (tmp_path / f".b.h5.tmp-{os.getppid()}-cafef00d").write_text("x")  # a live process
    assert clean_stale_temporaries(tmp_path) == 1
    assert [p.name for p in tmp_path.iterdir()] == [f".b.h5.tmp-{os.getppid()}-cafef00d"]


def test_merge_failures_unions_stage_tables(tmp_path):
    write_parquet(pl.DataFrame({"video_id": ["a"], "stage": ["ingest"], "shard": ["s00000"], "error": ["bad"]}),
                  tmp_path / "ingest" / "failures.parquet")
    write_parquet(pl.DataFrame({"video_id": ["b"], "stage": ["frames"], "shard": ["s00001"], "error": ["worse"]}),
                  tmp_path / "frames" / "failures.parquet")
    out = pl.read_parquet(merge_failures(tmp_path))
    assert out.to_dicts() == [
        {"video_id": "b", "stage": "frames", "shard": "s00001", "error": "worse"},
        {"video_id": "a", "stage": "ingest", "shard": "s00000", "error": "bad"},
    ]
