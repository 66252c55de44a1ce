"""V2V (Video to Valence, Mazeika et al. 2022) as released.

Released folder (hendrycks/emodiversity README)::

    v2v_dataset/
      metadata.json          as VCE's
      train_labels.json      {"comparisons": [["52694", "15036"], ...]}   "the second video is more preferred"
      test_labels.json
      listwise_labels.json   {"comparisons": [["50986", "05956", "42507"], ...]}
                             "ordered from least-preferred to most-preferred"
      videos/NNNNN.mp4

Output, in the schemas of :mod:`evoke.labels.v2v`:

* ``labels/v2v_pairs.parquet``: one row per released comparison,
  ``less_pleasant`` (the first video), ``more_pleasant`` (the second),
  ``split`` (``train`` / ``test``); ``n_votes``, ``n_agree``, ``n_skip``,
  ``n_strong``, ``agreement`` are null (V2V released only the kept pairs, not
  the votes);
* ``labels/v2v_lists.parquet``: the listwise comparisons, ``n``,
  ``videos`` (least to most pleasant), ``min_agreement`` null, ``split`` =
  ``test``: V2V scores listwise accuracy on them, and their videos are in no
  pairwise split, so the v2v task scores them with the test split.

Manifest splits: a video of a train pair is ``train``, of a test pair
``test``, of a list ``test``. Stops: a missing labels file, a file without a
``comparisons`` list. Dropped and counted: ``malformed_comparison`` (not a
list of two (pairs) or of two or more (lists) video-id strings),
``self_pair`` / ``repeated_video``, ``duplicate_pair`` (the same pair again in
the same order), ``contradicting_pair`` (the pair also released in the
opposite order: both left out), ``video_in_two_splits`` (a comparison whose
video already belongs to another split: the README says they are mutually
exclusive), ``video_file_missing`` (every comparison with a missing video).
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
    keep_existing_videos,
    local_source,
    manifest_frame,
    read_json,
    register_importer,
)
from evoke.labels.common import Dropped
from evoke.labels.v2v import LIST_SCHEMA, PAIR_SCHEMA

log = logging.getLogger(__name__)


def _comparisons(path: Path, what: str) -> list:
    data = read_json(path, what)
    comps = data.get("comparisons") if isinstance(data, dict) else None
    if not isinstance(comps, list):
        raise DatasetError(f"{path}: {what} must be an object with a 'comparisons' list")
    return comps


def _ids(item, min_len: int, max_len: int | None) -> list[str] | None:
    if not isinstance(item, list) or not min_len <= len(item) <= (max_len or len(item)):
        return None
    if not all(isinstance(v, str) and v for v in item):
        return None
    return item


@register_importer
class V2vImporter(DatasetImporter):
    name = "v2v"
    description = "V2V: train/test_labels.json (pairs) and listwise_labels.json, videos/NNNNN.mp4"

    @classmethod
    def add_arguments(cls, p):
        p.add_argument("--val-fraction", type=float, default=0.1,
                       help="train.val_fraction of the written config: a seeded share of the training pairs "
                            "validates (default 0.1)")
        p.add_argument("--no-video-check", dest="check_videos", action="store_false",
                       help="do not check that the video files are there")

    def read(self, source: Path, out: Path, val_fraction: float = 0.1, check_videos: bool = True,
             dataset: str = "v2v") -> ImportResult:
        dropped = Dropped()
        metadata_path = source / "metadata.json"
        metadata = read_json(metadata_path, "V2V metadata") if metadata_path.is_file() else {}
        split_of: dict[str, str] = {}

        def claim(ids: list[str], split: str, where: str) -> bool:
            other = next((split_of[v] for v in ids if split_of.get(v, split) != split), None)
            if other is not None:
                dropped.add("video_in_two_splits", 1, [f"{where}: {ids} ({other} and {split})"])
                return False
            return True

        pairs = []
        for split, fname in (("train", "train_labels.json"), ("test", "test_labels.json")):
            path = source / fname
            seen: dict[tuple[str, str], int] = {}
            kept = []
            for i, item in enumerate(_comparisons(path, f"V2V {split} labels")):
                ids = _ids(item, 2, 2)
                where = f"{fname} comparison {i}"
                if ids is None:
                    dropped.add("malformed_comparison", 1, [f"{where}: {item!r}"[:80]])
                    continue
                a, b = ids
                if a == b:
                    dropped.add("self_pair", 1, [where])
                    continue
                if (a, b) in seen:
                    dropped.add("duplicate_pair", 1, [where])
                    continue
                if not claim(ids, split, where):
                    continue
                seen[(a, b)] = len(kept)
                kept.append((a, b))
            contra = {p for p in kept if (p[1], p[0]) in seen}
            if contra:
                dropped.add("contradicting_pair", len(contra), [f"{fname}: {a} / {b}" for a, b in sorted(contra)])
            for a, b in kept:
                if (a, b) not in contra:
                    split_of.setdefault(a, split)
                    split_of.setdefault(b, split)
                    pairs.append((a, b, split))
        lists = []
        path = source / "listwise_labels.json"
        for i, item in enumerate(_comparisons(path, "V2V listwise labels")):
            ids = _ids(item, 2, None)
            where = f"listwise_labels.json comparison {i}"
            if ids is None:
                dropped.add("malformed_comparison", 1, [f"{where}: {item!r}"[:80]])
                continue
            if len(set(ids)) < len(ids):
                dropped.add("repeated_video", 1, [where])
                continue
            if not claim(ids, "test", where):
                continue
            for v in ids:
                split_of.setdefault(v, "test")
            lists.append(ids)

        def video_path(v: str) -> str:
            rel = (metadata.get(v) or {}).get("file") or f"videos/{v}.mp4"
            return local_source(source, rel)

        rows = [{"video_id": v, "source": video_path(v), "split": s} for v, s in sorted(split_of.items())]
        present = {r["video_id"] for r in keep_existing_videos(rows, dropped, check_videos)}
        gone = [p for p in pairs if not (p[0] in present and p[1] in present)]
        gone_lists = [ids for ids in lists if not all(v in present for v in ids)]
        if gone or gone_lists:
            dropped.add("comparison_with_missing_video", len(gone) + len(gone_lists),
                        [f"{a} < {b}" for a, b, _ in gone[:3]])
        pairs = [p for p in pairs if p not in gone]
        lists = [ids for ids in lists if all(v in present for v in ids)]
        n = len(pairs)
        pairs_table = pl.DataFrame({
            "less_pleasant": [a for a, _, _ in pairs], "more_pleasant": [b for _, b, _ in pairs],
            "n_votes": [None] * n, "n_agree": [None] * n, "n_skip": [None] * n, "n_strong": [None] * n,
            "agreement": [None] * n, "split": [s for _, _, s in pairs]}, schema=PAIR_SCHEMA)
        lists_table = pl.DataFrame({
            "list_id": list(range(len(lists))), "n": [len(x) for x in lists], "videos": lists,
            "min_agreement": [None] * len(lists), "split": ["test"] * len(lists)}, schema=LIST_SCHEMA)
        used = {v for a, b, _ in pairs for v in (a, b)} | {v for x in lists for v in x}
        manifest = manifest_frame([r for r in rows if r["video_id"] in used])
        tables = {"v2v_pairs": pairs_table, "v2v_lists": lists_table}
        config = base_config(dataset, out, {k: out / "labels" / f"{k}.parquet" for k in tables}, ["v2v"],
                             val_fraction=val_fraction)
        return ImportResult(manifest, tables, config, dropped)
