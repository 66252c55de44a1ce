"""End-to-end: the COGNIMUSE-like viewer_valence task of the demo with subtitles, through the
workflow (``labels_viewers --subtitles``, then ``train``: the COGNIMUSE single- and multi-task
networks on colour + motion and the subtitle words) and ``evoke predict`` on the raw clips with
an ``.srt`` beside each.

The demo's own subtitles are simulated words (``annotations/subtitles/``, used by
``test_predict_e2e.py``); here the speech clips' known sentences are the subtitles (espeak-ng,
``clips.csv``: ``speech_text`` from ``speech_delay_s``), each clip an SRT with that sentence
as its one cue (its end estimated from espeak's 150 words a minute). Lean: the 14
speech clips the manifest does not cut, 120 px frames, small networks, 3 epochs (285 s on 2
cores shared with a benchmark and other sessions, load 5-9).
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote, urlparse

import polars as pl
import pytest

from evoke.predict.run import predict_videos

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "data" / "demo"
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
CONFIG = """dataset: subs
manifest: manifest.csv
shard_size: 20
frames:
  short_side: 120
features:
  extractors: [colour, motion]
labels:
  annotations: {annotations}
  viewers:
    subtitles: {subtitles}
train:
  tasks: [viewer_valence]
  heads: [full]
  feature_sets: [[colour, motion]]
  viewer_valence: {{units: second}}
  full: {{epochs: 3, batch_size: 16, layers: [32, 16, 8], shared_layers: [32, 16], branch_layers: [16, 8, 4]}}
"""


def _srt_time(t: float) -> str:
    ms = int(round(t * 1000))
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d},{ms % 1000:03d}"


def write_srt(path: Path, text: str, start: float, duration: float, english: bool) -> tuple[float, float]:
    # espeak-ng -s 150: 2.5 English words a second; Mandarin about 4 characters a second
    length = len(text.split()) / 2.5 if english else len(text) / 4.0
    end = min(start + max(length, 1.0), duration)
    path.write_text(f"1\n{_srt_time(start)} --> {_srt_time(end)}\n{text}\n", encoding="utf-8")
    return start, end


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    if not (DEMO / "clips.csv").is_file():
        pytest.fail(f"{DEMO / 'clips.csv'} missing: run scripts/setup.sh (evoke demo build)")
    d = tmp_path_factory.mktemp("cognimuse_e2e")
    clips = pl.read_csv(DEMO / "clips.csv").filter(pl.col("audio").str.starts_with("speech")).select(
        "video_id", "audio", "speech_text", "speech_delay_s", "duration_s")
    manifest = pl.read_csv(DEMO / "manifest.csv", schema_overrides={"start_s": pl.Float64, "end_s": pl.Float64})
    manifest = manifest.filter(pl.col("start_s").is_null() & pl.col("end_s").is_null())  # uncut clips
    rows = clips.join(manifest.select("video_id", "source", "split"), on="video_id")
    (d / "subtitles").mkdir()
    cues = {}
    for r in rows.iter_rows(named=True):
        cues[r["video_id"]] = write_srt(d / "subtitles" / f"{r['video_id']}.srt", r["speech_text"],
                                        r["speech_delay_s"], r["duration_s"], r["audio"] == "speech_en")
    rows.select("video_id", "source", "split").write_csv(d / "manifest.csv")
    subs = json.dumps(sorted(str(p) for p in (d / "subtitles").glob("*.srt")))
    (d / "config.yaml").write_text(CONFIG.format(annotations=DEMO / "annotations", subtitles=subs))
    proc = subprocess.run([SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "--directory", str(d), "--cores", "2",
                           "train"], capture_output=True, text=True)
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return d, rows, cues


def test_subtitle_segments_train_the_cognimuse_networks_and_predict_reads_srt_beside(trained, tmp_path):
    d, rows, cues = trained
    res = d / "results" / "subs"
    seg = pl.read_parquet(res / "labels" / "viewer_valence_segments.parquet")
    # one segment per cue, its words the sentence the clip speaks
    assert seg.height == rows.height
    assert dict(seg.select("video_id", "text").iter_rows()) == dict(rows.select("video_id", "speech_text").iter_rows())
    for head, n_parts in (("full", 4), ("full_multitask", 1)):  # ST: the average viewer + 3 viewers
        run = res / "train" / "viewer_valence" / head / "colour+motion"
        card = json.loads((run / "model" / "model.json").read_text())
        assert [p["kind"] for p in card["parts"]] == ["cognimuse"] * n_parts
        words = json.loads((run / "model" / card["parts"][0]["vocabulary"]).read_text())
        assert "hello" in words and "welcome" in words  # demo_007, demo_035 (train) say "Hello and welcome"
        metrics = json.loads((run / "metrics.json").read_text())
        assert metrics["metrics"]["test"]["n"] > 0
    # the test clips, copied with their .srt beside them: evoke predict gives the run's predictions
    run = res / "train" / "viewer_valence" / "full_multitask" / "colour+motion"
    trained_pred = pl.read_parquet(run / "predictions.parquet").filter(pl.col("split") == "test")
    test = rows.filter(pl.col("split") == "test")
    files = []
    for vid, src in test.select("video_id", "source").iter_rows():
        clip = Path(unquote(urlparse(src).path))
        files.append(tmp_path / "with" / clip.name)
        files[-1].parent.mkdir(exist_ok=True)
        shutil.copy(clip, files[-1])
        shutil.copy(d / "subtitles" / f"{vid}.srt", files[-1].with_suffix(".srt"))
    # one work folder: the clips are extracted once, the second call reads only other subtitles
    with_srt = predict_videos(run, [str(f) for f in files], work=tmp_path / "work")
    j = trained_pred.join(with_srt, on=["video_id", "time_s"], suffix="_p")
    assert j.height == trained_pred.height
    cols = [c for c in trained_pred.columns if c.startswith("pred_")]
    assert max(float((j[c] - j[f"{c}_p"]).abs().max()) for c in cols) < 1e-4
    # without the .srt the seconds the speech overlaps read padding instead, the others are unchanged
    bare = []
    for f in files:
        bare.append(tmp_path / "bare" / f.name)
        bare[-1].parent.mkdir(exist_ok=True)
        shutil.copy(f, bare[-1])
    without = predict_videos(run, [str(f) for f in bare], work=tmp_path / "work").join(
        with_srt, on=["video_id", "time_s"], suffix="_s")
    spoken = pl.struct("video_id", "time_s").map_elements(
        lambda r: cues[r["video_id"]][0] < r["time_s"] + 1 and cues[r["video_id"]][1] > r["time_s"],
        return_dtype=pl.Boolean)
    without = without.with_columns(spoken.alias("spoken"))
    diff = (without["pred_average"] - without["pred_average_s"]).abs()
    assert float(diff.filter(~without["spoken"]).max()) < 1e-6
    assert float(diff.filter(without["spoken"]).max()) > 1e-6
