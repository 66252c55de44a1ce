"""CLI: ``evoke predict --model RUN_DIR (--video FILE_OR_URL ... | --dataset NAME) --out OUT.parquet``."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from evoke import EvokeError

log = logging.getLogger(__name__)


def cmd_predict(args) -> int:
    import torch

    from evoke.predict.run import predict_dataset, predict_videos

    torch.set_num_threads(max(1, args.threads))
    if bool(args.video) == bool(args.dataset or args.dataset_dir):
        raise EvokeError("evoke predict: give --video FILE_OR_URL ... or --dataset NAME, not both or neither")
    weights = dict(kv.split("=", 1) for kv in args.weights or [])
    if args.video:
        table = predict_videos(args.model, args.video, args.out, work=args.work, plot_dir=args.plot,
                               device=args.device, weights=weights)
    else:
        ddir = args.dataset_dir or Path("results") / args.dataset
        table = predict_dataset(args.model, ddir, args.out, memory_mb=args.memory_mb, plot_dir=args.plot)
    log.info("%s: %d row(s) of %d video(s)", args.out, table.height, table["video_id"].n_unique())
    return 0


def cmd_card(args) -> int:
    from evoke.predict.model import read_card

    card = read_card(args.model)
    card.pop("_folder")
    print(json.dumps(card, indent=2, sort_keys=True))
    return 0


def register(sub) -> None:
    p = sub.add_parser("predict", help="apply a trained head to new videos or to a dataset's features",
                       description="Writes the columns of the run's predictions.parquet (video_id, time_s for "
                                   "per-second tasks, split, pred_*) for every video.")
    p.add_argument("--model", type=Path, required=True, help="a run folder (results/{dataset}/train/{task}/"
                   "{head}/{featureset}) or its model/ folder")
    p.add_argument("--video", nargs="+", metavar="FILE_OR_URL",
                   help="video files or URLs (yt-dlp); video_id is the file's stem")
    p.add_argument("--dataset", help="predict every video of results/{dataset} whose features exist")
    p.add_argument("--dataset-dir", type=Path, help="default: results/{dataset}")
    p.add_argument("--out", type=Path, required=True, help="predictions table (.parquet)")
    p.add_argument("--work", type=Path, help="folder for the ingest, frames and features of --video "
                   "(default: a temporary one, removed after)")
    p.add_argument("--plot", type=Path, metavar="DIR", help="write one timeline PNG per video here")
    p.add_argument("--device", default="auto", help="torch extractors' device (auto, cpu, cuda)")
    p.add_argument("--weights", action="append", metavar="NAME=PATH",
                   help="an extractor weights file (as features.weights in the config)")
    p.add_argument("--memory-mb", type=float, default=2048, help="feature cache for --dataset (MiB)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads (default 1)")
    p.set_defaults(func=cmd_predict)

    c = sub.add_parser("model", help="saved models").add_subparsers(dest="sub", required=True)
    s = c.add_parser("show", help="print a run folder's model card (model/model.json)")
    s.add_argument("model", type=Path, help="a train run folder (or its model/ folder)")
    s.set_defaults(func=cmd_card)
