"""The CLI on a tiny dataset dir laid out like results/{dataset}/, and the report it renders."""

import json

import pytest

import evoke.cli
from evoke.heads.synthetic import write_synthetic_dataset

from .conftest import FAST

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def cli(monkeypatch):
    if "evoke.heads.cli" not in evoke.cli.COMMAND_MODULES:
        monkeypatch.setattr(evoke.cli, "COMMAND_MODULES", evoke.cli.COMMAND_MODULES + ["evoke.heads.cli"])
    return evoke.cli.main


def test_train_and_report_cli(tmp_path, cli):
    d = tmp_path / "results" / "tiny"
    write_synthetic_dataset(d, n_videos=30, seconds=(4, 6), seed=2)
    settings = json.dumps(FAST | {"full": FAST["full"] | {"epochs": 3}})
    runs = [("vce", "linear", "colour,motion"), ("vce", "full", "colour,motion"), ("eev", "lightgbm", "colour"),
            ("v2v_from_emotions", "linear", "")]
    for task, head, feats in runs:
        out = d / "train" / task / head / (feats.replace(",", "+") or "labels")
        rc = cli(["train", "--task", task, "--head", head, "--features", feats, "--dataset", "tiny",
                  "--dataset-dir", str(d), "--out", str(out), "--settings", settings])
        assert rc == 0
        rec = json.loads((out / "metrics.json").read_text())
        assert rec["task"] == task and rec["head"] == head and "test" in rec["metrics"]
    assert (d / "train" / "vce" / "full" / "colour+motion" / "checkpoint" / "best.pt").exists()

    rc = cli(["report", "--dataset", "tiny", "--dataset-dir", str(d), "--out", str(d / "report"),
              "--perplexity", "3", "--bootstrap", "50", "--bootstrap-seed", "7"])
    assert rc == 0
    rep = d / "report"
    summary = json.loads((rep / "metrics.json").read_text())
    assert len(summary["runs"]) == 4 and summary["config_hash"]
    assert summary["bootstrap"] == {"replicates": 50, "seed": 7}
    assert all(r["bootstrap"]["replicates"] == 50 and r["bootstrap"]["intervals"] for r in summary["runs"])
    assert all("baselines" in r and "seed" in r and r["config_hash"] for r in summary["runs"])
    html = (rep / "report.html").read_text()
    assert "<table>" in html and (rep / "report.md").exists()
    expected = {"emodiversity.png", "label_tsne.png", "emotion_pleasantness_coefficients.png",
                "eev_per_class_ap.png", "learning_curves.png", "vce_top_emotion_confusion.png"}
    assert set(summary["plots"]) == expected
    for name in expected:
        data = (rep / name).read_bytes()
        assert data[:8] == PNG and len(data) > 2000, name
        assert f"src='{name}'" in html


def test_demo_report_says_labels_are_simulated(tmp_path):
    from evoke.report import SIMULATION_NOTE, build_report

    d = tmp_path / "demo"
    d.mkdir()
    build_report(d, d / "report")
    assert SIMULATION_NOTE in (d / "report" / "report.md").read_text()
    assert "seeded simulation" in (d / "report" / "report.html").read_text()


def test_cli_error_exit_code(tmp_path, cli, capsys):
    d = tmp_path / "empty"
    d.mkdir()
    rc = cli(["train", "--task", "vce", "--head", "linear", "--features", "colour", "--dataset", "x",
              "--dataset-dir", str(d), "--out", str(tmp_path / "o")])
    assert rc == 2
    assert "label table 'vce' not found" in capsys.readouterr().err


def test_cli_task_names_match_the_registry():
    from evoke.heads.cli import TASK_NAMES
    from evoke.tasks import TASKS

    assert sorted(TASK_NAMES) == sorted(TASKS)
