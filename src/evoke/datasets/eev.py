"""EEV (Evoked Expressions from Videos, Sun et al. 2021) as released.

Released files (google-research-datasets/eev README): ``train.csv``,
``val.csv`` and ``test.csv``, "Each line indicates a specific video
represented by its video ID, a timestamp in microseconds, and a set of
expression scores", sampled at 6 Hz; the header names the columns (``Video
ID``, ``Timestamp (microseconds)`` and the 15 expressions, read by
:func:`evoke.labels.eev.read_eev`). The test split's scores are not released
("still includes the video IDs and frame timestamps"). The video IDs are
YouTube ids.

Output: ``manifest.csv`` of YouTube URLs (``https://www.youtube.com/watch?v=ID``)
and ``labels/eev.parquet`` built by the EEV builder (:func:`evoke.labels.eev.eev_1hz`:
1 Hz, 3-s window, majority at 0.5; drops counted there: all-zero rows are
"locations where a detection didn't occur and may be ignored").

Splits (``--splits``): ``scored`` (default): the released val split becomes
evoke's ``test`` split, the one the report scores, and the written config
validates on a seeded ``train.val_fraction`` of the training videos; the
released test videos (no scores) are in the manifest with split ``heldout``
only with ``--include-test`` (for predicting them). ``released`` keeps the
names ``train``/``val``/``test`` (the test split then has no labels to score).
A video in two released files is dropped (``video_in_two_splits``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import polars as pl

from evoke.datasets.base import (
    DatasetError,
    DatasetImporter,
    ImportResult,
    base_config,
    manifest_frame,
    register_importer,
    require_file,
    youtube_url,
)
from evoke.labels.common import Dropped, VideoIndex, read_table
from evoke.labels.eev import EevConfig, eev_1hz, read_eev

log = logging.getLogger(__name__)


@register_importer
class EevImporter(DatasetImporter):
    name = "eev"
    description = "EEV: train.csv, val.csv (and test.csv) with YouTube ids and 6 Hz expression scores"

    @classmethod
    def add_arguments(cls, p):
        p.add_argument("--splits", choices=["scored", "released"], default="scored",
                       help="scored: the released val split is scored as test (default); released: keep names")
        p.add_argument("--include-test", action="store_true",
                       help="put the released test videos (no scores) in the manifest, split heldout")
        p.add_argument("--val-fraction", type=float, default=0.1,
                       help="train.val_fraction of the written config (with --splits scored; default 0.1)")

    def read(self, source: Path, out: Path, splits: str = "scored", include_test: bool = False,
             val_fraction: float = 0.1, dataset: str = "eev") -> ImportResult:
        dropped = Dropped()
        rename = {"train": "train", "val": "test" if splits == "scored" else "val",
                  "test": "heldout" if splits == "scored" else "test"}
        frames, split_of, first_file = [], {}, {}
        for released in ("train", "val"):
            path = require_file(source / f"{released}.csv", f"EEV {released} split")
            df = read_eev(path)
            for vid in df["video_id"].drop_nulls().unique(maintain_order=True).to_list():
                if vid in split_of and split_of[vid] != rename[released]:
                    dropped.add("video_in_two_splits", 1, [f"{vid} ({first_file[vid]}, {path.name})"])
                    continue
                split_of.setdefault(vid, rename[released])
                first_file.setdefault(vid, path.name)
            frames.append(df.with_columns(pl.lit(path.name).alias("_file")))
        ratings = pl.concat(frames, how="vertical_relaxed")
        # a video claimed by two files keeps only its first file's rows
        owner = pl.DataFrame({"video_id": list(first_file), "_file": list(first_file.values())},
                             schema={"video_id": pl.String, "_file": pl.String})
        n_before = ratings.height
        ratings = ratings.join(owner, on=["video_id", "_file"], how="semi").drop("_file")
        if ratings.height < n_before:
            dropped.add("row_of_video_in_two_splits", n_before - ratings.height)
        # the row numbers of read_eev are per file; keep them unique for the builder's bookkeeping
        ratings = ratings.drop("row").with_row_index("row", offset=2).with_columns(pl.col("row").cast(pl.Int64))
        result = eev_1hz(ratings, EevConfig(), VideoIndex.from_ids(split_of, split_of))
        dropped.update(result.dropped)
        table = result.table
        labelled = set(table["video_id"].to_list())
        unlabelled = sorted(set(split_of) - labelled)
        if unlabelled:
            dropped.add("video_without_scores", len(unlabelled), unlabelled)
        rows = [{"video_id": v, "source": youtube_url(v), "split": split_of[v]}
                for v in sorted(labelled)]
        test_path = source / "test.csv"
        if include_test:
            raw = read_table(require_file(test_path, "EEV test split"), "EEV test split")
            col = next((c for c in raw.columns if c.lower().replace("_", " ") in ("video id", "videoid")), None)
            if col is None:
                raise DatasetError(f"{test_path}: EEV test split needs a 'Video ID' column")
            for vid in raw[col].drop_nulls().unique(maintain_order=True).to_list():
                if vid in split_of:
                    dropped.add("video_in_two_splits", 1, [f"{vid} (test.csv)"])
                    continue
                rows.append({"video_id": vid, "source": youtube_url(vid), "split": rename["test"]})
        config = base_config(dataset, out, {"eev": out / "labels" / "eev.parquet"}, ["eev"],
                             **({"val_fraction": val_fraction} if splits == "scored" else {}))
        return ImportResult(manifest_frame(rows), {"eev": table}, config, dropped,
                            {"builder": result.info, "splits_mode": splits})
