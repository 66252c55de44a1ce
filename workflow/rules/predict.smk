# Stage 7, predict: the trained heads of predict.models applied to every video of the manifest
# whose features exist, labelled or not:
#   results/{dataset}/predict/{task}/{head}/{featureset}.parquet (a run's predictions.parquet
#   columns: video_id, time_s for per-second tasks, split, pred_*).
# A model is a run folder (results/{any dataset}/train/{task}/{head}/{featureset}); its
# features must have been made with the settings this config gives the extractors.
from evoke.predict.model import predict_models

PREDICT_MODELS = predict_models(config["predict"]["models"])


def predict_outputs():
    return [f"{D}/predict/{t}/{h}/{fs}.parquet" for t, h, fs in PREDICT_MODELS]


def predict_inputs(wildcards):
    """The model's card and what it reads: the features index, or (a head on labels) the table."""
    run = PREDICT_MODELS[(wildcards.task, wildcards.head, wildcards.featureset)]
    reads = f"{D}/features/index.parquet"
    if wildcards.featureset == "labels":
        reads = f"{D}/{TASKS[wildcards.task].label_files['vce']}"
    return {"model": f"{run}/model/model.json", "reads": reads}


rule predict_model:
    input:
        unpack(predict_inputs),
    output:
        f"{D}/predict/{{task}}/{{head}}/{{featureset}}.parquet",
    log:
        f"{D}/logs/predict/{{task}}/{{head}}/{{featureset}}.log",
    benchmark:
        f"{D}/benchmarks/predict/{{task}}/{{head}}/{{featureset}}.tsv"
    threads: 1
    resources:
        mem_mb=DEFAULT_MEMORY_MB + 2000,
        runtime=240,
    params:
        run=lambda w: PREDICT_MODELS[(w.task, w.head, w.featureset)],
    shell:
        "{EVOKE} predict --model {params.run:q} --dataset {DATASET} --out {output:q}"
        " --threads {threads} > {log:q} 2>&1"


rule predict:
    input:
        predict_outputs(),


localrules:
    predict,
