"""What verifying ingest's written files costs: ``ingest_video`` with and without
:func:`evoke.ingest.verify_outputs`, alternated in one run on the same file.

    PYTHONPATH=src .venv/bin/python bench/ingest_verify.py [--seconds 60] [--reps 3] [--out /tmp/evoke-bench]

The file is bench/run.py's: 720p 30 fps H.264 (keyframe every 250 frames) with
128 kb/s AAC. "Without" replaces ``verify_outputs`` by nothing (the row takes
the source's decoded duration), so the difference is the whole verification:
the muted video's probe (ffprobe, packet scan, decode of the last group of
pictures), the comparison and the WAV header check.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import loadavg, log, make_segment, make_with_audio, measure  # noqa: E402

import evoke.ingest as ingest  # noqa: E402
from evoke.config import validate_config  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path("/tmp/evoke-bench"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    video = make_with_audio(args.out, make_segment(args.out, args.seconds, 250))
    settings = validate_config({"manifest": "-"})["ingest"]
    row = {"video_id": "bench", "source": str(video), "split": "train"}
    verify = ingest.verify_outputs
    runs = {"with verification": [], "without": []}
    for rep in range(args.reps):
        for name in runs:
            work = args.out / "verify" / f"{rep}-{len(runs[name])}-{name[:4]}"
            shutil.rmtree(work, ignore_errors=True)
            ingest.verify_outputs = verify if name.startswith("with ") else \
                (lambda info, v, wav, rate, n: {"decoded_duration_s": info["decoded_duration_s"]})
            try:
                runs[name].append(measure(lambda: ingest.ingest_video(row, work, settings))["wall_s"])
            finally:
                ingest.verify_outputs = verify
    best = {k: min(v) for k, v in runs.items()}
    ratio = best["with verification"] / best["without"]
    log(f"ingest_video {args.seconds} s 720p: {json.dumps(best)}; with/without {ratio:.3f}x; load {loadavg()}")
    print(json.dumps({"best_wall_s": best, "runs": runs, "ratio": ratio}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
