"""Stage 6, report: every trained head's metrics, beside the baselines, as JSON, HTML and Markdown.

:func:`build_report` reads the ``metrics.json`` of every run under
``results/{dataset}/train/{task}/{head}/{featureset}/`` (or the files given)
and writes to ``out``:

* ``metrics.json``: ``dataset``, ``config_hash`` (a fingerprint of every run's
  config hash), ``simulated_labels`` and ``runs``: one entry per task x head x
  feature set with its seed, config hash, split sizes, test and val metrics,
  the baselines on the test split and the training time;
* ``report.html`` and ``report.md``: one table per task (runs and baselines),
  and the plots, PNG files beside them (matplotlib, Agg): emodiversity
  histogram and t-SNE of the VCE label distributions coloured by top emotion
  (from ``labels/vce.parquet``), emotion-to-pleasantness coefficients
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

import numpy as np
import polars as pl

from evoke.config import fingerprint
from evoke.store import atomic_path

log = logging.getLogger(__name__)

MAIN_METRICS = {
    "vce": ["top3_accuracy", "kl", "cosine", "intersection", "chebyshev", "clark", "canberra"],
    "danmaku_ldl": ["kl", "cosine", "intersection", "chebyshev", "clark", "canberra"],
    "eev": ["map", "gap", "mean_pearson"],
    "viewer_valence": ["mean_accuracy", "mean_viewer_accuracy", "average_viewer_accuracy"],
    "v2v": ["pairwise_accuracy", "listwise_accuracy", "n_pairs", "n_lists"],
    "v2v_from_emotions": ["pairwise_accuracy", "listwise_accuracy", "n_pairs", "n_lists"],
}
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


def _fmt(x) -> str:
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "n/a"
    if isinstance(x, float):
        return f"{x:.3f}"
    return str(x)


def _table_rows(task: str, runs: list[dict]) -> tuple[list[str], list[list[str]]]:
    keys = MAIN_METRICS.get(task) or sorted({k for r in runs for k, v in r["metrics"].get("test", {}).items()
                                             if not isinstance(v, dict)})
    header = ["head", "features", "seed", "n train/val/test"] + keys + ["fit s"]
    rows, baselines = [], {}
    for r in sorted(runs, key=lambda r: (r["feature_set"], r["head"])):
        test, n = r["metrics"].get("test", {}), r.get("n", {})
        rows.append([r["head"], r["feature_set"], str(r["seed"]),
                     f"{n.get('train', '?')}/{n.get('val', '?')}/{n.get('test', '?')}"]
                    + [_fmt(test.get(k)) for k in keys] + [_fmt(r.get("fit_s"))])
        if task == "v2v_from_emotions" and "joy_only" in r.get("info", {}):
            joy = r["info"]["joy_only"].get("test", {})
            rows.append([f"{r['head']} (joy only)", r["feature_set"], str(r["seed"]), ""]
                        + [_fmt(joy.get(k)) for k in keys] + [""])
        # baselines are scored on the run's own test units: runs whose feature sets cover
        # different videos get their own baseline rows
        baselines.setdefault(json.dumps(r.get("baselines", {}), sort_keys=True), []).append(r)
    for group in baselines.values():
        features = "" if len(baselines) == 1 else ", ".join(sorted({r["feature_set"] for r in group}))
        n = group[0].get("n", {}).get("test", "?")
        for name, m in group[0].get("baselines", {}).items():
            rows.append([f"baseline: {name}", features, "", f"-/-/{n}"] + [_fmt(m.get(k)) for k in keys] + [""])
    return header, rows


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


# ------------------------------------------------------------------ plots


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    _plt().close(fig)
    return path


def _vce_labels(dataset_dir: Path) -> pl.DataFrame | None:
    p = dataset_dir / "labels" / "vce.parquet"
    if not p.exists():
        return None
    df = pl.read_parquet(p)
    cols = [c for c in df.columns if c.startswith("p_")]
    return df.filter(pl.all_horizontal(pl.col(c).is_not_null() for c in cols)) if cols else None


def plot_emodiversity(vce: pl.DataFrame, out: Path) -> Path:
    from evoke.metrics import emodiversity

    plt = _plt()
    P = vce.select([c for c in vce.columns if c.startswith("p_")]).to_numpy()
    ed = emodiversity(P)
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.hist(ed[np.isfinite(ed)], bins=min(30, max(5, len(ed) // 3)), color="#4477aa")
    ax.set_xlabel("emodiversity (perplexity of the label distribution)")
    ax.set_ylabel("videos")
    ax.set_title(f"Emodiversity of the VCE labels (n = {len(ed)})")
    return _save(fig, out / "emodiversity.png")


def plot_tsne(vce: pl.DataFrame, out: Path, perplexity: float, seed: int = 0) -> Path | None:
    from sklearn.manifold import TSNE

    cols = [c for c in vce.columns if c.startswith("p_")]
    P = vce.select(cols).to_numpy()
    if len(P) < 4:
        return None
    emb = TSNE(n_components=2, perplexity=min(perplexity, (len(P) - 1) / 3), random_state=seed,
               init="random").fit_transform(P)
    top = np.array([cols[i][2:] for i in P.argmax(1)])
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4.5))
    names, counts = np.unique(top, return_counts=True)
    shown = names[np.argsort(-counts)][:10]
    cmap = plt.get_cmap("tab10")
    for k, name in enumerate(shown):
        m = top == name
        ax.scatter(emb[m, 0], emb[m, 1], s=14, color=cmap(k), label=name)
    rest = ~np.isin(top, shown)
    if rest.any():
        ax.scatter(emb[rest, 0], emb[rest, 1], s=10, color="lightgrey", label="other")
    ax.legend(fontsize=7, loc="best", markerscale=1.2)
    ax.set_title("t-SNE of the VCE label distributions, coloured by top emotion")
    ax.set_xticks([]), ax.set_yticks([])
    return _save(fig, out / "label_tsne.png")


def plot_coefficients(coefs: dict[str, float], out: Path) -> Path:
    plt = _plt()
    names = sorted(coefs, key=coefs.get)
    fig, ax = plt.subplots(figsize=(5, 0.22 * len(names) + 1))
    ax.barh(names, [coefs[n] for n in names], color=["#cc6677" if coefs[n] < 0 else "#117733" for n in names])
    ax.axvline(0, color="black", lw=0.8)
    ax.set_xlabel("logistic-regression coefficient (more pleasant ->)")
    ax.set_title("Emotion to pleasantness (v2v_from_emotions)")
    ax.tick_params(axis="y", labelsize=7)
    return _save(fig, out / "emotion_pleasantness_coefficients.png")


def plot_per_class_ap(runs: list[dict], out: Path) -> Path | None:
    runs = [r for r in runs if r["metrics"].get("test", {}).get("per_class_ap")]
    if not runs:
        return None
    plt = _plt()
    classes = list(runs[0]["metrics"]["test"]["per_class_ap"])
    fig, ax = plt.subplots(figsize=(max(6, 0.45 * len(classes)), 3.5))
    width = 0.8 / len(runs)
    for k, r in enumerate(runs):
        ap = [r["metrics"]["test"]["per_class_ap"].get(c) for c in classes]
        ap = [np.nan if a is None else a for a in ap]
        ax.bar(np.arange(len(classes)) + k * width, ap, width, label=f"{r['head']} ({r['feature_set']})")
    base = next((r["baselines"].get("class_prior", {}).get("per_class_ap") for r in runs), None)
    if base:
        ax.scatter(np.arange(len(classes)) + 0.4 - width / 2, [np.nan if base.get(c) is None else base[c]
                                                                for c in classes],
                   marker="_", s=200, color="black", label="class prior", zorder=3)
    ax.set_xticks(np.arange(len(classes)) + 0.4 - width / 2, classes, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("AP (test)")
    ax.set_title("EEV: average precision per expression")
    ax.legend(fontsize=7)
    return _save(fig, out / "eev_per_class_ap.png")


def _histories(r: dict) -> dict[str, list[dict]]:
    h = r.get("info", {}).get("history")
    if isinstance(h, list):
        return {"": h} if h else {}
    if isinstance(h, dict):
        return {k: v for k, v in h.items() if v}
    return {}


def plot_learning_curves(runs: list[dict], out: Path) -> Path | None:
    curves = [(r, name, h) for r in runs for name, h in _histories(r).items()]
    if not curves:
        return None
    plt = _plt()
    n = len(curves)
    cols = min(3, n)
    rows_ = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows_, cols, figsize=(4 * cols, 2.8 * rows_), squeeze=False)
    for ax, (r, name, h) in zip(axes.ravel(), curves):
        ep = [e["epoch"] for e in h]
        ax.plot(ep, [e["train_loss"] for e in h], label="train")
        ax.plot(ep, [e["val_loss"] for e in h], label="val")
        ax.set_title(f"{r['task']} {r['head']} {name}\n({r['feature_set']})".replace("  ", " "), fontsize=8)
        ax.set_xlabel("epoch", fontsize=7)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    fig.suptitle("Learning curves of the full heads (loss)")
    fig.subplots_adjust(hspace=0.75, wspace=0.3)
    return _save(fig, out / "learning_curves.png")


def plot_confusion(runs: list[dict], vce: pl.DataFrame | None, out: Path) -> Path | None:
    runs = [r for r in runs if r["task"] == "vce" and (Path(r["dir"]) / "predictions.parquet").exists()]
    if not runs or vce is None:
        return None
    best = max(runs, key=lambda r: r["metrics"].get("test", {}).get("top3_accuracy") or -1)
    pred = pl.read_parquet(Path(best["dir"]) / "predictions.parquet").filter(pl.col("split") == "test")
    if pred.height == 0:
        return None
    pcols = [c for c in pred.columns if c.startswith("pred_")]
    names = [c[5:] for c in pcols]
    predicted = np.array(names)[pred.select(pcols).to_numpy().argmax(1)]
    lab = vce.select("video_id", *[f"p_{n}" for n in names])
    truth = dict(zip(lab["video_id"].to_list(), np.array(names)[lab.drop("video_id").to_numpy().argmax(1)]))
    true = np.array([truth.get(v) for v in pred["video_id"].to_list()])
    used = sorted(set(true.tolist()) | set(predicted.tolist()))
    idx = {n: i for i, n in enumerate(used)}
    M = np.zeros((len(used), len(used)), int)
    for t, p in zip(true, predicted):
        M[idx[t], idx[p]] += 1
    plt = _plt()
    fig, ax = plt.subplots(figsize=(0.45 * len(used) + 2.5, 0.45 * len(used) + 2))
    ax.imshow(M, cmap="Blues")
    for i in range(len(used)):
        for j in range(len(used)):
            if M[i, j]:
                ax.text(j, i, str(M[i, j]), ha="center", va="center", fontsize=7)
    ax.set_xticks(range(len(used)), used, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(used)), used, fontsize=7)
    ax.set_xlabel("predicted top emotion")
    ax.set_ylabel("label top emotion")
    ax.set_title(f"VCE top emotions, test ({best['head']}, {best['feature_set']})", fontsize=9)
    return _save(fig, out / "vce_top_emotion_confusion.png")


# ------------------------------------------------------------------ documents


def _md_table(header, rows) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _html_table(header, rows) -> str:
    h = "".join(f"<th>{html.escape(x)}</th>" for x in header)
    b = "".join("<tr>" + "".join(f"<td>{html.escape(x)}</td>" for x in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{h}</tr></thead><tbody>{b}</tbody></table>"


PLOT_TEXT = {
    "emodiversity.png": "Emodiversity of the VCE label distributions.",
    "label_tsne.png": "t-SNE of the VCE label distributions, coloured by top emotion.",
    "emotion_pleasantness_coefficients.png": "Per-emotion coefficients of the emotion-to-pleasantness regression.",
    "eev_per_class_ap.png": "EEV average precision per expression (test), with the class-prior baseline.",
    "learning_curves.png": "Learning curves (train and validation loss per epoch) of the full heads.",
    "vce_top_emotion_confusion.png": "Confusion of top emotions on the VCE test split (best run by top-3 accuracy).",
}


def build_report(dataset_dir: str | Path, out: str | Path, inputs: list[Path] | None = None,
                 dataset: str | None = None, perplexity: float = 5.0, simulated: bool | None = None) -> dict:
    """Write metrics.json, report.html, report.md and the PNG plots to ``out``; return the metrics dict."""
    dataset_dir, out = Path(dataset_dir), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    dataset = dataset or dataset_dir.name
    simulated = (dataset == "demo") if simulated is None else simulated
    runs = collect_runs(dataset_dir, inputs)
    by_task: dict[str, list[dict]] = {}
    for r in runs:
        by_task.setdefault(r["task"], []).append(r)

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

    summary = {
        "dataset": dataset, "simulated_labels": simulated,
        "config_hash": fingerprint(sorted(r.get("config_hash", "") for r in runs)),
        "runs": [{k: r.get(k) for k in ("task", "head", "feature_set", "features", "seed", "config_hash", "n",
                                        "val_from_train", "baselines", "fit_s", "settings")}
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
             "split). LDL distances (kl, chebyshev, clark, canberra) are lower-is-better; cosine, intersection "
             "and every accuracy/AP higher-is-better." + (f" Rules: {rules}." if rules else ""))
    md = [f"# evoke report: {dataset}", ""]
    body = [f"<h1>evoke report: {html.escape(dataset)}</h1>"]
    if simulated:
        md += [f"> **{SIMULATION_NOTE}**", ""]
        body.append(f"<p class='warn'><strong>{html.escape(SIMULATION_NOTE)}</strong></p>")
    md += [intro, "", f"Config hash: `{summary['config_hash']}`", ""]
    body += [f"<p>{html.escape(intro)}</p>", f"<p>Config hash: <code>{summary['config_hash']}</code></p>"]
    for task in sorted(by_task):
        header, rows = _table_rows(task, by_task[task])
        md += [f"## {task}", "", _md_table(header, rows), ""]
        body += [f"<h2>{html.escape(task)}</h2>", _html_table(header, rows)]
    if not runs:
        md += ["No trained runs found.", ""]
        body.append("<p>No trained runs found.</p>")
    md += ["## Plots", ""]
    body.append("<h2>Plots</h2>")
    for p in plots:
        text = PLOT_TEXT.get(p.name, p.name)
        md += [f"![{text}]({p.name})", "", text, ""]
        body.append(f"<figure><img src='{p.name}' alt='{html.escape(text)}'><figcaption>{html.escape(text)}"
                    "</figcaption></figure>")
    if missing:
        md += ["Not drawn: " + "; ".join(missing) + ".", ""]
        body.append(f"<p>Not drawn: {html.escape('; '.join(missing))}.</p>")
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
             "table{border-collapse:collapse;margin:1em 0;font-size:0.85em}"
             "td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}th{background:#eee}"
             ".warn{background:#fff3cd;padding:0.8em;border:1px solid #e0c060}img{max-width:100%}")
    page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>evoke report: {html.escape(dataset)}"
            f"</title><style>{style}</style></head><body>{''.join(body)}</body></html>")
    with atomic_path(out / "report.html") as tmp:
        tmp.write_text(page)
    with atomic_path(out / "report.md") as tmp:
        tmp.write_text("\n".join(md))
    return summary
