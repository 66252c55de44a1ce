"""Predict benchmark (issue 11): seconds per 1,000 videos for each head, against a training epoch.

On the synthetic VCE-sized set of ``bench/heads.py`` (``--videos`` videos of
5-30 s with efficientnet 1280-d + vggish 128-d per second, 200 videos a
shard), in one child process:

* the reference: one epoch of the full head (default sizes: 60 steps, hidden
  128, 4 experts, batch 32; train and validation pass) on the whole training
  split, through the feature store: the model then predicted with;
* the light heads fitted on a slice of the training split (``--fit-videos``,
  LightGBM ``--lgbm-rounds`` rounds, linear at C = 1), since their fit time is
  not what is measured (a LightGBM model's predict time grows with its trees:
  the figure is for that many rounds x 27 classes; the linear head on at most
  300 videos);
* each saved model (``model/``) applied with :func:`evoke.predict.run.predict_dataset`
  to every video of the set, read through the heads' bounded store
  (``train.feature_memory_mb``, 2048 MiB): wall seconds, seconds per 1,000
  videos, and the ratio to the training epoch.

    .venv/bin/python bench/predict.py --videos 10000

Writes ``bench/out/predict.json``; figures and machine: ``bench/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from heads import FULL, OUT, _rss_mib, _vce, synthetic  # noqa: E402  (bench/heads.py)


def child(ddir: Path, extractors: list[str], fit_videos: int, rounds: int) -> dict:
    import numpy as np
    import torch

    from evoke.predict.model import feature_identity, save_model
    from evoke.predict.run import predict_dataset
    from evoke.tasks import get_task
    from evoke.tasks.base import TaskData

    torch.set_num_threads(1)  # one thread: on a shared, loaded machine a second one only spins
    fs, data = _vce(ddir, extractors)
    n_videos = len(fs.video_ids)
    card = {"extractors": feature_identity(ddir, extractors), "frames": None, "feature_set": "+".join(extractors),
            "training": {"dataset": ddir.name}}
    small = {"train": fit_videos, "val": max(50, fit_videos // 4), "test": 50}
    out: dict = {"videos": n_videos, "fit_videos": fit_videos, "lgbm_rounds": rounds}
    for head in ("full", "lightgbm", "linear"):
        task = get_task("vce")({"seed": 0, "full": FULL, "lightgbm": {"n_estimators": rounds},
                                "linear": {"C": 1.0}})
        # the full head trains one epoch on the whole training split (the reference); the light
        # heads on a slice (their fit is not what is measured)
        cut = {s: (len(u) if head == "full" and s == "train" else small[s]) for s, u in data.splits.items()}
        if head == "linear":  # L-BFGS on 4,224 x 27 weights: a few hundred videos make a model
            cut["train"] = min(cut["train"], 300)
        sub = TaskData({s: u.take(np.arange(min(cut[s], len(u)))) for s, u in data.splits.items()},
                       data.target_names, data.extra, data.val_from_train)
        run = OUT / "predict_models" / head
        shutil.rmtree(run, ignore_errors=True)
        t = time.perf_counter()
        _, info = task.fit_predict(head, fs, sub, run)
        fit_s = time.perf_counter() - t
        save_model(run, task.fitted, card)
        if head == "full":
            out["epoch_s"] = info["history"][0]["epoch_s"]
            out["epoch_train_units"] = len(sub.splits["train"])
        t = time.perf_counter()
        table = predict_dataset(run, ddir)
        pred_s = time.perf_counter() - t
        assert table.height == n_videos, (table.height, n_videos)
        print(f"{head}: fit {fit_s:.1f} s, predict {pred_s:.1f} s for {n_videos} videos", file=sys.stderr, flush=True)
        out[head] = {"fit_s": fit_s, "fit_units": len(sub.splits["train"]), "predict_s": pred_s,
                     "s_per_1000_videos": pred_s / n_videos * 1000, "peak_rss_mib": _rss_mib()}
    for head in ("full", "lightgbm", "linear"):
        out[head]["ratio_to_epoch"] = out[head]["predict_s"] / out["epoch_s"]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--child")
    ap.add_argument("--videos", type=int, default=50_000)
    ap.add_argument("--dims", default="efficientnet=1280,vggish=128")
    ap.add_argument("--seconds", default="5,30")
    ap.add_argument("--fit-videos", type=int, default=2000)
    ap.add_argument("--lgbm-rounds", type=int, default=20)
    args = ap.parse_args()
    if args.child:
        spec = json.loads(args.child)
        print(json.dumps(child(Path(spec["ddir"]), spec["extractors"], spec["fit_videos"], spec["rounds"])))
        return 0
    OUT.mkdir(parents=True, exist_ok=True)
    dims = {k: int(v) for k, v in (kv.split("=") for kv in args.dims.split(","))}
    lo, hi = (int(x) for x in args.seconds.split(","))
    d, took = synthetic(args.videos, dims, (lo, hi))
    results = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "load_average_start": os.getloadavg()[0],
               "synthetic": str(d), "synthetic_write_s": took, "dims": dims}
    spec = json.dumps({"ddir": str(d), "extractors": sorted(dims), "fit_videos": args.fit_videos,
                       "rounds": args.lgbm_rounds})
    # one BLAS thread: scipy's L-BFGS busy-waits its second thread on a loaded machine
    env = dict(os.environ, TQDM_DISABLE="1", HF_HUB_OFFLINE="1", OPENBLAS_NUM_THREADS="1")
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, "--child", spec], stdout=subprocess.PIPE, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit("predict benchmark failed (its log is above)")
    results |= json.loads(proc.stdout.strip().splitlines()[-1])
    results["child_wall_s"] = time.perf_counter() - t
    results["load_average_end"] = os.getloadavg()[0]
    (OUT / "predict.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
