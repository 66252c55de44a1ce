"""The video manifest: which videos a dataset has, where they come from, and their shards.

A manifest is a CSV or Parquet table with the columns ``video_id, source, split``
and optionally ``start_s, end_s`` (clip the video to this interval, seconds) and
``danmaku`` (path of a comment file for the video). ``source`` is any URL yt-dlp
supports, a ``file://`` URL or a local path (relative paths are relative to the
manifest's folder).

Shards are a fixed, stable assignment of videos to jobs: row ``i`` of the manifest
belongs to shard ``i // shard_size``, named ``s00000``, ``s00001`` ... Appending
videos to a manifest never moves an existing video to another shard.

With a shard map (the workflow keeps ``results/{dataset}/shard_map.parquet``),
deleting or reordering rows moves nothing either: the map gives every video id
it has seen a slot, once, in the order it first appeared (``video_id, slot``;
append-only), and slot ``j`` belongs to shard ``j // shard_size``. A deleted
video leaves its slot empty, a new one takes the next free slot, and one that
comes back gets its old slot again; only the shards whose rows changed rerun.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from evoke import EvokeError
from evoke.config import fingerprint

REQUIRED_COLUMNS = ("video_id", "source", "split")
OPTIONAL_COLUMNS = ("start_s", "end_s", "danmaku")
_UNSAFE_ID = re.compile(r"[/\\\x00-\x1f\x7f]")
# bytes of the id's UTF-8 form: file systems limit a name to 255 bytes (not characters),
# and a folder's temporary name adds a prefix and a suffix to the id
MAX_ID_BYTES = 200


class ManifestError(EvokeError):
    """The manifest cannot be used: the message names the file and the rows."""


def check_video_id(video_id: str) -> str | None:
    """Return why ``video_id`` is not a safe file name, or None when it is."""
    if not video_id:
        return "empty video_id"
    if video_id.strip() != video_id:
        return "video_id has leading or trailing whitespace"
    if video_id in (".", "..") or video_id.startswith("."):
        return "video_id may not start with '.'"
    if _UNSAFE_ID.search(video_id):
        return "video_id contains a path separator or a control character"
    n_bytes = len(video_id.encode("utf-8", errors="surrogatepass"))
    if n_bytes > MAX_ID_BYTES:
        return f"video_id is {n_bytes} bytes in UTF-8, over the limit of {MAX_ID_BYTES} bytes"
    return None


def _read_table(path: Path) -> pl.DataFrame:
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            return pl.read_parquet(path)
        if suffix in (".csv", ".tsv"):
            return pl.read_csv(
                path,
                separator="\t" if suffix == ".tsv" else ",",
                infer_schema_length=0,  # everything as text; typed below
            )
    except Exception as exc:  # polars raises many types for unreadable files
        raise ManifestError(f"{path}: cannot read manifest: {exc}") from exc
    raise ManifestError(f"{path}: manifest must be .csv, .tsv or .parquet, not '{suffix}'")


def _resolve_source(source: str, base: Path) -> str:
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", source):
        return source
    path = Path(source).expanduser()
    if not path.is_absolute():
        path = base / path
    return str(path.resolve())


def read_manifest(path: str | Path) -> pl.DataFrame:
    """Read and validate a manifest.

    Returns a DataFrame with columns ``video_id, source, split, start_s, end_s,
    danmaku, row`` (``row`` = position in the file; optional columns are null when
    absent). Local sources and danmaku paths are made absolute.

    Raises :class:`ManifestError` listing every problem (duplicate ids, unsafe ids,
    empty sources, bad clip bounds, missing columns).
    """
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: manifest not found")
    df = _read_table(path)
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise ManifestError(
            f"{path}: missing column(s) {', '.join(missing)} (have: {', '.join(df.columns)})"
        )
    for col in OPTIONAL_COLUMNS:
        if col not in df.columns:
            df = df.with_columns(pl.lit(None, dtype=pl.String).alias(col))
    df = df.select(
        [pl.col(c).cast(pl.String) for c in REQUIRED_COLUMNS + OPTIONAL_COLUMNS]
    )
    problems: list[str] = []
    base = path.resolve().parent
    rows = df.to_dicts()
    seen: dict[str, int] = {}
    out = []
    for i, r in enumerate(rows):
        line = i + 2 if path.suffix.lower() != ".parquet" else i  # CSV line incl. header
        where = f"line {line}" if path.suffix.lower() != ".parquet" else f"row {i}"
        vid = r["video_id"] or ""
        why = check_video_id(vid)
        if why:
            problems.append(f"{where}: {why}: {vid!r}")
        elif vid in seen:
            problems.append(f"{where}: duplicate video_id {vid!r} (first at {seen[vid]})")
        else:
            seen[vid] = line
        src = (r["source"] or "").strip()
        if not src:
            problems.append(f"{where}: empty source for video_id {vid!r}")
        split = (r["split"] or "").strip()
        if not split:
            problems.append(f"{where}: empty split for video_id {vid!r}")
        bounds = {}
        for key in ("start_s", "end_s"):
            raw = r[key]
            if raw is None or str(raw).strip() == "":
                bounds[key] = None
                continue
            try:
                value = float(raw)
                if not math.isfinite(value) or value < 0:
                    raise ValueError
            except ValueError:
                problems.append(f"{where}: {key} must be a number >= 0, got {raw!r}")
                value = None
            bounds[key] = value
        if (
            bounds["start_s"] is not None
            and bounds["end_s"] is not None
            and bounds["end_s"] <= bounds["start_s"]
        ):
            problems.append(
                f"{where}: end_s ({bounds['end_s']}) must be greater than start_s ({bounds['start_s']})"
            )
        danmaku = (r["danmaku"] or "").strip() or None
        out.append(
            {
                "video_id": vid,
                "source": _resolve_source(src, base) if src else src,
                "split": split,
                "start_s": bounds["start_s"],
                "end_s": bounds["end_s"],
                "danmaku": _resolve_source(danmaku, base) if danmaku else None,
                "row": i,
            }
        )
    if problems:
        shown = problems[:20]
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise ManifestError(f"{path}: invalid manifest\n  " + "\n  ".join(shown) + more)
    if not out:
        raise ManifestError(f"{path}: the manifest has no videos")
    return pl.DataFrame(
        out,
        schema={
            "video_id": pl.String,
            "source": pl.String,
            "split": pl.String,
            "start_s": pl.Float64,
            "end_s": pl.Float64,
            "danmaku": pl.String,
            "row": pl.Int64,
        },
    )


def shard_name(index: int) -> str:
    return f"s{index:05d}"


@dataclass(frozen=True)
class Shard:
    """One shard: its name, the manifest rows it holds and a digest of their content."""

    name: str
    videos: pl.DataFrame

    @functools.cached_property
    def digest(self) -> str:
        """Changes exactly when a row of this shard changes (Snakemake reruns on it)."""
        return fingerprint(self.videos.drop("row").to_dicts())


def assign_shards(manifest: pl.DataFrame, shard_size: int,
                  shard_map: str | Path | None = None) -> dict[str, Shard]:
    """Split a validated manifest into shards of ``shard_size`` slots.

    Without ``shard_map``, slot = manifest row. With it, slots come from that
    append-only table (created, and extended by the ids it has not seen, under a
    lock; see the module docstring), so removing a row moves no other video.
    """
    if shard_size < 1:
        raise ValueError("shard_size must be >= 1")
    if shard_map is None:
        slots = manifest.with_columns(pl.col("row").alias("_slot"))
    else:
        table = update_shard_map(shard_map, manifest["video_id"])
        slots = manifest.join(table.rename({"slot": "_slot"}), on="video_id", how="left")
    slots = slots.with_columns((pl.col("_slot") // shard_size).alias("_shard")).sort("row")
    return {
        shard_name(k): Shard(shard_name(k), group.drop("_slot", "_shard"))
        for (k,), group in sorted(slots.group_by("_shard", maintain_order=True), key=lambda kv: kv[0][0])
    }


# the shard map's name inside results/{dataset}/
SHARD_MAP = "shard_map.parquet"
SHARD_MAP_SCHEMA = {"video_id": pl.String, "slot": pl.Int64}


def update_shard_map(path: str | Path, video_ids: pl.Series) -> pl.DataFrame:
    """The shard map at ``path`` with every id of ``video_ids`` in it: ids it lacks get
    the next slots, in the given order (written atomically under a lock when it grows)."""
    from evoke.store import file_lock, write_parquet

    path = Path(path)
    with file_lock(path.with_name(f".{path.name}.lock")):
        table = pl.read_parquet(path) if path.exists() else pl.DataFrame(schema=SHARD_MAP_SCHEMA)
        seen = set(table["video_id"].to_list())
        new = [v for v in video_ids.to_list() if v not in seen]
        if new:
            start = int(table["slot"].max()) + 1 if table.height else 0
            added = pl.DataFrame({"video_id": new, "slot": range(start, start + len(new))}, schema=SHARD_MAP_SCHEMA)
            table = pl.concat([table, added])
            write_parquet(table, path)
    return table


def shard_rows(manifest: pl.DataFrame, shard_size: int, shard: str,
               shard_map: str | Path | None = None) -> pl.DataFrame:
    """The manifest rows of one shard by name (see :func:`assign_shards`); raises
    ManifestError for an unknown or empty shard."""
    if not re.fullmatch(r"s(\d{5,})", shard):
        raise ManifestError(f"bad shard name {shard!r} (expected s00000, s00001, ...)")
    shards = assign_shards(manifest, shard_size, shard_map)
    if shard not in shards:
        raise ManifestError(
            f"shard {shard} is empty: the manifest has {manifest.height} videos "
            f"({len(shards)} shards of {shard_size})"
        )
    return shards[shard].videos
