"""What probe's last-group decode costs and how far it gets: ``evoke.media.probe`` of the
working tree against ``probe`` of another revision of ``src/evoke/media.py``, alternated in
one run on the same files, each file's decoded end checked against a single-thread full decode.

    echo -10 > /proc/self/autogroup   # optional: rank this benchmark above the other sessions
    PYTHONPATH=src .venv/bin/python bench/probe_tail.py [--ref REV] [--reps 3] [--out /tmp/evoke-bench]

Files: the demo's clips (``data/demo/clips``), bench/run.py's 30 s 720p H.264 with keyframes every
250 and every 60 frames, that file with its moov first cut at 70 %, and made here: 4 s of
Megamind (B-frames) as a faststart MP4 cut at 30, 50 and 90 %, and 2 s of vtest as MPEG-TS.
Prints, per group of files, CPU and wall seconds per video (best of ``--reps``; CPU is
this process's, threads included) and how many decoded ends differ from the reference.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import ffmpeg, loadavg, log, make_segment, measure  # noqa: E402

import evoke.media as current  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from conftest import single_thread_last_frame  # noqa: E402  (the tests' reference)
OPENCV = Path("/usr/share/doc/opencv-doc/examples/data")


def load_revision(rev: str):
    """``src/evoke/media.py`` of git revision ``rev`` as a module of its own."""
    text = subprocess.run(["git", "show", f"{rev}:src/evoke/media.py"], cwd=REPO, capture_output=True, text=True,
                          check=True).stdout
    path = Path(tempfile.mkdtemp()) / "media_ref.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location("evoke_media_ref", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def cut(src: Path, frac: float, out: Path) -> Path:
    data = src.read_bytes()
    out.write_bytes(data[: int(len(data) * frac)])
    return out


def files(out: Path) -> dict[str, list[Path]]:
    mm = out / "probe_mm_bframes.mp4"
    if not mm.is_file():
        ffmpeg("-i", str(OPENCV / "Megamind.avi"), "-t", "4", "-vf", "scale=320:240", "-c:v", "libx264", "-an",
               "-movflags", "+faststart", str(mm))
    ts = out / "probe_vtest.ts"
    if not ts.is_file():
        ffmpeg("-i", str(OPENCV / "vtest.avi"), "-t", "2", "-vf", "scale=160:120", "-c:v", "libx264", "-preset",
               "veryfast", "-an", "-f", "mpegts", str(ts))
    long_gop, short_gop = make_segment(out, 30, 250), make_segment(out, 30, 60)
    fast = out / "probe_seg_faststart.mp4"
    if not fast.is_file():
        ffmpeg("-i", str(long_gop), "-c", "copy", "-movflags", "+faststart", str(fast))
    return {
        "demo clips (clean)": sorted(p for p in (REPO / "data" / "demo" / "clips").glob("*")
                                     if p.suffix in (".mp4", ".mkv", ".webm", ".avi")),
        "720p 30 s (clean, GOP 250 and 60)": [long_gop, short_gop],
        "720p 30 s cut at 70 % (GOP 250)": [cut(fast, 0.7, out / "probe_seg_cut70.mp4")],
        "B-frame MP4s cut at 30/50/90 %": [cut(mm, f, out / f"probe_mm_cut{int(f * 100)}.mp4")
                                           for f in (0.3, 0.5, 0.9)],
        "MPEG-TS 2 s (B-frames)": [ts],
    }


def decoded_end(module, path: Path):
    try:
        return module._probe(path, None, False, True)[1].last_decoded_s
    except module.MediaError as exc:
        return f"fails: {exc}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ref", default="HEAD", help="git revision of src/evoke/media.py to compare with")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path("/tmp/evoke-bench"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    ref = load_revision(args.ref)
    versions = {args.ref: ref, "working tree": current}
    log(f"load average before: {loadavg()}")
    for group, paths in files(args.out).items():
        truth = {p: single_thread_last_frame(p) for p in paths}
        best = {}
        for _ in range(args.reps):
            for name, module in versions.items():
                def run(module=module):
                    for p in paths:
                        try:
                            module.probe(p)
                        except module.MediaError:
                            pass
                m = measure(run)
                prev = best.get(name)
                best[name] = {k: min(m[k], prev[k]) if prev else m[k] for k in ("cpu_s", "wall_s")}
        for name, module in versions.items():
            ends = {p: decoded_end(module, p) for p in paths}
            wrong = [f"{p.name}: {ends[p]} (reference {truth[p]})" for p in paths if ends[p] != truth[p]]
            n = len(paths)
            print(f"{group} | {name} | cpu {best[name]['cpu_s'] / n:.4f} s/video | wall {best[name]['wall_s'] / n:.4f}"
                  f" s/video | decoded end differs from one thread: {len(wrong)} of {n}"
                  + (f" ({'; '.join(wrong)})" if wrong else ""))
    log(f"load average after: {loadavg()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
