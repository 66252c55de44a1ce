"""The label tables the train stage reads, their schemas, and ``evoke tables check``.

``labels.tables`` in the config names pre-built tables (an importer's
``DIR/labels/*.parquet``, or any table written in the same schema); the labels
stage checks each against the schema here and puts it where the train stage
reads it, ``results/{dataset}/labels/{name}.parquet``, instead of building it
from raw annotations. A table that does not fit stops with one message naming
the file and the column.

==========================  =====================================================
name                        schema (the builder that writes it)
==========================  =====================================================
``vce``                     :mod:`evoke.labels.vce` (``intensity_*``, ``p_*``, top-3, emodiversity)
``v2v_pairs``, ``v2v_lists``  :mod:`evoke.labels.v2v`
``eev``                     :mod:`evoke.labels.eev` (expression columns int8 or float64)
``viewer_valence``          :mod:`evoke.labels.viewers` (``{dim}``, ``{dim}_bin``, ``{dim}__{viewer}`` ...)
``viewer_valence_segments`` :mod:`evoke.labels.viewers` (per segment)
``danmaku_seconds``         :func:`evoke.danmaku.windows.window_seconds`
``liris_accede``            :mod:`evoke.datasets.liris_accede`
==========================  =====================================================
"""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl

from evoke.datasets.base import DatasetError
from evoke.labels.common import VCE_EMOTIONS
from evoke.labels.eev import EEV_EXPRESSIONS
from evoke.labels.v2v import LIST_SCHEMA, PAIR_SCHEMA
from evoke.store import atomic_path

F64, I8, I32, STR = pl.Float64, pl.Int8, pl.Int32, pl.String

VCE_SCHEMA = {
    "video_id": STR, "split": STR, "n_annotators": I32, "n_relies_on_audio": I32,
    **{f"intensity_{e}": F64 for e in VCE_EMOTIONS}, **{f"p_{e}": F64 for e in VCE_EMOTIONS},
    "top1": STR, "top2": STR, "top3": STR, "emodiversity": F64, "emodiversity_positive": F64,
    "agreement": F64, "all_zero": pl.Boolean,
}
LIRIS_ACCEDE_SCHEMA = {
    "video_id": STR, "split": STR, "accede_id": pl.Int64, "movie": STR,
    "valence": F64, "arousal": F64, "valence_rank": I32, "arousal_rank": I32,
    "valence_variance": F64, "arousal_variance": F64,
}

# name -> (required columns and dtypes, {column prefix: allowed dtypes} for the variable columns)
TABLES: dict[str, tuple[dict, dict]] = {
    "vce": (VCE_SCHEMA, {}),
    "v2v_pairs": (PAIR_SCHEMA, {}),
    "v2v_lists": (LIST_SCHEMA, {}),
    "eev": ({"video_id": STR, "split": STR, "time_s": F64, "n_samples": I32},
            {e: (I8, F64) for e in EEV_EXPRESSIONS}),
    "viewer_valence": ({"video_id": STR, "split": STR, "time_s": F64, "n_viewers": I32,
                        "valence": F64, "valence_bin": I8},
                       {"valence__": (F64,), "valence_bin__": (I8,)}),
    "viewer_valence_segments": ({"video_id": STR, "split": STR, "segment": I32, "start_s": F64, "end_s": F64,
                                 "text": STR, "n_viewers": I32, "valence": F64, "valence_bin": I8},
                                {"valence__": (F64,), "valence_bin__": (I8,)}),
    "danmaku_seconds": ({"video_id": STR, "time_s": F64}, {"p_": (F64,)}),
    "liris_accede": (LIRIS_ACCEDE_SCHEMA, {}),
}


def check_table(name: str, table: pl.DataFrame, source: str | Path) -> None:
    """Raise :class:`DatasetError` unless ``table`` has the schema of label table ``name``."""
    if name not in TABLES:
        raise DatasetError(f"{source}: no label table named {name!r}; known: {', '.join(sorted(TABLES))}")
    fixed, variable = TABLES[name]
    schema = table.schema
    problems = []
    for col, dtype in fixed.items():
        if col not in schema:
            problems.append(f"no column {col!r}")
        elif schema[col] != dtype and not (schema[col] == pl.Null and table[col].null_count() == table.height):
            problems.append(f"column {col!r} is {schema[col]}, not {dtype}")
    for key, dtypes in variable.items():
        # EEV's expressions are whole column names, the rest prefixes (p_*, valence__*)
        cols = [c for c in schema if c not in fixed and (c == key if name == "eev" else c.startswith(key))]
        problems += [f"column {c!r} is {schema[c]}, not {' or '.join(map(str, dtypes))}"
                     for c in cols if schema[c] not in dtypes]
    if name in ("eev", "danmaku_seconds") and not any(
            c in variable or any(c.startswith(k) for k in variable) for c in schema if c not in fixed):
        problems.append(f"none of the columns {', '.join(variable)}")
    if problems:
        raise DatasetError(f"{source}: not a {name} label table: {'; '.join(problems)}")


def adopt_table(name: str, path: str | Path, out: str | Path) -> int:
    """Check the Parquet table at ``path`` and copy it to ``out`` (atomically); returns its rows."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: label table {name!r} not found")
    try:
        table = pl.read_parquet(path)
    except Exception as exc:  # polars raises many kinds for unreadable files
        raise DatasetError(f"{path}: cannot read label table {name!r} (Parquet expected): "
                           f"{str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}") from exc
    check_table(name, table, path)
    if table.height == 0:
        raise DatasetError(f"{path}: label table {name!r} has no rows")
    with atomic_path(Path(out)) as tmp:
        shutil.copyfile(path, tmp)
    return table.height
