"""End-to-end: ``snakemake train`` on demo clips, then ``evoke predict`` on the raw clip files gives
the training predictions (every head of EEV, per second, VCE, per video, and viewer_valence, per
subtitle segment: the demo's simulated subtitles, ``annotations/subtitles/`` for training and the
``.srt`` beside each clip for predict); the ``predict`` target on a manifest without annotations.

Lean: ten demo clips (none cut by start_s/end_s, so the raw file is what training saw), the
cheap extractors colour and logmel, tiny full heads.
"""

import json
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote, urlparse

import polars as pl
import pytest

from evoke.labels.viewers import read_srt
from evoke.predict.model import read_card
from evoke.predict.run import predict_videos

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "data" / "demo"
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
EVOKE = str(Path(sys.executable).with_name("evoke"))
TRAIN = ["demo_000", "demo_001", "demo_003", "demo_004", "demo_005", "demo_006"]
VAL, TEST = ["demo_017", "demo_024"], ["demo_011", "demo_014"]
UNLABELLED = ["demo_025", "demo_030"]
CONFIG = """dataset: {dataset}
manifest: manifest.csv
shard_size: 20
frames:
  short_side: 120
features:
  extractors: [colour, logmel]
"""
TRAIN_CONFIG = """labels:
  annotations: {annotations}
  vce:
    min_annotator_agreement: 0.2
  viewers:
    subtitles: {subtitles}
train:
  tasks: [vce, eev, viewer_valence]
  heads: [lightgbm, linear, full]
  feature_sets: [[colour, logmel]]
  multitask: false
  lightgbm: {{n_estimators: 40}}
  full: {{epochs: 3, gru_hidden: 16, moe_dim: 16, n_experts: 2, batch_size: 16, seq_len: 12, layers: [32, 16, 8]}}
"""


def snakemake(workdir, *args):
    proc = subprocess.run([SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
                           "--cores", "2", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


def _clips() -> dict[str, Path]:
    if not (DEMO / "manifest.csv").is_file():
        pytest.fail(f"{DEMO / 'manifest.csv'} missing: run scripts/setup.sh (evoke demo build)")
    m = pl.read_csv(DEMO / "manifest.csv")
    return {v: Path(unquote(urlparse(s).path)) for v, s in m.select("video_id", "source").iter_rows()}


def _workdir(d: Path, dataset: str, rows: list[tuple[str, str]], extra: str = "") -> Path:
    d.mkdir(parents=True)
    clips = _clips()
    (d / "manifest.csv").write_text("video_id,source,split\n" + "".join(
        f"{v},{clips[v].as_uri()},{s}\n" for v, s in rows))
    (d / "config.yaml").write_text(CONFIG.format(dataset=dataset) + extra)
    return d


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    rows = [(v, "train") for v in TRAIN] + [(v, "val") for v in VAL] + [(v, "test") for v in TEST]
    subtitles = [DEMO / "annotations" / "subtitles" / f"{v}_subtitle.srt" for v, _ in rows]
    if not all(p.is_file() for p in subtitles):
        pytest.fail(f"{subtitles[0].parent} lacks the demo's subtitles: rebuild it (evoke demo build --force)")
    d = _workdir(tmp_path_factory.mktemp("e2e") / "train", "tiny", rows,
                 TRAIN_CONFIG.format(annotations=DEMO / "annotations", subtitles=json.dumps([str(p) for p in subtitles])))
    snakemake(d, "train")
    return d


def _same(run: Path, predicted: pl.DataFrame) -> None:
    trained = pl.read_parquet(run / "predictions.parquet")
    keys = ["video_id"] + (["time_s"] if "time_s" in trained.columns else [])
    segments = ["segment", "start_s", "end_s"] if read_card(run)["unit"] == "segment" else []
    assert predicted.columns == trained.columns[:1] + segments + trained.columns[1:]
    assert predicted.select(keys).is_duplicated().sum() == 0
    j = trained.join(predicted, on=keys, suffix="_new", how="left")
    assert j.height == trained.height and set(trained["video_id"]) == set(VAL + TEST)
    for c in (c for c in trained.columns if c.startswith("pred_")):
        assert j[f"{c}_new"].null_count() == 0, f"{run}: {c} missing for some trained unit"
        diff = float((j[c] - j[f"{c}_new"]).abs().max())
        assert diff < 1e-4, f"{run}: {c} differs by {diff}"


@pytest.fixture(scope="module")
def predict_work(tmp_path_factory):
    """One ``work`` folder for the in-process predictions of every task: the models share the
    frames and feature settings, so the clips are ingested and extracted once (the CLI's
    predictions, one per task, run without one: each extracts afresh)."""
    return tmp_path_factory.mktemp("predict_work")


@pytest.mark.parametrize("task", ["eev", "vce", "viewer_valence"])
def test_predict_on_raw_clips_reproduces_training(trained, tmp_path, task, predict_work):
    clips = _clips()
    files = [str(clips[v]) for v in VAL + TEST]
    for head in ("lightgbm", "linear", "full"):
        run = trained / "results" / "tiny" / "train" / task / head / "colour+logmel"
        card = read_card(run)
        assert card["frames"]["short_side"] == 120 and card["ingest"]["max_height"] == 720
        assert set(card["extractors"]) == {"colour", "logmel"}
        assert card["unit"] == {"eev": "second", "vce": "video", "viewer_valence": "segment"}[task]
        if head == "lightgbm":  # the command line, with timelines
            out = tmp_path / f"{task}_{head}.parquet"
            proc = subprocess.run([EVOKE, "predict", "--model", str(run), "--video", *files, "--out", str(out),
                                   "--plot", str(tmp_path / "plots")], capture_output=True, text=True)
            assert proc.returncode == 0, proc.stderr[-3000:]
            predicted = pl.read_parquet(out)
            assert sorted(p.stem for p in (tmp_path / "plots").glob("*.png")) == sorted(VAL + TEST)
        else:
            predicted = predict_videos(run, files, work=predict_work)
        _same(run, predicted)
        assert predicted["split"].null_count() == predicted.height  # new files belong to no split
        if task == "viewer_valence":  # one row per cue of the .srt beside each clip, the cue's own times
            assert card["segments"] == {"source": "cues"}
            for v in VAL + TEST:
                cues = read_srt(clips[v].with_suffix(".srt"))
                got = predicted.filter(pl.col("video_id") == v)
                assert got["start_s"].to_list() == cues["start_s"].to_list()[:got.height] and got.height >= 1


def test_predict_target_on_a_manifest_without_annotations(trained, tmp_path):
    runs = trained / "results" / "tiny" / "train"
    models = [runs / "eev" / "linear" / "colour+logmel", runs / "vce" / "full" / "colour+logmel"]
    d = _workdir(tmp_path / "new", "fresh", [(v, "test") for v in UNLABELLED],
                 "predict:\n  models:\n" + "".join(f"    - {m}\n" for m in models))
    snakemake(d, "predict")
    res = d / "results" / "fresh"
    assert not (res / "labels").exists() and not (res / "train").exists()
    eev = pl.read_parquet(res / "predict" / "eev" / "linear" / "colour+logmel.parquet")
    vce = pl.read_parquet(res / "predict" / "vce" / "full" / "colour+logmel.parquet")
    assert sorted(vce["video_id"]) == UNLABELLED and set(eev["video_id"]) == set(UNLABELLED)
    assert eev.height > 2 * 4 and "time_s" in eev.columns and (eev["split"] == "test").all()
    assert abs(vce.select(pl.col("^pred_.*$")).sum_horizontal() - 1).max() < 1e-5  # distributions
    # the same clips through evoke predict --video give the same numbers
    clips = _clips()
    direct = predict_videos(models[1], [str(clips[v]) for v in UNLABELLED])
    j = vce.join(direct, on="video_id", suffix="_v")
    assert max(float((j[c] - j[f"{c}_v"]).abs().max()) for c in vce.columns if c.startswith("pred_")) < 1e-4
    # a features setting the model was not trained with is refused, naming the extractor
    cfg = d / "config.yaml"
    cfg.write_text(cfg.read_text().replace("features:\n", "features:\n  settings:\n    colour: {hue_bins: 12}\n"))
    proc = subprocess.run([SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "--directory", str(d),
                           "--cores", "2", "predict"], capture_output=True, text=True)
    assert proc.returncode != 0
    log = (res / "logs" / "predict" / "vce" / "full" / "colour+logmel.log").read_text()
    assert "extractor colour: the model was trained on features with config hash" in log
