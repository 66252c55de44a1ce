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


# the runs every report test reads (tests/heads/test_report_*.py): built once per session
REPORT_RUNS = (("vce", "linear", ["colour"]), ("vce", "lightgbm", ["colour", "motion"]),
               ("viewer_valence", "linear", ["colour", "motion"]), ("eev", "lightgbm", ["colour"]),
               ("v2v_from_emotions", "linear", []), ("vce", "full", ["colour"]))
REPORT_BOOTSTRAP = 200


@pytest.fixture(scope="session")
def report_runs(syn_dir, tmp_path_factory):
    """A dataset dir beside the synthetic one (its features, ingest and labels linked) with the
    trained :data:`REPORT_RUNS` and the report built from them (``report/``, 200 resamples)."""
    from evoke.report import build_report
    from evoke.tasks import run_task

    d = tmp_path_factory.mktemp("rep") / "synthetic"
    d.mkdir()
    for sub in ("features", "ingest", "labels"):
        (d / sub).symlink_to(syn_dir / sub)
    settings = FAST | {"predict_all_splits": True, "full": FAST["full"] | {"epochs": 4}}
    for task, head, feats in REPORT_RUNS:
        run_task(task, head, feats, d, d / "train" / task / head / ("+".join(feats) or "labels"), settings)
    summary = build_report(d, d / "report", perplexity=3, bootstrap=REPORT_BOOTSTRAP)
    return d, summary
