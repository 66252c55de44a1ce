"""The clip plan (a seeded draw of how each clip is cut, graded and encoded) and the encoding.

Each clip is a 5-15 s cut of one source (short sources are looped), scaled and
cropped to one of several sizes (176x144 to 1280x720), resampled to one of
several frame rates (10 to 30 fps), colour-graded (brightness, saturation,
hue) so that content varies across clips, and encoded with ffmpeg: mostly
H.264/AAC in MP4, some MKV, a VP9 WebM and an MPEG-4 AVI, one
variable-frame-rate clip, one clip with a display rotation, clips without
audio, one with a silent audio track, and speech muxed onto some clips whose
source has no sound. The plan is drawn from ``numpy.random.default_rng([seed,
0])``: a seed always gives the same clips.
"""

from __future__ import annotations

import subprocess
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from evoke.demo.common import MAX_CLIP_S, MAX_CLIPS, MIN_CLIP_S, MIN_CLIPS, DemoError
from evoke.demo.media import ALSA_SOUNDS, SourceMedia
from evoke.media import require_binary, run_ffmpeg

_SPEECH_EN = [
    "Hello and welcome to the demo. Today we are looking at a few short videos.",
    "The weather today is lovely. Let us go for a walk in the park.",
    "Watch carefully, something surprising is about to happen.",
    "I can not believe how fast they are going. This is amazing!",
    "Please remain calm. Everything is going to be all right.",
]
_SPEECH_CMN = [
    "今天天气很好，我们一起去公园散步吧。",
    "这个视频真有意思，我看了好几遍。",
    "请大家注意安全，晚上早点休息。",
    "你好，欢迎来到我们的节目。",
    "太精彩了，真是没想到会这样。",
]
# clip sizes and how often each is drawn; one clip is 1280x720 (kept short: it costs the most)
_SIZES = [(176, 144), (320, 240), (426, 240), (480, 360), (640, 360), (640, 480), (854, 480)]
_SIZE_WEIGHTS = [0.14, 0.20, 0.20, 0.16, 0.15, 0.08, 0.07]
_HD = (1280, 720)
_RATES = ["10", "15", "24", "25", "30000/1001", "30"]


@dataclass(frozen=True)
class ClipSpec:
    """How one clip is made and how the manifest uses it.

    ``source_start_s`` is where the cut starts in the source (``loop`` repeats a
    source shorter than the clip); ``start_s``/``end_s`` are the manifest's
    clipping bounds within the clip (None: the whole clip).
    """

    video_id: str
    file: str
    source: str
    source_start_s: float
    loop: bool
    duration_s: float
    width: int
    height: int
    fps: str
    variant: str  # mp4, mkv, webm, avi, vfr, rotate
    audio: str  # source, source_6ch, none, silent_track, speech_en, speech_cmn, alsa
    speech_text: str
    speech_delay_s: float
    brightness: float
    saturation: float
    hue_deg: float
    gop: int
    split: str
    start_s: float | None
    end_s: float | None
    danmaku: bool
    danmaku_fields: int
    danmaku_past_end: bool

    @property
    def segment_s(self) -> tuple[float, float]:
        """The part of the clip the manifest keeps, (start, end) in clip seconds."""
        start = self.start_s or 0.0
        end = self.end_s if self.end_s is not None else self.duration_s
        return start, end


_EXT = {"mp4": ".mp4", "vfr": ".mp4", "rotate": ".mp4", "mkv": ".mkv", "webm": ".webm", "avi": ".avi"}


def plan_clips(sources: dict[str, SourceMedia], n_clips: int = 40, seed: int = 0) -> list[ClipSpec]:
    """Draw the clip plan: ``n_clips`` (30-60) specs, the same for the same seed and sources.

    Guarantees at least one VFR clip, one rotated clip, a WebM, an AVI, MKVs,
    clips without audio, a silent audio track, English and Mandarin espeak
    speech and ALSA speech, two clips the manifest cuts with start_s/end_s, and
    danmaku for three quarters of the videos (two with the 9-field ``p``, two with a
    comment past the video's end).
    """
    if not MIN_CLIPS <= n_clips <= MAX_CLIPS:
        raise DemoError(f"n_clips must be between {MIN_CLIPS} and {MAX_CLIPS}, got {n_clips}")
    rng = np.random.default_rng([seed, 0])
    names = sorted(sources)
    # every source used about equally often, in a seeded order
    src_of = [names[i % len(names)] for i in range(n_clips)]
    rng.shuffle(src_of)
    variants = ["vfr", "rotate", "webm", "avi", "mkv", "mkv"] + ["mp4"] * (n_clips - 6)
    rng.shuffle(variants)
    silent = [i for i in range(n_clips) if not sources[src_of[i]].has_audio]
    loud = [i for i in range(n_clips) if sources[src_of[i]].has_audio]
    audio = {}
    special = ["speech_en", "speech_en", "speech_cmn", "speech_cmn", "alsa", "alsa", "silent_track"]
    order = list(rng.permutation(silent))
    for i, kind in zip(order, special):
        audio[i] = kind
    for i in order[len(special):]:
        audio[i] = str(rng.choice(["none", "none", "speech_en", "speech_cmn", "alsa"]))
    first_6ch = True
    for i in loud:
        keep = rng.random() < 0.75
        if first_6ch and src_of[i] == "bigbuckbunny":  # one clip keeps all 6 channels
            audio[i], first_6ch = "source_6ch", False
        else:
            audio[i] = "source" if keep else "none"
    hd = int(rng.choice([i for i in range(n_clips) if variants[i] in ("mp4", "mkv")]))
    idx = rng.permutation(n_clips)
    n_train = round(0.70 * n_clips)
    n_val = round(0.15 * n_clips)
    split = {}
    for k, i in enumerate(idx):
        split[int(i)] = "train" if k < n_train else "val" if k < n_train + n_val else "test"
    danmaku_ids = set(int(i) for i in rng.choice(n_clips, size=(3 * n_clips) // 4, replace=False))
    dm_sorted = sorted(danmaku_ids)
    nine_field = set(dm_sorted[:2])
    past_end = set(dm_sorted[-2:])
    manifest_cut = set(int(i) for i in rng.choice(n_clips, size=2, replace=False))
    specs = []
    for i in range(n_clips):
        src = sources[src_of[i]]
        dur = round(float(rng.uniform(MIN_CLIP_S, MAX_CLIP_S)), 1)
        if i in manifest_cut:
            dur = max(dur, 12.0)
        w, h = _SIZES[int(rng.choice(len(_SIZES), p=_SIZE_WEIGHTS))]
        if i == hd:
            w, h = _HD
            if i not in manifest_cut:
                dur = min(dur, 6.0)
        if variants[i] == "webm" and w > 480:
            w, h = 426, 240
        fps = str(rng.choice(_RATES))
        if variants[i] == "vfr":
            fps = "30"
        loop = src.duration_s < dur + 0.5
        start = 0.0 if loop else round(float(rng.uniform(0.0, src.duration_s - dur - 0.2)), 1)
        fps_val = float(eval_rate(fps))
        gop = int(round(fps_val * float(rng.choice([1.0, 2.0, 5.0]))))
        kind = audio[i]
        text = ""
        if kind == "speech_en":
            text = str(rng.choice(_SPEECH_EN))
        elif kind == "speech_cmn":
            text = str(rng.choice(_SPEECH_CMN))
        elif kind == "alsa":
            wavs = sorted(p.name for p in ALSA_SOUNDS.glob("*.wav"))
            text = " ".join(str(x) for x in rng.choice(wavs, size=min(3, len(wavs)), replace=False))
        delay = round(float(rng.uniform(0.0, 2.0)), 2)
        cut_start = cut_end = None
        if i in manifest_cut:
            cut_start = round(float(rng.uniform(1.0, 3.0)), 1)
            cut_end = round(float(rng.uniform(cut_start + 6.0, dur - 0.5)), 1)
        vid = f"demo_{i:03d}"
        specs.append(ClipSpec(
            video_id=vid, file=f"clips/{vid}{_EXT[variants[i]]}", source=src.name,
            source_start_s=start, loop=loop, duration_s=dur, width=w, height=h, fps=fps,
            variant=variants[i], audio=kind, speech_text=text, speech_delay_s=delay,
            brightness=round(float(rng.uniform(-0.22, 0.18)), 3),
            saturation=round(float(rng.uniform(0.3, 1.8)), 3),
            hue_deg=round(float(rng.choice([0.0, 0.0, 0.0, rng.uniform(-40, 40)])), 1),
            gop=max(gop, 1), split=split[i], start_s=cut_start, end_s=cut_end,
            danmaku=i in danmaku_ids, danmaku_fields=9 if i in nine_field else 8,
            danmaku_past_end=i in past_end,
        ))
    return specs


def eval_rate(text: str) -> float:
    """``"30000/1001"`` -> 29.97..., ``"25"`` -> 25.0."""
    num, _, den = text.partition("/")
    return float(num) / float(den or 1)


def _speech_wav(spec: ClipSpec, work: Path) -> Path | None:
    """The speech track of a clip as a WAV in ``work`` (None for clips without speech)."""
    out = work / f"{spec.video_id}.speech.wav"
    if spec.audio in ("speech_en", "speech_cmn"):
        voice = "en" if spec.audio == "speech_en" else "cmn"
        proc = subprocess.run(
            [require_binary("espeak-ng"), "-v", voice, "-s", "150", "-w", str(out), spec.speech_text],
            capture_output=True, text=True,
        )
        if proc.returncode != 0 or not out.is_file():
            raise DemoError(f"espeak-ng -v {voice} failed: {proc.stderr.strip()[-300:]}")
        return out
    if spec.audio == "alsa":
        # the chosen ALSA announcements one after another with 0.6 s pauses
        chunks, rate = [], None
        for name in spec.speech_text.split():
            with wave.open(str(ALSA_SOUNDS / name)) as w:
                if rate is None:
                    rate, width, channels = w.getframerate(), w.getsampwidth(), w.getnchannels()
                if (w.getframerate(), w.getsampwidth(), w.getnchannels()) != (rate, width, channels):
                    continue
                chunks.append(w.readframes(w.getnframes()))
                chunks.append(b"\x00" * int(0.6 * rate) * width * channels)
        with wave.open(str(out), "wb") as w:
            w.setnchannels(channels)
            w.setsampwidth(width)
            w.setframerate(rate)
            w.writeframes(b"".join(chunks))
        return out
    return None


def ffmpeg_args(spec: ClipSpec, source: SourceMedia, dest: Path, speech: Path | None) -> list[str]:
    """The ffmpeg arguments (after ``ffmpeg -y``) that write ``spec``'s clip to ``dest``.

    Encoders run on one thread each: libx264 with frame threads (and ffmpeg's
    mpeg4 with slices per thread) do not give the same bytes on every run or
    machine, and the clips are encoded several at a time anyway.
    """
    args: list[str] = []
    if spec.loop:
        args += ["-stream_loop", "-1"]
    elif spec.source_start_s > 0:
        args += ["-ss", f"{spec.source_start_s:.3f}"]
    args += ["-i", source.path]
    w, h = spec.width, spec.height
    vf = [
        f"fps={spec.fps}",
        f"scale={w}:{h}:force_original_aspect_ratio=increase:force_divisible_by=2",
        f"crop={w}:{h}",
        f"eq=brightness={spec.brightness}:saturation={spec.saturation}",
    ]
    if spec.hue_deg:
        vf.append(f"hue=h={spec.hue_deg}")
    if spec.variant == "vfr":
        # full rate in the first 2 s of every 4 s, a third of it in the other 2 s: a phone
        # camera dropping frames in the dark
        vf.append(r"select='if(lt(mod(t\,4)\,2)\,1\,not(mod(n\,3)))'")
    vf.append("setsar=1")
    graph = f"[0:v]{','.join(vf)}[v]"
    maps = ["-map", "[v]"]
    if speech is not None:
        args += ["-i", str(speech)]
        ms = int(spec.speech_delay_s * 1000)
        graph += f";[1:a]adelay={ms},apad[a]"
        maps += ["-map", "[a]"]
    elif spec.audio == "silent_track":
        args += ["-f", "lavfi", "-i", "anullsrc=r=44100:cl=stereo"]
        maps += ["-map", "1:a"]
    elif spec.audio in ("source", "source_6ch"):
        maps += ["-map", "0:a:0"]
    args += ["-filter_complex", graph, *maps, "-t", f"{spec.duration_s:.3f}"]
    if spec.variant == "vfr":
        args += ["-fps_mode", "vfr"]
    has_audio = len(maps) > 2
    if spec.variant == "webm":
        args += ["-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-crf", "40",
                 "-b:v", "0", "-threads", "1", "-g", str(spec.gop)]
        audio_codec = ["-c:a", "libopus", "-b:a", "64k", "-ac", "2"]
    elif spec.variant == "avi":
        args += ["-c:v", "mpeg4", "-q:v", "5", "-threads", "1", "-g", str(spec.gop)]
        audio_codec = ["-c:a", "libmp3lame", "-q:a", "5", "-ac", "2"]
    else:
        args += ["-c:v", "libx264", "-preset", "veryfast", "-crf", "26", "-pix_fmt", "yuv420p",
                 "-threads", "1", "-g", str(spec.gop)]
        channels = "6" if spec.audio == "source_6ch" else "1" if speech is not None else "2"
        audio_codec = ["-c:a", "aac", "-b:a", "96k", "-ac", channels]
    args += audio_codec if has_audio else ["-an"]
    args += ["-sn", "-dn", "-map_metadata", "-1", "-fflags", "+bitexact", str(dest)]
    return args


def encode_clip(spec: ClipSpec, source: SourceMedia, root: Path, work: Path) -> Path:
    """Write ``spec``'s clip under ``root`` (``root / spec.file``); ``work`` holds scratch files."""
    dest = root / spec.file
    dest.parent.mkdir(parents=True, exist_ok=True)
    speech = _speech_wav(spec, work)
    target = work / f"{spec.video_id}.norot.mp4" if spec.variant == "rotate" else dest
    run_ffmpeg(ffmpeg_args(spec, source, target, speech), "encoding the demo clip", target)
    if spec.variant == "rotate":
        # a portrait phone video: the picture is stored sideways with a display rotation
        run_ffmpeg(["-i", str(target), "-map", "0", "-c", "copy", "-metadata:s:v:0", "rotate=90",
                    "-fflags", "+bitexact", str(dest)], "setting the display rotation", dest)
        target.unlink()
    if speech is not None:
        speech.unlink(missing_ok=True)
    return dest


def segment_duration(spec: ClipSpec, probed_s: float) -> float:
    """Seconds of the part of the clip the manifest keeps, given the clip's probed duration."""
    start, end = spec.segment_s
    return round(min(end, probed_s) - start, 3)
