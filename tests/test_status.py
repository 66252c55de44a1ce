"""evoke status: progress read from a run's files (plan, stage tables, parts, logs, benchmarks)."""

from __future__ import annotations

import os
import time

import h5py
import polars as pl
import pytest

from evoke import EvokeError
from evoke.cli import main
from evoke.status import dataset_status, failure_kind, format_status, shard_summary, write_plan
from evoke.store import write_parquet


def _status_table(path, rows):
    write_parquet(pl.DataFrame(rows, orient="row", schema={"video_id": pl.String, "status": pl.String, "error": pl.String}), path)


def _part(path, vid):
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        f.create_group(vid)


@pytest.fixture
def run(tmp_path):
    """A run of 5 videos in shards of 3 and 2: ingest done (one 404), frames s00000 done,
    frames s00001 running with one finished part, colour s00000 stopped with one part."""
    d = tmp_path / "results" / "mine"
    write_plan(d, manifest="my.csv", shard_size=3, shards={"s00000": ["a", "b", "c"], "s00001": ["d", "e"]},
               extractors=["colour"], outputs={"labels": [], "train": [], "report": []})
    _status_table(d / "ingest/shards/s00000.parquet", [("a", "ok", None), ("b", "ok", None), ("c", "ok", None)])
    _status_table(d / "ingest/shards/s00001.parquet",
                  [("d", "ok", None), ("e", "failed", "https://example.org/e.mp4: HTTP Error 404: Not Found")])
    _status_table(d / "frames/s00000.status.parquet",
                  [("a", "ok", None), ("b", "ok", None), ("c", "failed", "/data/c.mp4: no video stream")])
    _part(d / "frames/parts/s00001/d.h5", "d")
    (d / "frames/parts/s00001/.e.h5.tmp-1-abc").write_bytes(b"")  # half-written: not counted
    (d / "logs/frames").mkdir(parents=True)
    (d / "logs/frames/s00001.log").write_text("frames s00001: 1/1\n")
    _part(d / "features/colour/parts/s00000/a.h5", "a")
    (d / "logs/features/colour").mkdir(parents=True)
    old = d / "logs/features/colour/s00000.log"
    old.write_text("colour s00000\n")
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    for stage, shard, seconds in (("ingest", "s00000", 30.0), ("ingest", "s00001", 20.0), ("frames", "s00000", 6.0)):
        (d / "benchmarks" / stage).mkdir(parents=True, exist_ok=True)
        (d / "benchmarks" / stage / f"{shard}.tsv").write_text(
            f"s\th:m:s\tmax_rss\n{seconds}\t0:00:{int(seconds):02d}\t100.0\n")
    return tmp_path


def test_counts_running_shards_failures_and_eta(run):
    st = dataset_status(run / "results" / "mine")
    ingest, frames, colour = st["stages"]
    assert (ingest.total, ingest.ok, ingest.failed, ingest.done, ingest.shards_done) == (5, 4, 1, 5, 2)
    assert ingest.seconds_per_video == pytest.approx(50.0 / 5) and ingest.eta_s == 0
    # frames: s00000 done (3 in, 2 ok); s00001 gets the 1 video ingest passed, 1 part finished
    assert (frames.total, frames.ok, frames.failed, frames.in_progress) == (4, 2, 1, 1)
    assert frames.running == ["s00001"] and frames.stopped == []
    assert frames.seconds_per_video == pytest.approx(2.0)
    assert frames.failures == {"PATH: no video stream": 1}
    assert ingest.failures == {"URL: HTTP Error N: Not Found": 1}
    # colour: s00000 reads the 2 videos with frames, s00001 the 1 still sampled
    assert (colour.total, colour.in_progress, colour.stopped, colour.running) == (3, 1, ["s00000"], [])
    assert colour.eta_s is None
    text = format_status(st, "mine")
    assert "mine: 5 videos in 2 shards of 3 (manifest my.csv)" in text
    assert "frames" in text and "4/4 videos; 2 ok; 1 failed; 1 finished in unfinished shards" in text
    assert "running: s00001" in text and "stopped (a rerun resumes them): s00000" in text
    assert "1 x URL: HTTP Error N: Not Found" in text and "no estimate yet" in text


def test_the_command(run, capsys, monkeypatch):
    monkeypatch.chdir(run)
    assert main(["status", "--dataset", "mine"]) == 0
    out = capsys.readouterr().out
    assert "ingest" in out
    assert main(["status", "--dataset", "other"]) == 2
    assert "results/other: no such dataset folder (datasets here: mine)" in capsys.readouterr().err
    (run / "results" / "bare").mkdir()
    with pytest.raises(EvokeError, match="no run recorded"):
        dataset_status(run / "results" / "bare")


def test_failure_kinds_drop_what_is_particular_to_a_video():
    assert failure_kind("/a/x.mp4: no video stream") == failure_kind("rel/y.mkv: no video stream")
    assert failure_kind("file:///tmp/z.mp4: HTTP Error 404") == "URL: HTTP Error N"
    assert failure_kind(None) == "unknown" and failure_kind("  ") == "unknown"
    assert failure_kind("first line\nsecond") == "first line"


def test_shard_summary_line():
    status = pl.DataFrame({"video_id": ["a", "b"], "status": ["ok", "failed"]})
    assert shard_summary("frames", "s00003", status, 41.25) == \
        "summary: frames s00003: 2 videos, 1 ok, 1 failed, 41.2 s"
