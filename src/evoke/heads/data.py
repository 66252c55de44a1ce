"""Features for the heads: load a feature set from the store, cut windows, pool them.

A *feature set* is a list of extractor names (``["colour", "motion"]``). Its
features come from ``results/{dataset}/features/index.parquet`` (``video_id,
extractor, status, h5_path, h5_group``; paths relative to ``results/{dataset}``)
and the shard files it points to (one HDF5 group per video: ``values`` (T,
*step_shape) float32, ``timestamps_s`` (T,), ``mask`` (T,) or (T, slots)).

A *unit* is what a head predicts for: a whole video (``time_s`` None) or one
second of a video (``time_s`` = t). For a unit the heads read

* a sequence per extractor (:meth:`FeatureSet.sequence`): the whole video as
  ``length`` steps (:func:`resample_steps`), or the ``length`` steps ending at
  t (:func:`pad_repeat_first`: shorter windows repeat their first step, the EEV
  convention);
* a pooled vector (:meth:`FeatureSet.pooled`): per extractor the mean, max and
  standard deviation over the valid steps (mask true) of that window, plus, for
  a second, the step at t itself; extractors concatenated in name order.

The values are read through a :class:`VideoStore`: all of them up front when
they fit in ``train.feature_memory_mb`` (2 GiB by default), else each video
when a head first asks for it, with a least-recently-used cache of that size,
so a VCE-sized set (tens of thousands of videos) trains in bounded memory.

Bad input stops the run with a :class:`HeadDataError` naming what is wrong: a
NaN or infinite feature (the video and extractor), labels and features that
share no video (both counts), an unknown extractor in the feature set.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import polars as pl
from tqdm import tqdm

from evoke import EvokeError

log = logging.getLogger(__name__)

POOLS = ("mean", "max", "std")
# features held in memory at most (MiB); a larger set is read from disk as the heads ask
DEFAULT_MEMORY_MB = 2048


class HeadDataError(EvokeError):
    """Labels or features cannot be used for training (named video, counts, column)."""


@dataclass
class VideoFeatures:
    """One video's features of one extractor: ``values`` (T, D) float32, ``mask`` (T,) bool,
    ``timestamps_s`` (T,)."""

    values: np.ndarray
    mask: np.ndarray
    timestamps_s: np.ndarray


def check_finite(values: np.ndarray, video_id: str, extractor: str) -> None:
    """Raise :class:`HeadDataError` naming the video when ``values`` holds NaN or inf."""
    bad = ~np.isfinite(values)
    if bad.any():
        steps = np.flatnonzero(bad.reshape(bad.shape[0], -1).any(1))
        raise HeadDataError(
            f"features of video {video_id!r} ({extractor}) hold {int(bad.sum())} NaN/infinite value(s) "
            f"at step(s) {steps[:5].tolist()}; features must be finite (re-extract the video or drop it)"
        )


class VideoStore(Mapping):
    """``{video_id: {extractor: VideoFeatures}}`` read from the feature store on demand.

    ``locations`` maps each video to ``{extractor: (h5 path, group)}``. Videos
    are read when first asked for and kept in a least-recently-used cache of at
    most ``cache_bytes`` bytes of values (``None``: no bound); :meth:`preload`
    reads every video now (and they stay, when the budget holds them all). Open
    HDF5 files are kept for the life of the store. A NaN or
    infinite value stops the read with :class:`HeadDataError` naming the video.
    """

    def __init__(self, root: Path, locations: dict[str, dict[str, tuple[str, str]]],
                 cache_bytes: int | None = None):
        self.root = Path(root)
        self.locations = locations
        self.cache_bytes = cache_bytes
        self._cache: OrderedDict[str, dict[str, VideoFeatures]] = OrderedDict()
        self._bytes = 0
        self._files: dict[str, h5py.File] = {}
        self.reads = 0  # videos read from disk (a cache miss each)

    def __len__(self) -> int:
        return len(self.locations)

    def __iter__(self):
        return iter(self.locations)

    def __contains__(self, video_id) -> bool:
        return video_id in self.locations

    def _file(self, path: str) -> h5py.File:
        f = self._files.get(path)
        if f is None:
            f = self._files[path] = h5py.File(self.root / path, "r")
        return f

    def _read(self, video_id: str) -> dict[str, VideoFeatures]:
        out = {}
        for e, (path, group) in self.locations[video_id].items():
            g = self._file(path)[group]
            values = np.asarray(g["values"][()], dtype=np.float32)
            check_finite(values, video_id, e)
            mask = np.asarray(g["mask"][()], dtype=bool)
            mask = mask.reshape(mask.shape[0], -1).any(1) if mask.ndim > 1 else mask
            ts = np.asarray(g["timestamps_s"][()], dtype=np.float64)
            out[e] = VideoFeatures(values.reshape(values.shape[0], -1), mask, ts)
        self.reads += 1
        return out

    def __getitem__(self, video_id: str) -> dict[str, VideoFeatures]:
        hit = self._cache.get(video_id)
        if hit is not None:
            self._cache.move_to_end(video_id)
            return hit
        if video_id not in self.locations:
            raise KeyError(video_id)
        d = self._read(video_id)
        size = sum(f.values.nbytes for f in d.values())
        self._cache[video_id] = d
        self._bytes += size
        while self.cache_bytes is not None and self._bytes > self.cache_bytes and len(self._cache) > 1:
            _, old = self._cache.popitem(last=False)
            self._bytes -= sum(f.values.nbytes for f in old.values())
        return d

    def preload(self) -> None:
        """Read every video now, in file order (checks every value once)."""
        order = sorted(self.locations, key=lambda v: sorted(self.locations[v].values()))
        for v in tqdm(order, desc="reading features", unit="video", mininterval=5):
            self[v]

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files.clear()


class FeatureSet:
    """Features of ``extractors`` for a set of videos: ``data[video_id][extractor]``
    (:class:`VideoFeatures`), a dict or a :class:`VideoStore`."""

    def __init__(self, data: Mapping[str, dict[str, VideoFeatures]], extractors: list[str],
                 dims: dict[str, int] | None = None):
        self.data = data
        self.extractors = sorted(extractors)
        if dims is None:
            first = data[next(iter(data))] if len(data) else None
            dims = {e: (first[e].values.shape[1] if first else 0) for e in self.extractors}
        self.dims = dims

    @property
    def video_ids(self) -> set[str]:
        return set(self.data)

    @classmethod
    def from_arrays(cls, arrays: dict[str, dict[str, np.ndarray]], rate_hz: float = 1.0) -> "FeatureSet":
        """``{video_id: {extractor: values (T, ...)}}`` with every step valid (tests, benchmarks)."""
        data, names = {}, None
        for vid, per in arrays.items():
            data[vid] = {}
            for e, v in per.items():
                v = np.asarray(v, dtype=np.float32)
                check_finite(v, vid, e)
                v = v.reshape(v.shape[0], -1)
                data[vid][e] = VideoFeatures(v, np.ones(v.shape[0], bool), np.arange(v.shape[0]) / rate_hz)
            names = sorted(per)
        return cls(data, names or [])

    @classmethod
    def load(cls, dataset_dir: str | Path, extractors: list[str], video_ids: set[str] | None = None,
             memory_mb: float | None = DEFAULT_MEMORY_MB) -> "FeatureSet":
        """The features of ``extractors`` for ``video_ids`` (all when None) in the store.

        A video is used only when every extractor of the set has it with status
        ``ok`` and at least one step; videos missing from some extractor are
        left out and counted in the log. When the values fit in ``memory_mb``
        MiB (None: no bound) they are all read now, and a NaN anywhere stops
        here; otherwise videos are read as the heads ask for them and at most
        ``memory_mb`` MiB of them are cached (a pass over the data reads from
        disk again: a 50,000-video set trains in a few GiB).
        """
        ddir = Path(dataset_dir)
        index_path = ddir / "features" / "index.parquet"
        if not index_path.exists():
            raise HeadDataError(f"{index_path} does not exist: run the features stage first")
        if not extractors:
            raise HeadDataError("the feature set is empty: name at least one extractor")
        index = pl.read_parquet(index_path)
        if "status" in index.columns:
            index = index.filter(pl.col("status") == "ok")
        known = set(index["extractor"].unique().to_list())
        missing = sorted(set(extractors) - known)
        if missing:
            raise HeadDataError(
                f"extractor(s) {', '.join(missing)} have no features in {index_path} "
                f"(it has: {', '.join(sorted(known)) or 'none'})"
            )
        index = index.filter(pl.col("extractor").is_in(extractors))
        lacking = [c for c in ("n_steps", "dim", "h5_path", "h5_group") if c not in index.columns]
        if lacking:
            raise HeadDataError(f"{index_path} lacks column(s) {', '.join(lacking)}: rerun the features merge")
        index = index.filter(pl.col("n_steps") > 0)
        per_video = index.group_by("video_id").agg(pl.col("extractor").n_unique().alias("n"))
        complete = set(per_video.filter(pl.col("n") == len(set(extractors)))["video_id"].to_list())
        if len(complete) < per_video.height:
            log.warning("%d video(s) lack some of %s and are left out", per_video.height - len(complete), extractors)
        if video_ids is not None:
            complete &= set(video_ids)
        index = index.filter(pl.col("video_id").is_in(sorted(complete)))
        locations: dict[str, dict[str, tuple[str, str]]] = {}
        for vid, e, path, group in index.select("video_id", "extractor", "h5_path", "h5_group").iter_rows():
            locations.setdefault(vid, {})[e] = (path, group)
        dims = dict(index.group_by("extractor").agg(pl.col("dim").first()).iter_rows())
        total = int((index["n_steps"] * index["dim"]).sum() or 0) * 4
        budget = None if memory_mb is None else int(memory_mb * 2 ** 20)
        store = VideoStore(ddir, locations, cache_bytes=budget)
        if budget is None or total <= budget:
            store.preload()
        else:
            log.info("features of %d videos take %.0f MiB, over the %.0f MiB budget: read as needed",
                     len(locations), total / 2 ** 20, budget / 2 ** 20)
        return cls(store, list(extractors), dims={e: int(dims.get(e, 0)) for e in sorted(extractors)})

    # ------------------------------------------------------------------ windows

    def _end_step(self, f: VideoFeatures, time_s: float | None) -> int:
        if time_s is None:
            return f.values.shape[0] - 1
        return int(np.clip(np.searchsorted(f.timestamps_s, time_s + 1e-6, side="right") - 1,
                           0, f.values.shape[0] - 1))

    def covers(self, video_id: str, time_s: float, slack_s: float = 1.0) -> bool:
        """Whether every extractor of the video has a step at or before ``time_s`` (within slack)."""
        d = self.data.get(video_id)
        return d is not None and all(
            d[e].timestamps_s.size and d[e].timestamps_s[-1] + slack_s >= time_s >= d[e].timestamps_s[0] - 1e-6
            for e in self.extractors)

    def sequence(self, video_id: str, time_s: float | None, length: int) -> dict[str, np.ndarray]:
        """{extractor: (length, D)} for a video (resampled) or the window ending at ``time_s``."""
        # evoke.heads.models defines the torch networks: imported here, not with this module,
        # which planning the workflow imports (workflow/rules/train.smk)
        from evoke.heads.models import pad_repeat_first, resample_steps

        out = {}
        for e in self.extractors:
            f = self.data[video_id][e]
            if time_s is None:
                out[e] = resample_steps(f.values, length)
            else:
                end = self._end_step(f, time_s)
                out[e] = pad_repeat_first(f.values[max(0, end - length + 1):end + 1], length)
        return out

    def pooled(self, video_id: str, time_s: float | None, length: int) -> np.ndarray:
        """Pooled vector: per extractor mean, max, std over valid window steps (+ the step at t)."""
        parts = []
        for e in self.extractors:
            f = self.data[video_id][e]
            end = self._end_step(f, time_s)
            start = 0 if time_s is None else max(0, end - length + 1)
            win, m = f.values[start:end + 1], f.mask[start:end + 1]
            valid = win[m] if m.any() else win  # no valid step: pool the raw (masked) values
            parts += [valid.mean(0), valid.max(0), valid.std(0)]
            if time_s is not None:
                parts.append(f.values[end])
        return np.concatenate(parts).astype(np.float32)

    def pooled_matrix(self, video_ids, times, length: int) -> np.ndarray:
        times = [None] * len(video_ids) if times is None else times
        if len(video_ids) == 0:
            return np.zeros((0, self.pooled_dim(times is not None and len(times) and times[0] is not None)),
                            np.float32)
        # filled in place: a list of per-unit vectors would double the peak and fragment the heap
        out = np.empty((len(video_ids), self.pooled_dim(times[0] is not None)), np.float32)
        for i, (v, t) in enumerate(zip(video_ids, times)):
            out[i] = self.pooled(v, t, length)
        return out

    def pooled_dim(self, per_second: bool) -> int:
        return sum(d * (len(POOLS) + int(per_second)) for d in self.dims.values())

    def pooled_names(self, per_second: bool) -> list[str]:
        names = []
        for e in self.extractors:
            for p in POOLS + (("at_t",) if per_second else ()):
                names += [f"{e}_{p}_{i}" for i in range(self.dims[e])]
        return names
