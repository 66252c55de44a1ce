"""Each importer on small files in its dataset's released format (tests/fixtures/datasets/).

The expected values are worked out from the fixture files by hand or with
NumPy here, independently of the importers' code.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from evoke.datasets import DatasetError, run_import
from evoke.datasets.tables import check_table
from evoke.labels.common import VCE_EMOTIONS
from evoke.manifest import read_manifest

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "datasets"


def copy_fixture(name: str, tmp_path: Path, videos: list[str] = ()) -> Path:
    """A copy of fixture folder ``name`` with an empty placeholder at each path in ``videos``
    (the importers only check that a video file is there)."""
    src = tmp_path / name
    shutil.copytree(FIXTURES / name, src)
    for v in videos:
        (src / v).parent.mkdir(parents=True, exist_ok=True)
        (src / v).write_bytes(b"")
    return src


def perplexity(p):
    p = np.asarray(p, dtype=float)
    p = p[p > 0]
    return float(np.exp(-(p * np.log(p)).sum()))


# ----------------------------------------------------------------------------- VCE


def test_vce_released_intensities_become_the_label_table(tmp_path):
    src = copy_fixture("vce", tmp_path, [f"videos/{v}.mp4" for v in ("00000", "00001", "00003", "00004", "00005")])
    rec = run_import("vce", src, tmp_path / "out", dataset="vce")
    out = tmp_path / "out"
    table = pl.read_parquet(out / "labels" / "vce.parquet")
    check_table("vce", table, "test")
    # 00002's video is not there, 00003 is all zero, 00005 has an intensity of 1.5
    assert table["video_id"].to_list() == ["00000", "00001", "00004"]
    assert rec["dropped"]["counts"] == {"all_zero": 1, "intensity_out_of_range": 1, "video_file_missing": 1}
    assert str(src / "videos" / "00002.mp4") in rec["dropped"]["examples"]["video_file_missing"]
    row = table.row(0, named=True)
    assert row["split"] == "train"
    assert row["intensity_admiration"] == 0.5 and row["intensity_awe"] == 0.25 and row["intensity_joy"] == 0.25
    p = np.array([row[f"p_{e}"] for e in VCE_EMOTIONS])
    assert p.sum() == pytest.approx(1.0) and row["p_admiration"] == pytest.approx(0.5)
    assert row["emodiversity"] == pytest.approx(perplexity([0.5, 0.25, 0.25]))  # 2 sqrt 2
    assert row["emodiversity_positive"] == pytest.approx(perplexity([0.5, 0.25, 0.25]))  # all three positive
    assert (row["top1"], row["top2"], row["top3"]) == ("admiration", "awe", "joy")
    fear = table.row(1, named=True)
    assert fear["intensity_empathic_pain"] == pytest.approx(0.1) and fear["emodiversity_positive"] is None
    assert table.row(2, named=True)["split"] == "test"
    assert table["n_annotators"].null_count() == 3 and table["agreement"].null_count() == 3
    manifest = read_manifest(out / "manifest.csv")
    assert manifest["video_id"].to_list() == ["00000", "00001", "00004"]
    assert manifest["source"][0] == str(src / "videos" / "00000.mp4")
    assert manifest["split"].to_list() == ["train", "train", "test"]
    import yaml

    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["labels"] == {"annotations": None, "tables": {"vce": str(out / "labels" / "vce.parquet")}}
    assert config["train"]["tasks"] == ["vce"] and config["train"]["val_fraction"] == 0.1
    assert json.loads((out / "import.json").read_text())["videos"] == 3


def test_vce_all_zero_kept_on_request_and_video_check_off(tmp_path):
    src = copy_fixture("vce", tmp_path)
    rec = run_import("vce", src, tmp_path / "out", keep_all_zero=True, check_videos=False)
    table = pl.read_parquet(tmp_path / "out" / "labels" / "vce.parquet")
    zero = table.filter(pl.col("video_id") == "00003").row(0, named=True)
    assert zero["all_zero"] and zero["p_joy"] is None and zero["emodiversity"] is None
    assert rec["videos"] == 5 and "video_file_missing" not in rec["dropped"]["counts"]


def test_vce_unknown_emotion_name_stops_naming_the_file(tmp_path):
    src = copy_fixture("vce", tmp_path)
    path = src / "test_labels.json"
    path.write_text(path.read_text().replace('"Nostalgia"', '"Happiness"'))
    with pytest.raises(DatasetError, match=r"test_labels\.json: video 00004: unknown emotion name 'Happiness'"):
        run_import("vce", src, tmp_path / "out", check_videos=False)
    assert not (tmp_path / "out" / "manifest.csv").exists()


def test_vce_missing_labels_file_and_strict(tmp_path):
    src = copy_fixture("vce", tmp_path)
    with pytest.raises(DatasetError, match="--strict"):
        run_import("vce", src, tmp_path / "out", strict=True, check_videos=False)
    (src / "test_labels.json").unlink()
    with pytest.raises(DatasetError, match=r"test_labels\.json: VCE test labels not found"):
        run_import("vce", src, tmp_path / "out", check_videos=False)


# ----------------------------------------------------------------------------- V2V


def test_v2v_pairs_and_lists(tmp_path):
    src = copy_fixture("v2v", tmp_path)
    rec = run_import("v2v", src, tmp_path / "out", check_videos=False)
    pairs = pl.read_parquet(tmp_path / "out" / "labels" / "v2v_pairs.parquet")
    lists = pl.read_parquet(tmp_path / "out" / "labels" / "v2v_lists.parquet")
    check_table("v2v_pairs", pairs, "test")
    check_table("v2v_lists", lists, "test")
    # the second video of a released pair is the more pleasant one
    assert pairs.select("less_pleasant", "more_pleasant", "split").rows() == [
        ("00010", "00011", "train"), ("00011", "00012", "train"), ("00010", "00012", "train"),
        ("00022", "00023", "test")]
    assert pairs["n_votes"].null_count() == 4
    assert lists["videos"].to_list() == [["00030", "00031", "00032"], ["00033", "00034", "00035", "00036"]]
    assert lists["split"].to_list() == ["test", "test"] and lists["n"].to_list() == [3, 4]
    assert rec["dropped"]["counts"] == {"contradicting_pair": 2, "duplicate_pair": 1, "malformed_comparison": 1,
                                        "repeated_video": 1, "self_pair": 1, "video_in_two_splits": 1}
    manifest = read_manifest(tmp_path / "out" / "manifest.csv")
    assert dict(manifest.select("video_id", "split").rows())["00033"] == "test"
    assert manifest.height == 12


def test_v2v_comparisons_with_a_missing_video_are_dropped(tmp_path):
    have = ["00010", "00011", "00012", "00022", "00030", "00031", "00032", "00033", "00034", "00035", "00036"]
    src = copy_fixture("v2v", tmp_path, [f"videos/{v}.mp4" for v in have])  # 00023 is missing
    rec = run_import("v2v", src, tmp_path / "out")
    pairs = pl.read_parquet(tmp_path / "out" / "labels" / "v2v_pairs.parquet")
    assert pairs.height == 3 and set(pairs["split"]) == {"train"}
    assert rec["dropped"]["counts"]["video_file_missing"] == 1
    assert rec["dropped"]["counts"]["comparison_with_missing_video"] == 1


# ----------------------------------------------------------------------------- EEV


def test_eev_manifest_of_youtube_urls_and_1hz_table(tmp_path):
    src = copy_fixture("eev", tmp_path)
    rec = run_import("eev", src, tmp_path / "out", include_test=True)
    manifest = read_manifest(tmp_path / "out" / "manifest.csv")
    assert manifest.select("video_id", "source", "split").rows() == [
        ("AAAAAAAAAAA", "https://www.youtube.com/watch?v=AAAAAAAAAAA", "train"),
        ("BBBBBBBBBBB", "https://www.youtube.com/watch?v=BBBBBBBBBBB", "train"),
        ("CCCCCCCCCCC", "https://www.youtube.com/watch?v=CCCCCCCCCCC", "test"),  # released val, scored
        ("DDDDDDDDDDD", "https://www.youtube.com/watch?v=DDDDDDDDDDD", "heldout")]  # released test, no scores
    table = pl.read_parquet(tmp_path / "out" / "labels" / "eev.parquet")
    check_table("eev", table, "test")
    a = table.filter(pl.col("video_id") == "AAAAAAAAAAA")
    assert a["time_s"].to_list() == [0.0, 1.0] and a["amusement"].to_list() == [1, 1]
    assert a["interest"].to_list() == [1, 1] and a["contentment"].to_list() == [0, 0]
    b = table.filter(pl.col("video_id") == "BBBBBBBBBBB")
    assert b["sadness"].to_list() == [1, 1] and b["n_samples"].to_list() == [1, 1]
    assert set(table.filter(pl.col("video_id") == "CCCCCCCCCCC")["split"]) == {"test"}
    # six all-zero rows (no face detected) and one score of 1.8
    assert rec["dropped"]["counts"] == {"all_zero": 6, "score_out_of_range": 1}


def test_eev_released_split_names(tmp_path):
    src = copy_fixture("eev", tmp_path)
    run_import("eev", src, tmp_path / "out", splits="released")
    manifest = read_manifest(tmp_path / "out" / "manifest.csv")
    assert manifest["split"].to_list() == ["train", "train", "val"]


# ----------------------------------------------------------------------------- LIRIS-ACCEDE


def test_liris_accede_values_ranks_variances_and_sets(tmp_path):
    src = copy_fixture("liris_accede", tmp_path, [f"data/ACCEDE0000{i}.mp4" for i in (0, 1, 2, 3, 5, 6)])
    rec = run_import("liris-accede", src, tmp_path / "out")
    table = pl.read_parquet(tmp_path / "out" / "labels" / "liris_accede.parquet")
    check_table("liris_accede", table, "test")
    assert table.select("video_id", "split", "movie").rows() == [
        ("ACCEDE00000", "train", "After_The_Rain"), ("ACCEDE00001", "train", "After_The_Rain"),
        ("ACCEDE00002", "val", "Big_Buck_Bunny"), ("ACCEDE00003", "test", "Sintel")]
    first = table.row(0, named=True)
    assert (first["valence"], first["arousal"], first["valence_rank"], first["arousal_rank"]) == \
        (3.012345, 1.654321, 3, 1)
    assert (first["valence_variance"], first["arousal_variance"]) == (0.118, 0.131)
    # 00004's excerpt is missing, 00005's valence is "n/a", 00006 has no set
    assert rec["dropped"]["counts"] == {"malformed_row": 1, "no_set": 1, "video_file_missing": 1}
    manifest = read_manifest(tmp_path / "out" / "manifest.csv")
    assert manifest["source"][2] == str(src / "data" / "ACCEDE00002.mp4")


def test_liris_accede_missing_column_stops(tmp_path):
    src = copy_fixture("liris_accede", tmp_path)
    path = src / "annotations" / "ACCEDEranking.txt"
    path.write_text(path.read_text().replace("arousalVariance", "arousalVar"))
    with pytest.raises(DatasetError, match=r"ACCEDEranking\.txt: LIRIS-ACCEDE ranking lacks column\(s\) arousalVariance"):
        run_import("liris-accede", src, tmp_path / "out", check_videos=False)


# ----------------------------------------------------------------------------- DEAP


def test_deap_youtube_highlights_and_per_viewer_labels_binarised_at_5(tmp_path):
    src = copy_fixture("deap", tmp_path)
    rec = run_import("deap", src, tmp_path / "out")
    manifest = read_manifest(tmp_path / "out" / "manifest.csv")
    assert manifest.select("video_id", "source", "start_s", "end_s").rows() == [
        ("exp01", "http://www.youtube.com/watch?v=aaaaaaaaaa1", 12.0, 72.0),
        ("exp02", "http://www.youtube.com/watch?v=cccccccccc3", 95.0, 155.0),
        ("exp03", "http://www.youtube.com/watch?v=dddddddddd4", 0.0, 60.0)]
    assert sorted(manifest["split"]) == ["test", "train", "train"]
    table = pl.read_parquet(tmp_path / "out" / "labels" / "viewer_valence.parquet")
    check_table("viewer_valence", table, "test")
    assert table["time_s"].to_list() == [59.0, 59.0, 59.0]
    e1 = table.row(0, named=True)
    assert e1["valence"] == pytest.approx(np.mean([7.71, 6.05, 8.0])) and e1["valence_bin"] == 1
    assert e1["valence__p01"] == 7.71 and e1["liking__p03"] == 8.0 and e1["n_viewers"] == 3
    e3 = table.row(2, named=True)
    # p03's 9.6 is out of the 1-9 scale: the sample is dropped, the others average
    assert e3["n_viewers"] == 2 and e3["valence__p03"] is None
    assert e3["valence"] == pytest.approx((5.0 + 4.99) / 2) and e3["valence_bin"] == 0  # 4.995 < 5
    assert e3["valence_bin__p01"] == 1 and e3["valence_bin__p02"] == 0  # 5.0 is high, 4.99 low
    assert e3["arousal_bin"] == 1 and table.row(1, named=True)["valence_bin"] == 0
    counts = rec["dropped"]["counts"]
    assert counts == {"no_youtube_link": 1, "unknown_video": 1, "value_out_of_range": 1}


# ----------------------------------------------------------------------------- COGNIMUSE


def test_cognimuse_films_as_sources_per_viewer_seconds_and_subtitle_segments(tmp_path):
    src = copy_fixture("cognimuse", tmp_path, ["BMI/video.mp4", "CHI/video.mp4"])
    rec = run_import("cognimuse", src, tmp_path / "out", test_films="CHI")
    manifest = read_manifest(tmp_path / "out" / "manifest.csv")
    assert manifest.select("video_id", "source", "split").rows() == [
        ("BMI", str(src / "BMI" / "video.mp4"), "train"), ("CHI", str(src / "CHI" / "video.mp4"), "test")]
    table = pl.read_parquet(tmp_path / "out" / "labels" / "viewer_valence.parquet")
    check_table("viewer_valence", table, "test")
    bmi = table.filter(pl.col("video_id") == "BMI").sort("time_s")
    assert bmi["time_s"].to_list() == [0.0, 1.0, 2.0, 3.0]
    assert bmi["valence__intended_1"].to_list() == pytest.approx([0.5, 0.5, -0.25, -0.25])
    assert bmi["valence"].to_list() == pytest.approx([0.4, 0.4, 0.025, 0.025])
    assert bmi["valence_bin__intended_1"].to_list() == [1, 1, 0, 0] and bmi["valence_bin"].to_list() == [1] * 4
    segments = pl.read_parquet(tmp_path / "out" / "labels" / "viewer_valence_segments.parquet")
    check_table("viewer_valence_segments", segments, "test")
    assert segments["text"].to_list() == ["I need to find a truly original idea.", "That is the only way."]
    assert rec["dropped"]["counts"] == {"malformed_line": 1, "value_out_of_range": 1}


def test_cognimuse_film_without_video_is_dropped(tmp_path):
    src = copy_fixture("cognimuse", tmp_path, ["BMI/video.mp4"])
    rec = run_import("cognimuse", src, tmp_path / "out")
    assert read_manifest(tmp_path / "out" / "manifest.csv")["video_id"].to_list() == ["BMI"]
    assert rec["dropped"]["examples"]["video_file_missing"] == [str(src / "CHI" / "video.mp4")]


# ----------------------------------------------------------------------------- the command line


def test_import_cli_lists_the_formats_and_reports_errors(tmp_path):
    evoke = [sys.executable, "-m", "evoke"]
    helptext = subprocess.run([*evoke, "import", "--help"], capture_output=True, text=True, check=True).stdout
    for name in ("vce", "v2v", "eev", "liris-accede", "deap", "cognimuse"):
        assert name in helptext
    proc = subprocess.run([*evoke, "import", "vce", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and f"{tmp_path / 'nowhere'}: not a folder" in proc.stderr
    src = copy_fixture("deap", tmp_path)
    proc = subprocess.run([*evoke, "import", "deap", str(src), "--out", str(tmp_path / "d"), "--dataset", "mine"],
                          capture_output=True, text=True, check=True)
    assert "3 videos" in proc.stdout and "configfile" in proc.stdout
    assert "dataset: mine" in (tmp_path / "d" / "config.yaml").read_text()


@pytest.mark.parametrize("fmt, folder, missing, message", [
    ("vce", "vce", "train_labels.json", "VCE train labels not found"),
    ("v2v", "v2v", "listwise_labels.json", "V2V listwise labels not found"),
    ("eev", "eev", "val.csv", "EEV val split not found"),
    ("liris-accede", "liris_accede", "annotations/ACCEDEsets.txt", "LIRIS-ACCEDE sets not found"),
    ("deap", "deap", "metadata_csv/participant_ratings.csv", "DEAP participant ratings not found"),
])
def test_a_missing_released_file_stops_naming_it(fmt, folder, missing, message, tmp_path):
    src = copy_fixture(folder, tmp_path)
    (src / missing).unlink()
    with pytest.raises(DatasetError, match=message) as err:
        run_import(fmt, src, tmp_path / "out")
    assert Path(missing).name in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "out" / "manifest.csv").exists()


def test_cognimuse_without_annotations_stops(tmp_path):
    (tmp_path / "empty" / "BMI").mkdir(parents=True)
    with pytest.raises(DatasetError, match=r"empty: no film folder with emotion/\*\.dat annotations"):
        run_import("cognimuse", tmp_path / "empty", tmp_path / "out")
