"""``evoke labels ...``: the label builders on the command line.

Every command reads raw annotation files, runs one registered builder and
writes its table atomically as Parquet. Records that cannot be used are
dropped, counted by reason and logged (``--report FILE.json`` also writes the
counts); ``--strict`` makes any dropped record an error. ``--videos`` names a
manifest, probe table or any table with ``video_id`` (and ``split``):
annotations for other videos are dropped and the ``split`` column filled in.

Commands: ``vce``, ``v2v-votes``, ``v2v-lists``, ``v2v-sample``, ``eev``,
``continuous`` (alias ``viewers``), ``list``.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from evoke.labels import LABEL_BUILDERS, get_label_builder
from evoke.labels.common import BuildResult, LabelError, VideoIndex, parse_list
from evoke.store import atomic_path, write_parquet

log = logging.getLogger("evoke.labels")


def finish(result: BuildResult, out: Path, args, builder: str, source) -> int:
    """Strict check, write the table (and report), log what happened."""
    result.dropped.check(getattr(args, "strict", False), source)
    write_parquet(result.table, out)
    log.info("%s: %d rows -> %s", builder, result.table.height, out)
    if result.dropped:
        log.warning("%s: dropped %d records: %s", builder, result.dropped.total, result.dropped.summary())
    report = getattr(args, "report", None)
    if report:
        with atomic_path(report) as tmp:
            tmp.write_text(json.dumps({"builder": builder, "inputs": str(source), "output": str(out),
                                       "rows": result.table.height, "info": result.info,
                                       "dropped": result.dropped.to_dict()}, indent=1, default=str),
                           encoding="utf-8")
    return 0


def _videos(args) -> VideoIndex | None:
    return VideoIndex.from_file(args.videos) if getattr(args, "videos", None) else None


def _proportions(text: str) -> tuple[tuple[str, float], ...]:
    out = []
    for item in text.split(","):
        if "=" not in item:
            raise argparse.ArgumentTypeError(f"'{item}' is not kind=share (e.g. informative=0.6)")
        k, v = item.split("=", 1)
        try:
            out.append((k.strip(), float(v)))
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{v}' is not a number") from None
    return tuple(out)


def _range(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not low,high (e.g. -1,1)") from None
    return lo, hi


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a comma-separated list of integers") from None


# --------------------------------------------------------------------------- commands


def cmd_vce(args) -> int:
    changes = {"audio": args.audio, "max_audio_share": args.max_audio_share,
               "empty_response": args.empty_response, "all_zero": args.all_zero,
               "min_annotators": args.min_annotators, "min_annotator_agreement": args.min_annotator_agreement,
               "min_annotator_videos": args.min_annotator_videos}
    if args.emotions:
        emotions = tuple(e.lower() for e in parse_list(args.emotions))
        changes["emotions"] = emotions
        from evoke.labels.common import VCE_POSITIVE
        changes["positive_emotions"] = tuple(e for e in VCE_POSITIVE if e in emotions)
    if args.positive:
        changes["positive_emotions"] = tuple(e.lower() for e in parse_list(args.positive))
    cls = get_label_builder("vce")
    builder = cls(cls.config_type().replace(**changes))
    result = builder.run(_videos(args), responses=args.responses, encoding=args.encoding)
    if args.annotators_out and "annotators" in result.extra:
        write_parquet(result.extra["annotators"], args.annotators_out)
    return finish(result, args.out, args, "vce", args.responses)


def cmd_v2v_votes(args) -> int:
    cls = get_label_builder("v2v_pairs")
    builder = cls(cls.config_type().replace(agree=args.agree, of=args.of, min_votes=args.min_votes))
    result = builder.run(_videos(args), votes=args.votes, encoding=args.encoding)
    log.info("v2v: %s", result.info)
    return finish(result, args.out, args, "v2v_pairs", args.votes)


def cmd_v2v_lists(args) -> int:
    cls = get_label_builder("v2v_lists")
    builder = cls(cls.config_type().replace(lengths=args.lengths, max_lists=args.max_lists, seed=args.seed))
    result = builder.run(pairs=args.pairs)
    log.info("v2v lists: %s", result.info)
    return finish(result, args.out, args, "v2v_lists", args.pairs)


def cmd_v2v_sample(args) -> int:
    cls = get_label_builder("v2v_sample")
    changes = {"n": args.n, "seed": args.seed, "proportions": args.proportions,
               "candidate_factor": args.candidate_factor}
    cfg = cls.config_type().replace(**changes)
    if args.balance_by is not None:
        import dataclasses
        cfg = dataclasses.replace(cfg, balance_by=None if args.balance_by in ("", "none") else args.balance_by)
    result = cls(cfg).run(_videos(args), labels=args.labels, predictions=args.predictions, exclude=args.exclude,
                          video_table=args.videos)
    log.info("v2v sample: %s", result.info)
    return finish(result, args.out, args, "v2v_sample", args.labels)


def cmd_eev(args) -> int:
    cls = get_label_builder("eev")
    changes = {"method": args.method, "threshold": args.threshold, "window_s": args.window, "stride_s": args.stride}
    if args.expressions:
        changes["expressions"] = tuple(parse_list(args.expressions))
    result = cls(cls.config_type().replace(**changes)).run(_videos(args), csv=args.csv, encoding=args.encoding,
                                                               probe=args.probe)
    return finish(result, args.out, args, "eev", args.csv)


def cmd_continuous(args) -> int:
    cls = get_label_builder("continuous")
    changes = {"value_range": args.range, "binarise_at": args.binarise_at, "segment_s": args.segment_length}
    if args.dat_columns:
        changes["dat_columns"] = tuple(parse_list(args.dat_columns))
    builder = cls(cls.config_type().replace(**changes))
    result = builder.run(_videos(args), ratings=args.ratings, subtitles=args.subtitles or (),
                         video_id=args.video_id, viewer_id=args.viewer_id)
    if args.segments_out:
        if "segments" not in result.extra:
            raise LabelError("--segments-out needs --subtitles or --segment-length")
        write_parquet(result.extra["segments"], args.segments_out)
        log.info("continuous: %d segments -> %s", result.extra["segments"].height, args.segments_out)
    return finish(result, args.out, args, "continuous", ", ".join(str(p) for p in args.ratings))


# the command that runs each registered builder (the registry names tables, the commands
# name what they read): `labels list` shows both so the two can be matched
BUILDER_COMMANDS = {
    "vce": "evoke labels vce", "v2v_pairs": "evoke labels v2v-votes",
    "v2v_lists": "evoke labels v2v-lists", "v2v_sample": "evoke labels v2v-sample",
    "eev": "evoke labels eev", "continuous": "evoke labels continuous",
    "danmaku_windows": "evoke danmaku windows",
}


def cmd_list(args) -> int:
    for name in sorted(LABEL_BUILDERS):
        cls = LABEL_BUILDERS[name]
        print(f"{name:18s} {cls.description} (run by: {BUILDER_COMMANDS.get(name, 'no command')})")
        print(f"{'':18s} inputs: {', '.join(cls.inputs)}; settings: {cls.config_type().to_dict()}")
    return 0


# --------------------------------------------------------------------------- parser


def _common(p: argparse.ArgumentParser, videos: bool = True, encoding: bool = True) -> None:
    p.add_argument("--out", type=Path, required=True, help="output table (.parquet)")
    if videos:
        p.add_argument("--videos", type=Path,
                       help="manifest / probe table with video_id (and split): drop annotations of other videos")
    if encoding:
        p.add_argument("--encoding", help="text encoding of the input (default: detected)")
    p.add_argument("--strict", action="store_true", help="fail when any record would be dropped")
    p.add_argument("--report", type=Path, help="also write what was dropped and why as JSON")


def register(sub) -> None:
    labels = sub.add_parser("labels", help="build label tables from annotation files",
                            description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ls = labels.add_subparsers(dest="sub", required=True, metavar="BUILDER")

    p = ls.add_parser("vce", help="VCE responses -> per-video emotion intensities and distribution")
    p.add_argument("--responses", type=Path, required=True, help="long or wide responses (CSV/TSV/Parquet)")
    p.add_argument("--emotions", help="taxonomy: comma-separated or a file with one a line (default: the 27 VCE)")
    p.add_argument("--positive", help="positive emotions for emodiversity_positive (default: VCE's positive ones)")
    p.add_argument("--audio", choices=["keep", "drop"],
                   help="non-empty responses flagged as relying on audio: average them in or not (default keep); "
                        "empty flagged responses are counted, never averaged")
    p.add_argument("--max-audio-share", type=float,
                   help="drop videos whose share of audio-flagged responses is above this (default: off)")
    p.add_argument("--empty-response", choices=["drop", "zero"], help="empty responses (default drop)")
    p.add_argument("--all-zero", choices=["drop", "keep"], help="videos whose vector is all zero (default drop)")
    p.add_argument("--min-annotators", type=int, help="videos with fewer responses are dropped (default 1)")
    p.add_argument("--min-annotator-agreement", type=float,
                   help="remove annotators whose mean leave-one-out agreement is below this (default: off)")
    p.add_argument("--min-annotator-videos", type=int,
                   help="judge an annotator only on at least this many shared videos (default 3)")
    p.add_argument("--annotators-out", type=Path, help="write each annotator's agreement (.parquet)")
    _common(p)
    p.set_defaults(func=cmd_vce)

    p = ls.add_parser("v2v-votes", help="pairwise votes -> pairs agreed on by 8 of 9")
    p.add_argument("--votes", type=Path, required=True,
                   help="votes: annotator_id, video_a, video_b, choice (CSV/TSV/Parquet)")
    p.add_argument("--agree", type=int, help="votes that must agree ... (default 8)")
    p.add_argument("--of", type=int, help="... out of this many (default 9)")
    p.add_argument("--min-votes", type=int, help="pairs with fewer votes are dropped (default 9)")
    _common(p)
    p.set_defaults(func=cmd_v2v_votes)

    p = ls.add_parser("v2v-lists", help="kept pairs -> lists of n videos ordered by pleasantness")
    p.add_argument("--pairs", type=Path, required=True, help="the v2v-votes output")
    p.add_argument("--lengths", type=_ints, help="list lengths (default 3,4)")
    p.add_argument("--max-lists", type=int, help="at most this many lists per length (seeded sample)")
    p.add_argument("--seed", type=int, help="seed of the --max-lists sample (default 0)")
    _common(p, videos=False, encoding=False)
    p.set_defaults(func=cmd_v2v_lists)

    p = ls.add_parser("v2v-sample", help="propose new pairs for annotation")
    p.add_argument("--labels", type=Path, required=True, help="a table with video_id and p_* (e.g. vce.parquet)")
    p.add_argument("--predictions", type=Path,
                   help="model predictions: a train run's predictions.parquet (pred_* columns), or video_id + "
                        "score / p_* columns; without them 'informative' pairs are only far apart in labels")
    p.add_argument("--n", type=int, required=True, help="pairs to propose")
    p.add_argument("--proportions", type=_proportions,
                   help="kind=share list of informative, similar, similar_prediction, random "
                        "(default informative=0.6,random=0.2,similar=0.2)")
    p.add_argument("--balance-by",
                   help="column of the labels or --videos table to balance across; pairs stay within a group "
                        "(default source: the site of each source URL; none = one group)")
    p.add_argument("--exclude", type=Path, nargs="*", default=(), help="pairs tables never to propose again")
    p.add_argument("--candidate-factor", type=int, help="random candidates per wanted pair in large groups (20)")
    p.add_argument("--seed", type=int, help="random seed (default 0)")
    _common(p, encoding=False)
    p.set_defaults(func=cmd_v2v_sample)

    p = ls.add_parser("eev", help="EEV expression scores -> 1 Hz labels")
    p.add_argument("--csv", type=Path, required=True,
                   help="EEV CSV: Video ID, Timestamp (microseconds), one column per expression")
    p.add_argument("--method", choices=["majority", "mean"], help="majority vote of binarised scores (default) or mean")
    p.add_argument("--threshold", type=float, help="binarisation threshold (default 0.5)")
    p.add_argument("--window", type=float, help="window length, seconds (default 3)")
    p.add_argument("--stride", type=float, help="stride, seconds (default 1)")
    p.add_argument("--expressions", help="expression columns (default: the 15 EEV ones)")
    p.add_argument("--probe", type=Path,
                   help="probe table (ingest/probe.parquet): samples at or past a video's end (how far it "
                        "decodes, else its duration_s) are dropped")
    _common(p)
    p.set_defaults(func=cmd_eev)

    p = ls.add_parser("continuous", aliases=["viewers"],
                      help="per-viewer continuous ratings -> per-second / per-segment labels")
    p.add_argument("--ratings", type=Path, nargs="+", required=True, help="CSV/TSV/Parquet long tables or .dat files")
    p.add_argument("--subtitles", type=Path, nargs="*", help="SRT files ({video_id}.srt): one segment per cue")
    p.add_argument("--segment-length", type=float, help="fixed-length segments, seconds (without subtitles)")
    p.add_argument("--segments-out", type=Path, help="per-segment table (.parquet)")
    p.add_argument("--dat-columns", help=".dat value columns (default valence,arousal)")
    p.add_argument("--range", type=_range, help="valid value range low,high (default -1,1)")
    p.add_argument("--binarise-at", type=float, help="values >= this are 1 (default 0)")
    p.add_argument("--video-id", help="video id for files that do not name it")
    p.add_argument("--viewer-id", help="viewer id for files that do not name it")
    _common(p, encoding=False)
    p.set_defaults(func=cmd_continuous)

    p = ls.add_parser("list", help="the registered label builders and their settings")
    p.set_defaults(func=cmd_list)
