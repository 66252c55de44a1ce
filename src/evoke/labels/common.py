"""What every label builder shares: the registry, configs, drop accounting and readers.

A label builder (lhotse style, see STYLE.md) is a class with a ``name``, a
frozen ``config_type`` dataclass, the names of its ``inputs`` and a pure
``build`` method (tables in, :class:`BuildResult` out). ``@register_label_builder``
puts it into :data:`LABEL_BUILDERS`; :mod:`evoke.labels` imports every builder
module so the registry is complete. Adding a builder is one module, one
registered class, one config block, one test.

Bad records never stop a build and are never silently lost: each builder drops
them and counts them by reason in :class:`Dropped` (the CLI logs the counts and
``--strict`` turns any drop into an error). A file that cannot be used at all
raises :class:`LabelError` naming the file and the problem.
"""

from __future__ import annotations

import codecs
import dataclasses
import io
import logging
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Iterable

import polars as pl

from evoke import EvokeError

log = logging.getLogger(__name__)

# the 27 categories of Cowen & Keltner (2017) that VCE annotators chose from
VCE_EMOTIONS: tuple[str, ...] = (
    "admiration", "adoration", "aesthetic_appreciation", "amusement", "anger", "anxiety",
    "awe", "awkwardness", "boredom", "calmness", "confusion", "craving", "disgust",
    "empathic_pain", "entrancement", "excitement", "fear", "horror", "interest", "joy",
    "nostalgia", "relief", "romance", "sadness", "satisfaction", "sexual_desire", "surprise",
)
# the positive-valence categories among them (for emodiversity over positive emotions);
# craving and surprise are left out as valence-ambiguous
VCE_POSITIVE: tuple[str, ...] = (
    "admiration", "adoration", "aesthetic_appreciation", "amusement", "awe", "calmness",
    "entrancement", "excitement", "interest", "joy", "nostalgia", "relief", "romance",
    "satisfaction", "sexual_desire",
)


class LabelError(EvokeError):
    """An annotation file or setting cannot be used: the message names the file and why."""


# --------------------------------------------------------------------------- drops


@dataclass
class Dropped:
    """Records a builder left out, counted by reason (with a few examples each)."""

    counts: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)
    max_examples: int = 3

    def add(self, reason: str, n: int = 1, examples: Iterable[Any] = ()) -> None:
        if n <= 0:
            return
        self.counts[reason] += int(n)
        ex = self.examples.setdefault(reason, [])
        for e in examples:
            if len(ex) >= self.max_examples:
                break
            ex.append(str(e))

    def add_frame(self, reason: str, rows: pl.DataFrame, describe: str = "row") -> None:
        """Count the rows of ``rows`` under ``reason``; examples from column ``describe``."""
        if rows.height == 0:
            return
        ex = rows[describe].head(self.max_examples).to_list() if describe in rows.columns else []
        self.add(reason, rows.height, (f"{describe} {e}" for e in ex))

    def update(self, other: "Dropped") -> None:
        for reason, n in other.counts.items():
            self.add(reason, n, other.examples.get(reason, ()))

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def __bool__(self) -> bool:
        return self.total > 0

    def summary(self) -> str:
        if not self.counts:
            return "nothing dropped"
        parts = []
        for reason, n in sorted(self.counts.items()):
            ex = self.examples.get(reason)
            parts.append(f"{n} {reason}" + (f" (e.g. {'; '.join(ex)})" if ex else ""))
        return ", ".join(parts)

    def to_dict(self) -> dict:
        return {"counts": dict(sorted(self.counts.items())), "examples": self.examples}

    def check(self, strict: bool, source: str | Path) -> None:
        """Raise :class:`LabelError` when ``strict`` and anything was dropped."""
        if strict and self:
            raise LabelError(f"{source}: {self.summary()} (--strict: no record may be dropped)")


@dataclass
class BuildResult:
    """A builder's output: the label table, what was dropped and a few facts."""

    table: pl.DataFrame
    dropped: Dropped = field(default_factory=Dropped)
    info: dict = field(default_factory=dict)
    extra: dict[str, pl.DataFrame] = field(default_factory=dict)


# --------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class BuilderConfig:
    """Base of the builders' frozen configs: round-trips through plain dicts."""

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict | None) -> "BuilderConfig":
        data = dict(data or {})
        names = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise LabelError(f"{cls.__name__}: unknown setting(s) {', '.join(unknown)}; "
                             f"known: {', '.join(sorted(names))}")
        for k, v in list(data.items()):
            if isinstance(v, list):
                data[k] = tuple(tuple(x) if isinstance(x, list) else x for x in v)
        return cls(**data)

    def replace(self, **changes) -> "BuilderConfig":
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})


class LabelBuilder:
    """A label builder: raw annotation tables in, one documented label table out.

    Subclasses set ``name``, ``config_type``, ``inputs`` (names of the tables
    :meth:`build` takes; optional ones end in ``?``) and implement :meth:`read`
    (files to tables) and :meth:`build` (pure: tables to :class:`BuildResult`).
    """

    name: ClassVar[str]
    config_type: ClassVar[type[BuilderConfig]]
    inputs: ClassVar[tuple[str, ...]]
    description: ClassVar[str] = ""

    def __init__(self, config: BuilderConfig | dict | None = None):
        if config is None:
            config = self.config_type()
        elif isinstance(config, dict):
            config = self.config_type.from_dict(config)
        self.config = config

    def read(self, **paths) -> dict[str, pl.DataFrame]:  # pragma: no cover - interface
        raise NotImplementedError

    def build(self, videos: "VideoIndex | None" = None, **tables) -> BuildResult:  # pragma: no cover
        raise NotImplementedError

    def run(self, videos: "VideoIndex | None" = None, **paths) -> BuildResult:
        """Read the input files and build (nothing written)."""
        return self.build(videos=videos, **self.read(**paths))


LABEL_BUILDERS: dict[str, type[LabelBuilder]] = {}


def register_label_builder(cls: type[LabelBuilder]) -> type[LabelBuilder]:
    for attr in ("name", "config_type", "inputs"):
        if not hasattr(cls, attr):
            raise TypeError(f"label builder {cls.__name__} has no '{attr}'")
    if cls.name in LABEL_BUILDERS and LABEL_BUILDERS[cls.name] is not cls:
        raise TypeError(f"label builder name '{cls.name}' registered twice")
    LABEL_BUILDERS[cls.name] = cls
    return cls


def get_label_builder(name: str) -> type[LabelBuilder]:
    try:
        return LABEL_BUILDERS[name]
    except KeyError:
        raise LabelError(f"no label builder '{name}'; known: {', '.join(sorted(LABEL_BUILDERS))}") from None


# --------------------------------------------------------------------------- reading


_XML_DECL = re.compile(rb"^\s*<\?xml[^>]*encoding\s*=\s*[\"']([A-Za-z0-9._-]+)[\"']")
_BOMS = ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))


def decode_text(data: bytes, source: str | Path, encoding: str | None = None,
                fallbacks: tuple[str, ...] = ("gb18030", "shift_jis")) -> tuple[str, str]:
    """Decode ``data`` to text; returns ``(text, encoding used)``.

    Order: ``encoding`` when given; a byte-order mark; an XML declaration's
    encoding; strict UTF-8; then each of ``fallbacks`` (strict). GB18030 is a
    superset of GBK/GB2312 (Bilibili exports), Shift-JIS covers old Niconico
    files. Undecodable data raises :class:`LabelError`.
    """
    tried = []
    candidates = []
    if encoding:
        candidates.append(encoding)
    else:
        for bom, enc in _BOMS:
            if data.startswith(bom):
                candidates.append(enc)
                break
        m = _XML_DECL.match(data[:200])
        if m:
            declared = m.group(1).decode("ascii").lower()
            candidates.append("gb18030" if declared in ("gbk", "gb2312", "gb-2312") else declared)
        candidates += ["utf-8", *fallbacks]
    for enc in dict.fromkeys(candidates):
        try:
            text = data.decode(enc)
        except LookupError:
            raise LabelError(f"{source}: unknown text encoding '{enc}'") from None
        except UnicodeDecodeError as exc:
            tried.append(f"{enc} ({exc.reason} at byte {exc.start})")
            continue
        return text.lstrip("\ufeff"), enc
    raise LabelError(f"{source}: cannot decode the text: tried {', '.join(tried)}; pass --encoding")


def read_table(path: str | Path, what: str = "table", encoding: str | None = None,
               max_bytes: int | None = None) -> pl.DataFrame:
    """Read a CSV/TSV/Parquet annotation table with every column as text.

    CSV in any encoding :func:`decode_text` knows; the separator follows the
    suffix (``.tsv``/``.tab`` tab, otherwise comma). Columns stay text: each
    builder parses and range-checks its own columns and counts what fails.
    """
    path = Path(path)
    if not path.is_file():
        raise LabelError(f"{path}: {what} not found")
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            df = pl.read_parquet(path)
            return df.with_columns(pl.col(c).cast(pl.String) for c in df.columns
                                   if df.schema[c] != pl.String and not df.schema[c].is_nested())
        data = path.read_bytes()
        if max_bytes is not None and len(data) > max_bytes:
            raise LabelError(f"{path}: {len(data)} bytes is over the limit of {max_bytes}")
        if not data.strip():
            raise LabelError(f"{path}: {what} is empty")
        text, _ = decode_text(data, path, encoding)
        sep = "\t" if suffix in (".tsv", ".tab") else ","
        df = pl.read_csv(io.StringIO(text), separator=sep, infer_schema_length=0,
                         truncate_ragged_lines=False, quote_char='"')
    except LabelError:
        raise
    except Exception as exc:  # polars raises many kinds for unreadable files
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise LabelError(f"{path}: cannot read {what}: {msg}") from exc
    df = df.rename({c: c.strip().lstrip("\ufeff") for c in df.columns})
    return df.with_columns(pl.col(c).str.strip_chars() for c in df.columns if df.schema[c] == pl.String)


def load_table(path: str | Path, what: str, floats: tuple[str, ...] = ()) -> pl.DataFrame:
    """A Parquet table as written, or a CSV/TSV read by :func:`read_table`; columns named in
    ``floats`` (``"p_*"`` = every ``p_`` column) cast to Float64 (unparsable = null)."""
    path = Path(path)
    if path.suffix.lower() == ".parquet":
        if not path.is_file():
            raise LabelError(f"{path}: {what} not found")
        try:
            df = pl.read_parquet(path)
        except Exception as exc:
            raise LabelError(f"{path}: cannot read {what}: {str(exc).strip().splitlines()[0]}") from exc
    else:
        df = read_table(path, what)
    want = [c for c in df.columns if c in floats or ("p_*" in floats and c.startswith("p_"))]
    return df.with_columns(pl.col(c).cast(pl.Float64, strict=False) for c in want)


def require_columns(df: pl.DataFrame, columns: Iterable[str], source: str | Path, what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise LabelError(f"{source}: {what} lacks column(s) {', '.join(missing)}; "
                         f"it has {', '.join(df.columns) or 'none'}")


def to_float(expr: pl.Expr) -> pl.Expr:
    """Text to Float64; anything unparsable becomes null (counted by the caller)."""
    return expr.cast(pl.String).str.strip_chars().cast(pl.Float64, strict=False)


_TRUE = {"1", "true", "t", "yes", "y"}
_FALSE = {"0", "false", "f", "no", "n", ""}


def to_bool(expr: pl.Expr) -> pl.Expr:
    """Text flags (1/0, true/false, yes/no; empty = false) to Boolean; others to null."""
    s = expr.cast(pl.String).str.strip_chars().str.to_lowercase()
    return (pl.when(s.is_null() | s.is_in(list(_FALSE))).then(False)
            .when(s.is_in(list(_TRUE))).then(True).otherwise(None))


def with_row_numbers(df: pl.DataFrame, header_lines: int = 1) -> pl.DataFrame:
    """Add ``row``: the line of each record in its file (header = line 1)."""
    return df.with_row_index("row", offset=header_lines + 1).with_columns(pl.col("row").cast(pl.Int64))


def parse_list(text: str | Iterable[str] | None) -> tuple[str, ...] | None:
    """``"a,b, c"`` (or a file with one name a line) to ``("a", "b", "c")``."""
    if text is None:
        return None
    if not isinstance(text, str):
        return tuple(text)
    p = Path(text)
    if "," not in text and p.suffix in (".txt", ".csv") and p.is_file():
        items = [ln.strip() for ln in p.read_text(encoding="utf-8").splitlines()]
    else:
        items = [x.strip() for x in text.split(",")]
    items = [x for x in items if x and not x.startswith("#")]
    if not items:
        raise LabelError(f"empty list: '{text}'")
    return tuple(items)


def emotion_slug(name: str) -> str:
    """Column-safe emotion name: lower case, spaces and dashes to underscores."""
    return re.sub(r"[^0-9a-z_]+", "_", name.strip().lower()).strip("_")


def finite(x: float | None) -> bool:
    return x is not None and isinstance(x, (int, float)) and math.isfinite(x)


# --------------------------------------------------------------------------- videos


@dataclass(frozen=True)
class VideoIndex:
    """The videos a dataset has (a manifest, a probe table or any table with ``video_id``).

    Annotations for a video not in the index are dropped and counted
    (``unknown_video``). ``split`` maps video ids to their split when the table
    has one.
    """

    ids: frozenset[str]
    split: dict[str, str]
    source: str = ""

    @classmethod
    def from_file(cls, path: str | Path) -> "VideoIndex":
        df = read_table(path, "video list")
        require_columns(df, ["video_id"], path, "video list")
        df = df.filter(pl.col("video_id").is_not_null() & (pl.col("video_id") != ""))
        split = {}
        if "split" in df.columns:
            split = {v: s for v, s in df.select("video_id", "split").iter_rows() if s}
        return cls(frozenset(df["video_id"].to_list()), split, str(path))

    @classmethod
    def from_ids(cls, ids: Iterable[str], split: dict[str, str] | None = None) -> "VideoIndex":
        return cls(frozenset(ids), dict(split or {}), "given ids")

    def split_of(self, video_id: str) -> str | None:
        return self.split.get(video_id)

    def filter_known(self, df: pl.DataFrame, columns: Iterable[str], dropped: Dropped,
                     reason: str = "unknown_video") -> pl.DataFrame:
        """Drop rows whose ``columns`` name a video not in the index; count them."""
        known = pl.lit(True)
        ids = list(self.ids)
        for c in columns:
            known = known & pl.col(c).is_in(ids)
        bad = df.filter(~known)
        if bad.height:
            first = list(columns)[0]
            dropped.add(reason, bad.height, (f"{r.get('row', '?')}: {r[first]}" for r in
                                             bad.head(3).iter_rows(named=True)))
        return df.filter(known)


# --------------------------------------------------------------------------- video ends


def video_durations(table: pl.DataFrame, source: str | Path = "video list") -> dict[str, float]:
    """``video_id -> seconds``: where each video of ``table`` ends, the bound of every label
    time (:func:`after_video_end`). A video whose length is unknown is left out: it has no
    upper bound (a film or a live-stream replay may run past any fixed cap).

    * A probe table (``ingest/probe.parquet``, with ``duration_s``): ``decoded_duration_s``
      where known, how far the file really decodes, else ``duration_s``, the header's (the
      smaller when both are there). A file cut mid-stream keeps its header's duration, and the
      frames stage masks every frame past the last one that decodes, so a label there would
      have no features. Only ``ok`` rows when the table has a ``status``.
    * A manifest (``end_s``, optional ``start_s``): ``end_s - start_s`` (``start_s`` empty:
      0) where a row cuts the video.

    A length counts only when finite and positive. ``source`` names the table in errors.
    """
    require_columns(table, ["video_id"], source, "video list")

    def seconds(col: str) -> pl.Expr:
        if col not in table.columns:
            return pl.lit(None, dtype=pl.Float64)
        c = pl.col(col)
        return to_float(c) if table.schema[col] == pl.String else c.cast(pl.Float64, strict=False)

    if "duration_s" in table.columns or "decoded_duration_s" in table.columns:
        if "status" in table.columns:
            table = table.filter(pl.col("status") == "ok")
        positive = lambda e: pl.when(e.is_finite() & (e > 0)).then(e)  # noqa: E731
        length = pl.min_horizontal(positive(seconds("decoded_duration_s")), positive(seconds("duration_s")))
    else:
        length = seconds("end_s") - seconds("start_s").fill_null(0.0)
    rows = table.select(pl.col("video_id").cast(pl.String), length.alias("d")).drop_nulls()
    return {v: float(d) for v, d in rows.iter_rows() if v and math.isfinite(d) and d > 0}


def probe_durations(probe: pl.DataFrame, source: str | Path = "probe table") -> dict[str, float]:
    """:func:`video_durations` of an ingest probe table (``--probe``); LabelError naming
    ``source`` when it has no ``duration_s``."""
    require_columns(probe, ["video_id", "duration_s"], source, "probe table")
    return video_durations(probe, source)


def after_video_end(time_s: pl.Expr, end_s: pl.Expr) -> pl.Expr:
    """The one rule for a label time past its video: ``time_s >= end_s`` (an unknown, null
    end: never). The frames stage samples t = k / rate strictly before the video's end
    (:func:`evoke.frames.target_times`), so a time exactly at the end has no frame either.
    Every builder counts these drops as ``after_video_end``."""
    return end_s.is_not_null() & (time_s >= end_s)


def split_column(df: pl.DataFrame, videos: VideoIndex | None, id_col: str = "video_id") -> pl.DataFrame:
    """Add ``split`` from the video index (null when unknown or no index)."""
    if videos is None or not videos.split:
        return df.with_columns(pl.lit(None, dtype=pl.String).alias("split"))
    m = pl.DataFrame({id_col: list(videos.split), "split": list(videos.split.values())},
                     schema={id_col: pl.String, "split": pl.String})
    return df.join(m, on=id_col, how="left", maintain_order="left")
