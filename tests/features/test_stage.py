"""The features stage: registry, weight-free extractors, the HDF5 store, resume after a kill."""

import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

import h5py
import numpy as np
import polars as pl
import pytest

from evoke.config import validate_config
from evoke.features import EXTRACTORS, ExtractorConfig, FeatureExtractor, FeatureResult, VideoInput
from evoke.features.base import FeatureError, register_extractor
from evoke.features.colour import colour_stats
from evoke.features.stage import FRAMES_SETTINGS, features_shard, video_input
from evoke.frames import frames_shard
from evoke.ingest import ingest_shard
from evoke.weights import WeightSpec, WeightsMissing


def test_colour_stats_on_hand_made_frames():
    red = np.zeros((1, 4, 4, 3), np.uint8)
    red[..., 0] = 255
    grey = np.full((1, 4, 4, 3), 128, np.uint8)
    s = colour_stats(np.concatenate([red, grey]), hue_bins=6)
    assert s.shape == (2, 11)
    assert s[0, 0] == pytest.approx(0.299, abs=1e-3)  # luma of pure red
    assert s[0, 2] == pytest.approx(1.0)  # saturation
    assert s[0, 3] == pytest.approx(255 * 0.3 * np.sqrt(1 + 0.25))  # colourfulness: no spread, mean rg=255, yb=127.5
    assert s[0, 5:].tolist() == [1, 0, 0, 0, 0, 0]  # all hue mass in the red bin
    assert s[1, 2] == 0 and s[1, 3] == 0 and not s[1, 5:].any()  # grey: no saturation, no hue


def test_extractor_config_is_strict():
    with pytest.raises(FeatureError, match="unknown setting"):
        EXTRACTORS["colour"].config_type.from_dict({"bins": 3})
    with pytest.raises(FeatureError, match="hue_bins must be >= 1"):
        EXTRACTORS["colour"]({"hue_bins": 0})


@pytest.fixture(scope="module")
def shard(media, tmp_path_factory):
    """A real ingested + framed shard of three videos (one without audio, one VFR)."""
    root = tmp_path_factory.mktemp("feat")
    rows = pl.DataFrame([
        {"video_id": k, "source": str(media[k]), "split": "train", "start_s": None, "end_s": None,
         "danmaku": None} for k in ("cfr", "noaudio", "vfr")])
    probe_rows = ingest_shard(rows, root, validate_config({"manifest": "-"})["ingest"], "s00000")
    probe_path = root / "probe.parquet"
    probe_rows.write_parquet(probe_path)
    frames = root / "frames" / "s00000.h5"
    frames_shard(probe_rows, root, {"rate_hz": 1.0, "short_side": 96, "backend": "pyav"}, "s00000", frames)
    return root, probe_rows, probe_path, frames


def test_features_are_aligned_to_the_frames_grid(shard):
    root, probe_rows, _, frames = shard
    out = root / "features" / "colour" / "s00000.h5"
    status = features_shard("colour", {"config": {}, "device": "cpu", "weights": {}}, frames, probe_rows,
                            root, "s00000", out)
    assert (status["status"] == "ok").all() and status.height == 3
    with h5py.File(out) as f, h5py.File(frames) as fr:
        for vid in ("cfr", "noaudio", "vfr"):
            g = f[vid]
            np.testing.assert_array_equal(g["timestamps_s"][()], fr[vid]["timestamps_s"][()])
            assert g["values"].shape == (len(g["timestamps_s"]), 23)
            assert g["mask"][()].all()
            assert g.attrs["extractor"] == "colour" and g.attrs["weights"] == "none"
            assert g.attrs["config_hash"] and g.attrs["evoke_version"]
            # the frames settings the values came from, which stay when the frames file goes
            assert {k: g.attrs[f"frames_{k}"] for k in FRAMES_SETTINGS} == \
                {"rate_hz": 1.0, "short_side": 96, "backend": "pyav", "config_hash": fr[vid].attrs["config_hash"]}


def test_motion_is_higher_for_moving_content(shard, media, tmp_path):
    root, probe_rows, _, frames = shard
    status = features_shard("motion", {"config": {}, "device": "cpu", "weights": {}}, frames, probe_rows,
                            root, "s00000", tmp_path / "m.h5")
    assert (status["status"] == "ok").all()
    with h5py.File(tmp_path / "m.h5") as f:
        moving = f["noaudio/values"][:, 0]  # pedestrians walking
        assert f["noaudio/mask"][()].all()
    assert (moving > 0).all()
    # a still picture repeated: no motion at all
    still = tmp_path / "still.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(media["noaudio"]), "-vf",
                    "trim=end_frame=1,loop=loop=74:size=1:start=0,setpts=N/25/TB,format=yuv420p",
                    "-frames:v", "75", "-c:v", "libx264", "-qp", "0", str(still)], check=True)
    ext = EXTRACTORS["motion"]()
    res = ext.extract(VideoInput("still", np.arange(3.0), np.ones(3, bool), 3.0, still))
    assert res.mask.all() and np.abs(res.values).max() < 1e-3


def read_shard(path) -> dict:
    with h5py.File(path) as f:
        return {vid: {name: f[vid][name][()] for name in f[vid]} for vid in f}


@pytest.mark.parametrize("name", ["colour", "efficientnet"])
def test_prefetched_features_equal_the_serial_reads_bit_for_bit(shard, tmp_path, name):
    if name == "efficientnet":
        pytest.importorskip("efficientnet_lite_pytorch", reason="pip install efficientnet-lite-pytorch==0.1.0")
    root, probe_rows, _, frames = shard
    settings = {"config": {"batch_size": 4} if name == "efficientnet" else {"batch_size": 3}, "device": "cpu",
                "weights": {}}
    runs = {}
    for batches in (0, 1, 2):
        out = tmp_path / f"{batches}.h5"
        status = features_shard(name, settings, frames, probe_rows, root, "s00000", out, prefetch_batches=batches)
        assert (status["status"] == "ok").all()
        runs[batches] = read_shard(out)
    assert sorted(runs[0]) == ["cfr", "noaudio", "vfr"]
    for batches in (1, 2):
        for vid, data in runs[0].items():
            for key, arr in data.items():
                np.testing.assert_array_equal(runs[batches][vid][key], arr, err_msg=f"{vid}/{key}")


def test_an_unreadable_frame_fails_its_video_only(shard, tmp_path):
    root, probe_rows, _, frames = shard
    broken = tmp_path / "frames.h5"
    shutil.copy(frames, broken)
    with h5py.File(broken) as f:  # where the compressed chunk of noaudio's second frame lies
        info = f["noaudio/frames"].id.get_chunk_info_by_coord((1, 0, 0, 0))
    with open(broken, "r+b") as fh:
        fh.seek(info.byte_offset)
        fh.write(b"\xff" * info.size)
    settings = {"config": {"batch_size": 2}, "device": "cpu", "weights": {}}
    status = features_shard("colour", settings, broken, probe_rows, root, "s00000", tmp_path / "out.h5")
    got = dict(zip(status["video_id"], status["status"]))
    assert got == {"cfr": "ok", "noaudio": "failed", "vfr": "ok"}
    error = status.filter(pl.col("video_id") == "noaudio")["error"][0]
    assert error.startswith("noaudio: reading frames failed")
    ref = tmp_path / "ref.h5"
    features_shard("colour", settings, frames, probe_rows, root, "s00000", ref, prefetch_batches=0)
    out, want = read_shard(tmp_path / "out.h5"), read_shard(ref)
    assert sorted(out) == ["cfr", "vfr"]
    for vid in out:
        np.testing.assert_array_equal(out[vid]["values"], want[vid]["values"])


@dataclass(frozen=True)
class _NeedsWeightsConfig(ExtractorConfig):
    pass


@register_extractor
class _NeedsWeights(FeatureExtractor):
    name = "test_needs_weights"
    config_type = _NeedsWeightsConfig
    step_shape = (4,)

    def weights(self):
        return [WeightSpec("test_net", "test-net-0123.pth", url="http://127.0.0.1:9/test-net-0123.pth")]

    def load(self):
        from evoke.weights import resolve

        self.path = resolve(self.weights()[0], self.weights_paths)

    def extract(self, video):
        return FeatureResult(np.zeros((video.n_steps, 4)), np.ones(video.n_steps, bool))


def test_missing_weights_stop_before_any_video_with_one_clear_message(shard, tmp_path, monkeypatch):
    root, probe_rows, _, frames = shard
    monkeypatch.setenv("EVOKE_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("EVOKE_CACHE", str(tmp_path / "cache"))
    with pytest.raises(WeightsMissing) as err:
        features_shard("test_needs_weights", {"config": {}, "device": "cpu", "weights": {}}, frames,
                       probe_rows, root, "s00000", tmp_path / "x.h5")
    msg = str(err.value)
    assert "test-net-0123.pth" in msg and "evoke weights fetch" in msg
    assert not (tmp_path / "x.h5").exists()
    # an explicit path in the config is used as is
    w = tmp_path / "mine.pth"
    w.write_bytes(b"weights")
    status = features_shard("test_needs_weights", {"config": {}, "device": "cpu", "weights": {"test_net": str(w)}},
                            frames, probe_rows, root, "s00000", tmp_path / "x.h5")
    assert (status["status"] == "ok").all()


def test_weights_are_identified_by_content_not_by_name(shard, tmp_path, monkeypatch, caplog):
    """Another checkpoint under the same file name is another identity: a killed run's parts
    made with the old file are redone, not reused; the same bytes elsewhere are the same."""
    import hashlib
    import logging

    from evoke.config import fingerprint
    from evoke.store import mark_part

    root, probe_rows, _, frames = shard
    monkeypatch.setenv("EVOKE_CACHE", str(tmp_path / "cache"))
    w = tmp_path / "net.pth"
    w.write_bytes(b"checkpoint one")
    settings = {"config": {}, "device": "cpu", "weights": {"test_net": str(w)}}
    features_shard("test_needs_weights", settings, frames, probe_rows, root, "s00000", tmp_path / "a.h5")
    with h5py.File(tmp_path / "a.h5") as f:
        assert f["cfr"].attrs["weights"] == f"test_net:{hashlib.sha256(b'checkpoint one').hexdigest()}"
    copy = tmp_path / "elsewhere" / "net.pth"
    copy.parent.mkdir()
    copy.write_bytes(b"checkpoint one")
    same = EXTRACTORS["test_needs_weights"](weights_paths={"test_net": str(copy)})
    first = EXTRACTORS["test_needs_weights"](weights_paths={"test_net": str(w)})
    assert same.config_hash() == first.config_hash()  # where the file lies changes nothing
    # a killed run left a finished part made with checkpoint one; then the file is replaced
    row = probe_rows.filter(pl.col("video_id") == "cfr").row(0, named=True)
    with h5py.File(frames) as f:
        fp = fingerprint(first.config_hash(), row["fingerprint"], f["cfr"].attrs["config_hash"], None)
    parts = root / "features" / "test_needs_weights" / "parts" / "s00000"
    parts.mkdir(parents=True)
    with h5py.File(parts / "cfr.h5", "w") as f:
        mark_part(f.create_group("cfr"), fp, {"n_steps": 6, "n_valid": 6, "dim": 4})
    w.write_bytes(b"checkpoint two")
    with caplog.at_level(logging.INFO, logger="evoke.store"):
        features_shard("test_needs_weights", settings, frames, probe_rows, root, "s00000", tmp_path / "b.h5")
    assert "reusing the finished part" not in caplog.text
    with h5py.File(tmp_path / "b.h5") as f:
        assert f["cfr"].attrs["weights"] == f"test_net:{hashlib.sha256(b'checkpoint two').hexdigest()}"
        assert "values" in f["cfr"]  # redone (the stale part had none)


def test_killed_features_job_resumes_and_equals_an_uninterrupted_run(shard, tmp_path):
    root, _, probe_path, frames = shard
    ds = tmp_path / "results" / "ds"
    ds.mkdir(parents=True)
    for sub in ("ingest", "frames"):
        os.symlink(root / sub, ds / sub)

    def run(out, status):
        return subprocess.Popen(
            [sys.executable, "-m", "evoke", "features", "shard", "--extractor", "motion", "--shard", "s00000",
             "--dataset", "ds", "--frames", str(frames), "--probe", str(probe_path), "--out", str(out),
             "--status", str(status), "--settings", '{"config": {"width": 256}, "device": "cpu", "weights": {}}'],
            cwd=tmp_path, stderr=subprocess.PIPE, text=True)

    ref = run(tmp_path / "ref.h5", tmp_path / "ref.parquet")
    assert ref.wait(timeout=300) == 0, ref.stderr.read()
    parts = ds / "features" / "motion" / "parts" / "s00000"
    job = run(tmp_path / "out.h5", tmp_path / "out.parquet")
    deadline = time.time() + 300
    while not list(parts.glob("*.h5")) and time.time() < deadline and job.poll() is None:
        time.sleep(0.05)
    assert job.poll() is None, "the job ended before it could be killed"
    job.send_signal(signal.SIGKILL)
    job.wait()
    done = {p.name: p.stat().st_mtime_ns for p in parts.glob("*.h5")}
    assert done and not (tmp_path / "out.h5").exists()
    again = run(tmp_path / "out.h5", tmp_path / "out.parquet")
    err = again.communicate(timeout=300)[1]
    assert again.returncode == 0, err
    assert err.count("reusing the finished part") == len(done)
    assert not any(p.name.startswith(".") for p in (tmp_path).iterdir())
    with h5py.File(tmp_path / "ref.h5") as a, h5py.File(tmp_path / "out.h5") as b:
        assert sorted(a) == sorted(b) == ["cfr", "noaudio", "vfr"]
        for vid in a:
            np.testing.assert_array_equal(a[vid]["values"][()], b[vid]["values"][()])
            np.testing.assert_array_equal(a[vid]["mask"][()], b[vid]["mask"][()])


def test_features_list_shows_every_extractor(capsys, tmp_path):
    from evoke.cli import main

    assert main(["features", "list", "--config", str(tmp_path / "none.yaml")]) == 0
    out = capsys.readouterr().out
    assert "colour" in out and "none needed" in out and "motion" in out
