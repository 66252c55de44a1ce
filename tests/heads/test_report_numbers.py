"""The report's numbers: each table cell is the metric in metrics.json, each baseline row is scored
on the same test units as its runs (re-computed here with NumPy), baselines per feature set when
the runs' test sets differ."""

import json
import math
import re
import shutil
from pathlib import Path

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


# ------------------------------------------------------------------ intervals, marks, provenance


def _percentiles(values):
    return [float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))]


def test_bootstrap_intervals_are_a_seeded_resampling_of_the_test_videos(report):
    """vce linear: the intervals are the 2.5/97.5 percentiles of top-3 accuracy, KL (PyLDL) and
    cosine over REPORT_BOOTSTRAP resamples of the test videos drawn with default_rng(0), each
    metric re-implemented here in NumPy."""
    from .conftest import REPORT_BOOTSTRAP

    d, summary, tables = report
    run = next(r for r in summary["runs"] if r["task"] == "vce" and r["head"] == "linear")
    boot = run["bootstrap"]
    assert boot["replicates"] == REPORT_BOOTSTRAP and boot["seed"] == 0 and boot["resampled"] == "test videos"
    pred = pl.read_parquet(d / "train" / "vce" / "linear" / "colour" / "predictions.parquet").filter(
        pl.col("split") == "test")
    pcols = [c for c in pred.columns if c.startswith("pred_")]
    labels = pl.read_parquet(d / "labels" / "vce.parquet")
    Y = pred.select("video_id").join(labels, on="video_id", how="left").select(
        [f"p_{c[5:]}" for c in pcols]).to_numpy()
    P = np.clip(pred.select(pcols).to_numpy(), 0, None)
    P = P / P.sum(1, keepdims=True)
    hit = np.array([np.argmax(p) in np.argsort(-y, kind="stable")[:3] for p, y in zip(P, Y)], float)
    kl = _pyldl_kl(Y, P)
    cos = (P * Y).sum(1) / np.linalg.norm(P, axis=1) / np.linalg.norm(Y, axis=1)
    rng = np.random.default_rng(0)
    draws = [rng.integers(0, len(P), len(P)) for _ in range(REPORT_BOOTSTRAP)]
    for name, per_video in (("top3_accuracy", hit), ("kl", kl), ("cosine", cos)):
        assert per_video.mean() == pytest.approx(run["metrics"]["test"][name], rel=1e-9)
        expected = _percentiles([per_video[i].mean() for i in draws])
        assert boot["intervals"][name] == pytest.approx(expected, rel=1e-9), name
        assert boot["defined"][name] == REPORT_BOOTSTRAP
    # the table shows them beside the value; six test videos give a wide top-3 interval
    row = next(r for r in md_tables((d / "report" / "report.md").read_text(), raw=True)["vce"]
               if r["head"] == "linear" and r["features"] == "colour")
    lo, hi = boot["intervals"]["top3_accuracy"]
    assert row["top3_accuracy"].endswith(f"[{_fmt(lo)}, {_fmt(hi)}]")
    assert run["n"]["test"] <= 20 and hi - lo > 0.2


def test_bootstrap_of_pairs_resamples_pairs_and_lists(report):
    """v2v_from_emotions: the test pairs, then the test lists, resampled (default_rng(0)); pairwise
    accuracy (ties wrong) and listwise accuracy (the whole order right) re-implemented here."""
    from .conftest import REPORT_BOOTSTRAP

    d, summary, _ = report
    run = next(r for r in summary["runs"] if r["task"] == "v2v_from_emotions")
    assert run["bootstrap"]["resampled"] == "test pairs and lists"
    pred = pl.read_parquet(d / "train" / "v2v_from_emotions" / "linear" / "labels" / "predictions.parquet")
    score = dict(zip(*pred.filter(pl.col("split") == "test").select("video_id", "pred_score")
                     .to_dict(as_series=False).values()))
    pairs = pl.read_parquet(d / "labels" / "v2v_pairs.parquet").filter(pl.col("split") == "test")
    pairs = list(zip(pairs["less_pleasant"], pairs["more_pleasant"]))
    lists = pl.read_parquet(d / "labels" / "v2v_lists.parquet").filter(pl.col("split") == "test")["videos"].to_list()
    pair_hit = [score[b] > score[a] if a in score and b in score else None for a, b in pairs]
    list_hit = [all(score[x] < score[y] for x, y in zip(l, l[1:])) if all(v in score for v in l) else None
                for l in lists]
    rng = np.random.default_rng(0)
    acc = {"pairwise_accuracy": [], "listwise_accuracy": []}
    for _ in range(REPORT_BOOTSTRAP):
        for name, hits in (("pairwise_accuracy", pair_hit), ("listwise_accuracy", list_hit)):
            drawn = [hits[i] for i in rng.integers(0, len(hits), len(hits))]
            drawn = [h for h in drawn if h is not None]
            if drawn:
                acc[name].append(np.mean(drawn))
    for name, values in acc.items():
        assert run["bootstrap"]["intervals"][name] == pytest.approx(_percentiles(values), rel=1e-9), name
        assert run["bootstrap"]["defined"][name] == len(values)


def test_no_interval_when_the_labels_differ_from_the_runs(report, tmp_path):
    from evoke.report.bootstrap import IntervalError, run_intervals

    d, summary, _ = report
    run = next(r for r in summary["runs"] if r["task"] == "vce" and r["head"] == "linear")
    d2 = tmp_path / "synthetic"
    (d2 / "labels").mkdir(parents=True)
    (d2 / "ingest").symlink_to(d / "ingest")
    vce = pl.read_parquet(d / "labels" / "vce.parquet")
    cols = [c for c in vce.columns if c.startswith("p_")]
    vce.with_columns([pl.col(a).alias(b) for a, b in zip(cols, cols[1:] + cols[:1])]).write_parquet(
        d2 / "labels" / "vce.parquet")
    with pytest.raises(IntervalError, match="differ from the ones the run was trained on"):
        run_intervals(run, d2, ["top3_accuracy", "kl"], replicates=5)
    with pytest.raises(IntervalError, match="no .*predictions.parquet"):
        run_intervals(run | {"dir": str(tmp_path)}, d, ["kl"], replicates=5)


def _best_rows(values: dict[str, float], sign: int) -> set[str]:
    top = max(sign * v for v in values.values())
    return {k for k, v in values.items() if sign * v == pytest.approx(top, abs=1e-12)}


def test_arrows_best_and_baseline_marks_follow_the_numbers(report):
    d, summary, _ = report
    md = (d / "report" / "report.md").read_text()
    raw, plain = md_tables(md, raw=True), md_tables(md)
    assert "| kl ↓ |" in md and "| top3_accuracy ↑ |" in md and "| map ↑ |" in md and "| n_pairs |" in md
    assert "n train/val/test (videos)" in md and "n train/val/test (seconds)" in md
    for task in ("vce", "eev", "viewer_valence", "v2v_from_emotions"):
        runs = [r for r in summary["runs"] if r["task"] == task]
        rows_raw, rows = raw[task], plain[task]
        metrics = [k for k in rows[0] if k not in ("head", "features", "seed", "n train/val/test", "fit s")]
        for k in metrics:
            if k.startswith("n_"):
                assert not any("★" in r[k] for r in rows_raw)
                continue
            sign = -1 if k in ("kl", "chebyshev", "clark", "canberra") else 1
            heads = {f"{r['head']}|{r['feature_set']}": r["metrics"]["test"][k] for r in runs}
            heads |= {f"{r['head']} (joy only)|{r['feature_set']}": r["info"]["joy_only"]["test"][k]
                      for r in runs if "joy_only" in r.get("info", {})}
            base = {f"baseline: {n}|": m[k] for n, m in runs[0]["baselines"].items() if m.get(k) is not None}
            every = {**{h: v for h, v in heads.items() if v is not None}, **base}
            best = _best_rows(every, sign)
            top_head = max(sign * v for v in heads.values() if v is not None)
            for r in rows_raw:
                key = f"{r['head']}|{r['features']}"
                assert ("★" in r[k]) == (key in best), (task, k, key, r[k])
                wins = key in base and sign * base[key] >= top_head - 1e-12
                assert ("⚑" in r[k]) == wins, (task, k, key, r[k])


def test_marks_when_a_baseline_wins_or_ties():
    from evoke.report.tables import md_table, task_table

    def run(head, top3, kl):
        return {"task": "vce", "head": head, "feature_set": "colour", "seed": 0, "n": {"test": 6},
                "metrics": {"test": {"top3_accuracy": top3, "kl": kl}},
                "baselines": {"random": {"top3_accuracy": 0.5}, "mean_distribution": {"top3_accuracy": 0.25,
                                                                                      "kl": 0.9}}}
    table = task_table("vce", [run("linear", 0.5, 1.2), run("lightgbm", 0.25, 1.0)], "videos")
    rows = {r.label[0]: r for r in table.rows}
    # a tie with the best head is a win for the baseline; a lower KL beats every head
    assert rows["baseline: random"].marks["top3_accuracy"] == " ★ ⚑"
    assert rows["linear"].marks["top3_accuracy"] == " ★"
    assert "top3_accuracy" not in rows["baseline: mean_distribution"].marks
    assert rows["baseline: mean_distribution"].marks["kl"] == " ★ ⚑"
    assert "kl" not in rows["lightgbm"].marks and "kl" not in rows["baseline: random"].marks
    assert "| 0.900 ★ ⚑ |" in md_table(table)


def test_provenance_units_citations_and_contents(report, monkeypatch):
    import subprocess
    from datetime import datetime, timezone

    import evoke
    from evoke.report.provenance import report_date
    from evoke.tasks import TASKS

    d, summary, _ = report
    prov = summary["provenance"]
    head = subprocess.run(["git", "-C", str(Path(__file__).parent), "rev-parse", "HEAD"], capture_output=True,
                          text=True, check=True).stdout.strip()
    assert prov["git commit"].split(" ")[0] == head
    assert prov["evoke version"] == evoke.__version__ and prov["dataset"] == "synthetic"
    assert prov["config hash"] == summary["config_hash"]
    age = datetime.now(timezone.utc) - datetime.fromisoformat(prov["date"])
    assert 0 <= age.total_seconds() < 3600
    md, page = (d / "report" / "report.md").read_text(), (d / "report" / "report.html").read_text()
    for k, v in prov.items():
        assert f"| {k} | `{v}` |" in md
    for task in ("vce", "eev", "viewer_valence", "v2v_from_emotions"):
        cls = TASKS[task]
        assert f"{cls.description}; n counts {cls.unit}." in md and cls.citation and cls.citation in md
        assert summary["tasks"][task]["unit"] == cls.unit
    assert summary["tasks"]["viewer_valence"]["unit"] == "segments" and summary["tasks"]["eev"]["unit"] == "seconds"
    # the table of contents: every link has its target
    links = re.findall(r"<a href='#([^']+)'>", page)
    assert {"provenance", "task-vce", "task-eev", "plots"} <= set(links)
    assert all(f"id='{a}'" in page for a in links)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "86400")
    assert report_date() == "1970-01-02T00:00:00+00:00"
