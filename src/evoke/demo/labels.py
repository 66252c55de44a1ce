"""The simulated annotations, drawn from the measured content (see :mod:`evoke.demo`).

**These labels are a seeded simulation for exercising the pipeline, not emotion
ground truth.** Every part draws from its own ``numpy.random.default_rng([seed, k])``;
the formulas are in the docstring of :mod:`evoke.demo`.
"""

from __future__ import annotations

import math
from xml.sax.saxutils import escape

import numpy as np
import polars as pl

from evoke.demo.clips import ClipSpec

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


# the subtitle words: valence-bearing words of a small fixed lexicon mixed with neutral words and
# filler, the mixture following the latent valence of the cue's seconds (a simulation, not speech)
SUBTITLE_WORDS = {
    "positive": ("love", "wonderful", "happy", "beautiful", "great", "smile", "laugh", "lovely", "glad",
                 "sweet", "amazing", "enjoy", "fun", "friend", "thanks", "perfect"),
    "negative": ("hate", "terrible", "sad", "ugly", "awful", "cry", "afraid", "angry", "hurt", "lost",
                 "alone", "pain", "worse", "dead", "sorry", "never"),
    "neutral": ("table", "street", "morning", "window", "car", "paper", "door", "train", "minute", "city",
                "water", "road", "house", "phone", "box", "today"),
    "filler": ("the", "a", "and", "I", "you", "it", "is", "we", "to", "of", "that", "this", "so", "then",
               "well", "oh", "just", "was", "there", "here"),
}
SUBTITLE_FILLER, SUBTITLE_NEUTRAL = 0.45, 0.3  # word shares: filler; neutral among the other words
SUBTITLE_LINE_CHARS = 42  # a cue of more characters is broken into two lines (as subtitlers do)


def _cue_words(rng: np.random.Generator, valence: float, n: int) -> str:
    """``n`` words: filler with probability :data:`SUBTITLE_FILLER`, else neutral with
    :data:`SUBTITLE_NEUTRAL`, else positive with ``sigmoid(2 valence)`` or negative."""
    p_pos = 1.0 / (1.0 + math.exp(-2.0 * valence))
    words = []
    for _ in range(n):
        if rng.random() < SUBTITLE_FILLER:
            kind = "filler"
        elif rng.random() < SUBTITLE_NEUTRAL:
            kind = "neutral"
        else:
            kind = "positive" if rng.random() < p_pos else "negative"
        words.append(str(rng.choice(SUBTITLE_WORDS[kind])))
    text = " ".join(words)
    return text[0].upper() + text[1:] + str(rng.choice([".", ".", ".", "!", "?", "..."]))


def simulate_subtitles(latent_ps: pl.DataFrame, durations: dict[str, float], seed: int = 0) -> pl.DataFrame:
    """Subtitle cues of every video: ``video_id, cue, start_s, end_s, valence, text`` (seconds of
    the kept part; ``valence`` the mean latent valence over the cue, what its words follow).

    Cues follow each other over the whole video: the first starts 0.3-2 s in, each lasts
    1-6 s (uniform; a video's last cue ends before the video does), gaps of 0.2 s plus an
    exponential of mean 0.8 s (at most 3 s); a cue has about 2.5 words a second (1.8-3,
    2-16 words), drawn by :func:`_cue_words`. Times in whole milliseconds, as SRT writes them.
    """
    rng = np.random.default_rng([seed, 8])
    rows = []
    for vid, dur in durations.items():
        traj = latent_ps.filter(pl.col("video_id") == vid).sort("time_s")
        t, k = float(rng.uniform(0.3, 2.0)), 0
        while dur - t >= 1.0:
            end = min(t + float(rng.uniform(1.0, 6.0)), dur - 0.05)
            if end - t < 1.0:
                break
            start, end = round(t, 3), round(end, 3)
            valence = float(np.mean(_trajectory_at(traj, "valence", np.arange(start, end, 0.2))))
            n = int(np.clip(round((end - start) * rng.uniform(1.8, 3.0)), 2, 16))
            rows.append({"video_id": vid, "cue": k, "start_s": start, "end_s": end,
                         "valence": round(valence, 4), "text": _cue_words(rng, valence, n)})
            k += 1
            t = end + 0.2 + min(float(rng.exponential(0.8)), 2.8)
    return pl.DataFrame(rows, schema={"video_id": pl.String, "cue": pl.Int64, "start_s": pl.Float64,
                                      "end_s": pl.Float64, "valence": pl.Float64, "text": pl.String})


def _srt_time(t: float) -> str:
    ms = int(round(t * 1000))
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d},{ms % 1000:03d}"


def srt_text(cues: pl.DataFrame, offset_s: float = 0.0) -> str:
    """One video's cues (:func:`simulate_subtitles` rows) as SRT: numbered from 1,
    ``HH:MM:SS,mmm --> HH:MM:SS,mmm``, a text of more than :data:`SUBTITLE_LINE_CHARS`
    characters on two lines, blocks separated by a blank line; times shifted by ``offset_s``
    (clip seconds of a kept part that starts at ``offset_s``)."""
    blocks = []
    for n, (start, end, text) in enumerate(cues.sort("start_s").select("start_s", "end_s", "text").iter_rows(),
                                           start=1):
        words = text.split()
        if len(text) > SUBTITLE_LINE_CHARS and len(words) > 1:
            cut = min(range(1, len(words)), key=lambda i: abs(len(" ".join(words[:i])) - len(text) / 2))
            text = " ".join(words[:cut]) + "\n" + " ".join(words[cut:])
        blocks.append(f"{n}\n{_srt_time(start + offset_s)} --> {_srt_time(end + offset_s)}\n{text}\n")
    return "\n".join(blocks)


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
    ``danmaku_corpus``, ``viewer_valence``, ``subtitles`` (the cues, :func:`simulate_subtitles`), ``eev``.
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
        "subtitles": simulate_subtitles(latent_ps, durations, seed),
        "eev": simulate_eev(latent_ps, durations, seed),
    }
