"""Shard jobs under faults: a second copy of a job, kills between the commits, a full disk,
the shard map, the thread count of torch extractors. Real media, real HDF5, real processes."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import polars as pl
import pytest

from small_disk import mounted_tmpfs
from evoke.config import validate_config
from evoke.frames import frames_shard
from evoke.manifest import assign_shards, read_manifest, shard_rows
from evoke.media import probe
from evoke.store import DiskFull, ShardLocked, is_disk_full, shard_lock

FRAMES = {"rate_hz": 1.0, "short_side": 96, "backend": "pyav"}


def _rows(root: Path, media, keys) -> pl.DataFrame:
    """Probe rows as the ingest stage writes them, with the videos linked under ``root``."""
    rows = []
    for k in keys:
        vdir = root / "ingest" / "videos" / k
        vdir.mkdir(parents=True, exist_ok=True)
        if not (vdir / "video.mp4").exists():
            (vdir / "video.mp4").symlink_to(media[k])
        rows.append({"video_id": k, "status": "ok", "video_path": f"ingest/videos/{k}/video.mp4",
                     "fingerprint": f"fp-{k}", **probe(media[k])})
    return pl.DataFrame(rows, infer_schema_length=None)


def _hidden(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob(".*"))


# --- the shard lock ---------------------------------------------------------------------

HOLD = """
import sys, time
from evoke.store import shard_lock
with shard_lock(sys.argv[1], "test job"):
    print("held", flush=True)
    time.sleep(120)
"""


def test_a_second_holder_is_refused_and_a_dead_holders_lock_taken_over(tmp_path):
    lock = tmp_path / ".s00000.h5.lock"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(lock)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ShardLocked) as err:
            with shard_lock(lock, "frames s00000"):
                pass
        msg = str(err.value)
        assert f"PID {holder.pid}" in msg and socket.gethostname() in msg and str(lock) in msg
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert json.loads(lock.read_text())["pid"] == holder.pid  # the killed job's record stays ...
    with shard_lock(lock, "frames s00000"):  # ... and is taken over: its process is gone
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    assert not lock.exists()


def test_a_lock_from_another_host_is_refused_with_the_host_named(tmp_path):
    lock = tmp_path / ".s00001.h5.lock"
    lock.write_text(json.dumps({"host": "node-17.cluster", "pid": 4242, "since": "2026-01-01T00:00:00"}))
    with pytest.raises(ShardLocked, match=r"PID 4242 on host node-17\.cluster.*delete .*s00001\.h5\.lock"):
        with shard_lock(lock, "frames s00001"):
            pass
    assert json.loads(lock.read_text())["host"] == "node-17.cluster"  # left for its owner


def test_a_second_copy_of_a_frames_job_is_refused_and_the_first_finishes_intact(media, tmp_path):
    rows = _rows(tmp_path, media, ["cfr", "noaudio", "vfr"])
    rows.write_parquet(tmp_path / "probe.parquet")
    settings = json.dumps(FRAMES)

    def job(name):
        return subprocess.Popen(
            [sys.executable, "-m", "evoke", "frames", "shard", "--shard", "s00000", "--dataset", "ds",
             "--probe", str(tmp_path / "probe.parquet"), "--settings", settings,
             "--out", str(tmp_path / "results" / "ds" / "frames" / f"{name}.h5"),
             "--status", str(tmp_path / "results" / "ds" / "frames" / f"{name}.status.parquet")],
            cwd=tmp_path, stderr=subprocess.PIPE, text=True)

    (tmp_path / "results" / "ds").mkdir(parents=True)
    (tmp_path / "results" / "ds" / "ingest").symlink_to(tmp_path / "ingest")
    first = job("s00000")
    lock = tmp_path / "results" / "ds" / "frames" / ".s00000.h5.lock"
    deadline = time.time() + 120
    while not (lock.exists() and lock.read_text()) and time.time() < deadline:
        time.sleep(0.01)
    first.send_signal(signal.SIGSTOP)  # held mid-shard, as a slow job would be
    try:
        second = job("s00000")
        err = second.communicate(timeout=120)[1]
    finally:
        first.send_signal(signal.SIGCONT)
    assert second.returncode == 2 and f"already running as PID {first.pid}" in err, err
    assert first.wait(timeout=300) == 0, first.stderr.read()
    status = pl.read_parquet(tmp_path / "results" / "ds" / "frames" / "s00000.status.parquet")
    assert status["status"].to_list() == ["ok", "ok", "ok"]
    ref = tmp_path / "ref.h5"
    frames_shard(rows, tmp_path / "refroot", FRAMES, "s00000", ref)
    with h5py.File(ref) as a, h5py.File(tmp_path / "results" / "ds" / "frames" / "s00000.h5") as b:
        for vid in a:
            np.testing.assert_array_equal(a[vid]["frames"][()], b[vid]["frames"][()])
    assert _hidden(tmp_path / "results" / "ds" / "frames") == []


# --- kills between the commits --------------------------------------------------------------

def test_parts_survive_a_kill_between_the_shard_file_and_its_status(media, tmp_path, monkeypatch, caplog):
    import evoke.store as store

    rows = _rows(tmp_path, media, ["cfr", "noaudio"])
    out, status = tmp_path / "frames" / "s00000.h5", tmp_path / "frames" / "s00000.status.parquet"
    real_write = store.write_parquet

    def killed(df, path):
        if Path(path) == status:
            raise KeyboardInterrupt  # the kill lands after the shard file's rename
        return real_write(df, path)

    monkeypatch.setattr(store, "write_parquet", killed)
    with pytest.raises(KeyboardInterrupt):
        frames_shard(rows, tmp_path, FRAMES, "s00000", out, status_out=status)
    parts = tmp_path / "frames" / "parts" / "s00000"
    assert out.exists() and not status.exists()
    assert sorted(p.name for p in parts.glob("*.h5")) == ["cfr.h5", "noaudio.h5"]  # not redone from scratch
    monkeypatch.setattr(store, "write_parquet", real_write)
    # a kill during an earlier assembly left a hidden shard-sized temporary (its PID still alive)
    stale = out.with_name(f".{out.name}.tmp-{os.getppid()}-deadbeef")
    stale.write_bytes(b"\0" * 4096)
    with caplog.at_level(logging.INFO, logger="evoke.store"):
        frames_shard(rows, tmp_path, FRAMES, "s00000", out, status_out=status)
    assert caplog.text.count("reusing the finished part") == 2
    assert pl.read_parquet(status)["status"].to_list() == ["ok", "ok"]
    assert not parts.exists() and not stale.exists() and _hidden(tmp_path / "frames") == []


# --- a full disk ------------------------------------------------------------------------------

@pytest.fixture
def small_tmpfs(tmp_path):
    """A 3 MiB tmpfs."""
    with mounted_tmpfs(tmp_path / "small", "3m") as mnt:
        yield mnt


def test_a_full_disk_fails_the_frames_job_with_one_message_and_nothing_half_written(media, small_tmpfs):
    rows = _rows(small_tmpfs, media, ["cfr", "uhd"])  # symlinks: the media stay outside
    out, status = small_tmpfs / "frames" / "s00000.h5", small_tmpfs / "frames" / "s00000.status.parquet"
    settings = dict(FRAMES, short_side=720)  # 2 s of 4K at 720p: more than the disk holds
    with pytest.raises(DiskFull, match=r"no room to write the part of video uhd: .* MiB free, about .* MiB "
                                       r"needed; free disk space and run again"):
        frames_shard(rows, small_tmpfs, settings, "s00000", out, status_out=status)
    assert not out.exists() and not status.exists()  # nothing under a final name, no video marked failed
    parts = small_tmpfs / "frames" / "parts" / "s00000"
    assert [p.name for p in parts.iterdir()] == ["cfr.h5"]  # the finished video is kept for the rerun
    assert _hidden(small_tmpfs / "frames") == []


def test_a_full_disk_fails_the_features_job_before_a_part_is_written(media, tmp_path, small_tmpfs):
    from evoke.features.stage import features_shard

    rows = _rows(tmp_path, media, ["noaudio"])
    frames = tmp_path / "frames" / "s00000.h5"
    frames_shard(rows, tmp_path, FRAMES, "s00000", frames)
    (small_tmpfs / "ingest").symlink_to(tmp_path / "ingest")
    (small_tmpfs / "filler").write_bytes(b"\0" * (2 << 20))  # 1 MiB left: less than a part may need
    out = small_tmpfs / "features" / "colour" / "s00000.h5"
    with pytest.raises(DiskFull, match=r"no room to write the part of video noaudio"):
        features_shard("colour", {"config": {}, "device": "cpu", "weights": {}}, frames, rows, small_tmpfs,
                       "s00000", out, status_out=out.with_suffix(".status.parquet"))
    assert not out.exists() and not out.with_suffix(".status.parquet").exists()
    assert _hidden(small_tmpfs / "features") == []


def test_an_hdf5_write_on_a_full_disk_is_recognised_as_disk_full(small_tmpfs):
    with pytest.raises(OSError) as err:
        with h5py.File(small_tmpfs / "big.h5", "w") as f:
            f.create_dataset("x", data=np.random.default_rng(0).integers(0, 255, 8 << 20, dtype=np.uint8))
    assert is_disk_full(err.value)
    assert not is_disk_full(OSError(2, "No such file or directory"))


# --- the shard map ----------------------------------------------------------------------------

def test_the_shard_map_keeps_every_video_in_its_shard_when_rows_are_deleted_or_added(tmp_path):
    def manifest(ids, name):
        path = tmp_path / f"{name}.csv"
        path.write_text("video_id,source,split\n" + "".join(f"{v},/v/{v}.mp4,train\n" for v in ids))
        return read_manifest(path)

    ids = [f"v{i:02d}" for i in range(25)]
    smap = tmp_path / "results" / "shard_map.parquet"
    before = assign_shards(manifest(ids, "a"), 10, shard_map=smap)
    assert {n: s.videos["video_id"].to_list() for n, s in before.items()} == \
        {n: s.videos["video_id"].to_list() for n, s in assign_shards(manifest(ids, "a"), 10).items()}
    where = {v: n for n, s in before.items() for v in s.videos["video_id"]}
    # delete row 3: without the map every later video would move to the shard before
    fewer = [v for v in ids if v != "v03"] + ["v25"]
    after = assign_shards(manifest(fewer, "b"), 10, shard_map=smap)
    assert {v: n for n, s in after.items() for v in s.videos["video_id"]} == {**{v: where[v] for v in fewer[:-1]},
                                                                             "v25": "s00002"}
    assert after["s00000"].digest != before["s00000"].digest  # only the shards whose rows changed rerun
    assert after["s00001"].digest == before["s00001"].digest
    # the deleted video comes back: its old slot, not a new one
    back = assign_shards(manifest(ids + ["v25"], "c"), 10, shard_map=smap)
    assert back["s00000"].digest == before["s00000"].digest
    assert shard_rows(manifest(fewer, "b"), 10, "s00000", shard_map=smap)["video_id"].to_list() == \
        [v for v in ids[:10] if v != "v03"]
    assert pl.read_parquet(smap).height == 26


# --- torch threads ----------------------------------------------------------------------------

def test_torch_features_do_not_depend_on_the_jobs_thread_count(media, tmp_path):
    """efficientnet's CPU values differ in the last bits between 1 and 2 threads; with
    torch_threads fixed, the ambient count (a job's --cores) changes nothing."""
    import torch

    from evoke.features.stage import features_shard

    root = tmp_path / "root"
    rows = _rows(root, media, ["noaudio"])
    frames = root / "frames" / "s00000.h5"
    frames_shard(rows, root, FRAMES, "s00000", frames)
    base = validate_config({"manifest": "-"})["features"]
    old = torch.get_num_threads()
    values = {}
    try:
        for ambient, fixed in ((1, 1), (2, 1), (2, 2)):
            torch.set_num_threads(ambient)
            out = tmp_path / f"e-{ambient}-{fixed}.h5"
            settings = {"config": {}, "device": "cpu", "weights": base["weights"], "torch_threads": fixed}
            features_shard("efficientnet", settings, frames, rows, root, "s00000", out)
            with h5py.File(out) as f:
                values[ambient, fixed] = f["noaudio/values"][()]
                assert f["noaudio"].attrs["torch_threads"] == fixed
    finally:
        torch.set_num_threads(old)
    np.testing.assert_array_equal(values[1, 1], values[2, 1])
    assert not np.array_equal(values[1, 1], values[2, 2])  # the count matters, hence fixed and recorded


# --- the decord backend's errors --------------------------------------------------------------

def test_decord_errors_fail_only_their_video_and_the_shard_goes_on(media, tmp_path):
    """A file decord cannot open (RuntimeError) fails its video; one with corrupt packets
    (DECORDError mid-stream) keeps the seconds before them; the good videos around them
    get exactly the frames they get alone."""
    pytest.importorskip("decord")
    settings = dict(FRAMES, backend="decord")
    rows = _rows(tmp_path, media, ["cfr", "noaudio"])
    data = bytearray(media["cfr"].read_bytes())
    data[len(data) // 3: len(data) // 3 + 3000] = b"\xff" * 3000  # packets around 2 s unreadable
    vdir = tmp_path / "ingest" / "videos"
    (vdir / "corrupt").mkdir()
    (vdir / "corrupt" / "video.mp4").write_bytes(bytes(data))
    (vdir / "gone").mkdir()
    (vdir / "gone" / "video.mp4").write_text("this is not a video\n" * 20)  # replaced after ingest
    cfr = rows.filter(pl.col("video_id") == "cfr")
    broken = pl.concat([
        cfr.with_columns(video_id=pl.lit(k), video_path=pl.lit(f"ingest/videos/{k}/video.mp4"))
        for k in ("gone", "corrupt")])
    shard = pl.concat([rows[:1], broken, rows[1:]])  # cfr, gone, corrupt, noaudio
    out, status = tmp_path / "frames" / "s00000.h5", tmp_path / "frames" / "s00000.status.parquet"
    got = frames_shard(shard, tmp_path, settings, "s00000", out, status_out=status)
    assert got["status"].to_list() == ["ok", "failed", "ok", "ok"]
    assert got["error"][1].startswith("video.mp4: decord cannot open the video: Error reading")
    assert "\n" not in got["error"][1]
    corrupt = got.row(2, named=True)
    assert 1 <= corrupt["n_valid"] < corrupt["n_frames"] == 6
    alone = tmp_path / "alone.h5"
    frames_shard(rows, tmp_path, settings, "s00001", alone)
    with h5py.File(out) as f, h5py.File(alone) as a:
        assert sorted(f) == ["cfr", "corrupt", "noaudio"]
        mask = f["corrupt"]["mask"][()]
        assert mask[: corrupt["n_valid"]].all() and not mask[corrupt["n_valid"]:].any()  # the seconds before
        np.testing.assert_array_equal(f["corrupt"]["frames"][: corrupt["n_valid"]],
                                      a["cfr"]["frames"][: corrupt["n_valid"]])
        for vid in ("cfr", "noaudio"):
            np.testing.assert_array_equal(f[vid]["frames"][()], a[vid]["frames"][()])
            assert f[vid]["mask"][()].all()
    assert _hidden(tmp_path / "frames") == []


def test_decord_missing_stops_the_job_and_fails_no_video(media, tmp_path, monkeypatch):
    from evoke.media import EnvironmentFailure

    monkeypatch.setitem(sys.modules, "decord", None)  # `import decord` raises ImportError
    rows = _rows(tmp_path, media, ["noaudio"])
    out, status = tmp_path / "frames" / "s00000.h5", tmp_path / "frames" / "s00000.status.parquet"
    with pytest.raises(EnvironmentFailure, match="frames backend 'decord' is not installed"):
        frames_shard(rows, tmp_path, dict(FRAMES, backend="decord"), "s00000", out, status_out=status)
    assert not out.exists() and not status.exists()
