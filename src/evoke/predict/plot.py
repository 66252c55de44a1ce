"""Timelines of predictions: one PNG per video (matplotlib, Agg, as the report draws).

Per-second tasks: the predicted classes over time, one row per class (EEV
expressions, danmaku emotions, the average viewer and each viewer's valence
probability) as a heatmap in [0, 1], with the top class per second marked;
per-segment predictions (``start_s``, ``end_s``: a viewer_valence model trained on
subtitle segments) the same with one box per segment, gaps left blank.
Per-video tasks: the predicted distribution as bars (VCE's 27 emotions,
sorted), or the score (V2V pleasantness) as one bar. Titled with the model
card's task, head and training dataset.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from evoke.report import _plt, _save


def _title(card: dict, video_id: str) -> str:
    return (f"{video_id}: {card['task']} ({card['head']}, {card.get('feature_set', '')}), "
            f"trained on {card.get('training', {}).get('dataset', '?')}")


def plot_timeline(rows: pl.DataFrame, card: dict, out: Path) -> Path:
    """One video's predictions (``rows``: its part of a predictions table) as a PNG at ``out``."""
    plt = _plt()
    names = [c[len("pred_"):] for c in rows.columns if c.startswith("pred_")]
    values = rows.select(f"pred_{n}" for n in names).to_numpy().astype(np.float64)
    vid = rows["video_id"][0]
    if "start_s" in rows.columns and "end_s" in rows.columns:
        fig, ax = _segments(plt, rows, names, values)
    elif "time_s" in rows.columns:
        t = rows["time_s"].to_numpy()
        fig, ax = plt.subplots(figsize=(max(6.0, 0.25 * len(t) + 3), 0.3 * len(names) + 1.8))
        step = float(np.median(np.diff(t))) if len(t) > 1 else 1.0
        im = ax.imshow(values.T, aspect="auto", origin="lower", cmap="magma", vmin=0.0, vmax=1.0,
                       extent=(t[0] - step / 2, t[-1] + step / 2, -0.5, len(names) - 0.5), interpolation="nearest")
        ax.plot(t, values.argmax(1), "o", color="#2ca02c", ms=3, label="top class")
        ax.set_yticks(range(len(names)), names, fontsize=7)
        ax.set_xlabel("time (s)")
        ax.legend(loc="upper right", fontsize=7)
        fig.colorbar(im, ax=ax, fraction=0.03, pad=0.01, label="predicted")
    elif len(names) == 1:
        fig, ax = plt.subplots(figsize=(4, 2.2))
        ax.barh([names[0]], values[0, :1], color="#1f77b4")
        ax.axvline(0, color="k", lw=0.5)
        ax.set_xlabel(f"predicted {names[0]}")
    else:
        order = np.argsort(-values[0])
        fig, ax = plt.subplots(figsize=(7, 0.18 * len(names) + 1.5))
        ax.barh([names[i] for i in order][::-1], values[0, order][::-1], color="#1f77b4")
        ax.tick_params(axis="y", labelsize=7)
        ax.set_xlabel("predicted share")
    ax.set_title(_title(card, vid), fontsize=9)
    return _save(fig, out)


def _segments(plt, rows: pl.DataFrame, names: list[str], values: np.ndarray):
    """Per-segment predictions: each segment a box from ``start_s`` to ``end_s`` per class row,
    coloured as the per-second heatmap; gaps between subtitle cues stay blank."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    start, end = rows["start_s"].to_numpy(), rows["end_s"].to_numpy()
    span = float(end.max() - start.min()) if len(start) else 1.0
    fig, ax = plt.subplots(figsize=(max(6.0, 0.25 * span + 3), 0.3 * len(names) + 1.8))
    cmap, norm = plt.get_cmap("magma"), Normalize(0.0, 1.0)
    for k in range(len(names)):
        ax.barh([k] * len(start), end - start, left=start, height=1.0, color=cmap(norm(values[:, k])),
                edgecolor="none")
    ax.plot((start + end) / 2, values.argmax(1), "o", color="#2ca02c", ms=3, label="top class")
    ax.set_ylim(-0.5, len(names) - 0.5)
    ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.set_xlabel("time (s), one box per segment")
    ax.legend(loc="upper right", fontsize=7)
    fig.colorbar(ScalarMappable(norm, cmap), ax=ax, fraction=0.03, pad=0.01, label="predicted")
    return fig, ax


def plot_timelines(table: pl.DataFrame, card: dict, folder: str | Path) -> list[Path]:
    """One PNG per video of a predictions table: ``folder/{video_id}.png``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for vid in table["video_id"].unique(maintain_order=True).to_list():
        rows = table.filter(pl.col("video_id") == vid)
        if "time_s" in rows.columns:
            rows = rows.sort("start_s" if "start_s" in rows.columns else "time_s")
        out.append(plot_timeline(rows, card, folder / f"{vid}.png"))
    return out
