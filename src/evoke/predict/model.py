"""Saved models: what a training run keeps so that its head can predict for new videos.

A run folder ``results/{dataset}/train/{task}/{head}/{featureset}/`` holds,
beside ``metrics.json`` and ``predictions.parquet``, a ``model/`` folder:

* ``model.json``, the model card: ``format_version`` (:data:`MODEL_FORMAT`),
  ``evoke_version``, ``task``, ``head``, ``per_second``, ``unit`` (what the
  head was trained on and predicts: ``video``, ``second`` or ``segment``),
  ``segments`` (for ``segment``: ``{"source": "cues"}``, subtitle cues, or
  ``{"source": "fixed", "segment_s": L}``), ``classes`` (the
  prediction columns, ``pred_{class}``), ``seq_len``; ``extractors``: per
  extractor the attributes its feature HDF5 files carry (``config`` and
  ``config_hash``, ``weights`` identity, ``dim``, ``evoke_version``,
  ``frames_config_hash``); ``frames``: the frames settings the features were
  made from (``rate_hz``, ``short_side``, ``backend``, ``config_hash``; from the
  frames files, or the features groups' ``frames_*`` attributes where the frames
  are gone, :func:`frames_identity`; null when neither says: such a model
  predicts only with ``--dataset``);
  ``ingest``: the ingest settings when the run was given them; ``training``:
  the dataset, the run's ``config_hash`` and settings, the unit counts;
  ``metrics``: the val and test metrics; ``parts``: how the head's files make
  the predictions (below);
* the head's files: LightGBM boosters in LightGBM's own text format
  (``part0.lgbm.txt``, ``part0.col3.lgbm.txt``), linear coefficients and the
  standardisation statistics (``part0.npz``: ``W, b, mean, std``), full heads'
  state dicts (``part0.pt``, input standardisation buffers included, also in
  ``part0.input_stats.npz``) with the constructor arguments in the card; the
  COGNIMUSE networks (:mod:`evoke.heads.cognimuse`, part kind ``cognimuse``) keep
  their training split's vocabulary beside them (``part0.vocabulary.json``: the
  words in index order, PAD and UNK first).

A head is one or more *parts*, each filling some prediction columns: a
lightweight model on the pooled features (:mod:`evoke.heads.light`), a full
network on the feature sequences, or a constant (a target with a single class
in training). :class:`HeadModel` predicts for units (a video, or a second of
a video) of any :class:`~evoke.heads.data.FeatureSet` exactly as the run
predicted its validation and test units.

The folder is written atomically (:func:`save_model`); :func:`load_model`
refuses a card of a newer format than this evoke reads, naming both.
"""

from __future__ import annotations

import inspect
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import polars as pl

from evoke import EvokeError, __version__
from evoke.ingest import _CACHE_KEYS as INGEST_KEYS  # the ingest settings that change a video's media

log = logging.getLogger(__name__)

# the model folder's layout version: raise it when an older evoke could not read a new folder
MODEL_FORMAT = 1
MODEL_DIR = "model"


class PredictError(EvokeError):
    """A model cannot be loaded or applied (missing folder, newer format, features made otherwise)."""


# ------------------------------------------------------------------ full networks


def full_head_kwargs(net, dims: dict[str, int], n_outputs: int, n_branches: int, cfg) -> dict:
    """The constructor arguments of a full-head network, to rebuild it for its state dict.

    The network's own ``init_args`` attribute when it has one
    (:class:`~evoke.heads.models.FullHead` records its arguments there); otherwise
    every parameter of its class's ``__init__`` from what training knew: the
    modality dims, the output and branch counts, and the full-head config's
    field of the same name.
    """
    own = getattr(net, "init_args", None)
    if own is not None:
        return dict(own)
    known = {"modality_dims": dict(dims), "n_outputs": int(n_outputs), "n_branches": int(n_branches)}
    kwargs = {}
    for name, p in inspect.signature(type(net).__init__).parameters.items():
        if name == "self" or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if name in known:
            kwargs[name] = known[name]
        elif hasattr(cfg, name):
            kwargs[name] = getattr(cfg, name)
        elif p.default is inspect.Parameter.empty:
            raise PredictError(f"cannot record the full head's constructor argument {name!r}: "
                               f"the training config has no field of that name")
    return kwargs


class FullPart:
    """A trained :class:`~evoke.heads.models.FullHead` and the link of its loss."""

    kind = "full"

    def __init__(self, net, loss: str, kwargs: dict):
        self.net, self.loss, self.kwargs = net, loss, kwargs

    def predict(self, feats, video_ids, times, seq_len: int) -> np.ndarray:
        from evoke.heads.full import _Units, link, predict_raw

        raw = predict_raw(self.net, _Units(feats, list(video_ids), times, None, None, seq_len))
        return link(self.loss, raw, self.net.output_kind).reshape(len(video_ids), -1)

    def save(self, folder: Path, prefix: str) -> dict:
        import torch

        from evoke.store import atomic_path

        with atomic_path(folder / f"{prefix}.pt") as tmp:
            torch.save(self.net.state_dict(), tmp)
        stats = {k: v.cpu().numpy() for k, v in self.net.state_dict().items()
                 if k.startswith(("mean_", "std_"))}
        spec = {"kind": self.kind, "loss": self.loss, "class": type(self.net).__name__,
                "kwargs": self.kwargs, "state_dict": f"{prefix}.pt"}
        if stats:
            from evoke.heads.light import _save_npz

            spec["input_stats"] = _save_npz(folder / f"{prefix}.input_stats.npz", **stats)
        _build_net(folder, spec)  # the recorded arguments rebuild this network, or training stops here
        return spec


def _build_net(folder: Path, spec: dict):
    import torch

    from evoke.heads import models

    cls = getattr(models, spec.get("class", "FullHead"), None)
    if cls is None:
        raise PredictError(f"{folder}: this evoke has no full-head network {spec.get('class')!r}")
    kwargs = dict(spec["kwargs"])
    try:
        net = cls(**kwargs)
        state = torch.load(folder / spec["state_dict"], map_location="cpu", weights_only=True)
        net.load_state_dict(state, strict=True)
    except FileNotFoundError:
        raise PredictError(f"{folder / spec['state_dict']}: state dict missing from the model folder") from None
    except (TypeError, RuntimeError) as exc:
        raise PredictError(f"{folder}: the saved full head does not fit this evoke's {cls.__name__} "
                           f"({str(exc).splitlines()[0]})") from exc
    net.eval()
    return net


class ConstantPart:
    """A column predicted as its training rate (a single class in training)."""

    kind = "constant"

    def __init__(self, value: float):
        self.value = float(value)

    def predict(self, feats, video_ids, times, seq_len):
        return np.full((len(video_ids), 1), self.value)

    def save(self, folder, prefix):
        return {"kind": self.kind, "value": self.value}


class LightPart:
    """A lightweight model (:mod:`evoke.heads.light`) on the pooled features."""

    kind = "light"

    def __init__(self, model):
        self.model = model

    def predict_pooled(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(self.model.predict(X), dtype=np.float64).reshape(X.shape[0], -1)

    def save(self, folder, prefix):
        return {"kind": self.kind, "model": self.model.save(folder, prefix)}


@dataclass
class HeadModel:
    """A trained head: ``parts`` of ``(columns, part)`` fill the ``len(classes)`` prediction columns
    (``columns`` None: all of them)."""

    task: str
    head: str
    extractors: list[str]
    classes: list[str]
    seq_len: int
    per_second: bool
    parts: list[tuple[list[int] | None, object]] = field(default_factory=list)
    # what the parts read when not the features: {"kind": "vce_intensity", "table", "columns"}
    inputs: dict | None = None
    # the unit the head was trained on: "video", "second" or "segment" ("" : from per_second);
    # for segments what they were: {"source": "cues"} or {"source": "fixed", "segment_s": L}
    unit: str = ""
    segments: dict | None = None

    def __post_init__(self):
        self.unit = self.unit or ("second" if self.per_second else "video")

    @property
    def reads_subtitles(self) -> bool:
        """Whether a part reads subtitle words (``feats.subtitles``, set by :mod:`evoke.predict.run`)."""
        return any(getattr(part, "vocab", None) is not None for _, part in self.parts)

    def predict(self, feats, video_ids, times, segments: dict | None = None) -> np.ndarray:
        """Predictions (N, K) for units ``video_ids`` (N,) and ``times`` (N,) or None (whole videos).

        ``segments`` (a ``unit: segment`` model): ``{"start_s": (N,), "text": (N,)}`` of the
        segments whose last seconds are ``times``; they are pooled by the task's own code
        (:func:`evoke.tasks.viewer_valence.segment_pooled_matrix`,
        :meth:`~evoke.tasks.viewer_valence.ViewerUnits.windows`), as training pooled them."""
        n, k = len(video_ids), len(self.classes)
        out = np.zeros((n, k))
        if n == 0:
            return out
        units = None
        if segments is not None:
            from evoke.tasks.viewer_valence import ViewerUnits

            units = ViewerUnits(list(video_ids), [float(t) for t in times], np.zeros((n, 0)), None,
                                [float(a) for a in segments["start_s"]], None, list(segments["text"]))
        pooled = None
        for cols, part in self.parts:
            if isinstance(part, LightPart):
                if pooled is None:
                    pooled = self._pooled(feats, video_ids, times, units)
                p = part.predict_pooled(pooled)
            elif units is not None and hasattr(part, "predict_windows"):
                p = part.predict_windows(feats, units.windows())
            else:  # a segment's full (EEV) network reads the seq_len steps ending at its last second
                p = part.predict(feats, video_ids, times, self.seq_len)
            out[:, list(range(k)) if cols is None else cols] = p
        return out

    def _pooled(self, feats, video_ids, times, units) -> np.ndarray:
        if units is None:
            return feats.pooled_matrix(list(video_ids), times, self.seq_len)
        from evoke.tasks.viewer_valence import segment_pooled_matrix

        return segment_pooled_matrix(feats, units)

    def save_parts(self, folder: Path) -> list[dict]:
        specs = []
        for i, (cols, part) in enumerate(self.parts):
            spec = part.save(folder, f"part{i}")
            spec["columns"] = cols
            specs.append(spec)
        return specs

    @classmethod
    def from_card(cls, folder: Path, card: dict) -> "HeadModel":
        from evoke.heads.light import load_light_model

        parts = []
        for spec in card["parts"]:
            if spec["kind"] == "light":
                part = LightPart(load_light_model(folder, spec["model"]))
            elif spec["kind"] == "full":
                part = FullPart(_build_net(folder, spec), spec["loss"], spec["kwargs"])
            elif spec["kind"] == "constant":
                part = ConstantPart(spec["value"])
            elif spec["kind"] == "cognimuse":
                from evoke.heads.cognimuse import CognimusePart

                part = CognimusePart.load(folder, spec)
            else:
                raise PredictError(f"{folder / 'model.json'}: unknown part kind {spec['kind']!r}")
            parts.append((spec.get("columns"), part))
        unit = card.get("unit") or ""
        settings = (card.get("training") or {}).get("settings") or {}
        if not unit and card["task"] == "viewer_valence" and \
                (settings.get("viewer_valence") or {}).get("units", "segment") == "segment":
            log.warning("%s: the card predates recording the unit (trained on segments): it is applied per "
                        "second; train it again with this evoke to predict per segment", folder / "model.json")
        return cls(card["task"], card["head"], sorted(card["extractors"]), list(card["classes"]),
                   int(card["seq_len"]), bool(card["per_second"]), parts, card.get("inputs"), unit,
                   card.get("segments"))

    def predict_inputs(self, X: np.ndarray) -> np.ndarray:
        """Predictions (N, K) of a head whose parts read ``inputs`` rather than features: ``X`` (N, D)."""
        out = np.zeros((X.shape[0], len(self.classes)))
        for cols, part in self.parts:
            out[:, list(range(len(self.classes))) if cols is None else cols] = part.predict_pooled(X)
        return out


# ------------------------------------------------------------------ feature identity


IDENTITY_KEYS = ("config_hash", "weights", "config", "dim", "evoke_version", "frames_config_hash")


def _attr(value):
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, np.ndarray):
        value = value.tolist()
    return value


def feature_identity(dataset_dir: str | Path, extractors: list[str]) -> dict[str, dict]:
    """Per extractor, what its stored features were made with: ``config_hash``, ``weights``,
    ``config`` (the settings), ``dim``, ``evoke_version``, ``frames_config_hash`` (None where
    the files do not say) and the shard files read (``h5_files``).

    Read from every shard file's root attributes (the features stage writes
    ``config_hash`` and ``weights`` there) and the first video group's
    attributes. Shards that disagree stop with :class:`PredictError`.
    """
    ddir = Path(dataset_dir)
    index_path = ddir / "features" / "index.parquet"
    if not index_path.exists():
        raise PredictError(f"{index_path} does not exist: run the features stage first")
    index = pl.read_parquet(index_path)
    if "status" in index.columns:
        index = index.filter(pl.col("status") == "ok")
    out = {}
    for e in sorted(extractors):
        rows = index.filter(pl.col("extractor") == e).select("h5_path", "h5_group").unique("h5_path",
                                                                                          keep="first")
        if rows.height == 0:
            raise PredictError(f"{index_path}: no features of extractor {e}")
        seen: dict[tuple, str] = {}
        info: dict = {}
        for path, group in rows.sort("h5_path").iter_rows():
            with h5py.File(ddir / path, "r") as f:
                root = {k: _attr(f.attrs.get(k)) for k in ("config_hash", "weights")}
                g = f[group].attrs if group in f else {}
                per = {k: _attr(g.get(k)) for k in IDENTITY_KEYS}
            ident = (root["config_hash"] or per["config_hash"], root["weights"] or per["weights"])
            seen.setdefault(ident, path)
            if not info:
                info = {**per, "config_hash": ident[0], "weights": ident[1]}
        if len(seen) > 1:
            (a, pa), (b, pb) = list(seen.items())[:2]
            raise PredictError(f"extractor {e}: its shard files were made with different settings or weights "
                               f"({pa}: config hash {a[0]}, weights {a[1]}; {pb}: config hash {b[0]}, "
                               f"weights {b[1]})")
        if isinstance(info.get("config"), str):
            info["config"] = json.loads(info["config"])
        out[e] = info
    return out


def frames_identity(dataset_dir: str | Path, video_id: str, extractors: list[str] | None = None) -> dict | None:
    """The frames settings of one video of the dataset (``rate_hz, short_side, backend,
    config_hash``): from its group in ``frames/{shard}.h5`` (its shard as the features index
    names it) and from the ``frames_*`` attributes of its features groups (of ``extractors``,
    all when None; :func:`evoke.features.stage.frames_provenance`), which stay when the frames
    files are removed (``frames.keep: false``). None when neither says (the frames are gone and
    the features were extracted before the stage recorded them). Sources that disagree stop
    with :class:`PredictError` naming both files."""
    from evoke.features.stage import FRAMES_SETTINGS

    ddir = Path(dataset_dir)
    index_path = ddir / "features" / "index.parquet"
    if not index_path.exists():
        return None
    index = pl.read_parquet(index_path).filter(pl.col("video_id") == video_id)
    shards = index["shard"].drop_nulls().unique().sort().to_list() if "shard" in index.columns else []
    if "status" in index.columns:
        index = index.filter(pl.col("status") == "ok")
    if extractors is not None:
        index = index.filter(pl.col("extractor").is_in(list(extractors)))
    found: dict[str, dict] = {}  # file -> the settings it records
    for shard in shards:
        path = ddir / "frames" / f"{shard}.h5"
        if path.exists():
            with h5py.File(path, "r") as f:
                if video_id in f:
                    found[str(path)] = {k: _attr(f[video_id].attrs.get(k)) for k in FRAMES_SETTINGS}
                    break
    if {"h5_path", "h5_group"} <= set(index.columns):
        for path, group in index.select("h5_path", "h5_group").unique().sort("h5_path").iter_rows():
            with h5py.File(ddir / path, "r") as f:
                a = f[group].attrs if group in f else {}
                have = {k: _attr(a.get(f"frames_{k}")) for k in FRAMES_SETTINGS}
            if all(v is not None for v in have.values()):
                found[str(ddir / path)] = have
    if not found:
        return None
    (first, want), *rest = found.items()
    for other, have in rest:
        if have != want:
            raise PredictError(f"{video_id}: {first} records frames settings {want} but {other} {have}: the "
                               "features were not extracted from these frames; run the features stage again")
    return want


def check_features(card: dict, found: dict[str, dict], where: str) -> None:
    """Stop with one message when features in ``where`` were made with other settings or weights
    than the model's (``found``: :func:`feature_identity`): another extractor config hash,
    weights identity or frames config hash (frames sampled otherwise)."""
    for e, want in card["extractors"].items():
        have = found.get(e)
        if have is None:
            raise PredictError(f"{where}: no features of extractor {e}, which the model reads")
        for key, what in (("config_hash", "config hash"), ("weights", "weights"),
                          ("frames_config_hash", "frames config hash")):
            if key == "frames_config_hash" and (want.get(key) is None or have.get(key) is None):
                continue  # features of a store that records no frames (synthetic sets)
            if want.get(key) != have.get(key):
                raise PredictError(
                    f"extractor {e}: the model was trained on features with {what} {want.get(key)} but "
                    f"{where} holds {what} {have.get(key)} (config hash {want.get('config_hash')} vs "
                    f"{have.get('config_hash')}); extract them with the model's settings "
                    f"(model.json: extractors.{e}.config) or retrain")


# ------------------------------------------------------------------ the folder


def save_model(run_dir: str | Path, model: HeadModel, card: dict) -> Path:
    """Write ``run_dir/model/`` (the head's files and ``model.json``) atomically; return it."""
    from evoke.store import atomic_path

    final = Path(run_dir) / MODEL_DIR
    with atomic_path(final) as tmp:
        tmp.mkdir(parents=True)
        full = {"format_version": MODEL_FORMAT, "evoke_version": __version__,
                "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "task": model.task, "head": model.head, "per_second": model.per_second, "unit": model.unit,
                "segments": model.segments,
                "classes": model.classes, "seq_len": model.seq_len, "inputs": model.inputs, **card,
                "parts": model.save_parts(tmp)}
        (tmp / "model.json").write_text(json.dumps(_plain(full), indent=2, sort_keys=True), encoding="utf-8")
    return final


def _plain(x):
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, np.ndarray):
        return _plain(x.tolist())
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, (np.floating, float)):
        return float(x) if np.isfinite(x) else None
    return x


def read_card(run_dir: str | Path) -> dict:
    """The model card of a run folder (or of its ``model/`` folder itself); refuses a newer format."""
    run_dir = Path(run_dir)
    folder = run_dir if (run_dir / "model.json").is_file() else run_dir / MODEL_DIR
    path = folder / "model.json"
    if not path.is_file():
        raise PredictError(f"{run_dir}: no {MODEL_DIR}/model.json: not a run folder with a saved model "
                           "(train it again with this evoke to save one)")
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise PredictError(f"{path}: not valid JSON ({exc})") from exc
    version = card.get("format_version")
    if not isinstance(version, int):
        raise PredictError(f"{path}: no format_version: not an evoke model card")
    if version > MODEL_FORMAT:
        raise PredictError(f"{path}: model format {version} (written by evoke {card.get('evoke_version')}) is "
                           f"newer than this evoke {__version__} reads (format {MODEL_FORMAT}): upgrade evoke")
    card["_folder"] = str(folder)
    return card


def load_model(run_dir: str | Path) -> tuple[dict, HeadModel]:
    """The card and the :class:`HeadModel` of a run folder."""
    card = read_card(run_dir)
    return card, HeadModel.from_card(Path(card["_folder"]), card)


def run_key(run_dir: str | Path) -> tuple[str, str, str]:
    """``(task, head, featureset)`` of a run folder: from its model card when it has one (a run
    trained before), else from its path ``.../train/{task}/{head}/{featureset}`` (a run the
    workflow is about to train)."""
    from evoke.tasks import TASKS

    run_dir = Path(run_dir)
    if (run_dir / MODEL_DIR / "model.json").is_file() or (run_dir / "model.json").is_file():
        card = read_card(run_dir)
        return card["task"], card["head"], card.get("feature_set") or "+".join(sorted(card["extractors"]))
    parts = run_dir.parts[-3:]
    if len(parts) == 3 and parts[0] in TASKS and parts[1] in (*TASKS[parts[0]].heads, "full_multitask"):
        return parts[0], parts[1], parts[2]
    raise PredictError(f"predict.models: {run_dir} has no {MODEL_DIR}/model.json and is not a run folder "
                       "results/{dataset}/train/{task}/{head}/{featureset}")


def predict_models(run_dirs: list[str]) -> dict[tuple[str, str, str], str]:
    """``{(task, head, featureset): run_dir}`` of the workflow's ``predict.models``; two models with
    the same key would write the same table, so they are refused."""
    out: dict[tuple[str, str, str], str] = {}
    for d in run_dirs:
        key = run_key(d)
        if key in out:
            raise PredictError(f"predict.models: {out[key]} and {d} are both {'/'.join(key)}: their predictions "
                               "would go to the same file; keep one")
        out[key] = str(d).rstrip("/")
    return out
