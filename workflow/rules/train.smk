# Stage 5, train: one job per (task, head, feature set) from the config's train block.
#   results/{dataset}/train/{task}/{head}/{featureset}/metrics.json, predictions.parquet,
#   model/ (the saved head and its model.json card, for evoke predict), checkpoint/ (full
#   heads). A feature set's folder is its extractors sorted and joined by "+"
#   (colour+motion); tasks that read no features (v2v_from_emotions) use "labels".
import os

from evoke.heads import heads_to_train
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
        heads = heads_to_train(cls.heads, TRAIN_HEADS, TRAIN.get("multitask", True))
        sets = TRAIN_FEATURE_SETS if cls.uses_features else ["labels"]
        jobs += [(task, head, fs) for head in heads for fs in sets]
    return jobs


def train_outputs():
    return [f"{D}/train/{t}/{h}/{fs}/metrics.json" for t, h, fs in train_jobs()]


def task_label_files(task):
    """The label tables a task's jobs read: its own and, when the labels stage builds them,
    its optional ones (v2v lists: without them declared the job could run before they exist
    and silently score no lists)."""
    cls = TASKS[task]
    files = {key: f"{D}/{rel}" for key, rel in cls.label_files.items()}
    built = set(LABEL_TARGETS)
    for key, rel in getattr(cls, "optional_label_files", {}).items():
        if f"{D}/{rel}" in built:
            files[key] = f"{D}/{rel}"
    return files


def train_inputs(wildcards):
    return task_inputs(wildcards.task)


def task_inputs(task):
    """The task's label tables and, when it reads features, the features index."""
    inputs = task_label_files(task)
    if TASKS[task].uses_features:
        inputs["features"] = f"{D}/features/index.parquet"
    elif any(Path(f).stem in LABEL_TABLES for f in inputs.values()):
        # a pre-built table may leave split null: the task then reads it from the probe table
        # (evoke.tasks.base.with_split); a features task has it before its features index
        inputs["probe"] = f"{D}/ingest/probe.parquet"
    return inputs


def train_label_files():
    """Every label table the configured train jobs read."""
    return list(dict.fromkeys(f for t in dict.fromkeys(t for t, _, _ in train_jobs())
                              for f in task_label_files(t).values()))


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
        # the feature stages' files when a head reads them, the label tables the heads read and
        # what their builders read (an interrupted --forcerun of an earlier stage: see target_files)
        target_files(
            train_outputs(),
            rules.features.input if any(TASKS[t].uses_features for t, _, _ in train_jobs()) else [],
            train_label_files(),
            label_upstream(train_label_files()),
        ),
