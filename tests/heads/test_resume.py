"""A full-head run stopped or killed mid-way and resumed gives exactly the uninterrupted weights."""

import numpy as np
import pytest
import torch

from evoke.heads.models import FullHead
from evoke.heads.train import TrainConfig, train_model

CFG = TrainConfig(epochs=4, batch_size=8, lr=0.01, patience=10, seed=3)


def _data():
    rng = np.random.default_rng(0)
    x = {"a": rng.normal(size=(40, 6, 5)).astype(np.float32), "b": rng.normal(size=(40, 6, 3)).astype(np.float32)}
    y = (x["a"][:, :, 0].mean(1) > 0).astype(np.float32)
    samples = list(range(40))
    return x, y, samples[:30], samples[30:]


def _run(ckpt, stop=None, collate=None):
    torch.manual_seed(0)
    model = FullHead({"a": 5, "b": 3}, 1, gru_hidden=8, moe_dim=8, n_experts=2, dropout=0.3)
    x, y, tr, va = _data()

    def default_collate(idx):
        return {k: torch.from_numpy(v[idx]) for k, v in x.items()}, torch.from_numpy(y[idx])

    def loss_fn(m, batch):
        inp, target = batch
        return torch.nn.functional.binary_cross_entropy(m(inp)[:, 0], target)

    history = train_model(model, loss_fn, tr, va, collate or default_collate, CFG, ckpt, stop_after_epoch=stop)
    return model, history, default_collate


def _same(m1, m2):
    s1, s2 = m1.state_dict(), m2.state_dict()
    assert s1.keys() == s2.keys()
    for k in s1:
        assert torch.equal(s1[k], s2[k]), k


def test_stop_and_resume_equals_uninterrupted(tmp_path):
    full, h_full, _ = _run(tmp_path / "a")
    _run(tmp_path / "b", stop=1)
    resumed, h_res, _ = _run(tmp_path / "b")
    _same(full, resumed)
    assert [h["val_loss"] for h in h_full] == [h["val_loss"] for h in h_res]


def test_killed_mid_epoch_resumes_from_last_checkpoint(tmp_path):
    full, _, _ = _run(tmp_path / "a")
    calls = {"n": 0}
    _, _, good = _run(tmp_path / "probe", stop=0)

    def dying(idx):  # dies in the middle of epoch 2 (4 train batches per epoch, 2 val)
        calls["n"] += 1
        if calls["n"] == 2 * 6 + 2:
            raise KeyboardInterrupt("killed")
        return good(idx)

    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path / "b", collate=dying)
    state = torch.load(tmp_path / "b" / "last.pt", weights_only=False)
    assert state["epoch"] == 1
    resumed, _, _ = _run(tmp_path / "b")
    _same(full, resumed)
