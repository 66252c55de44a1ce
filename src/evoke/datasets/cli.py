"""CLI: ``evoke import FORMAT SOURCE --out DIR`` and ``evoke tables check NAME TABLE``."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

log = logging.getLogger(__name__)

_COMMON = ("format", "source", "out", "strict", "func", "command", "verbose", "quiet")


def cmd_import(args) -> int:
    from evoke.datasets import run_import

    options = {k: v for k, v in vars(args).items() if k not in _COMMON}
    if options.get("dataset") is None:
        options["dataset"] = args.format.replace("-", "_")
    record = run_import(args.format, args.source, args.out, strict=args.strict, **options)
    drops = record["dropped"]["counts"]
    print(f"{args.out}: {record['videos']} videos {record['splits']}, tables {record['tables']}; "
          f"dropped {drops or 'nothing'}; run: snakemake --cores 4 --configfile {args.out / 'config.yaml'}")
    return 0


def cmd_tables_check(args) -> int:
    from evoke.datasets.tables import adopt_table, check_table

    if args.out is None:
        import polars as pl

        check_table(args.name, pl.read_parquet(args.table), args.table)
        print(f"{args.table}: a valid {args.name} table")
        return 0
    n = adopt_table(args.name, args.table, args.out)
    log.info("%s: %d rows, a valid %s table, written to %s", args.table, n, args.name, args.out)
    return 0


def register(sub) -> None:
    from evoke.datasets import IMPORTERS
    from evoke.datasets.tables import TABLES

    p = sub.add_parser(
        "import", help="a released dataset (vce, v2v, eev, liris-accede, deap, cognimuse) to a manifest, "
                       "label tables and a config",
        description="Turn the folder of a released dataset into DIR/manifest.csv, DIR/labels/*.parquet and "
                    "DIR/config.yaml (run it with: snakemake --cores 4 --configfile DIR/config.yaml). "
                    "evoke import FORMAT --help describes a format's released files and what comes out.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    fmt = p.add_subparsers(dest="format", metavar="FORMAT", required=True)
    for name in sorted(IMPORTERS):
        cls = IMPORTERS[name]
        q = fmt.add_parser(name, help=cls.description, description=sys.modules[cls.__module__].__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        q.add_argument("source", type=Path, metavar="SOURCE", help="the dataset's folder as downloaded")
        q.add_argument("--out", type=Path, required=True, metavar="DIR", help="where the dataset folder goes")
        q.add_argument("--dataset", help=f"dataset name in the config (results/NAME/; default {name.replace('-', '_')})")
        q.add_argument("--strict", action="store_true", help="stop when any record would be dropped")
        cls.add_arguments(q)
        q.set_defaults(func=cmd_import)

    p = sub.add_parser("tables", help="check pre-built label tables (labels.tables) against their schemas")
    t = p.add_subparsers(dest="tables_command", metavar="COMMAND", required=True)
    q = t.add_parser("check", help="check one table; with --out also copy it there (what the labels stage does)")
    q.add_argument("name", choices=sorted(TABLES), help="the table's name (its schema)")
    q.add_argument("table", type=Path, help="the Parquet table")
    q.add_argument("--out", type=Path, help="copy the checked table here (atomically)")
    q.set_defaults(func=cmd_tables_check)
