"""End to end: a dataset in its released format -> ``evoke import`` -> the whole workflow on the result.

Run as a user runs it: in a working directory holding the repository's
``config.yaml`` (the demo's), ``snakemake --configfile DIR/config.yaml`` merges
the imported config over it. Videos are tiny clips cut with ffmpeg from
Debian's opencv-doc samples. DEAP's videos are on YouTube, which tests cannot
reach: the imported manifest's sources are checked to be the released YouTube
links, then pointed at local clips (the clipping to the 60-s highlight stays).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
import yaml

from conftest import REPO, VTEST, ffmpeg, require_media
from dataset_writers import write_deap, write_liris_accede, write_vce

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
                           full={"epochs": 2, "hidden": 8, "moe_dim": 8, "n_experts": 2, "batch_size": 8})
    config_path.write_text(yaml.safe_dump(config))


def run_workflow(workdir: Path, configfile: Path) -> None:
    workdir.mkdir()
    shutil.copy(REPO / "config.yaml", workdir / "config.yaml")  # as at the repository root
    proc = subprocess.run([SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
                           "--cores", "2", "--configfile", str(configfile)], capture_output=True, text=True)
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"


def check_trained(res: Path, task: str, heads: list[str], table: str, imported: Path) -> None:
    for head in heads:
        assert (res / "train" / task / head / "colour+motion" / "metrics.json").is_file(), head
    assert (res / "report" / "report.html").is_file()
    # the imported table went in through labels.tables, checked and unchanged; no builder ran
    assert pl.read_parquet(res / "labels" / f"{table}.parquet").equals(pl.read_parquet(imported))
    assert (res / "logs" / "labels" / f"table_{table}.log").is_file()
    assert sorted(p.name for p in (res / "logs" / "labels").iterdir()) == [f"table_{table}.log"]


def test_vce_release_trains_end_to_end(clips, tmp_path):
    ids = [f"{i:05d}" for i in range(9)]
    write_vce(tmp_path / "vce", {v: clips[f"short{i}"] for i, v in enumerate(ids[:6])},
              {v: clips[f"short{i + 6}"] for i, v in enumerate(ids[6:])})
    out = tmp_path / "vce_in"
    evoke("import", "vce", str(tmp_path / "vce"), "--out", str(out))
    lean(out / "config.yaml", ["linear"])
    run_workflow(tmp_path / "wd", out / "config.yaml")
    res = tmp_path / "wd" / "results" / "vce"
    check_trained(res, "vce", ["linear"], "vce", out / "labels" / "vce.parquet")
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
    check_trained(res, "viewer_valence", heads + ["full_multitask"], "viewer_valence",
                  out / "labels" / "viewer_valence.parquet")
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
    check_trained(res, "liris_accede", heads, "liris_accede", out / "labels" / "liris_accede.parquet")
    rec = json.loads((res / "train" / "liris_accede" / "full" / "colour+motion" / "metrics.json").read_text())
    assert rec["n"] == {"train": 4, "val": 2, "test": 3}
    assert set(rec["metrics"]["test"]) >= {"valence_mse", "valence_pearson", "arousal_mse", "arousal_pearson"}
    assert "train_mean" in rec["baselines"]
