"""End to end: a dataset in its released format -> ``evoke import`` -> the whole workflow on the result.

Run as a user runs it: in a working directory holding the repository's
``config.yaml`` (the demo's), ``snakemake --configfile DIR/config.yaml`` merges
the imported config over it. Videos are tiny clips cut with ffmpeg from
Debian's opencv-doc samples. DEAP's videos are on YouTube, which tests cannot
reach: the imported manifest's sources are checked to be the released YouTube
links, then pointed at local clips (the clipping to the 60-s highlight stays);
EEV's the same way. Each test plants a record its importer must drop and checks
``import.json`` counts it, then that the train stage scored the imported test
split: finite test metrics over as many units as the import put there, and a
prediction for each of them.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
import yaml

from conftest import REPO, VTEST, ffmpeg, require_media
from dataset_writers import write_cognimuse, write_deap, write_eev, write_liris_accede, write_v2v, write_vce

pytestmark = pytest.mark.slow
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    """9 short clips (4 s, 96x72) and 6 long ones (62 s, 64x48), all different footage of vtest.avi."""
    require_media()
    d = tmp_path_factory.mktemp("clips")
    out = {}
    for i in range(9):
        out[f"short{i}"] = d / f"short{i}.mp4"
        ffmpeg("-ss", str(5 * i), "-i", str(VTEST), "-t", "4", "-vf", "scale=96:72", "-c:v", "libx264",
               "-preset", "ultrafast", "-an", str(out[f"short{i}"]))
    for i in range(6):
        out[f"long{i}"] = d / f"long{i}.mp4"
        ffmpeg("-ss", str(2 * i), "-i", str(VTEST), "-t", "62", "-vf", "scale=64:48", "-c:v", "libx264",
               "-preset", "ultrafast", "-an", str(out[f"long{i}"]))
    return out


def evoke(*args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "evoke", *args], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def lean(config_path: Path, heads: list[str]) -> None:
    """The imported config with the test's cheap settings (two CPU extractors, tiny heads)."""
    config = yaml.safe_load(config_path.read_text())
    config["features"]["extractors"] = ["colour", "motion"]
    config["train"].update(feature_sets=[["colour", "motion"]], heads=heads,
                           full={"epochs": 2, "gru_hidden": 8, "moe_dim": 8, "n_experts": 2, "batch_size": 8})
    config_path.write_text(yaml.safe_dump(config))


def run_workflow(workdir: Path, configfile: Path) -> None:
    workdir.mkdir()
    shutil.copy(REPO / "config.yaml", workdir / "config.yaml")  # as at the repository root
    proc = subprocess.run([SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
                           "--cores", "2", "--configfile", str(configfile)], capture_output=True, text=True)
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"


def check_trained(res: Path, task: str, heads: list[str], *imported: Path) -> None:
    for head in heads:
        assert (res / "train" / task / head / "colour+motion" / "metrics.json").is_file(), head
    assert (res / "report" / "report.html").is_file()
    # the imported tables went in through labels.tables, checked and unchanged; no builder ran
    for table in imported:
        assert pl.read_parquet(res / "labels" / table.name).equals(pl.read_parquet(table))
    assert sorted(p.name for p in (res / "logs" / "labels").iterdir()) == sorted(
        f"table_{t.stem}.log" for t in imported)


def scored_run(res: Path, task: str, head: str) -> tuple[dict, pl.DataFrame]:
    """A train run's metrics record (its test metrics finite numbers) and its test predictions."""
    run = res / "train" / task / head / "colour+motion"
    rec = json.loads((run / "metrics.json").read_text())
    scalars = {k: v for k, v in rec["metrics"]["test"].items() if not isinstance(v, dict)}
    assert scalars and all(isinstance(v, (int, float)) and math.isfinite(v) for v in scalars.values()), scalars
    preds = pl.read_parquet(run / "predictions.parquet").filter(pl.col("split") == "test")
    pred_cols = [c for c in preds.columns if c.startswith("pred_")]
    assert pred_cols and preds.select(pl.col(pred_cols).is_finite().all()).row(0) == (True,) * len(pred_cols)
    return rec, preds


def train_one_head(tmp_path: Path, out: Path, task: str, *tables: Path, head: str = "lightgbm"
                   ) -> tuple[dict, pl.DataFrame]:
    """The imported config, lean with one ``head``, through the whole workflow; the scored run."""
    lean(out / "config.yaml", [head])
    run_workflow(tmp_path / "wd", out / "config.yaml")
    res = tmp_path / "wd" / "results" / yaml.safe_load((out / "config.yaml").read_text())["dataset"]
    check_trained(res, task, [head], *tables)
    return scored_run(res, task, head)


def test_vce_release_trains_end_to_end(clips, tmp_path):
    ids = [f"{i:05d}" for i in range(9)]
    write_vce(tmp_path / "vce", {v: clips[f"short{i}"] for i, v in enumerate(ids[:6])},
              {v: clips[f"short{i + 6}"] for i, v in enumerate(ids[6:])})
    out = tmp_path / "vce_in"
    evoke("import", "vce", str(tmp_path / "vce"), "--out", str(out))
    lean(out / "config.yaml", ["linear"])
    run_workflow(tmp_path / "wd", out / "config.yaml")
    res = tmp_path / "wd" / "results" / "vce"
    check_trained(res, "vce", ["linear"], out / "labels" / "vce.parquet")
    rec = json.loads((res / "train" / "vce" / "linear" / "colour+motion" / "metrics.json").read_text())
    assert rec["n"]["test"] == 3 and 0 <= rec["metrics"]["test"]["top3_accuracy"] <= 1


def test_deap_release_trains_the_per_viewer_heads_end_to_end(clips, tmp_path):
    links = {e: f"https://www.youtube.com/watch?v=deapvideo{e:02d}" for e in range(1, 7)}
    write_deap(tmp_path / "deap", {e: (link, 1.0) for e, link in links.items()}, participants=4)
    out = tmp_path / "deap_in"
    evoke("import", "deap", str(tmp_path / "deap"), "--out", str(out))
    manifest = pl.read_csv(out / "manifest.csv")
    assert manifest["source"].to_list() == [links[e] for e in range(1, 7)]
    assert manifest["start_s"].to_list() == [1.0] * 6 and manifest["end_s"].to_list() == [61.0] * 6
    manifest.with_columns(pl.Series("source", [str(clips[f"long{i}"]) for i in range(6)])).write_csv(
        out / "manifest.csv")
    heads = ["lightgbm", "full"]  # full brings the multi-task head (one branch per participant)
    lean(out / "config.yaml", heads)
    run_workflow(tmp_path / "wd", out / "config.yaml")
    res = tmp_path / "wd" / "results" / "deap"
    check_trained(res, "viewer_valence", heads + ["full_multitask"], out / "labels" / "viewer_valence.parquet")
    probe = pl.read_parquet(res / "ingest" / "probe.parquet")
    assert probe["duration_s"].to_list() == pytest.approx([60.0] * 6, abs=0.2)  # cut to the highlight


def test_liris_accede_release_trains_the_regression_end_to_end(clips, tmp_path):
    names = [f"ACCEDE{i:05d}" for i in range(9)]
    sets = [1, 1, 1, 1, 2, 2, 0, 0, 0]
    write_liris_accede(tmp_path / "liris", {n: (s, clips[f"short{i}"]) for i, (n, s) in enumerate(zip(names, sets))})
    out = tmp_path / "liris_in"
    evoke("import", "liris-accede", str(tmp_path / "liris"), "--out", str(out))
    heads = ["linear", "full"]
    lean(out / "config.yaml", heads)
    run_workflow(tmp_path / "wd", out / "config.yaml")
    res = tmp_path / "wd" / "results" / "liris_accede"
    check_trained(res, "liris_accede", heads, out / "labels" / "liris_accede.parquet")
    rec = json.loads((res / "train" / "liris_accede" / "full" / "colour+motion" / "metrics.json").read_text())
    assert rec["n"] == {"train": 4, "val": 2, "test": 3}
    assert set(rec["metrics"]["test"]) >= {"valence_mse", "valence_pearson", "arousal_mse", "arousal_pearson"}
    assert "train_mean" in rec["baselines"]


def test_v2v_release_trains_the_pairwise_ranker_end_to_end(clips, tmp_path):
    train_ids, test_ids = [f"000{10 + i}" for i in range(6)], ["00020", "00021", "00022"]
    videos = {v: clips[f"short{i}"] for i, v in enumerate(train_ids + test_ids)}
    videos |= {"00023": clips["short0"], "00024": None}  # 00024's file is not there
    a, b, c, d, e, f = train_ids
    train_pairs = [[a, b], [b, c], [c, d], [d, e], [e, f], [a, c], [b, d], [c, e], [d, f], [a, f],
                   [a, b]]  # the last one again: duplicate_pair
    test_pairs = [["00020", "00021"], ["00021", "00022"], ["00020", "00022"],
                  [a, "00022"],  # a train video in a test pair: video_in_two_splits
                  ["00023", "00024"]]  # a missing video: the pair goes, and 00023 with it
    write_v2v(tmp_path / "v2v", train_pairs, test_pairs, [["00020", "00021", "00022"]], videos)
    out = tmp_path / "v2v_in"
    evoke("import", "v2v", str(tmp_path / "v2v"), "--out", str(out))
    record = json.loads((out / "import.json").read_text())
    assert {k: record["dropped"]["counts"][k] for k in ("duplicate_pair", "video_in_two_splits",
                                                      "video_file_missing", "comparison_with_missing_video")} \
        == {"duplicate_pair": 1, "video_in_two_splits": 1, "video_file_missing": 1,
            "comparison_with_missing_video": 1}
    assert record["splits"] == {"test": 3, "train": 6}
    rec, preds = train_one_head(tmp_path, out, "v2v", out / "labels" / "v2v_pairs.parquet",
                                out / "labels" / "v2v_lists.parquet")
    assert rec["n"]["test"] == 3 and sorted(preds["video_id"]) == test_ids
    assert rec["n"]["train"] + rec["n"]["val"] >= 6  # the train videos, some of them also in the val pairs
    assert rec["metrics"]["test"]["n_pairs"] == 3 and rec["metrics"]["test"]["n_lists"] == 1
    assert 0 <= rec["metrics"]["test"]["pairwise_accuracy"] <= 1
    assert rec["metrics"]["test"]["listwise_accuracy"] in (0.0, 1.0)


def test_eev_release_trains_the_expressions_end_to_end(clips, tmp_path):
    train = {f"eevTrain{i:03d}": 4.0 for i in range(6)}
    val = {f"eevScore{i:03d}": 4.0 for i in range(3)} | {"eevTrain000": 4.0}  # in two splits: dropped
    write_eev(tmp_path / "eev", {"train": train, "val": val}, test_ids=["eevHeldout1"], active=0.3)
    out = tmp_path / "eev_in"
    evoke("import", "eev", str(tmp_path / "eev"), "--out", str(out))
    record = json.loads((out / "import.json").read_text())
    assert record["dropped"]["counts"]["video_in_two_splits"] == 1
    assert record["splits"] == {"test": 3, "train": 6}  # the released val split is the scored test split
    manifest = pl.read_csv(out / "manifest.csv")
    ids = manifest["video_id"].to_list()
    assert manifest["source"].to_list() == [f"https://www.youtube.com/watch?v={v}" for v in ids]
    manifest.with_columns(pl.Series("source", [str(clips[f"short{i}"]) for i in range(len(ids))])).write_csv(
        out / "manifest.csv")
    rec, preds = train_one_head(tmp_path, out, "eev", out / "labels" / "eev.parquet")
    table = pl.read_parquet(out / "labels" / "eev.parquet")
    test_table = table.filter(pl.col("split") == "test")
    assert rec["n"]["test"] == test_table.height == preds.height  # every labelled second of the test videos
    assert sorted(preds["video_id"].unique()) == sorted(val)[:3]
    assert rec["n"]["train"] + rec["n"]["val"] == table.height - test_table.height
    assert 0 <= rec["metrics"]["test"]["map"] <= 1


def test_cognimuse_release_trains_the_per_viewer_heads_end_to_end(clips, tmp_path):
    films = {"BMI": (clips["long0"], 60.0), "CHI": (clips["long1"], 60.0), "CRA": (clips["long2"], 60.0),
             "DEP": (clips["long3"], 60.0), "FNE": (None, 60.0)}  # FNE's film is not there: dropped
    src = tmp_path / "cognimuse"
    write_cognimuse(src, films)
    with open(src / "BMI" / "emotion" / "experienced_1.dat", "a") as fh:
        fh.write("60.04 0.1\n")  # one value short: malformed_line
    out = tmp_path / "cognimuse_in"
    evoke("import", "cognimuse", str(src), "--out", str(out), "--test-films", "DEP")
    record = json.loads((out / "import.json").read_text())
    assert record["dropped"]["counts"]["video_file_missing"] == 1
    assert record["dropped"]["counts"]["malformed_line"] == 1
    assert record["splits"] == {"test": 1, "train": 3}
    # no subtitles, so no segments: the written config trains on the seconds
    assert yaml.safe_load((out / "config.yaml").read_text())["train"]["viewer_valence"] == {"units": "second"}
    rec, preds = train_one_head(tmp_path, out, "viewer_valence", out / "labels" / "viewer_valence.parquet")
    table = pl.read_parquet(out / "labels" / "viewer_valence.parquet")
    n_test = table.filter(pl.col("split") == "test").height
    assert n_test >= 55 and rec["n"]["test"] == n_test == preds.height  # each second of DEP
    assert set(preds["video_id"]) == {"DEP"}
    assert {"average_viewer_accuracy", "mean_accuracy"} <= set(rec["metrics"]["test"])
