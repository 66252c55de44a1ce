"""``evoke danmaku ...``: parse, train, classify, the labelling loop, windows.

::

    evoke danmaku parse FILE... --out comments.parquet          # one or more files
    evoke danmaku parse --probe probe.parquet --dataset D --out comments.parquet   # the workflow
    evoke danmaku train --corpus corpus.csv --out MODEL_DIR [--head light|bert] [--label-map a=b,...]
                        [--split 8:1:1] [--emotions joy,sadness,...]
    evoke danmaku classify --model MODEL_DIR --comments comments.parquet --out scored.parquet
    evoke danmaku review --scored scored.parquet --labelled auto.parquet --queue queue.csv
    evoke danmaku accept --labelled auto.parquet --queue queue.csv --out labelled.parquet
    evoke danmaku train --corpus corpus.csv --extra labelled.parquet --out MODEL_DIR2
    evoke danmaku windows --scored scored.parquet --window 5 --out windows.parquet [--seconds-out S]
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import polars as pl

from evoke.danmaku import EMOTIONS
from evoke.danmaku.parse import DanmakuError, DanmakuParseConfig
from evoke.labels.common import Dropped, LabelError, VideoIndex, load_table, parse_list
from evoke.store import FAILURE_SCHEMA, dataset_dir, merge_failures, write_parquet

log = logging.getLogger("evoke.danmaku")


def _parse_config(args) -> DanmakuParseConfig:
    changes = {"collapse_spam": False if args.no_collapse else None, "max_run": args.max_run,
               "max_bytes": args.max_bytes}
    if args.keep_modes:
        changes["keep_modes"] = tuple(parse_list(args.keep_modes))
    return DanmakuParseConfig().replace(**changes)


def cmd_parse(args) -> int:
    from evoke.danmaku.parse import parse_and_clean, parse_probe_videos

    config = _parse_config(args)
    dropped = Dropped()
    if args.probe is not None:
        if args.files:
            raise DanmakuError("give danmaku files or --probe, not both")
        if not args.dataset:
            raise DanmakuError("--probe needs --dataset (danmaku paths are relative to results/{dataset})")
        probe = load_table(args.probe, "probe table", floats=("duration_s",))
        ddir = dataset_dir(args.dataset, args.results)
        comments, failures = parse_probe_videos(probe, ddir, config, dropped)
        write_parquet(failures, args.failures or ddir / "labels" / "failures.parquet")
        merge_failures(ddir)
        if failures.height:
            log.warning("danmaku: %d files could not be parsed (see %s/failures.parquet)", failures.height, ddir)
    else:
        if not args.files:
            raise DanmakuError("give one or more danmaku files, or --probe")
        if args.video_id and len(args.files) > 1:
            raise DanmakuError("--video-id names one file's video; give one file")
        frames, failed = [], []
        for f in args.files:
            try:
                frames.append(parse_and_clean(f, args.video_id, config, args.duration, args.format,
                                              args.encoding, dropped))
            except LabelError as exc:
                if len(args.files) == 1:
                    raise
                log.error("%s", exc)  # one file's problem: the others go on
                failed.append({"video_id": f.stem, "stage": "labels", "shard": None, "error": f"danmaku: {exc}"})
        if not frames:
            raise DanmakuError(f"none of the {len(args.files)} danmaku files could be parsed")
        comments = pl.concat(frames)
        if args.failures:
            write_parquet(pl.DataFrame(failed, schema=FAILURE_SCHEMA), args.failures)
        if failed:
            log.warning("danmaku: %d of %d files could not be parsed", len(failed), len(args.files))
    dropped.check(args.strict, args.probe or ", ".join(map(str, args.files)))
    write_parquet(comments, args.out)
    log.info("danmaku: %d comments of %d videos -> %s", comments.height, comments["video_id"].n_unique(), args.out)
    if dropped:
        log.info("danmaku: dropped %d: %s", dropped.total, dropped.summary())
    return 0


def _fractions(text: str) -> tuple[float, float, float]:
    try:
        parts = tuple(float(x) for x in text.replace(":", ",").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not train,val,test fractions (e.g. 0.8,0.1,0.1)") from None
    if len(parts) != 3 or sum(parts) <= 0:
        raise argparse.ArgumentTypeError(f"'{text}' is not three fractions (e.g. 0.8,0.1,0.1 or 8:1:1)")
    return tuple(x / sum(parts) for x in parts)


def cmd_train(args) -> int:
    from evoke.danmaku.classify import parse_label_map, read_corpus, train_model
    from evoke.danmaku.loop import labelled_from_file

    label_map = parse_label_map(args.label_map)
    parts = []
    if args.corpus:
        parts.append(read_corpus(args.corpus, label_map, args.text_column, args.label_column, args.encoding))
    for extra in args.extra or ():
        lab = labelled_from_file(extra)
        parts.append(lab.select("text", *[pl.col(f"y_{e}").cast(pl.Int8) for e in EMOTIONS]))
    if not parts:
        raise DanmakuError("give --corpus and/or --extra")
    data = pl.concat(parts)
    options = {}
    if args.head == "bert":
        options = {k: v for k, v in {"pretrained": args.pretrained, "epochs": args.epochs,
                                     "batch_size": args.batch_size, "lr": args.lr,
                                     "max_length": args.max_length, "device": args.device}.items()
                   if v is not None}
    elif args.C is not None:
        options["C"] = args.C
    emotions = [e.strip().lower() for e in parse_list(args.emotions)] if args.emotions else None
    model = train_model(data, args.head, args.split, args.seed, label_map, emotions=emotions, **options)
    model.meta["corpus"] = str(args.corpus) if args.corpus else None
    model.meta["extra"] = [str(p) for p in args.extra or ()]
    model.save(args.out)
    if model.meta["missing_emotions"]:
        log.warning("danmaku: emotions the corpus cannot train, left out: %s",
                    json.dumps(model.meta["missing_emotions"]))
    m = model.meta.get("metrics")
    if m:
        log.info("danmaku %s head: test macro AUC %.3f, macro accuracy %.3f; per emotion %s", args.head,
                 m["macro_auc"] or float("nan"), m["macro_accuracy"] or float("nan"),
                 json.dumps({e: {k: round(v[k], 3) if v[k] is not None else None for k in ("auc", "accuracy")}
                             for e, v in m["per_emotion"].items()}))
    log.info("danmaku: model trained on %d texts in %.1f s -> %s", model.meta["n_train"],
             model.meta["train_seconds"], args.out)
    return 0


def cmd_classify(args) -> int:
    from evoke.danmaku.classify import load_model, score_comments

    model = load_model(args.model)
    comments = load_table(args.comments, "comments")
    scored = score_comments(model, comments)
    write_parquet(scored, args.out)
    log.info("danmaku: scored %d comments with the %s head -> %s", scored.height, model.head_name, args.out)
    return 0


def cmd_review(args) -> int:
    from evoke.danmaku.loop import labelled_counts, propose_labels, write_queue

    scored = load_table(args.scored, "scored comments", floats=tuple(f"p_{e}" for e in EMOTIONS))
    labelled, queue = propose_labels(scored, args.accept, args.reject)
    write_parquet(labelled, args.labelled)
    write_queue(queue, args.queue)
    log.info("danmaku review: %d distinct texts, %d decisions queued for review -> %s; automatic labels %s -> %s",
             labelled.height, queue.height, args.queue, json.dumps(labelled_counts(labelled)), args.labelled)
    return 0


def cmd_accept(args) -> int:
    from evoke.danmaku.loop import accept_reviews, labelled_counts, labelled_from_file, read_queue

    labelled = labelled_from_file(args.labelled)
    queue = read_queue(args.queue)
    dropped = Dropped()
    out = accept_reviews(labelled, queue, args.queue, dropped)
    dropped.check(args.strict, args.queue)
    write_parquet(out, args.out)
    log.info("danmaku accept: labelled set %s -> %s", json.dumps(labelled_counts(out)), args.out)
    return 0


def cmd_windows(args) -> int:
    from evoke.danmaku.windows import DanmakuWindowsBuilder, WindowsConfig

    cfg = WindowsConfig().replace(window_s=args.window, threshold=args.threshold, soft=True if args.soft else None,
                                  rate_hz=args.rate_hz)
    videos = VideoIndex.from_file(args.videos) if args.videos else None
    result = DanmakuWindowsBuilder(cfg).run(videos, scored=args.scored, probe=args.probe)
    write_parquet(result.table, args.out)
    if args.seconds_out:
        write_parquet(result.extra["seconds"], args.seconds_out)
    log.info("danmaku windows: %d windows (%d empty) -> %s", result.info["n_windows"], result.info["n_empty"],
             args.out)
    return 0


def register(sub) -> None:
    dm = sub.add_parser("danmaku", help="danmaku comments: parse, classify, label windows",
                        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ds = dm.add_subparsers(dest="sub", required=True, metavar="COMMAND")

    p = ds.add_parser("parse", help="Bilibili XML / Niconico JSON / CSV -> cleaned comments table")
    p.add_argument("files", nargs="*", type=Path, help="danmaku files (the video id is the file stem)")
    p.add_argument("--probe", type=Path, help="the ingest stage's probe.parquet: parse every video's danmaku file")
    p.add_argument("--dataset", help="with --probe: danmaku paths are relative to results/{dataset}")
    p.add_argument("--results", type=Path, default=Path("results"), help="results root (default results)")
    p.add_argument("--failures", type=Path,
                   help="failures table: with --probe default results/{dataset}/labels/failures.parquet; "
                   "with several files, the files that could not be parsed (the others go on)")
    p.add_argument("--out", type=Path, required=True, help="comments table (.parquet)")
    p.add_argument("--video-id", help="video id of a single file (default: its stem)")
    p.add_argument("--duration", type=float, help="video duration, s: later comments are dropped")
    p.add_argument("--format", choices=["bilibili", "niconico", "csv"], help="default: from suffix / content")
    p.add_argument("--encoding", help="text encoding (default: detected)")
    p.add_argument("--keep-modes", help="modes to keep (default scroll,top,bottom,reverse)")
    p.add_argument("--no-collapse", action="store_true", help="keep a user's repeated comments")
    p.add_argument("--max-run", type=int, help="shorten runs of one character to this (default 4)")
    p.add_argument("--max-bytes", type=int, help="refuse larger files (default 256 MiB)")
    p.add_argument("--strict", action="store_true", help="fail when any comment would be dropped")
    p.set_defaults(func=cmd_parse)

    p = ds.add_parser("train", help="train the six emotion classifiers on a text,label corpus")
    p.add_argument("--corpus", type=Path, help="CSV/TSV text,label (or 标签,文本)")
    p.add_argument("--extra", type=Path, nargs="*", help="labelled sets from `danmaku accept` (.parquet)")
    p.add_argument("--out", type=Path, required=True, help="model folder")
    p.add_argument("--head", choices=["light", "bert"], default="light",
                   help="light: character n-grams + logistic regression (CPU, seconds); bert: a Chinese BERT")
    p.add_argument("--label-map", help="corpus label to emotion, e.g. happiness=joy,anger=disgust,none=none")
    p.add_argument("--text-column", help="the corpus's text column (default: text, or 文本)")
    p.add_argument("--label-column", help="the corpus's label column (default: label, or 标签)")
    p.add_argument("--encoding", help="text encoding of the corpus (default: detected)")
    p.add_argument("--split", type=_fractions, default=(0.8, 0.1, 0.1),
                   help="train,validation,test fractions: the model is chosen on validation and scored on test "
                        "(default 0.8,0.1,0.1, the danmaku paper's 8:1:1; 1,0,0 = train on everything, unscored)")
    p.add_argument("--emotions", help="emotions to train, comma-separated (default: every one of the six that "
                                      "the corpus has examples of; the others are named and left out)")
    p.add_argument("--seed", type=int, default=0, help="seed of the split and of training (default 0)")
    p.add_argument("--C", type=float, help="light: inverse regularisation strength (default 4)")
    p.add_argument("--pretrained", help="bert: model name or local folder (default hfl/chinese-bert-wwm-ext)")
    p.add_argument("--epochs", type=int, help="bert: epochs (default 3)")
    p.add_argument("--batch-size", type=int, help="bert: batch size (default 32)")
    p.add_argument("--lr", type=float, help="bert: learning rate (default 3e-5)")
    p.add_argument("--max-length", type=int, help="bert: tokens per comment (default 64)")
    p.add_argument("--device", help="bert: torch device (default cuda when present)")
    p.set_defaults(func=cmd_train)

    p = ds.add_parser("classify", help="score comments: one p_{emotion} column per emotion")
    p.add_argument("--model", type=Path, required=True, help="a model folder from `danmaku train`")
    p.add_argument("--comments", type=Path, required=True, help="comments table from `danmaku parse`")
    p.add_argument("--out", type=Path, required=True, help="scored comments (.parquet)")
    p.set_defaults(func=cmd_classify)

    p = ds.add_parser("review", help="labelling loop: automatic labels + a queue for a person")
    p.add_argument("--scored", type=Path, required=True, help="scored comments from `danmaku classify`")
    p.add_argument("--labelled", type=Path, required=True, help="automatic labels (.parquet)")
    p.add_argument("--queue", type=Path, required=True, help="review queue (.csv) to fill in")
    p.add_argument("--accept", type=float, default=0.8, help="p above this: positive (default 0.8)")
    p.add_argument("--reject", type=float, default=0.4, help="p below this: negative (default 0.4)")
    p.set_defaults(func=cmd_review)

    p = ds.add_parser("accept", help="labelling loop: merge a reviewed queue into the labelled set")
    p.add_argument("--labelled", type=Path, required=True, help="automatic labels from `danmaku review`")
    p.add_argument("--queue", type=Path, required=True, help="the review queue with its decision column filled in")
    p.add_argument("--out", type=Path, required=True, help="the labelled set (.parquet), for `danmaku train --extra`")
    p.add_argument("--strict", action="store_true", help="fail on a decision that cannot be read")
    p.set_defaults(func=cmd_accept)

    p = ds.add_parser("windows", help="scored comments -> per-window emotion distributions")
    p.add_argument("--scored", type=Path, required=True, help="scored comments from `danmaku classify`")
    p.add_argument("--out", type=Path, required=True, help="windows table (.parquet)")
    p.add_argument("--window", type=float, help="window length, s (default 5)")
    p.add_argument("--threshold", type=float, help="p at which a comment expresses an emotion (default 0.5)")
    p.add_argument("--soft", action="store_true", help="sum probabilities instead of counting decisions")
    p.add_argument("--probe", type=Path,
                   help="probe.parquet: where each video ends (how far it decodes, else its duration_s): "
                        "windows up to there")
    p.add_argument("--videos", type=Path, help="only these videos (a table with video_id)")
    p.add_argument("--seconds-out", type=Path, help="also the 1 Hz frames with their window's label (.parquet)")
    p.add_argument("--rate-hz", type=float, help="frame rate of --seconds-out (default 1, the frames stage's)")
    p.set_defaults(func=cmd_windows)
