# evoke: videos in, per-second multimodal features and emotion labels out.
#
# Output path scheme (everything lands under results/{dataset}/):
#   ingest/shards/{shard}.parquet      one probe/status row per video of the shard
#   ingest/videos/{video_id}/          video.mp4 (muted, stream copy), audio.wav (16 kHz mono),
#                                      danmaku.*, probe.json
#   ingest/probe.parquet               all shards' probe rows      (target: ingest)
#   ingest/failures.parquet            failed videos of the stage
#   frames/{shard}.h5                  one group per video: frames, timestamps_s, frame_time_s, mask
#   frames/{shard}.status.parquet      one status row per video of the shard
#   frames/index.parquet               where every video's frames are (target: frames)
#   frames/failures.parquet
#   features/{extractor}/{shard}.h5   one group per video: values (T, ...), timestamps_s, mask
#   features/{extractor}/{shard}.status.parquet
#   features/index.parquet             where every video's features are (target: features)
#   features/failures.parquet
#   labels/*.parquet                   vce, v2v_pairs, v2v_lists, v2v_sample, eev, viewer_valence,
#                                      danmaku_seconds; labels/danmaku/{comments,scored,windows}.parquet
#   train/{task}/{head}/{featureset}/  metrics.json, predictions.parquet, model/, checkpoint/ (target: train)
#   report/                            metrics.json, report.html, report.md, *.png (target: report)
#   predict/{task}/{head}/{featureset}.parquet  predict.models applied to every video (target: predict)
#   failures.parquet                   video_id, stage, shard, error: every stage's failures
#   logs/{stage}/{shard}.log           beside benchmarks/{stage}/{shard}.tsv
#
# Shards: manifest row i belongs to shard s{i // shard_size:05d}; one job per (stage, shard).
# Targets: all (default), ingest, frames, features, labels, train, report, predict.
#
# Config layers, lowest first: config.yaml (ingest, frames, features for any manifest),
# each --configfile (the demo's: data/demo/config.yaml), then --config (typed by the
# schema); workflow/rules/common.smk merges and validates them (evoke.config).
#
# `snakemake --lint` findings kept on purpose:
# - no conda/container per rule: every rule runs the same package in one environment
#   (the venv of scripts/setup.sh, or envs/evoke.yaml), so per-rule environments would
#   only duplicate it;
# - shell commands use EVOKE and DATASET from outside the rule: EVOKE is the interpreter
#   running Snakemake (no science setting: changing it must not rerun anything) and
#   DATASET is already part of every output path;
# - functions beside rules in common.smk and train.smk: the rules' helpers, kept next
#   to the rules that use them (logic with tests lives in the package);
# - report_build's params.out is the folder of its outputs, written on a shared file system.

from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/ingest.smk"
include: "workflow/rules/frames.smk"
include: "workflow/rules/features.smk"
include: "workflow/rules/labels.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/predict.smk"


rule all:
    input:
        target_files(
            rules.ingest.input,
            rules.frames.input,
            rules.features.input,
            rules.labels.input,
            rules.report.input if train_outputs() else [],
            rules.predict.input,
        ),
    default_target: True
