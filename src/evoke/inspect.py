"""``evoke inspect PATH``: what is inside an artifact, readable in a terminal.

* **HDF5**: every group and dataset with its shape, dtype, compression and
  attributes; values formatted by kind (booleans as a count of true, floats to
  4 significant digits, ``(T, D)`` features as one line per dimension with its
  name from ``dim_names``: the first step, mean, min and max over the steps).
* **Parquet, CSV, TSV**: the row count, the schema and the first rows; a table
  wider than the terminal is shown one column a row (``--columns`` picks
  columns).
* **JSON**: indented.
* **A folder**: every artifact under it with its size and what it holds.

Nothing is cut silently: whatever is left out (rows, objects, dimensions,
characters of a long value) is said, with the option that shows it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from evoke import EvokeError

ARTIFACT_SUFFIXES = (".h5", ".hdf5", ".parquet", ".csv", ".tsv", ".json", ".html", ".md", ".png", ".log")
MAX_TEXT = 160  # characters of one value before it is cut (and the cut said)


class Limits:
    """How much to show; ``everything`` lifts every limit (``--all``)."""

    def __init__(self, rows: int = 5, objects: int = 60, dims: int = 12, everything: bool = False):
        big = 10**12
        self.rows = rows
        self.objects = big if everything else objects
        self.dims = big if everything else dims
        self.text = big if everything else MAX_TEXT
        self.list_items = big if everything else 8


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit} more characters; --all shows them)"


def _num(v) -> str:
    """One number, readably: integers as they are, floats to 4 significant digits."""
    if isinstance(v, (bool, np.bool_)):
        return "true" if v else "false"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        f = float(v)
        return "nan" if f != f else f"{f:.4g}"
    return str(v)


def _text(v) -> str:
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)


def format_array(a: np.ndarray, limits: Limits) -> str:
    """A 1-D array (or the first row of one) as readable text, saying how much is left out."""
    a = np.asarray(a)
    if a.dtype == bool:
        return f"{int(a.sum())} of {a.size} true"
    items = a.ravel()
    if a.dtype.kind in "OSU":
        shown = [_text(x) for x in items[: limits.list_items]]
    else:
        shown = [_num(x) for x in items[: limits.list_items]]
    more = items.size - len(shown)
    return "[" + ", ".join(shown) + (f", ... {more} more" if more else "") + "]"


def format_value(v, limits: Limits) -> str:
    if isinstance(v, np.ndarray):
        return format_array(v, limits) if v.ndim else format_value(v[()], limits)
    if isinstance(v, (bytes, str)):
        return _cut(_text(v), limits.text)
    return _num(v)


# --- HDF5 ------------------------------------------------------------------------


def _dim_names(obj) -> list[str] | None:
    """``dim_names`` of a dataset's group, else of its file (features shard files)."""
    for holder in (obj.parent, obj.file):
        if "dim_names" in holder.attrs:
            return [_text(x) for x in np.asarray(holder.attrs["dim_names"]).ravel()]
    return None


def _describe_dataset(obj, pad: str, limits: Limits) -> list[str]:
    comp = f", {obj.compression}" if obj.compression else ""
    lines = [f"{pad}{obj.name.rsplit('/', 1)[-1]}: {obj.shape} {obj.dtype}{comp}"]
    if not obj.size:
        return lines + [f"{pad}  (empty)"]
    if obj.dtype == bool:
        data = obj[()]
        per = f" ({', '.join(f'{int(c)}' for c in data.reshape(data.shape[0], -1).sum(0))} per slot)" \
            if data.ndim == 2 and data.shape[1] <= limits.list_items else ""
        return lines + [f"{pad}  {int(data.sum())} of {data.size} true{per}"]
    if obj.ndim <= 1:
        return lines + [f"{pad}  {format_array(obj[: limits.list_items + 1], limits)}"
                        + (f" of {obj.shape[0]}" if obj.shape[0] > limits.list_items else "")]
    if obj.ndim == 2 and obj.dtype.kind in "fiu" and obj.shape[0] * obj.shape[1] <= 50_000_000:
        data = obj[()].astype(np.float64)
        names = _dim_names(obj)
        if names is None or len(names) != data.shape[1]:
            names = [f"[{j}]" for j in range(data.shape[1])]
        width = min(max(len("dimension"), *(len(n) for n in names)), 40)
        lines.append(f"{pad}  {'dimension':<{width}}  {'step 0':>10} {'mean':>10} {'min':>10} {'max':>10}")
        n = min(limits.dims, data.shape[1])
        for j in range(n):
            col = data[:, j]
            lines.append(f"{pad}  {names[j]:<{width}}  {_num(col[0]):>10} {_num(col.mean()):>10} "
                         f"{_num(col.min()):>10} {_num(col.max()):>10}")
        if data.shape[1] > n:
            lines.append(f"{pad}  ... {data.shape[1] - n} more dimensions (--all shows every one)")
        return lines
    first = obj[0]
    return lines + [f"{pad}  [0]: mean {_num(np.mean(first))}, min {_num(np.min(first))}, "
                    f"max {_num(np.max(first))} over {first.size} values"]


def describe_hdf5(path: Path, limits: Limits | None = None) -> str:
    import h5py

    limits = limits or Limits()
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise EvokeError(f"{path}: not a readable HDF5 file: {exc}") from exc
    lines: list[str] = []
    with f:
        lines.append(f"{path} (HDF5, {len(f)} top-level members)")
        for k, v in f.attrs.items():
            lines.append(f"  @{k} = {format_value(v, limits)}")
        count = 0
        left: dict[str, int] = {}

        def visit(name, obj):
            nonlocal count
            count += 1
            if count > limits.objects:
                kind = "datasets" if isinstance(obj, h5py.Dataset) else "groups"
                left[kind] = left.get(kind, 0) + 1
                return
            pad = "  " * (name.count("/") + 1)
            if isinstance(obj, h5py.Dataset):
                lines.extend(_describe_dataset(obj, pad, limits))
            else:
                lines.append(f"{pad}{name.rsplit('/', 1)[-1]}/ (group, {len(obj)} members)")
            for k, v in obj.attrs.items():
                lines.append(f"{pad}  @{k} = {format_value(v, limits)}")

        f.visititems(visit)
        if left:
            what = ", ".join(f"{n} {k}" for k, n in sorted(left.items()))
            lines.append(f"  ... {what} more not shown (--all shows everything)")
    return "\n".join(lines)


# --- tables -----------------------------------------------------------------------


def _terminal_width() -> int:
    return shutil.get_terminal_size((120, 24)).columns


def _records(df, limits: Limits) -> list[str]:
    """Rows one column a line: ``name (dtype)  value``."""
    labels = {c: f"{c} ({dtype})" for c, dtype in df.schema.items()}
    width = max(len(label) for label in labels.values())
    lines = []
    for i, row in enumerate(df.iter_rows(named=True)):
        lines.append(f"row {i}:")
        for col, v in row.items():
            shown = "null" if v is None else _cut(json.dumps(v, default=str) if isinstance(v, (list, dict))
                                                  else _num(v) if not isinstance(v, str) else v, limits.text)
            lines.append(f"  {labels[col]:<{width}}  {shown}")
    return lines


def describe_table(path: Path, rows: int = 5, columns: list[str] | None = None,
                   limits: Limits | None = None) -> str:
    import polars as pl

    limits = limits or Limits(rows=rows)
    try:
        if path.suffix.lower() == ".parquet":
            import pyarrow.parquet as pq

            n = pq.ParquetFile(path).metadata.num_rows
            schema = pl.read_parquet_schema(path)
            df = pl.read_parquet(path, n_rows=rows, columns=_pick(columns, list(schema), path))
            kind = "Parquet"
        else:
            full = pl.read_csv(path, separator="\t" if path.suffix.lower() == ".tsv" else ",")
            schema, n, kind = full.schema, full.height, path.suffix.lower().lstrip(".").upper()
            df = full.select(_pick(columns, full.columns, path)).head(rows)
    except EvokeError:
        raise
    except Exception as exc:  # many reader error types; all mean "unreadable"
        raise EvokeError(f"{path}: not a readable table: {exc}") from exc
    head = [f"{path} ({kind}): {n} rows, {len(schema)} columns"]
    lines = head + ["schema:"] + [f"  {name}: {dtype}" for name, dtype in schema.items()]
    if not df.height:
        return "\n".join(lines + ["(no rows)"])
    shown = f"first {df.height} of {n} rows" + (" (-n/--rows shows more)" if n > df.height else "")
    if columns:
        shown += f", columns {', '.join(df.columns)}"
    # polars takes widths up to 65535; the terminal decides below whether the table is used
    with pl.Config(tbl_cols=-1, tbl_rows=-1, tbl_width_chars=65000, fmt_str_lengths=min(limits.text, 65000),
                   fmt_table_cell_list_len=limits.list_items, float_precision=4):
        table = str(df)
    if max(len(line) for line in table.splitlines()) <= _terminal_width():
        return "\n".join(lines + [shown + ":", table])
    # too wide: each row one column a line, with the column's type (the schema once, in place)
    return "\n".join(head + [shown + ", one column a line (wider than the terminal; --columns "
                             "picks columns):", *_records(df, limits)])


def _pick(columns: list[str] | None, available: list[str], path: Path) -> list[str] | None:
    if not columns:
        return None if path.suffix.lower() == ".parquet" else available
    unknown = [c for c in columns if c not in available]
    if unknown:
        raise EvokeError(f"{path}: no column {', '.join(unknown)} (columns: {', '.join(available)})")
    return columns


# --- folders and dispatch ----------------------------------------------------------


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def _holds(path: Path) -> str:
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            meta = pq.ParquetFile(path).metadata
            return f"{meta.num_rows} rows, {meta.num_columns} columns"
        if suffix in (".h5", ".hdf5"):
            import h5py

            with h5py.File(path, "r") as f:
                return f"{len(f)} groups"
    except Exception:  # an unreadable artifact is listed as such, the listing goes on
        return "unreadable"
    return ""


def describe_folder(path: Path, limits: Limits | None = None) -> str:
    """Every artifact under ``path`` (sorted, relative paths) with its size and contents."""
    limits = limits or Limits()
    found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in ARTIFACT_SUFFIXES
                   and not any(part.startswith(".") for part in p.relative_to(path).parts))
    total = sum(p.stat().st_size for p in found)
    lines = [f"{path}/ (folder): {len(found)} artifacts, {_size(total)}"]
    show = found if len(found) <= limits.objects else found[: limits.objects]
    width = max((len(str(p.relative_to(path))) for p in show), default=0)
    for p in show:
        lines.append(f"  {str(p.relative_to(path)):<{width}}  {_size(p.stat().st_size):>9}  {_holds(p)}".rstrip())
    if len(found) > len(show):
        lines.append(f"  ... {len(found) - len(show)} more artifacts (--all lists them)")
    return "\n".join(lines)


def describe(path: str | Path, rows: int = 5, columns: list[str] | None = None,
             everything: bool = False) -> str:
    """A human-readable description of an evoke artifact or a folder of them."""
    path = Path(path)
    limits = Limits(rows=rows, everything=everything)
    if not path.exists():
        raise EvokeError(f"{path}: no such file")
    if path.is_dir():
        return describe_folder(path, limits)
    suffix = path.suffix.lower()
    if suffix in (".h5", ".hdf5"):
        return describe_hdf5(path, limits)
    if suffix in (".parquet", ".csv", ".tsv"):
        return describe_table(path, rows, columns, limits)
    if suffix == ".json":
        text = json.dumps(json.loads(path.read_text(encoding="utf-8")), indent=1)
        if everything or len(text) <= 20_000:
            return text
        return text[:20_000] + f"\n... {len(text) - 20_000} more characters (--all shows them)"
    raise EvokeError(f"{path}: don't know how to inspect '{suffix}' files (.h5, .parquet, .csv, .tsv, "
                     ".json, or a folder)")


def cmd_inspect(args) -> int:
    columns = [c.strip() for c in args.columns.split(",") if c.strip()] if args.columns else None
    for p in args.paths:
        print(describe(p, args.rows, columns, args.all), flush=True)
    return 0


def register(sub) -> None:
    p = sub.add_parser("inspect", help="show what an HDF5/Parquet artifact (or a results folder) holds",
                       description="Shapes, dtypes, attributes and formatted values of HDF5 files; schema "
                       "and first rows of Parquet/CSV tables (one column a row when wider than the "
                       "terminal); every artifact of a folder. Whatever is left out is said.")
    p.add_argument("paths", nargs="+", type=Path, help="HDF5, Parquet, CSV or JSON files, or results folders")
    p.add_argument("-n", "--rows", type=int, default=5, help="rows of a table to show (default 5)")
    p.add_argument("--columns", help="comma-separated columns of a table to show (default all)")
    p.add_argument("--all", action="store_true",
                   help="show everything: every object, dimension, artifact and character")
    p.set_defaults(func=cmd_inspect)

