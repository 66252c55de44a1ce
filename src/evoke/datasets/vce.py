"""VCE (Video Cognitive Empathy, Mazeika et al. 2022) as released.

Released folder (hendrycks/emodiversity README)::

    vce_dataset/
      metadata.json        {"00000": {"codec_name", "duration", "file": "videos/00000.mp4", ...}, ...}
      train_labels.json    {"00000": {"emotions": {"Admiration": 0.44, ..., "Awe (or Wonder)": 0.22, ...},
      test_labels.json                "file": "videos/00000.mp4", "topK": ["Admiration", "Adoration", ...]}}
      videos/00000.mp4 ...

"emotions" holds, per the README, "the average rated 'intensity' score (rated
0-1) for each emotion" of the 27 categories, and "topK" "the 3
highest-intensity emotions, from most intense to least intense".

Output ``labels/vce.parquet`` in the schema of :mod:`evoke.labels.vce`:
``intensity_*`` are the released intensities unchanged (the released name
mapped to evoke's: "Awe (or Wonder)" -> ``awe``, "Empathic Pain" ->
``empathic_pain``); ``p_*`` the intensities normalised to sum 1,
``emodiversity`` and ``emodiversity_positive`` their perplexity
(:func:`evoke.labels.vce.perplexity`, as the builder computes them);
``top1..top3`` the released topK; ``n_annotators``, ``n_relies_on_audio`` and
``agreement`` are null (VCE released no responses). Splits: ``train`` and
``test`` as released; ``--val-fraction F`` sets ``train.val_fraction`` in the
written config (the train stage then validates on a seeded ``F`` of the
training videos, ``train.seed``).

Stops (one message naming the file): a missing labels file, an emotion name
that is not one of the 27, a file that is not this JSON shape. Dropped and
counted: ``malformed_entry`` (no ``emotions`` mapping, or a missing emotion),
``intensity_out_of_range`` (not a number in [0, 1]), ``duplicate_video`` (a
video in both label files: the first, train, is kept), ``video_file_missing``
(unless ``--no-video-check``), ``all_zero`` (no emotion has any intensity: no
distribution; ``--keep-all-zero`` keeps them with ``all_zero`` true and null
``p_*``, as the builder's ``all_zero="keep"``).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import polars as pl

from evoke.datasets.base import (
    DatasetError,
    DatasetImporter,
    ImportResult,
    base_config,
    keep_existing_videos,
    local_source,
    manifest_frame,
    read_json,
    register_importer,
)
from evoke.datasets.tables import VCE_SCHEMA
from evoke.labels.common import VCE_EMOTIONS, VCE_POSITIVE, Dropped, emotion_slug
from evoke.labels.vce import perplexity

log = logging.getLogger(__name__)

SPLIT_FILES = (("train", "train_labels.json"), ("test", "test_labels.json"))


def vce_emotion(name: str) -> str | None:
    """A released emotion name to evoke's (``"Awe (or Wonder)"`` -> ``awe``); None when not one of the 27."""
    slug = emotion_slug(re.sub(r"\(.*?\)", "", name))
    return slug if slug in VCE_EMOTIONS else None


def vce_table(ids: list[str], splits: list[str], intensity: np.ndarray, topk: list[list[str | None]],
              keep_all_zero: bool, dropped: Dropped) -> pl.DataFrame:
    """The label table from (N, 27) released intensities (taxonomy order) and the released topK."""
    total = intensity.sum(axis=1)
    all_zero = total <= 0
    with np.errstate(invalid="ignore", divide="ignore"):
        p = np.where(all_zero[:, None], np.nan, intensity / total[:, None])
    pos = [VCE_EMOTIONS.index(e) for e in VCE_POSITIVE]
    pp = p[:, pos]
    mass = pp.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        pp = np.where((mass > 0)[:, None], pp / mass[:, None], np.nan)
    nulls = lambda a: pl.Series(a, dtype=pl.Float64).fill_nan(None)  # noqa: E731
    n = len(ids)
    cols = {"video_id": pl.Series(ids, dtype=pl.String), "split": pl.Series(splits, dtype=pl.String),
            "n_annotators": pl.Series([None] * n, dtype=pl.Int32),
            "n_relies_on_audio": pl.Series([None] * n, dtype=pl.Int32)}
    for j, e in enumerate(VCE_EMOTIONS):
        cols[f"intensity_{e}"] = pl.Series(intensity[:, j], dtype=pl.Float64)
    for j, e in enumerate(VCE_EMOTIONS):
        cols[f"p_{e}"] = nulls(p[:, j])
    for k in range(3):
        cols[f"top{k + 1}"] = pl.Series([t[k] if k < len(t) else None for t in topk], dtype=pl.String)
    cols["emodiversity"] = nulls(perplexity(p))
    cols["emodiversity_positive"] = nulls(perplexity(pp))
    cols["agreement"] = pl.Series([None] * n, dtype=pl.Float64)
    cols["all_zero"] = pl.Series(all_zero, dtype=pl.Boolean)
    table = pl.DataFrame(cols).select(list(VCE_SCHEMA))
    if not keep_all_zero and all_zero.any():
        dropped.add("all_zero", int(all_zero.sum()), table.filter(pl.col("all_zero"))["video_id"].head(3))
        table = table.filter(~pl.col("all_zero"))
    return table.sort("video_id")


@register_importer
class VceImporter(DatasetImporter):
    name = "vce"
    description = "VCE: metadata.json, train/test_labels.json, videos/NNNNN.mp4 (27 emotion intensities)"

    @classmethod
    def add_arguments(cls, p):
        p.add_argument("--val-fraction", type=float, default=0.1,
                       help="train.val_fraction of the written config: a seeded share of train validates "
                            "(default 0.1)")
        p.add_argument("--keep-all-zero", action="store_true", help="keep videos with no intensity at all")
        p.add_argument("--no-video-check", dest="check_videos", action="store_false",
                       help="do not check that the video files are there (a folder of labels only)")

    def read(self, source: Path, out: Path, val_fraction: float = 0.1, keep_all_zero: bool = False,
             check_videos: bool = True, dataset: str = "vce") -> ImportResult:
        if not 0 < val_fraction < 1:
            raise DatasetError(f"--val-fraction must be between 0 and 1, got {val_fraction}")
        dropped = Dropped()
        metadata_path = source / "metadata.json"
        metadata = read_json(metadata_path, "VCE metadata") if metadata_path.is_file() else {}
        if not metadata:
            log.info("%s: no metadata.json; video files are taken from the labels' 'file' or videos/{id}.mp4",
                     source)
        seen: set[str] = set()
        rows, intensities, topk = [], [], []
        names: dict[str, str] = {}  # released name -> evoke name, checked once per name
        columns: dict[tuple, np.ndarray] = {}  # an entry's key order -> taxonomy index of each value
        k = len(VCE_EMOTIONS)
        for split, fname in SPLIT_FILES:
            path = source / fname
            labels = read_json(path, f"VCE {split} labels")
            if not isinstance(labels, dict):
                raise DatasetError(f"{path}: expected an object of video ids, got {type(labels).__name__}")

            def slug_of(name, vid, where=""):
                slug = names.get(name) if isinstance(name, str) else None
                if slug is None:
                    slug = vce_emotion(name) if isinstance(name, str) else None
                    if slug is None:
                        raise DatasetError(f"{path}: video {vid}: unknown emotion name {name!r}{where} (VCE's 27 "
                                           f"are e.g. 'Admiration', 'Awe (or Wonder)', 'Empathic Pain')")
                    names[name] = slug
                return slug

            for vid, entry in labels.items():
                emotions = entry.get("emotions") if isinstance(entry, dict) else None
                if not isinstance(emotions, dict):
                    dropped.add("malformed_entry", 1, [f"{fname}: {vid}"])
                    continue
                keys = tuple(emotions)
                where = columns.get(keys)
                if where is None:  # a key order not seen yet (the release uses one throughout)
                    where = np.array([VCE_EMOTIONS.index(slug_of(n, vid)) for n in keys], dtype=np.int64)
                    columns[keys] = where
                if len(set(where.tolist())) < k:
                    missing = sorted(set(VCE_EMOTIONS) - {VCE_EMOTIONS[i] for i in where})
                    dropped.add("malformed_entry", 1, [f"{fname}: {vid} lacks {missing[0]}"])
                    continue
                values = list(emotions.values())
                if any(type(v) not in (float, int) for v in values):  # null, text, true/false
                    dropped.add("intensity_out_of_range", 1, [f"{fname}: {vid}"])
                    continue
                vec = np.empty(k)
                vec[where] = values
                if not (np.isfinite(vec).all() and vec.min() >= 0 and vec.max() <= 1):
                    dropped.add("intensity_out_of_range", 1, [f"{fname}: {vid}"])
                    continue
                if vid in seen:
                    dropped.add("duplicate_video", 1, [f"{fname}: {vid}"])
                    continue
                tk = [slug_of(t, vid, " in topK") for t in (entry.get("topK") or [])[:3]]
                rel = entry.get("file") or (metadata.get(vid) or {}).get("file") or f"videos/{vid}.mp4"
                seen.add(vid)
                rows.append({"video_id": vid, "source": local_source(source, rel), "split": split})
                intensities.append(vec)
                topk.append(tk)
        kept = keep_existing_videos(rows, dropped, check_videos)
        keep = {r["video_id"] for r in kept}
        idx = [i for i, r in enumerate(rows) if r["video_id"] in keep]
        table = vce_table([rows[i]["video_id"] for i in idx], [rows[i]["split"] for i in idx],
                          np.array([intensities[i] for i in idx]).reshape(len(idx), len(VCE_EMOTIONS)),
                          [topk[i] for i in idx], keep_all_zero, dropped)
        labelled = set(table["video_id"].to_list())
        manifest = manifest_frame([r for r in kept if r["video_id"] in labelled])
        config = base_config(dataset, out, {"vce": out / "labels" / "vce.parquet"}, ["vce"],
                             val_fraction=val_fraction)
        return ImportResult(manifest, {"vce": table}, config, dropped,
                            {"emotion_names": dict(sorted(names.items()))})
