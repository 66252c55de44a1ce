"""frames.backend: nvdec (evoke.frames_nvdec, issue 16 item 4).

Here, without a GPU: the CPU half of the backend for real (the plan of which frame each
target takes equals what the PyAV backend puts on screen; NV12 samples become the PyAV
backend's picture exactly; the routing of codecs; the job-stopping error when
PyNvVideoCodec or a CUDA device is missing; the config key). With a CUDA device and
PyNvVideoCodec: the whole backend against the PyAV backend, frame for frame.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import polars as pl
import pytest

from conftest import VTEST, ffmpeg
from evoke.config import ConfigError, validate_layers
from evoke.frames import frames_shard, output_size, sample_frames, target_times
from evoke.media import EnvironmentFailure, probe
from evoke import frames_nvdec as nv


def _nvdec_usable() -> str | None:
    """None when a CUDA device and PyNvVideoCodec are present, else why not."""
    try:
        nv.load_nvc()
    except EnvironmentFailure as exc:
        return str(exc)
    return None


NO_GPU = _nvdec_usable()
needs_gpu = pytest.mark.skipif(NO_GPU is not None, reason=f"needs a CUDA device and PyNvVideoCodec: {NO_GPU}")


def _targets(info: dict) -> np.ndarray:
    """The 1 Hz grid and a dense irregular one (0.37 s steps) over the whole video and past its end."""
    return np.union1d(target_times(info["duration_s"], 1.0), np.arange(0.0, info["duration_s"] + 0.5, 0.37))


@pytest.mark.parametrize("key", ["cfr", "vfr", "rotated", "oneframe"])
def test_the_cpu_plan_takes_the_frame_pyav_puts_on_screen(media, key):
    info = probe(media[key])
    targets = _targets(info)
    plan = nv.plan_targets(media[key], targets, info.get("fps_avg"))
    got = {i: ft for i, _, ft, _ in sample_frames(media[key], short_side=32, info=info, targets=targets)}
    planned = {k: float(plan.times[j]) for k, j in enumerate(plan.index) if j >= 0}
    assert sorted(planned) == sorted(got)  # the same targets taken, the same masked
    for k, ft in got.items():
        assert planned[k] == pytest.approx(ft, abs=1e-9), (key, targets[k])
    if key == "vfr":  # not where a constant rate would put it
        true = np.array(media["vfr_times"])
        assert [planned[k] for k in sorted(planned)] == pytest.approx(
            [true[true <= targets[k] + 1e-9].max() for k in sorted(planned)], abs=2e-3)
    assert len(planned) < len(targets)  # the targets past the last frame's display are masked


@pytest.fixture(scope="module")
def full_range(media, tmp_path_factory):
    path = tmp_path_factory.mktemp("nvdec") / "full_range.mp4"  # yuvj420p, BT.709 matrix
    ffmpeg("-i", str(media["cfr"]), "-t", "2", "-an", "-c:v", "libx264", "-preset", "ultrafast",
           "-color_range", "pc", "-colorspace", "bt709", str(path))
    return path


@pytest.mark.parametrize("key", ["cfr", "vfr", "full_range"])
def test_nv12_samples_become_the_pyav_backends_picture_exactly(media, full_range, key):
    path = full_range if key == "full_range" else media[key]
    assert nv.stream_info(path).pix_fmt == ("yuvj420p" if key == "full_range" else "yuv420p")
    like = nv.first_frame(path)
    with av.open(str(path)) as c:
        for n, frame in enumerate(c.decode(video=0)):
            if n % 7 != 3:
                continue
            nv12 = frame.reformat(format="nv12").to_ndarray()  # what NVDEC hands out: Y, then U/V interleaved
            for short_side in (0, 120):
                w, h = output_size(frame.width, frame.height, short_side)
                want = frame.to_ndarray(format="rgb24", width=w, height=h, interpolation="AREA")
                np.testing.assert_array_equal(nv.rgb_from_nv12(nv12, like, w, h), want, err_msg=f"frame {n}")
    with pytest.raises(ValueError, match="NV12 samples of shape"):
        nv.rgb_from_nv12(np.zeros((30, 40), np.uint8), like, 40, 20)


def test_only_h264_hevc_av1_and_vp9_in_8_bit_420_are_routed_to_the_gpu(media):
    info = probe(media["cfr"])
    assert nv.cpu_reason(info, nv.stream_info(media["cfr"])) is None
    avi = nv.stream_info(VTEST)  # MPEG-4 part 2 (msmpeg4)
    assert nv.cpu_reason(probe(VTEST), avi) == f"codec {avi.codec} is not routed to NVDEC (only h264, hevc, av1, vp9)"
    ten_bit = nv.StreamInfo("hevc", "yuv420p10le")
    assert "pixel format yuv420p10le" in nv.cpu_reason(info, ten_bit)
    assert nv.cpu_reason(dict(info, width=853), nv.stream_info(media["cfr"])) == "odd picture size 853x240"


@pytest.mark.skipif(NO_GPU is None, reason="PyNvVideoCodec and a CUDA device are present here")
def test_without_pynvvideocodec_or_a_gpu_the_job_stops_and_no_video_fails(media, tmp_path):
    (tmp_path / "v").mkdir()
    (tmp_path / "v" / "cfr.mp4").symlink_to(media["cfr"])
    rows = pl.DataFrame([{"video_id": "cfr", "status": "ok", "video_path": "v/cfr.mp4", "fingerprint": "fp",
                          **probe(media["cfr"])}], infer_schema_length=None)
    out, status = tmp_path / "frames" / "s0.h5", tmp_path / "frames" / "s0.status.parquet"
    settings = {"rate_hz": 1.0, "short_side": 96, "backend": "nvdec"}
    match = r"^frames backend 'nvdec' (cannot load PyNvVideoCodec|: no CUDA)"
    with pytest.raises(EnvironmentFailure, match=match) as err:
        frames_shard(rows, tmp_path, settings, "s0", out, status_out=status)
    assert "requirements-gpu.txt" in str(err.value) and "frames.backend: pyav" in str(err.value)
    assert "\n" not in str(err.value)
    assert not out.exists() and not status.exists()


def test_the_config_accepts_nvdec_and_names_the_backends_otherwise():
    cfg = validate_layers([("config.yaml", {"frames": {"backend": "nvdec"}, "manifest": "data/x.csv"})])
    assert cfg["frames"]["backend"] == "nvdec"
    with pytest.raises(ConfigError, match=r"frames\.backend: 'cuda' is not one of \['pyav', 'decord', 'nvdec'\]"):
        validate_layers([("config.yaml", {"frames": {"backend": "cuda"}, "manifest": "data/x.csv"})])


# --- on a GPU -----------------------------------------------------------------------------

def _assert_same_as_pyav(path, info, targets=None):
    want = list(sample_frames(path, 1.0, 96, "pyav", info, targets))
    got = list(sample_frames(path, 1.0, 96, "nvdec", info, targets))
    assert [g[:3] for g in got] == [w[:3] for w in want]
    for (i, _, _, a), (_, _, _, b) in zip(got, want):
        np.testing.assert_array_equal(a, b, err_msg=f"{path.name} target {i}")  # tolerance 0: NVDEC is bit-exact


@needs_gpu
@pytest.mark.parametrize("key", ["cfr", "vfr", "rotated"])
def test_on_the_gpu_nvdec_gives_the_pyav_backends_frames(media, key):
    info = probe(media[key])
    before = sum(nv.CPU_FALLBACKS.values())
    _assert_same_as_pyav(media[key], info)
    _assert_same_as_pyav(media[key], info, _targets(info))
    assert sum(nv.CPU_FALLBACKS.values()) == before, dict(nv.CPU_FALLBACKS)  # decoded on the GPU, not PyAV


def write_av1(src: Path, dest: Path, n_frames: int = 75) -> None:
    """The first ``n_frames`` of ``src`` as AV1 (SVT-AV1 or libaom, whichever PyAV has), 25 fps."""
    enc = next((e for e in ("libsvtav1", "libaom-av1") if e in av.codecs_available), None)
    if enc is None:
        pytest.skip("no AV1 encoder in this PyAV build")
    with av.open(str(src)) as inp, av.open(str(dest), "w") as out:
        s = out.add_stream(enc, rate=25)
        s.width, s.height, s.pix_fmt = 320, 240, "yuv420p"
        for n, frame in enumerate(inp.decode(video=0)):
            if n >= n_frames:
                break
            frame = frame.reformat(width=320, height=240, format="yuv420p")
            frame.pts, frame.time_base = n, Fraction(1, 25)
            for p in s.encode(frame):
                out.mux(p)
        for p in s.encode():
            out.mux(p)


def test_the_av1_clip_of_the_gpu_test_is_routed_to_the_gpu(media, tmp_path):
    """Here: the AV1 file the GPU test decodes is made, probed and routed to NVDEC."""
    write_av1(media["cfr"], tmp_path / "av1.mp4", n_frames=10)
    stream = nv.stream_info(tmp_path / "av1.mp4")
    assert stream.codec == "av1" and nv.cpu_reason(probe(tmp_path / "av1.mp4"), stream) is None


@needs_gpu
def test_on_the_gpu_av1_is_decoded_there_or_falls_back_with_its_reason(media, tmp_path):
    path = tmp_path / "av1.mp4"
    write_av1(media["cfr"], path)
    info = probe(path)
    reason = "this GPU's NVDEC cannot decode av1 (decoder caps: not supported)"
    before = nv.CPU_FALLBACKS[reason]
    _assert_same_as_pyav(path, info)
    supported = nv._caps("AV1").get("supported")
    assert nv.CPU_FALLBACKS[reason] == before + (0 if supported else 1)


@needs_gpu
def test_on_the_gpu_mpeg4_part_2_falls_back_to_pyav_and_is_counted(tmp_path):
    path = tmp_path / "mpeg4.avi"
    ffmpeg("-i", str(VTEST), "-t", "3", "-c:v", "copy", str(path))
    info = probe(path)
    stream = nv.stream_info(path)
    reason = nv.cpu_reason(info, stream)
    before = nv.CPU_FALLBACKS[reason]
    _assert_same_as_pyav(path, info)
    assert reason and nv.CPU_FALLBACKS[reason] == before + 1
