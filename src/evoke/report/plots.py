"""The report's plots: PNG files drawn with matplotlib (Agg), one function per plot.

Every legend sits outside the axes (a figure legend in a margin that constrained
layout reserves), so it covers no data, tick label or title; learning curves name
the loss they plot and mark the epoch whose weights the run kept; per-class AP
says "no positives in test" where a class has none; the confusion matrix has a
colour bar.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
from matplotlib.ticker import MaxNLocator

from evoke.store import atomic_path


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
    fig, ax = plt.subplots(figsize=(5, 3.2), layout="constrained")
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
    fig, ax = plt.subplots(figsize=(7, 4.5), layout="constrained")
    names, counts = np.unique(top, return_counts=True)
    shown = names[np.argsort(-counts)][:10]
    cmap = plt.get_cmap("tab10")
    for k, name in enumerate(shown):
        m = top == name
        ax.scatter(emb[m, 0], emb[m, 1], s=14, color=cmap(k), label=name)
    rest = ~np.isin(top, shown)
    if rest.any():
        ax.scatter(emb[rest, 0], emb[rest, 1], s=10, color="lightgrey", label="other")
    fig.legend(fontsize=7, loc="outside right upper", markerscale=1.2, title="top emotion", title_fontsize=7)
    ax.set_title("t-SNE of the VCE label distributions, coloured by top emotion")
    ax.set_xticks([]), ax.set_yticks([])
    return _save(fig, out / "label_tsne.png")


def plot_coefficients(coefs: dict[str, float], out: Path) -> Path:
    plt = _plt()
    names = sorted(coefs, key=coefs.get)
    fig, ax = plt.subplots(figsize=(5, 0.22 * len(names) + 1), layout="constrained")
    ax.barh(names, [coefs[n] for n in names], color=["#cc6677" if coefs[n] < 0 else "#117733" for n in names])
    ax.axvline(0, color="black", lw=0.8)
    ax.set_xlabel("logistic-regression coefficient (more pleasant ->)")
    ax.set_title("Emotion to pleasantness (v2v_from_emotions)")
    ax.tick_params(axis="y", labelsize=7)
    return _save(fig, out / "emotion_pleasantness_coefficients.png")


def plot_per_class_ap(runs: list[dict], out: Path) -> Path | None:
    """Bars of each EEV run's test AP per expression, the class prior's as a tick; a class
    without a positive in the test split (AP undefined for every run) says so on the plot."""
    runs = [r for r in runs if r["metrics"].get("test", {}).get("per_class_ap")]
    if not runs:
        return None
    plt = _plt()
    classes = list(runs[0]["metrics"]["test"]["per_class_ap"])
    fig, ax = plt.subplots(figsize=(max(6, 0.45 * len(classes)) + 2, 3.5), layout="constrained")
    width = 0.8 / len(runs)
    x = np.arange(len(classes))
    for k, r in enumerate(runs):
        ap = [r["metrics"]["test"]["per_class_ap"].get(c) for c in classes]
        ap = [np.nan if a is None else a for a in ap]
        ax.bar(x + k * width, ap, width, label=f"{r['head']} ({r['feature_set']})")
    base = next((r["baselines"].get("class_prior", {}).get("per_class_ap") for r in runs), None)
    if base:
        ax.scatter(x + 0.4 - width / 2, [np.nan if base.get(c) is None else base[c] for c in classes],
                   marker="_", s=200, color="black", label="class prior", zorder=3)
    for i, c in enumerate(classes):
        if all(r["metrics"]["test"]["per_class_ap"].get(c) is None for r in runs):
            ax.text(x[i] + 0.4 - width / 2, 0.02, "no positives in test", rotation=90, ha="center", va="bottom",
                    fontsize=6, color="#555555")
    ax.set_ylim(0, 1.05)
    ax.set_xticks(x + 0.4 - width / 2, classes, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("AP (test)")
    ax.set_title("EEV: average precision per expression")
    fig.legend(fontsize=7, loc="outside right upper")
    return _save(fig, out / "eev_per_class_ap.png")


def no_positive_classes(runs: list[dict]) -> list[str]:
    """The EEV classes without a positive in the test split (AP undefined in every run)."""
    runs = [r for r in runs if r["metrics"].get("test", {}).get("per_class_ap")]
    if not runs:
        return []
    return [c for c in runs[0]["metrics"]["test"]["per_class_ap"]
            if all(r["metrics"]["test"]["per_class_ap"].get(c) is None for r in runs)]


def _histories(r: dict) -> dict[str, list[dict]]:
    h = r.get("info", {}).get("history")
    if isinstance(h, list):
        return {"": h} if h else {}
    if isinstance(h, dict):
        return {k: v for k, v in h.items() if v}
    return {}


LOSS_TEXT = {
    "l1_softmax": "L1 to the distribution (softmax output)",
    "l1_normalise": "L1 to the distribution (normalised output)",
    "kl_clamp_softmax": "KL to the distribution (clamped, softmaxed output)",
    "bce_mean": "binary cross-entropy (mean)",
    "bce_sum": "binary cross-entropy (sum)",
    "pairwise_bce": "pairwise BCE on sigmoid(f(more) - f(less))",
    "mse": "mean squared error (standardised targets)",
}


def run_loss(r: dict) -> str:
    """The loss a full-head run trained with: as its model card records it (``model/model.json``),
    else as its settings resolve (``full.loss``, else the task's paper default)."""
    import json

    from evoke import EvokeError
    from evoke.heads.full import FullConfig, resolve_loss
    from evoke.tasks import get_task

    card = Path(r.get("dir", "")) / "model" / "model.json"
    if card.exists():
        loss = next((p["loss"] for p in json.loads(card.read_text()).get("parts", []) if p.get("loss")), None)
        if loss:
            return loss
    task = get_task(r["task"])
    default = task.full_loss or ("pairwise_bce" if "pairs" in task.label_files else "")
    full = dict((r.get("settings") or {}).get("full") or {})
    try:
        return resolve_loss(default, FullConfig.for_task(r["task"], full))
    except EvokeError:  # settings this version rejects: the name only labels the plot, keep the recorded one
        return full.get("loss") or default or "loss"


def chosen_epoch(history: list[dict]) -> int:
    """The epoch whose weights the run kept: the first with the lowest validation loss
    (:func:`evoke.heads.train.train_model` saves ``best.pt`` when ``val_loss < best``)."""
    best, epoch = np.inf, history[0]["epoch"]
    for e in history:
        if e["val_loss"] < best:
            best, epoch = e["val_loss"], e["epoch"]
    return epoch


def plot_learning_curves(runs: list[dict], out: Path) -> Path | None:
    curves = [(r, name, h) for r in runs for name, h in _histories(r).items()]
    if not curves:
        return None
    plt = _plt()
    n = len(curves)
    cols = min(3, n)
    rows_ = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows_, cols, figsize=(4 * cols, 2.9 * rows_ + 0.6), squeeze=False, layout="constrained")
    for ax, (r, name, h) in zip(axes.ravel(), curves):
        ep = [e["epoch"] for e in h]
        ax.plot(ep, [e["train_loss"] for e in h], color="#4477aa", marker=".", label="train loss")
        ax.plot(ep, [e["val_loss"] for e in h], color="#ee6677", marker=".", label="validation loss")
        best = chosen_epoch(h)
        ax.axvline(best, color="#228833", ls="--", lw=1, label="chosen epoch (lowest validation loss)")
        ax.plot([best], [next(e["val_loss"] for e in h if e["epoch"] == best)], "o", color="#228833", ms=5)
        ax.set_title(f"{r['task']} {r['head']} {name}\n({r['feature_set']}), chosen epoch {best}"
                     .replace("  ", " "), fontsize=8)
        ax.set_xlabel("epoch", fontsize=7)
        ax.set_ylabel(LOSS_TEXT.get(run_loss(r), run_loss(r)), fontsize=6)
        ax.tick_params(labelsize=7)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    handles, labels = axes.ravel()[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=3, fontsize=7)
    fig.suptitle("Learning curves of the full heads")
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
    fig, ax = plt.subplots(figsize=(0.45 * len(used) + 3.3, 0.45 * len(used) + 2), layout="constrained")
    im = ax.imshow(M, cmap="Blues", vmin=0)
    fig.colorbar(im, ax=ax, label="test videos", shrink=0.8, ticks=MaxNLocator(integer=True))
    for i in range(len(used)):
        for j in range(len(used)):
            if M[i, j]:
                ax.text(j, i, str(M[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if M[i, j] > M.max() / 2 else "black")
    ax.set_xticks(range(len(used)), used, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(used)), used, fontsize=7)
    ax.set_xlabel("predicted top emotion")
    ax.set_ylabel("label top emotion")
    ax.set_title(f"VCE top emotions, test ({best['head']}, {best['feature_set']})", fontsize=9)
    return _save(fig, out / "vce_top_emotion_confusion.png")

