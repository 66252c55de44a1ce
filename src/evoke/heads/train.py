"""A seeded, checkpointed, resumable, early-stopped training loop for the full heads.

Every epoch starts from a random state derived from ``(seed, epoch)`` (batch
order and dropout), so a run that is killed and resumed from its last
checkpoint produces exactly the weights an uninterrupted run would. The
checkpoint (``last.pt``: model, optimiser, epoch, best validation loss, history)
is written atomically after every epoch; ``best.pt`` holds the weights with the
lowest validation loss. Training stops after ``patience`` epochs without
improvement.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from tqdm import tqdm

from evoke.store import atomic_path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 30
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.0
    clip_norm: float = 1.0
    patience: int = 5
    seed: int = 0


def _save(obj, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def _batches(n: int, size: int, rng: np.random.Generator | None):
    order = rng.permutation(n) if rng is not None else np.arange(n)
    for start in range(0, n, size):
        yield order[start:start + size]


def evaluate_loss(model, loss_fn, data: Sequence, collate, batch_size: int) -> float:
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for idx in _batches(len(data), batch_size, None):
            batch = collate([data[i] for i in idx])
            total += float(loss_fn(model, batch)) * len(idx)
            count += len(idx)
    return total / max(count, 1)


def train_model(
    model: torch.nn.Module,
    loss_fn: Callable[[torch.nn.Module, object], torch.Tensor],
    train: Sequence,
    val: Sequence,
    collate: Callable[[list], object],
    cfg: TrainConfig,
    ckpt_dir: Path,
    stop_after_epoch: int | None = None,
    run_key: str | None = None,
) -> list[dict]:
    """Train ``model`` on ``train`` samples, early-stopping on ``val``; return the history.

    ``loss_fn(model, collate(samples))`` returns a scalar loss. Resumes from
    ``ckpt_dir/last.pt`` when it exists. On return the model holds the best
    weights. ``stop_after_epoch`` ends the run after that epoch (tests use it to
    simulate an interruption). ``run_key`` (e.g. a fingerprint of the data and
    the model's shape) is stored in the checkpoint; a checkpoint written with
    another key or other settings is not resumed from.
    """
    ckpt_dir = Path(ckpt_dir)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    start, best, best_epoch, history = 0, math.inf, -1, []
    last = ckpt_dir / "last.pt"
    if last.exists():
        state = torch.load(last, map_location="cpu", weights_only=False)
        if state.get("config") == asdict(cfg) and state.get("run_key") == run_key:
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            start, best, best_epoch, history = state["epoch"] + 1, state["best"], state["best_epoch"], state["history"]
            log.info("resuming from %s at epoch %d", last, start)
        else:
            log.warning("%s was written with other settings or data: starting afresh", last)
    if not val:
        raise ValueError("train_model needs a non-empty validation set for early stopping")
    for epoch in range(start, cfg.epochs):
        if epoch - best_epoch > cfg.patience and best_epoch >= 0:
            break
        torch.manual_seed(cfg.seed * 100_003 + epoch)
        rng = np.random.default_rng([cfg.seed, epoch])
        model.train()
        t0 = time.perf_counter()
        total, count = 0.0, 0
        for idx in tqdm(list(_batches(len(train), cfg.batch_size, rng)), desc=f"epoch {epoch}",
                        leave=False, mininterval=5):
            batch = collate([train[i] for i in idx])
            loss = loss_fn(model, batch)
            opt.zero_grad()
            loss.backward()
            if cfg.clip_norm:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_norm)
            opt.step()
            total += float(loss.detach()) * len(idx)
            count += len(idx)
        val_loss = evaluate_loss(model, loss_fn, val, collate, cfg.batch_size)
        history.append({"epoch": epoch, "train_loss": total / max(count, 1), "val_loss": val_loss,
                        "epoch_s": time.perf_counter() - t0})
        log.info("epoch %d: train %.4f, val %.4f", epoch, history[-1]["train_loss"], val_loss)
        if val_loss < best:
            best, best_epoch = val_loss, epoch
            _save(model.state_dict(), ckpt_dir / "best.pt")
        _save({"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch, "best": best,
               "best_epoch": best_epoch, "history": history, "config": asdict(cfg), "run_key": run_key}, last)
        if stop_after_epoch is not None and epoch >= stop_after_epoch:
            return history
    if (ckpt_dir / "best.pt").exists():
        model.load_state_dict(torch.load(ckpt_dir / "best.pt", map_location="cpu", weights_only=True))
    return history
