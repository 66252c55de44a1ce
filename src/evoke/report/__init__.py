"""Stage 6, report: every trained head's metrics, beside the baselines, as JSON, HTML and Markdown.

:func:`build_report` reads the ``metrics.json`` of every run under
``results/{dataset}/train/{task}/{head}/{featureset}/`` (or the files given)
and writes to ``out``:

* ``metrics.json``: ``dataset``, ``config_hash`` (a fingerprint of every run's
  config hash), ``simulated_labels``, ``provenance`` (evoke version, git
  commit, date, dataset, config hash), ``bootstrap`` (replicates, seed) and
  ``runs``: one entry per task x head x feature set with its seed, config
  hash, split sizes, test and val metrics, the bootstrap 95% intervals of its
  test metrics (or why there are none), the baselines on the test split and
  the training time;
* ``report.html`` and ``report.md``: a table of contents, the provenance, then
  per task a one-line description, its citation, what ``n`` counts, and one
  table of runs and baselines (:mod:`evoke.report.tables`: direction arrows on
  the headers, the best value per column marked, a mark where a baseline wins,
  the intervals of :mod:`evoke.report.bootstrap`); then the plots
  (:mod:`evoke.report.plots`), PNG files beside them: emodiversity histogram
  and t-SNE of the VCE label distributions coloured by top emotion (from
  ``labels/vce.parquet``), emotion-to-pleasantness coefficients
  (``v2v_from_emotions``), per-class AP (``eev``), learning curves of the full
  heads, and the confusion of top emotions (true top-1 against the predicted
  top emotion of the best ``vce`` run on the test split). A plot whose inputs
  are missing is left out and the report says so.
"""

from __future__ import annotations

import html
import json
import logging
from pathlib import Path

from evoke.config import fingerprint
from evoke.report.bootstrap import DEFAULT_REPLICATES, IntervalError, run_intervals
from evoke.report.plots import (
    _histories,
    _plt,
    _save,
    _vce_labels,
    no_positive_classes,
    plot_coefficients,
    plot_confusion,
    plot_emodiversity,
    plot_learning_curves,
    plot_per_class_ap,
    plot_tsne,
)
from evoke.report.provenance import provenance
from evoke.report.tables import BASELINE_WINS, BEST, DOWN, MAIN_METRICS, UP, _fmt, direction, html_table, md_table, \
    metric_keys, task_table
from evoke.store import atomic_path

__all__ = ["build_report", "collect_runs", "SIMULATION_NOTE", "MAIN_METRICS", "_fmt", "_plt", "_save"]

log = logging.getLogger(__name__)

SIMULATION_NOTE = ("The labels of the demo dataset are a seeded simulation (drawn from measured content "
                   "statistics, see data/demo/annotations/README.md), not emotion ground truth: these numbers "
                   "show that the pipeline runs and that its heads find signal planted on purpose, nothing "
                   "about how videos make people feel.")


def collect_runs(dataset_dir: Path, inputs: list[Path] | None = None) -> list[dict]:
    files = inputs or sorted((dataset_dir / "train").glob("*/*/*/metrics.json"))
    runs = []
    for f in files:
        rec = json.loads(Path(f).read_text())
        rec["dir"] = str(Path(f).parent)
        runs.append(rec)
    return runs


def metric_rules(runs: list[dict]) -> dict[str, list[str]]:
    """The top-3 tie rule and KL rule each run was scored with (their settings, defaults filled)."""
    out: dict[str, set] = {"top3_ties": set(), "kl": set()}
    for r in runs:
        if r["task"] not in ("vce", "danmaku_ldl"):
            continue
        settings = r.get("settings") or {}
        if r["task"] == "vce":
            out["top3_ties"].add(settings.get("top3_ties", "paper"))
        out["kl"].add(settings.get("kl", "pyldl"))
    return {k: sorted(v) for k, v in out.items() if v}


RULE_TEXT = {
    ("top3_ties", "paper"): "top-3 accuracy as the VCE paper takes it: the predicted emotion among exactly the "
                            "3 largest label entries, ties broken in taxonomy order, chance 3/27",
    ("top3_ties", "inclusive"): "top-3 accuracy counting every emotion tied at the third label value (chance "
                                "from the same labels)",
    ("kl", "pyldl"): "KL as PyLDL computes it: both distributions clipped to [2.2e-16, 1] (float64 eps)",
    ("kl", "floor"): "KL with zero label terms 0 and the prediction floored at 2.2e-16",
}


PLOT_TEXT = {
    "emodiversity.png": "Emodiversity of the VCE label distributions.",
    "label_tsne.png": "t-SNE of the VCE label distributions, coloured by top emotion.",
    "emotion_pleasantness_coefficients.png": "Per-emotion coefficients of the emotion-to-pleasantness regression.",
    "eev_per_class_ap.png": "EEV average precision per expression (test), with the class-prior baseline.",
    "learning_curves.png": "Learning curves (train and validation loss per epoch, named by the loss) of the full "
                           "heads; the dashed line marks the epoch whose weights each run kept.",
    "vce_top_emotion_confusion.png": "Confusion of top emotions on the VCE test split (best run by top-3 accuracy).",
}


def task_info(task: str, runs: list[dict]) -> dict[str, str]:
    """A task's one-line description, citation and what its ``n`` counts (:class:`evoke.tasks.Task`)."""
    from evoke.tasks import get_task

    cls = get_task(task)
    return {"description": cls.description, "citation": cls.citation,
            "unit": cls((runs[0].get("settings") if runs else None) or {}).unit}


def add_intervals(runs: list[dict], by_task: dict[str, list[dict]], dataset_dir: Path, replicates: int,
                  seed: int) -> None:
    """Each run's ``bootstrap``: its intervals (:func:`run_intervals`) or ``{"error": why}``."""
    for task, task_runs in by_task.items():
        keys = [k for k in metric_keys(task, task_runs) if direction(k)]
        for r in task_runs:
            if not replicates:
                r["bootstrap"] = {"error": "bootstrap intervals switched off (0 replicates)"}
                continue
            try:
                r["bootstrap"] = run_intervals(r, dataset_dir, keys, replicates, seed)
            except IntervalError as exc:
                log.warning("%s: no bootstrap intervals: %s", r["dir"], exc)
                r["bootstrap"] = {"error": str(exc)}


def _interval_text(task_runs: list[dict]) -> str:
    done = [r["bootstrap"] for r in task_runs if "intervals" in r.get("bootstrap", {})]
    parts = []
    if done:
        b = done[0]
        parts.append(f"[lo, hi]: bootstrap 95% interval ({b['replicates']} resamples of the {b['resampled']}, "
                     f"seed {b['seed']})")
    for r in task_runs:
        err = r.get("bootstrap", {}).get("error")
        if err:
            parts.append(f"no interval for {r['head']} ({r['feature_set']}): {err}")
    return "; ".join(parts) + "." if parts else ""


def build_report(dataset_dir: str | Path, out: str | Path, inputs: list[Path] | None = None,
                 dataset: str | None = None, perplexity: float = 5.0, simulated: bool | None = None,
                 bootstrap: int = DEFAULT_REPLICATES, bootstrap_seed: int = 0) -> dict:
    """Write metrics.json, report.html, report.md and the PNG plots to ``out``; return the metrics dict.

    ``bootstrap``: resamples per run for the 95% intervals of the test metrics (0: none),
    drawn with ``numpy.random.default_rng(bootstrap_seed)``."""
    dataset_dir, out = Path(dataset_dir), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    dataset = dataset or dataset_dir.name
    simulated = (dataset == "demo") if simulated is None else simulated
    runs = collect_runs(dataset_dir, inputs)
    by_task: dict[str, list[dict]] = {}
    for r in runs:
        by_task.setdefault(r["task"], []).append(r)
    add_intervals(runs, by_task, dataset_dir, bootstrap, bootstrap_seed)

    plots, missing = [], []
    vce = _vce_labels(dataset_dir)
    if vce is not None and vce.height:
        plots.append(plot_emodiversity(vce, out))
        plots.append(plot_tsne(vce, out, perplexity))
    else:
        missing.append("emodiversity and t-SNE (no labels/vce.parquet)")
    coef = next((r["info"]["coefficients"] for r in by_task.get("v2v_from_emotions", [])
                 if r.get("info", {}).get("coefficients")), None)
    plots.append(plot_coefficients(coef, out) if coef else None)
    if not coef:
        missing.append("emotion-to-pleasantness coefficients (no v2v_from_emotions run)")
    ap = plot_per_class_ap(by_task.get("eev", []), out)
    plots.append(ap)
    if ap is None:
        missing.append("per-class AP (no eev run)")
    lc = plot_learning_curves([r for r in runs if r["head"].startswith("full")], out)
    plots.append(lc)
    if lc is None:
        missing.append("learning curves (no full-head run)")
    cm = plot_confusion(by_task.get("vce", []), vce, out)
    plots.append(cm)
    if cm is None:
        missing.append("confusion of top emotions (no vce run with test predictions)")
    plots = [p for p in plots if p is not None]

    config_hash = fingerprint(sorted(r.get("config_hash", "") for r in runs))
    prov = provenance(dataset, config_hash)
    infos = {t: task_info(t, rs) for t, rs in by_task.items()}
    summary = {
        "dataset": dataset, "simulated_labels": simulated, "config_hash": config_hash, "provenance": prov,
        "bootstrap": {"replicates": bootstrap, "seed": bootstrap_seed},
        "tasks": infos,
        "runs": [{k: r.get(k) for k in ("task", "head", "feature_set", "features", "seed", "config_hash", "n",
                                        "val_from_train", "baselines", "fit_s", "settings", "bootstrap")}
                 | {"metrics": r["metrics"], "dir": r["dir"],
                    "info": {k: v for k, v in r.get("info", {}).items() if k != "history"},
                    "epochs": {k: len(v) for k, v in _histories(r).items()}} for r in runs],
        "plots": [p.name for p in plots],
        "metric_rules": metric_rules(runs),
    }
    with atomic_path(out / "metrics.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2, sort_keys=True))

    rules = "; ".join(RULE_TEXT[(k, v)] for k, vs in summary["metric_rules"].items() for v in vs)
    intro = (f"Dataset `{dataset}`: {len(runs)} run(s) (task x head x feature set); metrics on the test split, "
             "each beside the trivial baselines scored on the same test units (those fitted, from the training "
             "split)." + (f" Rules: {rules}." if rules else ""))
    legend = (f"{UP} higher is better, {DOWN} lower is better (counts have no arrow); {BEST} the best value in "
              f"its column (ties included); {BASELINE_WINS} a baseline at least as good as every trained head in "
              "that column; [lo, hi] a run's bootstrap 95% interval (a few test units give wide intervals).")
    sections = [("provenance", "Provenance"), ("reading", "How to read the tables")] + \
        [(f"task-{t}", t) for t in sorted(by_task)] + [("plots", "Plots")]

    md = [f"# evoke report: {dataset}", ""]
    body = [f"<h1>evoke report: {html.escape(dataset)}</h1>"]
    if simulated:
        md += [f"> **{SIMULATION_NOTE}**", ""]
        body.append(f"<p class='warn'><strong>{html.escape(SIMULATION_NOTE)}</strong></p>")
    md += ["## Contents", ""] + [f"- [{title}](#{anchor})" for anchor, title in sections] + [""]
    body.append("<nav id='contents'><h2>Contents</h2><ul>" + "".join(
        f"<li><a href='#{a}'>{html.escape(t)}</a></li>" for a, t in sections) + "</ul></nav>")
    md += ['<a id="provenance"></a>', "", "## Provenance", "", "| | |", "|---|---|"] + \
        [f"| {k} | `{v}` |" for k, v in prov.items()] + [""]
    body.append("<h2 id='provenance'>Provenance</h2><table class='provenance'><tbody>" + "".join(
        f"<tr><th>{html.escape(k)}</th><td><code>{html.escape(v)}</code></td></tr>" for k, v in prov.items())
        + "</tbody></table>")
    md += ['<a id="reading"></a>', "", "## How to read the tables", "", intro, "", legend, ""]
    body += ["<h2 id='reading'>How to read the tables</h2>", f"<p>{html.escape(intro)}</p>",
             f"<p class='legend'>{html.escape(legend)}</p>"]
    for task in sorted(by_task):
        info, table = infos[task], task_table(task, by_task[task], infos[task]["unit"])
        about = f"{info['description']}; n counts {info['unit']}."
        cite = f"Source: {info['citation']}." if info["citation"] else ""
        ci = _interval_text(by_task[task])
        md += [f'<a id="task-{task}"></a>', "", f"## {task}", "", about] + (["", cite] if cite else []) + \
            ["", md_table(table), ""] + ([ci, ""] if ci else [])
        body += [f"<h2 id='task-{task}'>{html.escape(task)}</h2>", f"<p class='about'>{html.escape(about)}</p>"]
        body += [f"<p class='cite'>{html.escape(cite)}</p>"] if cite else []
        body += [html_table(table)] + ([f"<p class='ci-note'>{html.escape(ci)}</p>"] if ci else [])
    if not runs:
        md += ["No trained runs found.", ""]
        body.append("<p>No trained runs found.</p>")
    md += ['<a id="plots"></a>', "", "## Plots", ""]
    body.append("<h2 id='plots'>Plots</h2>")
    for p in plots:
        text = PLOT_TEXT.get(p.name, p.name)
        md += [f"![{text}]({p.name})", "", text, ""]
        body.append(f"<figure><img src='{p.name}' alt='{html.escape(text)}'><figcaption>{html.escape(text)}"
                    "</figcaption></figure>")
    empty = no_positive_classes(by_task.get("eev", []))
    if empty:
        line = f"EEV classes with no positives in test (AP undefined, left out of MAP): {', '.join(empty)}."
        md += [line, ""]
        body.append(f"<p>{html.escape(line)}</p>")
    if missing:
        md += ["Not drawn: " + "; ".join(missing) + ".", ""]
        body.append(f"<p>Not drawn: {html.escape('; '.join(missing))}.</p>")
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
             "table{border-collapse:collapse;margin:1em 0;font-size:0.85em}"
             "td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}th{background:#eee}"
             "td.best{font-weight:bold;background:#e3f4e1}td.baseline-wins{background:#fde2c8}"
             "tr.baseline td:first-child{font-style:italic}.ci{color:#555;font-size:0.85em;white-space:nowrap}"
             ".about{font-weight:bold;margin-bottom:0}.cite{color:#444;margin-top:0.2em}"
             ".warn{background:#fff3cd;padding:0.8em;border:1px solid #e0c060}img{max-width:100%}"
             "nav ul{columns:3}")
    page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>evoke report: {html.escape(dataset)}"
            f"</title><style>{style}</style></head><body>{''.join(body)}</body></html>")
    with atomic_path(out / "report.html") as tmp:
        tmp.write_text(page)
    with atomic_path(out / "report.md") as tmp:
        tmp.write_text("\n".join(md))
    return summary
