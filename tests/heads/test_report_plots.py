"""The report's plots as a person sees them: legends that cover nothing, learning curves that
name their loss and mark the epoch kept, "no positives in test" where an EEV class has none, a
colour bar on the confusion matrix. Figures are checked as drawn, just before they are saved."""

import json

import numpy as np
import polars as pl
import pytest

from evoke.report import build_report, plots

from .conftest import FAST


@pytest.fixture
def drawn(monkeypatch):
    """Every figure the report saves: ``{file name: facts measured on the drawn figure}``."""
    seen = {}
    save = plots._save

    def measuring_save(fig, path):
        fig.canvas.draw()
        r = fig.canvas.get_renderer()
        legends = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend()]
        # what a legend may not cover: any axes with its ticks, labels and title, the figure title
        others = [ax.get_tightbbox(r) for ax in fig.axes if ax.get_visible() and ax.axison]
        others += [fig._suptitle.get_window_extent(r)] if fig._suptitle else []
        seen[path.name] = {
            "fig_legends": len(fig.legends),
            "overlaps": [(i, j) for i, lg in enumerate(legends) for j, bb in enumerate(others)
                         if lg.get_window_extent(r).overlaps(bb)],
            "axes": fig.axes, "texts": [t.get_text() for ax in fig.axes for t in ax.texts],
        }
        return save(fig, path)

    monkeypatch.setattr(plots, "_save", measuring_save)
    return seen


def test_plots_of_the_report(report_runs, drawn, tmp_path):
    d, _ = report_runs
    build_report(d, tmp_path / "report", perplexity=3, bootstrap=0)
    assert set(drawn) == {"emodiversity.png", "label_tsne.png", "emotion_pleasantness_coefficients.png",
                          "eev_per_class_ap.png", "learning_curves.png", "vce_top_emotion_confusion.png"}
    for name, facts in drawn.items():
        assert facts["overlaps"] == [], name
    for name in ("label_tsne.png", "eev_per_class_ap.png", "learning_curves.png"):
        assert drawn[name]["fig_legends"] == 1 and not any(ax.get_legend() for ax in drawn[name]["axes"]), name

    # learning curves: the loss the run trained with (its model card's) on the y axis, the kept
    # epoch (the first lowest validation loss) marked
    run = json.loads((d / "train" / "vce" / "full" / "colour" / "metrics.json").read_text())
    card = json.loads((d / "train" / "vce" / "full" / "colour" / "model" / "model.json").read_text())
    history = run["info"]["history"]
    kept = history[int(np.argmin([e["val_loss"] for e in history]))]["epoch"]
    (ax,) = [a for a in drawn["learning_curves.png"]["axes"] if a.axison]
    assert ax.get_ylabel() == plots.LOSS_TEXT[card["parts"][0]["loss"]]
    assert [line.get_label() for line in ax.get_lines()][:3] == ["train loss", "validation loss",
                                                                  "chosen epoch (lowest validation loss)"]
    assert list(ax.get_lines()[2].get_xdata()) == [kept, kept] and f"chosen epoch {kept}" in ax.get_title()

    # the confusion matrix counts every test video once and has its colour bar
    axes = drawn["vce_top_emotion_confusion.png"]["axes"]
    assert len(axes) == 2 and axes[1].get_ylabel() == "test videos"
    n_test = json.loads((d / "train" / "vce" / "linear" / "colour" / "metrics.json").read_text())["n"]["test"]
    assert int(np.asarray(axes[0].get_images()[0].get_array()).sum()) == n_test


def test_an_eev_class_without_test_positives_says_so(report_runs, drawn, tmp_path):
    """awe never occurs in the test split: its AP is undefined (left out of MAP), and the plot and
    the report say "no positives in test" for it and for no other class."""
    from evoke.tasks import run_task

    src, _ = report_runs
    d = tmp_path / "synthetic"
    (d / "labels").mkdir(parents=True)
    for sub in ("features", "ingest"):
        (d / sub).symlink_to(src / sub)
    eev = pl.read_parquet(src / "labels" / "eev.parquet")
    eev = eev.with_columns(pl.when(pl.col("split") == "test").then(0.0).otherwise(pl.col("awe")).alias("awe"))
    assert eev.filter(pl.col("split") != "test")["awe"].sum() > 0
    eev.write_parquet(d / "labels" / "eev.parquet")
    rec = run_task("eev", "lightgbm", ["colour"], d, d / "train" / "eev" / "lightgbm" / "colour", FAST)
    assert rec["metrics"]["test"]["per_class_ap"]["awe"] is None
    summary = build_report(d, d / "report", bootstrap=20)
    texts = drawn["eev_per_class_ap.png"]["texts"]
    assert texts == ["no positives in test"]
    md = (d / "report" / "report.md").read_text()
    assert "EEV classes with no positives in test (AP undefined, left out of MAP): awe." in md
    # resamples stay defined: MAP over the classes that have a positive
    assert summary["runs"][0]["bootstrap"]["defined"]["map"] == 20
