"""The task registry (lhotse style: one module, one registered class per task).

A task turns label tables into train/val/test *units* (a whole video, or one
second of a video), fits a head to them and scores the predictions:

* ``name``: its registry key (``vce``, ``v2v``, ...); ``label_files``: the
  tables it reads, relative to ``results/{dataset}`` (overridable);
* :meth:`Task.load`: label tables -> :class:`TaskData` (splits from the
  tables' ``split`` column; ``val``/``valid``/``validation`` all mean val;
  when there is no val split, a seeded ``val_fraction`` of the training
  videos becomes val; a table without a ``split`` column takes each video's
  split from ``ingest/probe.parquet``);
* :meth:`Task.fit_predict`: a head (``lightgbm``, ``linear``, ``full``, and
  where a task has it ``full_multitask``) -> predictions per split;
* :meth:`Task.evaluate` -> metrics (from :mod:`evoke.metrics`);
  :meth:`Task.baselines` -> the trivial baselines' metrics on the same split.

:func:`run_task` is the whole run: labels, features, fit, metrics, and it is
what ``evoke train`` calls. Bad premises stop it with :class:`TaskError`
(no training example, labels and features without a shared video, a split
with a single class); ``evoke.heads.data.HeadDataError`` names bad features.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import polars as pl

from evoke import EvokeError
from evoke.config import fingerprint
from evoke.heads.data import DEFAULT_MEMORY_MB, FeatureSet, HeadDataError
from evoke.heads.light import LIGHT_HEADS, fit_binary_columns_model, fit_distribution_model
from evoke.predict.model import IDENTITY_KEYS, FullPart, HeadModel, LightPart, PredictError, feature_identity, \
    frames_identity, full_head_kwargs, save_model

log = logging.getLogger(__name__)

TASKS: dict[str, type["Task"]] = {}
SPLITS = ("train", "val", "test")
_SPLIT_NAMES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
                "dev": "val", "test": "test", "testing": "test"}


class TaskError(EvokeError):
    """A task cannot run on these labels (no examples, one class, no shared videos, unknown name)."""


def register_task(cls: type["Task"]) -> type["Task"]:
    if not getattr(cls, "name", None):
        raise TypeError(f"{cls.__name__} needs a name")
    if cls.name in TASKS and TASKS[cls.name] is not cls:
        raise TypeError(f"task {cls.name!r} is registered twice")
    TASKS[cls.name] = cls
    return cls


def get_task(name: str) -> type["Task"]:
    try:
        return TASKS[name]
    except KeyError:
        raise TaskError(f"unknown task {name!r} (known: {', '.join(sorted(TASKS))})") from None


@dataclass
class Units:
    """What a head predicts for: ``video_id`` (N,), ``time_s`` (N,) or None, targets ``y`` (N, K)
    and where they are labelled, ``mask`` (N, K) bool or None (everywhere)."""

    video_id: list[str]
    time_s: list[float] | None
    y: np.ndarray
    mask: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.video_id)

    def take(self, keep: np.ndarray) -> "Units":
        idx = np.flatnonzero(keep) if keep.dtype == bool else keep
        return Units([self.video_id[i] for i in idx], None if self.time_s is None else [self.time_s[i] for i in idx],
                     self.y[idx], None if self.mask is None else self.mask[idx])

    def as_dict(self) -> dict:
        return {"video_id": self.video_id, "time_s": self.time_s, "y": self.y, "mask": self.mask}


@dataclass
class TaskData:
    splits: dict[str, Units]
    target_names: list[str]
    extra: dict = field(default_factory=dict)
    val_from_train: bool = False

    def counts(self) -> dict[str, int]:
        return {s: len(u) for s, u in self.splits.items()}


def normalise_split(values: pl.Series) -> pl.Series:
    return values.cast(pl.String).str.to_lowercase().replace_strict(_SPLIT_NAMES, default=None)


def video_splits(dataset_dir: Path) -> pl.DataFrame:
    """``video_id, split`` of the ingested videos (for label tables without a split column)."""
    probe = dataset_dir / "ingest" / "probe.parquet"
    if probe.exists():
        df = pl.read_parquet(probe, columns=["video_id", "split"])
    else:
        shards = sorted((dataset_dir / "ingest" / "shards").glob("*.parquet"))
        if not shards:
            raise TaskError(f"the labels have no split column and {probe} does not exist")
        df = pl.concat([pl.read_parquet(p, columns=["video_id", "split"]) for p in shards])
    return df.unique("video_id", keep="first")


def with_split(df: pl.DataFrame, dataset_dir: Path, source: str) -> pl.DataFrame:
    """``df`` with a normalised ``split`` column (from the table, else from the ingest stage)."""
    if "split" not in df.columns or df["split"].null_count() == df.height:
        df = df.drop("split", strict=False).join(video_splits(dataset_dir), on="video_id", how="left")
    df = df.with_columns(normalise_split(df["split"]).alias("split"))
    n_none = df["split"].null_count()
    if n_none:
        log.warning("%s: %d row(s) without a known split are left out", source, n_none)
    return df.filter(pl.col("split").is_not_null())


def val_videos_from_train(train_videos: list[str], fraction: float, seed: int) -> set[str]:
    """A seeded slice (at least one video, never all) of the training videos used for validation."""
    vids = sorted(set(train_videos))
    if len(vids) < 2:
        raise TaskError(f"{len(vids)} training video(s): too few to hold out a validation slice")
    n = min(len(vids) - 1, max(1, round(fraction * len(vids))))
    rng = np.random.default_rng(seed)
    return set(rng.choice(vids, size=n, replace=False).tolist())


def split_units(units: Units, split_of_unit: list[str], fraction: float, seed: int) -> tuple[dict[str, Units], bool]:
    """Units by split; without val units, a seeded slice of the training videos becomes val."""
    s = np.asarray(split_of_unit, dtype=object)
    if not (s == "train").any():
        raise TaskError("no training examples: the labels have no row in the train split")
    from_train = not (s == "val").any()
    if from_train:
        held = val_videos_from_train([v for v, x in zip(units.video_id, s) if x == "train"], fraction, seed)
        s = np.array(["val" if x == "train" and v in held else x for v, x in zip(units.video_id, s)], dtype=object)
    return {k: units.take(s == k) for k in SPLITS}, from_train


def restrict_to_features(data: TaskData, feats: FeatureSet, per_second: bool) -> TaskData:
    """Keep the units whose video (and second) has features; raise when labels and features share none."""
    label_videos = {v for u in data.splits.values() for v in u.video_id}
    shared = label_videos & feats.video_ids
    if not shared:
        raise TaskError(
            f"labels and features share no video: the labels name {len(label_videos)} video(s), the features "
            f"hold {len(feats.video_ids)} (e.g. labels {sorted(label_videos)[:3]}, "
            f"features {sorted(feats.video_ids)[:3]})")
    if len(shared) < len(label_videos):
        log.warning("%d of %d labelled video(s) have no features and are left out",
                    len(label_videos) - len(shared), len(label_videos))
    out = {}
    for name, u in data.splits.items():
        keep = np.array([v in shared and (not per_second or feats.covers(v, t))
                         for v, t in zip(u.video_id, u.time_s or [None] * len(u))], dtype=bool)
        out[name] = u.take(keep)
    if len(out["train"]) == 0:
        raise TaskError("no training examples left after matching labels with features")
    return TaskData(out, data.target_names, data.extra, data.val_from_train)


class Task:
    """Base of the tasks; see the module docstring."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    # what the report says about the task: what ``n`` counts (its units) and where the task
    # and its metrics come from
    unit: ClassVar[str] = "videos"
    citation: ClassVar[str] = ""
    per_second: ClassVar[bool] = False
    uses_features: ClassVar[bool] = True
    heads: ClassVar[tuple[str, ...]] = ("lightgbm", "linear", "full")
    label_files: ClassVar[dict[str, str]] = {}
    # generic supervised flow: "distribution" or "binary" targets, and the full head's loss
    kind: ClassVar[str] = "distribution"
    full_loss: ClassVar[str] = ""

    def __init__(self, settings: dict | None = None):
        self.settings = dict(settings or {})
        self.seed = int(self.settings.get("seed", 0))
        self.val_fraction = float(self.settings.get("val_fraction", 0.2))
        full = dict(self.settings.get("full", {}))
        full.setdefault("seed", self.seed)
        # evoke.heads.full (torch) is imported by the methods that need it, never at import:
        # planning the workflow reads TASKS and must not pay for (or need) torch
        from evoke.heads.full import FullConfig

        self.full_cfg = FullConfig.for_task(self.name, full)
        self.seq_len = self.full_cfg.seq_len
        self.lgbm_params = dict(self.settings.get("lightgbm", {}))
        self.linear_params = dict(self.settings.get("linear", {}))
        self.feature_memory_mb = self.settings.get("feature_memory_mb", DEFAULT_MEMORY_MB)

    def model_settings(self) -> dict:
        """The settings that decide the results (the feature cache size does not)."""
        return {k: v for k, v in self.settings.items() if k != "feature_memory_mb"}

    # -------------------------------------------------------------- labels

    def label_paths(self, dataset_dir: Path, overrides: dict[str, str] | None = None) -> dict[str, Path]:
        paths = {}
        for key, rel in self.label_files.items():
            p = Path((overrides or {}).get(key) or dataset_dir / rel)
            if not p.exists():
                raise TaskError(f"task {self.name}: label table {key!r} not found at {p} (run the labels stage)")
            paths[key] = p
        return paths

    def load(self, dataset_dir: Path, paths: dict[str, Path]) -> TaskData:
        raise NotImplementedError

    # -------------------------------------------------------------- heads

    def check_head(self, head: str) -> None:
        if head not in self.heads:
            raise TaskError(f"task {self.name} has no head {head!r} (its heads: {', '.join(self.heads)})")

    def _params(self, head: str) -> dict:
        return self.lgbm_params if head == "lightgbm" else self.linear_params

    def fit_predict(self, head: str, feats: FeatureSet | None, data: TaskData, out_dir: Path,
                    stop_after_epoch: int | None = None) -> tuple[dict[str, np.ndarray], dict]:
        """Predictions (N, K) for the val and test units (and train, see :meth:`prediction_splits`),
        and an info dict (history, notes).

        The fitted head is left in :attr:`fitted` (a :class:`~evoke.predict.model.HeadModel`,
        what ``run_task`` saves under ``model/``); the predictions are that model's."""
        self.check_head(head)
        tr, targets = data.splits["train"], self.prediction_splits()
        if head in LIGHT_HEADS:
            X = {s: feats.pooled_matrix(u.video_id, u.time_s, self.seq_len) for s, u in data.splits.items()}
            if self.kind == "distribution":
                model, info = fit_distribution_model(head, X["train"], tr.y, self.seed, self._params(head),
                                                     val=(X["val"], data.splits["val"].y))
            else:
                model, info = fit_binary_columns_model(head, X["train"], tr.y, tr.mask, data.target_names,
                                                       self.seed, self._params(head))
            self.fitted = self.head_model(head, feats, data.target_names, [(None, LightPart(model))])
            return {s: model.predict(X[s]) for s in targets}, info
        if head == "full":
            from evoke.heads.full import fit_full

            self._check_classes(data)
            preds, history, net = fit_full(feats, tr.as_dict(), data.splits["val"].as_dict(),
                                           [data.splits[s].as_dict() for s in targets], self.full_loss,
                                           tr.y.shape[1], self.full_cfg, out_dir / "checkpoint",
                                           stop_after_epoch=stop_after_epoch)
            self.fitted = self.head_model(head, feats, data.target_names,
                                          [(None, self.full_part(net, feats, self.full_loss, tr.y.shape[1]))])
            return dict(zip(targets, preds)), {"history": history}
        raise TaskError(f"task {self.name}: head {head!r} is not implemented")

    def prediction_splits(self) -> list[str]:
        """The splits predicted: val and test; also train (in-sample) with the setting
        ``predict_all_splits`` (what V2V pair sampling needs: a prediction for every video)."""
        return (["train"] if self.settings.get("predict_all_splits") else []) + ["val", "test"]

    # -------------------------------------------------------------- saved models

    fitted: HeadModel | None = None

    def head_model(self, head: str, feats: FeatureSet | None, classes: list[str], parts: list) -> HeadModel:
        """The :class:`HeadModel` of a fit: ``parts`` (columns, part) on this task's units."""
        return HeadModel(self.name, head, list(feats.extractors) if feats is not None else [], list(classes),
                         self.seq_len, self.per_second, parts)

    def full_part(self, net, feats: FeatureSet, loss: str, n_outputs: int, n_branches: int = 1) -> FullPart:
        """A trained full-head network as a saved-model part (its constructor arguments recorded);
        ``loss``: the task's, recorded as the loss the run trained and linked with (``train.full.loss``
        or the task's defaults may replace it: :func:`~evoke.heads.full.resolve_loss`)."""
        from evoke.heads.full import resolve_loss

        return FullPart(net, resolve_loss(loss, self.full_cfg),
                        full_head_kwargs(net, feats.dims, n_outputs, n_branches, self.full_cfg))

    def _check_classes(self, data: TaskData) -> None:
        if self.kind == "binary":
            tr = data.splits["train"]
            m = np.ones(tr.y.shape, bool) if tr.mask is None else tr.mask
            if all(np.unique(tr.y[m[:, k], k] >= 0.5).size < 2 for k in range(tr.y.shape[1])):
                raise TaskError(f"task {self.name}: every target has a single class in the training split")

    # -------------------------------------------------------------- scores

    def evaluate(self, pred: np.ndarray, units: Units, data: TaskData) -> dict[str, Any]:
        raise NotImplementedError

    def baselines(self, data: TaskData, split: str = "test") -> dict[str, dict[str, Any]]:
        raise NotImplementedError


def _jsonable(x):
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, (np.floating, float)):
        return None if not np.isfinite(x) else float(x)
    if isinstance(x, np.integer):
        return int(x)
    return x


def predictions_frame(task: Task, data: TaskData, preds: dict[str, np.ndarray]) -> pl.DataFrame:
    frames = []
    for split, p in preds.items():
        u = data.splits[split]
        cols = {"video_id": pl.Series(u.video_id, dtype=pl.String)}
        if u.time_s is not None:
            cols["time_s"] = pl.Series(u.time_s, dtype=pl.Float64)
        cols["split"] = pl.Series([split] * len(u), dtype=pl.String)
        p = np.asarray(p, dtype=np.float64).reshape(len(u), -1)
        names = data.target_names if p.shape[1] == len(data.target_names) else [f"{i}" for i in range(p.shape[1])]
        for k, n in enumerate(names):
            cols[f"pred_{n}"] = pl.Series(p[:, k])
        frames.append(pl.DataFrame(cols))
    return pl.concat(frames, how="diagonal") if frames else pl.DataFrame()


def run_task(task_name: str, head: str, extractors: list[str], dataset_dir: str | Path, out_dir: str | Path,
             settings: dict | None = None, label_overrides: dict | None = None,
             feats: FeatureSet | None = None, stop_after_epoch: int | None = None,
             ingest_settings: dict | None = None) -> dict:
    """Train one (task, head, feature set) and return its metrics record (also what it wrote).

    Writes to ``out_dir``: ``predictions.parquet`` (``video_id[, time_s], split,
    pred_*``), ``metrics.json``, ``model/`` (the saved head and its card,
    :mod:`evoke.predict.model`; ``ingest_settings``, the workflow's ingest
    block, go into the card for ``evoke predict`` on new videos) and, for full
    heads, ``checkpoint/{last,best}.pt``.
    """
    from evoke.store import atomic_path, write_parquet
    import json

    dataset_dir, out_dir = Path(dataset_dir), Path(out_dir)
    task = get_task(task_name)(settings)
    task.check_head(head)
    t0 = time.perf_counter()
    data = task.load(dataset_dir, task.label_paths(dataset_dir, label_overrides))
    if task.uses_features:
        if feats is None:
            feats = FeatureSet.load(dataset_dir, list(extractors), memory_mb=task.feature_memory_mb)
        data = restrict_to_features(data, feats, task.per_second)
    t_load = time.perf_counter() - t0
    out_dir.mkdir(parents=True, exist_ok=True)
    t1 = time.perf_counter()
    preds, info = task.fit_predict(head, feats, data, out_dir, stop_after_epoch=stop_after_epoch)
    t_fit = time.perf_counter() - t1
    metrics = {s: task.evaluate(preds[s], data.splits[s], data) for s in preds if s in data.splits}
    record = {
        "task": task.name, "head": head,
        "features": sorted(extractors) if task.uses_features else [],
        "feature_set": featureset_name(extractors) if task.uses_features else "labels",
        "seed": task.seed, "settings": task.settings,
        "config_hash": fingerprint(task.name, head, sorted(extractors), task.model_settings()),
        "n": data.counts(), "val_from_train": data.val_from_train,
        "metrics": metrics, "baselines": task.baselines(data, "test"),
        "info": info, "load_s": t_load, "fit_s": t_fit,
    }
    record = _jsonable(record)
    if preds:
        write_parquet(predictions_frame(task, data, {k: v for k, v in preds.items() if np.ndim(v) > 0}),
                      out_dir / "predictions.parquet")
    if task.fitted is not None:
        save_model(out_dir, task.fitted, model_card(task, record, data, dataset_dir, ingest_settings))
    with atomic_path(out_dir / "metrics.json") as tmp:
        tmp.write_text(json.dumps(record, indent=2, sort_keys=True))
    return record


def model_card(task: Task, record: dict, data: TaskData, dataset_dir: Path, ingest_settings: dict | None) -> dict:
    """What ``model/model.json`` says beyond the head (:func:`evoke.predict.model.save_model`): the
    features' and frames' identity, the ingest settings, the training run and its metrics."""
    extractors, frames = {}, None
    if task.uses_features:
        try:
            extractors = feature_identity(dataset_dir, record["features"])
        except PredictError as exc:  # features handed in without a store (tests, benchmarks)
            log.warning("the model card records no feature settings: %s", exc)
            extractors = {e: dict.fromkeys(IDENTITY_KEYS) for e in record["features"]}
        first = next((v for s in SPLITS for v in data.splits[s].video_id), None)
        frames = frames_identity(dataset_dir, first, record["features"]) if first is not None else None
    return {"description": task.description, "extractors": extractors, "feature_set": record["feature_set"],
            "frames": frames, "ingest": ingest_settings,
            "training": {"dataset": Path(dataset_dir).name, "config_hash": record["config_hash"],
                         "settings": record["settings"], "n": record["n"], "seed": record["seed"]},
            "metrics": record["metrics"], "baselines": record["baselines"]}


def featureset_name(extractors: list[str]) -> str:
    """The folder name of a feature set: its extractors sorted and joined by ``+``."""
    return "+".join(sorted(extractors))


def featureset_name_of(feature_set) -> str:
    """Config form (a list of extractors, or a "colour+motion" / "colour,motion" string) -> folder name."""
    if isinstance(feature_set, str):
        feature_set = feature_set.replace(",", "+").split("+")
    return featureset_name([e.strip() for e in feature_set if e.strip()])
