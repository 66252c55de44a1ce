"""COGNIMUSE (Zlatintsi et al. 2017), the continuous emotion annotations, as released.

The annotations (``COGNIMUSEdatabase``) hold per film (``BMI``, ``CHI``,
``CRA``, ``DEP``, ``FNE``, ``GLA``, ``LOR``: the last 30 minutes of each)
an ``emotion/`` folder of ``.dat`` files, one per annotator
(``intended_1.dat``, ``experienced_1.dat`` ...): whitespace-separated ``time_s
valence arousal`` at 25 Hz in [-1, 1] (read by
:func:`evoke.labels.viewers.read_dat`), and ``text/subtitle.srt``. The films
are not in the download: put each (the annotated 30-minute excerpt) at
``SOURCE/{FILM}/video.mp4`` (or ``.mkv``/``.avi``, or ``SOURCE/{FILM}.mp4``),
the layout of gcunhase/AnnotatedMV-PreProcessing::

    SOURCE/BMI/emotion/intended_1.dat
    SOURCE/BMI/text/subtitle.srt        (optional)
    SOURCE/BMI/video.mp4

Output: ``manifest.csv`` with the films as sources; ``labels/viewer_valence.parquet``
(and ``viewer_valence_segments.parquet`` per subtitle cue where subtitles
exist) built by the per-viewer builder (:mod:`evoke.labels.viewers`): every
``.dat`` file a viewer named by its stem, the average viewer their mean,
binarised at 0 (the valence classification benchmark). The written config
trains on the subtitle segments (``train.viewer_valence.units: segment``) where
subtitles exist, else on the seconds (``units: second``). Splits: whole films,
``--test-films BMI,CHI`` or a seeded ``--test-fraction`` of them (default
2 of 7).

Stops: no film folder with an ``emotion/*.dat`` file. Dropped and counted:
``video_file_missing`` (a film without its video: its annotations are left
out) and, by the builder, ``malformed_line``, ``value_out_of_range``,
``impossible_timestamp``, ``duplicate_sample``, ``malformed_subtitle``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import polars as pl

from evoke.datasets.base import (
    DatasetError,
    DatasetImporter,
    ImportResult,
    base_config,
    manifest_frame,
    register_importer,
)
from evoke.labels.common import Dropped, VideoIndex
from evoke.labels.viewers import ContinuousConfig, continuous_labels, read_dat, read_srt

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".mkv", ".avi", ".mov", ".m4v")


def film_video(source: Path, film: str) -> Path | None:
    for folder, stem in ((source / film, "video"), (source / film, film), (source, film)):
        for suffix in VIDEO_SUFFIXES:
            p = folder / f"{stem}{suffix}"
            if p.is_file():
                return p
    return None


@register_importer
class CognimuseImporter(DatasetImporter):
    name = "cognimuse"
    description = "COGNIMUSE: {FILM}/emotion/*.dat per annotator, {FILM}/video.mp4, {FILM}/text/subtitle.srt"

    @classmethod
    def add_arguments(cls, p):
        p.add_argument("--test-films", help="comma-separated films held out as test (default: a seeded share)")
        p.add_argument("--test-fraction", type=float, default=0.25,
                       help="share of the videos put in the test split (default 0.25)")
        p.add_argument("--seed", type=int, default=0, help="seed of the split (default 0)")
        p.add_argument("--val-fraction", type=float, default=0.2,
                       help="train.val_fraction of the written config (default 0.2)")

    def read(self, source: Path, out: Path, test_films: str | None = None, test_fraction: float = 0.25,
             seed: int = 0, val_fraction: float = 0.2, dataset: str = "cognimuse") -> ImportResult:
        dropped = Dropped()
        films = sorted(p.name for p in source.iterdir()
                       if p.is_dir() and any((p / "emotion").glob("*.dat")))
        if not films:
            raise DatasetError(f"{source}: no film folder with emotion/*.dat annotations "
                               "(expected e.g. BMI/emotion/intended_1.dat)")
        rows = []
        for film in films:
            video = film_video(source, film)
            if video is None:
                dropped.add("video_file_missing", 1, [str(source / film / "video.mp4")])
                log.warning("%s: no video file (video.mp4) for film %s, its annotations are left out",
                            source / film, film)
                continue
            rows.append({"video_id": film, "source": str(video.resolve())})
        if not rows:
            raise DatasetError(f"{source}: no film has its video file ({dropped.summary()})")
        names = [r["video_id"] for r in rows]
        if test_films:
            test = {f.strip() for f in test_films.split(",") if f.strip()}
            unknown = sorted(test - set(films))
            if unknown:
                raise DatasetError(f"--test-films: unknown film(s) {', '.join(unknown)}; "
                                   f"{source} has {', '.join(films)}")
        else:
            n = min(len(names) - 1, max(1, round(test_fraction * len(names)))) if len(names) > 1 else 0
            test = set(np.random.default_rng(seed).choice(names, size=n, replace=False).tolist()) if n else set()
        for r in rows:
            r["split"] = "test" if r["video_id"] in test else "train"
        cfg = ContinuousConfig()
        frames, subtitles = [], {}
        for r in rows:
            film = r["video_id"]
            for dat in sorted((source / film / "emotion").glob("*.dat")):
                frames.append(read_dat(dat, cfg.dat_columns, video_id=film, viewer_id=dat.stem, dropped=dropped)
                              .with_columns(pl.lit(str(dat)).alias("source")))
            srt = source / film / "text" / "subtitle.srt"
            if srt.is_file():
                subtitles[film] = read_srt(srt, dropped)
        ratings = pl.concat(frames, how="diagonal_relaxed")
        index = VideoIndex.from_ids(names, {r["video_id"]: r["split"] for r in rows})
        result = continuous_labels(ratings, cfg, index, subtitles or None, dropped=dropped)
        tables = {"viewer_valence": result.table}
        if "segments" in result.extra:
            tables["viewer_valence_segments"] = result.extra["segments"]
        # the task's default units are subtitle segments: without subtitles it reads the seconds
        units = "segment" if "viewer_valence_segments" in tables else "second"
        config = base_config(dataset, out, {k: out / "labels" / f"{k}.parquet" for k in tables},
                             ["viewer_valence"], val_fraction=val_fraction, seed=seed,
                             viewer_valence={"units": units})
        return ImportResult(manifest_frame(rows), tables, config, dropped,
                            {"viewers": result.info["viewers"], "test_films": sorted(test)})
