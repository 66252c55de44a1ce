"""Full heads: :class:`~evoke.heads.models.FullHead` trained with :func:`~evoke.heads.train.train_model`.

Settings (:class:`FullConfig`, the config's ``train.full``): the base defaults
below, then the task's defaults (``x-task-defaults`` of ``train.full`` in the
config schema: the papers' settings), then ``train.full``, then
``train.full.tasks.{task}`` (:meth:`FullConfig.for_task`).

Losses (``loss``), on the network's outputs ``z``: probabilities in (0, 1)
with ``moe="youtube8m"``, raw scores with ``moe="hidden_layer"`` (the quoted
phrases are issue 15's summary of the papers):

* ``"bce_sum"`` (EEV: "the sum of the per-class cross-entropies"): per sample
  ``sum_k BCE(p_k, y_k)`` over its labelled classes, mean over the batch;
* ``"bce_mean"`` (the viewers' valence; COGNIMUSE's log-loss; the former
  ``"bce"``): BCE averaged over the labelled entries (``y_mask``); with several
  branches (the multi-task head) ``z`` is (B, branches, 1), one column each;
* ``"l1_normalise"`` (VCE: L1 to the distribution): ``q = p / sum(p)`` (our
  link for probability outputs), ``sum_j |q_j - y_j|``, mean over the batch;
  ``"l1_softmax"``: the same with ``q = softmax(z)`` (the former head's);
* ``"kl_clamp_softmax"`` (danmaku LDL: "outputs clamped to [0, 1] then
  softmax, KL loss"): ``q = softmax(clamp(z, 0, 1))``,
  ``KL(y || q) = sum_j y_j (ln y_j - ln q_j)`` (0 ln 0 = 0), mean over the batch;
* ``"mse"`` (LIRIS-ACCEDE valence/arousal regression; evoke's choice, the
  dataset's own metric): mean squared error of the raw scores over the labelled
  entries (needs ``moe: hidden_layer``, unbounded outputs);
* ``"pairwise_bce"`` (V2V): samples are (less, more) pleasant pairs of video
  indices, loss ``BCE(sigmoid(f(x_more) - f(x_less)), 1)``, mean over pairs;
* ``"bce_class_weighted"`` (COGNIMUSE: "class-weighted log-loss" with the
  Lasso penalty): only with ``network: cognimuse``, see :mod:`evoke.heads.cognimuse`
  (that network's loss when ``loss`` is unset).

``network``: ``"eev"`` (:class:`~evoke.heads.models.FullHead`, every task) or
``"cognimuse"`` (:class:`~evoke.heads.cognimuse.CognimuseNet`, viewer_valence's
default: the keys ``modalities``, ``max_words``, ``max_vocab``, ``embed_dim``,
``text_filters``, ``kernel_size``, ``layers``, ``shared_layers``,
``branch_layers`` and ``l1`` are its own; the GRU and MoE keys do not apply).

BCE on probabilities is :func:`torch.nn.functional.binary_cross_entropy` (its
logarithms are clamped at -100); on scores, the logits form.
:func:`link` turns outputs into the predictions the metrics read.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from evoke import EvokeError
from evoke.config import fingerprint, load_schema
from evoke.heads.data import FeatureSet
from evoke.heads.models import MOE_KINDS, FullHead, count_parameters
from evoke.heads.train import TrainConfig, train_model

log = logging.getLogger(__name__)

# EEV: "image 512, audio 128, face 256" GRU units (fused 896)
GRU_HIDDEN_BY_ROLE = {"image": 512, "audio": 128, "face": 256}
# extractors that describe faces (they read frames, like the image extractors)
FACE_EXTRACTORS = frozenset({"facenet", "fer"})
LOSSES = ("bce_sum", "bce_mean", "bce_class_weighted", "l1_normalise", "l1_softmax", "kl_clamp_softmax",
          "pairwise_bce", "mse")
# network: the EEV network (models.FullHead) or the COGNIMUSE one (cognimuse.CognimuseNet, viewer_valence)
NETWORKS = ("eev", "cognimuse")
LOSS_ALIASES = {"bce": "bce_mean"}
# which losses fit which kind of target
LOSS_FAMILIES = {"binary": ("bce_sum", "bce_mean", "bce_class_weighted"),
                 "distribution": ("l1_normalise", "l1_softmax", "kl_clamp_softmax"),
                 "pairwise": ("pairwise_bce",), "regression": ("mse",)}
# the tasks with a full head and the kind of their targets
TASK_FAMILIES = {"eev": "binary", "viewer_valence": "binary", "vce": "distribution", "danmaku_ldl": "distribution",
                 "v2v": "pairwise", "liris_accede": "regression"}


class FullConfigError(EvokeError):
    """The full head's settings are inconsistent (unknown key, a loss the task cannot use, ...)."""


@dataclass(frozen=True)
class FullConfig:
    """The full head's settings; the defaults are the base defaults (before a task's own)."""

    seq_len: int = 60
    gru_hidden: int | dict = field(default_factory=lambda: dict(GRU_HIDDEN_BY_ROLE))
    gru_layers: int = 1
    dropout: float = 0.3
    moe: str = "youtube8m"
    n_experts: int = 4
    moe_dim: int = 256
    gating_batch_norm: bool = True
    standardise: bool = True
    loss: str = ""  # empty: the loss the task passes to fit_full
    # the COGNIMUSE network (evoke.heads.cognimuse; network: cognimuse, viewer_valence only)
    network: str = "eev"
    modalities: str = "both"
    max_words: int = 18
    max_vocab: int = 20000
    embed_dim: int = 128
    text_filters: int = 128
    kernel_size: int = 3
    layers: tuple = (1024, 512, 256)
    shared_layers: tuple = (2048, 1024)
    branch_layers: tuple = (512, 256, 128)
    l1: float = 1e-5
    train: TrainConfig = field(default_factory=TrainConfig)

    @classmethod
    def from_dict(cls, d: dict | None) -> "FullConfig":
        """Flat settings (the training keys of :class:`TrainConfig` beside the network's)."""
        d = dict(d or {})
        train_keys = {f.name for f in fields(TrainConfig)}
        own = {f.name for f in fields(cls)} - {"train"}
        unknown = sorted(set(d) - train_keys - own)
        if unknown:
            raise FullConfigError(f"unknown full-head setting(s) {', '.join(unknown)} "
                                  f"(known: {', '.join(sorted(own | train_keys))})")
        tcfg = TrainConfig(**{k: d[k] for k in d if k in train_keys})
        for k in ("layers", "shared_layers", "branch_layers"):  # lists from YAML: hashable tuples
            if k in d:
                d[k] = tuple(int(x) for x in d[k])
        cfg = cls(train=tcfg, **{k: d[k] for k in d if k in own})
        if cfg.network not in NETWORKS:
            raise FullConfigError(f"network {cfg.network!r}: expected one of {', '.join(NETWORKS)}")
        from evoke.heads.cognimuse import MODALITIES

        if cfg.modalities not in MODALITIES:
            raise FullConfigError(f"modalities {cfg.modalities!r}: expected one of {', '.join(MODALITIES)}")
        if cfg.moe not in MOE_KINDS:
            raise FullConfigError(f"moe {cfg.moe!r}: expected one of {', '.join(MOE_KINDS)}")
        loss = LOSS_ALIASES.get(cfg.loss, cfg.loss)
        if loss and loss not in LOSSES:
            raise FullConfigError(f"loss {cfg.loss!r}: expected one of {', '.join(LOSSES)}")
        if loss == "mse" and cfg.moe != "hidden_layer":
            raise FullConfigError("loss mse regresses unbounded values: it needs moe: hidden_layer")
        if cfg.network == "cognimuse" and loss and loss not in ("bce_class_weighted", "bce_mean"):
            raise FullConfigError(f"network cognimuse is trained with bce_class_weighted or bce_mean, not {loss}")
        if loss == "bce_class_weighted" and cfg.network != "cognimuse":
            raise FullConfigError("loss bce_class_weighted belongs to network: cognimuse")
        if loss == "l1_normalise" and cfg.moe != "youtube8m":
            raise FullConfigError("loss l1_normalise needs probability outputs (moe: youtube8m); "
                                  "use l1_softmax with moe: hidden_layer")
        return cfg

    @classmethod
    def for_task(cls, task: str, settings: dict | None) -> "FullConfig":
        """Base defaults < the task's defaults (the papers') < ``settings`` < ``settings["tasks"][task]``."""
        settings = dict(settings or {})
        per_task = dict(settings.pop("tasks", None) or {})
        unknown = sorted(set(per_task) - set(TASK_FAMILIES))
        if unknown:
            raise FullConfigError(f"train.full.tasks: no full head for task(s) {', '.join(unknown)} "
                                  f"(tasks with one: {', '.join(sorted(TASK_FAMILIES))})")
        merged = {**task_defaults().get(task, {}), **settings, **(per_task.get(task) or {})}
        if merged.get("network") == "cognimuse" and task != "viewer_valence":
            raise FullConfigError(f"task {task}: network cognimuse is the viewer_valence (COGNIMUSE) network")
        cfg = cls.from_dict(merged)
        family = TASK_FAMILIES.get(task)
        loss = LOSS_ALIASES.get(cfg.loss, cfg.loss)
        if family and loss and loss not in LOSS_FAMILIES[family]:
            raise FullConfigError(f"task {task}: loss {cfg.loss} does not fit its {family} targets "
                                  f"(use one of {', '.join(LOSS_FAMILIES[family])})")
        return cfg


@functools.lru_cache(maxsize=1)
def task_defaults() -> dict[str, dict]:
    """``{task: settings}``: the papers' settings, from ``x-task-defaults`` of ``train.full``
    in the config schema (the one place they are written)."""
    full = load_schema()["properties"]["train"]["properties"]["full"]
    return {t: dict(v) for t, v in (full.get("x-task-defaults") or {}).items()}


def extractor_role(name: str) -> str | None:
    """``"face"``, ``"audio"`` or ``"image"`` (frames and video extractors) for a registered
    extractor; None for a name the registry does not know."""
    from evoke.features.base import EXTRACTORS
    import evoke.features  # noqa: F401  (fills the registry)

    if name in FACE_EXTRACTORS:
        return "face"
    cls = EXTRACTORS.get(name)
    if cls is None:
        return None
    return "audio" if cls.modality == "audio" else "image"


def gru_widths(gru_hidden: int | dict, extractors) -> dict[str, int]:
    """Each extractor's GRU width: one integer for all, else the mapping's entry for the
    extractor's name, else for its role (:func:`extractor_role`)."""
    out = {}
    for e in extractors:
        if isinstance(gru_hidden, int):
            out[e] = gru_hidden
            continue
        role = extractor_role(e)
        width = gru_hidden.get(e, gru_hidden.get(role) if role else None)
        if width is None:
            raise FullConfigError(f"no GRU width for extractor {e!r} (role {role or 'unknown'}): "
                                  f"set train.full.gru_hidden.{e}")
        out[e] = int(width)
    return out


def build_head(dims: dict[str, int], n_outputs: int, n_branches: int, cfg: FullConfig) -> FullHead:
    """The network ``cfg`` describes for features of ``dims`` ({extractor: dim})."""
    return FullHead(dims, n_outputs, gru_hidden=gru_widths(cfg.gru_hidden, dims), gru_layers=cfg.gru_layers,
                    dropout=cfg.dropout, moe=cfg.moe, n_experts=cfg.n_experts, moe_dim=cfg.moe_dim,
                    gating_batch_norm=cfg.gating_batch_norm, n_branches=n_branches)


def resolve_loss(loss: str, cfg: FullConfig) -> str:
    """The loss a run trains with: ``cfg.loss`` when set, else the task's ``loss``."""
    name = LOSS_ALIASES.get(cfg.loss or loss, cfg.loss or loss)
    if name not in LOSSES:
        raise FullConfigError(f"unknown loss {name!r} (known: {', '.join(LOSSES)})")
    return name


def _normalise(p: torch.Tensor) -> torch.Tensor:
    p = p + 1e-8  # a row of zeros becomes the uniform distribution, never 0/0
    return p / p.sum(-1, keepdim=True)


def link(loss: str, z: np.ndarray, output_kind: str) -> np.ndarray:
    """Network outputs -> predictions: distributions, probabilities or scores.
    ``output_kind``: :attr:`FullHead.output_kind` (``"probability"`` or ``"score"``)."""
    loss = LOSS_ALIASES.get(loss, loss)
    t = torch.as_tensor(z)
    if loss == "l1_softmax":
        return torch.softmax(t, -1).numpy()
    if loss == "l1_normalise":
        return _normalise(t).numpy()
    if loss == "kl_clamp_softmax":
        return torch.softmax(t.clamp(0, 1), -1).numpy()
    if loss in ("bce_sum", "bce_mean"):
        return z if output_kind == "probability" else torch.sigmoid(t).numpy()
    return z


def output_link(loss: str, output_kind: str) -> list[str]:
    """The steps of :func:`link` as names (for ``evoke train describe``)."""
    loss = LOSS_ALIASES.get(loss, loss)
    return {"l1_softmax": ["softmax"], "l1_normalise": ["normalise"], "kl_clamp_softmax": ["clamp", "softmax"],
            "pairwise_bce": ["score"]}.get(loss, [] if output_kind == "probability" else ["sigmoid"])


def _bce(z: torch.Tensor, y: torch.Tensor, output_kind: str) -> torch.Tensor:
    if output_kind == "probability":
        return F.binary_cross_entropy(z, y, reduction="none")
    return F.binary_cross_entropy_with_logits(z, y, reduction="none")


def compute_loss(loss: str, z: torch.Tensor, y: torch.Tensor, m: torch.Tensor | None,
                 output_kind: str = "score") -> torch.Tensor:
    """The loss ``loss`` (module docstring) of outputs ``z`` (B, K) or (B, branches, 1) against
    targets ``y`` (B, K) where ``m`` (B, K; None: everywhere) marks the labelled entries."""
    loss = LOSS_ALIASES.get(loss, loss)
    if z.dim() == 3:  # multi-task: (B, branches, 1) -> (B, branches)
        z = z[..., 0]
    if loss in ("bce_sum", "bce_mean"):
        per = _bce(z, y, output_kind)
        if m is not None:
            per = per * m
        if loss == "bce_sum":
            return per.sum() / max(z.shape[0], 1)
        return per.mean() if m is None else per.sum() / m.sum().clamp_min(1.0)
    if loss in ("l1_softmax", "l1_normalise"):
        q = torch.softmax(z, -1) if loss == "l1_softmax" else _normalise(z)
        return (q - y).abs().sum(-1).mean()
    if loss == "kl_clamp_softmax":
        logq = torch.log_softmax(z.clamp(0, 1), -1)
        return torch.where(y > 0, y * (torch.log(y.clamp_min(1e-12)) - logq), torch.zeros_like(y)).sum(-1).mean()
    if loss == "mse":  # regression (LIRIS-ACCEDE): the raw scores are the predictions
        per = (z - y) ** 2
        return per.mean() if m is None else (per * m).sum() / m.sum().clamp_min(1.0)
    raise FullConfigError(f"loss {loss!r} does not apply to per-unit targets")


def pairwise_loss(s_less: torch.Tensor, s_more: torch.Tensor) -> torch.Tensor:
    """V2V: ``BCE(sigmoid(s_more - s_less), 1)``, mean over the pairs."""
    d = s_more - s_less
    return F.binary_cross_entropy_with_logits(d, torch.ones_like(d))


class _Units:
    """Samples for train_model: unit indices; collate cuts the windows."""

    def __init__(self, feats: FeatureSet, vids, times, y, m, seq_len: int):
        self.feats, self.vids, self.times, self.y, self.m, self.seq_len = feats, vids, times, y, m, seq_len

    def __len__(self):
        return len(self.vids)

    def __getitem__(self, i):
        return self, i  # train_model's one collate serves both sets: a sample names its set

    def inputs(self, idx) -> dict[str, torch.Tensor]:
        seqs = [self.feats.sequence(self.vids[i], None if self.times is None else self.times[i], self.seq_len)
                for i in idx]
        return {e: torch.from_numpy(np.stack([s[e] for s in seqs])) for e in self.feats.extractors}

    def collate(self, idx):
        y = torch.as_tensor(self.y[idx], dtype=torch.float32)
        m = None if self.m is None else torch.as_tensor(self.m[idx], dtype=torch.float32)
        return self.inputs(idx), y, m


def input_stats(feats: FeatureSet, video_ids) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per-extractor mean and std over every step of the training videos (one streaming pass
    in float64: the features need not fit in memory)."""
    sums = {e: np.zeros(feats.dims[e]) for e in feats.extractors}
    squares = {e: np.zeros(feats.dims[e]) for e in feats.extractors}
    counts = dict.fromkeys(feats.extractors, 0)
    for vid in sorted(set(video_ids)):
        per = feats.data[vid]
        for e in feats.extractors:
            v = per[e].values.astype(np.float64)
            sums[e] += v.sum(0)
            squares[e] += np.square(v).sum(0)
            counts[e] += v.shape[0]
    out = {}
    for e in feats.extractors:
        n = max(counts[e], 1)
        mean = sums[e] / n
        out[e] = (mean, np.sqrt(np.maximum(squares[e] / n - mean ** 2, 0.0)))
    return out


def _model(feats: FeatureSet, n_outputs: int, n_branches: int, cfg: FullConfig, train_vids) -> FullHead:
    torch.manual_seed(cfg.train.seed)
    model = build_head(feats.dims, n_outputs, n_branches, cfg)
    if cfg.standardise:
        model.set_input_stats(input_stats(feats, train_vids))
    return model


def predict_raw(model: FullHead, units: _Units, batch_size: int = 256) -> np.ndarray:
    model.eval()
    outs = []
    with torch.no_grad():
        for s in range(0, len(units), batch_size):
            idx = list(range(s, min(s + batch_size, len(units))))
            z = model(units.inputs(idx))
            outs.append(z[..., 0] if z.dim() == 3 else z)
    return torch.cat(outs).numpy() if outs else np.zeros((0, 0))


def fit_full(feats: FeatureSet, train: dict, val: dict, predict: list[dict], loss: str, n_outputs: int,
             cfg: FullConfig, ckpt_dir: Path, n_branches: int = 1,
             stop_after_epoch: int | None = None) -> tuple[list[np.ndarray], list[dict], FullHead]:
    """Train on ``train`` (dict of ``video_id``, ``time_s`` (or None), ``y``, ``mask``), early-stop
    on ``val``; return the linked predictions for each dict in ``predict``, the history and the model.
    ``cfg.loss``, when set, replaces ``loss`` (the task's)."""
    loss = resolve_loss(loss, cfg)
    mk = lambda d: _Units(feats, d["video_id"], d.get("time_s"), d.get("y"), d.get("mask"), cfg.seq_len)  # noqa: E731
    tr, va = mk(train), mk(val)
    model = _model(feats, n_outputs, n_branches, cfg, train["video_id"])
    kind = model.output_kind

    def loss_fn(model, batch):
        x, y, m = batch
        return compute_loss(loss, model(x), y, m, kind)

    key = _run_key(model, cfg, loss, train, val)
    history = train_model(model, loss_fn, tr, va, _collate, cfg.train, ckpt_dir,
                          stop_after_epoch=stop_after_epoch, run_key=key)
    preds = [predict_units(model, feats, d, loss, cfg.seq_len) for d in predict]
    return preds, history, model


def predict_units(model: FullHead, feats: FeatureSet, units: dict, loss: str, seq_len: int) -> np.ndarray:
    """Linked predictions (N, K) of ``model`` for ``units`` (``video_id``, ``time_s`` or None), as
    :func:`fit_full` returns them; ``loss``: :func:`resolve_loss`'s name for the run."""
    u = _Units(feats, units["video_id"], units.get("time_s"), None, None, seq_len)
    return link(loss, predict_raw(model, u), model.output_kind)


def _run_key(model, cfg: FullConfig, loss: str, train: dict, val: dict) -> str:
    """A fingerprint of what a checkpoint was trained on: data, targets, model shape, loss."""
    def digest(d):
        y = d.get("y")
        return [list(d["video_id"]), list(d.get("time_s") or []),
                None if y is None else float(np.asarray(y, dtype=np.float64).sum()), np.shape(y)]
    return fingerprint(loss, repr(cfg), sorted(model.state_dict()), digest(train), digest(val))


def _collate(samples):
    units = samples[0][0]
    return units.collate([i for _, i in samples])


def fit_full_pairwise(feats: FeatureSet, video_ids, pairs_train: np.ndarray, pairs_val: np.ndarray,
                      cfg: FullConfig, ckpt_dir: Path,
                      stop_after_epoch: int | None = None) -> tuple[np.ndarray, list[dict], FullHead]:
    """V2V: per-video scores (N,) for ``video_ids`` from (less, more) index pairs."""
    loss = resolve_loss("pairwise_bce", cfg)
    if loss != "pairwise_bce":
        raise FullConfigError(f"v2v trains on pairs: loss {loss!r} does not apply (use pairwise_bce)")
    units = _Units(feats, list(video_ids), None, None, None, cfg.seq_len)
    train_vids = sorted({video_ids[i] for i in pairs_train.ravel()})
    model = _model(feats, 1, 1, cfg, train_vids)

    def collate(samples):
        p = np.asarray(samples)
        return units.inputs(p[:, 0].tolist()), units.inputs(p[:, 1].tolist())

    def loss_fn(model, batch):
        less, more = batch
        return pairwise_loss(model(less)[:, 0], model(more)[:, 0])

    key = _run_key(model, cfg, "pairwise_bce", {"video_id": list(video_ids), "y": pairs_train},
                   {"video_id": [], "y": pairs_val})
    history = train_model(model, loss_fn, [tuple(p) for p in pairs_train], [tuple(p) for p in pairs_val],
                          collate, cfg.train, ckpt_dir, stop_after_epoch=stop_after_epoch, run_key=key)
    return predict_raw(model, units)[:, 0], history, model


# ---------------------------------------------------------------- describe

def task_outputs(task: str) -> tuple[int, str]:
    """(outputs per branch, target family) of a task's full head."""
    if task not in TASK_FAMILIES:
        raise FullConfigError(f"task {task!r} has no full head (tasks with one: {', '.join(sorted(TASK_FAMILIES))})")
    family = TASK_FAMILIES[task]
    if task == "eev":
        from evoke.labels.eev import EEV_EXPRESSIONS
        return len(EEV_EXPRESSIONS), family
    if task == "danmaku_ldl":
        from evoke.danmaku import EMOTIONS
        return len(EMOTIONS), family
    if task == "vce":
        from evoke.labels.common import VCE_EMOTIONS
        return len(VCE_EMOTIONS), family
    return 1, family  # v2v: one score; viewer_valence: one probability per target


# what describe says of full_multitask's branch count when it is not given: training counts them
BRANCHES_FROM_DATA = ("the data: one per viewer of the label table + the average viewer (--branches K, or "
                      "--dataset to count them)")


def branch_counts(total_one: int, per_branch: int, n_branches: int | None, branches_from: str | None) -> dict:
    """The branch entries of a description: ``branches`` (None when unknown), where the count
    comes from, and the parameters: in all (None when unknown), per branch and without the
    branches (``total_one``: a network of the same settings built with one branch)."""
    known = n_branches is not None
    return {"branches": n_branches, "branches_from": branches_from if known else BRANCHES_FROM_DATA,
            "n_parameters": total_one + (n_branches - 1) * per_branch if known else None,
            "n_parameters_per_branch": per_branch, "n_parameters_without_branches": total_one - per_branch}


def describe_full(task: str, head: str, dims: dict[str, int], settings: dict | None = None,
                  n_branches: int | None = None, branches_from: str | None = None) -> dict:
    """What ``evoke train --task task --head head`` would build and how it would train it, for
    features of ``dims`` ({extractor: dim}); ``settings``: the config's ``train.full``.

    ``full_multitask``'s branches (viewers + 1) come from the data: with ``n_branches`` None
    the description says so (``branches`` and ``n_parameters`` None, the parameters per branch
    and without them given; ``init_args`` are those of a one-branch network); ``branches_from``
    names where a given count came from."""
    if head not in ("full", "full_multitask"):
        raise FullConfigError(f"describe covers the full heads (full, full_multitask), not {head!r}")
    if head == "full_multitask" and task != "viewer_valence":
        raise FullConfigError(f"task {task} has no head full_multitask")
    if not dims:
        raise FullConfigError("describe needs at least one extractor (--features)")
    n_outputs, _ = task_outputs(task)
    cfg = FullConfig.for_task(task, settings)
    user = set(dict(settings or {}).keys()) - {"tasks"} | set(((settings or {}).get("tasks") or {}).get(task) or {})
    paper = set(task_defaults().get(task, {})) - user
    if cfg.network == "cognimuse":
        from evoke.heads.cognimuse import describe_cognimuse

        return describe_cognimuse(task, head, dims, cfg, n_branches, sorted(paper), sorted(user), branches_from)
    from evoke.tasks import get_task

    loss = resolve_loss(get_task(task).full_loss or "pairwise_bce", cfg)
    if head == "full":
        n_branches, branches_from = 1, None
    model = build_head(dims, n_outputs, n_branches or 1, cfg)
    one = model if (n_branches or 1) == 1 else build_head(dims, n_outputs, 1, cfg)
    widths = model.init_args["gru_hidden"]
    per_second = get_task(task).per_second
    y8m = cfg.moe == "youtube8m"
    branch = model.branches[0]
    gate_dim = n_outputs if y8m else cfg.moe_dim
    return {
        "task": task, "head": head,
        "modalities": [{"extractor": e, "role": extractor_role(e), "input_dim": int(dims[e]),
                        "gru_hidden": widths[e], "gru_layers": cfg.gru_layers, "dropout": cfg.dropout,
                        "n_parameters": count_parameters(model.grus[e])} for e in model.modalities],
        "fusion_dim": model.fusion_dim,
        "input_gating": {"batch_norm": cfg.gating_batch_norm, "dim": model.fusion_dim,
                         "n_parameters": count_parameters(model.input_gate)},
        "moe": {"kind": cfg.moe, "experts": cfg.n_experts, "outputs": n_outputs if y8m else cfg.moe_dim,
                "dummy_expert": y8m, "expert_activation": "sigmoid" if y8m else "linear",
                "gate_bias": not y8m, "n_parameters": count_parameters(branch.moe)},
        "output_gating": {"on": "class outputs" if y8m else "hidden layer", "batch_norm": cfg.gating_batch_norm,
                          "dim": gate_dim, "n_parameters": count_parameters(branch.gate)},
        "output_kind": model.output_kind,
        "output_link": output_link(loss, model.output_kind),
        "outputs": n_outputs,
        **branch_counts(count_parameters(one), count_parameters(branch), n_branches, branches_from),
        "loss": loss,
        "optimizer": {"name": "adam", "lr": cfg.train.lr, "batch_size": cfg.train.batch_size,
                      "grad_clip": cfg.train.clip_norm, "weight_decay": cfg.train.weight_decay},
        "epochs": cfg.train.epochs, "patience": cfg.train.patience,
        "sequence_length": cfg.seq_len, "padding": "repeat_first",
        "window": "the steps ending at each second" if per_second else "the whole video, evenly resampled",
        "standardise_inputs": cfg.standardise,
        "settings_from_task_defaults": sorted(paper),
        "settings_from_config": sorted(user),
        "init_args": model.init_args,
    }


def parameters_text(d: dict) -> str:
    """A description's parameter count, or its sum per branch when the branches are unknown."""
    if d["n_parameters"] is not None:
        return f"{d['n_parameters']:,} parameters"
    return f"{d['n_parameters_without_branches']:,} + {d['n_parameters_per_branch']:,} per branch parameters"


def branches_text(d: dict) -> str:
    if d["branches"] is None:
        return f"branches from {d['branches_from']}"
    return f"{d['branches']} branch(es)" + (f" (from {d['branches_from']})" if d.get("branches_from") else "")


def format_description(d: dict) -> str:
    """:func:`describe_full`'s dict as text for people."""
    if d.get("network") == "cognimuse":
        from evoke.heads.cognimuse import format_cognimuse

        return format_cognimuse(d)
    lines = [f"{d['task']} / {d['head']}: {parameters_text(d)}, {branches_text(d)} of {d['outputs']} output(s)",
             f"  input: {d['sequence_length']} steps ({d['window']}; short ones padded by repeating the first), "
             f"standardised: {'yes' if d['standardise_inputs'] else 'no'}"]
    for m in d["modalities"]:
        lines.append(f"  GRU {m['extractor']} ({m['role'] or 'no role'}): {m['input_dim']} -> {m['gru_hidden']}, "
                     f"{m['gru_layers']} layer(s), dropout {m['dropout']}  [{m['n_parameters']:,}]")
    g, moe, og, opt = d["input_gating"], d["moe"], d["output_gating"], d["optimizer"]
    lines += [f"  concatenation: {d['fusion_dim']}",
              f"  context gating ({'batch norm' if g['batch_norm'] else 'bias'}): {g['dim']}  [{g['n_parameters']:,}]",
              f"  mixture of experts ({moe['kind']}): {moe['experts']} {moe['expert_activation']} expert(s)"
              f"{' + a dummy expert' if moe['dummy_expert'] else ''}, gates {'with' if moe['gate_bias'] else 'without'}"
              f" bias, {moe['outputs']} output(s)  [{moe['n_parameters']:,}]",
              f"  context gating on the {og['on']} ({'batch norm' if og['batch_norm'] else 'bias'}): {og['dim']}"
              f"  [{og['n_parameters']:,}]",
              f"  outputs: {d['output_kind']}, link: {' then '.join(d['output_link']) or 'none'}",
              f"  loss: {d['loss']}",
              f"  optimiser: {opt['name']}, lr {opt['lr']}, batch {opt['batch_size']}, gradient clip {opt['grad_clip']}, "
              f"weight decay {opt['weight_decay']}; {d['epochs']} epochs, patience {d['patience']}",
              f"  from the task's defaults (x-task-defaults): {', '.join(d['settings_from_task_defaults']) or 'none'}",
              f"  from the settings: {', '.join(d['settings_from_config']) or 'none'}"]
    return "\n".join(lines)
