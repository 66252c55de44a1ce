"""Heads benchmark (issue 5): full-head epoch time and light-head fit time, with peak memory.

Two datasets:

* ``demo``: ``results/demo`` (run the demo first), the VCE task on the config's
  feature set (colour + motion);
* ``synthetic``: a VCE-sized set written by :func:`evoke.heads.synthetic.write_synthetic_dataset`:
  ``--videos`` (50,000) videos of ``--seconds`` (5-30) seconds with the widths of
  the papers' features (``--dims``, efficientnet 1280 + vggish 128 per second),
  200 videos per shard like the features stage, float32, about 5 GB on disk
  (cached in ``bench/out/heads_synthetic_*`` between runs).

Every measurement runs in its own child process, which reports its wall time
and peak resident memory (``ru_maxrss``). Each has a reference timed in the
same child:

* ``pool``: :meth:`FeatureSet.load` (``feature_memory_mb`` 2048) and the pooled
  matrix of every VCE unit; reference: reading the same HDF5 datasets with
  h5py, nothing else;
* ``lightgbm``: the ``lightgbm`` distribution head (:func:`fit_distribution`,
  soft-label objective) for ``--lgbm-rounds`` boosting rounds on the pooled
  matrix; reference: LightGBM's built-in ``multiclass`` on the argmax labels,
  same rounds and parameters. The per-round time times the configured rounds
  (200) is the extrapolated full fit;
* ``linear``: the ``linear`` distribution head at one ``C`` (without a set
  ``C`` the validation grid fits :data:`C_GRID`'s five); no reference: seconds
  and memory only; on the synthetic set only with ``--linear-synthetic``;
* ``full_paper`` and ``full_former``: one epoch of the full head
  (``train_model``) through the feature store, for each of two networks on
  the VCE task, in the same run: ``paper``, the VCE defaults
  (:meth:`FullConfig.for_task`: the EEV network, GRU widths by role, image 512
  and audio 128, batch-norm context gating, YouTube-8M's MoeModel, 4
  experts, batch 32); ``former``, the network evoke had before issue 15 as
  options (one 128-unit GRU per modality, gating with a bias, the hidden-layer
  mixture of 4 experts of 256, ``l1_softmax``). Reference: the model alone
  (forward, backward, step) on four training batches cut beforehand and held
  in memory, timed over up to 40 batches (``--probe-batches``) and scaled to the epoch's batch
  count, so the ratio is the cost of reading, cutting and padding the
  sequences and of the validation pass. Beside the wall times, ``fit_cpu_s``
  and ``reference_cpu_s`` are the child's CPU seconds (steadier when other
  jobs share the cores).

The COGNIMUSE networks (issue 15, :mod:`evoke.heads.cognimuse`), ``--only cognimuse``:
a synthetic viewer_valence set of ``--cognimuse-videos`` videos (5-30 s, ``i3d`` 1024-d
per second, the paper's visual feature; 2-second segments, 2 viewers + the average, each
segment given 6-18 words drawn from 5,000) trained for one epoch on its segments:
``cognimuse_st`` (the single-task network of the average viewer), ``cognimuse_mt`` (the
multi-task network, 3 branches) and, as the reference in the same run, ``eev_mt`` (the EEV
network as viewer_valence's multi-task option, ``network: eev``, on the same units: 60-step
windows ending at each segment's last second). Each reports the epoch's wall and CPU
seconds and the child's peak RSS. ``--reference-batches K`` times the reference over the first K
training batches of its epoch (epoch 0's order) and the same share of the validation units,
through the same ``fit_full``, and scales both to the whole epoch (``measured:
first_batches_scaled`` in the JSON; a full epoch of it at 50,000 videos is about 48 min on one core).
The synthetic sets are written as the features stage writes its shards (gzip-4 values).

    .venv/bin/python bench/heads.py                       # demo + 50,000 videos (hours on 2 cores: two full heads)
    .venv/bin/python bench/heads.py --only cognimuse --cognimuse-videos 5000
    .venv/bin/python bench/heads.py --only cognimuse --threads 1 --reference-batches 300  # 50,000 videos
    .venv/bin/python bench/heads.py --only cognimuse_text --threads 1  # the text-only ablation on the
                                                                      # 7 COGNIMUSE films' subtitles (dev data)
    .venv/bin/python bench/heads.py --videos 2000         # a quick look
    .venv/bin/python bench/heads.py --only demo

Writes ``bench/out/heads.json``; figures and machine: ``bench/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "bench" / "out"
FULL = {"epochs": 1, "patience": 1}  # other full-head settings: the VCE task's defaults
# the networks timed (issue 15): the papers' (the defaults) and evoke's former one, as options
FULL_VARIANTS = {
    "paper": {},
    "former": {"gru_hidden": 128, "moe": "hidden_layer", "gating_batch_norm": False, "moe_dim": 256,
               "n_experts": 4, "loss": "l1_softmax"},
}


def _cpu_s() -> float:
    """CPU seconds of this process (user + system): steadier than wall time on a shared machine."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _vce(ddir: Path, extractors: list[str]):
    """The feature set (through the heads' default cache) and the VCE units that have features."""
    from evoke.heads.data import DEFAULT_MEMORY_MB, FeatureSet
    from evoke.tasks import get_task
    from evoke.tasks.base import restrict_to_features

    task = get_task("vce")({"seed": 0})
    fs = FeatureSet.load(ddir, extractors, memory_mb=DEFAULT_MEMORY_MB)
    return fs, restrict_to_features(task.load(ddir, task.label_paths(ddir)), fs, False)


# ------------------------------------------------------------------ children


def child_pool(ddir: Path, extractors: list[str]) -> dict:
    import h5py
    import polars as pl

    from evoke.heads.data import DEFAULT_MEMORY_MB, FeatureSet

    index = pl.read_parquet(ddir / "features" / "index.parquet").filter(pl.col("extractor").is_in(extractors))
    t = time.perf_counter()
    n = 0
    for (path,), rows in index.group_by(["h5_path"], maintain_order=True):
        with h5py.File(ddir / path, "r") as f:
            for g in rows["h5_group"]:
                n += f[g]["values"][()].size
    ref = time.perf_counter() - t
    t = time.perf_counter()
    fs = FeatureSet.load(ddir, extractors, memory_mb=DEFAULT_MEMORY_MB)
    vids = sorted(fs.video_ids)
    X = fs.pooled_matrix(vids, None, 60)
    run = time.perf_counter() - t
    return {"seconds": run, "reference_s": ref, "ratio": run / ref, "videos": len(vids),
            "pooled_shape": list(X.shape), "values_gib": n * 4 / 2 ** 30, "peak_rss_mib": _rss_mib()}


def _pooled(ddir: Path, extractors: list[str]):
    fs, data = _vce(ddir, extractors)
    X = {s: fs.pooled_matrix(u.video_id, None, 60) for s, u in data.splits.items()}
    return X, data


def child_lightgbm(ddir: Path, extractors: list[str], rounds: int) -> dict:
    import lightgbm as lgb
    import numpy as np

    from evoke.heads.light import _lgbm_params, fit_distribution

    X, data = _pooled(ddir, extractors)
    tr = data.splits["train"]
    t = time.perf_counter()
    fit_distribution("lightgbm", X["train"], tr.y, [X["test"]], 0, {"n_estimators": rounds})
    run = time.perf_counter() - t
    p = _lgbm_params({"n_estimators": rounds}, 0)
    t = time.perf_counter()
    ds = lgb.Dataset(X["train"], label=tr.y.argmax(1),
                     params={"verbose": -1, "min_data_in_leaf": p["min_child_samples"]}).construct()
    construct = time.perf_counter() - t
    lgb.train({k: v for k, v in p.items() if k != "n_estimators"} | {"objective": "multiclass",
                                                                      "num_class": tr.y.shape[1]},
              ds, num_boost_round=rounds)
    ref = time.perf_counter() - t
    # per round: the reference's rounds alone; the head's, assuming the same binning cost
    per_round = (ref - construct) / rounds
    head_per_round = (run - construct) / rounds
    return {"seconds": run, "reference_s": ref, "ratio": run / ref, "rounds": rounds,
            "construct_s": construct, "reference_round_s": per_round, "head_round_s": head_per_round,
            "head_200_rounds_s": construct + 200 * head_per_round,
            "train_rows": int(X["train"].shape[0]), "features": int(X["train"].shape[1]),
            "classes": int(np.count_nonzero(tr.y.sum(0))), "peak_rss_mib": _rss_mib()}


def child_linear(ddir: Path, extractors: list[str]) -> dict:
    from evoke.heads.light import fit_distribution

    X, data = _pooled(ddir, extractors)
    tr = data.splits["train"]
    t = time.perf_counter()
    fit_distribution("linear", X["train"], tr.y, [X["test"]], 0, {"C": 1.0})
    run = time.perf_counter() - t
    return {"seconds": run, "train_rows": int(X["train"].shape[0]), "features": int(X["train"].shape[1]),
            "peak_rss_mib": _rss_mib()}


def child_full(ddir: Path, extractors: list[str], variant: str = "paper", probe_batches: int = 40,
               threads: int = 2) -> dict:
    import numpy as np
    import torch

    from evoke.heads.full import FullConfig, compute_loss, fit_full
    from evoke.heads.models import count_parameters

    from evoke.heads import full

    torch.set_num_threads(threads)
    spent = {"stats_s": 0.0, "stats_cpu_s": 0.0}
    _timed_stats(full, "input_stats", spent)
    t = time.perf_counter()
    fs, data = _vce(ddir, extractors)
    load_s = time.perf_counter() - t
    cfg = FullConfig.for_task("vce", FULL | FULL_VARIANTS[variant])
    tr, va = data.splits["train"], data.splits["val"]
    ckpt = OUT / "heads_ckpt" / f"{ddir.name}_{variant}"
    shutil.rmtree(ckpt, ignore_errors=True)  # a checkpoint left by an earlier run would be resumed
    t, c = time.perf_counter(), _cpu_s()
    _, history, model = fit_full(fs, tr.as_dict(), va.as_dict(), [], "l1_softmax", tr.y.shape[1], cfg, ckpt)
    run, run_cpu = time.perf_counter() - t, _cpu_s() - c
    loss = cfg.loss or "l1_softmax"
    epoch_s = history[0]["epoch_s"]
    # reference: the model alone on training batches already cut and held in memory
    n_batches = -(-len(tr) // cfg.train.batch_size)
    probe = min(n_batches, probe_batches)
    bs = cfg.train.batch_size
    batches = []
    for b in range(min(4, n_batches)):
        seqs = [fs.sequence(v, None, cfg.seq_len) for v in tr.video_id[b * bs:(b + 1) * bs]]
        batches.append({e: torch.from_numpy(np.stack([s[e] for s in seqs])) for e in fs.extractors})
    y = torch.as_tensor(tr.y[:bs], dtype=torch.float32)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.train.lr)
    model.train()

    def step(x):
        value = compute_loss(loss, model(x), y[:len(next(iter(x.values())))], None, model.output_kind)
        opt.zero_grad()
        value.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.clip_norm)
        opt.step()

    step(batches[0])  # warm-up (first-call allocations), not timed
    t, c = time.perf_counter(), _cpu_s()
    for i in range(probe):
        step(batches[i % len(batches)])
    bare_train = (time.perf_counter() - t) / probe * n_batches
    bare_cpu = (_cpu_s() - c) / probe * n_batches
    return {"variant": variant, "n_parameters": count_parameters(model), "gru_hidden": model.init_args["gru_hidden"],
            "moe": cfg.moe, "loss": loss, "batch_size": bs,
            "epoch_s": epoch_s, "fit_s": run, "fit_cpu_s": run_cpu, "train_cpu_s": run_cpu - spent["stats_cpu_s"],
            **spent, "load_s": load_s, "reference_cpu_s": bare_cpu, "train_units": len(tr), "val_units": len(va),
            "batches": n_batches, "reference_s": bare_train, "ratio": epoch_s / bare_train,
            "reference_batches_timed": probe, "peak_rss_mib": _rss_mib()}


def _viewer_units(ddir: Path, extractors: list[str]):
    from evoke.heads.data import DEFAULT_MEMORY_MB, FeatureSet
    from evoke.tasks import get_task
    from evoke.tasks.base import restrict_to_features

    task = get_task("viewer_valence")({"seed": 0})
    fs = FeatureSet.load(ddir, extractors, memory_mb=DEFAULT_MEMORY_MB)
    return fs, restrict_to_features(task.load(ddir, task.label_paths(ddir)), fs, True)


def _timed_stats(module, name: str, spent: dict) -> None:
    """Wrap ``module.name`` (the input-statistics pass a fit makes before its first epoch) so
    that its wall and CPU seconds add up in ``spent``: the fit's CPU less these is its epoch's."""
    fn = getattr(module, name)

    def timed(*a, **k):
        t, c = time.perf_counter(), _cpu_s()
        try:
            return fn(*a, **k)
        finally:
            spent["stats_s"] += time.perf_counter() - t
            spent["stats_cpu_s"] += _cpu_s() - c

    setattr(module, name, timed)


def _fraction(tr, va, batch_size: int, seed: int, k: int):
    """The first ``k`` training batches of epoch 0's order (``train_model``'s permutation) and
    the same fraction of the validation units (their first ones, the order they are evaluated
    in): the part of the epoch a reference is timed over, and that fraction."""
    import numpy as np

    n_batches = -(-len(tr) // batch_size)
    f = min(1.0, k / n_batches)
    order = np.random.default_rng([seed, 0]).permutation(len(tr))[:k * batch_size]
    return tr.take(np.sort(order)), va.take(np.arange(max(1, round(f * len(va))))), f, n_batches


def child_cognimuse(ddir: Path, extractors: list[str], variant: str = "st", threads: int = 2,
                    reference_batches: int | None = None) -> dict:
    import torch

    from evoke.heads import cognimuse, full
    from evoke.heads.cognimuse import fit_cognimuse
    from evoke.heads.full import FullConfig, fit_full
    from evoke.heads.models import count_parameters

    torch.set_num_threads(threads)
    spent = {"stats_s": 0.0, "stats_cpu_s": 0.0}
    _timed_stats(full, "input_stats", spent)
    _timed_stats(cognimuse, "visual_stats", spent)
    t = time.perf_counter()
    fs, data = _viewer_units(ddir, extractors)
    load_s = time.perf_counter() - t
    tr, va = data.splits["train"], data.splits["val"]
    ckpt = OUT / "heads_ckpt" / f"{ddir.name}_cognimuse_{variant}"
    shutil.rmtree(ckpt, ignore_errors=True)
    scaled = {}
    t, c = time.perf_counter(), _cpu_s()
    if variant == "eev_mt":
        cfg = FullConfig.for_task("viewer_valence", FULL | {"network": "eev"})
        if reference_batches:  # the first K batches of the epoch (and that share of validation), scaled
            sub_tr, sub_va, f, n_batches = _fraction(tr, va, cfg.train.batch_size, cfg.train.seed,
                                                     reference_batches)
            scaled = {"timed_batches": min(reference_batches, n_batches), "epoch_batches": n_batches,
                      "timed_fraction": f, "timed_train_units": len(sub_tr), "timed_val_units": len(sub_va)}
            tr_d, va_d = sub_tr.as_dict(), sub_va.as_dict()
        else:
            tr_d, va_d = tr.as_dict(), va.as_dict()
        _, history, net = fit_full(fs, tr_d, va_d, [], "bce", 1, cfg, ckpt, n_branches=len(data.target_names))
    else:
        cfg = FullConfig.for_task("viewer_valence", FULL)
        w = {"train": tr.windows(), "val": va.windows()}
        if variant == "st":  # the average viewer's network (the ST head trains one per column)
            w = {k: {**d, "y": d["y"][:, :1], "mask": d["mask"][:, :1]} for k, d in w.items()}
        _, history, net, vocab = fit_cognimuse(fs, w["train"], w["val"], [], cfg, ckpt, variant == "mt")
    fit_s, fit_cpu = time.perf_counter() - t, _cpu_s() - c
    out = {"variant": variant, "n_parameters": count_parameters(net), "batch_size": cfg.train.batch_size,
           "train_units": len(tr), "val_units": len(va), "batches": -(-len(tr) // cfg.train.batch_size),
           "epoch_s": history[0]["epoch_s"], "fit_s": fit_s, "fit_cpu_s": fit_cpu,
           "train_cpu_s": fit_cpu - spent["stats_cpu_s"], **spent, "load_s": load_s,
           "vocabulary": None if variant == "eev_mt" else len(vocab), "peak_rss_mib": _rss_mib()}
    if scaled:  # measured on a fraction of the epoch: the measured figures and the epoch's, scaled
        f = scaled["timed_fraction"]
        out |= {"measured": "first_batches_scaled", **scaled, "timed_epoch_s": out["epoch_s"],
                "timed_train_cpu_s": out["train_cpu_s"], "epoch_s": out["epoch_s"] / f,
                "train_cpu_s": out["train_cpu_s"] / f}
    else:
        out["measured"] = "full_epoch"
    return out


def cognimuse_text(shared: Path, epochs: int, threads: int) -> dict:
    """The paper's text-only ablation on real subtitles: the 7 COGNIMUSE films' intended valence
    per subtitle cue (``shared/continuous``: dev data, research use), leave-one-film-out (the
    next film validating), the ST text-only network on the average column, beside
    always-Positive and the training majority on the same test film."""
    import numpy as np
    import torch

    from evoke.heads.cognimuse import fit_cognimuse
    from evoke.heads.data import FeatureSet
    from evoke.heads.full import FullConfig
    from evoke.labels.viewers import ContinuousBuilder, ContinuousConfig

    torch.set_num_threads(threads)
    films = ["BMI", "CHI", "CRA", "DEP", "FNE", "GLA", "LOR"]
    d = shared / "continuous"
    res = ContinuousBuilder(ContinuousConfig(dat_columns=("valence", "arousal"))).run(
        ratings=[d / f"{f}_intended_1.dat" for f in films], subtitles=[d / f"{f}_subtitle.srt" for f in films])
    seg = res.extra["segments"].filter(res.extra["segments"]["valence_bin"].is_not_null())
    cfg = FullConfig.for_task("viewer_valence", {"modalities": "text", "epochs": epochs, "patience": 3})
    empty = FeatureSet({}, [])
    out = {"segments": seg.height, "epochs": epochs, "folds": {}}
    for i, film in enumerate(films):
        val_film = films[(i + 1) % len(films)]
        part = {k: seg.filter(seg["video_id"].is_in(v)) for k, v in
                (("test", [film]), ("val", [val_film]), ("train", [f for f in films if f not in (film, val_film)]))}
        w = {k: {"video_id": p["video_id"].to_list(), "start_s": p["start_s"].to_list(), "end_s": p["end_s"].to_list(),
                 "text": p["text"].to_list(), "y": p["valence_bin"].to_numpy().astype(float)[:, None],
                 "mask": np.ones((p.height, 1), bool)} for k, p in part.items()}
        t = time.perf_counter()
        (pred,), history, _, vocab = fit_cognimuse(empty, w["train"], w["val"], [w["test"]], cfg,
                                                   OUT / "heads_ckpt" / f"cognimuse_text_{film}", False)
        y = w["test"]["y"][:, 0]
        majority = float(w["train"]["y"].mean() >= 0.5)
        out["folds"][film] = {"n_test": int(y.size), "accuracy": float(((pred[:, 0] >= 0.5) == (y >= 0.5)).mean()),
                              "always_positive": float((y >= 0.5).mean()),
                              "majority_class": float(((y >= 0.5) == majority).mean()),
                              "vocabulary": len(vocab), "epochs_run": len(history), "fit_s": time.perf_counter() - t}
        print(f"  {film}: {json.dumps(out['folds'][film])}", flush=True)
    for k in ("accuracy", "always_positive", "majority_class"):
        out[f"mean_{k}"] = float(np.mean([f[k] for f in out["folds"].values()]))
    return out


def viewer_synthetic(n: int, seconds: tuple[int, int]) -> tuple[Path, float | None]:
    """The synthetic viewer_valence set (i3d 1024-d), its segments with synthetic subtitle words."""
    import numpy as np
    import polars as pl

    from evoke.heads.synthetic import write_synthetic_dataset

    d = OUT / f"heads_viewer_synthetic_{n}_i3d1024_{seconds[0]}-{seconds[1]}"
    stamp = d / "done.json"
    if stamp.exists():
        return d, None
    t = time.perf_counter()
    write_synthetic_dataset(d, n_videos=n, seconds=seconds, seed=0, dims={"i3d": 1024}, shard_size=200,
                            tables=("viewer_valence",), progress=True)
    path = d / "labels" / "viewer_valence_segments.parquet"
    seg = pl.read_parquet(path)
    rng = np.random.default_rng(0)
    words = np.array([f"w{i}" for i in range(5000)])
    text = [" ".join(words[rng.integers(0, 5000, int(k))]) for k in rng.integers(6, 19, seg.height)]
    seg.with_columns(pl.Series("text", text)).write_parquet(path)
    took = time.perf_counter() - t
    stamp.write_text(json.dumps({"seconds": took}))
    return d, took


CHILDREN = {"pool": child_pool, "lightgbm": child_lightgbm, "linear": child_linear, "full_paper": child_full,
            "full_former": child_full}


COGNIMUSE = {"cognimuse_st": "st", "cognimuse_mt": "mt", "eev_mt": "eev_mt"}


def run_child(kind: str, ddir: Path, extractors: list[str], **kw) -> dict:
    args = json.dumps({"kind": kind, "ddir": str(ddir), "extractors": extractors, "kw": kw})
    env = dict(os.environ, TQDM_DISABLE="1", HF_HUB_OFFLINE="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO / "src"), env.get("PYTHONPATH")) if p)
    t, load, start = time.perf_counter(), os.getloadavg()[0], time.strftime("%H:%M:%S UTC", time.gmtime())
    proc = subprocess.run([sys.executable, __file__, "--child", args], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"{kind} on {ddir} failed:\n{proc.stderr[-3000:]}")
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    res |= {"child_wall_s": time.perf_counter() - t, "started": start,
            "ended": time.strftime("%H:%M:%S UTC", time.gmtime()), "load_average_start": load,
            "load_average_end": os.getloadavg()[0]}
    print(f"  {kind}: {json.dumps(res)}", flush=True)
    return res


def synthetic(n: int, dims: dict[str, int], seconds: tuple[int, int]) -> tuple[Path, float | None]:
    from evoke.heads.synthetic import write_synthetic_dataset

    d = OUT / f"heads_synthetic_{n}_{'_'.join(f'{k}{v}' for k, v in dims.items())}_{seconds[0]}-{seconds[1]}"
    stamp = d / "done.json"
    if stamp.exists():
        return d, None
    t = time.perf_counter()
    write_synthetic_dataset(d, n_videos=n, seconds=seconds, seed=0, dims=dims, shard_size=200,
                            tables=("vce",), progress=True)
    took = time.perf_counter() - t
    stamp.write_text(json.dumps({"seconds": took}))
    return d, took


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--child")
    ap.add_argument("--videos", type=int, default=50_000)
    ap.add_argument("--dims", default="efficientnet=1280,vggish=128")
    ap.add_argument("--seconds", default="5,30")
    ap.add_argument("--lgbm-rounds", type=int, default=3, help="rounds timed on the synthetic set (demo: 200)")
    ap.add_argument("--only", choices=["demo", "synthetic", "cognimuse", "cognimuse_text"])
    ap.add_argument("--shared", type=Path, default=Path(os.environ.get("EVOKE_SHARED_DATA", REPO.parent / "shared" / "data")),
                    help="cognimuse_text: the dev data folder with continuous/{FILM}_intended_1.dat and _subtitle.srt")
    ap.add_argument("--epochs", type=int, default=10, help="cognimuse_text: epochs per fold (patience 3)")
    ap.add_argument("--cognimuse-videos", type=int, default=50_000, help="videos of the COGNIMUSE networks' set")
    ap.add_argument("--threads", type=int, default=2, help="torch threads of the full heads' children")
    ap.add_argument("--probe-batches", type=int, default=40,
                    help="training batches the full heads' model-alone reference times (scaled to the epoch)")
    ap.add_argument("--reference-batches", type=int, metavar="K",
                    help="cognimuse: time the EEV reference over the first K training batches of its epoch "
                         "(and that share of the validation units), scaled to the epoch (default: a full epoch)")
    ap.add_argument("--skip", action="append", default=[], choices=sorted(CHILDREN) + sorted(COGNIMUSE))
    ap.add_argument("--linear-synthetic", action="store_true",
                    help="also fit the linear head on the synthetic set (L-BFGS: hours at 50,000 x 4,224)")
    args = ap.parse_args()
    if args.child:
        spec = json.loads(args.child)
        fn = child_cognimuse if spec["kind"] in COGNIMUSE else CHILDREN[spec["kind"]]
        res = fn(Path(spec["ddir"]), spec["extractors"], **spec["kw"])
        print(json.dumps(res))
        return 0
    OUT.mkdir(parents=True, exist_ok=True)
    results = {"load_average_start": os.getloadavg()[0], "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    if args.only == "cognimuse_text":
        results["cognimuse_text"] = cognimuse_text(args.shared, args.epochs, args.threads)
        results["load_average_end"] = os.getloadavg()[0]
        (OUT / "heads_cognimuse_text.json").write_text(json.dumps(results, indent=2))
        print(json.dumps(results, indent=2))
        return 0
    if args.only == "cognimuse":
        lo, hi = (int(x) for x in args.seconds.split(","))
        print(f"viewer_valence synthetic set: {args.cognimuse_videos} videos, i3d 1024, {lo}-{hi} s", flush=True)
        d, took = viewer_synthetic(args.cognimuse_videos, (lo, hi))
        results["cognimuse"] = {"videos": args.cognimuse_videos, "write_s": took}
        for kind, variant in COGNIMUSE.items():
            if kind not in args.skip:
                kw = {"reference_batches": args.reference_batches} if kind == "eev_mt" else {}
                results["cognimuse"][kind] = run_child(kind, d, ["i3d"], variant=variant, threads=args.threads, **kw)
                # written after each network: a long run cut short keeps what finished
                (OUT / f"heads_cognimuse_{args.cognimuse_videos}.json").write_text(json.dumps(results, indent=2))
        results["load_average_end"] = os.getloadavg()[0]
        (OUT / f"heads_cognimuse_{args.cognimuse_videos}.json").write_text(json.dumps(results, indent=2))
        print(json.dumps(results, indent=2))
        return 0
    runs = []
    if args.only != "synthetic":
        runs.append(("demo", REPO / "results" / "demo", ["colour", "motion"], 200))
    if args.only != "demo":
        dims = {k: int(v) for k, v in (kv.split("=") for kv in args.dims.split(","))}
        lo, hi = (int(x) for x in args.seconds.split(","))
        print(f"synthetic set: {args.videos} videos, {dims}, {lo}-{hi} s", flush=True)
        d, took = synthetic(args.videos, dims, (lo, hi))
        results["synthetic_write_s"] = took
        runs.append(("synthetic", d, sorted(dims), args.lgbm_rounds))
    for name, d, extractors, rounds in runs:
        print(f"{name}: {d}", flush=True)
        r = results[name] = {}
        for kind in CHILDREN:
            if kind in args.skip or (kind == "linear" and name == "synthetic" and not args.linear_synthetic):
                continue
            kw = {"rounds": rounds} if kind == "lightgbm" else {}
            if kind.startswith("full_"):
                kw = {"variant": kind.split("_", 1)[1], "probe_batches": args.probe_batches,
                      "threads": args.threads}
            r[kind] = run_child(kind, d, extractors, **kw)
            (OUT / "heads.json").write_text(json.dumps(results, indent=2))  # a run cut short keeps what finished
    results["load_average_end"] = os.getloadavg()[0]
    (OUT / "heads.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
