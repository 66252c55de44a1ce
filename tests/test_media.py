"""evoke.media: the in-process PyAV probe against the ffprobe binary, and the
one-pass muted copy + WAV against the two ffmpeg commands it replaced."""

import subprocess

import pytest

from conftest import MEGAMIND
from evoke.ingest import strip_audio
from evoke.media import probe


@pytest.mark.parametrize("key", ["cfr", "noaudio", "vfr", "rotated", "oneframe", "truncated_faststart",
                                 "megamind_avi"])
def test_pyav_probe_describes_files_as_ffprobe_does(media, key):
    """PyAV reads the file in-process; ffprobe (the fallback) must describe it identically,
    rotation, durations, rates and the audio stream included."""
    path = MEGAMIND if key == "megamind_avi" else media[key]
    assert probe(path) == probe(path, via_ffprobe=True)


def test_one_ffmpeg_pass_writes_what_two_commands_wrote(media, tmp_path):
    src = media["cfr"]
    video, wav = strip_audio(src, tmp_path, True, 16000)
    assert (video.name, wav.name) == ("video.mp4", "audio.wav")
    ref_wav = tmp_path / "ref.wav"  # the audio command ingest ran on its own before
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(src), "-map", "0:a:0", "-vn", "-ac", "1",
                    "-ar", "16000", "-c:a", "pcm_s16le", str(ref_wav)], check=True)
    assert wav.read_bytes() == ref_wav.read_bytes()
    ref_video = tmp_path / "ref.mp4"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-fflags", "+genpts", "-i", str(src), "-map", "0:v:0",
                    "-c", "copy", "-an", "-sn", "-dn", "-movflags", "+faststart", str(ref_video)], check=True)
    got, ref = probe(video), probe(ref_video)
    assert not got["has_audio"]
    assert {k: v for k, v in got.items() if k != "size_bytes"} == {k: v for k, v in ref.items() if k != "size_bytes"}
    assert abs(got["size_bytes"] - ref["size_bytes"]) < 64  # the same packets; muxer metadata may differ


def test_undecodable_audio_falls_back_to_no_audio(media, tmp_path):
    """The combined command fails when the audio cannot be converted; the one-at-a-time path then
    keeps the video and records no audio, as before."""
    video, wav = strip_audio(media["noaudio"], tmp_path, True, 16000)  # says audio, has none
    assert video.is_file() and wav is None
