"""One evoke tree's side of ``bench/run.py --before REF`` (see there).

Run with ``PYTHONPATH`` pointing at that tree's ``src``. Reads one JSON command
a line on stdin, runs it with whatever ``evoke`` is importable, and answers one
JSON line: its wall and CPU seconds (this process's threads and the children
it waited for) and a digest of what it produced, so the two trees' outputs can
be compared byte for byte. The process stays up between commands, so every
repetition after the first is as warm as an in-process measurement.

    {"fn": "frames", "path": P}                 sample_frames(P, 1.0, 360, "pyav")
    {"fn": "frames_stage", "path": P, "work": D} write_video_frames(P, D/x.h5, ...)
    {"fn": "ingest", "path": P, "work": D}       ingest_video({"source": P, ...}, D)

The ingest digest covers the WAV, the muted copy and the probe row, and is made after
the timing (before issue 16 item 5's last change, the WAV and row hashes were timed too).
"""

from __future__ import annotations

import hashlib
import json
import resource
import shutil
import sys
import time
from pathlib import Path

import h5py

import evoke
from evoke.config import validate_config
from evoke.frames import sample_frames, write_video_frames
from evoke.ingest import ingest_video

SETTINGS = validate_config({"manifest": "-"})


def _frames(cmd: dict) -> str:
    h = hashlib.sha256()
    for i, t, ft, img in sample_frames(Path(cmd["path"]), 1.0, 360, "pyav"):
        h.update(f"{i} {t:.6f} {ft:.6f}".encode())
        h.update(img.tobytes())
    return h.hexdigest()


def _frames_stage(cmd: dict) -> str:
    dest = Path(cmd["work"]) / "frames.h5"
    write_video_frames(Path(cmd["path"]), dest, "bench", SETTINGS["frames"])
    h = hashlib.sha256()
    with h5py.File(dest) as f:
        for key in ("frames", "timestamps_s", "frame_time_s", "mask"):
            h.update(f["bench"][key][()].tobytes())
    dest.unlink()
    return h.hexdigest()


def _ingest(cmd: dict):
    videos = Path(cmd["work"]) / "videos"
    shutil.rmtree(videos, ignore_errors=True)
    row = {"video_id": "bench", "source": cmd["path"], "split": "train"}
    result = ingest_video(row, videos, SETTINGS["ingest"])

    def digest() -> str:  # after the timing: reading and hashing the outputs is not ingest's work
        assert result["status"] == "ok" and result["audio_path"], result
        h = hashlib.sha256((videos / "bench" / "audio.wav").read_bytes())
        h.update((videos / "bench" / Path(result["video_path"]).name).read_bytes())  # the muted copy
        kept = {k: v for k, v in result.items() if k not in ("fingerprint", "evoke_version")}
        h.update(json.dumps(kept, sort_keys=True, default=str).encode())
        shutil.rmtree(videos)
        return h.hexdigest()
    return digest


FNS = {"frames": _frames, "frames_stage": _frames_stage, "ingest": _ingest}


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def main() -> int:
    print(json.dumps({"ready": evoke.__file__}), flush=True)
    for line in sys.stdin:
        cmd = json.loads(line)
        c0, k0, t0 = time.process_time(), _children_cpu(), time.perf_counter()
        digest = FNS[cmd["fn"]](cmd)
        wall = time.perf_counter() - t0
        cpu = time.process_time() - c0 + _children_cpu() - k0
        if callable(digest):  # a step whose outputs are hashed after its timing
            digest = digest()
        print(json.dumps({"wall_s": wall, "cpu_s": cpu, "digest": digest}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
