"""Stage 3, features: run one extractor over the videos of one shard.

Output: ``results/{dataset}/features/{extractor}/{shard}.h5``, one group per
video with ``values`` (T, *step_shape) float32, ``timestamps_s`` (T,) (the
frames grid), ``mask`` (T,) or (T, slots) bool, and attributes ``extractor``,
``config`` (JSON), ``config_hash``, ``weights`` (identity of the weights),
``evoke_version``, ``dim`` and the frames settings the features were made from,
``frames_rate_hz``, ``frames_short_side``, ``frames_backend``,
``frames_config_hash`` (:func:`frames_provenance`: a model card reads them there
when the frames files are gone, ``frames.keep: false``; stores written before
carry only ``frames_config_hash``). An extractor's extra
per-step outputs (``FeatureResult.extras``) are further datasets of the group,
first dimension T, listed in the attribute ``extras``; ``facenet`` writes
``face_boxes`` (T, 2, 4) float32 (``x1, y1, x2, y2`` in pixels of the stored
frame) and ``face_probability`` (T, 2) float32, zeros where ``mask`` is False
(an empty slot). Per-video progress and resume come from
:func:`evoke.store.run_shard`; missing weights stop the job before any video
with one message (they are the run's premise, not one video's problem).

Torch extractors run with a fixed number of intra-op CPU threads
(``torch_threads`` of the job's settings, default :data:`TORCH_THREADS`),
whatever the job's ``--cores``: a CPU convolution's last bits depend on how its
sums are split between threads, so a resumed shard with another thread count
would mix values in one store. The count is in the group's attributes
(``torch_threads``) and in each part's fingerprint: parts made with another
count are redone, never mixed.

Batches across videos: frames extractors that compute each frame on its own
(``frame_step``: colour, efficientnet, inception_v3, facenet, fer) run over the
shard's videos as one stream of full batches of ``batch_size`` frames
(:class:`~evoke.features.base.CrossVideoFrames`), so ten-second clips no longer
make ten-frame batches; the outputs are split back per video and each video is
still written and committed on its own, when it is complete. Videos whose
finished part an earlier run left are not read at all. A video that fails (an
unreadable frame, an extractor error on its frames) fails alone: a batch that
raises runs again piece by piece, so the error lands on its own video. The
values are the same as per-video batches (``cross_video=False``) bit for bit
wherever the extractor's kernels give a frame the same numbers in any batch,
which the tests check for every frames extractor on the CPU
(``tests/features/test_batching.py``): colour, efficientnet, inception_v3 and
fer exactly; facenet's embeddings and masks exactly, its ``face_boxes`` within
1e-4 px (MTCNN refines every candidate box of a batch in one call; up to 3.1e-5 px
on the demo), as its per-video batches already depended on ``batch_size``.

Overlap: a background thread runs each extractor's front end
(``FeatureExtractor.inputs``: HDF5 reads and ``prepare_frames`` (resize, crop,
normalise) for frames extractors, decoding and clip assembly for ``i3d``, the
log-mel front end and window statistics for the audio extractors) ahead of the
model, also across videos; at most ``PREFETCH_BATCHES + 2`` batches are in
memory. The features are the same as without it (``prefetch_batches=0``), bit
for bit.
"""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path

import h5py
import numpy as np
import polars as pl

from evoke import EvokeError
from evoke.config import fingerprint
from evoke.device import pick_device
from evoke.features.base import (
    CrossVideoFrames,
    FeatureExtractor,
    FeatureResult,
    Prefetcher,
    VideoInput,
    create_extractor,
    get_extractor,
)
from evoke.store import _read_part_stats, atomic_path, h5_attrs, mark_part, run_shard

log = logging.getLogger(__name__)

# batches an extractor's prefetch thread may read ahead (0: read in line)
PREFETCH_BATCHES = 2

# what each modality's front end does, for messages
FRONT_END = {"frames": "reading frames", "video": "decoding the video", "audio": "reading the audio"}

# intra-op CPU threads of torch extractors when the settings name none (the
# workflow passes features.torch_threads)
TORCH_THREADS = 2

STATUS_SCHEMA = {
    "video_id": pl.String,
    "shard": pl.String,
    "extractor": pl.String,
    "status": pl.String,
    "error": pl.String,
    "n_steps": pl.Int64,
    "n_valid": pl.Int64,
    "dim": pl.Int64,
    "h5_path": pl.String,
    "h5_group": pl.String,
}


def video_input(frames_file: h5py.File, row: dict, dataset_dir: Path,
                prefetch: Prefetcher | None = None) -> VideoInput:
    """The :class:`VideoInput` of one ingested video whose frames are in ``frames_file``
    (read ahead by ``prefetch`` when given)."""
    g = frames_file[row["video_id"]]
    return VideoInput(
        video_id=row["video_id"],
        timestamps_s=g["timestamps_s"][()],
        frame_mask=g["mask"][()],
        duration_s=float(row["duration_s"]),
        video_path=dataset_dir / row["video_path"] if row.get("video_path") else None,
        audio_path=dataset_dir / row["audio_path"] if row.get("audio_path") else None,
        rotation=int(row["rotation"]) if row.get("rotation") is not None else None,
        _frames_dataset=g["frames"],
        _prefetch=prefetch,
    )


# the frames settings a video's features group records (attributes frames_{key}), from its frames group
FRAMES_SETTINGS = ("rate_hz", "short_side", "backend", "config_hash")


def frames_provenance(frames_attrs) -> dict:
    """The attributes ``frames_{key}`` of a features group: the :data:`FRAMES_SETTINGS` of the
    frames group (``frames_attrs``) its video was read from."""
    return {f"frames_{k}": frames_attrs.get(k) for k in FRAMES_SETTINGS}


def per_step_dataset(g: h5py.Group, name: str, arr: np.ndarray) -> None:
    """A (T, ...) dataset, gzip level 4, in chunks of up to 256 steps."""
    g.create_dataset(name, data=arr, compression="gzip", compression_opts=4,
                     chunks=(min(256, max(1, arr.shape[0])), *arr.shape[1:]))


def part_size_bound(extractor: FeatureExtractor, n_steps: int) -> int:
    """Bytes a video's features part takes at most: values, mask and timestamps
    uncompressed (extras are small beside them), plus 1 MiB."""
    return n_steps * (4 * extractor.dim + 16) + (1 << 20)


def pin_torch_threads(extractor: FeatureExtractor, settings: dict) -> int | None:
    """Fix torch's intra-op CPU threads for a torch extractor; the count (None for others)."""
    if not extractor.uses_torch:
        return None
    import torch

    n = int(settings.get("torch_threads") or TORCH_THREADS)
    if n < 1:
        raise EvokeError(f"features.torch_threads must be >= 1, not {n}")
    torch.set_num_threads(n)
    return n


def write_features(dest: Path, group: str, result: FeatureResult, timestamps: np.ndarray,
                   extractor: FeatureExtractor, fp: str | None = None, **attrs) -> dict:
    """Write one video's features to a new HDF5 file ``dest`` atomically; return its stats."""
    stats = {"n_steps": int(result.values.shape[0]), "n_valid": int(np.asarray(result.mask).reshape(
        result.mask.shape[0], -1).any(1).sum()), "dim": extractor.dim}
    with atomic_path(dest) as tmp, h5py.File(tmp, "w") as f:
        g = f.create_group(group)
        per_step_dataset(g, "values", result.values)
        g.create_dataset("timestamps_s", data=timestamps)
        g.create_dataset("mask", data=result.mask)
        for name, arr in result.extras.items():
            per_step_dataset(g, name, arr)
        g.attrs.update(h5_attrs(
            extractor=extractor.name, config=json.dumps(extractor.config.to_dict(), sort_keys=True),
            config_hash=extractor.config_hash(), weights=extractor.weights_identity(),
            dim=extractor.dim, step_shape=list(extractor.step_shape), modality=extractor.modality,
            extras=sorted(result.extras) or None, **attrs,
        ))
        if fp is not None:
            mark_part(g, fp, stats)
    return stats


def dim_names_attr(extractor: FeatureExtractor) -> np.ndarray | None:
    """The extractor's ``dim_names`` (names of the values' last axis) as an HDF5 string
    attribute, written once per file (root attributes), None when it has none."""
    names = getattr(extractor, "dim_names", None)
    return None if names is None else np.array(names, dtype=h5py.string_dtype())


def job_device(name: str, settings: dict) -> str:
    """The device for extractor ``name``: torch models get the visible GPU, the rest the CPU."""
    return pick_device(settings.get("device", "auto")) if get_extractor(name).uses_torch else "cpu"


def run_extractor(extractor: FeatureExtractor, video: VideoInput) -> FeatureResult:
    extractor.ensure_loaded()
    return extractor.extract(video).check(extractor, video.n_steps)


def features_shard(name: str, settings: dict, frames_path: Path, probe_rows: pl.DataFrame,
                   dataset_dir: Path, shard: str, out: Path,
                   prefetch_batches: int = PREFETCH_BATCHES, status_out: Path | None = None,
                   cross_video: bool = True) -> pl.DataFrame:
    """Run extractor ``name`` over every video of a shard that has frames.

    ``settings``: ``config`` (the extractor's block), ``device`` (auto/cpu/cuda),
    ``weights`` (explicit weight paths), ``torch_threads`` (see the module
    docstring) and, from the workflow, ``weights_identity`` (what the run was
    planned with: a weights file that changed since is an error).
    ``prefetch_batches``: how many batches the front-end thread may read ahead
    (0: no thread). ``cross_video``: frames extractors with a ``frame_step`` batch
    across videos (False: per-video batches, as before; for comparisons). Returns one ``STATUS_SCHEMA`` row per
    video, also written to ``status_out`` when given (before the parts are removed).
    """
    dataset_dir = Path(dataset_dir)
    extractor = create_extractor(name, settings.get("config"), device=job_device(name, settings),
                                 weights_paths=settings.get("weights"))
    extractor.ensure_loaded()  # missing weights stop here, before any video
    planned = settings.get("weights_identity")
    if planned is not None and planned != extractor.weights_identity():
        raise EvokeError(f"{name}: the weights changed since the workflow was planned ({planned} -> "
                         f"{extractor.weights_identity()}); run again")
    threads = pin_torch_threads(extractor, settings)
    with h5py.File(frames_path, "r") as frames, contextlib.ExitStack() as stack:
        rows = [r for r in probe_rows.filter(pl.col("status") == "ok").to_dicts() if r["video_id"] in frames]
        items = [
            (r["video_id"],
             fingerprint(extractor.config_hash(), r["fingerprint"], frames[r["video_id"]].attrs["config_hash"],
                         threads),
             r)
            for r in rows
        ]
        by_vid = {vid: r for vid, _, r in items}
        position = {vid: i for i, (vid, _, _) in enumerate(items)}
        readers: dict = {}

        def start(first: str, parts_dir: Path) -> None:
            """Start reading ahead at ``first``, the first video run_shard has to do (it holds
            the shard's lock by then): the videos from there on whose part it will not reuse."""
            todo = [vid for vid, fp, _ in items[position[first]:]
                    if _read_part_stats(parts_dir / f"{vid}.h5", vid, fp) is None]
            if cross_video and extractor.batches_across_videos:
                readers["cross"] = stack.enter_context(CrossVideoFrames(extractor, frames, todo, prefetch_batches))
            elif prefetch_batches > 0 and extractor.has_front_end:
                readers["prefetch"] = stack.enter_context(Prefetcher(
                    lambda vid: extractor.inputs(video_input(frames, by_vid[vid], dataset_dir)), todo, extractor,
                    prefetch_batches, what=FRONT_END[extractor.modality]))

        def work(row: dict, part: Path, fp: str) -> dict:
            if not readers:
                readers["started"] = True
                start(row["video_id"], part.parent)
            prefetch = readers.get("prefetch")
            if prefetch is not None and row["video_id"] not in prefetch:
                prefetch = None  # not planned (run_shard decided otherwise about its part): read in line
            video = video_input(frames, row, dataset_dir, prefetch)
            if "cross" in readers:
                result = readers["cross"].result(video).check(extractor, video.n_steps)
            else:
                result = run_extractor(extractor, video)
            return write_features(part, row["video_id"], result, video.timestamps_s, extractor, fp,
                                  torch_threads=threads, **frames_provenance(frames[row["video_id"]].attrs))

        def table(status: list[dict]) -> pl.DataFrame:
            for r in status:
                r |= {"shard": shard, "extractor": name}
                if r["status"] == "ok":
                    r |= {"h5_path": f"features/{name}/{shard}.h5", "h5_group": r["video_id"]}
            return pl.DataFrame(status, schema=STATUS_SCHEMA)

        status = run_shard(
            items, dataset_dir / "features" / name / "parts" / shard, out, work,
            root_attrs={"stage": "features", "extractor": name, "shard": shard,
                        "config_hash": extractor.config_hash(), "weights": extractor.weights_identity(),
                        "torch_threads": threads,
                        "dim_names": dim_names_attr(extractor)},
            desc=f"{name} {shard}", errors=(EvokeError, OSError),
            status_out=status_out, status_table=table,
            part_bytes=lambda row: part_size_bound(extractor, frames[row["video_id"]]["timestamps_s"].shape[0]),
        )
    return table(status)
