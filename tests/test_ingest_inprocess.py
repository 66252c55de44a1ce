"""Ingest's muted copy and WAV written in-process with PyAV (``ingest._write_in_process``),
against the ffmpeg commands they replace: the copy holds the source's video packets, the WAV
the samples of ``ffmpeg -ac 1 -ar RATE -c:a pcm_s16le`` (the ffmpeg CLI runs in the test)
within one step (PyAV bundles a newer swresample than Debian's ffmpeg); what ffmpeg would
write differently is left to ffmpeg; a full disk is the machine's failure, never the video's.
"""

from __future__ import annotations

import logging
import struct
import subprocess
import wave
from pathlib import Path

import av
import numpy as np
import pytest

from evoke import ingest
from evoke.media import EnvironmentFailure, MediaError, video_packet_digest


def _ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *args], check=True)


def _samples(path: Path) -> np.ndarray:
    with wave.open(str(path)) as w:
        assert (w.getnchannels(), w.getsampwidth()) == (1, 2)
        return np.frombuffer(w.readframes(w.getnframes()), "<i2"), w.getframerate()


def _top_atoms(path: Path) -> list[str]:
    data, atoms, pos = path.read_bytes(), [], 0
    while pos + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[pos: pos + 8])
        atoms.append(kind.decode())
        pos += size if size else len(data)
    return atoms


@pytest.fixture(scope="module")
def surround(media, tmp_path_factory) -> Path:
    """2 s of 5.1 AAC at 44.1 kHz beside a small H.264 picture (a downmix and an odd ratio)."""
    path = tmp_path_factory.mktemp("surround") / "surround.mp4"
    _ffmpeg("-i", str(media["noaudio"]), "-f", "lavfi", "-i", "sine=frequency=330:sample_rate=44100:duration=2",
            "-t", "2", "-filter_complex", "[1:a]pan=5.1|FL=c0|FR=0.5*c0|FC=0.3*c0|LFE=0.1*c0|BL=0.7*c0|BR=0.2*c0[a]",
            "-map", "0:v:0", "-map", "[a]", "-c:v", "copy", "-c:a", "aac", str(path))
    return path


@pytest.mark.parametrize("key, rate", [("cfr", 16000), ("surround", 22050)])
def test_the_copy_holds_the_source_packets_and_the_wav_ffmpegs_samples(media, surround, tmp_path, key, rate):
    src = surround if key == "surround" else media[key]
    video, wav = ingest._write_in_process(src, tmp_path, True, rate)
    assert video_packet_digest(video) == video_packet_digest(src)  # every packet, bytes and timestamps
    assert _top_atoms(video).index("moov") < _top_atoms(video).index("mdat")  # +faststart
    with av.open(str(video)) as c:
        assert [s.type for s in c.streams] == ["video"]
    ref = tmp_path / "ffmpeg.wav"  # the independent reference: the command this replaces
    _ffmpeg("-i", str(src), *ingest._to_wav(rate), str(ref))
    (got, got_rate), (want, want_rate) = _samples(wav), _samples(ref)
    assert got_rate == want_rate == rate and got.size == want.size > rate
    diff = np.abs(got.astype(np.int32) - want)
    # measured on 30 WAVs (demo clips, bad-input corpus, benchmark files): 228 of 6,276,514
    # samples one step apart, none further
    assert diff.max() <= 1 and np.count_nonzero(diff) <= 1e-3 * got.size


def test_what_ffmpeg_would_write_differently_is_left_to_it(media, tmp_path, caplog):
    """An input that does not start at 0 (ffmpeg moves it there) and a damaged audio packet
    (ffmpeg decodes on past it): PyAV declines, saying why at debug, and ffmpeg writes the
    files, the same as ffmpeg alone."""
    late = tmp_path / "late.mkv"  # the audio starts 0.5 s in, the video at 0.5 s too
    _ffmpeg("-i", str(media["cfr"]), "-c", "copy", "-output_ts_offset", "0.5", str(late))
    damaged = tmp_path / "damaged.mp4"
    data = bytearray(media["cfr"].read_bytes())
    with av.open(str(media["cfr"])) as c:
        audio = [p for p in c.demux(audio=0) if p.size]
    p = audio[len(audio) // 2]
    data[p.pos: p.pos + p.size] = b"\xff" * p.size
    damaged.write_bytes(bytes(data))
    for src, why in ((late, "the input starts at 0.5 s"), (damaged, "in-process failed")):
        with pytest.raises(MediaError, match=why):
            ingest._write_in_process(src, tmp_path, True, 16000)
        ours, theirs = tmp_path / f"{src.stem}-ours", tmp_path / f"{src.stem}-ffmpeg"
        ours.mkdir()
        theirs.mkdir()
        with caplog.at_level(logging.DEBUG, logger="evoke.ingest"):
            got = ingest.strip_audio(src, ours, True, 16000)
        assert f"{src.name}: " in caplog.text and "writing them with ffmpeg" in caplog.text
        want = ingest._strip_with_ffmpeg(src, theirs, True, 16000, None)
        assert [p.name for p in got] == [p.name for p in want] == ["video.mp4", "audio.wav"]
        assert video_packet_digest(got[0]) == video_packet_digest(want[0])
        assert got[1].read_bytes() == want[1].read_bytes()  # ffmpeg's own WAV


@pytest.mark.parametrize("full", ["video.mp4", "audio.wav"])
def test_a_full_disk_while_writing_in_process_is_the_machines_failure(tmp_path, full):
    """A real 96 KiB file system: the muted copy of a large picture, or the WAV of a tiny one,
    does not fit. Either way EnvironmentFailure names the file and the disk, never a MediaError
    (which would fail the video and let ffmpeg try)."""
    from faults.small_disk import mounted_tmpfs

    src = tmp_path / "src.mp4"
    picture, sound = ("testsrc2=s=640x480:r=25:d=3", "sine=d=1") if full == "video.mp4" else \
        ("color=s=64x48:r=5:d=6", "sine=d=6")  # (the WAV, 32 KiB a second, is written first)
    _ffmpeg("-f", "lavfi", "-i", picture, "-f", "lavfi", "-i", f"{sound}:r=48000",
            "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", str(src))
    with mounted_tmpfs(tmp_path / "small", "96k") as mnt:
        with pytest.raises(EnvironmentFailure,
                           match=f"the disk failed, not the video: .*No space left on device.*{full}"):
            ingest._write_in_process(src, mnt, True, 16000)
