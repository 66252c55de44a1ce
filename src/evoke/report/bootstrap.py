"""Bootstrap 95% intervals of a run's test metrics, from its own predictions.

:func:`run_intervals` reads a run folder's ``predictions.parquet`` (the test
rows), rebuilds the task's test units from the label tables under
``results/{dataset}`` (:meth:`Task.load`, the same code ``evoke train`` ran),
and scores ``replicates`` resamples of the test set with the task's own
:meth:`Task.evaluate` (so with :mod:`evoke.metrics`; nothing is re-implemented
here). Before resampling it re-scores the whole test set and requires the
numbers in ``metrics.json``: labels changed since training give no interval
and a reason instead of a wrong one.

What is resampled (with replacement, as many as there are):

* tasks scored on pairs and lists (``v2v``, ``v2v_from_emotions``): the test
  pairs, and independently the test lists;
* every other task: the test videos, each with all of its units (per-second
  tasks: every second of a drawn video; the seconds of one video are not
  independent, so resampling them one by one would understate the spread). A
  video drawn twice counts as two videos (its copies get distinct ids, so
  EEV's per-video Pearson r sees two videos).

The interval is the 2.5th and 97.5th percentile of the replicates in which
the metric is defined (a resample can lack every positive of a class, or every
pair); ``defined`` says in how many. With ``rng = numpy.random.default_rng(seed)``
per run, runs on the same test set see the same resamples.
"""

from __future__ import annotations

from collections import defaultdict, deque
from pathlib import Path

import numpy as np
import polars as pl

from evoke import EvokeError

DEFAULT_REPLICATES = 1000


class IntervalError(EvokeError):
    """A run's intervals cannot be computed (no predictions, labels that differ from the run's)."""


def _scalar(x) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float, np.floating, np.integer)):
        return None
    return float(x)


def _test_units(task, data, pred: pl.DataFrame):
    """The task's test units in the order of the prediction rows (the units the run scored)."""
    te = data.splits["test"]
    keyed = te.time_s is not None and "time_s" in pred.columns
    keys = [(v, round(float(t), 6)) for v, t in zip(te.video_id, te.time_s)] if keyed else list(te.video_id)
    where = defaultdict(deque)
    for i, k in enumerate(keys):
        where[k].append(i)
    rows = ([(v, round(float(t), 6)) for v, t in zip(pred["video_id"], pred["time_s"])] if keyed
            else pred["video_id"].to_list())
    idx = []
    for k in rows:
        if not where[k]:
            raise IntervalError(f"the test predictions name unit {k} that the label tables do not have "
                                "(labels changed since training?)")
        idx.append(where[k].popleft())
    return te.take(np.asarray(idx, dtype=np.int64))


def run_intervals(run: dict, dataset_dir: Path, metrics: list[str], replicates: int = DEFAULT_REPLICATES,
                  seed: int = 0) -> dict:
    """``{"intervals": {metric: [lo, hi]}, "defined": {metric: count}, "replicates", "seed",
    "resampled"}`` for the scalar test ``metrics`` of one run record (``metrics.json`` plus its
    ``dir``). Raises :class:`IntervalError` with the reason when there is none to give."""
    from evoke.tasks import TaskData, get_task
    from evoke.tasks.base import TaskError

    path = Path(run["dir"]) / "predictions.parquet"
    if not path.exists():
        raise IntervalError(f"no {path}")
    pred = pl.read_parquet(path).filter(pl.col("split") == "test")
    if pred.height == 0:
        raise IntervalError(f"{path} has no test rows")
    task = get_task(run["task"])(run.get("settings") or {})
    try:
        data = task.load(Path(dataset_dir), task.label_paths(Path(dataset_dir)))
    except TaskError as exc:
        raise IntervalError(str(exc)) from None
    units = _test_units(task, data, pred)
    cols = [f"pred_{n}" for n in data.target_names]
    missing = [c for c in cols if c not in pred.columns]
    if missing:
        raise IntervalError(f"{path}: no column(s) {', '.join(missing)}")
    P = pred.select(cols).to_numpy().astype(np.float64)

    pairs = "pairs" in data.extra
    def score(units_, P_, extra=None) -> dict:
        splits = {**data.splits, "test": units_}
        return task.evaluate(P_, units_, TaskData(splits, data.target_names, extra or data.extra,
                                                  data.val_from_train))

    whole = score(units, P)
    recorded = run["metrics"].get("test", {})
    for m in metrics:
        a, b = _scalar(whole.get(m)), _scalar(recorded.get(m))
        a = None if a is not None and not np.isfinite(a) else a  # metrics.json holds nan as null
        if (a is None) != (b is None) or (a is not None and not np.isclose(a, b, rtol=1e-9, atol=1e-12)):
            raise IntervalError(f"re-scoring {path} gives {m} = {a}, metrics.json has {b}: the label tables "
                                "differ from the ones the run was trained on")
    rng = np.random.default_rng(seed)
    values = {m: [] for m in metrics}
    if pairs:
        test_pairs, test_lists = data.extra["pairs"]["test"], data.extra["lists"]["test"]
        resampled = "test pairs and lists"
    else:
        by_video = defaultdict(list)
        for i, v in enumerate(units.video_id):
            by_video[v].append(i)
        videos = list(by_video)
        resampled = "test videos"
    for _ in range(replicates):
        if pairs:
            extra = {**data.extra,
                     "pairs": {**data.extra["pairs"], "test": [test_pairs[i] for i in
                                                                rng.integers(0, len(test_pairs), len(test_pairs))]},
                     "lists": {**data.extra["lists"], "test": [test_lists[i] for i in
                                                                rng.integers(0, len(test_lists), len(test_lists))]}}
            m_ = score(units, P, extra)
        else:
            draw = rng.integers(0, len(videos), len(videos))
            idx = np.concatenate([by_video[videos[j]] for j in draw])
            sub = units.take(idx)
            if task.per_second:  # each drawn copy its own video (see the module docstring)
                sub.video_id = [f"{videos[j]}#{k}" for k, j in enumerate(draw) for _ in by_video[videos[j]]]
            m_ = score(sub, P[idx])
        for m in metrics:
            x = _scalar(m_.get(m))
            if x is not None and np.isfinite(x):
                values[m].append(x)
    out = {"replicates": replicates, "seed": seed, "resampled": resampled, "intervals": {}, "defined": {}}
    for m in metrics:
        v = np.asarray(values[m])
        out["defined"][m] = int(v.size)
        if v.size:
            out["intervals"][m] = [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))]
    return out
