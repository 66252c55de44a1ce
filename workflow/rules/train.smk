# Stage 5, train: one job per (task, head, feature set) from the config's train block.
#   results/{dataset}/train/{task}/{head}/{featureset}/metrics.json, predictions.parquet,
#   model/ (the saved head and its model.json card, for evoke predict), checkpoint/ (full
#   heads). A feature set's folder is its extractors sorted and joined by "+"
#   (colour+motion); tasks that read no features (v2v_from_emotions) use "labels".
import os

from evoke.heads.data import DEFAULT_MEMORY_MB
from evoke.predict.model import INGEST_KEYS
from evoke.tasks import TASKS, featureset_name_of

TRAIN = config.get("train", {})
TRAIN_TASKS = TRAIN.get(
    "tasks", ["vce", "v2v", "v2v_from_emotions", "eev", "danmaku_ldl", "viewer_valence"]
)
TRAIN_HEADS = TRAIN.get("heads", ["lightgbm", "linear", "full"])
TRAIN_FEATURE_SETS = [
    featureset_name_of(fs) for fs in TRAIN.get("feature_sets", [["colour", "motion"]])
]


def train_jobs():
    """(task, head, featureset) of every configured job; heads a task lacks are left out,
    and so are tasks whose label tables the labels stage does not build (no annotations)."""
    jobs = []
    built = set(LABEL_TARGETS)
    for task in TRAIN_TASKS:
        cls = TASKS[task]
        if not all(f"{D}/{rel}" in built for rel in cls.label_files.values()):
            continue
        heads = [h for h in TRAIN_HEADS if h in cls.heads]
        if TRAIN.get("multitask", True) and "full_multitask" in cls.heads and "full" in heads:
            heads.append("full_multitask")
        sets = TRAIN_FEATURE_SETS if cls.uses_features else ["labels"]
        jobs += [(task, head, fs) for head in heads for fs in sets]
    return jobs


def train_outputs():
    return [f"{D}/train/{t}/{h}/{fs}/metrics.json" for t, h, fs in train_jobs()]


def train_inputs(wildcards):
    """The task's label tables and, when it reads features, the features index."""
    cls = TASKS[wildcards.task]
    inputs = {key: f"{D}/{rel}" for key, rel in cls.label_files.items()}
    # optional tables (v2v lists) when the labels stage builds them: without this the
    # job could run before they exist and silently score no lists
    built = set(LABEL_TARGETS)
    for key, rel in getattr(cls, "optional_label_files", {}).items():
        if f"{D}/{rel}" in built:
            inputs[key] = f"{D}/{rel}"
    if cls.uses_features:
        inputs["features"] = f"{D}/features/index.parquet"
    return inputs


def train_settings(wildcards):
    keys = ("seed", "val_fraction", "feature_memory_mb", "full", "lightgbm", "linear",
            "top3_ties", "kl", "viewer_valence")
    block = {k: TRAIN[k] for k in keys if k in TRAIN}
    run = f"train/{wildcards.task}/{wildcards.head}/{wildcards.featureset}/predictions.parquet"
    if SAMPLE_PREDICTIONS and os.path.normpath(SAMPLE_PREDICTIONS) == run:
        block["predict_all_splits"] = True  # V2V pair sampling reads a prediction for every video
    return shlex.quote(json.dumps(block, sort_keys=True))


wildcard_constraints:
    task=r"[a-z0-9_]+",
    head=r"lightgbm|linear|full|full_multitask",
    featureset=r"[a-z0-9_+]+",


rule train_head:
    input:
        unpack(train_inputs),
    output:
        metrics=f"{D}/train/{{task}}/{{head}}/{{featureset}}/metrics.json",
        predictions=f"{D}/train/{{task}}/{{head}}/{{featureset}}/predictions.parquet",
        model=f"{D}/train/{{task}}/{{head}}/{{featureset}}/model/model.json",
    log:
        f"{D}/logs/train/{{task}}/{{head}}/{{featureset}}.log",
    benchmark:
        f"{D}/benchmarks/train/{{task}}/{{head}}/{{featureset}}.tsv"
    threads: 1
    resources:
        # the feature cache (train.feature_memory_mb) plus the model, labels and LightGBM
        mem_mb=int(TRAIN.get("feature_memory_mb", DEFAULT_MEMORY_MB)) + 2000,
        runtime=240,
    params:
        settings=train_settings,
        # what ingest settings change in a video's media, for the model card (evoke predict)
        ingest=shlex.quote(json.dumps({k: config["ingest"][k] for k in INGEST_KEYS})),
        features=lambda w: "" if w.featureset == "labels" else w.featureset,
        out=lambda w: f"{D}/train/{w.task}/{w.head}/{w.featureset}",
    shell:
        "{EVOKE} train --task {wildcards.task} --head {wildcards.head}"
        " --features '{params.features}' --dataset {DATASET} --out {params.out:q}"
        " --settings {params.settings} --ingest-settings {params.ingest}"
        " --threads {threads} > {log:q} 2>&1"


rule train:
    input:
        train_outputs(),
        # the feature stage's files when a head reads them (an interrupted --forcerun of
        # frames_shard or features_shard: see rule features)
        rules.features.input if any(TASKS[t].uses_features for t, _, _ in train_jobs()) else [],
