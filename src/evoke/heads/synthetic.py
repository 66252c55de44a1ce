"""A small synthetic dataset directory with signal, laid out like ``results/{dataset}/``.

For tests and benchmarks of the heads (not emotion data): every video has a
latent valence/arousal trajectory per second; two fake extractors (``colour``,
8-d, and ``motion``, 3-d) are noisy linear maps of it, and every label table is
drawn from it, so a head that reads the features can beat the trivial
baselines. :func:`write_synthetic_dataset` writes

* ``features/{extractor}/s{k:05d}.h5`` (``shard_size`` videos per file, one
  group per video: ``values``, ``timestamps_s``, ``mask``) and
  ``features/index.parquet`` (the real store's columns); ``dims`` names the
  extractors and their widths (benchmarks use the real ones, e.g.
  ``{"efficientnet": 1280, "vggish": 128}``);
* ``ingest/probe.parquet`` (``video_id, split``);
* ``labels/vce.parquet``, ``labels/v2v_pairs.parquet``, ``labels/v2v_lists.parquet``,
  ``labels/eev.parquet``, ``labels/danmaku_seconds.parquet`` (no split
  column: taken from the ingest stage), ``labels/viewer_valence.parquet``,
  ``labels/viewer_valence_segments.parquet`` (2-second segments) and
  ``labels/liris_accede.parquet`` (``video_id, split, valence, arousal``);
  ``tables`` picks which (``("vce", "v2v")`` for a video-level benchmark).
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import polars as pl
from tqdm import tqdm

from evoke.danmaku import EMOTIONS
from evoke.labels.common import VCE_EMOTIONS
from evoke.labels.eev import EEV_EXPRESSIONS
from evoke.store import h5_attrs

DIMS = {"colour": 8, "motion": 3}


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def latent(n_videos: int, seconds: tuple[int, int], seed: int):
    rng = np.random.default_rng(seed)
    out = {}
    for i in range(n_videos):
        T = int(rng.integers(seconds[0], seconds[1] + 1))
        base = rng.normal(0, 1, 2)
        walk = np.cumsum(rng.normal(0, 0.15, (T, 2)), 0)
        out[f"v{i:04d}"] = base + walk  # (T, 2): valence, arousal
    return out


TABLES = ("vce", "v2v", "eev", "danmaku", "viewer_valence", "liris_accede")


def write_synthetic_dataset(ddir: str | Path, n_videos: int = 60, seconds: tuple[int, int] = (8, 14),
                            seed: int = 0, noise: float = 0.5, splits=(0.6, 0.2, 0.2),
                            dims: dict[str, int] | None = None, shard_size: int | None = None,
                            tables: tuple[str, ...] = TABLES, progress: bool = False) -> dict:
    """Write the layout above under ``ddir``; return ``{video_id: latent (T, 2)}``."""
    ddir = Path(ddir)
    dims = dict(DIMS if dims is None else dims)
    rng = np.random.default_rng(seed + 1)
    lat = latent(n_videos, seconds, seed)
    vids = sorted(lat)
    n_tr, n_va = int(splits[0] * n_videos), int(splits[1] * n_videos)
    split = {v: ("train" if i < n_tr else "val" if i < n_tr + n_va else "test") for i, v in enumerate(vids)}
    _write_features(ddir, lat, vids, dims, shard_size or max(n_videos, 1), noise, rng, progress)
    (ddir / "ingest").mkdir(parents=True, exist_ok=True)
    pl.DataFrame({"video_id": vids, "split": [split[v] for v in vids]}).write_parquet(ddir / "ingest" / "probe.parquet")
    lab = ddir / "labels"
    lab.mkdir(parents=True, exist_ok=True)
    if "vce" in tables:
        _write_vce(lab / "vce.parquet", lat, vids, split, rng)
    if "v2v" in tables:
        _write_v2v(lab, lat, vids, split, rng)
    per_second = [t for t in ("eev", "danmaku", "viewer_valence") if t in tables]
    if per_second:
        _write_per_second(lab, lat, vids, split, rng, per_second)
    if "liris_accede" in tables:  # its own generator: the tables above stay as they were
        _write_liris_accede(lab / "liris_accede.parquet", lat, vids, split, np.random.default_rng(seed + 7))
    return lat


def _write_liris_accede(path: Path, lat: dict, vids: list[str], split: dict, rng: np.random.Generator) -> None:
    # LIRIS-ACCEDE: valence and arousal values on its 1-5 scale from the mean latent, plus noise
    m = np.stack([lat[v].mean(0) for v in vids])
    values = 3.0 + 0.5 * m + rng.normal(0, 0.1, m.shape)
    pl.DataFrame({"video_id": vids, "split": [split[v] for v in vids], "valence": values[:, 0],
                  "arousal": values[:, 1]}).write_parquet(path)


def _write_features(ddir: Path, lat: dict, vids: list[str], dims: dict[str, int], shard_size: int,
                    noise: float, rng: np.random.Generator, progress: bool) -> None:
    """One HDF5 file per (extractor, shard), in the features stage's format (its
    :func:`~evoke.features.stage.per_step_dataset`: ``values`` gzip level 4 in chunks of up
    to 256 steps; ``timestamps_s`` and ``mask`` plain; the index in its ``STATUS_SCHEMA``), so
    that reading them costs what reading the store costs. Each extractor is a noisy linear map
    of the latent, generated a whole shard at a time (the noise drawn in one block per shard:
    the same stream, video after video, as one draw per video)."""
    from evoke.features.stage import STATUS_SCHEMA, per_step_dataset

    maps = {e: rng.normal(0, 1, (2, d)) for e, d in dims.items()}
    index = []
    shards = [vids[i:i + shard_size] for i in range(0, len(vids), shard_size)]
    for e, d in dims.items():
        (ddir / "features" / e).mkdir(parents=True, exist_ok=True)
        for k, shard in enumerate(tqdm(shards, desc=f"synthetic {e}", disable=not progress, mininterval=5)):
            name = f"s{k:05d}"
            rel = f"features/{e}/{name}.h5"
            z = np.concatenate([lat[v] for v in shard])
            values = (z @ maps[e]).astype(np.float32)
            values += rng.standard_normal((len(z), d), dtype=np.float32) * np.float32(noise)
            ends = np.cumsum([len(lat[v]) for v in shard])
            with h5py.File(ddir / rel, "w") as f:
                f.attrs.update(h5_attrs(stage="features", extractor=e, shard=name, synthetic=True))
                for v, end in zip(shard, ends):
                    n = len(lat[v])
                    g = f.create_group(v)
                    per_step_dataset(g, "values", values[end - n:end])
                    g.create_dataset("timestamps_s", data=np.arange(n, dtype=np.float64))
                    g.create_dataset("mask", data=np.ones(n, bool))
                    g.attrs.update(h5_attrs(extractor=e, dim=d))
                    index.append((v, name, e, "ok", None, n, n, d, rel, v))
    pl.DataFrame(index, orient="row", schema=STATUS_SCHEMA).write_parquet(ddir / "features" / "index.parquet")


def _write_vce(path: Path, lat: dict, vids: list[str], split: dict, rng: np.random.Generator) -> None:
    # VCE: distribution from a softmax of emotion prototypes' proximity to the mean latent
    proto = rng.normal(0, 1.2, (len(VCE_EMOTIONS), 2))
    rows = []
    for v in vids:
        m = lat[v].mean(0)
        p = _softmax(-((m - proto) ** 2).sum(1) / 0.5 + rng.normal(0, 0.3, len(proto)))
        p = np.where(p > 0.02, p, 0.0)
        p = p / p.sum()
        intensity = np.clip(p * 3, 0, 1)
        top = np.argsort(-p)[:3]
        rows.append({"video_id": v, "split": split[v], **{f"intensity_{e}": float(intensity[k])
                                                          for k, e in enumerate(VCE_EMOTIONS)},
                     **{f"p_{e}": float(p[k]) for k, e in enumerate(VCE_EMOTIONS)},
                     "top1": VCE_EMOTIONS[top[0]], "top2": VCE_EMOTIONS[top[1]], "top3": VCE_EMOTIONS[top[2]],
                     "all_zero": False})
    vce = pl.DataFrame(rows)
    # make joy track valence so the emotion-to-pleasantness analysis has something to find
    joy_val = {v: float(1 / (1 + np.exp(-2 * lat[v][:, 0].mean()))) for v in vids}
    vce = vce.with_columns(pl.col("video_id").replace_strict(joy_val).alias("intensity_joy"))
    vce.write_parquet(path)


def _write_v2v(lab: Path, lat: dict, vids: list[str], split: dict, rng: np.random.Generator) -> None:
    # V2V: pairs within each split ordered by mean valence
    pairs, lists = [], []
    for s in ("train", "val", "test"):
        sv = np.array([v for v in vids if split[v] == s])
        for _ in range(3 * len(sv)):
            a, b = rng.choice(sv, 2, replace=False)
            va, vb = lat[a][:, 0].mean(), lat[b][:, 0].mean()
            if abs(va - vb) < 0.1:
                continue
            pairs.append({"less_pleasant": a if va < vb else b, "more_pleasant": b if va < vb else a, "split": s})
        for _ in range(max(1, len(sv) // 2)):
            c = rng.choice(sv, 3, replace=False)
            lists.append({"videos": sorted(c.tolist(), key=lambda x: lat[x][:, 0].mean()), "split": s})
    pl.DataFrame(pairs).unique(["less_pleasant", "more_pleasant"], maintain_order=True).write_parquet(
        lab / "v2v_pairs.parquet")
    pl.DataFrame(lists, schema={"videos": pl.List(pl.String), "split": pl.String}).write_parquet(
        lab / "v2v_lists.parquet")


def _write_per_second(lab: Path, lat: dict, vids: list[str], split: dict, rng: np.random.Generator,
                      tables: list[str]) -> None:
    """The per-second tables, a video at a time. Every second draws, in this order, one uniform
    per EEV expression, one normal per danmaku emotion (sd 0.2) and one per viewer (sd 0.3),
    whichever tables are asked for (the tables do not depend on which others are written)."""
    w = rng.normal(0, 1.5, (len(EEV_EXPRESSIONS), 2))
    dw = rng.normal(0, 1.0, (len(EMOTIONS), 2))
    viewers = ("a", "b")
    n_e, n_d = len(EEV_EXPRESSIONS), len(EMOTIONS)
    T = np.array([len(lat[v]) for v in vids], dtype=np.int64)
    z = np.concatenate([lat[v] for v in vids]) if vids else np.zeros((0, 2))
    u = np.empty((len(z), n_e))
    g = np.empty((len(z), n_d + len(viewers)))
    for i in range(len(z)):  # the draws interleave per second: one call each, in the stream's order
        u[i] = rng.random(n_e)
        g[i] = rng.standard_normal(n_d + len(viewers))
    t = np.concatenate([np.arange(n) for n in T]) if vids else np.zeros(0, np.int64)
    vid_col = np.repeat(np.array(vids, dtype=object), T).tolist()
    split_col = [split[v] for v in vid_col]
    time_s = t.astype(np.float64)
    if "eev" in tables:
        prob = 1 / (1 + np.exp(-(z @ w.T - 0.5)))
        pl.DataFrame({"video_id": vid_col, "split": split_col, "time_s": time_s,
                      "n_samples": np.full(len(z), 6, np.int64),
                      **{e: (u[:, k] < prob[:, k]).astype(np.int64) for k, e in enumerate(EEV_EXPRESSIONS)}}
                     ).write_parquet(lab / "eev.parquet")
    if "danmaku" in tables:
        p = _softmax(z @ dw.T + 0.2 * g[:, :n_d])
        pl.DataFrame({"video_id": vid_col, "time_s": time_s, "window": t // 5, "is_empty": np.zeros(len(z), bool),
                      **{f"p_{e}": p[:, k] for k, e in enumerate(EMOTIONS)}}
                     ).write_parquet(lab / "danmaku_seconds.parquet")
    if "viewer_valence" in tables:
        cols = {"video_id": vid_col, "split": split_col, "time_s": time_s, "n_viewers": np.full(len(z), 2, np.int64),
                "valence": np.tanh(z[:, 0]), "valence_bin": (z[:, 0] >= 0).astype(np.int64)}
        for k, name in enumerate(viewers):
            val = z[:, 0] + (0.3 if k else -0.3) + 0.3 * g[:, n_d + k]
            cols[f"valence_bin__{name}"] = pl.Series((val >= 0).astype(np.int64)).scatter(
                np.flatnonzero(t == 0), None) if k else (val >= 0).astype(np.int64)
        vv = pl.DataFrame(cols)
        vv.write_parquet(lab / "viewer_valence.parquet")
        _viewer_segments(vv, viewers).write_parquet(lab / "viewer_valence_segments.parquet")


def _viewer_segments(per_second: pl.DataFrame, viewers, length_s: float = 2.0) -> pl.DataFrame:
    """2-second segments of the per-second viewer table (as ``labels continuous --segment-length``
    writes them): mean valence, binarised at 0; each viewer's bin by majority of its seconds."""
    seg = per_second.with_columns((pl.col("time_s") // length_s).cast(pl.Int32).alias("segment"))
    return seg.group_by("video_id", "split", "segment").agg(
        (pl.col("segment").first() * length_s).cast(pl.Float64).alias("start_s"),
        ((pl.col("segment").first() + 1) * length_s).cast(pl.Float64).alias("end_s"),
        pl.col("n_viewers").max(), pl.col("valence").mean(),
        (pl.col("valence").mean() >= 0).cast(pl.Int8).alias("valence_bin"),
        *[pl.when(pl.col(f"valence_bin__{v}").is_null().all()).then(None)
          .otherwise((pl.col(f"valence_bin__{v}").mean() >= 0.5).cast(pl.Int8)).alias(f"valence_bin__{v}")
          for v in viewers]).sort("video_id", "segment")
