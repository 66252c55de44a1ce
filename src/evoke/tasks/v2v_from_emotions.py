"""``v2v_from_emotions``: how well the 27 emotion labels explain pairwise pleasantness (VCE paper).

Labels: ``labels/vce.parquet`` (``intensity_{emotion}``, 0-1) and the V2V
pairs and lists of :mod:`evoke.tasks.v2v`, for the videos that have both. No
features. The only head is ``linear``: logistic regression without intercept
on the intensity differences ``i(more) - i(less)`` (label 1) and their
negation (label 0), so a video's pleasantness is ``w . i`` and ``w`` (one
coefficient per emotion, on the raw 0-1 scale) is the figure the report
draws. The joy-only ablation fits the same model on ``intensity_joy`` alone;
its metrics are in ``info["joy_only"]``. Metrics: pairwise and listwise
accuracy on the test pairs; baseline random.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from evoke.heads.light import fit_pairwise, fit_pairwise_model
from evoke.predict.model import LightPart
from evoke.labels.common import VCE_EMOTIONS
from evoke.tasks.base import SPLITS, TaskData, TaskError, register_task
from evoke.tasks.v2v import V2vTask


@register_task
class V2vFromEmotionsTask(V2vTask):
    name = "v2v_from_emotions"
    description = "pairwise pleasantness from the 27-d emotion labels (and joy only)"
    citation = ("Mazeika et al. 2022, \"How Would The Viewer Feel? Estimating Wellbeing From Video Scenarios\", "
                "NeurIPS Datasets and Benchmarks (emotions to V2V pleasantness)")
    uses_features = False
    heads = ("linear",)
    label_files = {"pairs": "labels/v2v_pairs.parquet", "vce": "labels/vce.parquet"}

    def load(self, dataset_dir: Path, paths: dict[str, Path]) -> TaskData:
        vce = pl.read_parquet(paths["vce"])
        cols = [f"intensity_{e}" for e in VCE_EMOTIONS if f"intensity_{e}" in vce.columns]
        if "intensity_joy" not in cols:
            raise TaskError(f"{paths['vce']}: no intensity_joy column (needs the intensity_{{emotion}} columns)")
        self.intensity = {r[0]: np.asarray(r[1:], dtype=np.float64)
                          for r in vce.select("video_id", *cols).fill_null(0.0).iter_rows()}
        self.emotion_names = [c[len("intensity_"):] for c in cols]
        data = super().load(dataset_dir, paths)
        label_videos = {v for u in data.splits.values() for v in u.video_id}
        shared = label_videos & set(self.intensity)
        if not shared:
            raise TaskError(f"the V2V pairs ({len(label_videos)} videos) and the VCE labels "
                            f"({len(self.intensity)} videos) share no video")
        for s in SPLITS:
            u = data.splits[s]
            data.splits[s] = u.take(np.array([v in shared for v in u.video_id], dtype=bool))
        return data

    def fit_predict(self, head, feats, data, out_dir, stop_after_epoch=None):
        self.check_head(head)
        tr = data.splits["train"]
        X = {s: np.stack([self.intensity[v] for v in data.splits[s].video_id]) if len(data.splits[s])
             else np.zeros((0, len(self.emotion_names))) for s in SPLITS}
        p_tr = self._pair_index(data.extra["pairs"]["train"], tr.video_id)
        if len(p_tr) == 0:
            raise TaskError("no training pair has VCE labels for both videos")
        model, info = fit_pairwise_model("linear", X["train"], p_tr, self.seed, self.linear_params,
                                         standardise=False)
        scores = [model.predict(X["val"]), model.predict(X["test"])]
        # the model reads a video's VCE intensities (labels/vce.parquet), not its features
        self.fitted = self.head_model(head, None, data.target_names, [(None, LightPart(model))])
        self.fitted.inputs = {"kind": "vce_intensity", "table": self.label_files["vce"],
                              "columns": [f"intensity_{e}" for e in self.emotion_names]}
        joy = self.emotion_names.index("joy")
        joy_scores, joy_info = fit_pairwise("linear", X["train"][:, [joy]], p_tr,
                                            [X["val"][:, [joy]], X["test"][:, [joy]]], self.seed,
                                            self.linear_params, standardise=False)
        info = {"coefficients": dict(zip(self.emotion_names, info["coef"])),
                "joy_only": {"coefficient": joy_info["coef"][0],
                             "val": self.evaluate(joy_scores[0], data.splits["val"], data),
                             "test": self.evaluate(joy_scores[1], data.splits["test"], data)}}
        return {"val": scores[0], "test": scores[1]}, info
