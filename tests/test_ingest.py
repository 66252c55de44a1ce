import functools
import http.server
import json
import sys
import threading
from pathlib import Path

import polars as pl
import pytest

from evoke.config import validate_config
from evoke import ingest
from evoke.ingest import PROBE_SCHEMA, ingest_shard, ingest_video, strip_audio, verify_outputs
from evoke.manifest import check_video_id
from evoke.media import EnvironmentFailure, MediaError, probe, probe_packets

SETTINGS = validate_config({"manifest": "-"})["ingest"]
# yt-dlp loads plugin extractors once per process from sys.path: before any test runs
PLUGINS = Path(__file__).parent / "badinput" / "ytdlp_plugins"
sys.path.insert(0, str(PLUGINS))


def row(vid, source, **kw):
    return {"video_id": vid, "source": str(source), "split": "train", "start_s": None,
            "end_s": None, "danmaku": None, **kw}


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves the media folder; records the Cookie headers it gets; ``/endless.mp4``
    streams zeros without a Content-Length (a download that never ends)."""

    cookies: list = []

    def log_message(self, *args, **kwargs):
        pass

    def do_GET(self):
        _Handler.cookies.append(self.headers.get("Cookie"))
        if self.path.startswith("/endless"):
            self.protocol_version = "HTTP/1.0"
            self.send_response(200)
            self.send_header("Content-Type", "video/mp4")
            self.end_headers()
            try:
                for _ in range(64):  # 64 MiB at most, then the connection closes
                    self.wfile.write(b"\0" * (1 << 20))
            except (BrokenPipeError, ConnectionResetError):
                pass
            return
        super().do_GET()


@pytest.fixture(scope="module")
def http_root(media, tmp_path_factory):
    """A real HTTP server on 127.0.0.1 serving the media folder (for yt-dlp)."""
    root = media["cfr"].parent
    handler = functools.partial(_Handler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_probe_describes_real_files(media):
    info = probe(media["cfr"])
    assert info["width"] == 320 and info["height"] == 240
    assert info["fps_avg"] == pytest.approx(25, rel=1e-3) and not info["fps_is_variable"]
    assert info["duration_s"] == pytest.approx(6.0, abs=0.05)
    assert info["has_audio"] and info["audio_codec"] == "aac"
    assert info["keyframe_interval_s"] == pytest.approx(1.0, abs=0.05)
    assert not probe(media["noaudio"])["has_audio"]
    assert probe(media["vfr"])["fps_is_variable"]
    assert probe(media["rotated"])["rotation"] in (90, 270)
    one = probe(media["oneframe"])
    assert one["n_frames"] == 1 and one["duration_s"] > 0


@pytest.mark.parametrize(
    "key, message",
    [("empty", "empty file"), ("text", "not a readable media file"),
     ("truncated", "not a readable media file"), ("audioonly", "no video stream")],
)
def test_probe_rejects_bad_files_with_a_clear_message(media, key, message):
    with pytest.raises(MediaError, match=message) as err:
        probe(media[key])
    assert media[key].name in str(err.value)


def test_ingest_local_file_strips_audio_without_reencoding(media, tmp_path):
    r = ingest_video(row("a", media["cfr"]), tmp_path, SETTINGS)
    vdir = tmp_path / "a"
    assert r["status"] == "ok" and r["has_audio"]
    muted = probe(vdir / "video.mp4")
    assert not muted["has_audio"] and muted["video_codec"] == "h264"
    assert muted["n_frames"] == probe(media["cfr"])["n_frames"]
    wav = probe_audio(vdir / "audio.wav")
    assert wav == {"codec_name": "pcm_s16le", "sample_rate": "16000", "channels": 1}
    assert json.loads((vdir / "probe.json").read_text())["fingerprint"] == r["fingerprint"]
    assert not (vdir / "download").exists()


def probe_audio(path):
    import subprocess

    out = subprocess.run(["ffprobe", "-v", "error", "-show_streams", "-print_format", "json", str(path)],
                         capture_output=True, text=True, check=True).stdout
    s = json.loads(out)["streams"][0]
    return {k: s[k] for k in ("codec_name", "sample_rate", "channels")}


def test_video_without_audio_is_recorded_not_failed(media, tmp_path):
    r = ingest_video(row("b", media["noaudio"]), tmp_path, SETTINGS)
    assert r["has_audio"] is False and r["audio_path"] is None
    assert not (tmp_path / "b" / "audio.wav").exists()


def test_rotation_survives_the_stream_copy(media, tmp_path):
    r = ingest_video(row("r", media["rotated"]), tmp_path, SETTINGS)
    assert probe(tmp_path / "r" / "video.mp4")["rotation"] == r["rotation"] != 0


def test_finished_video_is_reused_and_changed_row_is_redone(media, tmp_path):
    first = ingest_video(row("c", media["noaudio"]), tmp_path, SETTINGS)
    mtime = (tmp_path / "c" / "probe.json").stat().st_mtime_ns
    again = ingest_video(row("c", media["noaudio"]), tmp_path, SETTINGS)
    assert again == first and (tmp_path / "c" / "probe.json").stat().st_mtime_ns == mtime
    clipped = ingest_video(row("c", media["noaudio"], start_s=1.0, end_s=3.0), tmp_path, SETTINGS)
    assert clipped["fingerprint"] != first["fingerprint"]
    assert clipped["duration_s"] == pytest.approx(2.0, abs=0.1)


def test_ytdlp_downloads_from_http_and_file_urls(media, tmp_path, http_root):
    r = ingest_video(row("h", f"{http_root}/cfr.mp4"), tmp_path / "v", SETTINGS)
    assert r["status"] == "ok" and r["has_audio"] and r["n_frames"] == probe(media["cfr"])["n_frames"]
    f = ingest_video(row("f", media["noaudio"].as_uri()), tmp_path / "v", SETTINGS)
    assert f["status"] == "ok" and not f["has_audio"]
    assert sorted(p.name for p in (tmp_path / "v").iterdir()) == ["f", "h"]  # no work folder left


def test_an_id_extractor_video_is_fetched_again_after_any_loss(media, tmp_path, http_root):
    """A yt-dlp extractor with ids (a plugin, like YouTube's or Bilibili's): with a
    download archive the second fetch of an id returned nothing, forever."""
    import shutil

    from yt_dlp import YoutubeDL

    url = f"{http_root}/watch/noaudio"
    with YoutubeDL({"quiet": True}) as ydl:
        assert ydl.extract_info(url, download=False)["extractor"] == "evokelocal"
    first = ingest_video(row("h", url), tmp_path / "v", SETTINGS)
    assert first["status"] == "ok" and first["n_frames"] == probe(media["noaudio"])["n_frames"]
    shutil.rmtree(tmp_path / "v" / "h")  # a deleted folder (or a kill before the commit)
    again = ingest_video(row("h", url), tmp_path / "v", SETTINGS)
    assert again["status"] == "ok" and (tmp_path / "v" / "h" / "video.mp4").exists()
    lower = ingest_video(row("h", url), tmp_path / "v", {**SETTINGS, "max_height": 144})  # a changed setting
    assert lower["status"] == "ok" and lower["fingerprint"] != again["fingerprint"]
    clip = ingest_video(row("h", url, start_s=1.0), tmp_path / "v", SETTINGS)  # changed clip bounds
    assert clip["duration_s"] == pytest.approx(4.0, abs=0.15)
    assert not list(tmp_path.rglob("*archive*"))


def test_cookies_are_sent_from_a_private_copy(media, tmp_path, http_root):
    cookies = tmp_path / "cookies.txt"
    cookies.write_text("# Netscape HTTP Cookie File\n"
                       "127.0.0.1\tFALSE\t/\tFALSE\t4102444800\tsession\tabc123\n")
    before = (cookies.read_bytes(), cookies.stat().st_mtime_ns)
    _Handler.cookies.clear()
    r = ingest_video(row("c", f"{http_root}/watch/noaudio"), tmp_path / "v", {**SETTINGS, "cookies": str(cookies)})
    assert r["status"] == "ok"
    assert "session=abc123" in [c for c in _Handler.cookies if c]  # yt-dlp used the copy's cookie
    assert (cookies.read_bytes(), cookies.stat().st_mtime_ns) == before  # and never wrote the shared file
    with pytest.raises(EnvironmentFailure, match="cookies.*not found"):
        ingest_shard(pl.DataFrame([row("c2", media["cfr"])]), tmp_path / "d",
                     {**SETTINGS, "cookies": str(tmp_path / "gone.txt")}, "s00000")


@pytest.mark.parametrize("source", ["/dev/zero", "big", "http", "endless"])
def test_max_filesize_fails_the_video_not_the_disk(media, tmp_path, http_root, source):
    src = {"/dev/zero": "/dev/zero", "big": str(media["cfr"]), "http": f"{http_root}/cfr.mp4",
           "endless": f"{http_root}/endless.mp4"}[source]
    limit = {**SETTINGS, "max_filesize": "100K"}
    assert media["cfr"].stat().st_size > 100 * 1024
    out = ingest_shard(pl.DataFrame([row("z", src), row("ok", media["oneframe"])]), tmp_path, limit, "s00000")
    assert out["status"].to_list() == ["failed", "ok"]
    assert "larger than ingest.max_filesize (102400 bytes)" in out["error"][0]
    assert sum(p.stat().st_size for p in tmp_path.rglob("*") if p.is_file()) < 2_000_000


def test_start_past_the_end_says_so(media, tmp_path):
    with pytest.raises(MediaError, match=r"start_s 30 s is at or past the end of the video \(5.00 s\)"):
        ingest_video(row("late", media["noaudio"], start_s=30.0), tmp_path, SETTINGS)


def test_truncated_mp4_records_the_decoded_duration(media, tmp_path):
    r = ingest_video(row("t", media["truncated_faststart"]), tmp_path, SETTINGS)
    assert r["duration_s"] == pytest.approx(5.0, abs=0.05)  # what the header says
    assert 1.0 < r["decoded_duration_s"] < 3.0  # what is there
    whole = ingest_video(row("w", media["noaudio"]), tmp_path, SETTINGS)
    assert whole["decoded_duration_s"] == pytest.approx(whole["duration_s"], abs=0.01)


def test_written_files_are_verified_before_the_commit(media, tmp_path):
    import shutil

    info = probe(media["cfr"])
    cut = tmp_path / "video.mp4"  # what a full disk left: the first frames of the copy
    shutil.copyfile(media["truncated_faststart"], cut)
    with pytest.raises(MediaError, match="failed verification: the muted video has 20 video packets, the source 150"):
        verify_outputs(info, cut, None, 16000, "cfr.mp4")
    wav = tmp_path / "audio.wav"
    import subprocess

    subprocess.run(["ffmpeg", "-v", "error", "-i", str(media["cfr"]), "-t", "2", "-ac", "1", "-ar", "16000",
                    str(wav)], check=True)
    with pytest.raises(MediaError, match=r"the WAV lasts 2.0\d\d s, the source's audio 5.99\d s"):
        verify_outputs(info, media["cfr"], wav, 16000, "cfr.mp4")
    data = wav.read_bytes()
    wav.write_bytes(data[: len(data) // 2])  # a header that announces more than the file holds
    with pytest.raises(MediaError, match="the WAV does not read back"):
        verify_outputs(info, media["cfr"], wav, 16000, "cfr.mp4")


def test_a_copy_of_the_source_packets_is_verified_without_decoding(media, tmp_path, monkeypatch):
    """A muted copy whose video packets are the source's (demuxed and hashed) decodes as the
    source did in probe: same result as decoding it, without the decode. A copy whose packets
    differ is decoded, and a truncated one fails with the message it always had."""
    import shutil

    info, packets = probe_packets(media["cfr"])
    assert info == probe(media["cfr"])
    video, wav = strip_audio(media["cfr"], tmp_path, True, 16000)
    decoded = verify_outputs(info, video, wav, 16000, "cfr.mp4")  # by decoding
    decodes = []
    real = ingest.decoded_end_time
    monkeypatch.setattr(ingest, "decoded_end_time", lambda *a: decodes.append(a) or real(*a))
    assert verify_outputs(info, video, wav, 16000, "cfr.mp4", packets) == decoded and not decodes
    changed = tmp_path / "changed.mp4"  # the same packet count, one packet's bytes flipped
    data = bytearray(video.read_bytes())
    data[len(data) // 3] ^= 0xFF
    changed.write_bytes(bytes(data))
    assert verify_outputs(info, changed, wav, 16000, "cfr.mp4", packets) == decoded and len(decodes) == 1
    cut = tmp_path / "cut.mp4"
    shutil.copyfile(media["truncated_faststart"], cut)
    with pytest.raises(MediaError, match="failed verification: the muted video has 20 video packets, the source 150"):
        verify_outputs(info, cut, None, 16000, "cfr.mp4", packets)


def test_a_source_that_fails_probe_after_its_copy_started_costs_only_itself(media, tmp_path, monkeypatch):
    """The muted copy is written (in a thread) while probe decodes the source; when no frame
    decodes, the video fails with probe's message, that writer is stopped and nothing is left."""
    import av
    import psutil

    bad = tmp_path / "undecodable.mp4"  # streams and packets intact, every packet's data garbage
    data = bytearray(media["noaudio"].read_bytes())
    with av.open(str(media["noaudio"])) as c:
        for p in c.demux(video=0):
            if p.size:
                data[p.pos + 4: p.pos + p.size] = b"\xff" * (p.size - 4)
    bad.write_bytes(bytes(data))
    started = []
    real = ingest.start_strip_audio
    monkeypatch.setattr(ingest, "start_strip_audio", lambda *a: started.append(real(*a)) or started[-1])
    with pytest.raises(MediaError, match="undecodable.mp4: no frame of the video stream decodes"):
        ingest_video(row("u", bad), tmp_path / "v", SETTINGS)
    assert len(started) == 1 and started[0].done  # it ran, and was waited for
    assert not psutil.Process().children() and not list((tmp_path / "v").iterdir())


def test_video_ids_are_limited_in_bytes():
    assert check_video_id("a" * 200) is None
    assert "300 bytes in UTF-8" in check_video_id("視" * 100)  # 100 characters, 300 bytes
    assert check_video_id("視" * 66) is None


def test_shard_records_every_bad_input_and_goes_on(media, tmp_path, http_root):
    rows = pl.DataFrame([
        row("good", media["cfr"]),
        row("zero", media["empty"]),
        row("text", media["text"]),
        row("trunc", media["truncated"]),
        row("audio_only", media["audioonly"]),
        row("missing404", f"{http_root}/does-not-exist.mp4"),
        row("nofile", media["cfr"].parent / "nope.mp4"),
        row("uhd", media["uhd"]),
        row("one", media["oneframe"]),
        row("vfr", media["vfr"]),
    ])
    out = ingest_shard(rows, tmp_path, SETTINGS, "s00000")
    assert out.schema == pl.Schema(PROBE_SCHEMA)
    status = dict(zip(out["video_id"], out["status"]))
    assert status == {"good": "ok", "zero": "failed", "text": "failed", "trunc": "failed",
                      "audio_only": "failed", "missing404": "failed", "nofile": "failed",
                      "uhd": "ok", "one": "ok", "vfr": "ok"}
    errors = dict(zip(out["video_id"], out["error"]))
    assert "empty file" in errors["zero"]
    assert "notes.mp4" in errors["text"]
    assert "no video stream" in errors["audio_only"]
    assert "404" in errors["missing404"]
    assert "not found" in errors["nofile"]
    ok = out.filter(pl.col("status") == "ok")
    assert ok.filter(pl.col("video_id") == "uhd")["width"].item() == 3840
    assert ok.filter(pl.col("video_id") == "vfr")["fps_is_variable"].item()
    videos = tmp_path / "ingest" / "videos"
    assert sorted(p.name for p in videos.iterdir()) == ["good", "one", "uhd", "vfr"]  # no debris


def test_a_replaced_local_file_is_ingested_again(media, tmp_path):
    import os
    import shutil

    src = tmp_path / "clip.mp4"
    shutil.copyfile(media["noaudio"], src)
    first = ingest_video(row("x", src), tmp_path / "v", SETTINGS)
    shutil.copyfile(media["cfr"], src)  # same path, other content
    os.utime(src, ns=(1, 1))
    again = ingest_video(row("x", src), tmp_path / "v", SETTINGS)
    assert again["fingerprint"] != first["fingerprint"]
    assert again["has_audio"] and not first["has_audio"]


@pytest.fixture
def small_disk(tmp_path):
    """A real 5 MiB file system (tmpfs; needs root, as in CI's container)."""
    from faults.small_disk import mounted_tmpfs

    with mounted_tmpfs(tmp_path / "small", "5m") as mnt:
        yield mnt


def test_a_full_disk_fails_the_job_not_the_video(media, small_disk):
    """The source fits (hard-linked on the same disk), its muted copy does not: ffmpeg
    runs out of space writing it. The job must fail with one message, commit nothing
    and record nothing as failed or ok, so a rerun on a freed disk retries the video."""
    import shutil
    import subprocess

    src = small_disk / "clip.mp4"
    shutil.copyfile(media["uhd"], src)
    assert 2_600_000 < src.stat().st_size < 4_500_000  # fits once, not twice
    (small_disk / "manifest.csv").write_text(f"video_id,source,split\nok,{media['oneframe']},train\nbig,{src},train\n")
    cmd = [sys.executable, "-m", "evoke", "ingest", "shard", "--shard", "s00000", "--manifest", "manifest.csv",
           "--dataset", "d", "--shard-size", "10", "--settings", json.dumps(SETTINGS), "--out", "s00000.parquet"]
    proc = subprocess.run(cmd, cwd=small_disk, capture_output=True, text=True)
    assert proc.returncode != 0
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("evoke: error:")]
    assert len(errors) == 1 and "big" in errors[0] and "No space left on device" in errors[0], proc.stderr[-2000:]
    assert not (small_disk / "s00000.parquet").exists()  # no status row: not failed, not ok
    videos = small_disk / "results" / "d" / "ingest" / "videos"
    assert sorted(p.name for p in videos.iterdir()) == ["ok"]  # the finished video stays, nothing half-written
    assert not any((small_disk / "results" / "d" / "ingest" / "work").rglob("*"))


def test_a_cached_folder_missing_a_file_is_built_again(media, tmp_path):
    first = ingest_video(row("m", media["cfr"]), tmp_path, SETTINGS)
    (tmp_path / "m" / "audio.wav").unlink()
    again = ingest_video(row("m", media["cfr"]), tmp_path, SETTINGS)
    assert again["has_audio"] and (tmp_path / "m" / "audio.wav").is_file()
    assert again["fingerprint"] == first["fingerprint"]
