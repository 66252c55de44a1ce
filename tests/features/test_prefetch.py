"""The frame prefetcher: same batches as the in-line reader, in any order of use, bounded,
errors raised in the main thread naming the video, a worker that stops when closed."""

from __future__ import annotations

import time

import numpy as np
import pytest

from evoke.features.base import FeatureError, FramePrefetcher, VideoInput, read_frame_batches


class CountingFrames:
    """A (T, H, W, 3) frames array that counts reads and can fail on one frame."""

    def __init__(self, frames: np.ndarray, fail_at: int | None = None, error=OSError):
        self.frames, self.fail_at, self.error = frames, fail_at, error
        self.reads = 0

    def __getitem__(self, key):
        self.reads += 1
        rows = range(*key.indices(len(self.frames))) if isinstance(key, slice) else [key]
        if self.fail_at in rows:
            raise self.error(f"cannot read frame {self.fail_at}")
        return self.frames[key]


def make_videos(lengths=(7, 0, 5, 12), fail: dict | None = None) -> dict:
    """``{video_id: {"frames": ..., "mask": ...}}`` like the frames HDF5 file (frame 1 of each masked)."""
    rng = np.random.default_rng(0)
    videos = {}
    for i, n in enumerate(lengths):
        mask = np.ones(n, bool)
        mask[1:2] = False
        fail_at, error = (fail or {}).get(f"v{i}", (None, OSError))
        videos[f"v{i}"] = {"frames": CountingFrames(rng.integers(0, 255, (n, 4, 6, 3), dtype=np.uint8),
                                                    fail_at, error),
                           "mask": mask}
    return videos


def halve(frames: np.ndarray) -> np.ndarray:
    return frames.astype(np.float32) / 2


def expected(videos, vid, size=3, prepare=halve):
    g = videos[vid]
    return list(read_frame_batches(g["frames"].frames, g["mask"], size, prepare))


def assert_same(got, want):
    assert len(got) == len(want)
    for (i, a), (j, b) in zip(got, want):
        np.testing.assert_array_equal(i, j)
        np.testing.assert_array_equal(a, b)


def test_video_input_uses_the_prefetcher_and_the_same_batching():
    videos = make_videos()
    g = videos["v0"]
    with FramePrefetcher(videos, list(videos), 3, halve) as pf:
        video = VideoInput("v0", np.arange(7.0), g["mask"], 7.0, _frames_dataset=g["frames"], _prefetch=pf)
        assert_same(list(video.frame_batches(3, halve)), expected(videos, "v0"))
        with pytest.raises(FeatureError, match="batch size 4"):
            list(video.frame_batches(4, halve))


@pytest.mark.parametrize("order", [
    ["v0", "v1", "v2", "v3"],  # the stage's order: read ahead across videos (v1 has no valid frame)
    ["v3", "v0", "v2"],  # skipped videos (finished parts reused) and a jump back
    ["v0", "v0", "v2", "v3"],  # the same video twice
])
def test_batches_equal_the_inline_reader_in_any_order(order):
    videos = make_videos()
    with FramePrefetcher(videos, list(videos), 3, halve) as pf:
        for vid in order:
            assert_same(list(pf.batches(vid, 3, halve)), expected(videos, vid))


def test_a_video_left_early_does_not_spill_into_the_next():
    videos = make_videos()
    with FramePrefetcher(videos, list(videos), 3, halve) as pf:
        first = next(iter(pf.batches("v3", 3, halve)))  # the extractor raised after one batch
        assert_same([first], expected(videos, "v3")[:1])
        assert_same(list(pf.batches("v0", 3, halve)), expected(videos, "v0"))
        assert_same(list(pf.batches("v3", 3, halve)), expected(videos, "v3"))


def reads_after(videos, at_least: int, settle_s: float = 0.5) -> int:
    """The read count once it reached ``at_least`` and then ``settle_s`` passed."""
    def reads():
        return sum(g["frames"].reads for g in videos.values())

    deadline = time.time() + 30
    while reads() < at_least and time.time() < deadline:
        time.sleep(0.01)
    time.sleep(settle_s)
    return reads()


@pytest.mark.parametrize("depth", [1, 2])
def test_read_ahead_is_bounded(depth):
    # one frame per batch, contiguous: one read per batch
    videos = {"a": {"frames": CountingFrames(np.zeros((50, 2, 2, 3), np.uint8)), "mask": np.ones(50, bool)}}
    with FramePrefetcher(videos, ["a"], 1, None, depth=depth) as pf:
        # nothing consumed: depth batches queued, one more read and waiting for room
        assert reads_after(videos, depth + 1) == depth + 1
        it = pf.batches("a", 1)
        held = [next(it) for _ in range(5)]
        assert reads_after(videos, 5 + depth + 1) == 5 + depth + 1
        assert [int(i[0]) for i, _ in held] == [0, 1, 2, 3, 4]


def test_reading_error_names_the_video_and_the_next_video_goes_on():
    videos = make_videos(fail={"v2": (4, OSError)})  # v2's valid frames: 0, 2, 3 | 4
    with FramePrefetcher(videos, list(videos), 3, halve) as pf:
        assert_same(list(pf.batches("v0", 3, halve)), expected(videos, "v0"))
        assert list(pf.batches("v1", 3, halve)) == []
        got = []
        with pytest.raises(FeatureError, match=r"v2: reading frames failed: cannot read frame 4"):
            for b in pf.batches("v2", 3, halve):
                got.append(b)
        assert len(got) == 1  # the batch before the bad frame arrived
        assert_same(list(pf.batches("v3", 3, halve)), expected(videos, "v3"))


def test_a_bug_in_prepare_is_raised_as_itself_with_the_video_named():
    videos = make_videos()

    def broken(frames):
        if frames.shape[0] == 1:  # v2's second batch (v0: 3 + 3 frames, v1: none)
            raise TypeError("a bug")
        return frames

    with FramePrefetcher(videos, list(videos), 3, broken) as pf:
        list(pf.batches("v0", 3, broken))
        list(pf.batches("v1", 3, broken))
        with pytest.raises(TypeError, match="a bug") as err:
            list(pf.batches("v2", 3, broken))
        assert any("v2" in note for note in err.value.__notes__)


def test_close_stops_a_worker_blocked_on_a_full_queue():
    videos = make_videos(lengths=(40,))
    pf = FramePrefetcher(videos, ["v0"], 1, None, depth=1)
    reads_after(videos, 2, settle_s=0.1)  # one batch queued, the worker waiting for room
    pf.close()
    assert not pf._thread.is_alive()
    with pytest.raises(FeatureError, match="closed"):
        list(pf.batches("v0", 1))


def test_unknown_video_is_an_error():
    videos = make_videos()
    with FramePrefetcher(videos, ["v0"], 3, None) as pf, pytest.raises(FeatureError, match="not among"):
        pf.batches("v9", 3)
