"""Full heads: :class:`~evoke.heads.models.FullHead` trained with :func:`~evoke.heads.train.train_model`.

Losses (``loss`` argument of :func:`fit_full`), on the raw outputs ``z``:

* ``"l1_softmax"`` (VCE): ``sum_j |softmax(z)_j - p_j|``, mean over the batch;
* ``"kl_clamp_softmax"`` (danmaku LDL): ``q = softmax(clamp(z, 0, 1))``,
  ``KL(p || q) = sum_j p_j (ln p_j - ln q_j)`` (0 ln 0 = 0);
* ``"bce"`` (EEV, viewers' valence): binary cross-entropy with logits, averaged
  over the labelled entries only (``y_mask``); with several branches (the
  multi-task head) ``z`` is (B, branches, 1) and each branch is one column;
* ``"mse"`` (LIRIS-ACCEDE): mean squared error of the raw outputs, over the
  labelled entries;
* ``"pairwise_bce"`` (V2V): samples are (less, more) pleasant pairs of video
  indices, loss ``BCE(sigmoid(f(x_more) - f(x_less)), 1)``.

:func:`link` turns raw outputs into predictions the metrics read.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from evoke.config import fingerprint
from evoke.heads.data import FeatureSet
from evoke.heads.models import FullHead
from evoke.heads.train import TrainConfig, train_model

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FullConfig:
    seq_len: int = 60
    hidden: int = 128
    moe_dim: int = 256
    n_experts: int = 4
    dropout: float = 0.3
    train: TrainConfig = field(default_factory=TrainConfig)

    @classmethod
    def from_dict(cls, d: dict | None) -> "FullConfig":
        d = dict(d or {})
        train_keys = set(TrainConfig.__dataclass_fields__)
        tcfg = TrainConfig(**{k: d.pop(k) for k in list(d) if k in train_keys})
        return cls(train=tcfg, **{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


def link(loss: str, z: np.ndarray) -> np.ndarray:
    """Raw outputs -> predictions: distributions, probabilities or scores."""
    if loss == "l1_softmax":
        return torch.softmax(torch.as_tensor(z), -1).numpy()
    if loss == "kl_clamp_softmax":
        return torch.softmax(torch.as_tensor(z).clamp(0, 1), -1).numpy()
    if loss == "bce":
        return torch.sigmoid(torch.as_tensor(z)).numpy()
    return z


def _loss(loss: str, z: torch.Tensor, y: torch.Tensor, m: torch.Tensor | None) -> torch.Tensor:
    if z.dim() == 3:  # multi-task: (B, branches, 1) -> (B, branches)
        z = z[..., 0]
    if loss == "l1_softmax":
        return (torch.softmax(z, -1) - y).abs().sum(-1).mean()
    if loss == "kl_clamp_softmax":
        logq = torch.log_softmax(z.clamp(0, 1), -1)
        return torch.where(y > 0, y * (torch.log(y.clamp_min(1e-12)) - logq), torch.zeros_like(y)).sum(-1).mean()
    if loss == "bce":
        per = F.binary_cross_entropy_with_logits(z, y, reduction="none")
        if m is None:
            return per.mean()
        return (per * m).sum() / m.sum().clamp_min(1.0)
    if loss == "mse":  # regression (LIRIS-ACCEDE valence/arousal): raw outputs are the predictions
        per = (z - y) ** 2
        return per.mean() if m is None else (per * m).sum() / m.sum().clamp_min(1.0)
    raise ValueError(f"unknown loss {loss!r}")


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
    model = FullHead(feats.dims, n_outputs, hidden=cfg.hidden, moe_dim=cfg.moe_dim, n_experts=cfg.n_experts,
                     dropout=cfg.dropout, n_branches=n_branches)
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
    on ``val``; return the linked predictions for each dict in ``predict``, the history and the model."""
    mk = lambda d: _Units(feats, d["video_id"], d.get("time_s"), d.get("y"), d.get("mask"), cfg.seq_len)  # noqa: E731
    tr, va = mk(train), mk(val)
    model = _model(feats, n_outputs, n_branches, cfg, train["video_id"])

    def loss_fn(model, batch):
        x, y, m = batch
        return _loss(loss, model(x), y, m)

    key = _run_key(model, cfg, loss, train, val)
    history = train_model(model, loss_fn, tr, va, _collate, cfg.train, ckpt_dir,
                          stop_after_epoch=stop_after_epoch, run_key=key)
    preds = [link(loss, predict_raw(model, mk(d))) for d in predict]
    return preds, history, model


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
    units = _Units(feats, list(video_ids), None, None, None, cfg.seq_len)
    train_vids = sorted({video_ids[i] for i in pairs_train.ravel()})
    model = _model(feats, 1, 1, cfg, train_vids)

    def collate(samples):
        p = np.asarray(samples)
        return units.inputs(p[:, 0].tolist()), units.inputs(p[:, 1].tolist())

    def loss_fn(model, batch):
        less, more = batch
        d = model(more)[:, 0] - model(less)[:, 0]
        return F.binary_cross_entropy_with_logits(d, torch.ones_like(d))

    key = _run_key(model, cfg, "pairwise_bce", {"video_id": list(video_ids), "y": pairs_train},
                   {"video_id": [], "y": pairs_val})
    history = train_model(model, loss_fn, [tuple(p) for p in pairs_train], [tuple(p) for p in pairs_val],
                          collate, cfg.train, ckpt_dir, stop_after_epoch=stop_after_epoch, run_key=key)
    return predict_raw(model, units)[:, 0], history, model
