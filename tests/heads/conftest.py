"""Shared fixtures: a synthetic dataset dir with signal (evoke.heads.synthetic) and fast settings."""

import os

import pytest
import torch

os.environ.setdefault("TQDM_DISABLE", "1")
torch.set_num_threads(1)  # 2 shared cores: more threads only oversubscribe

FEATURES = ["colour", "motion"]
# small, quick full heads (a few seconds each on 2 cores)
FAST = {"seed": 0, "full": {"epochs": 8, "gru_hidden": 16, "moe_dim": 16, "n_experts": 2, "batch_size": 16,
                            "lr": 0.01, "patience": 4, "seq_len": 12, "dropout": 0.1},
        "lightgbm": {"n_estimators": 60}}


@pytest.fixture(scope="session")
def syn_dir(tmp_path_factory):
    from evoke.heads.synthetic import write_synthetic_dataset

    d = tmp_path_factory.mktemp("syn") / "synthetic"
    write_synthetic_dataset(d, n_videos=70, seconds=(5, 7), seed=0)
    return d
