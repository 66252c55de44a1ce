"""Where a report came from: evoke's version, the git commit of its source, the date, the dataset
and the config hash."""

from __future__ import annotations

import os
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import evoke


def git_commit(path: Path | None = None) -> str:
    """The commit of the git checkout holding ``path`` (default: evoke's own source), with
    " (uncommitted changes)" when its tracked files differ; "unknown (...)" outside a checkout."""
    where = Path(path or Path(evoke.__file__).resolve().parent)
    try:
        head = subprocess.run(["git", "-C", str(where), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unknown (git did not run: {exc})"
    if head.returncode != 0:
        return "unknown (evoke is not installed from a git checkout)"
    dirty = subprocess.run(["git", "-C", str(where), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True, timeout=20)
    return head.stdout.strip() + (" (uncommitted changes)" if dirty.stdout.strip() else "")


def report_date() -> str:
    """Now in UTC (ISO 8601, seconds), or ``SOURCE_DATE_EPOCH`` when set (reproducible builds)."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    now = datetime.fromtimestamp(int(epoch), timezone.utc) if epoch else datetime.now(timezone.utc)
    return now.replace(microsecond=0).isoformat()


def provenance(dataset: str, config_hash: str) -> dict[str, str]:
    return {"evoke version": evoke.__version__, "git commit": git_commit(), "date": report_date(),
            "dataset": dataset, "config hash": config_hash}
