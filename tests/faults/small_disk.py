"""A small real file system for the full-disk tests."""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path
from typing import Iterator

import pytest


@contextlib.contextmanager
def mounted_tmpfs(mnt: Path, size: str) -> Iterator[Path]:
    """A real small file system (tmpfs of ``size``, e.g. "3m") at ``mnt`` while the block
    runs. Mounting needs root: CI runs as root and must not skip, elsewhere the test skips."""
    mnt.mkdir(exist_ok=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        why = f"cannot mount a tmpfs here: {proc.stderr.strip() or 'needs root'}"
        if os.environ.get("CI") == "true":
            pytest.fail(f"the full-disk tests need root (mount -t tmpfs): {why}")
        pytest.skip(why)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)
