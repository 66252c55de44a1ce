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
Those that compute each frame on its own implement ``frame_step`` (a prepared
batch -> per-frame outputs); their ``extract`` is ``per_frame``, and in the
features stage a :class:`CrossVideoFrames` runs them over a shard's videos in
batches that span videos, splitting the outputs back per video.

``inputs(video)`` is an extractor's front end (frame reads and ``prepare_frames``;
i3d's decoding and clips; the audio extractors' log-mel examples): in the features
stage a :class:`Prefetcher` runs it in a background thread, ahead of the model
(also the next video's first items); ``read_inputs`` gives its items either way.
Outside the stage the same functions run in line, with the same results.

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
        batch = _read_rows(frames_dataset, idx)
        yield idx, batch if prepare is None else prepare(batch)


def _read_rows(frames_dataset, idx: np.ndarray) -> np.ndarray:
    """Frames ``idx`` (ascending) of a (T, H, W, 3) dataset; a contiguous run in one slice
    (far fewer HDF5 calls than per frame)."""
    if idx[-1] - idx[0] == idx.size - 1:
        return frames_dataset[idx[0]:idx[-1] + 1]
    return np.stack([frames_dataset[i] for i in idx])


@dataclass
class VideoInput:
    """What an extractor may read for one video.

    ``timestamps_s`` (T,) is the grid every output must follow.
    ``frame_batches`` yields the valid stored frames in batches, with their
    indices. ``audio_path`` is None when the video has no audio. ``rotation``:
    the display rotation in degrees clockwise from the probe row (None: not known,
    read from the file when needed).
    ``_prefetch``: the stage's :class:`Prefetcher` that runs this video's front end
    ahead (None: the extractor runs it in line).
    """

    video_id: str
    timestamps_s: np.ndarray
    frame_mask: np.ndarray
    duration_s: float
    video_path: Path | None = None
    audio_path: Path | None = None
    rotation: int | None = None
    _frames_dataset: Any = None  # an h5py dataset (T, H, W, 3)
    _prefetch: "Prefetcher | None" = None

    @property
    def n_steps(self) -> int:
        return int(self.timestamps_s.shape[0])

    def frame_batches(self, size: int, prepare: Prepare | None = None) -> Iterator[tuple[np.ndarray, Any]]:
        """Yield (indices (B,), frames (B, H, W, 3) uint8 or ``prepare(frames)``) of the valid
        frames, B <= ``size`` (see :func:`read_frame_batches`)."""
        if self._prefetch is not None:
            return self._prefetch.items(self.video_id, (int(size), prepare))
        return read_frame_batches(self._frames_dataset, self.frame_mask, size, prepare)


_END = object()  # a video's last item has been queued


def raise_for_video(video_id: str, exc: BaseException, what: str):
    """Raise ``exc``, met while ``what`` (``reading frames``) for ``video_id`` in another
    thread, in this one: :class:`EvokeError` and ``OSError`` (one video's failure) as a
    :class:`FeatureError` naming the video; anything else (a bug) as itself, with a note."""
    if isinstance(exc, (EvokeError, OSError)):
        raise FeatureError(f"{video_id}: {what} failed: {exc}") from exc
    exc.add_note(f"raised in the prefetch thread while {what} for video {video_id}")
    raise exc


class _Closing:
    """A context manager whose exit calls ``close``."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Prefetcher(_Closing):
    """Runs the extractor's front end (what ``source(video_id)`` yields: frame batches read
    and prepared, decoded clips, log-mel examples) in a background thread, ahead of the model.

    ``order``: the videos in the order the stage will process them; ``key``: what the
    front end is (:meth:`items` refuses a reader that asks for another); ``what``: what
    the front end does, for messages (``reading frames``). While the extractor works on
    one item, the worker produces the next, and after a video's last item the next
    video's first ones.

    Memory: at most ``depth`` items wait in the queue, plus the one the worker is
    producing and the one the extractor holds: ``depth + 2`` in all.

    :meth:`items` serves one video. A video that is skipped (its finished part
    reused), or left before its last item (the extractor raised), makes the worker drop
    what it read ahead and restart at the video asked for, so order only matters for
    speed. An exception in the worker (an unreadable frame, a ``prepare`` that fails) is
    raised in the main thread when the extractor reaches that video's item
    (:func:`raise_for_video`). Use as a context manager; leaving it stops the worker.
    """

    def __init__(self, source: Callable[[str], Iterator], order: list[str], key: Any = None, depth: int = 2,
                 what: str = "reading frames"):
        if depth < 1:
            raise ValueError("depth must be >= 1")
        self._source, self.key, self.what = source, key, what
        self._order = list(order)
        self._position = {vid: i for i, vid in enumerate(self._order)}
        self.depth = int(depth)
        self._queue: queue.Queue = queue.Queue(maxsize=self.depth)
        self._assigned = threading.Condition()
        self._generation = 0  # bumped when the worker must restart at _start
        self._start = 0
        self._closed = False
        self._expect = 0  # the position whose items come next in the queue; None after an unfinished video
        self._thread = threading.Thread(target=self._work, name="prefetch", daemon=True)
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
        """Queue the items of video ``pos``, then ``_END`` (or its exception); False if cut short."""
        try:
            for item in self._source(self._order[pos]):
                if not self._put((generation, pos, item)):
                    return False
            item = _END
        except BaseException as exc:  # handed to the main thread, which raises it
            item = _Raised(exc)
        return self._put((generation, pos, item))

    def _put(self, item) -> bool:
        self._queue.put(item)  # blocks while the queue is full (the memory bound)
        return not self._closed and item[0] == self._generation

    # -- the main thread --------------------------------------------------------
    def _check_key(self, video_id: str, key: Any) -> None:
        if key != self.key:
            raise FeatureError(f"{video_id}: read as {key!r}, but prefetched as {self.key!r}")

    def __contains__(self, video_id: str) -> bool:
        return video_id in self._position

    def items(self, video_id: str, key: Any = None) -> Iterator:
        """The items of ``video_id``, as ``source(video_id)`` gives them."""
        self._check_key(video_id, key)
        if video_id not in self._position:
            raise FeatureError(f"{video_id}: not among the videos the prefetcher reads")
        return self._items(video_id, self._position[video_id])

    def _items(self, video_id: str, pos: int) -> Iterator:
        if self._closed:
            raise FeatureError(f"{video_id}: the prefetcher is closed")
        if pos != self._expect:  # the worker read ahead for another video: restart it here
            with self._assigned:
                self._generation += 1
                self._start = pos
                self._assigned.notify()
        generation, self._expect = self._generation, None
        while True:
            item_generation, item_pos, item = self._get(video_id)
            if item_generation != generation:
                continue  # read before the restart
            assert item_pos == pos, (item_pos, pos)
            if item is _END:
                self._expect = pos + 1
                return
            if isinstance(item, _Raised):
                self._expect = pos + 1  # the worker goes on with the next video
                raise_for_video(video_id, item.exc, self.what)
            yield item

    def _get(self, video_id: str):
        while True:
            try:
                return self._queue.get(timeout=1.0)
            except queue.Empty:
                if not self._thread.is_alive():
                    raise FeatureError(f"{video_id}: the prefetch thread has stopped") from None

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



@dataclass
class _Raised:
    exc: BaseException


class FramePrefetcher(Prefetcher):
    """A :class:`Prefetcher` of stored frames: ``frames`` a mapping ``video_id -> group``
    with ``mask`` (T,) and ``frames`` (T, H, W, 3) (the frames stage's HDF5 file); ``size``
    and ``prepare``: the batching of :func:`read_frame_batches`."""

    def __init__(self, frames, order: list[str], size: int, prepare: Prepare | None = None, depth: int = 2):
        size = int(size)
        super().__init__(lambda vid: read_frame_batches(frames[vid]["frames"], frames[vid]["mask"][()], size, prepare),
                         order, (size, prepare), depth)
        self.size, self.prepare = size, prepare

    def _check_key(self, video_id: str, key: Any) -> None:
        if key != self.key:
            raise FeatureError(f"{video_id}: frames read with batch size {key[0]} and {key[1]!r}, but prefetched "
                               f"with {self.size} and {self.prepare!r} (use FeatureExtractor.frame_batches)")

    def batches(self, video_id: str, size: int, prepare: Prepare | None = None) -> Iterator[tuple[np.ndarray, Any]]:
        """The (indices, batch) of ``video_id`` as :func:`read_frame_batches` gives them."""
        return self.items(video_id, (int(size), prepare))


# -- batches across videos (frames extractors) -----------------------------------

@dataclass
class _Piece:
    """Consecutive valid frames of one video inside a cross-video batch.

    ``pos``: the video's position in the order; ``idx`` (n,): its frame indices;
    ``data``: ``prepare(frames)``, or (``failed``) the exception that stopped reading the
    video; ``last``: the video's last piece (``idx`` is empty for a video without valid
    frames and for a failure)."""

    pos: int
    idx: np.ndarray
    data: Any
    last: bool
    failed: bool = False


def cross_video_batches(frames, order: list[str], size: int, prepare: Prepare | None = None
                        ) -> Iterator[list[_Piece]]:
    """The valid frames of the videos ``order`` (in ``frames``, the frames stage's HDF5 file)
    as batches of ``size`` frames that span videos: lists of :class:`_Piece`, each
    prepared on its own (the frames of one piece share one size), ``size`` frames per
    batch except the last. A video that cannot be read costs only itself: its pieces
    still waiting are dropped and a failed piece takes their place."""
    batch: list[_Piece] = []
    filled = 0
    for pos, vid in enumerate(order):
        try:
            g = frames[vid]
            valid = np.flatnonzero(g["mask"][()])
            if valid.size == 0:
                batch.append(_Piece(pos, valid, None, True))
            start = 0
            while start < valid.size:
                idx = valid[start:start + size - filled]
                start += idx.size
                rows = _read_rows(g["frames"], idx)
                batch.append(_Piece(pos, idx, rows if prepare is None else prepare(rows), start == valid.size))
                filled += idx.size
                if filled == size:
                    yield batch
                    batch, filled = [], 0
        except BaseException as exc:  # raised in the main thread when the stage reaches the video
            filled -= sum(p.idx.size for p in batch if p.pos == pos)
            batch = [p for p in batch if p.pos != pos]
            batch.append(_Piece(pos, np.zeros(0, np.int64), exc, True, failed=True))
    if batch:
        yield batch


class FrameOutputs:
    """One video's per-frame outputs, filled batch by batch: the arrays of
    :meth:`FeatureExtractor.frame_outputs` (T, ...), zeros (mask False) where no frame
    was given."""

    def __init__(self, extractor: "FeatureExtractor", n_steps: int):
        self.name = extractor.name
        self.arrays = {k: np.zeros((n_steps, *shape), dtype) for k, (shape, dtype) in extractor.frame_outputs().items()}

    def add(self, idx: np.ndarray, outputs: dict[str, np.ndarray]) -> None:
        unknown = sorted(set(outputs) - set(self.arrays))
        if unknown:
            raise FeatureError(f"{self.name}: frame_step gave outputs {unknown} it does not declare")
        for k, arr in self.arrays.items():
            if k not in outputs:
                if k != "mask":
                    raise FeatureError(f"{self.name}: frame_step gave no {k!r}")
                arr[idx] = True
            else:
                arr[idx] = outputs[k]

    def result(self) -> "FeatureResult":
        arrays = dict(self.arrays)
        return FeatureResult(arrays.pop("values"), arrays.pop("mask"), extras=arrays)


def _join(parts: list):
    """Concatenate prepared pieces along the first axis (NumPy arrays or torch tensors)."""
    if len(parts) == 1:
        return parts[0]
    if isinstance(parts[0], np.ndarray):
        return np.concatenate(parts)
    import torch

    return torch.cat(parts)


def _shape_key(data) -> tuple:
    return type(data).__name__, tuple(data.shape[1:]), str(data.dtype)


class CrossVideoFrames(_Closing):
    """A frames extractor over the videos of a shard in batches that span videos.

    ``order``: the videos the stage will ask for, in its order (those whose finished
    part is reused are left out, and never read). The frames stream into batches of
    ``frame_batch_size`` frames (:func:`cross_video_batches`; read and prepared in a
    prefetch thread that stays ``depth`` batches ahead; in line with ``depth=0``); the
    prepared pieces of one shape are concatenated and go through
    :meth:`FeatureExtractor.frame_step` in one call; the outputs are split back per
    video and kept until the video is complete. :meth:`result` runs batches until the
    video asked for is complete and returns its :class:`FeatureResult`, the same as
    ``extractor.extract(video)`` (per-video batches) wherever ``frame_step`` treats
    every frame on its own.

    A video costs only itself: when a batch raises, each of its pieces runs again on
    its own, and the error belongs to the piece (video) that raises it; an unreadable
    video's error (:func:`raise_for_video`) and an extractor error are raised when the
    stage asks for that video. A video asked for out of order (not planned, or asked
    again) is extracted on its own, in line; planned videos passed over are dropped.
    Memory: the batches in the queue (``depth + 2``) and the outputs of at most one
    batch of videos ahead of the one asked for.
    """

    def __init__(self, extractor: "FeatureExtractor", frames, order: list[str], depth: int = 2):
        self.extractor, self._frames = extractor, frames
        self._order = list(order)
        self._position = {vid: i for i, vid in enumerate(self._order)}
        self._prefetch = None
        source = lambda _: cross_video_batches(frames, self._order, extractor.frame_batch_size,  # noqa: E731
                                               extractor.prepare_frames)
        if depth > 0 and self._order:
            self._prefetch = Prefetcher(source, ["shard"], depth=depth, what="batching frames")
            self._stream = self._prefetch.items("shard")
        else:
            self._stream = source(None)
        self._partial: dict[int, FrameOutputs] = {}
        self._done: dict[int, tuple[str, Any]] = {}  # pos -> ("ok", result) | ("read", exc) | ("extract", exc)
        self._next = 0  # videos before this position were handed out or passed over

    def result(self, video: VideoInput) -> "FeatureResult":
        """``video``'s features (``video.video_id`` one of ``order``; otherwise extracted on its own)."""
        pos = self._position.get(video.video_id)
        if pos is None or pos < self._next:
            log.debug("%s: not next in the cross-video batches, extracted on its own", video.video_id)
            return self.extractor.per_frame(dataclasses.replace(video, _prefetch=None))
        while pos not in self._done:
            batch = next(self._stream, None)
            if batch is None:
                raise FeatureError(f"{video.video_id}: the cross-video batches ended before this video")
            self._run(batch)
        for p in [p for p in (*self._done, *self._partial) if p < pos]:  # planned, never asked for
            self._done.pop(p, None)
            self._partial.pop(p, None)
        self._next = pos + 1
        kind, out = self._done.pop(pos)
        if kind == "read":
            raise_for_video(video.video_id, out, "reading frames")
        if kind == "extract":
            raise out
        return out

    def _run(self, batch: list[_Piece]) -> None:
        live = [p for p in batch if p.idx.size and not p.failed and p.pos >= self._next
                and self._done.get(p.pos, ("ok",))[0] == "ok"]
        try:
            outputs = self._step(live)
        except Exception:  # noqa: BLE001  (whose is it? each piece again on its own)
            outputs = {}
            for p in live:
                try:
                    outputs.update(self._step([p]))
                except Exception as exc:  # noqa: BLE001  (raised when the stage asks for the video)
                    outputs[id(p)] = exc
        for p in batch:
            if p.pos < self._next or (p.pos in self._done and self._done[p.pos][0] != "ok"):
                continue  # passed over, or already failed
            if p.failed:
                self._partial.pop(p.pos, None)
                self._done[p.pos] = ("read", p.data)
                continue
            acc = self._partial.get(p.pos)
            if acc is None:
                acc = self._partial[p.pos] = FrameOutputs(self.extractor,
                                                          self._frames[self._order[p.pos]]["mask"].shape[0])
            if p.idx.size:
                out = outputs[id(p)]
                if isinstance(out, BaseException):
                    self._partial.pop(p.pos)
                    self._done[p.pos] = ("extract", out)
                    continue
                acc.add(p.idx, out)
            if p.last:
                self._done[p.pos] = ("ok", self._partial.pop(p.pos).result())

    def _step(self, pieces: list[_Piece]) -> dict[int, dict[str, np.ndarray]]:
        """``frame_step`` over ``pieces``, one call per shape of prepared data; outputs per piece."""
        groups: dict[tuple, list[_Piece]] = {}
        for p in pieces:
            groups.setdefault(_shape_key(p.data), []).append(p)
        out: dict[int, dict[str, np.ndarray]] = {}
        for group in groups.values():
            n = sum(p.idx.size for p in group)
            got = self.extractor.frame_step(_join([p.data for p in group]))
            for k, arr in got.items():
                if len(arr) != n:
                    raise FeatureError(f"{self.extractor.name}: frame_step gave {len(arr)} rows of {k!r} "
                                       f"for {n} frames")
            start = 0
            for p in group:
                out[id(p)] = {k: arr[start:start + p.idx.size] for k, arr in got.items()}
                start += p.idx.size
        return out

    def close(self) -> None:
        if self._prefetch is not None:
            self._prefetch.close()


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

    # -- the front end and reading frames ---------------------------------------
    def inputs(self, video: VideoInput) -> Iterator:
        """What ``extract`` reads of ``video``, in order: its front end (reads, decoding,
        preprocessing), which the features stage runs ahead in a :class:`Prefetcher`
        thread. Frames extractors: (indices (B,), ``prepare_frames(frames)``) of the valid
        frames (:func:`read_frame_batches`); extractors of the other modalities that have
        a front end override it (and :attr:`has_front_end` is then True). It must not
        change state that ``extract`` uses, and must give the same in any thread."""
        if self.modality != "frames":
            raise NotImplementedError(f"{self.name} has no front end to run ahead")
        return read_frame_batches(video._frames_dataset, video.frame_mask, self.frame_batch_size,
                                  self.prepare_frames)

    @property
    def has_front_end(self) -> bool:
        """True when :meth:`inputs` gives what ``extract`` reads (the stage prefetches it)."""
        return self.modality == "frames" or type(self).inputs is not FeatureExtractor.inputs

    def read_inputs(self, video: VideoInput) -> Iterator:
        """:meth:`inputs` of ``video``: from the stage's prefetcher when it reads ahead for
        this extractor, else computed in line (the same items either way)."""
        if video._prefetch is not None:
            return video._prefetch.items(video.video_id, self)
        return self.inputs(video)

    @property
    def frame_batch_size(self) -> int:
        """Frames per batch: the config's ``batch_size``, else 32."""
        return int(getattr(self.config, "batch_size", 32))

    def prepare_frames(self, frames: np.ndarray) -> Any:
        """What ``extract`` needs of a (B, H, W, 3) uint8 batch before its model runs (default:
        the frames). In the features stage it runs in the prefetch thread: it must not change
        state that ``extract`` uses, must give the same result in any thread, and must treat
        every frame on its own (its output for a frame may not depend on the other frames of
        the batch: the stage prepares pieces of a batch separately)."""
        return frames

    def frame_batches(self, video: VideoInput) -> Iterator[tuple[np.ndarray, Any]]:
        """(indices (B,), ``prepare_frames(frames)``) of the video's valid frames: the one way a
        frames extractor reads them (prefetched in the stage, read in line otherwise)."""
        return self.read_inputs(video)

    # -- per-frame extractors: batches across videos ----------------------------
    def frame_step(self, batch: Any) -> dict[str, np.ndarray]:
        """The per-frame outputs of a prepared batch of B frames, which may come from several
        videos (the stage batches across videos): ``values`` (B, *step_shape), optionally
        ``mask`` (B, ...) (default True) and the extras of :meth:`frame_outputs`, each with B
        rows. A frame's outputs must not depend on the other frames of the batch. An
        extractor that implements it gets ``extract`` = :meth:`per_frame` and batches that
        span videos in the stage (:class:`CrossVideoFrames`)."""
        raise NotImplementedError

    @property
    def batches_across_videos(self) -> bool:
        """True for frames extractors that implement :meth:`frame_step`."""
        return self.modality == "frames" and type(self).frame_step is not FeatureExtractor.frame_step

    def frame_outputs(self) -> dict[str, tuple[tuple[int, ...], Any]]:
        """Name -> (per-step shape, dtype) of :meth:`frame_step`'s outputs: ``values``,
        ``mask`` and the extras (stored beside ``values``)."""
        return {"values": (tuple(self.step_shape), np.float32), "mask": ((), bool)}

    def per_frame(self, video: VideoInput) -> FeatureResult:
        """:meth:`frame_step` over the valid frames of ``video``: (T, *step_shape) values,
        zeros and mask False where a frame is missing (and the declared extras)."""
        self.ensure_loaded()
        acc = FrameOutputs(self, video.n_steps)
        for idx, batch in self.frame_batches(video):
            acc.add(idx, self.frame_step(batch))
        return acc.result()

    def extract(self, video: VideoInput) -> FeatureResult:
        if self.batches_across_videos:
            return self.per_frame(video)
        raise NotImplementedError


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
