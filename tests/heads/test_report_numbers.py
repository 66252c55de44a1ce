"""The report's numbers: each table cell is the metric in metrics.json, each baseline row is scored
on the same test units as its runs (re-computed here with NumPy), baselines per feature set when
the runs' test sets differ."""

import json
import math
import re
import shutil

import numpy as np
import polars as pl
import pytest

from evoke.report import _fmt, build_report
from evoke.tasks import run_task

from .conftest import FAST


def md_tables(md: str, raw: bool = False) -> dict[str, list[dict]]:
    """``## task`` -> rows of its Markdown table as dicts (header -> cell). Headers lose their
    direction arrow and unit (``kl ↓`` -> ``kl``, ``n train/val/test (videos)`` -> ``n train/val/test``);
    cells keep only their value (no marks, no interval) unless ``raw``."""
    out, task, header = {}, None, None
    for line in md.splitlines():
        if line.startswith("## "):
            task, header = line[3:].strip(), None
        elif line.startswith("| ") and task:
            cells = [c.strip() for c in line.strip("|").split("|")]
            if header is None:
                header = [re.sub(r" (↑|↓|\(\w+\))$", "", c) for c in cells]
            elif not set("".join(cells)) <= set("-"):
                if not raw:
                    cells = cells[:4] + [c.split(" ")[0] if c else c for c in cells[4:]]
                out.setdefault(task, []).append(dict(zip(header, cells)))
    return out


def _pyldl_kl(P, Q):
    eps = np.finfo(np.float64).eps
    P, Q = np.clip(P, eps, 1), np.clip(Q, eps, 1)
    return np.sum(P * (np.log(P) - np.log(Q)), 1)


@pytest.fixture(scope="module")
def report(report_runs):
    d, summary = report_runs
    return d, summary, md_tables((d / "report" / "report.md").read_text())


def test_table_cells_are_the_metrics_json_numbers(report):
    d, summary, tables = report
    on_disk = json.loads((d / "report" / "metrics.json").read_text())
    assert on_disk["metric_rules"] == {"top3_ties": ["paper"], "kl": ["pyldl"]}
    assert "exactly the 3 largest label entries" in (d / "report" / "report.md").read_text()
    for run in on_disk["runs"]:
        row = next(r for r in tables[run["task"]] if r["head"] == run["head"] and r["features"] == run["feature_set"])
        cols = [c for c in row if c not in ("head", "features", "seed", "n train/val/test", "fit s")]
        assert cols, row
        for c in cols:
            assert row[c] == _fmt(run["metrics"]["test"][c]), (run["task"], c)
        n = run["n"]
        assert row["n train/val/test"] == f"{n['train']}/{n['val']}/{n['test']}"


def test_baseline_rows_are_scored_on_the_runs_test_units(report):
    d, summary, tables = report
    # the runs share one test set, so one set of baseline rows per task
    vce_rows = [r for r in tables["vce"] if r["head"].startswith("baseline: ")]
    assert sorted(r["head"] for r in vce_rows) == ["baseline: majority_emotion", "baseline: mean_distribution",
                                                    "baseline: random"]
    run = next(r for r in summary["runs"] if r["task"] == "vce" and r["head"] == "linear")
    pred = pl.read_parquet(d / "train" / "vce" / "linear" / "colour" / "predictions.parquet")
    labels = pl.read_parquet(d / "labels" / "vce.parquet")
    cols = [c for c in labels.columns if c.startswith("p_")]
    lab = pred.select("video_id", "split").join(labels.select("video_id", *cols), on="video_id")
    train = lab.filter(pl.col("split") == "train").select(cols).to_numpy()
    test = lab.filter(pl.col("split") == "test").select(cols).to_numpy()
    assert len(test) == run["n"]["test"]
    # mean distribution of the training units, scored against the test labels (KL as PyLDL)
    mean = np.repeat(train.mean(0, keepdims=True), len(test), 0)
    kl = _pyldl_kl(test, mean).mean()
    assert run["baselines"]["mean_distribution"]["kl"] == pytest.approx(kl, rel=1e-9)
    row = next(r for r in vce_rows if r["head"] == "baseline: mean_distribution")
    assert row["kl"] == _fmt(kl) and row["n train/val/test"] == f"-/-/{len(test)}"
    assert next(r for r in vce_rows if r["head"] == "baseline: random")["top3_accuracy"] == _fmt(3 / 27)
    # viewer_valence: the paper's three baselines and the training majority, always-Positive's Mean
    # the mean of its columns' positive shares
    vv = {r["head"] for r in tables["viewer_valence"]}
    assert {"baseline: random", "baseline: always_positive", "baseline: always_negative",
            "baseline: majority_class"} <= vv
    vrun = next(r for r in summary["runs"] if r["task"] == "viewer_valence")
    vpred = pl.read_parquet(d / "train" / "viewer_valence" / "linear" / "colour+motion" / "predictions.parquet")
    seg = pl.read_parquet(d / "labels" / "viewer_valence_segments.parquet").with_columns(
        pl.max_horizontal(pl.col("start_s").floor(), pl.col("end_s").ceil() - 1).alias("time_s"))
    vt = vpred.filter(pl.col("split") == "test").join(seg, on=["video_id", "time_s"])
    shares = [vt[c].drop_nulls().mean() for c in ("valence_bin", "valence_bin__a", "valence_bin__b")]
    assert vrun["baselines"]["always_positive"]["mean_accuracy"] == pytest.approx(np.mean(shares))


def test_baselines_per_feature_set_when_test_sets_differ(report, tmp_path):
    d, _, _ = report
    d2 = tmp_path / "synthetic"
    shutil.copytree(d / "train", d2 / "train", symlinks=True)
    # a feature set that covers fewer videos: its baselines are scored on other test units
    f = d2 / "train" / "vce" / "lightgbm" / "colour+motion" / "metrics.json"
    rec = json.loads(f.read_text())
    rec["n"]["test"] -= 3
    rec["baselines"]["mean_distribution"]["kl"] += 0.5
    f.write_text(json.dumps(rec))
    build_report(d2, d2 / "report", perplexity=3, bootstrap=0)
    tables = md_tables((d2 / "report" / "report.md").read_text())
    rows = [r for r in tables["vce"] if r["head"] == "baseline: mean_distribution"]
    assert sorted(r["features"] for r in rows) == ["colour", "colour+motion"]
    by = {r["features"]: r for r in rows}
    assert by["colour+motion"]["kl"] == _fmt(rec["baselines"]["mean_distribution"]["kl"])
    assert by["colour+motion"]["n train/val/test"] == f"-/-/{rec['n']['test']}"
    assert not math.isclose(float(by["colour"]["kl"]), float(by["colour+motion"]["kl"]))



def test_vce_released_topk_is_used_as_given(syn_dir, tmp_path):
    """An imported VCE table (no responses, so null n_annotators; the release's topK in top1-top3)
    is scored against its topK as given, not against a ranking of the intensities."""
    d = tmp_path / "imported"
    d.mkdir()
    for sub in ("features", "ingest"):
        (d / sub).symlink_to(syn_dir / sub)
    (d / "labels").mkdir()
    vce = pl.read_parquet(syn_dir / "labels" / "vce.parquet")
    # a release whose topK puts the label's third emotion first and drops the others
    cols = [c for c in vce.columns if c.startswith("p_")]
    third = [cols[int(np.argsort(-np.array(r))[2])][2:] for r in vce.select(cols).iter_rows()]
    vce = vce.with_columns(pl.Series("top1", third), pl.lit(None, dtype=pl.String).alias("top2"),
                           pl.lit(None, dtype=pl.String).alias("top3"),
                           pl.lit(None, dtype=pl.Int32).alias("n_annotators"))
    vce.write_parquet(d / "labels" / "vce.parquet")
    rec = run_task("vce", "linear", ["colour"], d, tmp_path / "run", FAST)
    test = rec["metrics"]["test"]
    assert test["top3_rule"] == "released topK"
    pred = pl.read_parquet(tmp_path / "run" / "predictions.parquet").filter(pl.col("split") == "test")
    pcols = [c for c in pred.columns if c.startswith("pred_")]
    top = dict(zip(vce["video_id"], vce["top1"]))
    hits = [pcols[int(np.argmax(r[1:]))][5:] == top[r[0]] for r in pred.select("video_id", *pcols).iter_rows()]
    assert test["top3_accuracy"] == pytest.approx(np.mean(hits))
    assert rec["baselines"]["random"]["top3_accuracy"] == pytest.approx(1 / 27)  # one given emotion per video
