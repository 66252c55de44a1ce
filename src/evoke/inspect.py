"""``evoke inspect PATH``: what is inside an artifact.

HDF5: every group and dataset with shape, dtype, attributes and a few values.
Parquet: schema, row count and the first rows. Also CSV and JSON for
convenience.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from evoke import EvokeError


def _fmt_value(v) -> str:
    if isinstance(v, bytes):
        v = v.decode("utf-8", "replace")
    if isinstance(v, np.ndarray):
        return np.array2string(v, threshold=8, edgeitems=3, precision=4)
    if isinstance(v, (np.floating, float)):
        return f"{float(v):.6g}"
    return str(v)


def describe_hdf5(path: Path, max_values: int = 6, max_items: int = 50) -> str:
    import h5py

    lines: list[str] = []
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise EvokeError(f"{path}: not a readable HDF5 file: {exc}") from exc
    with f:
        lines.append(f"{path} (HDF5)")
        for k, v in f.attrs.items():
            lines.append(f"  @{k} = {_fmt_value(v)}")
        count = 0

        def visit(name, obj):
            nonlocal count
            count += 1
            if count > max_items:
                return
            depth = name.count("/") + 1
            pad = "  " * depth
            if isinstance(obj, h5py.Dataset):
                extra = f" compression={obj.compression}" if obj.compression else ""
                lines.append(f"{pad}{name.split('/')[-1]}: dataset {obj.shape} {obj.dtype}{extra}")
                if obj.size:
                    if obj.ndim <= 1:
                        sample = obj[: max_values]
                    else:
                        first = obj[0]
                        sample = f"[0] mean={float(np.mean(first)):.4g} min={np.min(first)} max={np.max(first)}"
                    lines.append(f"{pad}  values: {_fmt_value(sample)}")
            else:
                lines.append(f"{pad}{name.split('/')[-1]}/ (group, {len(obj)} members)")
            for k, v in obj.attrs.items():
                lines.append(f"{pad}  @{k} = {_fmt_value(v)}")

        f.visititems(visit)
        if count > max_items:
            lines.append(f"  ... {count - max_items} more objects")
    return "\n".join(lines)


def describe_table(path: Path, rows: int = 5) -> str:
    import polars as pl

    try:
        if path.suffix.lower() == ".parquet":
            import pyarrow.parquet as pq

            meta = pq.ParquetFile(path).metadata
            df = pl.read_parquet(path, n_rows=rows)
            n = meta.num_rows
            kind = "Parquet"
        else:
            df_all = pl.read_csv(path, separator="\t" if path.suffix.lower() == ".tsv" else ",")
            df, n, kind = df_all.head(rows), df_all.height, "CSV"
    except Exception as exc:  # many reader error types; all mean "unreadable"
        raise EvokeError(f"{path}: not a readable table: {exc}") from exc
    lines = [f"{path} ({kind}): {n} rows, {len(df.columns)} columns", "schema:"]
    lines += [f"  {name}: {dtype}" for name, dtype in df.schema.items()]
    with pl.Config(tbl_cols=-1, tbl_width_chars=160, fmt_str_lengths=40):
        lines += [f"first {min(rows, n)} rows:", str(df)]
    return "\n".join(lines)


def describe(path: str | Path, rows: int = 5) -> str:
    """A human-readable description of an evoke artifact."""
    path = Path(path)
    if not path.exists():
        raise EvokeError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix in (".h5", ".hdf5"):
        return describe_hdf5(path)
    if suffix in (".parquet", ".csv", ".tsv"):
        return describe_table(path, rows)
    if suffix == ".json":
        return json.dumps(json.loads(path.read_text(encoding="utf-8")), indent=1)[:5000]
    raise EvokeError(f"{path}: don't know how to inspect '{suffix}' files (.h5, .parquet, .csv, .json)")


def cmd_inspect(args) -> int:
    for p in args.paths:
        print(describe(p, args.rows))
    return 0


def register(sub) -> None:
    p = sub.add_parser("inspect", help="show what an HDF5/Parquet artifact holds")
    p.add_argument("paths", nargs="+", type=Path, help="HDF5, Parquet, CSV or JSON files, or results folders")
    p.add_argument("-n", "--rows", type=int, default=5, help="rows of a table to show")
    p.set_defaults(func=cmd_inspect)
