"""Apply a saved head (:mod:`evoke.predict.model`) to videos: a dataset's stored features, or new files.

* :func:`predict_dataset`: every video of ``results/{dataset}`` whose features
  exist (labelled or not), read through the heads' bounded
  :class:`~evoke.heads.data.VideoStore`; the features must have been made with
  the model's extractor settings and weights (:func:`~evoke.predict.model.check_features`).
* :func:`predict_videos`: files or URLs outside any dataset. They go through
  the workflow's own stage functions (:func:`evoke.ingest.ingest_shard`,
  :func:`evoke.frames.frames_shard`, :func:`evoke.features.stage.features_shard`)
  in a work folder laid out like ``results/{dataset}/``, with the ingest,
  frames and extractor settings the model card records, so a video gives the
  numbers training gave it.

Both return (and write) the columns of a run's ``predictions.parquet``:
``video_id``, ``time_s`` (per-second tasks: every second of the video's
features), ``split`` (the dataset's; null for new files), ``pred_{class}``.

Units: the model's own (its card's ``unit``). A whole video for per-video
tasks; for per-second tasks each step of the features' 1 Hz grid (the first
extractor's, in name order) that every extractor covers, the window of
``seq_len`` steps ending there; heads that read subtitle words (the COGNIMUSE
networks) get, per second, the words of the cues overlapping it (from the
dataset's ``labels/viewer_valence_segments.parquet`` with
:func:`predict_dataset`, from an ``.srt`` beside each video file with
:func:`predict_videos`). A ``unit: segment`` model (``viewer_valence``,
``units: segment``) gets one row per segment, ``video_id, segment, start_s,
end_s, time_s`` (its last second), ``split``, ``pred_*``, pooled by the task's
own code (:func:`segment_units`): subtitle cues from the same two places (a
video without cues is left out, logged), or the fixed-length windows of the
card's ``segments.segment_s``.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import polars as pl

from evoke.heads.data import DEFAULT_MEMORY_MB, FeatureSet
from evoke.predict.model import HeadModel, PredictError, check_features, feature_identity, load_model
from evoke.store import write_parquet

log = logging.getLogger(__name__)

# units predicted at once: bounds the pooled matrix in memory (4,096 x 4,224 float32: 70 MiB)
CHUNK_UNITS = 4096
SHARD = "s00000"


def units_of(feats: FeatureSet, video_ids: list[str], per_second: bool) -> tuple[list[str], list[float] | None]:
    """The prediction units of ``video_ids``: the videos, or every covered second of each."""
    if not per_second:
        return list(video_ids), None
    vids, times = [], []
    first = feats.extractors[0]
    for v in video_ids:
        for t in feats.data[v][first].timestamps_s.tolist():
            if feats.covers(v, t):
                vids.append(v)
                times.append(float(t))
    return vids, times


def fixed_segments(feats: FeatureSet, video_id: str, length_s: float) -> pl.DataFrame:
    """The fixed-length segments that hold a step of the video's features (its first
    extractor's, as :func:`units_of`), made as the labels builder makes them from the ratings
    (:func:`evoke.labels.viewers.fixed_segments`)."""
    from evoke.labels import viewers

    return viewers.fixed_segments(video_id, feats.data[video_id][feats.extractors[0]].timestamps_s, length_s)


def segment_units(model: HeadModel, feats: FeatureSet, video_ids: list[str],
                  cues: dict[str, pl.DataFrame]) -> pl.DataFrame:
    """The segments a ``unit: segment`` model predicts: ``video_id, segment, start_s, end_s, time_s
    (the last second), text``, in video order, those whose last second the features cover.

    A model trained on fixed-length segments (its card's ``segments.segment_s``) gets those
    windows over each video (:func:`fixed_segments`; subtitles, if any, are not its unit). One
    trained on subtitle cues gets each video's ``cues`` (``segment, start_s, end_s, text``); a
    video without cues is left out with a warning (its text branch would read nothing and no
    segment length is known), and when no video has cues the run stops."""
    from evoke.labels.viewers import SEGMENTS_SCHEMA
    from evoke.tasks.viewer_valence import segment_last_second

    length = (model.segments or {}).get("segment_s")
    frames, bare = [], []
    for v in video_ids:
        if length:
            frames.append(fixed_segments(feats, v, float(length)))
        elif v in cues and cues[v].height:
            frames.append(cues[v].with_columns(pl.lit(v).alias("video_id")).select(list(SEGMENTS_SCHEMA))
                          .cast(SEGMENTS_SCHEMA))
        else:
            bare.append(v)
    if bare:
        log.warning("%d video(s) have no subtitle cues, and the model (trained on subtitle segments) predicts "
                    "per cue: left out: %s", len(bare), ", ".join(bare[:10]) + (" ..." if len(bare) > 10 else ""))
    if not frames:
        raise PredictError(f"the model ({model.task}/{model.head}) predicts per subtitle segment and none of the "
                           f"{len(video_ids)} video(s) has subtitle cues (an .srt beside the video file, or the "
                           "dataset's labels/viewer_valence_segments.parquet)")
    df = pl.concat(frames).with_columns(segment_last_second().alias("time_s"))
    keep = [feats.covers(v, t) for v, t in df.select("video_id", "time_s").iter_rows()]
    return df.filter(pl.Series(keep, dtype=pl.Boolean)).select(
        "video_id", "segment", "start_s", "end_s", "time_s", "text")


def predictions_table(model: HeadModel, feats: FeatureSet, video_ids: list[str],
                      split_of: dict[str, str] | None = None, chunk: int = CHUNK_UNITS,
                      cues: dict[str, pl.DataFrame] | None = None) -> pl.DataFrame:
    """``video_id[, time_s], split, pred_*`` for the units of ``video_ids``, ``chunk`` units at a
    time (in video order, so the feature cache reads each video once). A ``unit: segment`` model:
    ``video_id, segment, start_s, end_s, time_s, split, pred_*``, one row per segment
    (:func:`segment_units`, from ``cues``: ``{video_id: segment, start_s, end_s, text}``)."""
    if model.unit == "segment":
        segs = segment_units(model, feats, video_ids, cues or {})
        vids, times = segs["video_id"].to_list(), segs["time_s"].to_list()
        starts, texts = segs["start_s"].to_list(), segs["text"].to_list()
    else:
        vids, times = units_of(feats, video_ids, model.per_second)
        segs = None
    pred = np.zeros((len(vids), len(model.classes)))
    for s in range(0, len(vids), chunk):
        part = None if segs is None else {"start_s": starts[s:s + chunk], "text": texts[s:s + chunk]}
        pred[s:s + chunk] = model.predict(feats, vids[s:s + chunk], None if times is None else times[s:s + chunk],
                                          part)
    return _frame(model, vids, times, pred, split_of, segs)


def _frame(model: HeadModel, vids, times, pred: np.ndarray, split_of, segs: pl.DataFrame | None = None
           ) -> pl.DataFrame:
    cols = {"video_id": pl.Series(vids, dtype=pl.String)}
    if segs is not None:
        cols |= {c: segs[c] for c in ("segment", "start_s", "end_s")}
    if times is not None:
        cols["time_s"] = pl.Series(times, dtype=pl.Float64)
    cols["split"] = pl.Series([split_of.get(v) if split_of else None for v in vids], dtype=pl.String)
    for k, name in enumerate(model.classes):
        cols[f"pred_{name}"] = pl.Series(np.asarray(pred[:, k], dtype=np.float64))
    return pl.DataFrame(cols)


def _splits(ddir: Path) -> dict[str, str]:
    probe = ddir / "ingest" / "probe.parquet"
    if not probe.exists():
        return {}
    return dict(pl.read_parquet(probe, columns=["video_id", "split"]).iter_rows())


def predict_dataset(run_dir: str | Path, dataset_dir: str | Path, out: str | Path | None = None,
                    memory_mb: float | None = DEFAULT_MEMORY_MB,
                    plot_dir: str | Path | None = None) -> pl.DataFrame:
    """Predict every video of ``dataset_dir`` whose features exist; write ``out`` when given."""
    ddir = Path(dataset_dir)
    card, model = load_model(run_dir)
    if model.inputs is not None:
        table = _predict_from_inputs(model, ddir)
    else:
        check_features(card, feature_identity(ddir, model.extractors), str(ddir / "features"))
        feats = FeatureSet.load(ddir, model.extractors, memory_mb=memory_mb)
        segments = ddir / "labels" / "viewer_valence_segments.parquet"
        if model.reads_subtitles and model.unit != "segment":
            from evoke.tasks.viewer_valence import segment_cues

            feats.subtitles = segment_cues(segments)
        if not feats.video_ids:
            raise PredictError(f"{ddir / 'features'}: no video has features of every extractor of the model "
                               f"({', '.join(model.extractors)})")
        cues = dataset_cues(segments) if model.unit == "segment" and not (model.segments or {}).get("segment_s") \
            else None
        table = predictions_table(model, feats, sorted(feats.video_ids), _splits(ddir), cues=cues)
        feats.data.close()
        log.info("%s/%s: predicted %d unit(s) of %d video(s) of %s", model.task, model.head, table.height,
                 len(feats.video_ids), ddir)
    return _finish(table, card, out, plot_dir)


def dataset_cues(path: Path) -> dict[str, pl.DataFrame]:
    """``{video_id: segment, start_s, end_s, text}`` of a dataset's segments table (the units a
    segment model was trained on); empty when the table does not exist."""
    if not path.is_file():
        log.warning("%s does not exist: no video has segments to predict", path)
        return {}
    df = pl.read_parquet(path)
    if "text" not in df.columns:
        df = df.with_columns(pl.lit(None, dtype=pl.String).alias("text"))
    df = df.select("video_id", "segment", "start_s", "end_s", "text").sort("video_id", "segment")
    return {v: g.drop("video_id") for (v,), g in df.group_by(["video_id"], maintain_order=True)}


def _predict_from_inputs(model: HeadModel, ddir: Path) -> pl.DataFrame:
    """A head on label columns (``v2v_from_emotions``: VCE intensities) for every labelled video."""
    inputs = model.inputs
    path = ddir / inputs["table"]
    if not path.exists():
        raise PredictError(f"task {model.task} predicts from {inputs['table']} ({inputs['kind']}), "
                           f"and {path} does not exist")
    df = pl.read_parquet(path)
    missing = [c for c in inputs["columns"] if c not in df.columns]
    if missing:
        raise PredictError(f"{path}: lacks column(s) {', '.join(missing)} the model reads")
    df = df.select("video_id", *inputs["columns"]).fill_null(0.0).sort("video_id")
    X = df.select(inputs["columns"]).to_numpy().astype(np.float64)
    return _frame(model, df["video_id"].to_list(), None, model.predict_inputs(X), _splits(ddir))


def _finish(table: pl.DataFrame, card: dict, out, plot_dir) -> pl.DataFrame:
    if out is not None:
        write_parquet(table, out)
    if plot_dir is not None:
        from evoke.predict.plot import plot_timelines

        plot_timelines(table, card, plot_dir)
    return table


# ------------------------------------------------------------------ new videos


def video_id_of(source: str) -> str:
    """A file's or URL's stem (``clips/a.mp4`` -> ``a``)."""
    path = unquote(urlparse(source).path) if "://" in source else source
    return Path(path).stem


def work_manifest(sources: list[str]) -> pl.DataFrame:
    """A manifest of ``sources`` (``video_id`` = stem, ``split`` = ``predict``); refuses clashes."""
    from evoke.manifest import check_video_id
    from evoke.ingest import is_url

    rows, seen = [], {}
    for src in sources:
        vid = video_id_of(src)
        problem = check_video_id(vid)
        if problem:
            raise PredictError(f"{src}: its stem {vid!r} cannot be a video id ({problem})")
        if vid in seen:
            raise PredictError(f"{seen[vid]} and {src} have the same stem {vid!r}: rename one")
        seen[vid] = src
        if not is_url(src):
            p = Path(src)
            if not p.is_file():
                raise PredictError(f"{src}: no such file")
            src = str(p.resolve())
        rows.append({"video_id": vid, "source": src, "split": "predict"})
    return pl.DataFrame(rows, schema={"video_id": pl.String, "source": pl.String, "split": pl.String})


def stage_settings(card: dict) -> tuple[dict, dict]:
    """The ingest and frames settings of the model card over the schema defaults."""
    from evoke.config import validate_config
    from evoke.frames import settings_fingerprint

    if not card.get("frames"):
        raise PredictError(f"{card['_folder']}/model.json records no frames settings (at training time the run's "
                           "frames files were gone and its features predate recording them): predict from a "
                           "dataset's features instead (--dataset), or extract the features again and retrain")
    ingest = dict(card.get("ingest") or {})
    if not ingest:
        log.warning("the model card records no ingest settings: using the schema defaults")
    defaults = validate_config({"manifest": "-", "ingest": ingest,
                                "frames": {k: card["frames"][k] for k in ("rate_hz", "short_side", "backend")}},
                               source=f"{card['_folder']}/model.json")
    frames = defaults["frames"]
    if settings_fingerprint(frames) != card["frames"].get("config_hash"):
        raise PredictError(f"frames: the model's frames config hash is {card['frames'].get('config_hash')} but "
                           f"this evoke makes {settings_fingerprint(frames)} from the same settings: its frames "
                           "code differs from the one that trained the model")
    return defaults["ingest"], frames


def check_extractors(card: dict, settings: dict[str, dict], frames: dict) -> None:
    """Refuse, before any video, when this evoke would extract the model's features with another
    config hash or weights than the card's (``settings``: per extractor its features-stage block)."""
    from evoke.features import create_extractor
    from evoke.frames import settings_fingerprint

    found = {}
    for name, block in settings.items():
        ext = create_extractor(name, block["config"], weights_paths=block["weights"])
        found[name] = {"config_hash": ext.config_hash(), "weights": ext.weights_identity(),
                       "frames_config_hash": settings_fingerprint(frames)}
    check_features(card, found, "this evoke (the model's extractor settings)")


def predict_videos(run_dir: str | Path, sources: list[str], out: str | Path | None = None,
                   work: str | Path | None = None, plot_dir: str | Path | None = None, device: str = "auto",
                   weights: dict | None = None) -> pl.DataFrame:
    """Ingest, sample and extract ``sources`` with the model's settings, then predict.

    ``work``: the folder for the intermediate files (a temporary one, removed
    after, when None; a given one is kept and reused: finished videos are not
    redone). A video that fails a stage is logged and left out; when none is
    left the run stops with their errors.
    """
    card, model = load_model(run_dir)
    if model.inputs is not None:
        raise PredictError(f"task {model.task} predicts from {model.inputs['table']}, not from videos: "
                           "use --dataset on a dataset that has that table")
    ingest, frames = stage_settings(card)
    settings = {e: {"config": card["extractors"][e].get("config") or {}, "device": device,
                    "weights": dict(weights or {})} for e in model.extractors}
    check_extractors(card, settings, frames)
    manifest = work_manifest([str(s) for s in sources])
    with contextlib.ExitStack() as stack:
        wdir = Path(work) if work is not None else \
            Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="evoke-predict-")))
        _extract(wdir, manifest, ingest, frames, settings)
        feats = FeatureSet.load(wdir, model.extractors, memory_mb=None)
        fixed = (model.segments or {}).get("segment_s")
        cues = None
        if model.unit == "segment" and not fixed:
            cues = {v: read_srt_cues(p) for v, p in srt_beside(manifest).items()}
        elif model.reads_subtitles and model.unit != "segment":
            feats.subtitles = subtitles_beside(manifest)
        table = predictions_table(model, feats, [v for v in manifest["video_id"] if v in feats.video_ids],
                                  cues=cues)
        feats.data.close()
    log.info("%s/%s: predicted %d unit(s) of %d of %d video(s)", model.task, model.head, table.height,
             table["video_id"].n_unique(), manifest.height)
    return _finish(table, card, out, plot_dir)


def srt_beside(manifest: pl.DataFrame) -> dict[str, Path]:
    """``{video_id: path}`` of the ``.srt`` beside each local video (``clip.mp4`` -> ``clip.srt``)."""
    out = {}
    for vid, src in manifest.select("video_id", "source").iter_rows():
        srt = Path(src).with_suffix(".srt") if "://" not in src else None
        if srt is not None and srt.is_file():
            out[vid] = srt
    return out


def read_srt_cues(path: Path) -> pl.DataFrame:
    """An SRT's cues as ``segment, start_s, end_s, text`` (:func:`evoke.labels.viewers.read_srt`, as the
    labels stage reads them); malformed blocks are skipped and logged."""
    from evoke.labels.common import Dropped
    from evoke.labels.viewers import read_srt

    dropped = Dropped()
    cues = read_srt(path, dropped)
    for reason, n in dropped.counts.items():
        log.warning("%s: %d block(s) skipped (%s), e.g. %s", path, n, reason, "; ".join(dropped.examples[reason]))
    return cues


def subtitles_beside(manifest: pl.DataFrame) -> dict[str, list[tuple[float, float, str]]]:
    """``{video_id: cues}`` from an ``.srt`` beside each local video, for a per-second model;
    a video without one is predicted from padding only (logged)."""
    found = srt_beside(manifest)
    out = {}
    for vid, src in manifest.select("video_id", "source").iter_rows():
        if vid in found:
            out[vid] = [(a, b, t) for a, b, t in read_srt_cues(found[vid]).select("start_s", "end_s", "text").iter_rows()]
        else:
            log.warning("%s: no .srt beside it: its text branch reads padding only", src)
    return out


def _extract(wdir: Path, manifest: pl.DataFrame, ingest: dict, frames: dict, settings: dict) -> None:
    """The workflow's ingest, frames and features stages on one shard in ``wdir`` (its
    ``features/index.parquet`` last); stops when no video made it through."""
    from evoke.features.stage import features_shard
    from evoke.frames import frames_shard
    from evoke.ingest import ingest_shard

    failed: dict[str, str] = {}
    probe = ingest_shard(manifest, wdir, ingest, SHARD)
    write_parquet(probe, wdir / "ingest" / "probe.parquet")
    failed |= _failures(probe, "ingest")
    status = frames_shard(probe, wdir, frames, SHARD, wdir / "frames" / f"{SHARD}.h5")
    write_parquet(status, wdir / "frames" / "index.parquet")
    failed |= _failures(status, "frames")
    index = []
    for name, block in settings.items():
        st = features_shard(name, block, wdir / "frames" / f"{SHARD}.h5", probe, wdir, SHARD,
                            wdir / "features" / name / f"{SHARD}.h5")
        failed |= _failures(st, f"features {name}")
        index.append(st)
    index = pl.concat(index)
    write_parquet(index, wdir / "features" / "index.parquet")
    ok = set(index.filter(pl.col("status") == "ok")["video_id"].to_list())
    complete = [v for v in manifest["video_id"] if v in ok and v not in failed]
    if not complete:
        raise PredictError("no video could be predicted: " + "; ".join(f"{v}: {e}" for v, e in failed.items()))


def _failures(status: pl.DataFrame, stage: str) -> dict[str, str]:
    bad = status.filter(pl.col("status") == "failed")
    for vid, err in bad.select("video_id", "error").iter_rows():
        log.error("%s failed at %s: %s", vid, stage, err)
    return {vid: f"{stage}: {err}" for vid, err in bad.select("video_id", "error").iter_rows()}
