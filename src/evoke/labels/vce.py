"""VCE aggregation: crowd responses to one emotion vector and distribution per video.

Input (:func:`read_vce_responses`): CSV/TSV/Parquet, either

* long: ``annotator_id, video_id, emotion, intensity`` (one row per selected
  emotion, intensity 1-10; a row with an empty ``emotion`` is an empty
  response), or
* wide: ``annotator_id, video_id`` and one column per emotion (0 or empty = not
  selected, otherwise the intensity),

each with an optional ``relies_on_audio`` flag (1/0, true/false, yes/no) per
row; a response (one annotator on one video) relies on audio when any of its
rows says so. The VCE form asks a viewer who cannot judge the video without
its sound to select no emotion and tick that box, so a flagged response is
normally empty: it says "could not judge", not "felt nothing".

Output (:func:`aggregate_vce`), one row per video, sorted by ``video_id``:

=========================  ========  =================================================
column                     type      meaning
=========================  ========  =================================================
video_id                   str
split                      str       from the video list (null without one)
n_annotators               int32     responses averaged into the vector (after every
                                     filter; flagged responses never count here
                                     unless non-empty and ``audio="keep"``)
n_responses                int32     every valid response to the video, flagged
                                     ones included
n_relies_on_audio          int32     responses flagged as relying on audio (empty or
                                     not, averaged or not)
intensity_{emotion}        float64   mean intensity over the annotators (an annotator
                                     who did not select the emotion counts 0), divided
                                     by the top of the scale (10): 0-1, the published
                                     VCE label form; one column per emotion, in
                                     taxonomy order
p_{emotion}                float64   intensity normalised to sum 1 (null when all-zero)
top1, top2, top3           str       the emotions with the highest intensity (ties in
                                     taxonomy order; null past the last non-zero one)
emodiversity               float64   perplexity exp(-sum p log p) of ``p_*`` (0 log 0 =
                                     0): 1 (one emotion) .. number of emotions (uniform)
emodiversity_positive      float64   the same over the positive emotions only
                                     (``p`` restricted to them and renormalised; null
                                     when they have no mass)
agreement                  float64   mean cosine similarity over all pairs of the
                                     video's non-empty annotator vectors (0-1; null
                                     with fewer than two)
all_zero                   bool      no emotion has any intensity
=========================  ========  =================================================

Defined handling (each dropped record is counted by reason):

* rows without annotator or video id: ``missing_id``; videos not in the video
  list: ``unknown_video``; emotions outside the taxonomy: ``unknown_emotion``
  (the rest of the response is kept);
* an intensity that is not a number or outside [1, 10]: the whole response is
  dropped (``intensity_out_of_range`` for the bad rows,
  ``rest_of_invalid_response`` for its other rows): a response with a broken
  rating is not trusted in part;
* the same emotion twice in a response: the first is kept (``duplicate``);
* empty responses (nothing selected) without the audio flag: dropped
  (``empty_response``) by default; with ``empty_response="zero"`` they count
  as an annotator who felt nothing;
* responses flagged as relying on audio are counted in ``n_relies_on_audio``
  and ``n_responses`` and never averaged in when empty (the form's "could not
  judge", whatever ``empty_response`` says; not a dropped record). A flagged
  response that did select emotions is averaged in with ``audio="keep"``
  (default) and left out of the mean with ``audio="drop"``
  (``relies_on_audio``), e.g. for a visual-only benchmark;
* ``max_audio_share`` (default off): a video whose share of flagged
  responses, ``n_relies_on_audio / n_responses``, is above it is dropped
  (``video_relies_on_audio``): most of its viewers could not judge it without
  sound (0.5 drops the videos where most did);
* annotator quality: with ``min_annotator_agreement`` set, each response's
  agreement is the cosine similarity between its vector and the mean of the
  other responses to the same video (leave-one-out consensus); an annotator
  whose mean agreement over at least ``min_annotator_videos`` such videos is
  below the bar is removed entirely (``annotator_below_agreement``). One pass,
  computed before any annotator is removed;
* videos with fewer than ``min_annotators`` responses left:
  ``video_too_few_annotators`` (videos);
* all-zero vectors (possible only with ``empty_response="zero"``): dropped
  (``video_all_zero``) or kept with ``all_zero`` true and null ``p_*``,
  top-3 and emodiversity (``all_zero="keep"``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from evoke.labels.common import (
    VCE_EMOTIONS,
    VCE_POSITIVE,
    BuilderConfig,
    BuildResult,
    Dropped,
    LabelBuilder,
    LabelError,
    VideoIndex,
    read_table,
    register_label_builder,
    require_columns,
    split_column,
    to_bool,
    to_float,
    with_row_numbers,
)

log = logging.getLogger(__name__)

LONG_SCHEMA = {
    "row": pl.Int64,
    "annotator_id": pl.String,
    "video_id": pl.String,
    "emotion": pl.String,
    "intensity": pl.Float64,
    "relies_on_audio": pl.Boolean,
}


@dataclass(frozen=True)
class VceConfig(BuilderConfig):
    emotions: tuple[str, ...] = VCE_EMOTIONS
    positive_emotions: tuple[str, ...] = VCE_POSITIVE
    intensity_min: float = 1.0
    intensity_max: float = 10.0
    audio: str = "keep"  # keep | drop non-empty responses flagged as relying on audio
    max_audio_share: float | None = None  # drop videos with a larger share of flagged responses
    empty_response: str = "drop"  # drop | zero
    min_annotators: int = 1
    min_annotator_agreement: float | None = None
    min_annotator_videos: int = 3
    all_zero: str = "drop"  # drop | keep

    def __post_init__(self):
        if self.audio not in ("keep", "drop"):
            raise LabelError(f"vce: audio must be keep or drop, not '{self.audio}'")
        if self.max_audio_share is not None and not 0 <= self.max_audio_share <= 1:
            raise LabelError(f"vce: max_audio_share must lie in [0, 1], not {self.max_audio_share}")
        if self.empty_response not in ("drop", "zero"):
            raise LabelError(f"vce: empty_response must be drop or zero, not '{self.empty_response}'")
        if self.all_zero not in ("drop", "keep"):
            raise LabelError(f"vce: all_zero must be drop or keep, not '{self.all_zero}'")
        if len(set(self.emotions)) != len(self.emotions) or not self.emotions:
            raise LabelError("vce: the emotion list is empty or has duplicates")
        if not self.intensity_min <= self.intensity_max or self.intensity_max <= 0:
            raise LabelError("vce: intensity range must satisfy 0 < min <= max")
        if self.min_annotators < 1:
            raise LabelError("vce: min_annotators must be at least 1")


# --------------------------------------------------------------------------- reading


def read_vce_responses(path: str | Path, emotions: tuple[str, ...] = VCE_EMOTIONS,
                       encoding: str | None = None) -> pl.DataFrame:
    """Read long or wide VCE responses into the long schema :data:`LONG_SCHEMA`.

    ``row`` is the record's line in the file; emotion and intensity stay as
    given (validated by :func:`aggregate_vce`). A wide row with no emotion
    selected becomes one row with a null emotion (an empty response).
    """
    raw = read_table(path, "VCE responses", encoding)
    require_columns(raw, ["annotator_id", "video_id"], path, "VCE responses")
    raw = with_row_numbers(raw)
    audio = to_bool(pl.col("relies_on_audio")) if "relies_on_audio" in raw.columns else pl.lit(False)
    if "emotion" in raw.columns:
        require_columns(raw, ["intensity"], path, "long VCE responses")
        emo = pl.col("emotion").str.strip_chars().str.to_lowercase()
        return raw.select(
            "row", "annotator_id", "video_id",
            pl.when(emo == "").then(None).otherwise(emo).alias("emotion"),
            pl.when(emo.is_null() | (emo == "")).then(None).otherwise(
                to_float(pl.col("intensity")).fill_nan(None)).alias("intensity"),
            audio.alias("relies_on_audio"),
        ).cast(LONG_SCHEMA)
    lower = {c: c.strip().lower() for c in raw.columns}
    emo_cols = [c for c in raw.columns if lower[c] in emotions]
    if not emo_cols:
        raise LabelError(f"{path}: VCE responses are neither long (an 'emotion' column) nor wide "
                         f"(a column per emotion, e.g. '{emotions[0]}')")
    ignored = [c for c in raw.columns
               if c not in emo_cols and c not in ("row", "annotator_id", "video_id", "relies_on_audio")]
    if ignored:
        log.info("%s: ignoring columns not in the taxonomy: %s", path, ", ".join(ignored))
    base = raw.select("row", "annotator_id", "video_id", audio.alias("relies_on_audio"))
    wide = raw.select("row", *[pl.col(c).alias(lower[c]) for c in emo_cols])
    long = wide.unpivot(index="row", variable_name="emotion", value_name="value")
    value = pl.col("value").str.strip_chars()
    long = long.filter(value.is_not_null() & (value != "")).with_columns(
        to_float(pl.col("value")).alias("intensity"))
    # 0 = not selected; anything unparsable stays (null intensity) and is counted later
    long = long.filter(pl.col("intensity").is_null() | (pl.col("intensity") != 0)).drop("value")
    out = base.join(long, on="row", how="left")
    return out.select(list(LONG_SCHEMA)).cast(LONG_SCHEMA).sort("row", "emotion", nulls_last=False)


# --------------------------------------------------------------------------- aggregation


def _response_keys() -> list[str]:
    return ["annotator_id", "video_id"]


def validate_responses(df: pl.DataFrame, config: VceConfig, videos: VideoIndex | None = None
                       ) -> tuple[pl.DataFrame, pl.DataFrame, Dropped]:
    """Apply the row and response rules of the module docstring.

    Returns ``(rows, responses, dropped)``: the valid rows of the responses
    that enter the mean (non-empty emotions only) and one row per kept
    response (``annotator_id, video_id, relies_on_audio, is_empty, in_mean``;
    flagged responses stay here to be counted, with ``in_mean`` false unless
    non-empty and ``audio="keep"``).
    """
    dropped = Dropped()
    if "row" not in df.columns:
        df = with_row_numbers(df)
    df = df.select(list(LONG_SCHEMA)).cast(LONG_SCHEMA)
    missing = df.filter(pl.col("annotator_id").is_null() | (pl.col("annotator_id") == "")
                        | pl.col("video_id").is_null() | (pl.col("video_id") == ""))
    dropped.add_frame("missing_id", missing)
    df = df.join(missing.select("row"), on="row", how="anti")
    if videos is not None:
        df = videos.filter_known(df, ["video_id"], dropped)
    taxonomy = list(config.emotions)
    unknown = df.filter(pl.col("emotion").is_not_null() & ~pl.col("emotion").is_in(taxonomy))
    if unknown.height:
        dropped.add("unknown_emotion", unknown.height,
                    (f"row {r}: {e}" for r, e in unknown.select("row", "emotion").head(3).iter_rows()))
    df = df.join(unknown.select("row", "emotion"), on=["row", "emotion"], how="anti", nulls_equal=True)
    bad_int = df.filter(pl.col("emotion").is_not_null() & (
        pl.col("intensity").is_null() | ~pl.col("intensity").is_between(config.intensity_min, config.intensity_max)))
    if bad_int.height:
        dropped.add("intensity_out_of_range", bad_int.height,
                    (f"row {r}: {i}" for r, i in bad_int.select("row", "intensity").head(3).iter_rows()))
        bad_resp = bad_int.select(_response_keys()).unique()
        rest = df.join(bad_resp, on=_response_keys(), how="semi").join(
            bad_int.select("row", "emotion"), on=["row", "emotion"], how="anti", nulls_equal=True)
        dropped.add_frame("rest_of_invalid_response", rest)
        df = df.join(bad_resp, on=_response_keys(), how="anti")
    # the same emotion twice in one response: keep the first
    df = df.sort("row")
    dup = df.filter(pl.col("emotion").is_not_null()).filter(
        pl.int_range(pl.len()).over([*_response_keys(), "emotion"]) > 0)
    dropped.add_frame("duplicate", dup)
    df = df.join(dup.select("row", "emotion"), on=["row", "emotion"], how="anti", nulls_equal=True)
    responses = df.group_by(_response_keys()).agg(
        pl.col("relies_on_audio").fill_null(False).any().alias("relies_on_audio"),
        pl.col("emotion").is_not_null().sum().alias("n_selected"),
        pl.col("row").min().alias("first_row"),
        pl.len().alias("n_rows"),
    ).with_columns((pl.col("n_selected") == 0).alias("is_empty"))
    flagged = pl.col("relies_on_audio")
    if config.empty_response == "drop":
        empty = responses.filter(pl.col("is_empty") & ~flagged)
        dropped.add("empty_response", int(empty["n_rows"].sum() or 0),
                    (f"row {r}" for r in empty["first_row"].sort().head(3)))
        responses = responses.filter(~(pl.col("is_empty") & ~flagged))
    if config.audio == "drop":
        audio = responses.filter(flagged & ~pl.col("is_empty"))
        dropped.add("relies_on_audio", int(audio["n_rows"].sum() or 0),
                    (f"row {r}" for r in audio["first_row"].sort().head(3)))
    in_mean = ~flagged | (~pl.col("is_empty") & pl.lit(config.audio == "keep"))
    responses = responses.with_columns(in_mean.alias("in_mean"))
    rows = df.filter(pl.col("emotion").is_not_null()).join(
        responses.filter(pl.col("in_mean")).select(_response_keys()), on=_response_keys(), how="semi")
    return rows, responses.drop("n_selected", "n_rows").sort("first_row"), dropped


def response_agreement(rows: pl.DataFrame) -> pl.DataFrame:
    """Leave-one-out agreement of every non-empty response.

    ``rows``: ``annotator_id, video_id, emotion, intensity`` (selected emotions).
    Returns ``annotator_id, video_id, loo_cosine``: the cosine similarity
    between the response's vector r and the sum of the other responses to the
    video (S - r; the mean has the same direction); null when no other
    response has mass.
    """
    keys = _response_keys()
    s = rows.group_by("video_id", "emotion").agg(pl.col("intensity").sum().alias("s"))
    s_norm2 = s.group_by("video_id").agg((pl.col("s") ** 2).sum().alias("s2"))
    r = rows.join(s, on=["video_id", "emotion"]).group_by(keys).agg(
        (pl.col("intensity") ** 2).sum().alias("r2"),
        (pl.col("intensity") * pl.col("s")).sum().alias("rs"),
    ).join(s_norm2, on="video_id")
    other2 = pl.col("s2") - 2 * pl.col("rs") + pl.col("r2")
    dot = pl.col("rs") - pl.col("r2")
    return r.select(
        *keys,
        pl.when(other2 > 1e-9).then(dot / (pl.col("r2").sqrt() * other2.clip(lower_bound=0).sqrt()))
        .otherwise(None).alias("loo_cosine"),
    )


def annotator_quality(rows: pl.DataFrame) -> pl.DataFrame:
    """Per annotator: ``annotator_id, n_videos_scored, mean_agreement`` (leave-one-out cosine)."""
    return response_agreement(rows).group_by("annotator_id").agg(
        pl.col("loo_cosine").is_not_null().sum().cast(pl.Int32).alias("n_videos_scored"),
        pl.col("loo_cosine").mean().alias("mean_agreement"),
    ).sort("annotator_id")


def perplexity(p: np.ndarray) -> np.ndarray:
    """exp(-sum p log p) along the last axis (0 log 0 = 0); NaN rows stay NaN."""
    with np.errstate(divide="ignore", invalid="ignore"):
        plogp = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)
    h = -plogp.sum(axis=-1)
    out = np.exp(h)
    out[np.isnan(p).any(axis=-1)] = np.nan
    return out


def aggregate_vce(df: pl.DataFrame, config: VceConfig | None = None,
                  videos: VideoIndex | None = None) -> BuildResult:
    """Aggregate long responses (:func:`read_vce_responses`) into the per-video table."""
    config = config or VceConfig()
    emotions = list(config.emotions)
    rows, responses, dropped = validate_responses(df, config, videos)
    quality = None
    if config.min_annotator_agreement is not None:
        quality = annotator_quality(rows)
        bad = quality.filter((pl.col("n_videos_scored") >= config.min_annotator_videos)
                             & (pl.col("mean_agreement") < config.min_annotator_agreement))
        if bad.height:
            gone = responses.join(bad.select("annotator_id"), on="annotator_id", how="semi")
            n_rows = rows.join(bad.select("annotator_id"), on="annotator_id", how="semi").height
            n_rows += gone.filter(pl.col("is_empty")).height
            dropped.add("annotator_below_agreement", n_rows, bad["annotator_id"].head(3))
            log.info("vce: removed %d annotators below agreement %.3f: %s", bad.height,
                     config.min_annotator_agreement, ", ".join(bad["annotator_id"].to_list()[:10]))
            responses = responses.join(bad.select("annotator_id"), on="annotator_id", how="anti")
            rows = rows.join(bad.select("annotator_id"), on="annotator_id", how="anti")

    per_video = responses.group_by("video_id").agg(
        pl.col("in_mean").sum().cast(pl.Int32).alias("n_annotators"),
        pl.len().cast(pl.Int32).alias("n_responses"),
        pl.col("relies_on_audio").sum().cast(pl.Int32).alias("n_relies_on_audio"),
    )
    if config.max_audio_share is not None:
        loud = per_video.filter(pl.col("n_relies_on_audio") / pl.col("n_responses") > config.max_audio_share)
        if loud.height:
            dropped.add("video_relies_on_audio", loud.height,
                        (f"{v} ({a}/{n})" for v, a, n in loud.select("video_id", "n_relies_on_audio", "n_responses")
                         .sort("video_id").head(3).iter_rows()))
            per_video = per_video.join(loud.select("video_id"), on="video_id", how="anti")
            rows = rows.join(loud.select("video_id"), on="video_id", how="anti")
    few = per_video.filter(pl.col("n_annotators") < config.min_annotators)
    if few.height:
        dropped.add("video_too_few_annotators", few.height,
                    (f"{v} ({n})" for v, n in
                     few.select("video_id", "n_annotators").sort("video_id").head(3).iter_rows()))
        per_video = per_video.filter(pl.col("n_annotators") >= config.min_annotators)
        rows = rows.join(few.select("video_id"), on="video_id", how="anti")
    per_video = per_video.sort("video_id")
    vids = per_video["video_id"].to_list()
    n_v, k = len(vids), len(emotions)
    index = {v: i for i, v in enumerate(vids)}
    eidx = {e: j for j, e in enumerate(emotions)}

    # sums of intensities and of unit vectors per (video, emotion)
    norms = rows.group_by(_response_keys()).agg((pl.col("intensity") ** 2).sum().sqrt().alias("norm"))
    sums = rows.join(norms, on=_response_keys()).group_by("video_id", "emotion").agg(
        pl.col("intensity").sum().alias("s"), (pl.col("intensity") / pl.col("norm")).sum().alias("u"))
    S = np.zeros((n_v, k))
    U = np.zeros((n_v, k))
    if sums.height:
        vi = np.array([index[v] for v in sums["video_id"].to_list()], dtype=np.int64)
        ej = np.array([eidx[e] for e in sums["emotion"].to_list()], dtype=np.int64)
        S[vi, ej] = sums["s"].to_numpy()
        U[vi, ej] = sums["u"].to_numpy()
    n_ann = per_video["n_annotators"].to_numpy().astype(np.float64)
    n_nonzero = np.zeros(n_v)
    if norms.height:
        cnt = norms.group_by("video_id").len()
        n_nonzero[[index[v] for v in cnt["video_id"].to_list()]] = cnt["len"].to_numpy()

    intensity = S / np.maximum(n_ann, 1)[:, None] / config.intensity_max
    total = intensity.sum(axis=1)
    all_zero = total <= 0
    with np.errstate(invalid="ignore", divide="ignore"):
        p = np.where(all_zero[:, None], np.nan, intensity / total[:, None])
    # mean pairwise cosine = (|sum of unit vectors|^2 - n) / (n (n - 1))
    with np.errstate(invalid="ignore", divide="ignore"):
        agreement = np.where(n_nonzero >= 2, ((U ** 2).sum(axis=1) - n_nonzero)
                             / (n_nonzero * (n_nonzero - 1)), np.nan)
    emodiv = perplexity(p)
    pos = [eidx[e] for e in config.positive_emotions if e in eidx]
    if pos:
        pp = p[:, pos]
        mass = pp.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            pp = np.where((mass > 0)[:, None], pp / mass[:, None], np.nan)
        emodiv_pos = perplexity(pp)
    else:
        emodiv_pos = np.full(n_v, np.nan)
    order = np.argsort(-intensity, axis=1, kind="stable")[:, :3]
    tops = []
    for j in range(3):
        if j >= k:
            tops.append([None] * n_v)
            continue
        col = order[:, j]
        val = intensity[np.arange(n_v), col]
        tops.append([emotions[c] if v > 0 else None for c, v in zip(col, val)])

    def nan_to_null(a):
        return pl.Series(a, dtype=pl.Float64).fill_nan(None)

    table = per_video.select("video_id", "n_annotators", "n_responses", "n_relies_on_audio").with_columns(
        *[pl.Series(f"intensity_{e}", intensity[:, j], dtype=pl.Float64) for j, e in enumerate(emotions)],
        *[nan_to_null(p[:, j]).alias(f"p_{e}") for j, e in enumerate(emotions)],
        pl.Series("top1", tops[0], dtype=pl.String),
        pl.Series("top2", tops[1], dtype=pl.String),
        pl.Series("top3", tops[2], dtype=pl.String),
        nan_to_null(emodiv).alias("emodiversity"),
        nan_to_null(emodiv_pos).alias("emodiversity_positive"),
        nan_to_null(agreement).alias("agreement"),
        pl.Series("all_zero", all_zero, dtype=pl.Boolean),
    )
    if config.all_zero == "drop" and bool(all_zero.any()):
        dropped.add("video_all_zero", int(all_zero.sum()), table.filter(pl.col("all_zero"))["video_id"].head(3))
        table = table.filter(~pl.col("all_zero"))
    table = split_column(table, videos)
    cols = ["video_id", "split"] + [c for c in table.columns if c not in ("video_id", "split")]
    info = {"n_videos": table.height, "n_responses": int(table["n_annotators"].sum() or 0),
            "n_relies_on_audio": int(table["n_relies_on_audio"].sum() or 0), "emotions": emotions}
    extra = {"annotators": quality} if quality is not None else {}
    return BuildResult(table.select(cols), dropped, info, extra)


@register_label_builder
class VceBuilder(LabelBuilder):
    """VCE crowd responses to per-video emotion intensities and distributions."""

    name = "vce"
    config_type = VceConfig
    inputs = ("responses",)
    description = "VCE responses -> per-video 27-d intensity, distribution, top-3, emodiversity"

    def read(self, responses: str | Path, encoding: str | None = None) -> dict[str, pl.DataFrame]:
        return {"responses": read_vce_responses(responses, self.config.emotions, encoding)}

    def build(self, videos: VideoIndex | None = None, responses: pl.DataFrame | None = None) -> BuildResult:
        return aggregate_vce(responses, self.config, videos)
