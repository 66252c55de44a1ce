"""Per-viewer continuous ratings (COGNIMUSE, LIRIS-ACCEDE style) per second and per segment.

Inputs (:func:`read_continuous`), any mix of:

* CSV/TSV/Parquet, long: ``video_id, viewer_id, time_s`` and one column per
  rated dimension (e.g. ``valence``; every other column is taken as one);
* COGNIMUSE ``.dat``: whitespace ``time_s v1 v2 ...`` (25 Hz), one file per
  video and viewer, named ``{video_id}_{viewer_id}.dat`` (``BMI_intended_1.dat``:
  video ``BMI``, viewer ``intended_1``); the value columns are named by
  ``dat_columns`` (default ``valence, arousal``: the order the COGNIMUSE
  preprocessing of gcunhase/AnnotatedMV-PreProcessing reads; not verified
  against the database's own documentation).

Segments come from subtitle files (SRT, one per video, ``{video_id}.srt`` or
``{video_id}_subtitle.srt``: each cue is a segment) or are fixed-length
(``segment_s``).

Output per second (:func:`continuous_labels`), sorted by ``video_id, time_s``;
the per-segment table has the same value columns after ``segment, start_s,
end_s, text`` instead of ``time_s``:

=========================  =======  ================================================
column                     type     meaning
=========================  =======  ================================================
video_id                   str
split                      str      from the video list (null without one)
time_s                     float64  t = 0, 1, 2 ...: the second [t, t + 1)
n_viewers                  int32    viewers with a sample in the second
{dim}                      float64  the average viewer: mean over viewers of each
                                    viewer's mean in the second
{dim}_bin                  int8     1 when {dim} >= 0, else 0 (the valence
                                    classification benchmark; 0 counts as positive,
                                    as the COGNIMUSE preprocessing does)
{dim}__{viewer_id}         float64  that viewer's mean in the second (null where the
                                    viewer has no sample): the multi-task columns
{dim}_bin__{viewer_id}     int8     binarised the same way
=========================  =======  ================================================

Dropped and counted: ``missing_id``, ``unknown_video``, ``impossible_timestamp``
(not a number, infinite or negative), ``after_video_end`` (at or past the video's
known end, as every builder has it (:func:`evoke.labels.common.video_durations`):
for a probe table as the video list, how far the file decodes, else its header's
``duration_s``; for a manifest row that cuts the video, ``end_s - start_s``; a
video of unknown length has no upper bound: a film or a live recording may run
past any fixed cap), ``value_out_of_range`` (outside
``value_range``, default [-1, 1], or not a number: the whole sample),
``duplicate_sample`` (same video, viewer and time: the first is kept),
``malformed_line`` (a ``.dat`` line that is not all numbers),
``malformed_subtitle`` (an SRT block without a valid time line).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from evoke.labels.common import (
    BuilderConfig,
    BuildResult,
    Dropped,
    LabelBuilder,
    LabelError,
    VideoIndex,
    after_video_end,
    decode_text,
    read_table,
    register_label_builder,
    require_columns,
    split_column,
    to_float,
    video_durations,
    with_row_numbers,
)

log = logging.getLogger(__name__)

_SRT_TIME = re.compile(
    r"(\d+):(\d{1,2}):(\d{1,2})[,.](\d{1,3})\s*-->\s*(\d+):(\d{1,2}):(\d{1,2})[,.](\d{1,3})")


@dataclass(frozen=True)
class ContinuousConfig(BuilderConfig):
    dat_columns: tuple[str, ...] = ("valence", "arousal")
    value_range: tuple[float, float] = (-1.0, 1.0)
    binarise_at: float = 0.0
    segment_s: float | None = None  # fixed-length segments when no subtitles are given

    def __post_init__(self):
        if len(self.value_range) != 2 or self.value_range[0] > self.value_range[1]:
            raise LabelError(f"continuous: value_range must be (low, high), got {self.value_range}")
        if self.segment_s is not None and self.segment_s <= 0:
            raise LabelError("continuous: segment_s must be positive")


# --------------------------------------------------------------------------- reading


def read_dat(path: str | Path, columns: tuple[str, ...] = ("valence", "arousal"),
             video_id: str | None = None, viewer_id: str | None = None,
             dropped: Dropped | None = None) -> pl.DataFrame:
    """A COGNIMUSE ``.dat`` file to ``row, video_id, viewer_id, time_s, {columns}``."""
    path = Path(path)
    if not path.is_file():
        raise LabelError(f"{path}: ratings file not found")
    text, _ = decode_text(path.read_bytes(), path)
    stem = path.stem
    if video_id is None or viewer_id is None:
        vid, _, viewer = stem.partition("_")
        video_id = video_id or vid
        viewer_id = viewer_id or (viewer or "viewer_1")
    rows, bad = [], []
    width = 1 + len(columns)
    for i, line in enumerate(text.splitlines(), start=1):
        parts = line.split()
        if not parts or line.lstrip().startswith("#"):
            continue
        try:
            vals = [float(x) for x in parts]
        except ValueError:
            bad.append(i)
            continue
        if len(vals) < width:
            bad.append(i)
            continue
        rows.append([i, *vals[:width]])
    if dropped is not None and bad:
        dropped.add("malformed_line", len(bad), (f"{path.name} line {i}" for i in bad[:3]))
    if not rows and not bad:
        raise LabelError(f"{path}: ratings file is empty")
    arr = np.array(rows, dtype=np.float64).reshape(-1, width + 1)
    data = {"row": arr[:, 0].astype(np.int64), "video_id": [video_id] * len(arr),
            "viewer_id": [viewer_id] * len(arr), "time_s": arr[:, 1]}
    for k, c in enumerate(columns):
        data[c] = arr[:, 2 + k]
    return pl.DataFrame(data)


def read_continuous(paths, config: ContinuousConfig | None = None, video_id: str | None = None,
                    viewer_id: str | None = None, dropped: Dropped | None = None) -> pl.DataFrame:
    """Read rating files (CSV/TSV/Parquet long tables and ``.dat``) into one long table.

    Columns ``source, row, video_id, viewer_id, time_s`` + the dimensions
    (Float64; unparsable values become null and are counted by the builder).
    """
    config = config or ContinuousConfig()
    frames = []
    for p in ([paths] if isinstance(paths, (str, Path)) else paths):
        p = Path(p)
        if p.suffix.lower() == ".dat":
            df = read_dat(p, config.dat_columns, video_id, viewer_id, dropped)
        else:
            df = read_table(p, "ratings")
            if video_id is not None and "video_id" not in df.columns:
                df = df.with_columns(pl.lit(video_id).alias("video_id"))
            if viewer_id is not None and "viewer_id" not in df.columns:
                df = df.with_columns(pl.lit(viewer_id).alias("viewer_id"))
            require_columns(df, ["video_id", "viewer_id", "time_s"], p, "ratings")
            dims = [c for c in df.columns if c not in ("video_id", "viewer_id", "time_s")]
            if not dims:
                raise LabelError(f"{p}: ratings have no value column (e.g. valence)")
            df = with_row_numbers(df).select(
                "row", "video_id", "viewer_id", to_float(pl.col("time_s")).alias("time_s"),
                *[to_float(pl.col(d)).alias(d) for d in dims])
        frames.append(df.with_columns(pl.lit(str(p)).alias("source")))
    if not frames:
        raise LabelError("no ratings files given")
    return pl.concat(frames, how="diagonal_relaxed")


# a segments table's columns (before the label columns), as predict reads them too
SEGMENTS_SCHEMA = {"video_id": pl.String, "segment": pl.Int32, "start_s": pl.Float64, "end_s": pl.Float64,
                   "text": pl.String}


def fixed_segments(video_id: str, times_s: np.ndarray, length_s: float) -> pl.DataFrame:
    """The fixed-length segments ``[k L, (k + 1) L)`` of one video that hold one of ``times_s``
    (``labels.viewers.segment_s``; never a range from 0 to the largest time, which is unbounded
    without a known duration): ``video_id, segment (= k), start_s, end_s, text`` (null), by k.
    The labels builder makes them from the rating times and ``evoke predict`` from the feature
    steps of a new video, so both give a time the same segment."""
    k = np.unique(np.floor(np.asarray(times_s, dtype=np.float64) / length_s)).astype(np.int64)
    starts = k * length_s
    return pl.DataFrame({"video_id": [video_id] * k.size, "segment": k.astype(np.int32),
                         "start_s": starts.astype(np.float64), "end_s": starts + length_s,
                         "text": [None] * k.size}, schema=SEGMENTS_SCHEMA)


def read_srt(path: str | Path, dropped: Dropped | None = None) -> pl.DataFrame:
    """An SRT file to ``segment, start_s, end_s, text`` (cues in file order, renumbered from 0)."""
    path = Path(path)
    if not path.is_file():
        raise LabelError(f"{path}: subtitle file not found")
    text, _ = decode_text(path.read_bytes(), path)
    cues = []
    for block in re.split(r"\r?\n\s*\r?\n", text.replace("\r\n", "\n").strip()):
        lines = [ln for ln in block.strip().split("\n")]
        m = next(((i, _SRT_TIME.search(ln)) for i, ln in enumerate(lines) if _SRT_TIME.search(ln)), None)
        if m is None:
            if block.strip() and dropped is not None:
                dropped.add("malformed_subtitle", 1, [f"{path.name}: {block.strip()[:30]!r}"])
            continue
        i, t = m
        g = [int(x) for x in t.groups()]
        start = g[0] * 3600 + g[1] * 60 + g[2] + g[3] / 10 ** len(t.group(4))
        end = g[4] * 3600 + g[5] * 60 + g[6] + g[7] / 10 ** len(t.group(8))
        if end <= start:
            if dropped is not None:
                dropped.add("malformed_subtitle", 1, [f"{path.name}: end before start at {t.group(0)}"])
            continue
        cues.append({"start_s": start, "end_s": end, "text": " ".join(x.strip() for x in lines[i + 1:]).strip()})
    df = pl.DataFrame(cues, schema={"start_s": pl.Float64, "end_s": pl.Float64, "text": pl.String})
    return df.with_row_index("segment").with_columns(pl.col("segment").cast(pl.Int32))


def subtitle_video_id(path: str | Path) -> str:
    stem = Path(path).stem
    return re.sub(r"[_.-](subtitles?|subs?|srt)$", "", stem, flags=re.IGNORECASE)


# --------------------------------------------------------------------------- building


def known_durations(videos: VideoIndex | None) -> dict[str, float]:
    """``{video_id: seconds}`` of the video list's file (:func:`~evoke.labels.common.video_durations`:
    a probe table's decoded or header duration, a manifest's ``end_s - start_s``)."""
    if videos is None or not videos.source or not Path(videos.source).is_file():
        return {}
    return video_durations(read_table(videos.source, "video list"), videos.source)


def clean_ratings(df: pl.DataFrame, config: ContinuousConfig, videos: VideoIndex | None,
                  dropped: Dropped, durations: dict[str, float] | None = None) -> tuple[pl.DataFrame, list[str]]:
    """Drop and count bad samples (module docstring); ``durations``: {video_id: seconds}
    (default :func:`known_durations` of ``videos``) bounds each video's times."""
    dims = [c for c in df.columns if c not in ("source", "row", "video_id", "viewer_id", "time_s")]
    if "source" not in df.columns:
        df = df.with_columns(pl.lit("").alias("source"))
    if "row" not in df.columns:
        df = with_row_numbers(df)
    df = df.with_columns(pl.col("time_s").cast(pl.Float64), *[pl.col(d).cast(pl.Float64) for d in dims],
                         pl.col("video_id").cast(pl.String), pl.col("viewer_id").cast(pl.String))
    df = df.with_row_index("_i")
    blank = lambda c: pl.col(c).is_null() | (pl.col(c) == "")  # noqa: E731
    miss = df.filter(blank("video_id") | blank("viewer_id"))
    dropped.add_frame("missing_id", miss)
    df = df.filter(~(blank("video_id") | blank("viewer_id")))
    if videos is not None:
        df = videos.filter_known(df, ["video_id"], dropped)
    t = pl.col("time_s")
    durations = known_durations(videos) if durations is None else durations
    limit = pl.col("video_id").replace_strict(durations, default=None, return_dtype=pl.Float64) \
        if durations else pl.lit(None, dtype=pl.Float64)
    bad_t = df.filter(t.is_null() | t.is_nan() | t.is_infinite() | (t < 0))
    dropped.add_frame("impossible_timestamp", bad_t)
    df = df.join(bad_t.select("_i"), on="_i", how="anti")
    late = df.filter(after_video_end(t, limit))
    dropped.add_frame("after_video_end", late)
    df = df.join(late.select("_i"), on="_i", how="anti")
    lo, hi = config.value_range
    # a sample with every dimension empty carries nothing; one out of range is not trusted
    bad_v = df.filter(pl.any_horizontal(pl.col(d).is_nan() | (pl.col(d) < lo) | (pl.col(d) > hi) for d in dims)
                      | pl.all_horizontal(pl.col(d).is_null() for d in dims))
    dropped.add_frame("value_out_of_range", bad_v)
    df = df.join(bad_v.select("_i"), on="_i", how="anti").sort("_i")
    dup = df.filter(pl.int_range(pl.len()).over("video_id", "viewer_id", "time_s") > 0)
    dropped.add_frame("duplicate_sample", dup)
    df = df.join(dup.select("_i"), on="_i", how="anti")
    return df.drop("_i"), dims


def _wide(per_viewer: pl.DataFrame, keys: list[str], dims: list[str], threshold: float) -> pl.DataFrame:
    """Per-viewer means (``keys, viewer_id, dims``) to the wide per-key table with the average viewer."""
    avg = per_viewer.group_by(keys).agg(
        pl.col("viewer_id").n_unique().cast(pl.Int32).alias("n_viewers"),
        *[pl.col(d).mean().alias(d) for d in dims])
    avg = avg.with_columns(*[pl.when(pl.col(d).is_null()).then(None).otherwise(
        (pl.col(d) >= threshold).cast(pl.Int8)).alias(f"{d}_bin") for d in dims])
    viewers = sorted(per_viewer["viewer_id"].unique().to_list())
    out = avg
    for d in dims:
        wide = per_viewer.pivot(on="viewer_id", index=keys, values=d, aggregate_function="first")
        wide = wide.rename({v: f"{d}__{v}" for v in viewers if v in wide.columns})
        out = out.join(wide, on=keys, how="left", maintain_order="left")
        out = out.with_columns(*[pl.when(pl.col(f"{d}__{v}").is_null()).then(None).otherwise(
            (pl.col(f"{d}__{v}") >= threshold).cast(pl.Int8)).alias(f"{d}_bin__{v}")
            for v in viewers if f"{d}__{v}" in out.columns])
    order = keys + ["n_viewers"] + [c for d in dims for c in (d, f"{d}_bin")]
    order += [f"{d}__{v}" for d in dims for v in viewers] + [f"{d}_bin__{v}" for d in dims for v in viewers]
    return out.select([c for c in order if c in out.columns]).sort(keys)


def continuous_labels(ratings: pl.DataFrame, config: ContinuousConfig | None = None,
                      videos: VideoIndex | None = None,
                      subtitles: dict[str, pl.DataFrame] | None = None,
                      dropped: Dropped | None = None) -> BuildResult:
    """Per-second and per-segment labels (see the module docstring).

    ``subtitles`` maps video ids to :func:`read_srt` tables. The per-segment
    table is ``result.extra["segments"]`` when subtitles or ``segment_s`` are
    given.
    """
    config = config or ContinuousConfig()
    dropped = dropped if dropped is not None else Dropped()
    df, dims = clean_ratings(ratings, config, videos, dropped)
    if not dims:
        raise LabelError("ratings have no value column")
    per_sec = df.with_columns(pl.col("time_s").floor().alias("second")).group_by(
        "video_id", "viewer_id", "second").agg(*[pl.col(d).mean() for d in dims]).rename({"second": "time_s"})
    table = _wide(per_sec, ["video_id", "time_s"], dims, config.binarise_at)
    table = split_column(table, videos)
    table = table.select("video_id", "split", *[c for c in table.columns if c not in ("video_id", "split")])
    extra = {}
    seg_tables = []
    if subtitles:
        unmatched = sorted(set(subtitles) - set(df["video_id"].unique().to_list()))
        if unmatched:
            log.warning("subtitles for videos without ratings: %s", ", ".join(unmatched))
        for vid, segs in sorted(subtitles.items()):
            seg_tables.append(segs.with_columns(pl.lit(vid).alias("video_id")))
    elif config.segment_s:
        # the segments that hold samples (times are unbounded without a known duration: never a
        # range from 0 to the largest time)
        for (vid,), rows in df.sort("video_id").group_by(["video_id"], maintain_order=True):
            seg_tables.append(fixed_segments(vid, rows["time_s"].to_numpy(), config.segment_s))
    if seg_tables:
        segs = pl.concat(seg_tables, how="diagonal_relaxed")
        # every sample to the segments containing it (cues may overlap: a join on intervals)
        samples = df.select("video_id", "viewer_id", "time_s", *dims)
        joined = samples.join(segs.select("video_id", "segment", "start_s", "end_s"), on="video_id").filter(
            (pl.col("time_s") >= pl.col("start_s")) & (pl.col("time_s") < pl.col("end_s")))
        per_seg = joined.group_by("video_id", "segment", "viewer_id").agg(*[pl.col(d).mean() for d in dims])
        seg_wide = _wide(per_seg, ["video_id", "segment"], dims, config.binarise_at) if per_seg.height else None
        base = segs.select("video_id", "segment", "start_s", "end_s", "text")
        seg_out = base.join(seg_wide, on=["video_id", "segment"], how="left") if seg_wide is not None else \
            base.with_columns(pl.lit(0, dtype=pl.Int32).alias("n_viewers"))
        seg_out = seg_out.with_columns(pl.col("n_viewers").fill_null(0))
        seg_out = split_column(seg_out, videos)
        extra["segments"] = seg_out.select(
            "video_id", "split", *[c for c in seg_out.columns if c not in ("video_id", "split")]).sort("video_id",
                                                                                                     "segment")
    info = {"n_videos": table["video_id"].n_unique(), "n_seconds": table.height, "dimensions": dims,
            "viewers": sorted(df["viewer_id"].unique().to_list())}
    return BuildResult(table, dropped, info, extra)


@register_label_builder
class ContinuousBuilder(LabelBuilder):
    """Per-viewer continuous ratings to per-second (and per-segment) labels."""

    name = "continuous"
    config_type = ContinuousConfig
    inputs = ("ratings", "subtitles?")
    description = "per-viewer continuous ratings -> per-second / per-segment values, binarised"

    def read(self, ratings, subtitles=(), video_id=None, viewer_id=None):
        self._dropped = Dropped()
        tables = {"ratings": read_continuous(ratings, self.config, video_id, viewer_id, self._dropped)}
        subs = {}
        for p in subtitles or ():
            vid = video_id if (video_id and len(subtitles) == 1) else subtitle_video_id(p)
            subs[vid] = read_srt(p, self._dropped)
        tables["subtitles"] = subs or None
        return tables

    def build(self, videos=None, ratings=None, subtitles=None):
        return continuous_labels(ratings, self.config, videos, subtitles, getattr(self, "_dropped", None))
