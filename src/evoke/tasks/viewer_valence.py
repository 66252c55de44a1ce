"""``viewer_valence``: binary valence per viewer and for the average viewer (COGNIMUSE multi-task).

The protocol of Hayat, Ventura and Lapedriza (2021), "Recognizing Emotions
evoked by Movies using Multitask Learning" (ACII), on COGNIMUSE: the unit is a
video segment (features over the segment; the segment's valence averaged over
the viewers, and each viewer's own, binarised at 0), evaluated over 7
leave-one-movie-out folds with the accuracy averaged over the folds; its
"Mean" column averages all 8 columns (the 7 viewers and the average viewer),
beside Random, always-Positive and always-Negative baselines.

Labels: with ``units: segment`` (default) ``labels/viewer_valence_segments.parquet``
(``video_id, split, segment, start_s, end_s``, ``valence_bin`` and
``valence_bin__{viewer}``); with ``units: second`` ``labels/viewer_valence.parquet``
(the same columns per ``time_s``) (:mod:`evoke.labels.viewers`). Null labels
(a viewer without samples there) are masked. Targets, in order: ``average``
then each viewer.

Features of a unit: a segment pools each extractor over the seconds in
[start_s, end_s) (mean, max, std over the valid steps; the step at start_s
when the segment is shorter than a step) plus the step at its last second
(:func:`segment_last_second`); a second pools the ``seq_len`` seconds ending
at it, plus the step at t (the same layout). The saved model (``model/``)
records its unit (``unit``: ``segment`` or ``second``; for segments
``segments``: ``{"source": "cues"}``, or ``{"source": "fixed", "segment_s": L}``
when the table's segments are the labels builder's fixed-length ones, see
:func:`segments_of`), and ``evoke predict`` applies it to the same unit,
pooled by the same functions. With folds the saved model is one more fit on
every group. Full heads read the ``seq_len``
seconds ending at the unit's last second (for a segment: the segment and
what precedes it, padded by repeating the first frame).

Settings (``train.viewer_valence``): ``units`` (``segment`` | ``second``) and
``folds``: null (default) uses the table's ``split`` column; a column name
(``video_id`` = leave one film out, the paper's protocol, or any column of
the label table, e.g. a ``film`` column) runs leave-one-group-out: one fit per
group with that group as the test part and a seeded ``val_fraction`` of the
other groups' videos for validation. The predictions then cover every unit
(each from the fit that did not see its group) under split ``test``; ``n``
counts every unit as train and test (each is both, in different folds) and
``info["folds"]`` gives each fold's sizes.

Heads: ``lightgbm`` and ``linear`` fit one classifier per target (single-task).
The full heads are, by default (``train.full`` ``network: cognimuse``), the
paper's networks (:mod:`evoke.heads.cognimuse`): ``full`` trains one ST network
per target (fused max-pooled visual features and subtitle words, 1024, 512,
256, sigmoid, class-weighted log-loss + L1), ``full_multitask`` one MT network
(shared 2048, 1024; a branch of 512, 256, 128 per target, each updated only on
the units its viewer annotated); ``modalities`` (both, visual, text) is the
paper's ablation. A unit's words are its segment's ``text`` (the SRT cue), or
for a second the text of the segments table's cues that overlap it. With
``network: eev`` they are :class:`~evoke.heads.models.FullHead` s instead (one
per target; or one with ``n_branches`` = viewers + 1, BCE over the labelled
entries). A target with a single class in training predicts its training rate
(named in ``info``).

Metrics: accuracy (threshold 0.5; label 1 = valence >= 0) per target over its
labelled units, with folds the mean over the folds of each fold's accuracy
(folds where the target has no labelled unit are skipped);
``mean_accuracy``: the paper's "Mean", over all 8 columns (the viewers and
the average viewer); ``mean_viewer_accuracy``: over the viewers only;
``average_viewer_accuracy``. Baselines on the same units: ``random`` (a fair
coin: exactly 0.5 expected accuracy per column), ``always_positive``,
``always_negative`` and ``majority_class`` (each target's majority in its
training part, per fold with folds).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from evoke.heads.light import LIGHT_HEADS, fit_binary_columns_model
from evoke.predict.model import ConstantPart, LightPart
from evoke.tasks.base import (
    SPLITS,
    Task,
    TaskData,
    TaskError,
    Units,
    register_task,
    split_units,
    val_videos_from_train,
    with_split,
)


@dataclass
class ViewerUnits(Units):
    """Units with each unit's segment start (``start_s``, None per second), fold group and
    subtitle text (None: no subtitles)."""

    start_s: list[float] | None = None
    group: list[str] | None = None
    text: list[str | None] | None = None

    def take(self, keep: np.ndarray) -> "ViewerUnits":
        idx = np.flatnonzero(keep) if keep.dtype == bool else keep
        base = Units.take(self, idx)
        pick = lambda xs: None if xs is None else [xs[i] for i in idx]  # noqa: E731
        return ViewerUnits(base.video_id, base.time_s, base.y, base.mask, pick(self.start_s), pick(self.group),
                           pick(self.text))

    def windows(self) -> dict:
        """``video_id, start_s, end_s, text, y, mask`` of the COGNIMUSE network: a segment is
        [start_s, last second + 1) (the steps :func:`segment_pooled_matrix` pools), a second [t, t + 1)."""
        starts = self.start_s if self.start_s is not None else list(self.time_s)
        return {"video_id": self.video_id, "start_s": [float(a) for a in starts],
                "end_s": [float(t) + 1.0 for t in self.time_s],
                "text": list(self.text) if self.text is not None else [None] * len(self),
                "y": self.y, "mask": self.mask}


def segment_last_second(start: str = "start_s", end: str = "end_s") -> pl.Expr:
    """A segment's unit time ``time_s``: its last second, ``max(floor(start), ceil(end) - 1)``
    (the second [t, t + 1) that holds its end; its start's second when it is shorter)."""
    return pl.max_horizontal(pl.col(start).floor(), pl.col(end).ceil() - 1)


def segments_of(df: pl.DataFrame) -> dict:
    """What a segments table's units are, for the model card: ``{"source": "fixed", "segment_s":
    L}`` when they are the labels builder's fixed-length segments (no text, every one ``L`` long,
    starting at a multiple of ``L``), else ``{"source": "cues"}`` (subtitle cues)."""
    length = (df["end_s"] - df["start_s"]).to_numpy()
    no_text = "text" not in df.columns or df["text"].null_count() == df.height
    if no_text and length.size and np.allclose(length, length[0], atol=1e-6) and length[0] > 0:
        k = df["start_s"].to_numpy() / length[0]
        if np.allclose(k, np.round(k), atol=1e-6):
            return {"source": "fixed", "segment_s": float(length[0])}
    return {"source": "cues"}


def segment_pooled_matrix(feats, units: ViewerUnits) -> np.ndarray:
    """(N, sum 4 D) per extractor: mean, max, std over the steps in [start_s, end) of each segment,
    then the step at its last second (the layout of :meth:`FeatureSet.pooled` per second, so a
    saved segment model reads what ``evoke predict`` pools).

    ``end`` is the unit's ``time_s`` + 1 (its last second's end); steps whose
    mask is false are left out (all of them masked: the raw steps are pooled,
    as :meth:`FeatureSet.pooled` does)."""
    from evoke.heads.cognimuse import segment_steps  # torch: not at import (planning reads TASKS)

    out = np.empty((len(units), feats.pooled_dim(True)), np.float32)
    for i, (v, start, last) in enumerate(zip(units.video_id, units.start_s, units.time_s)):
        parts = []
        for e in feats.extractors:
            f = feats.data[v][e]
            sel = segment_steps(f.timestamps_s, start, last + 1)  # shorter than a step: the step at its start
            win, m = f.values[sel], f.mask[sel]
            valid = win[m] if m.any() else win
            parts += [valid.mean(0), valid.max(0), valid.std(0), win[-1]]
        out[i] = np.concatenate(parts)
    return out


def segment_cues(path: Path) -> dict[str, list[tuple[float, float, str]]]:
    """``{video_id: [(start_s, end_s, text), ...]}`` of a segments table's cues with text (empty
    when the table or its ``text`` column is missing)."""
    if not Path(path).is_file():
        return {}
    df = pl.read_parquet(path)
    if "text" not in df.columns:
        return {}
    out: dict[str, list] = {}
    for v, a, b, t in df.select("video_id", "start_s", "end_s", "text").drop_nulls("text").iter_rows():
        out.setdefault(v, []).append((float(a), float(b), t))
    return out


def fold_accuracy(pred: np.ndarray, units: Units, groups: list | None) -> dict[str, list[float]]:
    """Per target column k: the accuracies of each group (one group = all units without folds)."""
    g = np.zeros(len(units), dtype=object) if groups is None else np.asarray(groups, dtype=object)
    out = []
    for k in range(units.y.shape[1]):
        accs = []
        for key in sorted(set(g.tolist()), key=str):
            m = units.mask[:, k] & (g == key)
            if m.any():
                accs.append(float(((pred[m, k] >= 0.5) == (units.y[m, k] >= 0.5)).mean()))
        out.append(accs)
    return out


@register_task
class ViewerValenceTask(Task):
    name = "viewer_valence"
    description = "binary valence per segment (or second), per viewer and for the average viewer"
    unit = "segments"  # "seconds" with units: second (set in __init__)
    citation = ("Hayat, Ventura and Lapedriza 2021, \"Recognizing Emotions evoked by Movies using Multitask "
                "Learning\", ACII (COGNIMUSE)")
    per_second = True
    heads = ("lightgbm", "linear", "full", "full_multitask")
    label_files = {"viewer_valence": "labels/viewer_valence.parquet"}
    # the labels stage writes both; an imported dataset without subtitles may have no segments
    optional_label_files = {"segments": "labels/viewer_valence_segments.parquet"}
    kind = "binary"
    full_loss = "bce"
    dimension = "valence"

    def __init__(self, settings: dict | None = None):
        super().__init__(settings)
        protocol = dict(self.settings.get("viewer_valence") or {})
        unknown = set(protocol) - {"units", "folds"}
        if unknown:
            raise TaskError(f"viewer_valence: unknown setting(s) {', '.join(sorted(unknown))} (units, folds)")
        self.units = protocol.get("units", "segment")
        if self.units not in ("segment", "second"):
            raise TaskError(f"viewer_valence: units must be segment or second, not {self.units!r}")
        self.unit = "segments" if self.units == "segment" else "seconds"
        self.folds = protocol.get("folds")

    def label_paths(self, dataset_dir, overrides=None):
        key = "segments" if self.units == "segment" else "viewer_valence"
        p = Path((overrides or {}).get(key) or dataset_dir / {**self.label_files, **self.optional_label_files}[key])
        if not p.exists():
            hint = " (units: segment reads the per-segment table; train.viewer_valence.units: second reads " \
                   "the per-second one)" if key == "segments" else " (run the labels stage)"
            raise TaskError(f"task {self.name}: label table {key!r} not found at {p}{hint}")
        return {key: p}

    # -------------------------------------------------------------- labels

    def load(self, dataset_dir: Path, paths: dict[str, Path]) -> TaskData:
        path = next(iter(paths.values()))
        df = pl.read_parquet(path)
        avg = f"{self.dimension}_bin"
        if avg not in df.columns:
            raise TaskError(f"{path}: no {avg} column")
        if self.units == "segment":
            missing = [c for c in ("segment", "start_s", "end_s") if c not in df.columns]
            if missing:
                raise TaskError(f"{path}: a segments table needs {', '.join(missing)} (units: segment)")
            df = df.with_columns(segment_last_second().alias("time_s"))
            self.segments = segments_of(df)
        viewers = sorted(c.split("__", 1)[1] for c in df.columns if c.startswith(f"{avg}__"))
        cols = [avg] + [f"{avg}__{v}" for v in viewers]
        order = ["video_id", "segment"] if self.units == "segment" else ["video_id", "time_s"]
        if self.folds:
            if self.folds not in df.columns:
                raise TaskError(f"{path}: folds column {self.folds!r} not in the table "
                                f"(it has {', '.join(df.columns)})")
            df = df.filter(pl.col(self.folds).is_not_null()).sort(order)
        else:
            df = with_split(df, dataset_dir, str(path)).sort(order)
        df = df.filter(pl.any_horizontal(pl.col(c).is_not_null() for c in cols))
        raw = df.select(cols).to_numpy().astype(np.float64)
        mask = ~np.isnan(raw)
        units = ViewerUnits(df["video_id"].to_list(), df["time_s"].to_list(), np.nan_to_num(raw), mask,
                            df["start_s"].to_list() if self.units == "segment" else None,
                            df[self.folds].cast(pl.String).to_list() if self.folds else None,
                            self._texts(df, dataset_dir))
        names = ["average"] + viewers
        if self.folds:
            groups = sorted(set(units.group))
            if len(groups) < 2:
                raise TaskError(f"{path}: folds by {self.folds!r} need at least 2 groups, found {groups}")
            empty = units.take(np.zeros(len(units), bool))
            return TaskData({"train": units, "val": empty, "test": units}, names,
                            {"folds": self.folds, "groups": groups}, False)
        splits, from_train = split_units(units, df["split"].to_list(), self.val_fraction, self.seed)
        return TaskData(splits, names, {}, from_train)

    def _texts(self, df: pl.DataFrame, dataset_dir: Path) -> list[str | None]:
        """Each unit's subtitle words: a segment's own ``text``; a second's, the text of the
        segments table's cues that overlap it (none without that table or its ``text``)."""
        if self.units == "segment":
            return df["text"].to_list() if "text" in df.columns else [None] * df.height
        from evoke.heads.cognimuse import cue_text

        cues = segment_cues(dataset_dir / self.optional_label_files["segments"])
        return [cue_text(cues.get(v), t, t + 1.0) for v, t in zip(df["video_id"], df["time_s"])]

    # -------------------------------------------------------------- heads

    segments: dict | None = None  # what the segments are (segments_of), set by load with units: segment

    def head_model(self, head, feats, classes, parts):
        """The task's :class:`~evoke.predict.model.HeadModel` with its unit (and segments) recorded."""
        model = super().head_model(head, feats, classes, parts)
        model.unit = self.units
        model.segments = self.segments if self.units == "segment" else None
        return model

    def _features(self, feats, u: ViewerUnits) -> np.ndarray:
        if self.units == "segment":
            return segment_pooled_matrix(feats, u)
        return feats.pooled_matrix(u.video_id, u.time_s, self.seq_len)

    def fit_predict(self, head, feats, data, out_dir, stop_after_epoch=None):
        self.check_head(head)
        if not self.folds:
            return self._fit_split(head, feats, data, out_dir, stop_after_epoch)
        units = data.splits["test"]
        groups = np.asarray(units.group, dtype=object)
        pred = np.zeros(units.y.shape)
        info: dict = {"folds": {}, "protocol": f"leave-one-{self.folds}-out over {len(data.extra['groups'])} folds"}
        for fold, g in enumerate(data.extra["groups"]):
            sub = self.fold_data(data, g)
            preds, fold_info = self._fit_split(head, feats, sub, out_dir / f"fold_{fold}", stop_after_epoch)
            pred[groups == g] = preds["test"]
            info["folds"][g] = {"n": sub.counts(), **{k: v for k, v in fold_info.items() if k != "history"}}
            if "history" in fold_info:
                info.setdefault("history", {})[f"fold {g}"] = fold_info["history"]
        # the saved model (model/): fitted on every group, a seeded slice of the videos validating
        held = val_videos_from_train(units.video_id, self.val_fraction, self.seed)
        in_val = np.array([v in held for v in units.video_id], bool)
        final = TaskData({"train": units.take(~in_val), "val": units.take(in_val),
                          "test": units.take(np.zeros(len(units), bool))}, data.target_names, {}, True)
        self._fit_split(head, feats, final, out_dir / "all_folds", stop_after_epoch)
        info["saved_model"] = f"fitted on all {len(data.extra['groups'])} groups"
        return {"test": pred}, info

    def fold_data(self, data: TaskData, group: str) -> TaskData:
        """One leave-one-group-out fold: ``group`` is the test part; a seeded slice of the other
        groups' videos validates."""
        units = data.splits["test"]
        g = np.asarray(units.group, dtype=object)
        rest = units.take(g != group)
        held = val_videos_from_train(rest.video_id, self.val_fraction, self.seed)
        in_val = np.array([v in held for v in rest.video_id], bool)
        return TaskData({"train": rest.take(~in_val), "val": rest.take(in_val), "test": units.take(g == group)},
                        data.target_names, {}, True)

    def _fit_split(self, head, feats, data, out_dir, stop_after_epoch):
        if head in LIGHT_HEADS:
            X = {s: self._features(feats, data.splits[s]) for s in SPLITS}
            tr = data.splits["train"]
            model, info = fit_binary_columns_model(head, X["train"], tr.y, tr.mask, data.target_names,
                                                   self.seed, self._params(head))
            self.fitted = self.head_model(head, feats, data.target_names, [(None, LightPart(model))])
            return {s: model.predict(X[s]) for s in ("val", "test")}, info
        from evoke.heads.full import fit_full  # torch: only when a full head is fitted

        self._check_classes(data)
        if self.full_cfg.network == "cognimuse":
            return self._fit_cognimuse(head, feats, data, out_dir, stop_after_epoch)
        if head == "full_multitask":
            d = {s: data.splits[s].as_dict() for s in data.splits}
            preds, history, net = fit_full(feats, d["train"], d["val"], [d["val"], d["test"]], "bce", 1,
                                           self.full_cfg, out_dir / "checkpoint",
                                           n_branches=len(data.target_names), stop_after_epoch=stop_after_epoch)
            self.fitted = self.head_model(head, feats, data.target_names,
                                          [(None, self.full_part(net, feats, "bce", 1, len(data.target_names)))])
            return {"val": preds[0], "test": preds[1]}, {"history": history}

        def fit_one(k, name):
            sub = {s: {**data.splits[s].as_dict(), "y": data.splits[s].y[:, [k]], "mask": data.splits[s].mask[:, [k]]}
                   for s in data.splits}
            preds, history, net = fit_full(feats, sub["train"], sub["val"], [sub["val"], sub["test"]], "bce", 1,
                                           self.full_cfg, out_dir / "checkpoint" / name,
                                           stop_after_epoch=stop_after_epoch)
            return preds, history, self.full_part(net, feats, "bce", 1)

        return self._per_target(head, feats, data, fit_one)

    def _per_target(self, head, feats, data, fit_one):
        """Single-task full heads: ``fit_one(k, name) -> ([val, test] predictions (N, 1), history,
        part)`` for each target; a target with one class in training predicts its rate."""
        tr = data.splits["train"]
        out = {s: np.zeros((len(data.splits[s]), len(data.target_names))) for s in ("val", "test")}
        histories, constant, parts = {}, [], []
        for k, name in enumerate(data.target_names):
            yk = tr.y[tr.mask[:, k], k]
            if np.unique(yk).size < 2:
                constant.append(name)
                parts.append(([k], ConstantPart(yk.mean() if yk.size else 0.5)))
                for s in out:
                    out[s][:, k] = parts[-1][1].value
                continue
            preds, histories[name], part = fit_one(k, name)
            out["val"][:, k], out["test"][:, k] = preds[0][:, 0], preds[1][:, 0]
            parts.append(([k], part))
        self.fitted = self.head_model(head, feats, data.target_names, parts)
        return out, {"history": histories, "constant_columns": constant}

    def _fit_cognimuse(self, head, feats, data, out_dir, stop_after_epoch):
        """The COGNIMUSE networks (:mod:`evoke.heads.cognimuse`): ST, one per target (a target with
        one class in training predicts its rate), or MT with a branch per target."""
        from evoke.heads.cognimuse import CognimusePart, fit_cognimuse

        w = {s: data.splits[s].windows() for s in data.splits}
        if head == "full_multitask":
            preds, history, net, vocab = fit_cognimuse(feats, w["train"], w["val"], [w["val"], w["test"]],
                                                       self.full_cfg, out_dir / "checkpoint", True, stop_after_epoch)
            self.fitted = self.head_model(head, feats, data.target_names, [(None, CognimusePart(net, vocab))])
            return {"val": preds[0], "test": preds[1]}, {"history": history}

        def fit_one(k, name):
            col = lambda d: {**d, "y": d["y"][:, [k]], "mask": d["mask"][:, [k]]}  # noqa: E731
            preds, history, net, vocab = fit_cognimuse(feats, col(w["train"]), col(w["val"]), [w["val"], w["test"]],
                                                       self.full_cfg, out_dir / "checkpoint" / name, False,
                                                       stop_after_epoch)
            return preds, history, CognimusePart(net, vocab)

        return self._per_target(head, feats, data, fit_one)

    # -------------------------------------------------------------- scores

    def evaluate(self, pred, units, data):
        if len(units) == 0:
            return {"n": 0}
        pred = np.asarray(pred, dtype=np.float64).reshape(len(units), -1)
        per_fold = fold_accuracy(pred, units, units.group if self.folds else None)
        accs = {name: float(np.mean(a)) if a else float("nan") for name, a in zip(data.target_names, per_fold)}
        out = {"n": len(units), "accuracy": accs}
        if self.folds:
            out["n_folds"] = len(data.extra["groups"])
            out["accuracy_per_fold"] = dict(zip(data.target_names, per_fold))
        finite = lambda xs: [x for x in xs if np.isfinite(x)]  # noqa: E731
        viewers = finite(accs[v] for v in data.target_names[1:])
        every = finite(accs.values())
        out["mean_accuracy"] = float(np.mean(every)) if every else float("nan")
        out["mean_viewer_accuracy"] = float(np.mean(viewers)) if viewers else float("nan")
        out["average_viewer_accuracy"] = accs["average"]
        return out

    def _majority(self, train: Units) -> np.ndarray:
        return np.array([float((train.y[train.mask[:, k], k] >= 0.5).mean() >= 0.5) if train.mask[:, k].any()
                         else 0.0 for k in range(train.y.shape[1])])

    def baselines(self, data, split="test"):
        te = data.splits[split]
        if len(te) == 0:
            return {}
        n, k = te.y.shape
        if self.folds:
            groups = np.asarray(te.group, dtype=object)
            majority = np.zeros((n, k))
            for g in data.extra["groups"]:
                majority[groups == g] = self._majority(self.fold_data(data, g).splits["train"])
        else:
            majority = np.repeat(self._majority(data.splits["train"])[None], n, 0)
        # a fair coin is right half the time on every labelled unit, whatever the labels
        labelled = [bool(te.mask[:, j].any()) for j in range(k)]
        coin = {name: 0.5 if has else float("nan") for name, has in zip(data.target_names, labelled)}
        out = {"random": {"n": n, "accuracy": coin, "mean_accuracy": 0.5 if any(labelled) else float("nan"),
                          "mean_viewer_accuracy": 0.5 if any(labelled[1:]) else float("nan"),
                          "average_viewer_accuracy": coin["average"]},
               "always_positive": self.evaluate(np.ones((n, k)), te, data),
               "always_negative": self.evaluate(np.zeros((n, k)), te, data),
               "majority_class": self.evaluate(majority, te, data)}
        return out
