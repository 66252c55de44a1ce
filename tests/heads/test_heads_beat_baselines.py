"""Every head of every task trains on synthetic data with signal and beats its trivial baseline."""

import math

import pytest

from evoke.tasks import TASKS, run_task

from .conftest import FAST, FEATURES

# (metric, baseline names, higher is better)
PRIMARY = {
    "vce": ("top3_accuracy", ["majority_emotion", "mean_distribution", "random"], True),
    "danmaku_ldl": ("kl", ["mean_distribution"], False),
    "eev": ("map", ["class_prior"], True),
    "viewer_valence": ("mean_viewer_accuracy", ["majority_class"], True),
    "v2v": ("pairwise_accuracy", ["random"], True),
    "v2v_from_emotions": ("pairwise_accuracy", ["random"], True),
    "liris_accede": ("valence_mse", ["train_mean"], False),
}
CASES = [(t, h) for t in sorted(TASKS) for h in TASKS[t].heads]


@pytest.mark.parametrize("task,head", CASES)
def test_head_beats_baseline(task, head, syn_dir, tmp_path):
    settings = dict(FAST)
    if task == "liris_accede":  # unstandardised 1-5 targets: the output bias needs more than 8 short epochs
        settings["full"] = {**FAST["full"], "epochs": 40, "patience": 10}
    rec = run_task(task, head, FEATURES, syn_dir, tmp_path / "run", settings)
    metric, baselines, higher = PRIMARY[task]
    got = rec["metrics"]["test"][metric]
    assert got is not None and math.isfinite(got)
    for b in baselines:
        base = rec["baselines"][b][metric]
        assert (got > base) if higher else (got < base), f"{task}/{head}: {metric} {got} vs {b} {base}"
    assert (tmp_path / "run" / "metrics.json").exists()
    assert (tmp_path / "run" / "predictions.parquet").exists()
    if head.startswith("full"):
        assert list((tmp_path / "run" / "checkpoint").rglob("best.pt"))
    assert rec["n"]["train"] > 0 and rec["n"]["test"] > 0


def test_v2v_from_emotions_reports_joy_ablation_and_coefficients(syn_dir, tmp_path):
    rec = run_task("v2v_from_emotions", "linear", [], syn_dir, tmp_path, FAST)
    assert len(rec["info"]["coefficients"]) == 27
    assert rec["info"]["joy_only"]["test"]["pairwise_accuracy"] > 0.5
    assert rec["info"]["coefficients"]["joy"] > 0  # joy tracks valence in the synthetic data
