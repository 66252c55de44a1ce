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
    return model_inputs((wildcards.task, wildcards.head, wildcards.featureset))


def model_inputs(key):
    """The model's card and what it reads: the features index, or (a head on labels) the table;
    the probe table (each video's split); a viewer_valence model's subtitle words from the
    segments table when the labels stage has one (evoke.predict.run reads it when present)."""
    task, _, featureset = key
    inputs = {"model": f"{PREDICT_MODELS[key]}/model/model.json", "probe": f"{D}/ingest/probe.parquet"}
    if featureset == "labels":
        inputs["reads"] = f"{D}/{TASKS[task].label_files['vce']}"
    else:
        inputs["reads"] = f"{D}/features/index.parquet"
    segments = f"{D}/labels/viewer_valence_segments.parquet"
    if task == "viewer_valence" and segments in LABEL_TARGETS:
        inputs["segments"] = segments
    return inputs


def predict_target_files():
    """Every file the predict jobs read and the stages' files behind them: the features'
    (rule features), and a model trained in this dataset's train/ its run's inputs, so the
    plain command finishes an interrupted --forcerun of an earlier stage (see target_files)."""
    files = []
    for key, run in PREDICT_MODELS.items():
        inputs = model_inputs(key)
        files += inputs.values()
        if os.path.normpath(run).startswith(f"{D}/train/"):
            files += task_inputs(key[0]).values()
            files += label_upstream(task_label_files(key[0]).values())
        files += label_upstream(inputs.values())
        if key[2] != "labels":
            files += rules.features.input
    return list(dict.fromkeys(files))


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
        target_files(predict_outputs(), predict_target_files()),


localrules:
    predict,
