"""The COGNIMUSE multi-task protocol of viewer_valence against an independent NumPy computation.

Hayat et al. (2021) evaluate per segment over leave-one-movie-out folds, average the
accuracy over the folds, and report a "Mean" over all 8 columns (7 viewers and the
average viewer) beside Random, always-Positive and always-Negative. The paper's per-column
values of those baselines could not be found here (only its abstract is reachable), so
the baselines are checked against a re-computation from the label table instead.
"""

import json

import numpy as np
import polars as pl
import pytest

from evoke.tasks import run_task

from .conftest import FAST, FEATURES


@pytest.fixture
def films(syn_dir, tmp_path):
    """The synthetic dataset with a ``film`` column (4 films) in its segments table."""
    d = tmp_path / "films"
    d.mkdir()
    for sub in ("features", "ingest"):
        (d / sub).symlink_to(syn_dir / sub)
    (d / "labels").mkdir()
    for f in (syn_dir / "labels").iterdir():
        (d / "labels" / f.name).symlink_to(f)
    seg = pl.read_parquet(syn_dir / "labels" / "viewer_valence_segments.parquet")
    film = {v: f"film{i % 4}" for i, v in enumerate(sorted(seg["video_id"].unique()))}
    (d / "labels" / "viewer_valence_segments.parquet").unlink()
    seg.with_columns(pl.col("video_id").replace_strict(film).alias("film")).write_parquet(
        d / "labels" / "viewer_valence_segments.parquet")
    return d


def _fold_mean(correct: np.ndarray, labelled: np.ndarray, groups: np.ndarray) -> float:
    return float(np.mean([correct[labelled & (groups == g)].mean() for g in np.unique(groups)
                          if (labelled & (groups == g)).any()]))


def test_leave_one_film_out_folds_and_the_eight_column_mean(films, tmp_path):
    settings = FAST | {"viewer_valence": {"units": "segment", "folds": "film"}}
    rec = run_task("viewer_valence", "linear", FEATURES, films, tmp_path / "run", settings)
    seg = pl.read_parquet(films / "labels" / "viewer_valence_segments.parquet")
    pred = pl.read_parquet(tmp_path / "run" / "predictions.parquet")
    # every segment is predicted once, by the fit that did not see its film
    assert pred.height == seg.height and set(pred["split"]) == {"test"}
    folds = rec["info"]["folds"]
    assert sorted(folds) == ["film0", "film1", "film2", "film3"]
    assert sum(f["n"]["test"] for f in folds.values()) == seg.height
    for f in folds.values():
        assert f["n"]["train"] + f["n"]["val"] + f["n"]["test"] == seg.height
    # accuracy per column = mean over the folds of each fold's accuracy, recomputed with NumPy
    joined = pred.join(seg, left_on=["video_id", "time_s"],
                       right_on=["video_id", pl.max_horizontal(pl.col("start_s").floor(), pl.col("end_s").ceil() - 1)])
    assert joined.height == seg.height
    groups = joined["film"].to_numpy()
    test = rec["metrics"]["test"]
    cols = {"average": "valence_bin", "a": "valence_bin__a", "b": "valence_bin__b"}
    want = {}
    for name, col in cols.items():
        y = joined[col].to_numpy().astype(float)
        labelled = ~np.isnan(y)
        correct = (joined[f"pred_{name}"].to_numpy() >= 0.5) == (y >= 0.5)
        want[name] = _fold_mean(correct, labelled, groups)
        assert test["accuracy"][name] == pytest.approx(want[name], abs=1e-12)
        assert len(test["accuracy_per_fold"][name]) == 4
    assert test["mean_accuracy"] == pytest.approx(np.mean(list(want.values())))  # the paper's "Mean"
    assert test["mean_viewer_accuracy"] == pytest.approx((want["a"] + want["b"]) / 2)
    assert test["n_folds"] == 4

    # baselines on the same units: always-Positive is each column's positive share per fold
    base = rec["baselines"]
    for name, col in cols.items():
        y = joined[col].to_numpy().astype(float)
        labelled = ~np.isnan(y)
        pos = _fold_mean(y >= 0.5, labelled, groups)
        assert base["always_positive"]["accuracy"][name] == pytest.approx(pos, abs=1e-12)
        assert base["always_negative"]["accuracy"][name] == pytest.approx(_fold_mean(y < 0.5, labelled, groups))
        assert base["random"]["accuracy"][name] == 0.5
    for b in ("always_positive", "always_negative", "majority_class"):
        assert base[b]["mean_accuracy"] == pytest.approx(np.mean(list(base[b]["accuracy"].values())))
    assert base["random"]["mean_accuracy"] == 0.5
    json.dumps(rec)  # the record is plain JSON


def test_segment_and_second_units(syn_dir, tmp_path):
    seg = run_task("viewer_valence", "lightgbm", FEATURES, syn_dir, tmp_path / "seg", FAST)
    sec = run_task("viewer_valence", "lightgbm", FEATURES, syn_dir, tmp_path / "sec",
                   FAST | {"viewer_valence": {"units": "second"}})
    n_seg = pl.read_parquet(syn_dir / "labels" / "viewer_valence_segments.parquet").height
    n_sec = pl.read_parquet(syn_dir / "labels" / "viewer_valence.parquet").height
    assert sum(seg["n"].values()) == n_seg and sum(sec["n"].values()) == n_sec
    for rec in (seg, sec):
        assert {"random", "always_positive", "always_negative", "majority_class"} <= set(rec["baselines"])
        assert rec["metrics"]["test"]["mean_accuracy"] > rec["baselines"]["majority_class"]["mean_accuracy"]


def test_bad_protocol_settings(syn_dir, tmp_path):
    from evoke.tasks.base import TaskError

    with pytest.raises(TaskError, match="units must be"):
        run_task("viewer_valence", "linear", FEATURES, syn_dir, tmp_path, FAST | {"viewer_valence": {"units": "x"}})
    with pytest.raises(TaskError, match="folds column 'film'"):
        run_task("viewer_valence", "linear", FEATURES, syn_dir, tmp_path,
                 FAST | {"viewer_valence": {"folds": "film"}})


@pytest.mark.slow  # about 2 min on 2 shared cores: 7 half-hour films at 25 Hz
def test_cognimuse_leave_one_film_out_baselines_on_the_real_annotations(tmp_path):
    """Dev data (skipped without ../shared/data): the 7 COGNIMUSE films' intended valence per
    subtitle cue, 7 leave-one-film-out folds. always-Positive per fold is the film's share of
    segments whose mean valence is >= 0, re-computed here from the raw .dat and .srt files."""
    import os
    import re
    from pathlib import Path

    from evoke.labels.viewers import ContinuousBuilder, ContinuousConfig
    from evoke.tasks.viewer_valence import ViewerValenceTask

    shared = Path(os.environ.get("EVOKE_SHARED_DATA", Path(__file__).resolve().parents[3] / "shared" / "data"))
    films = ["BMI", "CHI", "CRA", "DEP", "FNE", "GLA", "LOR"]
    dats = [shared / "continuous" / f"{f}_intended_1.dat" for f in films]
    if not all(p.is_file() for p in dats):
        pytest.skip(f"{shared}/continuous not available (dev data beside the project)")
    srts = [shared / "continuous" / f"{f}_subtitle.srt" for f in films]
    res = ContinuousBuilder(ContinuousConfig(dat_columns=("valence", "arousal"))).run(ratings=dats, subtitles=srts)
    seg = res.extra["segments"]
    (tmp_path / "labels").mkdir()
    seg.write_parquet(tmp_path / "labels" / "viewer_valence_segments.parquet")
    task = ViewerValenceTask({"viewer_valence": {"folds": "video_id"}})
    data = task.load(tmp_path, task.label_paths(tmp_path))
    assert data.extra["groups"] == films
    base = task.baselines(data)

    def cues(path):
        t = r"(\d+):(\d+):(\d+)[,.](\d+)"
        out = []
        for m in re.finditer(t + r"\s*-->\s*" + t, path.read_text(encoding="utf-8", errors="replace")):
            g = [int(x) for x in m.groups()]
            out.append((g[0] * 3600 + g[1] * 60 + g[2] + g[3] / 1000, g[4] * 3600 + g[5] * 60 + g[6] + g[7] / 1000))
        return out

    shares = []
    for dat, srt in zip(dats, srts):
        a = np.loadtxt(dat)
        pos = []
        for start, end in cues(srt):
            v = a[(a[:, 0] >= start) & (a[:, 0] < end), 1]
            if v.size:
                pos.append(v.mean() >= 0)
        shares.append(np.mean(pos))
    got = base["always_positive"]["accuracy"]["average"]
    assert got == pytest.approx(np.mean(shares), abs=1e-9)
    assert base["always_negative"]["accuracy"]["average"] == pytest.approx(1 - np.mean(shares), abs=1e-9)
    assert base["always_positive"]["mean_accuracy"] == pytest.approx(
        np.mean(list(base["always_positive"]["accuracy"].values())))
