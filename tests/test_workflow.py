"""End-to-end: the real Snakefile on a tiny real manifest, in a temporary working directory."""

import subprocess
import sys
from pathlib import Path

import h5py
import polars as pl
import pytest

from conftest import REPO

pytestmark = pytest.mark.slow
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))


def snakemake(workdir, *args, check=True):
    proc = subprocess.run(
        [SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
         "--cores", "2", *args], capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


@pytest.fixture(scope="module")
def workdir(media, tmp_path_factory):
    d = tmp_path_factory.mktemp("wf")
    rows = [("cfr", media["cfr"]), ("noaudio", media["noaudio"].as_uri()), ("vfr", media["vfr"]),
            ("rotated", media["rotated"]), ("text", media["text"]), ("zero", media["empty"])]
    (d / "manifest.csv").write_text(
        "video_id,source,split\n" + "".join(f"{v},{s},train\n" for v, s in rows))
    (d / "config.yaml").write_text(
        "dataset: tiny\nmanifest: manifest.csv\nshard_size: 2\nframes:\n  short_side: 120\n")
    return d


def test_ingest_target_then_frames_then_nothing_to_do(workdir):
    snakemake(workdir, "ingest")
    res = workdir / "results" / "tiny"
    probe = pl.read_parquet(res / "ingest" / "probe.parquet")
    assert probe.height == 6 and sorted(probe["shard"].unique()) == ["s00000", "s00001", "s00002"]
    assert not (res / "frames").exists()
    failures = pl.read_parquet(res / "failures.parquet")
    assert sorted(failures["video_id"]) == ["text", "zero"] and set(failures["stage"]) == {"ingest"}

    snakemake(workdir, "frames")
    index = pl.read_parquet(res / "frames" / "index.parquet")
    assert sorted(index["video_id"]) == ["cfr", "noaudio", "rotated", "vfr"]
    assert (index["status"] == "ok").all()
    with h5py.File(res / "frames" / "s00001.h5") as f:
        assert sorted(f) == ["rotated", "vfr"]
        assert f["rotated/frames"].shape[1:] == (160, 120, 3)  # upright portrait
        assert f["vfr/timestamps_s"][0] == 0.0
    assert (res / "logs" / "frames" / "s00000.log").exists()
    assert (res / "benchmarks" / "frames" / "s00000.tsv").exists()

    # the default target adds the features (colour and motion by default); no annotations
    # are configured, so no labels, heads or report are planned
    snakemake(workdir)
    feats = pl.read_parquet(res / "features" / "index.parquet")
    assert sorted(set(feats["extractor"])) == ["colour", "motion"] and (feats["status"] == "ok").all()
    assert not (res / "labels").exists() and not (res / "report").exists()
    again = snakemake(workdir, "-n")
    assert "Nothing to be done" in again.stdout + again.stderr
    # a per-shard features file gone (an interrupted --forcerun): the plain command rebuilds it
    (res / "features" / "colour" / "s00001.h5").unlink()
    dry = snakemake(workdir, "-n", "features")
    assert "features_shard" in dry.stdout and "Nothing to be done" not in dry.stdout
    snakemake(workdir, "features")
    # README's form: the target before --forcerun plans the frames and what needs them, not ingest
    forced = snakemake(workdir, "-n", "frames", "--forcerun", "frames_shard").stdout
    assert "frames_shard" in forced and "ingest_shard" not in forced and "features_shard" not in forced


def test_failures_are_complete_under_the_features_target(media, tmp_path):
    """No ingest target run: the dataset's failures table still lists the videos ingest lost."""
    (tmp_path / "manifest.csv").write_text(
        f"video_id,source,split\ngood,{media['noaudio']},train\ntext,{media['text']},train\n")
    (tmp_path / "config.yaml").write_text(
        "dataset: t\nmanifest: manifest.csv\nshard_size: 1\nframes:\n  short_side: 48\n"
        "features:\n  extractors: [colour]\n")
    snakemake(tmp_path, "features")
    failures = pl.read_parquet(tmp_path / "results" / "t" / "failures.parquet")
    assert failures.select("video_id", "stage", "shard").rows() == [("text", "ingest", "s00001")]


def test_a_frames_setting_reruns_frames_not_ingest(workdir):
    snakemake(workdir, "frames")
    cfg = workdir / "config.yaml"
    original = cfg.read_text()
    cfg.write_text(original.replace("short_side: 120", "short_side: 120\n  rate_hz: 2.0"))
    try:
        dry = snakemake(workdir, "-n")
    finally:
        cfg.write_text(original)
    out = dry.stdout + dry.stderr
    assert "frames_shard" in out and "frames_merge" in out
    assert "ingest_shard" not in out and "ingest_merge" not in out


def test_bad_config_stops_with_the_key_named(workdir):
    proc = snakemake(workdir, "-n", "--config", "shard_size=0", check=False)
    assert proc.returncode != 0
    assert "shard_size: 0 is less than the minimum of 1" in proc.stdout + proc.stderr
