"""Independent parts of a video decoded side by side (evoke.frames._sample_parts): the frames must
be those of one decoder and of a full decode, whatever the codec, the group structure, the
container or the targets."""

import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest

from conftest import MEGAMIND, reference_frames, require_media
from evoke import frames as F
from evoke.frames import sample_frames, target_times
from evoke.media import probe, video_packet_times

SRC = "testsrc2=size=96x64:rate=25:duration=6"


def encode(path: Path, *args: str) -> Path:
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i", SRC, *args, str(path)],
                   check=True)
    return path


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("parts")
    x264 = ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-bf", "3", "-g", "30", "-keyint_min", "30",
            "-sc_threshold", "0"]
    c = {
        "h264": encode(d / "closed.mp4", *x264),  # B-frames, an IDR every 1.2 s
        "h264_open": encode(d / "open.mp4", *x264, "-x264-params", "open-gop=1"),
        "hevc": encode(d / "hevc.mp4", "-c:v", "libx265", "-pix_fmt", "yuv420p", "-x265-params",
                       "keyint=30:min-keyint=30:scenecut=0:bframes=3:open-gop=0:log-level=error"),
        "vp9": encode(d / "vp9.webm", "-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-g", "30"),
        "h264_ts": encode(d / "closed.ts", *x264),
    }
    c["rotated"] = d / "rotated.mp4"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(c["h264"]), "-c", "copy",
                    "-metadata:s:v:0", "rotate=90", str(c["rotated"])], check=True)
    return c


def splits_of(path: Path) -> tuple[np.ndarray, bool]:
    s = F._Splits()
    _, _, tb = video_packet_times(path, on_packet=s)
    return s.times(tb), s.seeks_exactly


def test_splitting_keyframes_are_the_ones_that_start_afresh(clips):
    keys = [0.0, 1.2, 2.4, 3.6, 4.8]
    for name in ("h264", "hevc", "vp9"):
        times, exact = splits_of(clips[name])
        np.testing.assert_allclose(times, keys, atol=1e-6, err_msg=name)
        assert exact, name
    # x264's open groups start at non-IDR keyframes whose leading B-frames refer to the group
    # before: only the first keyframe starts afresh, so the stream is one part
    times, _ = splits_of(clips["h264_open"])
    np.testing.assert_allclose(times, [0.0], atol=1e-6)
    # MPEG-TS seeks by byte position, not to a keyframe: never split
    assert not splits_of(clips["h264_ts"])[1]


@pytest.mark.parametrize("name", ["h264", "hevc", "vp9", "rotated", "h264_open", "h264_ts"])
@pytest.mark.parametrize("rate", [1.0, 3.3, 0.25])
def test_parts_side_by_side_give_the_frames_of_one_decoder_and_a_full_decode(clips, name, rate):
    path = clips[name]
    info = probe(path)
    targets = target_times(info["duration_s"], rate)
    one = list(sample_frames(path, rate, 0, info=info, workers=1))
    two = list(sample_frames(path, rate, 0, info=info, workers=3))
    assert [x[:3] for x in two] == [x[:3] for x in one]
    assert all(type(i) is int for i, *_ in two)
    ref = reference_frames(path, targets)
    assert len(two) == len(targets)
    for (_, _, ft, img), (_, _, _, img1), (rt, rimg) in zip(two, one, ref, strict=True):
        np.testing.assert_array_equal(img, img1)
        assert ft == pytest.approx(rt, abs=1e-6)
        np.testing.assert_array_equal(img, F._upright(rimg, info["rotation"]))  # (tested against ffmpeg in test_frames)
    # the parts were really decoded side by side where the stream splits
    s = F._Splits()
    _, _, tb = video_packet_times(path, on_packet=s)
    parts = F._parts(targets, s.times(tb), tb) if s.seeks_exactly else []
    assert (len(parts) >= 2) == (name in ("h264", "hevc", "vp9", "rotated"))


def test_a_seek_that_lands_past_its_keyframe_is_made_again_earlier(tmp_path):
    """MPEG-TS seeks by byte position: on this clip (x264's scene-cut keyframes) a seek to the
    keyframe at 5.57 s lands on the one at 7.91 s, and before the fix 6 of 33 targets at 2.9 Hz
    took that later group's first frame. One decoder (TS is never split into parts)."""
    require_media()
    path = tmp_path / "cuts.ts"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(MEGAMIND), "-t", "12", "-vf", "scale=240:176",
                    "-c:v", "libx264", "-preset", "veryfast", "-an", str(path)], check=True)
    info = probe(path)
    targets = target_times(info["duration_s"], 2.9)
    got = list(sample_frames(path, 2.9, 0, info=info))
    ref = reference_frames(path, targets)
    for (_, _, ft, img), (rt, rimg) in zip(got, ref, strict=True):
        assert ft == pytest.approx(rt, abs=1e-6)
        np.testing.assert_array_equal(img, rimg)


def test_leaving_early_stops_every_decoder(clips):
    before = {t.ident for t in threading.enumerate()}
    frames = sample_frames(clips["h264"], 5.0, 0, workers=2)
    assert len([next(frames) for _ in range(3)]) == 3
    frames.close()
    left = [t for t in threading.enumerate() if t.ident not in before and t.name.startswith("evoke-frames")]
    assert not left
