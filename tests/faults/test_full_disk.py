"""The whole workflow onto a full file system: the results folder is a small tmpfs.

Ingest fits; then the disk is filled to a few hundred KiB, less than a frames part needs,
and the frames target runs on it. The frames job must fail with one clear message (the
job, not a video: no failed row anywhere), leave nothing under a final name and no
temporary; after the disk is freed, the same command must finish with the content of an
uninterrupted run on a roomy disk. Lean: two demo clips, 48-pixel frames.
"""

from __future__ import annotations

import shutil

import polars as pl
import pytest
from small_disk import mounted_tmpfs
from test_kills import DEMO, content, finish, leftovers, start

pytestmark = pytest.mark.slow


@pytest.fixture
def small_results(tmp_path):
    """An 8 MiB tmpfs for Snakemake's working directory."""
    with mounted_tmpfs(tmp_path / "small", "8m") as mnt:
        yield mnt


def _project(work, manifest):
    work.mkdir(exist_ok=True)
    (work / "config.yaml").write_text(
        f"dataset: k\nmanifest: {manifest}\nshard_size: 1\nframes:\n  short_side: 48\n"
        f"labels:\n  annotations: {DEMO / 'annotations'}\n")


def _fill(folder, leave: int) -> None:
    """Write a filler file so that ``leave`` bytes stay free on ``folder``'s file system."""
    free = shutil.disk_usage(folder).free
    with open(folder / "filler", "wb") as fh:
        fh.write(b"\0" * max(free - leave, 0))
    assert shutil.disk_usage(folder).free <= leave + (64 << 10)


def test_a_full_disk_fails_the_frames_job_and_the_same_command_finishes_once_freed(tmp_path, small_results):
    if not (DEMO / "manifest.csv").is_file():
        pytest.fail("the demo is not built: run scripts/setup.sh (evoke demo build)")
    lines = (DEMO / "manifest.csv").read_text().splitlines()
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("\n".join(lines[:3]) + "\n")  # two clips, one shard each
    ref = tmp_path / "reference"
    _project(ref, manifest)
    finish(start(ref, "frames"))
    expected = content(ref / "results" / "k")
    assert {"frames/s00000.h5", "frames/s00001.h5"} <= set(expected)

    work = small_results
    _project(work, manifest)
    finish(start(work, "ingest"))
    _fill(work, 384 << 10)  # room for Snakemake's records and logs, not for a 1 MiB frames part
    proc = start(work, "frames")
    out = proc.communicate(timeout=600)[0]
    assert proc.returncode != 0, out[-3000:]
    assert "Error in rule frames_shard" in out, out[-3000:]
    frames = work / "results" / "k" / "frames"
    logs = sorted((work / "results" / "k" / "logs" / "frames").glob("s*.log"))
    errors = [ln for log in logs for ln in log.read_text().splitlines() if ln.startswith("evoke: error:")]
    assert len(errors) == 1, [log.read_text()[-2000:] for log in logs]
    assert "no room to write the part of video" in errors[0] and "free disk space and run again" in errors[0]
    # the job failed, not a video: no shard file, no status (no row saying failed or ok)
    assert not list(frames.glob("s*.h5")) and not list(frames.glob("s*.status.parquet"))
    assert not (frames / "failures.parquet").exists()
    failures = pl.read_parquet(work / "results" / "k" / "failures.parquet")
    assert failures.filter(pl.col("stage") != "ingest").height == 0
    assert [p.name for p in frames.rglob(".*") if ".tmp-" in p.name] == []

    (work / "filler").unlink()
    finish(start(work, "frames"))
    got = content(work / "results" / "k")
    assert sorted(k for k in set(expected) | set(got) if expected.get(k) != got.get(k)) == []
    assert leftovers(work) == []
