"""evoke.media: the in-process PyAV probe against the ffprobe binary, and ingest's
one-pass ffmpeg muted copy + WAV (written when the in-process writer declines a file)
against the two ffmpeg commands it replaced."""

import subprocess

import pytest

from conftest import MEGAMIND, single_thread_last_frame
from evoke.ingest import _strip_with_ffmpeg, strip_audio
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
    video, wav = _strip_with_ffmpeg(src, tmp_path, True, 16000, None)
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


def test_skipping_non_reference_frames_keeps_the_full_decodes_last_frame(media, tmp_path):
    """The last group of pictures decodes without the non-reference frames that cannot be the
    latest; when the latest frame does not come out that way (here its packet is damaged), the
    group decodes whole, so the answer is always a full decode's."""
    import av

    from evoke.media import _decode_tail, decoded_end_time, video_packet_times

    damaged = tmp_path / "damaged_last.mp4"  # cfr.mp4 with the packet of the highest timestamp overwritten
    with av.open(str(media["cfr"])) as c:
        top = max((p.pts, p.pos, p.size) for p in c.demux(video=0) if p.size)
    data = bytearray(media["cfr"].read_bytes())
    data[top[1] + 8: top[1] + top[2]] = b"\xff" * (top[2] - 8)
    damaged.write_bytes(bytes(data))
    for path, proven in ((media["cfr"], True), (media["vfr"], True), (damaged, False)):
        times, keys, tb = video_packet_times(path)
        with av.open(str(path)) as c:
            tail = _decode_tail(c, times[keys][-1], tb, True, times[keys][0])
        assert tail.skipped and tail.proven is proven, path.name  # both ways are exercised
        assert decoded_end_time(path, times[keys], tb) == single_thread_last_frame(path), path.name
    assert tail.last < single_thread_last_frame(damaged)  # the skipping pass alone would have been wrong


def test_a_cut_file_decodes_as_far_as_one_thread_gets(media):
    """A cut MP4 with B-frames (moov first): FFmpeg's frame threads lose the frames still
    inside them when the last packet is cut short, so a threaded decode ends early
    (1.6 s against 1.8 s here). Probe's decoded end is the single-thread full decode's."""
    import av

    from evoke.media import decoded_end_time, video_packet_times

    path = media["truncated_faststart"]
    one = single_thread_last_frame(path)
    assert single_thread_last_frame(path, frame_threads=True) < one  # the case this guards is here
    times, keys, tb = video_packet_times(path)
    assert decoded_end_time(path, times[keys], tb) == one
    info = probe(path)
    with av.open(str(path)) as c:
        first = min(p.pts for p in c.demux(video=0) if p.pts is not None) * float(c.streams.video[0].time_base)
    assert info["decoded_duration_s"] == pytest.approx(one - first + 1 / info["fps_avg"])
    assert info["decoded_duration_s"] < info["duration_s"] - 2  # the header keeps the uncut 5 s


def test_mpegts_last_group_is_found_although_its_demuxer_seeks_by_decoding_time(tmp_path):
    """A 2 s MPEG-TS with B-frames: seeking to the last keyframe's presentation time lands
    after the keyframe (the demuxer seeks by decoding time), where nothing decodes; probe
    seeks earlier and reads on to the keyframe's packet."""
    from conftest import VTEST
    from evoke.media import decoded_end_time, video_packet_times

    ts = tmp_path / "clip.ts"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(VTEST), "-t", "2", "-vf", "scale=160:120",
                    "-c:v", "libx264", "-preset", "veryfast", "-an", "-f", "mpegts", str(ts)], check=True)
    times, keys, tb = video_packet_times(ts)
    assert decoded_end_time(ts, times[keys], tb) == single_thread_last_frame(ts)
    info = probe(ts)
    assert info["decoded_duration_s"] == pytest.approx(info["duration_s"]) == pytest.approx(2.0)
