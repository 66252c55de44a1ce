"""The bad-input corpus of the input side (ingest and danmaku), generated, never committed.

``build_corpus(folder, http_root)`` writes every case into ``folder`` (small
files made with ffmpeg from Debian's opencv-doc clips, plus danmaku files) and
returns the cases, each with its defined outcome through the workflow:

* ``expect`` ``ok`` or ``failed`` for the ingest row, ``error`` a part of the
  failure message, ``checks`` probe columns the ok row must have;
* for danmaku, ``comments`` the comments that must reach
  ``labels/danmaku/comments.parquet`` or ``danmaku_error`` a part of the
  ``labels/failures.parquet`` message; ``drops`` the comments dropped by reason.

Run ``python tests/badinput/corpus.py OUT`` to write it with a manifest
(``OUT/manifest.csv``) for a look by hand; ``tests/badinput/test_corpus.py``
runs it through Snakemake.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from conftest import MEGAMIND, VTEST, write_vfr  # noqa: E402

# local copies over this fail their video (the workflow test's ingest.max_filesize)
MAX_FILESIZE = "8M"


@dataclass
class Case:
    video_id: str
    source: str
    expect: str  # "ok" or "failed"
    error: str | None = None
    checks: dict = field(default_factory=dict)
    start_s: float | None = None
    end_s: float | None = None
    danmaku: str | None = None
    comments: list[str] | None = None  # texts that must be parsed, in file order
    danmaku_error: str | None = None
    drops: dict = field(default_factory=dict)


def _ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *args], check=True)


def _video(path: Path, *args: str, src: Path = VTEST, seconds: float = 2.0) -> Path:
    _ffmpeg("-i", str(src), "-t", str(seconds), *args, str(path))
    return path


def _danmaku_cases(d: Path, clip: str) -> list[Case]:
    """Danmaku in every failure mode, each attached to the same small good clip (2 s)."""
    def xml(comments):
        return "<i>" + "".join(f'<d p="{t},1,25,16777215,{1600000000 + i},0,u{i},{i}">{x}</d>'
                               for i, (t, x) in enumerate(comments)) + "</i>"

    files = {
        "good.xml": (xml([(0.5, "好看"), (1.5, "哈哈")]).encode("utf-8"), ["好看", "哈哈"], None, {}),
        "fields.csv": ("time_s,text,mode,user_hash,post_time\n0.1,ok,1,a,1600000000\n0.2,x,1,b,abc\n"
                       "0.3,y,1,c,nan\n0.4,z,1,d,1e20\n0.5,w,99999999999,e,1\n".encode(), ["ok"], None,
                       {"malformed_post_time": 3, "malformed_mode": 1}),
        "nico_nan.json": (b'[{"vpos": 50, "content": "ok", "date": 1600000000},'
                          b' {"vpos": 60, "content": "nan", "date": NaN}]', ["ok"], None,
                          {"malformed_post_time": 1}),
        "deep.json": (b"[" * 100_000 + b"]" * 100_000, None, "nested too deeply", {}),
        "digits.json": (b'[{"vpos": ' + b"9" * 5000 + b', "content": "x"}]', None, "cannot parse", {}),
        "sjis_legacy.xml": (('<packet><chat no="1" vpos="50" date="1190000000" mail="184" user_id="a">うぽつ</chat>'
                             '<chat no="2" vpos="120" mail="ue" user_id="b">わこつ</chat></packet>'
                             ).encode("shift_jis"), ["うぽつ", "わこつ"], None, {}),
        "gb_undeclared.xml": (xml([(0.5, "弹幕测试，哈哈"), (1.0, "太好看了")]).encode("gb18030"),
                              ["弹幕测试，哈哈", "太好看了"], None, {}),
        "ambiguous.xml": (b'<i><d p="1,1,25,0,0,0,u,1">' + b"\xaa\xab\xac\xad" * 20 + b"</d></i>", None,
                          "pass --encoding", {}),
        "broken.xml": (b'<i><d p="1,1,25,0,0,0,u,1">unclosed</i>', None, "malformed XML", {}),
        "laughs.xml": (b'<?xml version="1.0"?><!DOCTYPE i [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]>'
                       b'<i><d p="1,1,25,0,0,0,u,1">&b;</d></i>', None, "refused", {}),
        "page.xml": (b"<html><body>not danmaku</body></html>", None, "holds no comments", {}),
        "late.xml": (xml([(0.5, "ok"), (100 * 3600.0, "a hundred hours in")]).encode(), ["ok"], None,
                     {"after_video_end": 1}),
        "empty.xml": (b"", None, "empty", {}),
    }
    cases = []
    for fname, (data, comments, err, drops) in files.items():
        p = d / "danmaku" / fname
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(data)
        cases.append(Case(f"dm_{p.stem}", clip, "ok", danmaku=str(p), comments=comments, danmaku_error=err,
                          drops=drops))
    cases.append(Case("dm_missing_file", clip, "failed", "danmaku file not found",
                      danmaku=str(d / "danmaku" / "gone.xml")))
    return cases


def build_corpus(folder: str | Path, http_root: str | None = None) -> list[Case]:
    """Write every case into ``folder``; ``http_root`` (a server on 127.0.0.1 serving
    ``folder``) adds the download cases."""
    d = Path(folder)
    d.mkdir(parents=True, exist_ok=True)
    small = ["-vf", "scale=160:120", "-c:v", "libx264", "-preset", "ultrafast"]
    cfr = _video(d / "cfr.mp4", "-vf", "scale=160:120", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac",
                 src=MEGAMIND)
    plain = _video(d / "plain.mp4", *small, "-an")  # moov at the end
    fast = _video(d / "fast.mp4", *small, "-an", "-movflags", "+faststart", seconds=4)
    cases = [
        Case("good", str(cfr), "ok", checks={"has_audio": True, "width": 160}),
        Case("zero_bytes", str(_write(d / "zero.mp4", b"")), "failed", "empty file"),
        Case("random_bytes", str(_write(d / "random.mp4", random.Random(0).randbytes(50_000))), "failed",
             "not a readable media file"),
        Case("missing_file", str(d / "nope.mp4"), "failed", "file not found"),
        Case("a_folder", str(d), "failed", "is a folder"),
        Case("dev_zero", "/dev/zero", "failed", "larger than ingest.max_filesize"),
        Case("start_past_end", str(plain), "failed", "start_s 30 s is at or past the end of the video",
             start_s=30.0),
        Case("clipped", str(plain), "ok", checks={"duration_s": (1.0, 0.1)}, start_s=0.5, end_s=1.5),
    ]
    data = plain.read_bytes()
    for frac in (0.1, 0.5, 0.9):  # no moov: nothing to read
        p = _write(d / f"cut_plain_{int(frac * 100)}.mp4", data[: int(len(data) * frac)])
        cases.append(Case(p.stem, str(p), "failed", "not a readable media file"))
    data = fast.read_bytes()
    for frac in (0.3, 0.6, 0.9):  # moov first: what is there decodes, the rest is recorded as missing
        p = _write(d / f"cut_fast_{int(frac * 100)}.mp4", data[: int(len(data) * frac)])
        cases.append(Case(p.stem, str(p), "ok", checks={"duration_s": (4.0, 0.05), "decoded_shorter": True}))
    corrupt = bytearray(fast.read_bytes())
    rng = random.Random(1)
    for _ in range(10):  # damaged packet data, intact container
        at = rng.randrange(len(corrupt) // 3, len(corrupt) - 64)
        corrupt[at:at + 16] = rng.randbytes(16)
    cases.append(Case("corrupt_packets", str(_write(d / "corrupt.mp4", bytes(corrupt))), "ok",
                      checks={"n_frames": _frames(fast)}))
    audio_only = d / "audio_only.m4a"
    _ffmpeg("-i", str(MEGAMIND), "-t", "1", "-vn", "-c:a", "aac", str(audio_only))
    cases.append(Case("audio_only", str(audio_only), "failed", "no video stream"))
    cases.append(Case("one_frame", str(_video(d / "one.mp4", "-frames:v", "1", *small)), "ok",
                      checks={"n_frames": 1}))
    cases.append(Case("short_0_2s", str(_video(d / "short.mp4", *small, seconds=0.2)), "ok",
                      checks={"n_frames": 2}))
    vfr = d / "vfr.mp4"
    write_vfr(vfr, n_frames=40, size=(160, 120))
    cases.append(Case("vfr", str(vfr), "ok", checks={"fps_is_variable": True}))
    rotated = d / "rotated.mp4"
    _ffmpeg("-i", str(plain), "-c", "copy", "-metadata:s:v:0", "rotate=90", str(rotated))
    cases.append(Case("rotated", str(rotated), "ok", checks={"display_width": 120, "display_height": 160}))
    cases.append(Case("odd_size", str(_video(d / "odd.mp4", "-vf", "scale=161:97", "-c:v", "libx264",
                                             "-preset", "ultrafast", "-pix_fmt", "yuv444p", seconds=1)), "ok",
                      checks={"width": 161, "height": 97}))
    cases.append(Case("uhd_4k", str(_video(d / "uhd.mp4", "-vf", "scale=3840:2160", "-c:v", "libx264",
                                           "-preset", "ultrafast", seconds=0.5)), "ok",
                      checks={"width": 3840, "height": 2160}))
    webm = _video(d / "clip.webm", "-vf", "scale=160:120", "-c:v", "libvpx-vp9", "-deadline", "realtime",
                  "-cpu-used", "8", "-c:a", "libopus", src=MEGAMIND, seconds=1)
    cases.append(Case("webm_vp9", str(webm), "ok", checks={"video_codec": "vp9", "has_audio": True}))
    cases.append(Case("mkv", str(_video(d / "clip.mkv", *small, seconds=1)), "ok", checks={"video_codec": "h264"}))
    # MPEG-TS with B-frames: its demuxer seeks by decoding time, landing past a keyframe sought by
    # its presentation time (probe once found no frame that decodes)
    cases.append(Case("mpegts", str(_video(d / "clip.ts", "-vf", "scale=160:120", "-c:v", "libx264", "-preset",
                                           "veryfast", "-an", "-f", "mpegts", seconds=1)), "ok",
                      checks={"video_codec": "h264", "duration_s": (1.0, 0.05)}))
    cases.append(Case("avi_mpeg4", str(_video(d / "clip.avi", "-vf", "scale=160:120", "-c:v", "mpeg4",
                                              seconds=1)), "ok", checks={"video_codec": "mpeg4"}))
    cases.append(Case("ten_bit", str(_video(d / "tenbit.mp4", "-vf", "scale=160:120", "-c:v", "libx264",
                                            "-preset", "ultrafast", "-pix_fmt", "yuv420p10le", seconds=1)), "ok",
                      checks={"video_codec": "h264"}))
    surround = d / "surround.mp4"
    _ffmpeg("-i", str(VTEST), "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", "1",
            "-vf", "scale=160:120", "-c:v", "libx264", "-preset", "ultrafast", "-af", "pan=5.1|c0=c0|c1=c0|c2=c0|"
            "c3=c0|c4=c0|c5=c0", "-c:a", "aac", "-ac", "6", "-shortest", str(surround))
    cases.append(Case("surround_5_1", str(surround), "ok", checks={"audio_channels": 6, "has_audio": True}))
    if http_root:
        cases.append(Case("http_id", f"{http_root}/watch/plain", "ok", checks={"n_frames": _frames(plain)}))
        cases.append(Case("http_404", f"{http_root}/does-not-exist.mp4", "failed", "404"))
    cases += _danmaku_cases(d, str(plain))
    return cases


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _frames(path: Path) -> int:
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-count_packets", "-show_entries",
                          "stream=nb_read_packets", "-of", "json", str(path)], capture_output=True, text=True,
                         check=True).stdout
    return int(json.loads(out)["streams"][0]["nb_read_packets"])


def write_manifest(cases: list[Case], path: Path) -> Path:
    import csv

    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["video_id", "source", "split", "start_s", "end_s", "danmaku"])
        for c in cases:
            w.writerow([c.video_id, c.source, "train", "" if c.start_s is None else c.start_s,
                        "" if c.end_s is None else c.end_s, c.danmaku or ""])
    return path


if __name__ == "__main__":
    out = Path(sys.argv[1])
    made = build_corpus(out)
    write_manifest(made, out / "manifest.csv")
    print(f"{len(made)} cases in {out} (manifest.csv)")
