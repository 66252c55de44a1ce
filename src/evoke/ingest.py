"""Stage 1, ingest: fetch each video, probe it, strip its audio.

Per video (``ingest_video``), inside ``results/{dataset}/ingest/videos/{video_id}/``:

* ``video.mp4`` (or ``video.mkv`` when the codec does not fit MP4): the video
  stream only, stream-copied (no re-encode) unless ``start_s``/``end_s`` clip it;
* ``audio.wav``: 16 kHz mono PCM, absent when the video has no audio;
* ``danmaku.<ext>``: the comment file (from the manifest or from yt-dlp);
* ``probe.json``: the probe row, written last; the folder is committed by a
  rename, so a folder that exists under its final name is complete.

The muted video and the WAV are written in-process with PyAV, in a thread, while
probe reads the source (:func:`strip_audio`; ffmpeg writes them for a file PyAV
declines); the probe and the verification read the files in-process too
(:func:`evoke.media.probe_packets`).

Each video is built in the shard job's own work folder,
``results/{dataset}/ingest/work/{shard}/{video_id}/``, and renamed into place
once every written file is verified (:func:`verify_outputs`: the muted video
demuxes to the source's video packets, bytes and timestamps, so it decodes as
the source did in probe, or, when a muxer rewrote them, decodes to the same
end; the WAV has the expected rate, channel and duration; ffmpeg's exit code
alone is not proof, it exits 0 after a failed trailer write). The work folder belongs to that one
shard job (Snakemake runs one job per shard), so a job clears only its own
leftovers and never another node's downloads in progress.

Per shard (``ingest_shard``): one row per video (``PROBE_SCHEMA``) with
``status`` ``ok`` or ``failed`` and the error. A failure of one video never
stops the shard; a failure of the machine (a full disk or quota, a read-only
file system, any OSError while writing) stops the job with one message
(:class:`~evoke.media.EnvironmentFailure`) and records nothing against the
video.

Downloads: yt-dlp without a download archive (the per-video fingerprint decides
what is done; an archive made an archived id return nothing after a kill, a
deleted folder or a changed setting), at most ``max_filesize`` bytes (also for
local copies: ``/dev/zero`` as a source fails its video), with a private copy
of the cookies file per video (yt-dlp rewrites the file it is given).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import shutil
import threading
import wave
from pathlib import Path
from urllib.parse import unquote, urlparse

import av
import polars as pl
from tqdm import tqdm

from evoke import EvokeError, __version__
from evoke.config import fingerprint
from evoke.media import (
    EnvironmentFailure,
    MediaError,
    VideoPackets,
    decoded_end_time,
    environment_message,
    probe,
    probe_packets,
    run_ffmpeg,
    video_packet_digest,
    video_packet_times,
)

log = logging.getLogger(__name__)

PROBE_SCHEMA = {
    "video_id": pl.String,
    "split": pl.String,
    "shard": pl.String,
    "source": pl.String,
    "status": pl.String,
    "error": pl.String,
    "video_path": pl.String,
    "audio_path": pl.String,
    "danmaku_path": pl.String,
    "start_s": pl.Float64,
    "end_s": pl.Float64,
    "duration_s": pl.Float64,
    "decoded_duration_s": pl.Float64,
    "fps_avg": pl.Float64,
    "fps_is_variable": pl.Boolean,
    "n_frames": pl.Int64,
    "width": pl.Int64,
    "height": pl.Int64,
    "rotation": pl.Int64,
    "display_width": pl.Int64,
    "display_height": pl.Int64,
    "video_codec": pl.String,
    "audio_codec": pl.String,
    "audio_channels": pl.Int64,
    "audio_sample_rate": pl.Int64,
    "has_audio": pl.Boolean,
    "container": pl.String,
    "size_bytes": pl.Int64,
    "keyframe_interval_s": pl.Float64,
    "fingerprint": pl.String,
}

# settings that change what ingest writes for a video (cache key together with the row);
# the workflow's params carry only these, so a download-only setting (retries, rate
# limit, cookies, timeouts, size limit, link or copy) reruns nothing downstream
CONTENT_KEYS = ("max_height", "audio_rate", "write_danmaku")
_CACHE_KEYS = CONTENT_KEYS


class DownloadError(EvokeError):
    """yt-dlp could not fetch a source."""


def is_url(source: str) -> bool:
    return re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", source) is not None


def _parse_rate(rate: str | int | None) -> float | None:
    """Bytes (per second) of ``"2M"``, ``"500K"``, ``"4G"`` or a plain number; None when unset."""
    if rate is None or rate == "":
        return None
    if isinstance(rate, (int, float)):
        return float(rate)
    mult = {"K": 1024, "M": 1024**2, "G": 1024**3}
    unit = rate[-1].upper()
    return float(rate[:-1]) * mult[unit] if unit in mult else float(rate)


def max_filesize(settings: dict) -> int | None:
    limit = _parse_rate(settings.get("max_filesize"))
    return int(limit) if limit is not None else None


class _SizeLimit:
    """yt-dlp progress hook: stop a download once it passes the size limit (yt-dlp's own
    ``max_filesize`` only checks a declared Content-Length)."""

    def __init__(self, limit: int | None):
        self.limit = limit
        self.exceeded: int | None = None

    def __call__(self, d: dict) -> None:
        got = d.get("downloaded_bytes") or 0
        if self.limit is not None and got > self.limit:
            import yt_dlp

            self.exceeded = got
            raise yt_dlp.utils.DownloadError(f"over ingest.max_filesize ({self.limit} bytes)")


class _YtdlpLogger:
    """Route yt-dlp's messages to logging, keeping the last error for the failure row."""

    def __init__(self):
        self.last_error = None
        self.messages: list[str] = []

    def debug(self, msg):
        if not msg.startswith("[debug] "):
            log.debug("yt-dlp: %s", msg)
            self.messages.append(msg)

    def info(self, msg):
        log.debug("yt-dlp: %s", msg)
        self.messages.append(msg)

    def warning(self, msg):
        log.warning("yt-dlp: %s", msg)

    def error(self, msg):
        self.last_error = msg
        log.debug("yt-dlp: %s", msg)


def _downloaded_media(folder: Path) -> Path | None:
    skip = (".part", ".ytdl", ".xml", ".json", ".srt", ".ass", ".vtt", ".jpg", ".webp", ".png")
    files = [p for p in folder.glob("source.*") if not p.name.endswith(skip) and p.is_file()]
    files = [p for p in files if not re.search(r"\.f\d+\.", p.name)]  # unmerged formats
    return max(files, key=lambda p: p.stat().st_size) if files else None


def download(url: str, folder: Path, settings: dict) -> tuple[Path, Path | None]:
    """Download ``url`` with yt-dlp into ``folder``; return (media file, danmaku file or None).

    Uses retries, the optional rate limit, the maximum height and size, and a
    private copy of the cookies file (yt-dlp saves cookies into the file it is
    given when it closes: concurrent jobs sharing one file would overwrite each
    other's). No download archive: an archived id would be skipped and return no
    file. A full disk raises :class:`EnvironmentFailure`, anything else
    :class:`DownloadError`.
    """
    import yt_dlp  # imported here: the CLI starts faster without it

    h = int(settings["max_height"])
    limit = max_filesize(settings)
    logger = _YtdlpLogger()
    size_hook = _SizeLimit(limit)
    folder.mkdir(parents=True, exist_ok=True)
    cookies = None
    if settings.get("cookies"):
        cookies = folder / "cookies.txt"
        try:
            shutil.copyfile(settings["cookies"], cookies)
        except FileNotFoundError:
            raise EnvironmentFailure(f"ingest.cookies: {settings['cookies']}: file not found") from None
    opts = {
        "outtmpl": {"default": str(folder / "source.%(ext)s")},
        "format": f"bv*[height<={h}]+ba/b[height<={h}]/bv*+ba/b",
        "merge_output_format": "mp4/mkv",
        "retries": settings["retries"],
        "fragment_retries": settings["retries"],
        "extractor_retries": settings["retries"],
        "file_access_retries": settings["retries"],
        "socket_timeout": settings["socket_timeout"],
        "ratelimit": _parse_rate(settings.get("rate_limit")),
        "max_filesize": limit,
        "progress_hooks": [size_hook],
        "cookiefile": str(cookies) if cookies else None,
        "enable_file_urls": True,
        "noplaylist": True,
        "quiet": True,
        "no_warnings": False,
        "noprogress": True,
        "logger": logger,
        "writesubtitles": bool(settings.get("write_danmaku")),
        "subtitleslangs": ["danmaku"],
        "color": {"stderr": "never", "stdout": "never"},
    }
    try:
        with yt_dlp.YoutubeDL(opts) as ydl:
            ydl.extract_info(url, download=True)
    except yt_dlp.utils.DownloadError as exc:
        msg = _clean_ytdlp(logger.last_error or str(exc))
        env = environment_message(msg)
        if env:
            raise EnvironmentFailure(f"{url}: download: the disk failed, not the video: {env}") from exc
        if size_hook.exceeded is not None:
            raise DownloadError(f"download failed: {url} is larger than ingest.max_filesize ({limit} bytes)") from exc
        raise DownloadError(f"download failed: {msg}") from exc
    media = _downloaded_media(folder)
    if media is None:
        if any("larger than max-filesize" in m for m in logger.messages):
            raise DownloadError(f"download failed: {url} is larger than ingest.max_filesize ({limit} bytes)")
        raise DownloadError(f"download failed: yt-dlp wrote no media file for {url}")
    if limit is not None and media.stat().st_size > limit:
        raise DownloadError(f"download failed: {url} is larger than ingest.max_filesize ({limit} bytes)")
    danmaku = next(iter(sorted(folder.glob("source.danmaku.*"))), None)
    return media, danmaku


def _clean_ytdlp(msg: str) -> str:
    msg = re.sub(r"\x1b\[[0-9;]*m", "", msg)
    return msg.replace("ERROR: ", "").strip().splitlines()[0] if msg.strip() else "unknown error"


def fetch_local(path: Path, folder: Path, mode: str, limit: int | None = None) -> Path:
    """Hard-link (or copy) a local file into ``folder`` as ``source.<ext>``.

    At most ``limit`` bytes: a larger file, or a device or pipe that keeps giving
    data (``/dev/zero``), fails with :class:`MediaError` after ``limit`` bytes
    instead of filling the disk. Reading the source raises MediaError (the
    data), writing the copy OSError (the machine).
    """
    try:
        st = path.stat()
    except FileNotFoundError:
        raise MediaError(f"{path}: file not found") from None
    except OSError as exc:
        raise MediaError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if path.is_dir():
        raise MediaError(f"{path}: is a folder, not a video file")
    if limit is not None and path.is_file() and st.st_size > limit:
        raise MediaError(f"{path}: larger than ingest.max_filesize ({limit} bytes)")
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / f"source{path.suffix.lower() or '.bin'}"
    if mode == "link" and path.is_file():
        try:
            os.link(path, dest)
            return dest
        except OSError:
            pass  # other file system or no permission: copy instead
    _copy_file(path, dest, "video", limit)
    return dest


def _local_path(source: str) -> Path | None:
    if not is_url(source):
        return Path(source)
    return None


def clip_video(src: Path, dest: Path, start: float | None, end: float | None, name: str | None = None) -> Path:
    """Cut ``src`` to ``[start, end)`` seconds, re-encoding so the cut is frame-exact."""
    args = []
    if start:
        args += ["-ss", f"{start:.6f}"]
    args += ["-i", str(src)]
    if end is not None:
        args += ["-t", f"{end - (start or 0.0):.6f}"]
    args += [
        "-map", "0:v:0", "-map", "0:a:0?", "-c:v", "libx264", "-preset", "veryfast",
        "-crf", "18", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "192k", str(dest),
    ]
    run_ffmpeg(args, "clipping", src, name)
    return dest


def _first_command(src: Path, folder: Path, has_audio: bool, audio_rate: int) -> tuple[list[str], str]:
    """The ffmpeg arguments :func:`strip_audio` tries first, and what they do (for messages)."""
    mp4 = [*_copy_video(src), "-movflags", "+faststart", str(folder / "video.mp4")]
    if has_audio:
        return [*mp4, *_to_wav(audio_rate), str(folder / "audio.wav")], _first_what(has_audio)
    return mp4, _first_what(has_audio)


def _first_what(has_audio: bool) -> str:
    """What :func:`strip_audio`'s first attempt does, in its messages (in-process or ffmpeg)."""
    return "stream copy and audio extraction" if has_audio else "stream copy to MP4"


def _copy_video(src: Path) -> list[str]:
    """ffmpeg arguments: the first video stream of ``src``, stream-copied, nothing else."""
    return ["-fflags", "+genpts", "-i", str(src), "-map", "0:v:0", "-c", "copy", "-an", "-sn", "-dn"]


def _to_wav(audio_rate: int) -> list[str]:
    return ["-map", "0:a:0", "-vn", "-sn", "-dn", "-ac", "1", "-ar", str(audio_rate), "-c:a", "pcm_s16le"]


def start_strip_audio(src: Path, folder: Path, has_audio: bool, audio_rate: int,
                      name: str | None = None) -> "_StripJob":
    """Start :func:`strip_audio`'s first attempt (:func:`_write_in_process`) in a thread (pass
    it as ``started``): ingest runs it while probe reads and decodes the source. PyAV releases
    the GIL while it demuxes, decodes and muxes, so the two share the cores."""
    return _StripJob(src, folder, has_audio, audio_rate, name)


class _StripJob:
    """:func:`_write_in_process` running in its own thread; :meth:`wait` returns or raises what
    it did, :meth:`cancel` stops it at the next packet and waits (its files are not wanted)."""

    def __init__(self, src: Path, folder: Path, has_audio: bool, audio_rate: int, name: str | None):
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._written: tuple[Path, Path | None] | None = None
        self._thread = threading.Thread(target=self._run, args=(src, folder, has_audio, audio_rate, name),
                                        name=f"strip {name or src.name}", daemon=True)
        self._thread.start()

    def _run(self, *args) -> None:
        try:
            self._written = _write_in_process(*args, stop=self._stop)
        except BaseException as exc:  # handed to the waiting thread
            self._error = exc

    @property
    def done(self) -> bool:
        return not self._thread.is_alive()

    def wait(self) -> tuple[Path, Path | None]:
        """The files :func:`_write_in_process` wrote (video, WAV or None), or what it raised."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._written

    def cancel(self) -> None:
        self._stop.set()
        self._thread.join()


class _Stopped(Exception):
    """:meth:`_StripJob.cancel` asked the writer to stop."""


# errno of a full disk, a quota and a read-only file system: the machine's failure, not the video's
_ENVIRONMENT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})
_WAV_FRAME_S = 1.0  # seconds of audio per frame the WAV's filter graph hands back


def _write_in_process(src: Path, folder: Path, has_audio: bool, audio_rate: int, name: str | None = None,
                      stop: threading.Event | None = None) -> tuple[Path, Path | None]:
    """What ffmpeg's ``_copy_video`` + ``-movflags +faststart video.mp4`` and ``_to_wav`` do,
    with PyAV in this process: the first video stream's packets stream-copied into
    ``video.mp4`` (:func:`_remux_video`), then the first audio stream decoded, resampled to mono
    s16 at ``audio_rate`` and written as PCM WAV (:func:`_write_wav`: the graph ffmpeg builds
    for ``-ac 1 -ar RATE``, run in C without the GIL, so that probe's thread runs beside it).

    The copy holds the source's packets with their timestamps, the demuxer generating missing
    pts (``+genpts``), which is what ffmpeg writes for an input that starts at 0. Where ffmpeg
    would change them, this raises MediaError and :func:`strip_audio` lets ffmpeg write the
    files: an input that starts later (ffmpeg moves it to 0), a container that allows timestamp
    discontinuities (MPEG-TS: ffmpeg corrects jumps), a video that does not start on a
    keyframe at or after 0 (ffmpeg drops those packets), a packet that does not demux or
    decode, timestamps the MP4 muxer refuses (ffmpeg repairs non-monotonic dts), an audio
    stream whose format changes midway or that gives no samples. So every file this writes
    is the one ffmpeg would (the WAV's samples within one step of ffmpeg 5.1's: PyAV bundles a
    newer swresample; ``tests/test_ingest_inprocess.py``). A full disk, quota or read-only
    file system raises :class:`EnvironmentFailure`, any other OSError while writing passes
    on (the machine's), never a MediaError.
    """
    name = name or src.name
    video, wav = folder / "video.mp4", (folder / "audio.wav") if has_audio else None
    what = _first_what(has_audio)
    try:
        with av.open(str(src), options={"fflags": "+genpts"}) as inp:
            if inp.format.flags & av.format.Flags.ts_discont.value:
                raise MediaError(f"{name}: {what} in-process: {inp.format.name} may have timestamp "
                                 "discontinuities, which ffmpeg corrects")
            if inp.start_time:  # ffmpeg shifts every timestamp by it, and demuxers of other versions
                # disagree on it (a WebM with Opus: 19 ms in ffmpeg 5.1, 26 ms in PyAV's FFmpeg)
                raise MediaError(f"{name}: {what} in-process: the input starts at {inp.start_time / 1e6:g} s, "
                                 "which ffmpeg moves to 0")
            if wav is not None:  # first: it runs without the GIL while probe's packet scan holds it
                _write_wav(src, wav, audio_rate, name, stop)
            _remux_video(inp, video, name, what, stop)
    except _Stopped:
        pass
    except OSError as exc:  # writing (av's OSErrors are builtin OSErrors too): the machine's
        if exc.errno in _ENVIRONMENT_ERRNOS:
            raise EnvironmentFailure(f"{name}: {what}: the disk failed, not the video: {exc}") from exc
        if isinstance(exc, av.FFmpegError):
            raise MediaError(f"{name}: {what} in-process failed: {exc}") from exc
        raise
    except (av.FFmpegError, ValueError, IndexError, UnicodeDecodeError) as exc:
        raise MediaError(f"{name}: {what} in-process failed: {exc}") from exc
    return video, wav


def _remux_video(inp, video: Path, name: str, what: str, stop: threading.Event | None) -> None:
    """The first video stream of the open input ``inp``, its packets stream-copied into the MP4
    ``video`` (``+faststart``)."""
    vin = inp.streams.video[0]
    with av.open(str(video), "w", format="mp4", options={"movflags": "+faststart"}) as out:
        vout = out.add_stream_from_template(vin)
        first = True
        for packet in inp.demux(vin):
            if stop is not None and stop.is_set():
                raise _Stopped
            if packet.size == 0:
                continue  # the demuxer's flush packet
            if first and not (packet.is_keyframe and packet.pts is not None and packet.pts >= 0):
                raise MediaError(f"{name}: {what} in-process: the video does not start on a keyframe "
                                 "at 0 (ffmpeg drops what comes before)")
            first = False
            packet.stream = vout
            out.mux(packet)
    if first:
        raise MediaError(f"{name}: {what} in-process: no video packet")


def _write_wav(src: Path, wav: Path, rate: int, name: str, stop: threading.Event | None) -> None:
    """The first audio stream of ``src`` decoded, resampled to mono s16 at ``rate`` and written
    to the PCM WAV ``wav``.

    One filter graph, ``amovie -> aformat -> abuffersink``: the conversion ffmpeg's ``-ac 1
    -ar RATE -c:a pcm_s16le`` sets up (``aformat`` after the decoder, swresample inserted
    before it), with libavfilter's movie source reading and decoding the stream inside the
    graph. Each pull hands back :data:`_WAV_FRAME_S` of audio from C without the GIL (decoding
    packet by packet from Python held it for about half the time, and probe's thread waited
    for it). A packet that does not decode, or a change of sample format, layout or rate,
    stops the graph with an error (ffmpeg decodes on past the one and reconfigures for the
    other: it writes those files).
    """
    from av.filter import Graph

    graph = Graph()
    source = graph.add("amovie", filename=str(src), streams="a:0")  # ffmpeg's -map 0:a:0
    fmt = graph.add("aformat", sample_rates=str(rate), sample_fmts="s16", channel_layouts="mono")
    sink = graph.add("abuffersink")
    source.link_to(fmt)
    fmt.link_to(sink)
    graph.configure()
    graph.set_audio_frame_size(max(1, round(_WAV_FRAME_S * rate)))
    samples = 0
    try:
        out = wave.open(str(wav), "wb")  # noqa: SIM115 (closed below, naming the file on an error)
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        try:
            while True:
                if stop is not None and stop.is_set():
                    raise _Stopped
                try:
                    frame = graph.pull()
                except EOFError:
                    break
                data = frame.to_ndarray()
                samples += data.size
                out.writeframesraw(data.astype("<i2", copy=False).tobytes())
        finally:
            out.close()  # writes the header's sizes
    except OSError as exc:
        if not isinstance(exc, av.FFmpegError) and exc.filename is None:
            exc.filename = str(wav)  # a buffered write's error names no file
        raise
    if not samples:
        raise MediaError(f"{name}: no audio sample decodes in-process")


def strip_audio(
    src: Path, folder: Path, has_audio: bool, audio_rate: int, name: str | None = None,
    started: _StripJob | None = None,
) -> tuple[Path, Path | None]:
    """Write the muted video (stream copy) and, when there is audio, a mono WAV.

    The video goes to ``video.mp4``; a codec MP4 cannot hold is put in
    ``video.mkv`` instead. Audio that cannot be decoded is recorded as no audio
    (with a warning), not as a failure of the video.

    First in-process (:func:`_write_in_process`: PyAV, no ffmpeg process, whose start-up
    alone was a third of the work). When that raises MediaError (it declines what it
    would not write as ffmpeg does), ffmpeg writes both files in one process, as before; only
    when that fails too are they made one at a time, which is where MP4 or MKV and WAV or "no
    audio" get decided. ``started``: the first attempt, already started by
    :func:`start_strip_audio` with the same arguments.
    """
    try:
        if started is not None:
            return started.wait()
        return _write_in_process(src, folder, has_audio, audio_rate, name)
    except MediaError as exc:
        log.debug("%s; writing them with ffmpeg", exc)
    for leftover in ("video.mp4", "audio.wav"):
        (folder / leftover).unlink(missing_ok=True)
    return _strip_with_ffmpeg(src, folder, has_audio, audio_rate, name)


def _strip_with_ffmpeg(src: Path, folder: Path, has_audio: bool, audio_rate: int,
                       name: str | None) -> tuple[Path, Path | None]:
    """:func:`strip_audio` with ffmpeg: one process for both files, else one at a time."""
    video = folder / "video.mp4"
    args, what = _first_command(src, folder, has_audio, audio_rate)
    try:
        run_ffmpeg(args, what, src, name)
        return video, (folder / "audio.wav") if has_audio else None
    except MediaError as exc:
        first_failed = exc
    video.unlink(missing_ok=True)
    base = _copy_video(src)
    if has_audio:
        log.debug("%s; writing the video and the audio one at a time", first_failed)
        (folder / "audio.wav").unlink(missing_ok=True)
        try:
            run_ffmpeg([*base, "-movflags", "+faststart", str(video)], "stream copy to MP4", src, name)
        except MediaError:
            video.unlink(missing_ok=True)
            video = folder / "video.mkv"
    else:
        video = folder / "video.mkv"  # the MP4 copy was the first command
    if video.suffix == ".mkv":
        run_ffmpeg([*base, str(video)], "stream copy to MKV", src, name)
    wav = None
    if has_audio:
        wav = folder / "audio.wav"
        try:
            run_ffmpeg(["-i", str(src), *_to_wav(audio_rate), str(wav)], "audio extraction", src, name)
        except MediaError as exc:
            log.warning("%s; recorded as no audio", exc)
            wav.unlink(missing_ok=True)
            wav = None
    return video, wav


def _wav_params(path: Path) -> tuple[int, int, int, float] | None:
    """(channels, bytes per sample, rate, seconds) from a PCM WAV's header, when the
    file holds every sample the header announces; else None. Python's wave module:
    no subprocess, a few microseconds."""
    import wave

    try:
        with wave.open(str(path), "rb") as w:
            ch, width, rate, n = w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()
    except (wave.Error, EOFError, OSError):
        return None
    if rate <= 0 or path.stat().st_size < 44 + n * ch * width:
        return None
    return ch, width, rate, n / rate


def verify_outputs(src_info: dict, video: Path, wav: Path | None, audio_rate: int, name: str,
                   src_packets: VideoPackets | None = None) -> dict:
    """Check what ingest wrote before it is committed; return ``{"decoded_duration_s"}``
    of the muted video.

    The muted video must demux to as many packets as the source's video stream
    (a stream copy keeps every packet) and decode to the same end (within two
    frames); the WAV must be mono PCM at ``audio_rate`` lasting as long as the
    source's audio stream (within 0.25 s + 1 %), every announced sample present.
    ``src_info`` is the source's :func:`~evoke.media.probe`. A mismatch on a full disk raises
    :class:`EnvironmentFailure` (the disk, not the data); otherwise
    :class:`MediaError`.

    With ``src_packets`` (the source's :func:`~evoke.media.probe_packets`), a muted video
    whose video packets are the source's (bytes, timestamps, keyframe flags, time base and
    extradata, read by demuxing only) decodes as the source did, to the end probe found,
    so it is not decoded again. One that differs in any way (a truncated or damaged copy,
    or a muxer that rewrote the packets or their time base) is checked by decoding, as
    without ``src_packets``.
    """
    problems = []
    frame_s = 1.0 / src_info["fps_avg"] if src_info.get("fps_avg") else 0.1
    decoded = None
    same = False
    if src_packets is not None and src_packets.digest:
        try:
            same = video_packet_digest(video, video.name) == (src_packets.count, src_packets.digest)
        except MediaError:
            pass  # the checks below say what is wrong
    if same:  # what decoding it would give: the same frames at the same times
        decoded = min(src_packets.last_decoded_s - src_packets.first_s + frame_s, src_info["duration_s"])
    else:
        decoded, problems = _verify_by_decoding(src_info, video, frame_s)
    if decoded is not None and abs(decoded - src_info["decoded_duration_s"]) > 2 * frame_s + 0.01:
        problems.append(f"the muted video decodes to {decoded:.3f} s, the source "
                        f"to {src_info['decoded_duration_s']:.3f} s")
    if wav is not None:
        got = _wav_params(wav)
        want = src_info.get("audio_duration_s")
        if got is None:
            problems.append("the WAV does not read back (or holds fewer samples than its header says)")
        elif got[:3] != (1, 2, int(audio_rate)):
            problems.append(f"the WAV has {got[0]} channel(s) of {8 * got[1]}-bit samples at {got[2]} Hz, "
                            f"not 16-bit mono at {audio_rate} Hz")
        elif want is not None and abs(got[3] - want) > 0.25 + 0.01 * want:
            problems.append(f"the WAV lasts {got[3]:.3f} s, the source's audio {want:.3f} s")
    if problems:
        free = shutil.disk_usage(video.parent).free
        if free < 64 * 1024**2:
            raise EnvironmentFailure(f"{name}: the disk is full ({free} bytes free under {video.parent}): "
                                     + "; ".join(problems))
        raise MediaError(f"{name}: written files failed verification: " + "; ".join(problems))
    return {"decoded_duration_s": decoded}


def _verify_by_decoding(src_info: dict, video: Path, frame_s: float) -> tuple[float | None, list[str]]:
    """(decoded duration, problems) of the muted video: its packet count against the source's,
    and the end of its last group of pictures, decoded."""
    try:  # demux and decode with PyAV (no ffprobe process)
        times, keys, tb = video_packet_times(video, video.name)
    except MediaError as exc:
        return None, [f"the muted video does not read back: {exc}"]
    problems = []
    last = decoded_end_time(video, times[keys] if keys.any() else times[:1], tb) if times.size else None
    if times.size != src_info["n_frames"]:
        problems.append(f"the muted video has {times.size} video packets, the source {src_info['n_frames']}")
    if last is None:
        problems.append("no frame of the muted video decodes")
        return None, problems
    return min(last - float(times[0]) + frame_s, src_info["duration_s"]), problems


def _local_identity(source: str | None) -> list | None:
    """Size and modification time of a local file (a path or a file:// URL), else None."""
    if not source:
        return None
    path = Path(unquote(urlparse(source).path)) if source.startswith("file://") else \
        (Path(source) if not is_url(source) else None)
    try:
        st = path.stat() if path is not None else None
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns] if st else None


def video_fingerprint(row: dict, settings: dict) -> str:
    """Cache key of one video's ingest: its manifest row, the settings that matter,
    and for local files (paths, file:// URLs, danmaku files) their size and mtime,
    so a replaced file is ingested again. ``ingest-v2``: folders committed before
    written files were verified (and without ``decoded_duration_s``) are redone."""
    keyed = {k: row.get(k) for k in ("video_id", "source", "start_s", "end_s", "danmaku")}
    local = [_local_identity(row.get("source")), _local_identity(row.get("danmaku"))]
    return fingerprint(keyed, {k: settings.get(k) for k in _CACHE_KEYS}, local, "ingest-v2")


def _read_danmaku_source(dsrc: str) -> Path:
    dpath = Path(unquote(urlparse(dsrc).path)) if dsrc.startswith("file://") else Path(dsrc)
    if not dpath.is_file():
        raise MediaError(f"{dpath}: danmaku file not found")
    return dpath


def _copy_file(src: Path, dest: Path, what: str, limit: int | None = None) -> int:
    """Copy ``src`` to ``dest`` in 1 MiB blocks; return the bytes copied.

    Reading the source raises MediaError (the data's problem), as does passing
    ``limit`` bytes; writing the copy raises OSError (the machine's).
    """
    try:
        f_in = open(src, "rb")
    except OSError as exc:
        raise MediaError(f"{src}: cannot read the {what}: {exc.strerror or exc}") from None
    copied = 0
    with f_in, open(dest, "wb") as f_out:
        while True:
            try:
                block = f_in.read(1 << 20)
            except OSError as exc:
                raise MediaError(f"{src}: cannot read the {what}: {exc.strerror or exc}") from None
            if not block:
                break
            copied += len(block)
            if limit is not None and copied > limit:
                raise MediaError(f"{src}: larger than ingest.max_filesize ({limit} bytes)")
            f_out.write(block)
    return copied


def _copy_verified(src: Path, dest: Path, what: str) -> None:
    """Copy a regular file and check the copy holds every byte of it."""
    copied = _copy_file(src, dest, what)
    if dest.stat().st_size != copied:
        raise EnvironmentFailure(f"{dest}: the {what} copy has {dest.stat().st_size} of {copied} bytes")


def _commit(tmp: Path, final: Path) -> None:
    """Move a finished video folder into place (an older folder there is replaced)."""
    if final.exists():
        old = tmp.with_name(tmp.name + ".old")
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)


def ingest_video(row: dict, videos_dir: Path, settings: dict, work_dir: Path | None = None) -> dict:
    """Ingest one manifest row into ``videos_dir/{video_id}``; return its probe row.

    Reuses a finished folder whose fingerprint matches. The video is built in
    ``work_dir/{video_id}`` (default: a folder of this process inside
    ``videos_dir``), verified, then renamed into place. Raises MediaError or
    DownloadError (the video's fault) or EnvironmentFailure / OSError (the
    machine's) with a one-line message; nothing is left under the final name then.
    """
    vid = row["video_id"]
    videos_dir = Path(videos_dir)
    final = videos_dir / vid
    fp = video_fingerprint(row, settings)
    done = final / "probe.json"
    if done.exists():
        cached = json.loads(done.read_text(encoding="utf-8"))
        files = [cached.get(k) for k in ("video_path", "audio_path", "danmaku_path") if cached.get(k)]
        if cached.get("fingerprint") == fp and all((final / Path(f).name).is_file() for f in files):
            return cached  # (a folder missing one of its files is built again)
    own_work = work_dir is None
    if own_work:
        import socket

        work_dir = videos_dir / f".work-{socket.gethostname()}-{os.getpid()}"
    tmp = Path(work_dir) / vid
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        result = _build_video(row, tmp, settings, fp)
        _commit(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if own_work:
            shutil.rmtree(work_dir, ignore_errors=True)
    return result


def _build_video(row: dict, tmp: Path, settings: dict, fp: str) -> dict:
    vid = row["video_id"]
    dl = tmp / "download"
    local = _local_path(row["source"])
    name = local.name if local is not None else Path(urlparse(row["source"]).path).name or row["source"]
    if local is not None:
        src = fetch_local(local, dl, settings["local_files"], max_filesize(settings))
        ytdlp_danmaku = None
    else:
        src, ytdlp_danmaku = download(row["source"], dl, settings)
    start, end = row.get("start_s"), row.get("end_s")
    if start is not None or end is not None:
        whole = probe(src, name)
        length = min(whole["duration_s"], whole["decoded_duration_s"])
        if start is not None and start >= length:
            raise MediaError(f"{name}: start_s {start:g} s is at or past the end of the video ({length:.2f} s)")
        if end is not None and end > length + 0.5:
            log.warning("%s: end_s %g s is past the end of the video (%.2f s); clipped at the end", name, end, length)
        src = clip_video(src, dl / "clip.mp4", start, end, name)
    started = []  # the muted copy and the WAV are written while probe reads and decodes the source

    def start_writing(has_audio: bool) -> None:
        started.append(start_strip_audio(src, tmp, has_audio, settings["audio_rate"], name))

    try:
        info, packets = probe_packets(src, name, on_streams=start_writing)
        video, wav = strip_audio(src, tmp, info["has_audio"], settings["audio_rate"], name,
                                 started[0] if started else None)
    except BaseException:
        for job in started:  # the source is bad (or the job is stopping): its outputs are not wanted
            job.cancel()
        raise
    written = verify_outputs(info, video, wav, settings["audio_rate"], name, packets)
    danmaku = None
    dsrc = _read_danmaku_source(row["danmaku"]) if row.get("danmaku") else ytdlp_danmaku
    if dsrc is not None:
        danmaku = tmp / f"danmaku{dsrc.suffix.lower()}"
        _copy_verified(dsrc, danmaku, "danmaku file")
    if settings.get("keep_original"):
        os.replace(src, tmp / f"original{src.suffix}")
    shutil.rmtree(dl, ignore_errors=True)
    rel = lambda p: f"ingest/videos/{vid}/{p.name}" if p is not None else None  # noqa: E731
    result = {
        "video_id": vid,
        "split": row["split"],
        "source": row["source"],
        "status": "ok",
        "error": None,
        "video_path": rel(video),
        "audio_path": rel(wav),
        "danmaku_path": rel(danmaku),
        "start_s": start,
        "end_s": end,
        **info,
        # what the committed file decodes to (the frames stage masks seconds past it)
        "decoded_duration_s": written["decoded_duration_s"],
        "has_audio": wav is not None,
        "fingerprint": fp,
        "evoke_version": __version__,
    }
    text = json.dumps(result, indent=1)
    (tmp / "probe.json").write_text(text, encoding="utf-8")
    if (tmp / "probe.json").read_text(encoding="utf-8") != text:
        raise EnvironmentFailure(f"{tmp / 'probe.json'}: did not read back as written")
    return result


def ingest_shard(rows: pl.DataFrame, dataset_dir: Path, settings: dict, shard: str) -> pl.DataFrame:
    """Ingest every video of a shard; return one ``PROBE_SCHEMA`` row per video.

    Finished videos (from an earlier, possibly killed, run) are reused; a video
    that fails gets ``status = "failed"`` and its error, and the shard goes on.
    A failure of the machine (:class:`EnvironmentFailure`, or an OSError while
    writing) raises EnvironmentFailure: the job fails, no row is written, and a
    rerun retries the video. Work happens in ``ingest/work/{shard}/``, which
    this job clears at its start and end (it is this shard's alone).
    """
    videos_dir = Path(dataset_dir) / "ingest" / "videos"
    videos_dir.mkdir(parents=True, exist_ok=True)
    work = Path(dataset_dir) / "ingest" / "work" / shard
    shutil.rmtree(work, ignore_errors=True)  # a killed run of this shard's job: its leftovers
    if settings.get("cookies") and not Path(settings["cookies"]).is_file():
        raise EnvironmentFailure(f"ingest.cookies: {settings['cookies']}: file not found")
    try:
        out = _ingest_rows(rows, videos_dir, settings, shard, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return pl.DataFrame(out, schema=PROBE_SCHEMA)


def _ingest_rows(rows: pl.DataFrame, videos_dir: Path, settings: dict, shard: str, work: Path) -> list[dict]:
    out = []
    for row in tqdm(rows.to_dicts(), desc=f"ingest {shard}", unit="video", mininterval=2):
        try:
            result = ingest_video(row, videos_dir, settings, work)
        except (EnvironmentFailure, OSError) as exc:  # OSError: writing under results/ (sources
            # are read with MediaError), so the machine's problem, never the video's
            raise EnvironmentFailure(f"ingest {shard}: {row['video_id']}: {exc}") from exc
        except EvokeError as exc:  # one video's problem: record it, go on
            log.error("%s: %s", row["video_id"], exc)
            result = {
                "video_id": row["video_id"], "split": row["split"], "source": row["source"],
                "status": "failed", "error": str(exc),
                "start_s": row.get("start_s"), "end_s": row.get("end_s"),
            }
        result["shard"] = shard
        out.append({k: result.get(k) for k in PROBE_SCHEMA})
    return out
