"""The feature-extractor registry (lhotse style: one module, one registered class).

An extractor is a :class:`FeatureExtractor` subclass with

* ``name``: its registry key (``efficientnet``, ``vggish``, ...);
* ``config_type``: a frozen dataclass of its settings (round-trips through
  ``to_dict``/``from_dict``; unknown keys are an error);
* ``modality``: what it reads: ``"frames"`` (the stored 1 Hz RGB frames),
  ``"audio"`` (the 16 kHz mono WAV) or ``"video"`` (the muted video file, for
  clip models that need a higher frame rate, such as I3D);
* ``step_shape(config)``: the shape of one time step's output (``(1280,)``,
  ``(2, 512)`` for two face slots ...);
* ``weights(config)``: the :class:`~evoke.weights.WeightSpec` files it needs;
* ``extract(video)``: a :class:`FeatureResult` on the video's time grid.

Every output is aligned to the frames grid: ``timestamps_s`` = ``k / rate``
for the ``T`` seconds of the video, with a ``mask`` that is False where the
step has no valid value (no face, no audio, a window shorter than the model's).

Frames extractors read the stored frames through ``self.frame_batches(video)``:
batches of ``frame_batch_size`` valid frames, each passed through
``prepare_frames`` (the extractor's CPU/device preprocessing, by default none).
In the features stage a :class:`FramePrefetcher` reads and prepares the next
batch (also the next video's first) in a background thread while the model
runs on the current one; outside the stage the same functions run in line, with
the same results.

``@register_extractor`` puts a class in :data:`EXTRACTORS`;
``evoke.features.__init__`` imports every extractor module so the registry is
complete. Adding an extractor is one module, one class, one config block.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterator

import numpy as np

from evoke import EvokeError
from evoke.config import fingerprint

log = logging.getLogger(__name__)

EXTRACTORS: dict[str, type["FeatureExtractor"]] = {}


class FeatureError(EvokeError):
    """An extractor cannot run (bad config, unknown name) or one video cannot be processed."""


@dataclass(frozen=True)
class ExtractorConfig:
    """Base of extractor configs: frozen, JSON-serialisable, strict about keys."""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict | None) -> "ExtractorConfig":
        data = dict(data or {})
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise FeatureError(
                f"{cls.__name__}: unknown setting(s) {', '.join(unknown)} (known: {', '.join(sorted(names))})"
            )
        for f in dataclasses.fields(cls):  # YAML lists arrive as lists; configs are frozen
            if isinstance(data.get(f.name), list):
                data[f.name] = tuple(data[f.name])
        try:
            return cls(**data)
        except (TypeError, ValueError) as exc:
            raise FeatureError(f"{cls.__name__}: {exc}") from exc


AMP_CHOICES = ("auto", "fp16", "bf16", "off")


def check_amp(value) -> None:
    """Raise ValueError unless ``value`` is a torch extractor's ``amp`` setting: one of
    :data:`AMP_CHOICES`, or a boolean (``true`` = fp16, ``false`` = off, the settings
    before ``auto``). What each means: ``evoke.features._torch.amp_dtype``."""
    if not isinstance(value, bool) and value not in AMP_CHOICES:
        raise ValueError(f"amp must be one of {', '.join(AMP_CHOICES)} (or true/false), not {value!r}")


Prepare = Callable[[np.ndarray], Any]


def read_frame_batches(frames_dataset, frame_mask: np.ndarray, size: int,
                       prepare: Prepare | None = None) -> Iterator[tuple[np.ndarray, Any]]:
    """Yield (indices (B,), batch) of the valid frames of one video, B <= ``size``.

    ``frames_dataset``: (T, H, W, 3) uint8 (an h5py dataset or an array);
    ``batch``: those frames (B, H, W, 3) uint8, or ``prepare(frames)``. The one
    reader of stored frames: :meth:`VideoInput.frame_batches` and the
    :class:`FramePrefetcher`'s worker both call it, so both give the same batches.
    """
    valid = np.flatnonzero(frame_mask)
    for start in range(0, valid.size, size):
        idx = valid[start:start + size]
        # contiguous runs read in one slice: far fewer HDF5 calls than per frame
        if idx[-1] - idx[0] == idx.size - 1:
            batch = frames_dataset[idx[0]:idx[-1] + 1]
        else:
            batch = np.stack([frames_dataset[i] for i in idx])
        yield idx, batch if prepare is None else prepare(batch)


@dataclass
class VideoInput:
    """What an extractor may read for one video.

    ``timestamps_s`` (T,) is the grid every output must follow.
    ``frame_batches`` yields the valid stored frames in batches, with their
    indices. ``audio_path`` is None when the video has no audio.
    ``_prefetch``: the stage's :class:`FramePrefetcher` that reads this video's
    batches ahead (None: ``frame_batches`` reads them itself).
    """

    video_id: str
    timestamps_s: np.ndarray
    frame_mask: np.ndarray
    duration_s: float
    video_path: Path | None = None
    audio_path: Path | None = None
    _frames_dataset: Any = None  # an h5py dataset (T, H, W, 3)
    _prefetch: "FramePrefetcher | None" = None

    @property
    def n_steps(self) -> int:
        return int(self.timestamps_s.shape[0])

    def frame_batches(self, size: int, prepare: Prepare | None = None) -> Iterator[tuple[np.ndarray, Any]]:
        """Yield (indices (B,), frames (B, H, W, 3) uint8 or ``prepare(frames)``) of the valid
        frames, B <= ``size`` (see :func:`read_frame_batches`)."""
        if self._prefetch is not None:
            return self._prefetch.batches(self.video_id, size, prepare)
        return read_frame_batches(self._frames_dataset, self.frame_mask, size, prepare)


_END = object()  # a video's last batch has been queued


class FramePrefetcher:
    """Reads and prepares frame batches in a background thread, ahead of the model.

    ``frames``: a mapping ``video_id -> group`` with ``mask`` (T,) and ``frames``
    (T, H, W, 3) (the frames stage's HDF5 file); ``order``: the videos in the
    order the stage will process them; ``size`` and ``prepare``: the batching of
    the extractor (:meth:`FeatureExtractor.frame_batches`). While the extractor
    works on one batch, the worker reads and prepares the next, and after a
    video's last batch the next video's first ones.

    Memory: at most ``depth`` prepared batches wait in the queue, plus the one
    the worker is preparing and the one the extractor holds: ``depth + 2``
    batches in all (``depth + 2`` x ``size`` frames and their prepared form).

    :meth:`batches` serves one video. A video that is skipped (its finished part
    reused), or left before its last batch (the extractor raised), makes the
    worker drop what it read ahead and restart at the video asked for, so order
    only matters for speed. An exception in the worker (an unreadable frame, a
    ``prepare`` that fails) is raised in the main thread when the extractor
    reaches that video's batch: :class:`EvokeError` and ``OSError`` (one
    video's failure, as in the serial path) as a :class:`FeatureError` naming
    the video; anything else (a bug) as itself, with a note naming the video.
    Use as a context manager; leaving it stops the worker.
    """

    def __init__(self, frames, order: list[str], size: int, prepare: Prepare | None = None, depth: int = 2):
        if depth < 1:
            raise ValueError("depth must be >= 1")
        self._frames = frames
        self._order = list(order)
        self._position = {vid: i for i, vid in enumerate(self._order)}
        self.size, self.prepare, self.depth = int(size), prepare, int(depth)
        self._queue: queue.Queue = queue.Queue(maxsize=self.depth)
        self._assigned = threading.Condition()
        self._generation = 0  # bumped when the worker must restart at _start
        self._start = 0
        self._closed = False
        self._expect = 0  # the position whose batches come next in the queue; None after an unfinished video
        self._thread = threading.Thread(target=self._work, name="frame-prefetch", daemon=True)
        self._thread.start()

    # -- the worker thread ------------------------------------------------------
    def _work(self) -> None:
        generation, pos = None, 0
        while True:
            with self._assigned:
                while not self._closed and generation == self._generation and pos >= len(self._order):
                    self._assigned.wait()
                if self._closed:
                    return
                if generation != self._generation:
                    generation, pos = self._generation, self._start
            if not self._read_video(generation, pos):
                continue  # restarted or closed: take the new assignment
            pos += 1

    def _read_video(self, generation: int, pos: int) -> bool:
        """Queue the batches of video ``pos``, then ``_END`` (or its exception); False if cut short."""
        try:
            g = self._frames[self._order[pos]]
            for idx, batch in read_frame_batches(g["frames"], g["mask"][()], self.size, self.prepare):
                if not self._put((generation, pos, idx, batch)):
                    return False
            item = _END
        except BaseException as exc:  # handed to the main thread, which raises it
            item = exc
        return self._put((generation, pos, None, item))

    def _put(self, item) -> bool:
        self._queue.put(item)  # blocks while the queue is full (the memory bound)
        return not self._closed and item[0] == self._generation

    # -- the main thread --------------------------------------------------------
    def batches(self, video_id: str, size: int, prepare: Prepare | None = None) -> Iterator[tuple[np.ndarray, Any]]:
        """The (indices, batch) of ``video_id`` as :func:`read_frame_batches` gives them."""
        if (int(size), prepare) != (self.size, self.prepare):
            raise FeatureError(f"{video_id}: frames read with batch size {size} and {prepare!r}, but prefetched "
                               f"with {self.size} and {self.prepare!r} (use FeatureExtractor.frame_batches)")
        if video_id not in self._position:
            raise FeatureError(f"{video_id}: not among the videos the frame prefetcher reads")
        return self._batches(video_id, self._position[video_id])

    def _batches(self, video_id: str, pos: int) -> Iterator[tuple[np.ndarray, Any]]:
        if self._closed:
            raise FeatureError(f"{video_id}: the frame prefetcher is closed")
        if pos != self._expect:  # the worker read ahead for another video: restart it here
            with self._assigned:
                self._generation += 1
                self._start = pos
                self._assigned.notify()
        generation, self._expect = self._generation, None
        while True:
            item_generation, item_pos, idx, batch = self._get(video_id)
            if item_generation != generation:
                continue  # read before the restart
            assert item_pos == pos, (item_pos, pos)
            if batch is _END:
                self._expect = pos + 1
                return
            if isinstance(batch, BaseException):
                self._expect = pos + 1  # the worker goes on with the next video
                if isinstance(batch, (EvokeError, OSError)):
                    raise FeatureError(f"{video_id}: reading frames failed: {batch}") from batch
                batch.add_note(f"raised in the frame prefetch thread while reading video {video_id}")
                raise batch
            yield idx, batch

    def _get(self, video_id: str):
        while True:
            try:
                return self._queue.get(timeout=1.0)
            except queue.Empty:
                if not self._thread.is_alive():
                    raise FeatureError(f"{video_id}: the frame prefetch thread has stopped") from None

    def close(self) -> None:
        """Stop the worker and drop what it read ahead."""
        with self._assigned:
            self._closed = True
            self._assigned.notify()
        while self._thread.is_alive():  # a worker blocked on a full queue needs room to see the flag
            try:
                self._queue.get(timeout=0.05)
            except queue.Empty:
                pass
        self._thread.join()

    def __enter__(self) -> "FramePrefetcher":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass
class FeatureResult:
    """An extractor's output for one video: ``values`` (T, *step_shape) float32 and
    ``mask`` (T,) or (T, slots) bool, on the video's ``timestamps_s``.

    ``extras``: further per-step arrays (first dimension T, such as facenet's
    ``face_boxes``), stored beside ``values`` under their names; float arrays
    become float32 and must be finite, like ``values``.
    """

    values: np.ndarray
    mask: np.ndarray
    extras: dict[str, np.ndarray] = field(default_factory=dict)

    RESERVED: ClassVar[frozenset] = frozenset({"values", "mask", "timestamps_s"})

    def check(self, extractor: "FeatureExtractor", n_steps: int) -> "FeatureResult":
        expected = (n_steps, *extractor.step_shape)
        if tuple(self.values.shape) != expected:
            raise FeatureError(f"{extractor.name}: produced shape {self.values.shape}, expected {expected}")
        if self.mask.shape[0] != n_steps:
            raise FeatureError(f"{extractor.name}: mask has {self.mask.shape[0]} steps, expected {n_steps}")
        bad = ~np.isfinite(self.values)
        if bad.any():
            raise FeatureError(f"{extractor.name}: {int(bad.sum())} non-finite values")
        self.values = self.values.astype(np.float32, copy=False)
        self.mask = self.mask.astype(bool, copy=False)
        self.extras = {name: self._check_extra(extractor, name, arr, n_steps) for name, arr in self.extras.items()}
        return self

    def _check_extra(self, extractor: "FeatureExtractor", name: str, arr, n_steps: int) -> np.ndarray:
        arr = np.asarray(arr)
        if name in self.RESERVED or not name.isidentifier():
            raise FeatureError(f"{extractor.name}: extra output name {name!r} is reserved or not an identifier")
        if arr.ndim == 0 or arr.shape[0] != n_steps:
            raise FeatureError(f"{extractor.name}: extra output {name!r} has shape {arr.shape}, expected "
                               f"{n_steps} steps first")
        if arr.dtype.kind == "f":
            bad = ~np.isfinite(arr)
            if bad.any():
                raise FeatureError(f"{extractor.name}: {int(bad.sum())} non-finite values in {name!r}")
            arr = arr.astype(np.float32, copy=False)
        elif arr.dtype.kind not in "biu":
            raise FeatureError(f"{extractor.name}: extra output {name!r} has dtype {arr.dtype}, not numbers")
        return arr


class FeatureExtractor:
    """Base class; see the module docstring. Subclasses set the class attributes and
    implement ``step_shape``, ``extract`` and, when they use pretrained weights,
    ``weights`` and ``load``."""

    name: ClassVar[str]
    config_type: ClassVar[type[ExtractorConfig]] = ExtractorConfig
    modality: ClassVar[str] = "frames"
    description: ClassVar[str] = ""
    # True for extractors that run a torch model (they get a device: GPU when visible)
    uses_torch: ClassVar[bool] = False
    # settings that change how fast, not what is computed: left out of the cache key
    # (config_hash) and of the workflow's params, so changing them reruns nothing
    RUNTIME_KEYS: ClassVar[frozenset[str]] = frozenset({"batch_size"})

    def __init__(self, config: ExtractorConfig | dict | None = None, device: str = "cpu",
                 weights_paths: dict[str, str] | None = None):
        if not isinstance(config, ExtractorConfig):
            config = self.config_type.from_dict(config)
        self.config = config
        self.device = device
        self.weights_paths = dict(weights_paths or {})
        self._loaded = False
        self._weights_identity: str | None = None

    # -- what it produces -------------------------------------------------
    @property
    def step_shape(self) -> tuple[int, ...]:
        raise NotImplementedError

    @property
    def dim(self) -> int:
        return int(np.prod(self.step_shape))

    def weights(self) -> list:
        """The WeightSpecs this configuration needs (none for weight-free extractors)."""
        return []

    def weights_identity(self) -> str:
        """Name and content sha256 of every weights file in use (an HDF5 attribute, part of
        the cache key): a different checkpoint under the same name is a different identity.
        Raises WeightsMissing when a file is not here."""
        from evoke.weights import identity

        if self._weights_identity is None:
            self._weights_identity = identity(self.weights(), self.weights_paths)
        return self._weights_identity

    def numeric_config(self) -> dict:
        """The settings that change the numbers: the config without :attr:`RUNTIME_KEYS`."""
        return {k: v for k, v in self.config.to_dict().items() if k not in self.RUNTIME_KEYS}

    def config_hash(self) -> str:
        """What the values depend on: the extractor, its numeric settings and its weights'
        content (not ``batch_size``, the device or where the weights lie)."""
        return fingerprint(self.name, self.numeric_config(), self.weights_identity())

    # -- running ----------------------------------------------------------
    def ensure_loaded(self) -> None:
        if not self._loaded:
            self.load()
            self._loaded = True

    def load(self) -> None:
        """Load models and weights (called once, before the first ``extract``)."""

    def extract(self, video: VideoInput) -> FeatureResult:
        raise NotImplementedError

    # -- reading frames (modality "frames") -------------------------------------
    @property
    def frame_batch_size(self) -> int:
        """Frames per batch: the config's ``batch_size``, else 32."""
        return int(getattr(self.config, "batch_size", 32))

    def prepare_frames(self, frames: np.ndarray) -> Any:
        """What ``extract`` needs of a (B, H, W, 3) uint8 batch before its model runs (default:
        the frames). In the features stage it runs in the prefetch thread: it must not change
        state that ``extract`` uses, and must give the same result in any thread."""
        return frames

    def frame_batches(self, video: VideoInput) -> Iterator[tuple[np.ndarray, Any]]:
        """(indices (B,), ``prepare_frames(frames)``) of the video's valid frames: the one way a
        frames extractor reads them (prefetched in the stage, read in line otherwise)."""
        return video.frame_batches(self.frame_batch_size, self.prepare_frames)

    def per_frame(self, video: VideoInput, features: Callable[[Any], np.ndarray]) -> FeatureResult:
        """Apply ``features`` (a prepared batch of B frames -> (B, *step_shape)) to the valid
        frames of ``video``: (T, *step_shape) values, zeros and mask False where a frame is missing."""
        values = np.zeros((video.n_steps, *self.step_shape), dtype=np.float32)
        mask = np.zeros(video.n_steps, dtype=bool)
        for idx, batch in self.frame_batches(video):
            values[idx] = features(batch)
            mask[idx] = True
        return FeatureResult(values=values, mask=mask)

    def frame_prefetcher(self, frames, order: list[str], depth: int = 2) -> "FramePrefetcher":
        """A :class:`FramePrefetcher` that reads ahead for :meth:`frame_batches`."""
        return FramePrefetcher(frames, order, self.frame_batch_size, self.prepare_frames, depth)


def register_extractor(cls: type[FeatureExtractor]) -> type[FeatureExtractor]:
    """Class decorator: add ``cls`` to :data:`EXTRACTORS` under ``cls.name``."""
    if not getattr(cls, "name", None):
        raise TypeError(f"{cls.__name__} has no name")
    if cls.name in EXTRACTORS and EXTRACTORS[cls.name] is not cls:
        raise TypeError(f"extractor name {cls.name!r} registered twice")
    if cls.modality not in ("frames", "audio", "video"):
        raise TypeError(f"{cls.__name__}.modality must be frames, audio or video")
    EXTRACTORS[cls.name] = cls
    return cls


def get_extractor(name: str) -> type[FeatureExtractor]:
    import evoke.features  # noqa: F401  (fills the registry)

    try:
        return EXTRACTORS[name]
    except KeyError:
        raise FeatureError(f"unknown extractor {name!r}; known: {', '.join(sorted(EXTRACTORS))}") from None


def create_extractor(name: str, config: dict | None = None, device: str = "cpu",
                     weights_paths: dict | None = None) -> FeatureExtractor:
    return get_extractor(name)(config, device=device, weights_paths=weights_paths)
