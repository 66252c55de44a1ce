"""What every importer shares: the registry, the output folder and the input checks.

An importer (one module per released dataset, lhotse style like the feature
extractors) turns the folder a user downloaded into an evoke dataset folder:

* ``DIR/manifest.csv``: ``video_id, source, split`` (and ``start_s, end_s``
  where the dataset clips its videos); local sources as absolute paths,
  YouTube-hosted datasets as their YouTube URLs;
* ``DIR/labels/{table}.parquet``: label tables in exactly the schemas the
  labels stage writes (checked against :mod:`evoke.datasets.tables`), so the
  train stage reads them unchanged;
* ``DIR/config.yaml``: a config that runs the dataset's tasks on them
  (``snakemake --cores N --configfile DIR/config.yaml``; the tables reach the
  workflow through ``labels.tables``);
* ``DIR/import.json``: what was read, written and dropped (counts by reason).

Bad input: a missing annotation file, an unknown emotion name or a file that is
not in the released format stops the import with one :class:`DatasetError`
naming the file; a record that cannot be used (a video file that is not there,
a rating out of range, a malformed entry) is dropped and counted by reason
(``--strict`` turns any drop into an error).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import polars as pl
import yaml

from evoke import EvokeError, __version__
from evoke.labels.common import Dropped, LabelError
from evoke.store import atomic_path, write_parquet

log = logging.getLogger(__name__)

MANIFEST_SCHEMA = {"video_id": pl.String, "source": pl.String, "split": pl.String,
                   "start_s": pl.Float64, "end_s": pl.Float64}


class DatasetError(EvokeError):
    """A released dataset cannot be imported: the message names the file and what is wrong."""


@dataclass
class ImportResult:
    """What an importer produced (before it is written)."""

    manifest: pl.DataFrame
    tables: dict[str, pl.DataFrame]
    config: dict
    dropped: Dropped = field(default_factory=Dropped)
    info: dict = field(default_factory=dict)


class DatasetImporter:
    """Base of the importers: ``name`` (the FORMAT of ``evoke import``), ``description``,
    :meth:`add_arguments` (its options) and :meth:`read` (SOURCE folder -> :class:`ImportResult`)."""

    name: ClassVar[str]
    description: ClassVar[str] = ""

    @classmethod
    def add_arguments(cls, parser) -> None:  # pragma: no cover - interface
        pass

    def read(self, source: Path, **options) -> ImportResult:  # pragma: no cover - interface
        raise NotImplementedError


IMPORTERS: dict[str, type[DatasetImporter]] = {}


def register_importer(cls: type[DatasetImporter]) -> type[DatasetImporter]:
    if not getattr(cls, "name", None):
        raise TypeError(f"importer {cls.__name__} has no name")
    if cls.name in IMPORTERS and IMPORTERS[cls.name] is not cls:
        raise TypeError(f"importer name {cls.name!r} registered twice")
    IMPORTERS[cls.name] = cls
    return cls


def get_importer(name: str) -> type[DatasetImporter]:
    try:
        return IMPORTERS[name]
    except KeyError:
        raise DatasetError(f"no importer {name!r}; known: {', '.join(sorted(IMPORTERS))}") from None


# --------------------------------------------------------------------------- reading


def require_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise DatasetError(f"{path}: {what} not found")
    return path


def find_file(source: Path, name: str, what: str, folders: tuple[str, ...] = ("",)) -> Path:
    """``name`` in the first of ``source/{folder}`` that has it; else one error listing where it looked."""
    tried = [source / f / name if f else source / name for f in folders]
    for p in tried:
        if p.is_file():
            return p
    raise DatasetError(f"{tried[0]}: {what} not found (also looked at: "
                       f"{', '.join(str(p) for p in tried[1:]) or 'nowhere else'})")


def read_json(path: Path, what: str):
    require_file(path, what)
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}: {what} is not valid JSON: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: {what} is not UTF-8 text: {exc.reason} at byte {exc.start}") from exc


def keep_existing_videos(rows: list[dict], dropped: Dropped, check: bool = True) -> list[dict]:
    """Rows whose ``source`` (a local path) is a file; the others dropped as ``video_file_missing``
    with the missing files named. ``check=False`` keeps every row (a folder without its videos)."""
    if not check:
        return rows
    kept, missing = [], []
    for r in rows:
        (kept if os.path.isfile(r["source"]) else missing).append(r)
    if missing:
        dropped.add("video_file_missing", len(missing), (r["source"] for r in missing))
        log.warning("%d video file(s) not there, their videos are left out: %s%s", len(missing),
                    ", ".join(r["source"] for r in missing[:5]), " ..." if len(missing) > 5 else "")
    return kept


def manifest_frame(rows: list[dict]) -> pl.DataFrame:
    """Manifest rows (``video_id, source, split`` and optional ``start_s, end_s``) as a table."""
    return pl.DataFrame([{k: r.get(k) for k in MANIFEST_SCHEMA} for r in rows], schema=MANIFEST_SCHEMA,
                        orient="row")


def youtube_url(video_id: str) -> str:
    return f"https://www.youtube.com/watch?v={video_id}"


# --------------------------------------------------------------------------- writing


def base_config(name: str, out: Path, tables: dict[str, Path], tasks: list[str], **train) -> dict:
    """The config an importer writes: this dataset, its manifest and tables, its tasks.

    It is merged over the repository's ``config.yaml`` by ``--configfile``, so
    every key that must not come from there is set (``labels.annotations: null``:
    no raw annotations, only the tables).
    """
    return {
        "dataset": name,
        "manifest": str((out / "manifest.csv").resolve()),
        "shard_size": 200,
        "features": {"extractors": ["colour", "motion", "logmel", "efficientnet"]},
        "labels": {"annotations": None, "tables": {k: str(Path(v).resolve()) for k, v in tables.items()}},
        "train": {"tasks": tasks, "heads": ["lightgbm", "linear", "full"],
                  "feature_sets": [["colour", "motion"], ["efficientnet", "logmel"]], **train},
    }


def check_manifest(manifest: pl.DataFrame, source: Path) -> None:
    """The ingest stage's rules for ids (:func:`evoke.manifest.check_video_id`), unique ids and
    clip bounds, checked before the manifest is written (a released id that is not a safe file
    name stops the import naming it)."""
    from evoke.manifest import check_video_id

    problems = [f"{v!r}: {why}" for v in manifest["video_id"] if (why := check_video_id(v or ""))]
    dup = manifest.filter(pl.col("video_id").is_duplicated())["video_id"].unique().to_list()
    problems += [f"{v!r}: the same video id twice" for v in dup]
    bad = manifest.filter(pl.col("end_s").is_not_null() & (pl.col("end_s") <= pl.col("start_s")))
    problems += [f"{v!r}: end_s before start_s" for v in bad["video_id"]]
    if problems:
        raise DatasetError(f"{source}: cannot make a manifest: {'; '.join(problems[:5])}"
                           + (f" and {len(problems) - 5} more" if len(problems) > 5 else ""))


def local_source(folder: Path, relative: str) -> str:
    """``folder/relative`` as an absolute, normalised path (``folder`` is resolved once by the
    caller: resolving each of 61,046 files would stat every path component of each)."""
    return os.path.normpath(os.path.join(folder, relative))


def write_result(result: ImportResult, out: Path, importer: str, source: Path, strict: bool = False) -> dict:
    """Check and write ``result`` into ``out`` (each file atomically); return the import record."""
    from evoke.datasets.tables import check_table

    if strict and result.dropped:
        raise DatasetError(f"{source}: {result.dropped.summary()} (--strict: no record may be dropped)")
    if result.manifest.height == 0:
        raise DatasetError(f"{source}: no video left to import ({result.dropped.summary()})")
    out.mkdir(parents=True, exist_ok=True)
    for name, table in result.tables.items():
        check_table(name, table, f"{importer} importer's {name} table")
        write_parquet(table, out / "labels" / f"{name}.parquet")
    check_manifest(result.manifest, source)
    with atomic_path(out / "manifest.csv") as tmp:
        result.manifest.write_csv(tmp)
    with atomic_path(out / "config.yaml") as tmp:
        tmp.write_text(f"# written by evoke import {importer} {source} (evoke {__version__})\n"
                       "# run: snakemake --cores 4 --configfile " + str(out / "config.yaml") + "\n"
                       + yaml.safe_dump(result.config, sort_keys=False))
    record = {
        "importer": importer, "source": str(source), "evoke_version": __version__,
        "videos": result.manifest.height,
        "splits": dict(sorted(result.manifest.group_by("split").len().iter_rows())),
        "tables": {k: v.height for k, v in result.tables.items()},
        "dropped": result.dropped.to_dict(), **result.info,
    }
    with atomic_path(out / "import.json") as tmp:
        tmp.write_text(json.dumps(record, indent=2, sort_keys=True, default=str))
    log.info("%s: %d videos, tables %s; dropped: %s", out, record["videos"], record["tables"],
             result.dropped.summary())
    return record


def run_import(name: str, source: str | Path, out: str | Path, strict: bool = False, **options) -> dict:
    """Import the released dataset ``name`` from ``source`` into ``out``; returns the import record."""
    source, out = Path(source).resolve(), Path(out).resolve()
    if not source.is_dir():
        raise DatasetError(f"{source}: not a folder (the dataset as downloaded)")
    importer = get_importer(name)()
    try:
        result = importer.read(source, out=out, **options)
    except LabelError as exc:  # the label builders' readers, reused here: the same one-line message
        raise DatasetError(str(exc)) from exc
    return write_result(result, out, name, source, strict)
