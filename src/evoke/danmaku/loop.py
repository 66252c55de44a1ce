"""The semi-automatic labelling loop of the danmaku seed.

1. Score unlabelled comments with the current model (``evoke danmaku classify``).
2. :func:`propose_labels` (``evoke danmaku review``): per distinct comment text
   and emotion, a probability above ``accept`` (0.8) makes a positive, below
   ``reject`` (0.4) a negative; everything in between (0.4 <= p <= 0.8) goes to a
   review queue for a person.
3. The person fills the queue's ``decision`` column (1/0, yes/no, y/n, true/false;
   empty = not reviewed).
4. :func:`accept_reviews` (``evoke danmaku accept``) merges the decisions into
   the automatic labels.
5. Retrain with the labelled set added (``evoke danmaku train --extra``).

Labelled set (Parquet): ``text`` (str, distinct), ``n_comments`` (int32, how
many comments have this text), ``y_{emotion}`` (int8: 1, 0 or null = unknown),
``source_{emotion}`` (str: ``auto`` or ``review``, null when unknown).

Review queue (CSV, UTF-8 with BOM so spreadsheets show Chinese correctly):
``text, emotion, p, n_comments, decision``, sorted by emotion then by how close
``p`` is to the middle of the band (the most uncertain first).
"""

from __future__ import annotations

import io
import logging
from pathlib import Path

import polars as pl

from evoke.danmaku import EMOTIONS
from evoke.danmaku.parse import DanmakuError
from evoke.labels.common import Dropped, decode_text

log = logging.getLogger(__name__)

_YES = {"1", "yes", "y", "true", "t", "+", "是"}
_NO = {"0", "no", "n", "false", "f", "-", "否"}


def propose_labels(scored: pl.DataFrame, accept: float = 0.8, reject: float = 0.4
                   ) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Scored comments (``text`` + ``p_*``) to ``(labelled, queue)`` (see the module docstring).

    Comments with the same text are one item (their probabilities are the
    same for a deterministic model; the mean is used).
    """
    if not 0 <= reject <= accept <= 1:
        raise DanmakuError(f"need 0 <= reject <= accept <= 1, got reject {reject}, accept {accept}")
    from evoke.danmaku.windows import present_emotions

    if "text" not in scored.columns:
        raise DanmakuError("scored comments lack column(s) text; run `evoke danmaku classify`")
    emotions = present_emotions(scored, "scored comments")
    cols = [f"p_{e}" for e in emotions]
    items = scored.filter(pl.col("text").is_not_null() & (pl.col("text") != "")).group_by("text").agg(
        pl.len().cast(pl.Int32).alias("n_comments"), *[pl.col(c).mean() for c in cols]).sort("text")
    # an emotion the model was not trained on stays unknown (null) in the labelled set
    items = items.with_columns(pl.lit(None, dtype=pl.Float64).alias(f"p_{e}") for e in EMOTIONS if e not in emotions)
    queue = []
    for e in EMOTIONS:
        p = pl.col(f"p_{e}")
        items = items.with_columns(
            pl.when(p > accept).then(1).when(p < reject).then(0).otherwise(None).cast(pl.Int8).alias(f"y_{e}"))
        items = items.with_columns(pl.when(pl.col(f"y_{e}").is_not_null()).then(pl.lit("auto")).otherwise(None)
                                   .cast(pl.String).alias(f"source_{e}"))
        queue.append(items.filter((p >= reject) & (p <= accept)).select(
            "text", pl.lit(e).alias("emotion"), p.alias("p"), "n_comments"))
    lab = items.select("text", "n_comments", *[f"y_{e}" for e in EMOTIONS], *[f"source_{e}" for e in EMOTIONS])
    mid = (accept + reject) / 2
    queue = pl.concat(queue).with_columns(pl.lit(None, dtype=pl.String).alias("decision"))
    order = {e: k for k, e in enumerate(EMOTIONS)}
    queue = queue.with_columns((pl.col("p") - mid).abs().alias("_d"),
                               pl.col("emotion").replace_strict(order, return_dtype=pl.Int32).alias("_o"))
    queue = queue.sort("_o", "_d", "text").drop("_o", "_d")
    return lab, queue


def write_queue(queue: pl.DataFrame, path: str | Path) -> Path:
    """Write the review queue as CSV (UTF-8 with BOM), atomically."""
    from evoke.store import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:
        buf = io.StringIO()
        queue.write_csv(buf)
        tmp.write_bytes(b"\xef\xbb\xbf" + buf.getvalue().encode("utf-8"))
    return path


def read_queue(path: str | Path) -> pl.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise DanmakuError(f"{path}: review queue not found")
    text, _ = decode_text(path.read_bytes(), path)
    try:
        df = pl.read_csv(io.StringIO(text), infer_schema_length=0)
    except Exception as exc:
        raise DanmakuError(f"{path}: cannot read review queue: {str(exc).strip().splitlines()[0]}") from exc
    for c in ("text", "emotion", "decision"):
        if c not in df.columns:
            raise DanmakuError(f"{path}: review queue lacks column '{c}'")
    return df


def accept_reviews(labelled: pl.DataFrame, queue: pl.DataFrame, source: str | Path = "queue",
                   dropped: Dropped | None = None) -> pl.DataFrame:
    """Merge a reviewed queue into the labelled set; returns the new labelled set.

    A decision that is not yes/no/empty is an error naming its line; queue
    rows for texts not in the labelled set or for unknown emotions are counted
    and skipped.
    """
    dropped = dropped if dropped is not None else Dropped()
    q = queue.with_row_index("line", offset=2)
    q = q.with_columns(pl.col("decision").cast(pl.String).str.strip_chars().str.to_lowercase().fill_null(""))
    bad = q.filter(~pl.col("decision").is_in(sorted(_YES | _NO | {""})))
    if bad.height:
        ex = "; ".join(f"line {ln}: {d!r}" for ln, d in bad.select("line", "decision").head(3).iter_rows())
        raise DanmakuError(f"{source}: decisions must be 1/0, yes/no or empty: {ex}")
    q = q.filter(pl.col("decision") != "")
    unk = q.filter(~pl.col("emotion").is_in(list(EMOTIONS)))
    dropped.add("unknown_emotion", unk.height, (f"line {ln}" for ln in unk["line"].head(3)))
    q = q.filter(pl.col("emotion").is_in(list(EMOTIONS)))
    known_texts = set(labelled["text"].to_list())
    stray = q.filter(~pl.col("text").is_in(list(known_texts)))
    dropped.add("unknown_text", stray.height, (f"line {ln}" for ln in stray["line"].head(3)))
    q = q.filter(pl.col("text").is_in(list(known_texts)))
    out = labelled
    for e in EMOTIONS:
        d = q.filter(pl.col("emotion") == e).select(
            "text", pl.when(pl.col("decision").is_in(list(_YES))).then(1).otherwise(0).cast(pl.Int8).alias("_y"))
        d = d.unique("text", keep="last")
        out = out.join(d, on="text", how="left", maintain_order="left").with_columns(
            pl.coalesce(pl.col("_y"), pl.col(f"y_{e}")).alias(f"y_{e}"),
            pl.when(pl.col("_y").is_not_null()).then(pl.lit("review")).otherwise(pl.col(f"source_{e}"))
            .alias(f"source_{e}"),
        ).drop("_y")
    n_rev = q.height
    log.info("accepted %d reviewed decisions; %s", n_rev, dropped.summary())
    return out


def labelled_counts(labelled: pl.DataFrame) -> dict:
    """Per emotion: positives, negatives, unknown."""
    out = {}
    for e in EMOTIONS:
        c = labelled[f"y_{e}"]
        out[e] = {"positive": int((c == 1).sum()), "negative": int((c == 0).sum()), "unknown": int(c.null_count())}
    return out


def labelled_from_file(path: str | Path) -> pl.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise DanmakuError(f"{path}: labelled set not found")
    df = pl.read_parquet(path)
    missing = [c for c in ["text", *[f"y_{e}" for e in EMOTIONS]] if c not in df.columns]
    if missing:
        raise DanmakuError(f"{path}: labelled set lacks column(s) {', '.join(missing)}")
    return df
