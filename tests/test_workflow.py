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
    with h5py.File(res / "features" / "motion" / "s00000.h5") as f:  # names of the values' last axis
        assert [n.decode() if isinstance(n, bytes) else n for n in f.attrs["dim_names"]] == \
            ["diff_mean", "diff_max", "changed_fraction"]
    assert not (res / "labels").exists() and not (res / "report").exists()
    again = snakemake(workdir, "-n")
    assert "Nothing to be done" in again.stdout + again.stderr

    # every shard log ends with its summary; evoke status reads the run from its files
    last = (res / "logs" / "frames" / "s00001.log").read_text().strip().splitlines()[-1]
    assert last.endswith("summary: frames s00001: 2 videos, 2 ok, 0 failed, " + last.rsplit(", ", 1)[1])
    assert (res / "logs" / "ingest" / "s00002.log").read_text().strip().splitlines()[-1].split(
        "INFO evoke.status: ")[1].startswith("summary: ingest s00002: 2 videos, 0 ok, 2 failed, ")
    status = subprocess.run([sys.executable, "-m", "evoke", "status", "--dataset", "tiny"], cwd=workdir,
                            capture_output=True, text=True, check=True).stdout
    lines = [line.split() for line in status.splitlines()]
    assert ["ingest", "6/6", "videos;", "4", "ok;", "2", "failed;", "shards", "3/3", "done"] in lines, status
    assert ["frames", "4/4", "videos;", "4", "ok;", "0", "failed;", "shards", "3/3", "done"] in lines, status
    assert ["features", "motion", "4/4", "videos;", "4", "ok;", "0", "failed;", "shards", "3/3", "done"] in lines
    # a per-shard features file gone (an interrupted --forcerun): the plain command rebuilds it
    # (what every target plans then: tests/faults/test_kills.py, dry runs)
    (res / "features" / "colour" / "s00001.h5").unlink()
    snakemake(workdir, "features")
    assert (res / "features" / "colour" / "s00001.h5").is_file()
    # README's form: the target before --forcerun plans the frames and what needs them, not ingest
    forced = snakemake(workdir, "-n", "frames", "--forcerun", "frames_shard").stdout
    assert "frames_shard" in forced and "ingest_shard" not in forced and "features_shard" not in forced


def test_eev_and_viewer_labels_drop_times_past_the_ingested_videos_end(workdir):
    """labels_eev and labels_viewers read the ingest probe table: a time at or past the video's
    probed duration (cfr 6 s, noaudio 5 s) is dropped and counted; a video ingest could not probe
    has no bound."""
    expressions = ["amusement", "anger", "awe", "concentration", "confusion", "contempt", "contentment",
                   "disappointment", "doubt", "elation", "interest", "pain", "sadness", "surprise", "triumph"]
    samples = [("cfr", 0.5), ("cfr", 5.5), ("cfr", 6.0), ("cfr", 7.0), ("cfr", 360_000.0),
               ("noaudio", 0.5), ("noaudio", 5.0), ("text", 100.0)]
    (workdir / "eev.csv").write_text(
        "Video ID,Timestamp (microseconds)," + ",".join(expressions) + "\n"
        + "".join(f"{v},{round(t * 1e6)}," + ",".join(["0.7"] * 15) + "\n" for v, t in samples))
    (workdir / "ratings.csv").write_text(
        "video_id,viewer_id,time_s,valence\n"
        + "".join(f"{v},a,{t},0.5\n" for v, t in samples if t != 6.0))
    labels = f"labels={{eev: {{csv: {workdir / 'eev.csv'}}}, viewers: {{ratings: [{workdir / 'ratings.csv'}]}}}}"
    snakemake(workdir, "labels", "--config", labels)
    res = workdir / "results" / "tiny"

    def last_second(table):
        return dict(pl.read_parquet(res / "labels" / table).group_by("video_id").agg(
            pl.col("time_s").max()).iter_rows())

    assert last_second("eev.parquet") == {"cfr": 5.0, "noaudio": 0.0, "text": 100.0}  # the last sample's second
    assert "4 after_video_end" in (res / "logs" / "labels" / "eev.log").read_text()
    # the viewers builder has the same rule: noaudio's 5.0 s is its end, no frame there
    assert last_second("viewer_valence.parquet") == {"cfr": 5.0, "noaudio": 0.0, "text": 100.0}
    assert "3 after_video_end" in (res / "logs" / "labels" / "viewer_valence.log").read_text()


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
    if not (workdir / "results" / "tiny" / "frames" / "index.parquet").exists():  # run alone
        snakemake(workdir, "frames")
    # a nested --config value is typed by the schema and merged into the block
    dry = snakemake(workdir, "-n", "--config", "frames={rate_hz: 2.0}")
    out = dry.stdout + dry.stderr
    assert "frames_shard" in out and "frames_merge" in out
    assert "ingest_shard" not in out and "ingest_merge" not in out
    assert "Nothing to be done" in snakemake(workdir, "-n", "--config", "frames={rate_hz: '1'}").stdout


def test_bad_config_stops_with_the_key_and_its_source_named(workdir):
    (workdir / "mine.yaml").write_text("ingest:\n  retries: -1\n")
    proc = snakemake(workdir, "-n", "--configfile", str(workdir / "mine.yaml"), "--config", "shard_size=0",
                     "frames={rate_hz: -1}", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "--config: shard_size: 0 is less than the minimum of 1" in out
    assert "--config: frames.rate_hz: -1.0 is less than or equal to the minimum of 0" in out
    # the file is named as seen from the working directory
    assert "--configfile mine.yaml: ingest.retries: -1 is less than the minimum of 0" in out
    (workdir / "mine.yaml").unlink()


def test_the_repository_config_runs_own_videos_without_the_demo(workdir, tmp_path):
    """A fresh clone's config.yaml, no data/ folder: the README's own-videos command plans
    ingest, frames and every configured extractor, and no labels, training or report; without
    a manifest it says how to get one."""
    d = tmp_path / "clone"
    d.mkdir()
    (d / "config.yaml").write_text((REPO / "config.yaml").read_text())
    (d / "my.csv").write_text((workdir / "manifest.csv").read_text())
    dry = snakemake(d, "-n", "--config", "dataset=mine", "manifest=my.csv")
    out = dry.stdout + dry.stderr
    rules = {line.split()[0] for line in out.split("Job stats:")[1].split("total")[0].splitlines()[3:]
             if line.strip()}
    assert rules == {"all", "ingest_shard", "ingest_merge", "frames_shard", "frames_merge",
                     "features_shard", "features_shard_gpu", "features_merge"}, out
    assert "results/mine/features/efficientnet/s00000.h5" in out
    proc = snakemake(d, "-n", check=False)
    assert proc.returncode != 0 and "no manifest given" in proc.stdout + proc.stderr


def test_frames_keep_false_removes_each_shards_frames_once_extracted(workdir, media):
    """frames.keep: false: the frames files are temp(): gone once the shard's extractors
    are done, and their absence reruns nothing."""
    (workdir / "lean.csv").write_text(f"video_id,source,split\ncfr,{media['cfr']},train\n"
                                      f"noaudio,{media['noaudio']},test\n")
    lean = ["--config", "dataset=lean", "manifest=lean.csv", "shard_size=1",
            "frames={keep: false}", "features={extractors: [colour]}"]
    snakemake(workdir, *lean)
    res = workdir / "results" / "lean"
    assert sorted(p.name for p in (res / "frames").glob("*.h5")) == []
    assert sorted(p.name for p in (res / "frames").glob("*.status.parquet")) == \
        ["s00000.status.parquet", "s00001.status.parquet"]
    feats = pl.read_parquet(res / "features" / "index.parquet")
    assert sorted(feats["video_id"]) == ["cfr", "noaudio"] and (feats["status"] == "ok").all()
    with h5py.File(res / "features" / "colour" / "s00000.h5") as f:
        assert f["cfr/values"].shape == (6, 23)
    again = snakemake(workdir, "-n", *lean)
    assert "Nothing to be done" in again.stdout + again.stderr
