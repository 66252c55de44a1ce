"""Crash-safe storage: atomic Parquet/HDF5 writes, per-video progress, the failures table.

Rules every writer follows (DESIGN.md, "Artifacts are crash-safe"):

* nothing half-written is ever left under its final name: write to a temporary
  name in the same folder, then ``os.replace`` it into place;
* the per-video progress of a shard lives in one small file (or folder) per
  finished video, committed by a rename, so a killed job resumes at the first
  unfinished video; the shard file is assembled from them at the end;
* every table a stage writes about its videos carries ``video_id``, ``status``
  (``ok`` or ``failed``) and ``error``; :func:`merge_failures` unions the failed
  rows of every stage into ``results/{dataset}/failures.parquet``;
* one process at a time works on a shard: :func:`shard_lock` (a lock file with
  host and PID beside the shard's outputs) refuses a second holder, and takes
  over a lock whose process died on this host;
* the disk running full is the environment's failure, never a video's: a part
  is written only when there is room for it (:func:`require_free_space`), and
  an ``OSError`` for lack of space fails the job (:class:`DiskFull`), so a
  rerun retries the video.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import shutil
import socket
import time
import uuid
from pathlib import Path
from typing import Callable, Iterator

import polars as pl
from tqdm import tqdm

from evoke import EvokeError, __version__

log = logging.getLogger(__name__)

RESULTS_ROOT = Path("results")

FAILURE_SCHEMA = {
    "video_id": pl.String,
    "stage": pl.String,
    "shard": pl.String,
    "error": pl.String,
}


def dataset_dir(dataset: str, root: str | Path = RESULTS_ROOT) -> Path:
    return Path(root) / dataset


def _tmp_name(final: Path) -> Path:
    return final.with_name(f".{final.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")


@contextlib.contextmanager
def atomic_path(final: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; on success rename it to ``final``.

    On an exception the temporary file (or folder) is removed and ``final`` is
    left as it was. Works for files and for folders (an existing folder at
    ``final`` is replaced).
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(final)
    try:
        yield tmp
        if tmp.is_dir() and final.is_dir():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        raise


def clean_stale_temporaries(folder: str | Path) -> int:
    """Remove temporaries left by killed writers in ``folder``; returns how many."""
    n = 0
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    for p in folder.glob(".*.tmp-*"):
        pid = p.name.rsplit(".tmp-", 1)[1].split("-")[0]
        if pid.isdigit() and int(pid) != os.getpid() and _pid_alive(int(pid)):
            continue  # a live writer on this machine
        _remove(p)
        n += 1
    return n


def _remove(p: Path) -> None:
    if p.is_dir():
        shutil.rmtree(p, ignore_errors=True)
    else:
        p.unlink(missing_ok=True)


def remove_temporaries(folder: str | Path, names: tuple[str, ...] | None = None) -> int:
    """Remove every temporary in ``folder`` (of the files ``names`` only, when given);
    returns how many. For folders whose writers the caller has locked out
    (:func:`shard_lock`): what is there was left by a killed writer."""
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    patterns = [f".{n}.tmp-*" for n in names] if names is not None else [".*.tmp-*"]
    n = 0
    for pattern in patterns:
        for p in folder.glob(pattern):
            _remove(p)
            n += 1
    return n


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def write_parquet(df: pl.DataFrame, path: str | Path) -> Path:
    """Write ``df`` to ``path`` atomically (zstd-compressed Parquet)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        df.write_parquet(tmp, compression="zstd")
    return path


def read_parquet(path: str | Path) -> pl.DataFrame:
    return pl.read_parquet(path)


def empty_failures() -> pl.DataFrame:
    return pl.DataFrame(schema=FAILURE_SCHEMA)


def failures_from_status(status: pl.DataFrame, stage: str, shard: str | None = None) -> pl.DataFrame:
    """The failed rows of a stage's status table in the failures schema."""
    if status.height == 0 or "status" not in status.columns:
        return empty_failures()
    failed = status.filter(pl.col("status") == "failed")
    shard_col = (
        pl.col("shard").cast(pl.String)
        if "shard" in failed.columns
        else pl.lit(shard, dtype=pl.String)
    )
    return failed.select(
        pl.col("video_id").cast(pl.String),
        pl.lit(stage, dtype=pl.String).alias("stage"),
        shard_col.alias("shard"),
        pl.col("error").cast(pl.String),
    )


@contextlib.contextmanager
def file_lock(path: str | Path) -> Iterator[None]:
    """An exclusive advisory lock on ``path`` (created if missing)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


class ShardLocked(EvokeError):
    """Another process holds the shard (a second copy of the job)."""


class DiskFull(EvokeError):
    """No room left to write (an environment failure: the job stops, no video is marked failed)."""


def _holder(fd: int) -> dict:
    """The JSON record (host, pid, since) in an open lock file; {} when empty or unreadable."""
    os.lseek(fd, 0, os.SEEK_SET)
    data = os.read(fd, 4096)
    try:
        holder = json.loads(data) if data.strip() else {}
    except ValueError:
        return {}
    return holder if isinstance(holder, dict) else {}


@contextlib.contextmanager
def shard_lock(path: str | Path, what: str) -> Iterator[None]:
    """Hold the lock file ``path`` while the block runs; its content names the holder
    (JSON: host, pid, since).

    The lock is an ``flock`` on the file, which the kernel releases when its process
    dies, however it dies. A second process is refused with :class:`ShardLocked`
    naming the holder's host and PID. A lock left by a killed process is taken over;
    one whose record names another host (a job there that may still run: not every
    shared file system carries locks between hosts) is refused with the host named
    and the file to delete once that job is gone. ``what`` names the job in
    messages (``frames s00000``). The file is removed on release.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    me = {"host": socket.gethostname(), "pid": os.getpid(),
          "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise ShardLocked(
                f"{what}: already running as PID {holder.get('pid', '?')} on host {holder.get('host', '?')} "
                f"(since {holder.get('since', '?')}; lock {path}); wait for it to finish or stop it, "
                f"then run again") from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the previous holder removed the file between our open and our lock
    try:
        holder = _holder(fd)
        if holder and holder.get("host") != me["host"]:
            raise ShardLocked(
                f"{what}: locked by PID {holder.get('pid')} on host {holder.get('host')} (since "
                f"{holder.get('since')}; lock {path}); if no job runs there any more, delete {path} "
                f"and run again")
        if holder:
            log.warning("%s: taking over the lock of PID %s, which no longer runs", what, holder.get("pid"))
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, json.dumps(me).encode())
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        raise
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # while still locked: a process that opened it before retries
        os.close(fd)


def run_records(folder: str | Path) -> tuple[list[dict], list[Path]]:
    """The run records (JSON: host, pid, since) in ``folder``: (those of processes that
    may still run: alive on this host, or on another host; the files of the dead ones)."""
    folder = Path(folder)
    live, dead = [], []
    host = socket.gethostname()
    for p in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            rec = json.loads(p.read_text())
            pid = int(rec["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            dead.append(p)  # written atomically, so only a hand-made file is unreadable
            continue
        if rec.get("host") == host and not _pid_alive(pid):
            dead.append(p)
        else:
            live.append({**rec, "file": str(p)})
    return live, dead


def write_run_record(folder: str | Path) -> Path:
    """Record this process (host, pid, since) as a run in ``folder``; returns the file."""
    me = {"host": socket.gethostname(), "pid": os.getpid(), "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    path = Path(folder) / f"{me['host']}-{me['pid']}.json"
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(me))
    return path


def clear_stale_snakemake_locks(locks_dir: str | Path, under: str) -> int:
    """Remove Snakemake's lock files (``{n}.input.lock``/``{n}.output.lock`` pairs) that name
    a path under ``under``: what ``--unlock`` does, for the locks of a run that was killed
    (the caller knows it no longer runs). Returns how many pairs."""
    locks_dir = Path(locks_dir)
    prefix = under.rstrip("/") + "/"
    n = 0
    for out in sorted(locks_dir.glob("*.output.lock")) if locks_dir.is_dir() else []:
        pair = [out, out.with_name(out.name.replace(".output.lock", ".input.lock"))]
        try:
            names = [ln for p in pair if p.exists() for ln in p.read_text().splitlines()]
        except OSError:
            continue
        if any(ln.startswith(prefix) or f"/{prefix}" in ln for ln in names):
            for p in pair:
                p.unlink(missing_ok=True)
            n += 1
    return n


def is_disk_full(exc: BaseException) -> bool:
    """True for an OSError that says the disk or the quota is full (h5py's carry the
    errno only in the message)."""
    if not isinstance(exc, OSError):
        return False
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(exc)
    return "No space left on device" in text or "errno = 28" in text or "Disk quota exceeded" in text


def require_free_space(folder: str | Path, need_bytes: int, what: str) -> None:
    """Raise :class:`DiskFull` unless ``folder``'s file system has ``need_bytes`` free (plus
    1% of it or 16 MiB, whichever is less, kept free for metadata)."""
    folder = Path(folder)
    usage = shutil.disk_usage(folder)
    reserve = min(16 << 20, usage.total // 100)
    if usage.free < need_bytes + reserve:
        raise DiskFull(
            f"{folder}: no room to write {what}: {usage.free / 2**20:.1f} MiB free, about "
            f"{(need_bytes + reserve) / 2**20:.1f} MiB needed; free disk space and run again "
            f"(finished videos are kept)")


def merge_failures(ddir: str | Path) -> Path:
    """Rebuild ``{ddir}/failures.parquet`` from every ``{ddir}/*/failures.parquet``.

    Each stage's aggregation step writes its own ``{stage}/failures.parquet``
    and then calls this, so the dataset-level table always holds the current
    failures of every stage that has run. Rows: ``video_id, stage, shard, error``.
    """
    ddir = Path(ddir)
    out = ddir / "failures.parquet"
    with file_lock(ddir / ".failures.lock"):
        parts = [pl.read_parquet(p) for p in sorted(ddir.glob("*/failures.parquet"))]
        parts = [p.select(list(FAILURE_SCHEMA)) for p in parts if p.height]
        merged = pl.concat(parts) if parts else empty_failures()
        write_parquet(merged.sort("stage", "video_id"), out)
    return out


def h5_attrs(**extra) -> dict:
    """The attributes every HDF5 dataset group evoke writes carries."""
    return {"evoke_version": __version__, **{k: v for k, v in extra.items() if v is not None}}


def _read_part_stats(part: Path, group: str, fp: str) -> dict | None:
    """The stats of a finished per-video part whose fingerprint matches, else None."""
    import h5py

    if not part.exists():
        return None
    try:
        with h5py.File(part, "r") as f:
            attrs = f[group].attrs
            if attrs.get("fingerprint") != fp or "stats" not in attrs:
                return None
            return json.loads(attrs["stats"])
    except (OSError, KeyError, ValueError):
        return None  # unreadable part (killed mid-write before the rename cannot happen, but be safe)


def mark_part(group, fp: str, stats: dict) -> None:
    """Record in a per-video HDF5 group the fingerprint it was made with and its stats."""
    group.attrs["fingerprint"] = fp
    group.attrs["stats"] = json.dumps(stats)


def run_shard(
    items: list[tuple[str, str, object]],
    parts_dir: Path,
    out: Path,
    work: Callable[[object, Path, str], dict],
    *,
    root_attrs: dict,
    desc: str,
    errors: tuple[type[BaseException], ...] = (EvokeError, OSError),
    status_out: Path | None = None,
    status_table: Callable[[list[dict]], "pl.DataFrame"] | None = None,
    part_bytes: Callable[[object], int] | None = None,
) -> list[dict]:
    """Process the videos of a shard into one HDF5 file, resumably.

    ``items`` are ``(video_id, fingerprint, payload)``. For each, ``work(payload,
    part_path, fingerprint)`` must write ``part_path`` atomically (group
    ``video_id``, marked with :func:`mark_part`) and return its stats; a part
    already finished with the same fingerprint (a killed earlier run) is reused.
    A video that raises one of ``errors`` gets a failed status row and the shard
    goes on; an error for lack of disk space stops the job instead
    (:class:`DiskFull`), as does an :class:`~evoke.media.EnvironmentFailure`
    (a missing package, a failed file system), and so does having less free space than
    ``part_bytes(payload)`` (an upper bound of the part's size) before a part
    is written. The parts are then copied into ``out`` (atomically); with
    ``status_out``, the status table (``status_table(rows)``) is written next,
    and only then are the parts removed, so a kill anywhere in between reruns
    from the parts.

    The whole run holds :func:`shard_lock` on ``.{out.name}.lock`` beside
    ``out``; temporaries of ``out``, ``status_out`` and the parts left by a
    killed earlier run are removed first.

    Returns one status dict per item: ``video_id, status, error`` and the stats.
    """
    import h5py

    from evoke.media import EnvironmentFailure

    out = Path(out)
    what = f"{desc} ({out})"
    with shard_lock(out.with_name(f".{out.name}.lock"), what):
        names = (out.name,) + ((Path(status_out).name,) if status_out is not None else ())
        remove_temporaries(out.parent, names)
        parts_dir.mkdir(parents=True, exist_ok=True)
        remove_temporaries(parts_dir)
        status = []
        for vid, fp, payload in tqdm(items, desc=desc, unit="video", mininterval=2):
            part = parts_dir / f"{vid}.h5"
            try:
                stats = _read_part_stats(part, vid, fp)
                if stats is None:
                    if part_bytes is not None:
                        require_free_space(parts_dir, part_bytes(payload), f"the part of video {vid}")
                    stats = work(payload, part, fp)
                else:
                    log.info("%s: reusing the finished part of an earlier run", vid)
                status.append({"video_id": vid, "status": "ok", "error": None, **stats})
            except (DiskFull, EnvironmentFailure):
                raise  # the machine's failure, not the video's: the job stops
            except errors as exc:
                if is_disk_full(exc):
                    raise DiskFull(f"{parts_dir}: disk full while writing video {vid}: {exc}; free disk "
                                   f"space and run again (finished videos are kept)") from exc
                log.error("%s: %s", vid, exc)
                part.unlink(missing_ok=True)
                status.append({"video_id": vid, "status": "failed", "error": str(exc)})
        ok = [parts_dir / f"{r['video_id']}.h5" for r in status if r["status"] == "ok"]
        require_free_space(out.parent, sum(p.stat().st_size for p in ok), f"the shard file {out.name}")
        try:
            with atomic_path(out) as tmp, h5py.File(tmp, "w") as dst:
                dst.attrs.update(h5_attrs(**root_attrs))
                for r in status:
                    if r["status"] == "ok":
                        with h5py.File(parts_dir / f"{r['video_id']}.h5", "r") as src:
                            src.copy(src[r["video_id"]], dst, name=r["video_id"])
            if status_out is not None:
                write_parquet(status_table(status) if status_table else pl.DataFrame(status), status_out)
        except OSError as exc:
            if is_disk_full(exc):
                raise DiskFull(f"{out.parent}: disk full while assembling {out.name}: {exc}; free disk space "
                               f"and run again (finished videos are kept)") from exc
            raise
        shutil.rmtree(parts_dir, ignore_errors=True)
    return status
