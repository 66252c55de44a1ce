"""CLI: ``evoke train ...`` (one task x head x feature set; writes the run and its saved
``model/``) and ``evoke report ...``."""

from __future__ import annotations

import logging
from pathlib import Path

from evoke import EvokeError
from evoke.cli import _settings, add_settings_argument

log = logging.getLogger(__name__)


def _extractors(text: str) -> list[str]:
    return [e.strip() for e in text.replace("+", ",").split(",") if e.strip()]


def cmd_train(args) -> int:
    if args.action == "describe":
        return cmd_describe(args)
    missing = [o for o, v in (("--dataset", args.dataset), ("--out", args.out)) if not v]
    if missing:
        raise EvokeError(f"evoke train: {' and '.join(missing)} required (only `evoke train describe` goes without)")
    import torch

    from evoke.tasks import run_task

    torch.set_num_threads(max(1, args.threads))
    settings = dict(args.settings or {})
    if args.seed is not None:
        settings["seed"] = args.seed
    labels = dict(kv.split("=", 1) for kv in args.labels or [])
    dataset_dir = args.dataset_dir or Path("results") / args.dataset
    record = run_task(args.task, args.head, _extractors(args.features), dataset_dir, args.out, settings, labels,
                      ingest_settings=args.ingest_settings)
    test = record["metrics"].get("test", {})
    log.info("%s/%s/%s: test %s", record["task"], record["head"], record["feature_set"],
             {k: v for k, v in test.items() if not isinstance(v, dict)})
    return 0


def describe_settings(args) -> tuple[dict, dict]:
    """(the train block, ``features.settings``) for ``describe``: ``--settings`` (the train block,
    as the workflow passes it) or the config file's, which also gives the extractors' settings."""
    import yaml

    config = {}
    if args.config and Path(args.config).is_file():
        config = yaml.safe_load(Path(args.config).read_text(encoding="utf-8")) or {}
    train = dict(args.settings) if args.settings is not None else dict(config.get("train") or {})
    return train, dict((config.get("features") or {}).get("settings") or {})


def describe_branches(args, train: dict) -> tuple[int | None, str | None]:
    """(branches, where the count comes from) of ``describe --head full_multitask``: ``--branches``,
    or with ``--dataset``/``--dataset-dir`` the viewers of the label table training would read
    (``--labels`` overrides it) + the average viewer; (None, None) without either, since training
    takes the count from that table. Other heads: (None, None)."""
    from evoke.tasks import get_task

    if args.head != "full_multitask" or args.head not in get_task(args.task).heads:
        return None, None  # describe_full says which tasks have the head
    if args.branches is not None:
        if args.branches < 1:
            raise EvokeError(f"evoke train describe: --branches must be >= 1, not {args.branches}")
        return args.branches, "--branches"
    if not (args.dataset or args.dataset_dir):
        return None, None
    import polars as pl

    task = get_task(args.task)(train)
    labels = dict(kv.split("=", 1) for kv in args.labels or [])
    path = next(iter(task.label_paths(args.dataset_dir or Path("results") / args.dataset, labels).values()))
    prefix = f"{task.dimension}_bin__"  # a viewer's column, as the task's load reads them
    viewers = [c for c in pl.read_parquet_schema(path) if c.startswith(prefix)]
    return len(viewers) + 1, f"{path}: {len(viewers)} viewer(s) + the average viewer"


def cmd_describe(args) -> int:
    """``evoke train describe``: the full head's network and training set-up, dims from the registry."""
    import json

    from evoke.features import create_extractor
    from evoke.heads.full import describe_full, format_description

    extractors = _extractors(args.features)
    train, feature_settings = describe_settings(args)
    dims = {e: create_extractor(e, feature_settings.get(e)).dim for e in extractors}
    n_branches, branches_from = describe_branches(args, train)
    d = describe_full(args.task, args.head, dims, dict(train.get("full") or {}), n_branches=n_branches,
                      branches_from=branches_from)
    print(json.dumps(d, indent=2) if args.json else format_description(d))
    return 0


def cmd_report(args) -> int:
    from evoke.report import build_report

    dataset_dir = args.dataset_dir or Path("results") / args.dataset
    out = args.out or dataset_dir / "report"
    build_report(dataset_dir, out, inputs=args.inputs or None, dataset=args.dataset, perplexity=args.perplexity,
                 bootstrap=args.bootstrap, bootstrap_seed=args.bootstrap_seed)
    return 0


# the registered tasks (evoke.tasks.TASKS), named here so that building the parser
# does not import torch; run_task rejects any other name with the known ones
TASK_NAMES = ("danmaku_ldl", "eev", "liris_accede", "v2v", "v2v_from_emotions", "vce", "viewer_valence")


def register(sub) -> None:
    p = sub.add_parser("train", help="train one head of one task on one feature set",
                       description="Writes predictions.parquet, metrics.json, model/ (the saved head and its "
                                   "card, for evoke predict) and (full heads) checkpoint/ to --out. "
                       "`evoke train describe --task T --head full --features A,B [--json]` prints the full "
                       "head's network and training set-up instead (dims from the extractor registry, "
                       "settings from --settings or the config's train.full).")
    p.add_argument("action", nargs="?", choices=["describe"],
                   help="describe: print the network and training set-up; train nothing")
    p.add_argument("--task", required=True, choices=TASK_NAMES, help="the task (its labels, loss and metrics)")
    p.add_argument("--head", required=True, choices=["lightgbm", "linear", "full", "full_multitask"],
                   help="the model: pooled-feature LightGBM or linear, or the full PyTorch head")
    p.add_argument("--features", default="", help="extractor names, comma- or +-separated (e.g. colour,motion)")
    p.add_argument("--dataset", help="required to train (describe: the label table whose viewers give "
                                      "full_multitask's branches)")
    p.add_argument("--dataset-dir", type=Path, help="default: results/{dataset}")
    p.add_argument("--out", type=Path, help="required to train")
    p.add_argument("--json", action="store_true", help="describe: print JSON")
    p.add_argument("--branches", type=int,
                   help="describe, full_multitask: viewers + 1 (default: counted in --dataset's label table; "
                        "without either, the parameters are given per branch)")
    p.add_argument("--labels", action="append", metavar="KEY=PATH",
                   help="use this label table instead of the default (e.g. danmaku=labels/x.parquet)")
    p.add_argument("--seed", type=int, help="random seed (default: the settings' seed, 0)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads for LightGBM and torch (default 1)")
    add_settings_argument(p, "train (seed, val_fraction, feature_memory_mb, full, lightgbm, linear)")
    p.add_argument("--ingest-settings", type=_settings, default=None,
                   help="JSON object of the dataset's ingest settings, recorded in model/model.json so that "
                        "evoke predict ingests new videos the same way")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("report", help="collect every trained head's metrics into metrics.json, report.html/.md")
    p.add_argument("--dataset", required=True, help="dataset name (results/{dataset})")
    p.add_argument("--dataset-dir", type=Path, help="default: results/{dataset}")
    p.add_argument("--out", type=Path, help="default: results/{dataset}/report")
    p.add_argument("inputs", nargs="*", type=Path, help="metrics.json files (default: every one under train/)")
    p.add_argument("--perplexity", type=float, default=5.0, help="t-SNE perplexity (small for the demo)")
    p.add_argument("--bootstrap", type=int, default=1000, metavar="N",
                   help="resamples of each run's test set for the 95%% intervals of its metrics (0: none; "
                        "default 1000)")
    p.add_argument("--bootstrap-seed", type=int, default=0, help="seed of the resampling (default 0)")
    p.set_defaults(func=cmd_report)
