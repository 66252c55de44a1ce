"""Writers of small datasets in their released formats (the layouts the importers' docstrings quote).

Every file here is made by these functions from seeded random numbers: no
released file is copied (DEAP's licence forbids redistribution; the others are
too large). ``videos`` maps a video id to a real media file made by the tests'
conftest (linked into place) or to None (no file: the importer must notice).
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np

# the 27 names exactly as VCE's labels files spell them (hendrycks/emodiversity README)
VCE_RELEASED_NAMES = (
    "Admiration", "Adoration", "Aesthetic Appreciation", "Amusement", "Anger", "Anxiety", "Awe (or Wonder)",
    "Awkwardness", "Boredom", "Calmness", "Confusion", "Craving", "Disgust", "Empathic Pain", "Entrancement",
    "Excitement", "Fear", "Horror", "Interest", "Joy", "Nostalgia", "Relief", "Romance", "Sadness",
    "Satisfaction", "Sexual Desire", "Surprise",
)
EEV_HEADER = ("Video ID", "Timestamp (microseconds)", "amusement", "anger", "awe", "concentration", "confusion",
              "contempt", "contentment", "disappointment", "doubt", "elation", "interest", "pain", "sadness",
              "surprise", "triumph")


def place(video: Path | None, dest: Path) -> None:
    if video is None:
        return
    dest.parent.mkdir(parents=True, exist_ok=True)
    if not dest.exists():
        os.link(video, dest)


def vce_entry(rng: np.random.Generator, vid: str) -> dict:
    raw = rng.random(27) * (rng.random(27) < 0.4)
    raw[rng.integers(27)] = 0.3 + 0.7 * rng.random()
    emotions = {n: float(v) for n, v in zip(VCE_RELEASED_NAMES, raw)}
    top = [VCE_RELEASED_NAMES[i] for i in np.argsort(-raw, kind="stable")[:3]]
    return {"emotions": emotions, "file": f"videos/{vid}.mp4", "topK": top}


def write_vce(root: Path, train: dict[str, Path | None], test: dict[str, Path | None], seed: int = 0,
              with_videos: bool = True) -> dict:
    """A VCE release: metadata.json, train/test_labels.json and videos/{id}.mp4; returns the labels."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    labels = {}
    for split, videos in (("train", train), ("test", test)):
        entries = {vid: vce_entry(rng, vid) for vid in videos}
        (root / f"{split}_labels.json").write_text(json.dumps(entries, indent=4))
        labels[split] = entries
        for vid, video in videos.items():
            if with_videos:
                place(video, root / "videos" / f"{vid}.mp4")
    meta = {vid: {"codec_name": "h264", "duration": "6.000000", "file": f"videos/{vid}.mp4",
                  "frame_rate": "25/1", "height": 240, "number_of_frames": "150", "width": 320}
            for split in labels for vid in labels[split]}
    (root / "metadata.json").write_text(json.dumps(meta, indent=4))
    return labels


def write_v2v(root: Path, train_pairs: list, test_pairs: list, lists: list, videos: dict[str, Path | None]) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "train_labels.json").write_text(json.dumps({"comparisons": train_pairs}, indent=4))
    (root / "test_labels.json").write_text(json.dumps({"comparisons": test_pairs}, indent=4))
    (root / "listwise_labels.json").write_text(json.dumps({"comparisons": lists}, indent=4))
    (root / "metadata.json").write_text(json.dumps({v: {"file": f"videos/{v}.mp4"} for v in videos}))
    for vid, video in videos.items():
        place(video, root / "videos" / f"{vid}.mp4")


def write_eev(root: Path, splits: dict[str, dict[str, float]], seed: int = 0, test_ids=(),
              active: float | None = None) -> None:
    """train.csv / val.csv with 6 Hz scores for videos of the given durations (s); test.csv without scores.

    Scores are independent draws (mostly low) or, with ``active``, expressions that are on (around
    0.8) or off (around 0.05) for a whole second each, every expression on with probability
    ``active``: then the 1-Hz majority labels have positives and vary within a video."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for split, videos in splits.items():
        with open(root / f"{split}.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(EEV_HEADER)
            for vid, dur in videos.items():
                on = None if active is None else rng.random((int(dur) + 1, 15)) < active
                for i in range(int(dur * 6)):
                    if on is None:
                        scores = rng.random(15) ** 3
                    else:
                        scores = np.where(on[i // 6], 0.7 + 0.2 * rng.random(15), 0.1 * rng.random(15))
                    w.writerow([vid, round(i * 1e6 / 6), *[f"{s:.4f}" for s in scores]])
    with open(root / "test.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(EEV_HEADER)
        for vid in test_ids:
            for i in range(12):
                w.writerow([vid, round(i * 1e6 / 6)] + [""] * 15)


def write_liris_accede(root: Path, excerpts: dict[str, tuple[int, Path | None]], seed: int = 0,
                       movies: dict[str, str] | None = None) -> dict:
    """ACCEDEranking.txt and ACCEDEsets.txt under annotations/, excerpts in data/; returns the values."""
    rng = np.random.default_rng(seed)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    names = sorted(excerpts)
    n = len(names)
    val = 1.3 + 2.3 * rng.random(n)
    aro = 1.3 + 3.2 * rng.random(n)
    vrank = np.argsort(np.argsort(val))
    arank = np.argsort(np.argsort(aro))
    lines = ["id\tname\tvalenceRank\tarousalRank\tvalenceValue\tarousalValue\tvalenceVariance\tarousalVariance"]
    sets = ["id\tname\tset"]
    for i, name in enumerate(names):
        lines.append(f"{i}\t{name}.mp4\t{vrank[i]}\t{arank[i]}\t{val[i]:.6f}\t{aro[i]:.6f}\t"
                     f"{0.1 + 0.1 * rng.random():.6f}\t{0.1 + 0.1 * rng.random():.6f}")
        sets.append(f"{i}\t{name}.mp4\t{excerpts[name][0]}")
        place(excerpts[name][1], root / "data" / f"{name}.mp4")
    (root / "annotations" / "ACCEDEranking.txt").write_text("\n".join(lines) + "\n")
    (root / "annotations" / "ACCEDEsets.txt").write_text("\n".join(sets) + "\n")
    if movies:
        (root / "data").mkdir(exist_ok=True)
        media = "".join(f"<media><id>{i}</id><name>{name}.mp4</name><movie>{movies[name]}</movie>"
                        f"<start>0</start><end>250</end></media>" for i, name in enumerate(names))
        (root / "data" / "ACCEDEdescription.xml").write_text(f"<?xml version='1.0'?><ACCEDE>{media}</ACCEDE>")
    return {name: (val[i], aro[i], vrank[i], arank[i]) for i, name in enumerate(names)}


def write_deap(root: Path, experiments: dict[int, tuple[str, float]], participants: int, seed: int = 0,
               online_only: int = 2) -> np.ndarray:
    """video_list.csv (experiment id -> YouTube link, highlight start) and participant_ratings.csv;
    returns the ratings array (participant, experiment, valence, arousal, dominance, liking)."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "video_list.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["Online_id", "Experiment_id", "Lastfm_tag", "Artist", "Title", "Youtube_link",
                    "Highlight_start", "Num_ratings", "VAQ_Valence", "VAQ_Arousal"])
        online = 1
        for exp, (link, start) in sorted(experiments.items()):
            w.writerow([online, exp, "happy", f"Artist {exp}", f"Song {exp}", link, start, 15, 1, 1])
            online += 1
        for _ in range(online_only):  # rated online only: no Experiment_id
            w.writerow([online, "", "sad", "Other", "Other song", "http://www.youtube.com/watch?v=xxxxxxxxxxx",
                        30, 14, 0, 0])
            online += 1
    rows = []
    with open(root / "participant_ratings.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["Participant_id", "Trial", "Experiment_id", "Start_time", "Valence", "Arousal", "Dominance",
                    "Liking", "Familiarity"])
        for p in range(1, participants + 1):
            for trial, exp in enumerate(rng.permutation(sorted(experiments)), start=1):
                r = np.round(1 + 8 * rng.random(4), 2)
                rows.append([p, exp, *r])
                w.writerow([p, trial, exp, 1000000 * trial, *r, int(rng.integers(1, 6))])
    return np.array(rows, dtype=np.float64)


def write_cognimuse(root: Path, films: dict[str, tuple[Path | None, float]], annotators=("intended_1",
                    "experienced_1", "experienced_2"), seed: int = 0) -> None:
    """{FILM}/emotion/{annotator}.dat at 25 Hz (time valence arousal in [-1, 1]) and {FILM}/video.mp4."""
    rng = np.random.default_rng(seed)
    for film, (video, dur) in films.items():
        (root / film / "emotion").mkdir(parents=True, exist_ok=True)
        t = np.arange(0, dur, 0.04)
        for a in annotators:
            v = np.clip(np.cumsum(rng.normal(0, 0.05, t.size)), -1, 1)
            ar = np.clip(np.cumsum(rng.normal(0, 0.05, t.size)), -1, 1)
            (root / film / "emotion" / f"{a}.dat").write_text(
                "".join(f"{x:g} {y:.3f} {z:.3f}\n" for x, y, z in zip(t, v, ar)))
        place(video, root / film / "video.mp4")
