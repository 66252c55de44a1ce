"""EEV resampling to 1 Hz and per-viewer continuous ratings (demo, COGNIMUSE, bad input)."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from evoke.frames import target_times
from evoke.labels.common import LabelError, VideoIndex, probe_durations
from evoke.labels.eev import EEV_EXPRESSIONS, EevConfig, eev_1hz, read_eev
from evoke.labels.viewers import ContinuousConfig, continuous_labels, read_continuous, read_dat, read_srt

from .conftest import demo_file, shared_file

EXPR = ("amusement", "awe")


def eev_csv(tmp_path, rows, unit="microseconds", name="eev.csv", expr=EXPR):
    p = tmp_path / name
    p.write_text(f"Video ID,Timestamp ({unit})," + ",".join(expr) + "\n"
                 + "\n".join(",".join(str(x) for x in r) for r in rows) + "\n")
    return p


def test_eev_windows_by_hand(tmp_path):
    # 6 Hz for 4 s; amusement high during [1, 2.5), awe always 0.2 (never >= 0.5)
    rows = []
    for i in range(24):
        t = i / 6
        rows.append(("v", round(t * 1e6), 0.9 if 1 <= t < 2.5 else 0.1, 0.2))
    cfg = EevConfig(expressions=EXPR)
    res = eev_1hz(read_eev(eev_csv(tmp_path, rows), EXPR), cfg)
    t = res.table
    assert t["time_s"].to_list() == [0.0, 1.0, 2.0, 3.0]
    # second 0: window [-1, 2): 12 samples, 6 high (t in [1, 2)) -> 6*2 > 12 is false -> 0
    # second 1: window [0, 3): 18 samples, 9 high -> 0 (a tie is not a majority)
    # second 2: window [1, 4): 18 samples, 9 high -> 0; second 3: [2, 5): 12 samples, 3 high -> 0
    assert t["n_samples"].to_list() == [12, 18, 18, 12]
    assert t["amusement"].to_list() == [0, 0, 0, 0] and t["awe"].to_list() == [0, 0, 0, 0]
    mean = eev_1hz(read_eev(eev_csv(tmp_path, rows), EXPR), cfg.replace(method="mean")).table
    assert mean["amusement"][1] == pytest.approx((9 * 0.9 + 9 * 0.1) / 18)
    assert mean["awe"].to_list() == pytest.approx([0.2] * 4)
    # a longer high span gives a majority
    rows2 = [("v", round(i / 6 * 1e6), 0.8 if i >= 4 else 0.0, 0.1) for i in range(24)]
    t2 = eev_1hz(read_eev(eev_csv(tmp_path, rows2, name="e2.csv"), EXPR), cfg).table
    assert t2["amusement"].to_list() == [1, 1, 1, 1]


def test_eev_units_and_bad_rows(tmp_path):
    rows = [
        ("v", 0, 0.5, 0.5), ("v", 500, 0.5, 0.5),
        ("v", 1000, 0.0, 0.0),        # all zero: the face was lost
        ("v", -200, 0.5, 0.5),        # negative time
        ("v", "", 0.5, 0.5),          # no time
        ("v", 1500, 1.7, 0.5),        # score out of range
        ("v", 2000, "", ""),          # no scores (test split)
        ("v", 500, 0.9, 0.9),         # duplicate timestamp
        ("ghost", 0, 0.5, 0.5),       # unknown video
        ("v", 10 ** 14, 0.5, 0.5),    # 3 years: past the video's end
        ("v", "inf", 0.5, 0.5),       # not finite
    ]
    p = eev_csv(tmp_path, rows, unit="milliseconds")
    res = eev_1hz(read_eev(p, EXPR), EevConfig(expressions=EXPR), VideoIndex.from_ids(["v"]), {"v": 5.0})
    assert res.dropped.counts == {"all_zero": 1, "impossible_timestamp": 3, "after_video_end": 1,
                                  "score_out_of_range": 1, "no_scores": 1, "duplicate_timestamp": 1,
                                  "unknown_video": 1}
    assert res.table["n_samples"].to_list() == [2]
    with pytest.raises(LabelError, match="unknown timestamp unit"):
        read_eev(eev_csv(tmp_path, rows, unit="fortnights", name="x.csv"), EXPR)
    with pytest.raises(LabelError, match="lack expression"):
        read_eev(p)  # the 15 EEV columns are not there


def _dense_eev_majority(times, scores, stride, window, threshold):
    """The plain reading of the module docstring: every grid second from 0 to the last
    sample's, its window's samples counted by brute force (an independent check)."""
    rows = []
    for k in range(int(np.floor(times.max() / stride)) + 1):
        lo = k * stride + stride / 2 - window / 2
        inside = (times >= lo) & (times < lo + window)
        if inside.any():
            high = (scores[inside] >= threshold).sum(axis=0)
            rows.append((k * stride, int(inside.sum()), *(2 * high > inside.sum()).astype(int)))
    return rows


@pytest.mark.parametrize("stride, window", [(1.0, 3.0), (0.5, 2.0), (2.0, 1.0)])
def test_eev_seconds_from_the_samples_match_a_dense_grid(stride, window):
    rng = np.random.default_rng(int(stride * 10 + window))
    times = np.unique(np.round(np.concatenate([rng.uniform(0, 40, 150), rng.uniform(80, 90, 30)]), 3))
    scores = rng.uniform(0.01, 1, (times.size, 2))
    df = pl.DataFrame({"video_id": ["v"] * times.size, "time_s": times,
                       "amusement": scores[:, 0], "awe": scores[:, 1]})
    got = eev_1hz(df, EevConfig(expressions=EXPR, window_s=window, stride_s=stride)).table
    assert got.select("time_s", "n_samples", *EXPR).rows() == _dense_eev_majority(times, scores, stride, window, 0.5)


def test_eev_keeps_a_replay_past_24_hours_and_drops_only_what_is_past_the_video_end(tmp_path, run_cli):
    # a reaction to a live-stream replay: samples at 0-2 s and past 100 hours
    hours = 100 * 3600
    rows = [("live", round(t * 1e6), 0.9, 0.1) for t in (0.0, 0.5, 1.0, hours + 0.2, hours + 0.7)]
    rows += [("clip", round(t * 1e6), 0.9, 0.1) for t in (0.0, 0.5, 9.5, 10.0, 3e5)]  # a 10 s clip
    csv = eev_csv(tmp_path, rows)
    res = eev_1hz(read_eev(csv, EXPR), EevConfig(expressions=EXPR))  # no durations: no upper bound
    assert res.dropped.counts == {}
    live = res.table.filter(pl.col("video_id") == "live")
    assert live["time_s"].to_list() == [0.0, 1.0, 2.0, hours - 1.0, hours]
    assert live["n_samples"].to_list() == [3, 3, 1, 2, 2]
    probe = tmp_path / "probe.parquet"
    pl.DataFrame({"video_id": ["live", "clip", "gone"], "status": ["ok", "ok", "failed"],
                  "duration_s": [hours + 3600.0, 10.0, None]}).write_parquet(probe)
    out, report = tmp_path / "eev.parquet", tmp_path / "eev.json"
    rc, err = run_cli("labels", "eev", "--csv", csv, "--expressions", ",".join(EXPR), "--probe", probe,
                      "--out", out, "--report", report)
    assert rc == 0, err
    table = pl.read_parquet(out)
    assert table.filter(pl.col("video_id") == "live")["time_s"].to_list() == [0.0, 1.0, 2.0, hours - 1.0, hours]
    assert table.filter(pl.col("video_id") == "clip")["time_s"].max() == 9.0  # 10.0 and 3e5 s: after the end
    assert json.loads(report.read_text())["dropped"]["counts"] == {"after_video_end": 2}


def test_eev_demo_end_to_end():
    p = demo_file("eev.csv")
    raw = read_eev(p)
    res = eev_1hz(raw)
    t = res.table
    assert res.dropped.counts.get("all_zero", 0) > 0  # the simulated face losses
    assert set(t.columns) >= set(EEV_EXPRESSIONS) and t.schema["amusement"] == pl.Int8
    assert t["n_samples"].max() <= 18 + 1 and t["n_samples"].min() >= 1
    assert (t.select(pl.col(e).is_in([0, 1]).all() for e in EEV_EXPRESSIONS).row(0)) == (True,) * 15
    # every second of every video is on the integer grid
    assert (t["time_s"] == t["time_s"].round(0)).all()


def test_continuous_by_hand(tmp_path):
    p = tmp_path / "r.csv"
    rows = ["video_id,viewer_id,time_s,valence"]
    for t, a, b in [(0.0, 0.2, -0.4), (0.5, 0.4, -0.2), (1.0, -0.1, 0.1), (1.5, -0.3, 0.3), (2.2, 0.5, None)]:
        rows.append(f"v,alice,{t},{a}")
        if b is not None:
            rows.append(f"v,bob,{t},{b}")
    rows += ["v,bob,0.5,0.9",            # duplicate sample: first kept
             "v,bob,3.0,1.5",            # out of range
             "v,bob,-1,0.1",             # impossible time
             "w,bob,0.0,0.1"]            # unknown video
    p.write_text("\n".join(rows) + "\n")
    res = continuous_labels(read_continuous([p]), ContinuousConfig(segment_s=2.0), VideoIndex.from_ids(["v"]))
    assert res.dropped.counts == {"duplicate_sample": 1, "value_out_of_range": 1, "impossible_timestamp": 1,
                                  "unknown_video": 1}
    t = res.table
    assert t["time_s"].to_list() == [0.0, 1.0, 2.0]
    assert t["valence__alice"].to_list() == pytest.approx([0.3, -0.2, 0.5])
    assert t["valence__bob"].to_list()[:2] == pytest.approx([-0.3, 0.2]) and t["valence__bob"][2] is None
    # the average viewer: mean of the viewers' per-second means
    assert t["valence"].to_list() == pytest.approx([0.0, 0.0, 0.5])
    assert t["valence_bin"].to_list() == [1, 1, 1]  # >= 0 is positive
    assert t["valence_bin__bob"].to_list() == [0, 1, None]
    assert t["n_viewers"].to_list() == [2, 2, 1]
    seg = res.extra["segments"]
    assert seg["segment"].to_list() == [0, 1]
    assert seg["valence__alice"][0] == pytest.approx(np.mean([0.2, 0.4, -0.1, -0.3]))
    assert seg["valence__bob"][0] == pytest.approx(np.mean([-0.4, -0.2, 0.1, 0.3]))


def test_srt_and_dat_parsing(tmp_path):
    srt = tmp_path / "v_subtitle.srt"
    srt.write_bytes("1\r\n00:00:01,000 --> 00:00:02,500\r\n你好\r\n世界\r\n\r\n2\r\nbroken\r\n\r\n"
                    "3\r\n00:00:03,000 --> 00:00:02,000\r\nbackwards\r\n".encode("gbk"))
    from evoke.labels.common import Dropped
    d = Dropped()
    s = read_srt(srt, d)
    assert s.rows() == [(0, 1.0, 2.5, "你好 世界")]
    assert d.counts["malformed_subtitle"] == 2
    dat = tmp_path / "FILM_viewer3.dat"
    dat.write_text("0 0.1 0.2\n0.04 0.1 0.3\noops\n0.08 0.2\n")
    d = Dropped()
    df = read_dat(dat, dropped=d)
    assert df["video_id"].unique().to_list() == ["FILM"] and df["viewer_id"].unique().to_list() == ["viewer3"]
    assert df.height == 2 and d.counts["malformed_line"] == 2
    (tmp_path / "empty.dat").write_text("")
    with pytest.raises(LabelError, match="empty"):
        read_dat(tmp_path / "empty.dat")


def test_continuous_demo_end_to_end():
    res = continuous_labels(read_continuous([demo_file("viewer_valence.csv")]), ContinuousConfig(segment_s=5))
    t = res.table
    assert {"valence__viewer_1", "valence__viewer_2", "valence__viewer_3"} <= set(t.columns)
    assert t["n_viewers"].max() == 3
    assert t["valence"].is_between(-1, 1).all()
    assert "segments" in res.extra and res.extra["segments"].height > 0


def test_cognimuse_intended_per_second_and_per_subtitle():
    dat = shared_file("continuous", "BMI_intended_1.dat")
    srt = shared_file("continuous", "BMI_subtitle.srt")
    ratings = read_continuous([dat])
    assert ratings["video_id"].unique().to_list() == ["BMI"]
    res = continuous_labels(ratings, subtitles={"BMI": read_srt(srt)})
    t = res.table
    # 25 Hz over about 1877 s: one row a second, 25 samples in each
    assert t.height == int(ratings["time_s"].max()) + 1
    first = ratings.filter(pl.col("time_s") < 1)["valence"].mean()
    assert t["valence"][0] == pytest.approx(first)
    assert t["valence"].is_between(-1, 1).all() and set(t["valence_bin"].unique().to_list()) <= {0, 1}
    seg = res.extra["segments"]
    cues = read_srt(srt)
    assert seg.height == cues.height and seg["n_viewers"].max() == 1
    s0 = cues.row(0, named=True)
    inside = ratings.filter((pl.col("time_s") >= s0["start_s"]) & (pl.col("time_s") < s0["end_s"]))
    assert seg["valence"][0] == pytest.approx(inside["valence"].mean())


def test_continuous_times_are_bounded_by_the_known_duration_only(tmp_path):
    # issue 12: no fixed 24-hour cap; impossible = negative, non-finite or past the video's duration
    p = tmp_path / "r.csv"
    rows = ["video_id,viewer_id,time_s,valence"]
    rows += [f"film,a,{t},0.5" for t in (0.0, 90_000.5, 200_000.0)]  # a film of unknown length: all kept
    rows += [f"clip,a,{t},-0.5" for t in (0.0, 9.5, 10.5, "inf", "nan", -0.1)]  # clip: 10 s in the manifest
    p.write_text("\n".join(rows) + "\n")
    videos = tmp_path / "manifest.csv"
    videos.write_text("video_id,source,split,start_s,end_s\nfilm,f.mp4,train,,\nclip,c.mp4,test,5,15\n")
    res = continuous_labels(read_continuous([p]), ContinuousConfig(segment_s=5.0), VideoIndex.from_file(videos))
    assert res.dropped.counts == {"impossible_timestamp": 3, "after_video_end": 1}  # inf, nan, -0.1; 10.5 s
    t = res.table
    assert t.filter(pl.col("video_id") == "film")["time_s"].to_list() == [0.0, 90_000.0, 200_000.0]
    assert t.filter(pl.col("video_id") == "clip")["time_s"].to_list() == [0.0, 9.0]
    seg = res.extra["segments"].filter(pl.col("video_id") == "film")  # only the segments with samples
    assert seg["segment"].to_list() == [0, 18_000, 40_000] and seg["start_s"].to_list() == [0.0, 90_000.0, 200_000.0]
    # a probe table's duration_s bounds the same way
    probe = tmp_path / "probe.parquet"
    pl.DataFrame({"video_id": ["film", "clip"], "split": ["train", "test"], "duration_s": [100_000.0, 12.0]}
                 ).write_parquet(probe)
    res = continuous_labels(read_continuous([p]), ContinuousConfig(), VideoIndex.from_file(probe))
    assert res.dropped.counts == {"impossible_timestamp": 3, "after_video_end": 1}  # inf, nan, -0.1; 200,000 s


def test_eev_and_viewers_share_one_end_of_video_from_the_decoded_duration(tmp_path):
    """One rule in both builders: a time t is kept when t < the video's end, the end being
    how far the file decodes (a cut file keeps its header's 8 s), else the header's duration.
    What is kept is exactly what the frames stage has a frame for (target_times)."""
    probe = tmp_path / "probe.parquet"
    pl.DataFrame({"video_id": ["cut", "whole", "old", "lost"], "split": ["train"] * 4,
                  "status": ["ok", "ok", "ok", "failed"], "duration_s": [8.0, 5.0, 4.0, None],
                  "decoded_duration_s": [1.9, 5.0, None, None]}).write_parquet(probe)
    assert probe_durations(pl.read_parquet(probe)) == {"cut": 1.9, "whole": 5.0, "old": 4.0}
    times = {"cut": [0.0, 1.0, 1.899, 1.9, 3.0, 7.5], "whole": [0.0, 4.0, 4.999, 5.0], "old": [0.0, 3.5, 4.0]}
    late = {"cut": 3, "whole": 1, "old": 1}  # at or past the end
    eev = eev_csv(tmp_path, [(v, round(t * 1e6), 0.9, 0.1) for v, ts in times.items() for t in ts])
    rows = ["video_id,viewer_id,time_s,valence"] + [f"{v},a,{t},0.5" for v, ts in times.items() for t in ts]
    (tmp_path / "r.csv").write_text("\n".join(rows) + "\n")
    videos = VideoIndex.from_file(probe)
    e = eev_1hz(read_eev(eev, EXPR), EevConfig(expressions=EXPR, window_s=1.0), videos,
                probe_durations(pl.read_parquet(probe)))
    c = continuous_labels(read_continuous([tmp_path / "r.csv"]), ContinuousConfig(), videos)
    assert e.dropped.counts == c.dropped.counts == {"after_video_end": sum(late.values())}
    ends = {"cut": 1.9, "whole": 5.0, "old": 4.0}
    for res in (e, c):
        for vid, end in ends.items():
            kept = res.table.filter(pl.col("video_id") == vid)["time_s"].to_list()
            assert kept == sorted({float(int(t)) for t in times[vid] if t < end}), (vid, kept)
            assert set(kept) <= set(target_times(end, 1.0).tolist())  # each second has its frame
