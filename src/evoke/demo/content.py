"""Content measurements of the demo clips: what the simulated labels are drawn from.

At 1 Hz over the part of the clip the manifest keeps (second ``k`` is the
instant ``start_s + k``), read the way the workflow reads the clip:

* the frames come from the frames stage's sampler (:func:`evoke.frames.sample_frames`):
  for each second the frame on screen at that instant, upright, scaled to the
  workflow's default ``frames.short_side`` (the schema's default, 360 px; never
  upscaled);
* ``brightness`` (mean BT.601 luma, 0-1) and ``colourfulness`` (Hasler &
  Suesstrunk 2003, on 0-255 RGB) are the registered ``colour`` extractor's
  values for those frames, the numbers the workflow's colour features hold for
  that second;
* ``motion``: mean absolute grey (BT.601 luma) difference, 0-1, between that
  frame and the frame presented after it (before it, for the clip's last
  frame), both taken by the same sampler;
* ``faces``: frontal faces the OpenCV Haar cascade finds in that frame (scaled to
  320 px wide, as the cascade's minimum face size of 28 px assumes);
* ``audio_rms``: RMS of the 16 kHz mono audio over the second (full scale 1,
  0 without audio).
"""

from __future__ import annotations

import functools
import math
import shutil
import tempfile
from pathlib import Path

import numpy as np
import polars as pl

from evoke.config import load_schema
from evoke.demo.common import DemoError
from evoke.features import VideoInput, create_extractor
from evoke.frames import sample_frames, target_times
from evoke.media import probe, video_packet_times
from evoke.store import atomic_path

MEASURE_COLUMNS = ("brightness", "colourfulness", "motion", "faces", "audio_rms")


@functools.lru_cache(maxsize=1)
def frames_settings() -> dict:
    """The workflow's default ``frames`` settings (the config schema's defaults): the
    frames the demo measures are the ones a run with the default config stores."""
    block = load_schema()["properties"]["frames"]["properties"]
    return {k: block[k]["default"] for k in ("short_side", "backend")}


# faces are looked for in the frame scaled to this width (smaller frames scaled up): the
# cascade's cost grows with the pixels, and its minimum face size is in these pixels
FACE_WIDTH = 320


def _grey(rgb: np.ndarray) -> np.ndarray:
    return (rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114).astype(np.float32)


HAAR_FACE = "haarcascade_frontalface_default.xml"
# where the frontal-face cascade may be: the opencv-python wheel's cv2/data (OpenCV 4),
# Debian's opencv-data, and a gzipped copy in Debian's opencv-doc
_HAAR_FOLDERS = (Path("/usr/share/opencv4/haarcascades"), Path("/usr/share/opencv/haarcascades"))
_HAAR_GZ = Path("/usr/share/doc/opencv-doc/opencv4/html") / (HAAR_FACE + ".gz")


def face_cascade_path(cache: Path | None = None) -> Path:
    """The OpenCV frontal-face Haar cascade XML; a gzipped Debian copy is unpacked into ``cache``.

    Raises DemoError when none is found.
    """
    import cv2

    candidates = []
    data = getattr(getattr(cv2, "data", None), "haarcascades", None)
    if data:
        candidates.append(Path(data) / HAAR_FACE)
    candidates += [folder / HAAR_FACE for folder in _HAAR_FOLDERS]
    for path in candidates:
        if path.is_file():
            return path
    if _HAAR_GZ.is_file():
        import gzip

        cache = cache or Path(tempfile.gettempdir()) / "evoke-haar"
        cache.mkdir(parents=True, exist_ok=True)
        dest = cache / HAAR_FACE
        if not dest.is_file():
            with gzip.open(_HAAR_GZ) as src, atomic_path(dest) as tmp, open(tmp, "wb") as out:
                shutil.copyfileobj(src, out)
        return dest
    raise DemoError(
        f"OpenCV's {HAAR_FACE} not found (looked in {', '.join(str(c.parent) for c in candidates)}): "
        "install opencv-python-headless 4.x (it ships the cascades) or the Debian package opencv-data"
    )


def face_cascade(cache: Path | None = None):
    """A loaded ``cv2.CascadeClassifier`` for frontal faces (one per thread: it is not thread-safe).

    OpenCV 5 moved Haar cascades out of the main package; DemoError says what to install then.
    """
    import cv2

    cls = getattr(cv2, "CascadeClassifier", None)
    if cls is None:
        raise DemoError(
            f"OpenCV {cv2.__version__} has no CascadeClassifier (OpenCV 5 moved Haar cascades to "
            "opencv-contrib): install opencv-python-headless==4.14.0.94"
        )
    cascade = cls(str(face_cascade_path(cache)))
    if cascade.empty():
        raise DemoError(f"{face_cascade_path(cache)}: not a loadable Haar cascade")
    return cascade


def _face_count(cascade, rgb: np.ndarray) -> int:
    """Frontal faces in an upright RGB frame (looked for at :data:`FACE_WIDTH` pixels wide)."""
    import cv2

    h, w = rgb.shape[:2]
    size = (FACE_WIDTH, max(2, round(h * FACE_WIDTH / w)))
    grey = cv2.cvtColor(cv2.resize(rgb, size, interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2GRAY)
    grey = cv2.equalizeHist(grey)
    faces = cascade.detectMultiScale(grey, scaleFactor=1.15, minNeighbors=5, minSize=(28, 28))
    return int(len(faces))


def _partner_times(frame_times: np.ndarray, seconds: np.ndarray) -> np.ndarray:
    """For each instant, the presentation time of the frame after the one on screen then
    (the one before it when that is the last frame; itself for a one-frame clip)."""
    on_screen = np.maximum(np.searchsorted(frame_times, seconds + 1e-9, side="right") - 1, 0)
    partner = np.where(on_screen + 1 < frame_times.size, on_screen + 1, on_screen - 1)
    return frame_times[np.maximum(partner, 0)]


def _colour_values(frames: np.ndarray) -> dict[str, np.ndarray]:
    """Brightness and colourfulness of (T, H, W, 3) frames from the registered colour extractor."""
    colour = create_extractor("colour")
    n = frames.shape[0]
    video = VideoInput("demo", np.arange(n, dtype=np.float64), np.ones(n, dtype=bool), float(n),
                       _frames_dataset=frames)
    values = colour.extract(video).values
    names = list(colour.dim_names)
    return {k: values[:, names.index(k)] for k in ("brightness", "colourfulness")}


def _audio_rms_per_second(path: Path, start: float, end: float) -> tuple[np.ndarray, float]:
    """RMS of 16 kHz mono audio per second of [start, end) and over all of it (zeros without audio)."""
    import av

    n = max(int(math.ceil(end - start - 1e-6)), 1)
    per_sec = np.zeros(n)
    with av.open(str(path)) as c:
        if not c.streams.audio:
            return per_sec, 0.0
        resampler = av.AudioResampler(format="flt", layout="mono", rate=16000)
        chunks, t0 = [], None
        for frame in c.decode(audio=0):
            if t0 is None:
                t0 = float(frame.time) if frame.time is not None else 0.0
            for f in resampler.resample(frame):
                chunks.append(f.to_ndarray().reshape(-1))
        for f in resampler.resample(None):
            chunks.append(f.to_ndarray().reshape(-1))
    if not chunks:
        return per_sec, 0.0
    x = np.concatenate(chunks).astype(np.float64)
    a = max(int(round((start - (t0 or 0.0)) * 16000)), 0)
    b = max(int(round((end - (t0 or 0.0)) * 16000)), a)
    seg = x[a:b]
    for k in range(n):
        part = seg[k * 16000:(k + 1) * 16000]
        per_sec[k] = math.sqrt(float(np.mean(part ** 2))) if part.size else 0.0
    total = math.sqrt(float(np.mean(seg ** 2))) if seg.size else 0.0
    return per_sec, total


def measure_clip(path: Path, start_s: float = 0.0, end_s: float | None = None,
                 info: dict | None = None) -> pl.DataFrame:
    """Content measurements of ``path`` at 1 Hz over ``[start_s, end_s)`` (clip seconds).

    Returns one row per second: ``time_s`` (seconds from ``start_s``: 0, 1, ...),
    ``brightness``, ``colourfulness``, ``motion``, ``faces``, ``audio_rms`` (see the
    module docstring). ``info`` is :func:`evoke.media.probe`'s row for ``path``
    (probed when not given). Raises DemoError when the sampler finds no frame for
    one of the seconds (a clip the builder just encoded decodes to its end).
    """
    path = Path(path)
    info = info or probe(path)
    end = info["duration_s"] if end_s is None else min(end_s, info["duration_s"])
    offsets = target_times(end - start_s, 1.0)
    seconds = start_s + offsets
    frame_times = video_packet_times(path)[0]
    if not frame_times.size:
        raise DemoError(f"{path.name}: no video frames")
    partners = _partner_times(frame_times, seconds)
    targets = np.unique(np.concatenate([seconds, partners]))
    settings = frames_settings()
    got = {i: rgb for i, _, _, rgb in sample_frames(path, short_side=settings["short_side"],
                                                     backend=settings["backend"], info=info,
                                                     targets=targets)}
    position = {float(t): i for i, t in enumerate(targets)}
    missing = [float(t) for t in np.concatenate([seconds, partners]) if position[float(t)] not in got]
    if missing:
        raise DemoError(f"{path.name}: the frames sampler found no frame at {missing[0]:.3f} s "
                        f"({len(missing)} instants in all)")
    frames = np.stack([got[position[float(t)]] for t in seconds])
    colour = _colour_values(frames)
    motion = [float(np.mean(np.abs(_grey(got[position[float(p)]]) - _grey(f)))) / 255.0
              for p, f in zip(partners, frames)]
    cascade = face_cascade()
    audio, _ = _audio_rms_per_second(path, start_s, start_s + seconds.size)
    df = pl.DataFrame({
        "time_s": offsets,
        "brightness": colour["brightness"].astype(np.float64),
        "colourfulness": colour["colourfulness"].astype(np.float64),
        "motion": motion,
        "faces": [_face_count(cascade, f) for f in frames],
        "audio_rms": audio,
    })
    return df.with_columns(
        pl.col("faces").cast(pl.Int64),
        *[pl.col(c).round(5) for c in ("brightness", "colourfulness", "motion", "audio_rms")],
    )


def summarise_content(per_second: pl.DataFrame) -> pl.DataFrame:
    """Per-video means of :func:`measure_clip`'s rows (``video_id`` column required).

    Returns ``video_id, n_seconds, brightness, colourfulness, motion,
    face_fraction`` (share of seconds with a face) and ``audio_rms``.
    """
    return (
        per_second.group_by("video_id", maintain_order=True)
        .agg(
            pl.len().alias("n_seconds"),
            pl.col("brightness").mean(),
            pl.col("colourfulness").mean(),
            pl.col("motion").mean(),
            (pl.col("faces") > 0).cast(pl.Float64).mean().alias("face_fraction"),
            pl.col("audio_rms").mean(),
        )
        .with_columns(pl.col(c).round(5) for c in
                      ("brightness", "colourfulness", "motion", "face_fraction", "audio_rms"))
        .sort("video_id")
    )
