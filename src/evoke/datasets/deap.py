"""DEAP (Koelstra et al. 2012), the metadata, as released.

Released files (DEAP readme; ``metadata_csv/`` of the download, or SOURCE
itself): ``participant_ratings.csv`` with ``Participant_id`` (1-32),
``Trial``, ``Experiment_id`` (1-40), ``Start_time``, ``Valence``,
``Arousal``, ``Dominance``, ``Liking`` ("float between 1 and 9") and
``Familiarity``; ``video_list.csv`` with, per music video, ``Online_id``,
``Experiment_id`` (empty for the 80 videos only rated online),
``Youtube_link``, ``Highlight_start`` (seconds: where the one-minute extract
shown in the experiment starts) and the online rating statistics.

Output:

* ``manifest.csv``: the experiment videos (``exp01`` .. ``exp40``) as their
  YouTube links, clipped to the 60-s highlight (``start_s`` =
  ``Highlight_start``, ``end_s`` = ``start_s + 60``); a seeded
  ``--test-fraction`` of them is ``test``, the rest ``train`` (the train stage
  validates on ``train.val_fraction`` of those);
* ``labels/viewer_valence.parquet`` in the schema of
  :mod:`evoke.labels.viewers`, built by its builder: each participant a viewer
  (``p01`` .. ``p32``), the average viewer their mean, for valence, arousal,
  dominance and liking, and every one binarised at 5 as DEAP's own
  benchmark does ("The ratings for each of these scales are thresholded into
  two classes (low and high). On the 9-point rating scales, the threshold was
  simply placed in the middle", Koelstra et al. 2012, Sec. 6.1; a rating of
  exactly 5 counts as high, the builder's ``>=``). One row per video at
  ``time_s`` = 59: the 60-s window ending at the clip's last second, which
  the viewer_valence task's units read, is the whole highlight the
  participants rated (the written config sets ``train.viewer_valence.units:
  second``: DEAP has no subtitle segments).

DEAP's licence forbids redistributing its files: the tests build their own
files in this format. Stops: a missing file or column. Dropped and counted:
``no_youtube_link`` / ``bad_highlight_start`` (an experiment video without a
link or a start), ``duplicate_experiment_id``, ``malformed_rating`` (a
participant or experiment id that is not a number), and, by the builder,
``unknown_video`` (a rating of a video not in the list), ``value_out_of_range``
(a rating outside [1, 9]) and ``duplicate_sample``.
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
    find_file,
    manifest_frame,
    register_importer,
)
from evoke.labels.common import Dropped, VideoIndex, read_table, require_columns, to_float
from evoke.labels.viewers import ContinuousConfig, continuous_labels

log = logging.getLogger(__name__)

CLIP_S = 60.0
DIMENSIONS = ("Valence", "Arousal", "Dominance", "Liking")
FOLDERS = ("", "metadata_csv", "Metadata/metadata_csv")


def experiment_video_id(exp: int) -> str:
    return f"exp{exp:02d}"


@register_importer
class DeapImporter(DatasetImporter):
    name = "deap"
    description = "DEAP: participant_ratings.csv and video_list.csv (YouTube links, 60-s highlights)"

    @classmethod
    def add_arguments(cls, p):
        p.add_argument("--test-fraction", type=float, default=0.25,
                       help="share of the experiment videos held out as test (seeded; default 0.25)")
        p.add_argument("--seed", type=int, default=0, help="seed of the split (default 0)")
        p.add_argument("--val-fraction", type=float, default=0.2,
                       help="train.val_fraction of the written config (default 0.2)")

    def read(self, source: Path, out: Path, test_fraction: float = 0.25, seed: int = 0,
             val_fraction: float = 0.2, dataset: str = "deap") -> ImportResult:
        if not 0 < test_fraction < 1:
            raise DatasetError(f"--test-fraction must be between 0 and 1, got {test_fraction}")
        dropped = Dropped()
        vl_path = find_file(source, "video_list.csv", "DEAP video list", FOLDERS)
        vl = read_table(vl_path, "DEAP video list")
        require_columns(vl, ["Experiment_id", "Youtube_link", "Highlight_start"], vl_path, "DEAP video list")
        videos: dict[int, dict] = {}
        for i, rec in enumerate(vl.iter_rows(named=True), start=2):
            exp = (rec["Experiment_id"] or "").strip()
            if not exp:
                continue  # a video of the online self-assessment only
            try:
                exp_id = int(float(exp))
            except ValueError:
                dropped.add("malformed_experiment_id", 1, [f"line {i}: {exp!r}"])
                continue
            link = (rec["Youtube_link"] or "").strip()
            if not link.startswith(("http://", "https://")):
                dropped.add("no_youtube_link", 1, [f"line {i}: experiment {exp_id}"])
                continue
            try:
                start = float(rec["Highlight_start"])
                if not np.isfinite(start) or start < 0:
                    raise ValueError
            except (TypeError, ValueError):
                dropped.add("bad_highlight_start", 1, [f"line {i}: {rec['Highlight_start']!r}"])
                continue
            if exp_id in videos:
                dropped.add("duplicate_experiment_id", 1, [f"line {i}: {exp_id}"])
                continue
            videos[exp_id] = {"video_id": experiment_video_id(exp_id), "source": link,
                              "start_s": start, "end_s": start + CLIP_S}
        if not videos:
            raise DatasetError(f"{vl_path}: no experiment video (a row with an Experiment_id and a link)")
        ids = sorted(videos)
        rng = np.random.default_rng(seed)
        n_test = min(len(ids) - 1, max(1, round(test_fraction * len(ids))))
        test = set(rng.choice(ids, size=n_test, replace=False).tolist()) if len(ids) > 1 else set()
        for e in ids:
            videos[e]["split"] = "test" if e in test else "train"

        pr_path = find_file(source, "participant_ratings.csv", "DEAP participant ratings", FOLDERS)
        pr = read_table(pr_path, "DEAP participant ratings")
        require_columns(pr, ["Participant_id", "Experiment_id", *DIMENSIONS], pr_path, "DEAP participant ratings")
        pid = pr["Participant_id"].cast(pl.Float64, strict=False)
        eid = pr["Experiment_id"].cast(pl.Float64, strict=False)
        ok = pid.is_not_null() & eid.is_not_null()
        if (~ok).sum():
            bad_lines = [i + 2 for i in np.flatnonzero(~ok.to_numpy())[:3]]
            dropped.add("malformed_rating", int((~ok).sum()), [f"line {i}" for i in bad_lines])
        ratings = pl.DataFrame({
            "row": np.arange(2, pr.height + 2, dtype=np.int64),
            "video_id": [experiment_video_id(int(e)) if e is not None else None for e in eid.to_list()],
            "viewer_id": [f"p{int(p):02d}" if p is not None else None for p in pid.to_list()],
            "time_s": np.full(pr.height, CLIP_S - 1.0),
        }).with_columns(*[to_float(pr[d]).alias(d.lower()) for d in DIMENSIONS]).filter(ok)
        rows = [videos[e] for e in ids]
        index = VideoIndex.from_ids([r["video_id"] for r in rows], {r["video_id"]: r["split"] for r in rows})
        result = continuous_labels(ratings, ContinuousConfig(value_range=(1.0, 9.0), binarise_at=5.0), index,
                                   dropped=dropped)
        table = result.table
        rated = set(table["video_id"].to_list())
        unrated = [r["video_id"] for r in rows if r["video_id"] not in rated]
        if unrated:
            dropped.add("video_without_ratings", len(unrated), unrated)
        manifest = manifest_frame([r for r in rows if r["video_id"] in rated])
        config = base_config(dataset, out, {"viewer_valence": out / "labels" / "viewer_valence.parquet"},
                             ["viewer_valence"], val_fraction=val_fraction, seed=seed,
                             viewer_valence={"units": "second"})  # the one row per clip above
        return ImportResult(manifest, {"viewer_valence": table}, config, dropped,
                            {"viewers": result.info["viewers"], "test_videos": sorted(
                                experiment_video_id(e) for e in test)})
