"""``evoke status --dataset NAME``: how far a run has got, from its files alone.

The workflow records what it plans in ``results/{dataset}/plan.json`` when a run
starts (:func:`write_plan`, from ``workflow/rules/common.smk``): the manifest,
the video ids of every shard, the extractors, and the label, training and
report outputs. :func:`dataset_status` compares that plan with what is on disk:

* a shard is **done** when its stage table exists (``ingest/shards/{shard}.parquet``,
  ``frames/{shard}.status.parquet``, ``features/{name}/{shard}.status.parquet``);
  its videos count as ok or failed from that table;
* a shard is **running** when it is not done but has per-video progress (the
  finished video folders of ingest, ``parts/{shard}/*.h5`` of frames and
  features) or a log written in the last :data:`RUNNING_WINDOW_S` seconds; its
  finished videos count as done (ok: their failures are only known when the
  shard ends). One with progress but an older log is **stopped**: a rerun
  resumes it;
* a stage's total is the videos its input stage passed on: the manifest's for
  ingest, the ingest shard's ok videos for frames (once that shard is done),
  the frames shard's ok videos for features;
* the ETA is job time: the seconds per video of the stage's finished shards
  (``benchmarks/{stage}/{shard}.tsv``) times the videos left. With several jobs
  at once the wall time is shorter.

Every shard log ends with one line from :func:`shard_summary` (``summary: frames
s00000: 20 videos, 19 ok, 1 failed, 41.2 s``).
"""

from __future__ import annotations

import csv
import json
import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from evoke import EvokeError
from evoke.store import RESULTS_ROOT, atomic_path

log = logging.getLogger(__name__)

PLAN_NAME = "plan.json"
RUNNING_WINDOW_S = 120.0


# --- the plan ------------------------------------------------------------------


def write_plan(ddir: str | Path, *, manifest: str, shard_size: int, shards: dict[str, list[str]],
               extractors: list[str], outputs: dict[str, list[str]]) -> Path:
    """Record a run's plan in ``ddir/plan.json`` (atomically; an identical plan is left alone).

    ``shards``: shard name to its video ids, in manifest order; ``outputs``:
    stage name (labels, train, report) to the files the run will write,
    relative to the working directory.
    """
    path = Path(ddir) / PLAN_NAME
    plan = {"manifest": str(manifest), "shard_size": int(shard_size), "shards": shards,
            "extractors": list(extractors), "outputs": {k: list(v) for k, v in outputs.items()}}
    text = json.dumps(plan, indent=1)
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return path
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def read_plan(ddir: Path) -> dict:
    path = ddir / PLAN_NAME
    if not path.is_file():
        raise EvokeError(
            f"{path}: no run recorded for this dataset (the workflow writes it when a run starts: "
            f"snakemake --cores 2 --config dataset={ddir.name} manifest=FILE)")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise EvokeError(f"{path}: not a readable plan: {exc}") from exc


# --- one stage -------------------------------------------------------------------


@dataclass
class StageStatus:
    """Progress of one stage (or one extractor of the features stage)."""

    name: str
    total: int = 0
    ok: int = 0
    failed: int = 0
    in_progress: int = 0  # finished videos of shards that are not done yet
    shards: int = 0
    shards_done: int = 0
    running: list[str] = field(default_factory=list)
    stopped: list[str] = field(default_factory=list)
    failures: dict[str, int] = field(default_factory=dict)  # kind -> count
    seconds_per_video: float | None = None
    timed_shards: int = 0

    @property
    def done(self) -> int:
        return self.ok + self.failed + self.in_progress

    @property
    def eta_s(self) -> float | None:
        if self.seconds_per_video is None:
            return None
        return max(self.total - self.done, 0) * self.seconds_per_video


def failure_kind(error: str | None) -> str:
    """An error message without what is particular to one video: its paths, URLs and
    numbers (``/x/a.mp4: no video stream`` and ``/y/b.mkv: no video stream`` are one kind)."""
    text = (error or "unknown").strip().splitlines()[0] if (error or "").strip() else "unknown"
    text = re.sub(r"\S*://\S*?(?=[:,;]?(?:\s|$))", "URL", text)
    text = re.sub(r"(?<![\w.])(?:\.{0,2}/|~/)?[\w.-]*/[\w./-]*", "PATH", text)
    text = re.sub(r"\d+(\.\d+)?", "N", text)
    text = re.sub(r"'[^']*'|\"[^\"]*\"", "'...'", text)
    return text[:80]


def _benchmark_seconds(path: Path) -> float | None:
    try:
        with open(path, encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh, delimiter="\t"))
        return sum(float(r["s"]) for r in rows) / len(rows) if rows else None
    except (OSError, KeyError, ValueError):
        return None


def _recently_written(path: Path, now: float) -> bool:
    try:
        return now - path.stat().st_mtime < RUNNING_WINDOW_S
    except OSError:
        return False


def _finished_parts(folder: Path) -> int:
    if not folder.is_dir():
        return 0
    return sum(1 for p in folder.glob("*.h5") if not p.name.startswith("."))


def _shard_stage(st: StageStatus, shard: str, table: Path, n_in: int, progress: int, log_path: Path,
                 bench: Path, timed: list[tuple[float, int]], now: float) -> int | None:
    """Count one shard of a stage into ``st``; return its ok videos when it is done."""
    st.shards += 1
    if table.is_file():
        status = pl.read_parquet(table, columns=["status", "error"])
        ok = status.filter(pl.col("status") == "ok").height
        failed = status.filter(pl.col("status") == "failed")
        st.total += status.height
        st.ok += ok
        st.failed += failed.height
        st.shards_done += 1
        for err in failed["error"].to_list():
            kind = failure_kind(err)
            st.failures[kind] = st.failures.get(kind, 0) + 1
        seconds = _benchmark_seconds(bench)
        if seconds is not None and status.height:
            timed.append((seconds, status.height))
        return ok
    st.total += n_in
    st.in_progress += min(progress, n_in)
    if _recently_written(log_path, now):
        st.running.append(shard)
    elif progress:
        st.stopped.append(shard)
    return None


def _timing(st: StageStatus, timed: list[tuple[float, int]]) -> None:
    if timed:
        st.seconds_per_video = sum(s for s, _ in timed) / sum(n for _, n in timed)
        st.timed_shards = len(timed)


def dataset_status(ddir: str | Path, now: float | None = None) -> dict:
    """Progress of every stage of the run recorded in ``ddir`` (see the module docstring).

    Returns ``{"plan": plan, "stages": [StageStatus, ...], "outputs": {stage: (done, total)}}``.
    """
    ddir = Path(ddir)
    now = time.time() if now is None else now
    plan = read_plan(ddir)
    shards = plan["shards"]
    ingest = StageStatus("ingest")
    frames = StageStatus("frames")
    extractors = {name: StageStatus(f"features {name}") for name in plan["extractors"]}
    timed: dict[str, list] = {"ingest": [], "frames": [], **{n: [] for n in extractors}}
    for shard, videos in shards.items():
        done_videos = sum((ddir / "ingest" / "videos" / v / "probe.json").is_file() for v in videos)
        ingest_ok = _shard_stage(
            ingest, shard, ddir / "ingest" / "shards" / f"{shard}.parquet", len(videos), done_videos,
            ddir / "logs" / "ingest" / f"{shard}.log", ddir / "benchmarks" / "ingest" / f"{shard}.tsv",
            timed["ingest"], now)
        n_frames_in = len(videos) if ingest_ok is None else ingest_ok
        frames_ok = _shard_stage(
            frames, shard, ddir / "frames" / f"{shard}.status.parquet", n_frames_in,
            _finished_parts(ddir / "frames" / "parts" / shard), ddir / "logs" / "frames" / f"{shard}.log",
            ddir / "benchmarks" / "frames" / f"{shard}.tsv", timed["frames"], now)
        n_features_in = n_frames_in if frames_ok is None else frames_ok
        for name, st in extractors.items():
            _shard_stage(
                st, shard, ddir / "features" / name / f"{shard}.status.parquet", n_features_in,
                _finished_parts(ddir / "features" / name / "parts" / shard),
                ddir / "logs" / "features" / name / f"{shard}.log",
                ddir / "benchmarks" / "features" / name / f"{shard}.tsv", timed[name], now)
    _timing(ingest, timed["ingest"])
    _timing(frames, timed["frames"])
    for name, st in extractors.items():
        _timing(st, timed[name])
    outputs = {stage: (sum(Path(p).exists() for p in files), len(files))
               for stage, files in plan.get("outputs", {}).items()}
    return {"plan": plan, "stages": [ingest, frames, *extractors.values()], "outputs": outputs}


# --- text ------------------------------------------------------------------------


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def format_status(status: dict, dataset: str) -> str:
    plan = status["plan"]
    n_videos = sum(len(v) for v in plan["shards"].values())
    lines = [f"{dataset}: {n_videos} videos in {len(plan['shards'])} shards of {plan['shard_size']} "
             f"(manifest {plan['manifest']})"]
    width = max(len(st.name) for st in status["stages"])
    left = 0.0
    for st in status["stages"]:
        parts = [f"{st.done}/{st.total} videos", f"{st.ok} ok", f"{st.failed} failed"]
        if st.in_progress:
            parts.append(f"{st.in_progress} finished in unfinished shards")
        shard_text = f"shards {st.shards_done}/{st.shards} done"
        if st.running:
            shard_text += f", running: {', '.join(st.running)}"
        if st.stopped:
            shard_text += f", stopped (a rerun resumes them): {', '.join(st.stopped)}"
        parts.append(shard_text)
        if st.eta_s is not None:
            left += st.eta_s
            if st.total > st.done:
                parts.append(f"about {_duration(st.eta_s)} of job time left "
                             f"({st.seconds_per_video:.1f} s/video over {st.timed_shards} shards)")
        elif st.total > st.done:
            parts.append("no estimate yet (no finished shard)")
        lines.append(f"  {st.name:<{width}}  " + "; ".join(parts))
        for kind, n in sorted(st.failures.items(), key=lambda kv: -kv[1]):
            lines.append(f"  {'':<{width}}    {n} x {kind}")
    for stage, (done, total) in status["outputs"].items():
        if total:
            lines.append(f"  {stage:<{width}}  {done}/{total} outputs")
    unfinished = any(st.total > st.done for st in status["stages"])
    if unfinished and left:
        lines.append(f"left: about {_duration(left)} of job time in the stages timed so far")
    lines.append(f"failures: results/{dataset}/failures.parquet (evoke inspect it); "
                 f"logs: results/{dataset}/logs/")
    return "\n".join(lines)


def shard_summary(stage: str, shard: str, status: pl.DataFrame, seconds: float) -> str:
    """The one line that ends a shard's log: videos, ok, failed and wall seconds."""
    failed = status.filter(pl.col("status") == "failed").height if status.height else 0
    return (f"summary: {stage} {shard}: {status.height} videos, {status.height - failed} ok, "
            f"{failed} failed, {seconds:.1f} s")


def log_shard_summary(stage: str, shard: str, status: pl.DataFrame, started: float) -> None:
    """Log :func:`shard_summary` for a shard job that began at ``time.monotonic()`` ``started``."""
    log.info("%s", shard_summary(stage, shard, status, time.monotonic() - started))


# --- CLI -------------------------------------------------------------------------


def cmd_status(args) -> int:
    ddir = Path(args.results) / args.dataset
    if not ddir.is_dir():
        found = sorted(p.parent.name for p in Path(args.results).glob(f"*/{PLAN_NAME}"))
        raise EvokeError(f"{ddir}: no such dataset folder"
                         + (f" (datasets here: {', '.join(found)})" if found else ""))
    print(format_status(dataset_status(ddir), args.dataset))
    return 0


def register(sub) -> None:
    p = sub.add_parser(
        "status", help="how far a run has got: videos done per stage, failures, running shards, ETA",
        description="Compare a run's plan (results/NAME/plan.json, written when a run starts) with "
        "the files on disk: per stage the videos done of the total (finished videos of running shards "
        "included), failures by stage and kind, the shards running, and the job time left at the "
        "speed of the shards finished so far.")
    p.add_argument("--dataset", required=True, help="the dataset name (results/NAME/)")
    p.add_argument("--results", default=str(RESULTS_ROOT), help="the results folder (default: results)")
    p.set_defaults(func=cmd_status)
