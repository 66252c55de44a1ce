"""The label-table schemas behind ``labels.tables`` and the liris_accede task."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml

from evoke.datasets import DatasetError, run_import
from evoke.datasets.tables import adopt_table, check_table
from evoke.tasks import get_task
from evoke.tasks.base import TaskData, Units
from evoke.tasks.liris_accede import fit_regression_model

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "datasets"


@pytest.fixture
def vce_table(tmp_path) -> Path:
    src = tmp_path / "vce"
    shutil.copytree(FIXTURES / "vce", src)
    run_import("vce", src, tmp_path / "out", check_videos=False)
    return tmp_path / "out" / "labels" / "vce.parquet"


def test_a_table_off_its_schema_is_named_with_the_column(vce_table, tmp_path):
    table = pl.read_parquet(vce_table)
    check_table("vce", table, vce_table)
    with pytest.raises(DatasetError, match=r"x\.parquet: not a vce label table: no column 'p_joy'"):
        check_table("vce", table.drop("p_joy"), "x.parquet")
    with pytest.raises(DatasetError, match=r"column 'n_annotators' is Int64, not Int32"):
        check_table("vce", table.with_columns(pl.col("n_annotators").cast(pl.Int64)), "x.parquet")
    with pytest.raises(DatasetError, match="no label table named 'vcee'"):
        check_table("vcee", table, "x.parquet")
    eev = pl.DataFrame({"video_id": ["a"], "split": ["train"], "time_s": [0.0], "n_samples": [3]},
                       schema_overrides={"n_samples": pl.Int32})
    with pytest.raises(DatasetError, match="none of the columns amusement"):
        check_table("eev", eev, "e.parquet")
    check_table("eev", eev.with_columns(pl.lit(1, dtype=pl.Int8).alias("awe")), "e.parquet")


def test_adopt_copies_a_valid_table_and_the_cli_refuses_a_bad_one(vce_table, tmp_path):
    out = tmp_path / "results" / "labels" / "vce.parquet"
    assert adopt_table("vce", vce_table, out) == 4  # no video check: 00002 stays
    assert pl.read_parquet(out).equals(pl.read_parquet(vce_table))
    bad = tmp_path / "bad.parquet"
    pl.read_parquet(vce_table).drop("top1").write_parquet(bad)
    proc = subprocess.run([sys.executable, "-m", "evoke", "tables", "check", "vce", str(bad), "--out",
                           str(tmp_path / "o.parquet")], capture_output=True, text=True)
    assert proc.returncode == 2 and f"{bad}: not a vce label table: no column 'top1'" in proc.stderr
    assert not (tmp_path / "o.parquet").exists()


# ----------------------------------------------------------------------------- liris_accede task


def test_liris_accede_task_loads_the_imported_table_with_its_splits(tmp_path):
    src = tmp_path / "liris"
    shutil.copytree(FIXTURES / "liris_accede", src)
    run_import("liris-accede", src, tmp_path / "out", check_videos=False)
    task = get_task("liris_accede")()
    data = task.load(tmp_path, {"liris_accede": tmp_path / "out" / "labels" / "liris_accede.parquet"})
    assert data.target_names == ["valence", "arousal"] and data.counts() == {"train": 2, "val": 1, "test": 2}
    assert data.splits["train"].video_id == ["ACCEDE00000", "ACCEDE00001"]
    assert data.splits["train"].y.tolist() == [[3.012345, 1.654321], [1.402, 3.98]]


def test_liris_accede_metrics_are_mse_and_pearson_per_target():
    rng = np.random.default_rng(0)
    y = rng.normal(3, 0.5, (40, 2))
    pred = y + rng.normal(0, 0.3, (40, 2))
    units = Units([f"v{i}" for i in range(40)], None, y)
    task = get_task("liris_accede")()
    data = TaskData({"train": units, "val": units, "test": units}, ["valence", "arousal"])
    m = task.evaluate(pred, units, data)
    for k, t in enumerate(("valence", "arousal")):
        assert m[f"{t}_mse"] == pytest.approx(np.mean((pred[:, k] - y[:, k]) ** 2))
        assert m[f"{t}_pearson"] == pytest.approx(np.corrcoef(pred[:, k], y[:, k])[0, 1])
    base = task.baselines(data)["train_mean"]
    assert base["valence_mse"] == pytest.approx(np.var(y[:, 0])) and np.isnan(base["valence_pearson"])


@pytest.mark.parametrize("head", ["linear", "lightgbm"])
def test_liris_accede_regressors_find_a_planted_signal(head, tmp_path):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(300, 6))
    Y = np.stack([X[:, 0] + 0.5 * X[:, 1], -X[:, 2]], 1) + rng.normal(0, 0.1, (300, 2))
    model, _ = fit_regression_model(head, X[:200], Y[:200], seed=0, params={})
    pred = model.predict(X[200:])
    # the saved model predicts the same numbers after a round trip through its files
    from evoke.heads.light import load_light_model

    np.testing.assert_allclose(load_light_model(tmp_path, model.save(tmp_path, "part0")).predict(X[200:]), pred,
                               rtol=1e-12, atol=1e-12)
    for k in range(2):
        r = np.corrcoef(pred[:, k], Y[200:, k])[0, 1]
        assert r > (0.95 if head == "linear" else 0.8)
        assert np.mean((pred[:, k] - Y[200:, k]) ** 2) < 0.5 * np.var(Y[200:, k])


def test_a_table_in_labels_tables_replaces_its_builder(vce_table, tmp_path):
    """With the demo's raw annotations configured too, the given vce table wins (dry run of the
    labels rules, as tests/labels/test_labels_workflow.py runs them)."""
    repo = Path(__file__).resolve().parents[2]
    if not (repo / "data" / "demo" / "annotations" / "vce_responses.csv").is_file():
        pytest.skip("demo not built (scripts/setup.sh)")
    wd = tmp_path / "wd"
    wd.mkdir()
    (wd / "data").symlink_to(repo / "data")
    from evoke.config import merge
    from evoke.demo import demo_config

    # the demo's config (raw annotations and all) over the repository's
    config = merge(yaml.safe_load((repo / "config.yaml").read_text()), demo_config(repo / "data" / "demo"))
    config["labels"]["tables"] = {"vce": str(vce_table)}
    (wd / "config.yaml").write_text(yaml.safe_dump(config))
    rules = repo / "workflow" / "rules"
    (wd / "Snakefile").write_text('configfile: "config.yaml"\n' + "".join(
        f'include: "{rules / n}"\n' for n in ("common.smk", "ingest.smk", "labels.smk")))
    r = subprocess.run([str(Path(sys.executable).with_name("snakemake")), "labels", "-n"], cwd=wd,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "rule labels_table:" in r.stdout and "rule labels_vce:" not in r.stdout
    assert "rule labels_v2v_votes:" in r.stdout and "rule labels_v2v_sample:" in r.stdout


def test_imported_vce_and_v2v_tables_have_the_builders_exact_schemas(vce_table, tmp_path):
    """Column names, order and types as the labels stage's own builders write them (run here on
    a few raw responses and votes)."""
    from evoke.labels.v2v import v2v_pairs
    from evoke.labels.vce import aggregate_vce

    responses = pl.DataFrame({"annotator_id": ["a", "b", "a", "b"], "video_id": ["v1", "v1", "v2", "v2"],
                              "emotion": ["joy", "awe", "fear", "fear"], "intensity": [5.0, 7.0, 9.0, 3.0]})
    built = aggregate_vce(responses.with_columns(pl.lit(False).alias("relies_on_audio"))).table
    assert pl.read_parquet(vce_table).schema == built.schema
    votes = pl.DataFrame({"annotator_id": [f"a{i}" for i in range(9)], "video_a": ["x"] * 9, "video_b": ["y"] * 9,
                          "choice": ["strong_b"] * 9})
    src = tmp_path / "v2v"
    shutil.copytree(FIXTURES / "v2v", src)
    run_import("v2v", src, tmp_path / "v2v_out", check_videos=False)
    imported = pl.read_parquet(tmp_path / "v2v_out" / "labels" / "v2v_pairs.parquet")
    assert imported.schema == v2v_pairs(votes).table.schema


@pytest.mark.parametrize("head", ["linear", "lightgbm", "full"])
def test_liris_accede_saved_models_predict_what_training_predicted(head, tmp_path):
    """The model each head saves under model/ (what evoke predict loads) gives the run's own test
    predictions: for the full head, with the target scale folded into its output layer."""
    from evoke.heads.data import FeatureSet
    from evoke.heads.synthetic import write_synthetic_dataset
    from evoke.predict.model import load_model
    from evoke.tasks import run_task

    write_synthetic_dataset(tmp_path / "syn", n_videos=30, seconds=(5, 7), seed=0, tables=("liris_accede",))
    settings = {"seed": 0, "full": {"epochs": 2, "gru_hidden": 8, "moe_dim": 8, "n_experts": 2, "seq_len": 8},
                "lightgbm": {"n_estimators": 20}}
    run_task("liris_accede", head, ["colour", "motion"], tmp_path / "syn", tmp_path / "run", settings)
    preds = pl.read_parquet(tmp_path / "run" / "predictions.parquet").filter(pl.col("split") == "test")
    _, model = load_model(tmp_path / "run")
    feats = FeatureSet.load(tmp_path / "syn", ["colour", "motion"])
    vids = preds["video_id"].to_list()
    if head == "full":  # the raw outputs (mse's link is the identity), read without HeadModel.predict
        from evoke.heads.full import _Units, predict_raw

        again = predict_raw(model.parts[0][1].net, _Units(feats, vids, None, None, None, model.seq_len))
    else:
        again = model.predict(feats, vids, None)
    np.testing.assert_allclose(again, preds.select("pred_valence", "pred_arousal").to_numpy(), rtol=1e-4, atol=1e-5)
    assert 2.0 < float(np.mean(again)) < 4.0  # the released 1-5 scale, not standardised units
