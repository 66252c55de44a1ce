import subprocess

import av
import h5py
import numpy as np
import polars as pl
import pytest

from conftest import reference_frames
from evoke.frames import frames_shard, output_size, sample_frames, target_times, write_video_frames
from evoke.media import probe

NATIVE = dict(rate_hz=1.0, short_side=0, backend="pyav")


def test_target_times_cover_the_duration_strictly():
    assert target_times(10.0, 1.0).tolist() == list(range(10))
    assert target_times(10.5, 1.0).tolist() == list(range(11))
    assert target_times(0.04, 1.0).tolist() == [0.0]
    assert target_times(3.0, 2.0).tolist() == [0, 0.5, 1, 1.5, 2, 2.5]


def test_output_size_never_upscales():
    assert output_size(1280, 720, 360) == (640, 360)
    assert output_size(720, 1280, 360) == (360, 640)
    assert output_size(320, 240, 360) == (320, 240)
    assert output_size(3840, 2160, 0) == (3840, 2160)


def test_vfr_frames_equal_an_independent_sequential_decode(media):
    info = probe(media["vfr"])
    assert info["fps_is_variable"]
    got = list(sample_frames(media["vfr"], 1.0, 0, "pyav", info))
    targets = target_times(info["duration_s"], 1.0)
    ref = reference_frames(media["vfr"], targets)
    assert [g[0] for g in got] == list(range(len(targets)))
    true_times = np.array(media["vfr_times"])
    for (i, t, ft, img), (rt, rimg) in zip(got, ref):
        assert ft == pytest.approx(rt, abs=1e-6)
        # the frame on screen at t: the last presented at or before t
        assert ft == pytest.approx(true_times[true_times <= t + 1e-9].max(), abs=2e-3)
        np.testing.assert_array_equal(img, rimg)


def test_seeking_path_matches_sequential_decode_on_long_keyframe_gaps(media):
    # 0.25 Hz on a file with 1 s keyframes forces seeks between targets
    info = probe(media["cfr"])
    got = list(sample_frames(media["cfr"], 0.25, 0, "pyav", info))
    ref = reference_frames(media["cfr"], target_times(info["duration_s"], 0.25))
    assert len(got) == len(ref) == 2
    for (_, _, ft, img), (rt, rimg) in zip(got, ref):
        assert ft == pytest.approx(rt)
        np.testing.assert_array_equal(img, rimg)


def test_rotation_is_applied_and_matches_ffmpeg_autorotate(media):
    info = probe(media["rotated"])
    assert info["rotation"] in (90, 270)
    assert (info["display_width"], info["display_height"]) == (240, 320)
    got = list(sample_frames(media["rotated"], 1.0, 0, "pyav", info))
    assert got[0][3].shape == (320, 240, 3)
    plain = {i: img for i, _, _, img in sample_frames(media["cfr"], 1.0, 0, "pyav")}
    for i, t, _, img in got:
        # ffmpeg's CLI applies the display rotation itself (autorotate)
        raw = subprocess.run(
            ["ffmpeg", "-v", "error", "-ss", f"{t}", "-i", str(media["rotated"]), "-frames:v", "1",
             "-f", "rawvideo", "-pix_fmt", "rgb24", "-"], capture_output=True, check=True).stdout
        ref = np.frombuffer(raw, np.uint8).reshape(320, 240, 3)
        assert np.abs(img.astype(int) - ref.astype(int)).mean() < 2.0
        turned = np.rot90(plain[i], k=-1 if info["rotation"] == 90 else 1)
        np.testing.assert_array_equal(img, turned)


def test_frames_are_scaled_by_short_side(media):
    info = probe(media["uhd"])
    got = list(sample_frames(media["uhd"], 1.0, 360, "pyav", info))
    assert [g[3].shape for g in got] == [(360, 640, 3)] * 2


def test_one_frame_video_gives_one_frame(media):
    got = list(sample_frames(media["oneframe"], 1.0, 0))
    assert len(got) == 1 and got[0][1] == 0.0


def test_decord_backend_gives_the_same_frames(media):
    pytest.importorskip("decord")
    for key in ("cfr", "vfr"):
        info = probe(media[key])
        a = list(sample_frames(media[key], 1.0, 0, "pyav", info))
        b = list(sample_frames(media[key], 1.0, 0, "decord", info))
        assert [x[0] for x in a] == [x[0] for x in b]
        for (_, _, fa, ia), (_, _, fb, ib) in zip(a, b):
            assert fa == pytest.approx(fb, abs=1e-3)
            assert np.abs(ia.astype(int) - ib.astype(int)).mean() < 3.0


def test_write_video_frames_hdf5_layout(media, tmp_path):
    out = tmp_path / "f.h5"
    stats = write_video_frames(media["cfr"], out, "clip", dict(NATIVE, short_side=120))
    assert stats == {"n_frames": 6, "n_valid": 6, "height": 120, "width": 160}
    with h5py.File(out) as f:
        g = f["clip"]
        assert g["frames"].shape == (6, 120, 160, 3) and g["frames"].dtype == np.uint8
        assert g["timestamps_s"][()].tolist() == [0, 1, 2, 3, 4, 5]
        assert g["mask"][()].all()
        assert g.attrs["rate_hz"] == 1.0 and g.attrs["extractor"] == "frames"
        assert "config_hash" in g.attrs and "evoke_version" in g.attrs
    assert [p.name for p in tmp_path.iterdir()] == ["f.h5"]  # no temporaries left


def test_truncated_file_keeps_decodable_frames_and_masks_the_rest(media, tmp_path):
    from evoke.media import MediaError

    try:
        info = probe(media["truncated_faststart"])
    except MediaError:
        pytest.skip("this ffmpeg cannot open the truncated file at all")
    stats = write_video_frames(media["truncated_faststart"], tmp_path / "t.h5", "t", NATIVE, info)
    assert 0 < stats["n_valid"] <= stats["n_frames"]
    with h5py.File(tmp_path / "t.h5") as f:
        mask = f["t/mask"][()]
        frames = f["t/frames"][()]
    assert not frames[~mask].any()


def _decoded_end(path) -> float:
    """Independent reference: decode every frame in order until the decoder gives up; the end
    of the last decoded frame's display (its time plus its duration)."""
    end = 0.0
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        try:
            for frame in c.decode(stream):
                end = max(end, float(frame.time) + float(frame.duration * stream.time_base))
        except av.FFmpegError:
            pass
    return end


def test_a_truncated_mp4_masks_every_second_past_its_last_decoded_frame(media, tmp_path):
    """An MP4 cut mid-stream keeps its header's duration: the seconds after the last picture
    that decodes must be masked, not filled with copies of that picture marked valid."""
    path = media["truncated_faststart"]
    info = probe(path)
    end = _decoded_end(path)
    assert info["duration_s"] >= end + 1.0  # the header claims at least one second more than decodes
    stats = write_video_frames(path, tmp_path / "t.h5", "t", NATIVE, info)
    with h5py.File(tmp_path / "t.h5") as f:
        mask, ts, ft = f["t/mask"][()], f["t/timestamps_s"][()], f["t/frame_time_s"][()]
    np.testing.assert_array_equal(mask, ts < end)
    assert stats["n_valid"] == int((ts < end).sum()) < stats["n_frames"]
    assert np.isnan(ft[~mask]).all() and (ft[mask] <= ts[mask] + 1e-9).all()


def test_a_cut_file_gets_every_picture_one_thread_decodes_past_its_damaged_packets(media):
    """The last packets of a file cut mid-stream are damaged: frame threads drop pictures that
    one thread decodes (this file: 1.6 s against 1.8 s), and the first damaged packet used to
    end the decoding. At 10 Hz every target up to the end of the last picture a single-thread
    decode gives (skipping the packets that do not decode) now takes that decode's frame."""
    path = media["truncated_faststart"]
    info = probe(path)
    frames = []
    with av.open(str(path)) as c:  # the reference: one thread, every packet, damaged ones skipped
        stream = c.streams.video[0]
        stream.codec_context.thread_count = 1
        for packet in c.demux(stream):
            try:
                frames += [(float(f.time), float(f.duration * stream.time_base), f.to_ndarray(format="rgb24"))
                           for f in packet.decode()]
            except av.InvalidDataError:
                continue
    frames.sort(key=lambda x: x[0])
    end = frames[-1][0] + frames[-1][1]
    targets = target_times(info["duration_s"], 10.0)
    got = {i: (ft, img) for i, _, ft, img in sample_frames(path, 10.0, 0, info=info)}
    assert sorted(got) == [i for i, t in enumerate(targets) if t < end - 1e-9]
    assert end > 1.85  # (the frame-threaded decode ended at 1.7 s)
    times = np.array([t for t, _, _ in frames])
    for i, (ft, img) in got.items():
        k = max(int(np.searchsorted(times, targets[i] + 1e-9, side="right")) - 1, 0)
        assert ft == pytest.approx(times[k], abs=1e-6)
        np.testing.assert_array_equal(img, frames[k][2])


def _probe_rows(tmp_path, media, keys):
    rows = []
    for k in keys:
        vdir = tmp_path / "ingest" / "videos" / k
        vdir.mkdir(parents=True)
        (vdir / "video.mp4").symlink_to(media[k])
        rows.append({"video_id": k, "status": "ok", "video_path": f"ingest/videos/{k}/video.mp4",
                     "fingerprint": f"fp-{k}", **probe(media[k])})
    rows.append({"video_id": "broken", "status": "failed", "video_path": None, "fingerprint": None})
    return pl.DataFrame(rows, infer_schema_length=None)


def test_frames_shard_resumes_finished_videos(media, tmp_path):
    settings = dict(NATIVE, short_side=96)
    rows = _probe_rows(tmp_path, media, ["cfr", "noaudio"])
    out = tmp_path / "frames" / "s00000.h5"
    status = frames_shard(rows, tmp_path, settings, "s00000", out)
    assert status["status"].to_list() == ["ok", "ok"]  # failed ingest rows are skipped
    with h5py.File(out) as f:
        assert sorted(f) == ["cfr", "noaudio"]
        first = f["cfr/frames"][()]
    # a killed earlier run left a finished part for one video: it is reused, not redone
    parts = tmp_path / "frames" / "parts" / "s00000"
    write_video_frames(media["cfr"], parts / "cfr.h5", "cfr", settings, probe(media["cfr"]),
                       fingerprint="stale")  # wrong fingerprint: must be redone
    from evoke.config import fingerprint
    from evoke.frames import settings_fingerprint

    fp = fingerprint(settings_fingerprint(settings), "fp-noaudio")
    write_video_frames(media["noaudio"], parts / "noaudio.h5", "noaudio", settings,
                       probe(media["noaudio"]), fingerprint=fp)
    with h5py.File(parts / "noaudio.h5", "r+") as f:
        f["noaudio/frames"][0] = 7  # marks the part so reuse is visible
    (parts / ".cfr.h5.tmp-999999-abcdef01").write_bytes(b"half-written")
    frames_shard(rows, tmp_path, settings, "s00000", out)
    with h5py.File(out) as f:
        assert (f["noaudio/frames"][0] == 7).all()  # reused
        np.testing.assert_array_equal(f["cfr/frames"][()], first)  # redone, same result
    assert not parts.exists()


def _sampled(path, info, drain_plan=None):
    """The PyAV sampler's frames at 1 Hz (native size), with ``drain_plan`` replacing the drain points
    sample_frames computes; also how many frames it decoded and whether it drained."""
    from evoke import frames as F
    from evoke.media import video_packet_times

    times, keys, tb = video_packet_times(path)
    targets = target_times(info["duration_s"], 1.0)
    taken = times[np.maximum(np.searchsorted(times, targets + 1e-9, side="right") - 1, 0)]
    taken_pts = {int(round(x / tb)) for x in taken}
    plan = F._drain_points(taken, times[keys], targets, tb) if drain_plan is None else drain_plan(taken, targets, tb)
    sampler = F._PyAVSampler(path, times[keys], info["fps_avg"], taken_pts, plan)
    decoded, drained = [0], [False]
    one = sampler._decode_one

    def counting():
        got = one()
        decoded[0] += got is not None
        drained[0] |= sampler.paused
        return got

    sampler._decode_one = counting
    try:
        out = [sampler.frame_at(float(t)) for t in targets]
    finally:
        sampler.close()
    return [(ft, f.to_ndarray(format="rgb24")) for ft, f in out], decoded[0], drained[0], plan


def test_draining_before_seeks_gives_the_frames_of_a_sequential_decode(media):
    """1 Hz on 1 s keyframes: after each target's frame the next target is past a keyframe, so the
    decoder is drained there; fewer frames decode than a full decode, the frames are the same."""
    info = probe(media["cfr"])
    got, decoded, drained, plan = _sampled(media["cfr"], info)
    assert drained and len(plan) == len(got) - 1
    assert decoded < info["n_frames"] / 2
    ref = reference_frames(media["cfr"], target_times(info["duration_s"], 1.0))
    for (ft, img), (rt, rimg) in zip(got, ref, strict=True):
        assert ft == pytest.approx(rt, abs=1e-6)
        np.testing.assert_array_equal(img, rimg)


def test_a_drain_plan_that_does_not_hold_still_gives_the_frame_on_screen(media):
    """A drain point at every taken frame, though the next target is mostly not past a keyframe:
    the sampler must notice the missing seek, go back to the keyframe and decode on."""
    info = probe(media["vfr"])
    got, _, drained, _ = _sampled(media["vfr"], info, drain_plan=lambda taken, targets, tb: {
        int(round(x / tb)): float(t) for x, t in zip(taken, targets)})
    assert drained
    ref = reference_frames(media["vfr"], target_times(info["duration_s"], 1.0))
    for (ft, img), (rt, rimg) in zip(got, ref, strict=True):
        assert ft == pytest.approx(rt, abs=1e-6)
        np.testing.assert_array_equal(img, rimg)


def test_dense_targets_with_b_frames_get_the_frame_on_screen(tmp_path):
    """Targets a frame apart (each second and the frame presented after it, as the demo's motion
    measure asks): with B-frames a later target's packet is fed before an earlier target's frame
    decodes, and a drain there must not hide that frame (it once returned the frame before)."""
    from evoke.media import video_packet_times

    path = tmp_path / "bframes.mp4"  # 25 fps, B-frames, a keyframe every 1.2 s (as demo clips have)
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=96x64:rate=25:duration=5",
                    "-c:v", "libx264", "-bf", "3", "-g", "30", "-keyint_min", "30", "-sc_threshold", "0",
                    "-pix_fmt", "yuv420p", str(path)], check=True)
    info = probe(path)
    times = video_packet_times(path)[0]
    seconds = target_times(info["duration_s"], 1.0)
    after = times[np.minimum(np.searchsorted(times, seconds + 1e-9, side="right"), times.size - 1)]
    targets = np.unique(np.concatenate([seconds, after, after - 1e-3]))
    got = [(ft, rgb) for _, _, ft, rgb in sample_frames(path, 1.0, 10_000, info=info, targets=targets)]
    ref = reference_frames(path, targets)
    assert len(got) == len(ref) == targets.size
    for (ft, img), (rt, rimg) in zip(got, ref, strict=True):
        assert ft == pytest.approx(rt, abs=1e-6)
        np.testing.assert_array_equal(img, rimg)


@pytest.mark.parametrize("open_gop", [False, True])
def test_reading_on_to_the_next_keyframe_instead_of_seeking(tmp_path, monkeypatch, open_gop):
    """One decoder (``workers=1``; with more, closed groups are decoded side by side instead).
    Past a drain point the sampler reads on to the next target's keyframe without sending the
    decoder the packets between, when that keyframe is an IDR picture (closed groups): no seek at
    all. x264's open groups start at non-IDR keyframes whose leading B-frames refer to the group
    before: there it drains and seeks as before. Either way the frames are a full decode's."""
    from evoke import frames as F

    path = tmp_path / "gop.mp4"  # 25 fps, B-frames, a keyframe every 1.2 s
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=96x64:rate=25:duration=6",
                    "-c:v", "libx264", "-bf", "3", "-g", "30", "-keyint_min", "30", "-sc_threshold", "0",
                    "-x264-params", f"open-gop={int(open_gop)}", "-pix_fmt", "yuv420p", str(path)], check=True)
    seeks, afresh = [], []
    seek, starts_afresh = F._PyAVSampler._seek, F._PyAVSampler._starts_afresh
    monkeypatch.setattr(F._PyAVSampler, "_seek", lambda self, t, drain=True: (
        seeks.append(t) if t is not None else None, seek(self, t, drain))[1])
    monkeypatch.setattr(F._PyAVSampler, "_starts_afresh", lambda self, packet: (
        afresh.append(starts_afresh(self, packet)), afresh[-1])[1])
    info = probe(path)
    targets = target_times(info["duration_s"], 1.0)
    got = [(ft, rgb) for _, _, ft, rgb in sample_frames(path, 1.0, 0, info=info, workers=1)]
    assert len(afresh) >= 3  # a read-on began at each keyframe the next second lies past
    assert not any(afresh) if open_gop else all(afresh)
    assert len(seeks) == (len(afresh) if open_gop else 0)
    ref = reference_frames(path, targets)
    for (ft, img), (rt, rimg) in zip(got, ref, strict=True):
        assert ft == pytest.approx(rt, abs=1e-6)
        np.testing.assert_array_equal(img, rimg)
