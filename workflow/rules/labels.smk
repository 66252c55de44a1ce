# Stage 4, labels: one rule per label builder, each one `evoke labels ...` / `evoke danmaku ...`
# call on the annotation files in config["labels"]["annotations"] (default data/demo/annotations):
#   labels/vce.parquet                       per-video VCE intensities, distribution, top-3, emodiversity
#   labels/v2v_pairs.parquet                 pairs agreed on by 8 of 9 votes, less pleasant first
#   labels/v2v_lists.parquet                 lists of 3 and 4 videos ordered by pleasantness
#   labels/v2v_sample.parquet                pairs proposed for the next annotation round (from
#                                            labels.v2v_sample.predictions when set)
#   labels/eev.parquet                       EEV expressions at 1 Hz
#   labels/viewer_valence.parquet            per-viewer and average-viewer values per second
#   labels/viewer_valence_segments.parquet   the same per subtitle cue (or fixed-length segment)
#   labels/danmaku/comments.parquet          every ingested video's cleaned danmaku
#   labels/danmaku/model/                    the six emotion classifiers (model.json + weights)
#   labels/danmaku/scored.parquet            comments with p_{emotion}
#   labels/danmaku/windows.parquet           per-window emotion distributions
#   labels/danmaku_seconds.parquet           the 1 Hz frames with their window's distribution
#   labels/failures.parquet                  danmaku files that could not be parsed
# A builder whose annotation file is set to null in the config is left out of `labels`.
# Pre-built tables (labels.tables, e.g. from `evoke import`): rule labels_table checks each
# against its schema and puts it at labels/{name}.parquet instead of its builder's output.
# Table columns: the docstrings of evoke.labels.* and evoke.danmaku.*.

import shlex

from evoke.labels.workflow import LabelSettings, cli_flags

LABELS = LabelSettings(config.get("labels"))
VCE_RESPONSES = LABELS.file("vce", "responses", "vce_responses.csv")
V2V_VOTES = LABELS.file("v2v", "votes", "v2v_votes.csv")
EEV_CSV = LABELS.file("eev", "csv", "eev.csv")
VIEWER_RATINGS = LABELS.files("viewers", "ratings", ["viewer_valence.csv"])
VIEWER_SUBTITLES = LABELS.files("viewers", "subtitles", [])
DANMAKU_CORPUS = LABELS.file("danmaku", "corpus", "danmaku_corpus.csv")
# model predictions for V2V pair sampling, relative to results/{dataset}: a train run's
# predictions.parquet (that run then predicts every split, see train.smk's train_settings)
SAMPLE_PREDICTIONS = LABELS.get("v2v_sample", "predictions")
LABEL_TABLES = dict(LABELS.block.get("tables") or {})


rule labels_table:
    input:
        lambda w: LABEL_TABLES[w.table],
    output:
        f"{D}/labels/{{table}}.parquet",
    log:
        f"{D}/logs/labels/table_{{table}}.log",
    benchmark:
        f"{D}/benchmarks/labels/table_{{table}}.tsv"
    wildcard_constraints:
        table=one_of(sorted(LABEL_TABLES)),
    shell:
        "{EVOKE} tables check {wildcards.table} {input:q} --out {output:q} > {log:q} 2>&1"


# a table given in labels.tables wins over the builder that would write it
ruleorder: labels_table > labels_vce
ruleorder: labels_table > labels_v2v_votes
ruleorder: labels_table > labels_v2v_lists
ruleorder: labels_table > labels_eev
ruleorder: labels_table > labels_viewers
ruleorder: labels_table > danmaku_windows


rule labels_vce:
    input:
        responses=VCE_RESPONSES or [],
        videos=config["manifest"],
    output:
        f"{D}/labels/vce.parquet",
    log:
        f"{D}/logs/labels/vce.log",
    benchmark:
        f"{D}/benchmarks/labels/vce.tsv"
    params:
        flags=cli_flags(
            emotions=LABELS.get("vce", "emotions"),
            audio=LABELS.get("vce", "audio", "keep"),
            max_audio_share=LABELS.get("vce", "max_audio_share"),
            empty_response=LABELS.get("vce", "empty_response", "drop"),
            all_zero=LABELS.get("vce", "all_zero", "drop"),
            min_annotators=LABELS.get("vce", "min_annotators", 1),
            min_annotator_agreement=LABELS.get("vce", "min_annotator_agreement"),
            min_annotator_videos=LABELS.get("vce", "min_annotator_videos", 3),
        ),
    shell:
        "{EVOKE} labels vce --responses {input.responses:q} --videos {input.videos:q}"
        " {params.flags} --out {output:q} > {log:q} 2>&1"


rule labels_v2v_votes:
    input:
        votes=V2V_VOTES or [],
        videos=config["manifest"],
    output:
        f"{D}/labels/v2v_pairs.parquet",
    log:
        f"{D}/logs/labels/v2v_pairs.log",
    benchmark:
        f"{D}/benchmarks/labels/v2v_pairs.tsv"
    params:
        flags=cli_flags(
            agree=LABELS.get("v2v", "agree", 8),
            of=LABELS.get("v2v", "of", 9),
            min_votes=LABELS.get("v2v", "min_votes", 9),
        ),
    shell:
        "{EVOKE} labels v2v-votes --votes {input.votes:q} --videos {input.videos:q}"
        " {params.flags} --out {output:q} > {log:q} 2>&1"


rule labels_v2v_lists:
    input:
        pairs=str(rules.labels_v2v_votes.output[0]),  # a plain path: labels.tables may provide it
    output:
        f"{D}/labels/v2v_lists.parquet",
    log:
        f"{D}/logs/labels/v2v_lists.log",
    benchmark:
        f"{D}/benchmarks/labels/v2v_lists.tsv"
    params:
        flags=cli_flags(
            lengths=LABELS.get("v2v", "list_lengths", [3, 4]),
            max_lists=LABELS.get("v2v", "max_lists"),
            seed=LABELS.get("v2v", "seed", 0),
        ),
    shell:
        "{EVOKE} labels v2v-lists --pairs {input.pairs:q} {params.flags} --out {output:q} > {log:q} 2>&1"


rule labels_v2v_sample:
    input:
        labels=str(rules.labels_vce.output[0]),  # plain paths: labels.tables may provide them
        exclude=str(rules.labels_v2v_votes.output[0]) if V2V_VOTES else [],
        predictions=f"{D}/{SAMPLE_PREDICTIONS}" if SAMPLE_PREDICTIONS else [],
        videos=config["manifest"],
    output:
        f"{D}/labels/v2v_sample.parquet",
    log:
        f"{D}/logs/labels/v2v_sample.log",
    benchmark:
        f"{D}/benchmarks/labels/v2v_sample.tsv"
    params:
        flags=cli_flags(
            n=LABELS.get("v2v", "sample_n", 30),
            proportions=LABELS.get(
                "v2v", "sample_proportions", {"informative": 0.6, "random": 0.2, "similar": 0.2}
            ),
            balance_by=LABELS.get("v2v", "balance_by", "source") or "none",
            seed=LABELS.get("v2v", "seed", 0),
        ),
        exclude=lambda w, input: f"--exclude {shlex.quote(input.exclude)}" if input.exclude else "",
        predictions=lambda w, input: (
            f"--predictions {shlex.quote(input.predictions)}" if input.predictions else ""
        ),
    shell:
        "{EVOKE} labels v2v-sample --labels {input.labels:q} --videos {input.videos:q}"
        " {params.exclude} {params.predictions} {params.flags} --out {output:q} > {log:q} 2>&1"


rule labels_eev:
    input:
        csv=EEV_CSV or [],
        videos=config["manifest"],
        # the ingested videos' ends (how far each decodes): a reaction time at or past its video's
        # end is dropped (counted as after_video_end); a video ingest could not probe has no bound
        probe=f"{D}/ingest/probe.parquet",
    output:
        f"{D}/labels/eev.parquet",
    log:
        f"{D}/logs/labels/eev.log",
    benchmark:
        f"{D}/benchmarks/labels/eev.tsv"
    params:
        flags=cli_flags(
            method=LABELS.get("eev", "method", "majority"),
            threshold=LABELS.get("eev", "threshold", 0.5),
            window=LABELS.get("eev", "window_s", 3.0),
            stride=LABELS.get("eev", "stride_s", 1.0),
        ),
    shell:
        "{EVOKE} labels eev --csv {input.csv:q} --videos {input.videos:q} --probe {input.probe:q}"
        " {params.flags} --out {output:q} > {log:q} 2>&1"


rule labels_viewers:
    input:
        ratings=VIEWER_RATINGS or [],
        subtitles=VIEWER_SUBTITLES,
        # the ingest probe table as the video list: ids, splits and each video's end (how far it
        # decodes), at or past which a rating's time is dropped (counted as after_video_end)
        videos=f"{D}/ingest/probe.parquet",
    output:
        table=f"{D}/labels/viewer_valence.parquet",
        segments=f"{D}/labels/viewer_valence_segments.parquet",
    log:
        f"{D}/logs/labels/viewer_valence.log",
    benchmark:
        f"{D}/benchmarks/labels/viewer_valence.tsv"
    params:
        flags=cli_flags(
            range=LABELS.get("viewers", "value_range", [-1.0, 1.0]),
            binarise_at=LABELS.get("viewers", "binarise_at", 0.0),
            segment_length=LABELS.get("viewers", "segment_s", 5.0),
        ),
        subtitles=lambda w, input: " ".join(["--subtitles", *map(shlex.quote, input.subtitles)])
        if input.subtitles
        else "",
    shell:
        "{EVOKE} labels continuous --ratings {input.ratings:q} --videos {input.videos:q}"
        " {params.subtitles} {params.flags} --segments-out {output.segments:q}"
        " --out {output.table:q} > {log:q} 2>&1"


rule danmaku_parse:
    input:
        probe=f"{D}/ingest/probe.parquet",
    output:
        comments=f"{D}/labels/danmaku/comments.parquet",
        failures=f"{D}/labels/failures.parquet",
    log:
        f"{D}/logs/labels/danmaku_parse.log",
    benchmark:
        f"{D}/benchmarks/labels/danmaku_parse.tsv"
    params:
        flags=cli_flags(
            keep_modes=LABELS.get("danmaku", "keep_modes", ["scroll", "top", "bottom", "reverse"]),
            no_collapse=not LABELS.get("danmaku", "collapse_spam", True),
            max_run=LABELS.get("danmaku", "max_run", 4),
        ),
    shell:
        "{EVOKE} danmaku parse --probe {input.probe:q} --dataset {DATASET}"
        " --failures {output.failures:q} {params.flags} --out {output.comments:q} > {log:q} 2>&1"


rule danmaku_train:
    input:
        corpus=DANMAKU_CORPUS or [],
        # head bert's local BERT folder, file by file: params carry only its path
        pretrained=LABELS.pretrained_files("danmaku"),
    output:
        directory(f"{D}/labels/danmaku/model"),
    log:
        f"{D}/logs/labels/danmaku_train.log",
    benchmark:
        f"{D}/benchmarks/labels/danmaku_train.tsv"
    threads: 1
    resources:
        mem_mb=4000,
    params:
        flags=cli_flags(
            head=LABELS.get("danmaku", "head", "light"),
            label_map=LABELS.get("danmaku", "label_map"),
            pretrained=LABELS.get("danmaku", "pretrained"),
            epochs=LABELS.get("danmaku", "epochs"),
            split=LABELS.get("danmaku", "split", [0.8, 0.1, 0.1]),
            emotions=LABELS.get("danmaku", "emotions"),
            seed=LABELS.get("danmaku", "seed", 0),
        ),
    shell:
        "{EVOKE} danmaku train --corpus {input.corpus:q} {params.flags} --out {output:q} > {log:q} 2>&1"


rule danmaku_classify:
    input:
        model=rules.danmaku_train.output[0],
        comments=rules.danmaku_parse.output.comments,
    output:
        f"{D}/labels/danmaku/scored.parquet",
    log:
        f"{D}/logs/labels/danmaku_classify.log",
    benchmark:
        f"{D}/benchmarks/labels/danmaku_classify.tsv"
    shell:
        "{EVOKE} danmaku classify --model {input.model:q} --comments {input.comments:q}"
        " --out {output:q} > {log:q} 2>&1"


rule danmaku_windows:
    input:
        scored=rules.danmaku_classify.output[0],
        probe=f"{D}/ingest/probe.parquet",
    output:
        windows=f"{D}/labels/danmaku/windows.parquet",
        seconds=f"{D}/labels/danmaku_seconds.parquet",
    log:
        f"{D}/logs/labels/danmaku_windows.log",
    benchmark:
        f"{D}/benchmarks/labels/danmaku_windows.tsv"
    params:
        flags=cli_flags(
            window=LABELS.get("danmaku", "window_s", 5.0),
            threshold=LABELS.get("danmaku", "threshold", 0.5),
            soft=LABELS.get("danmaku", "soft", False),
            rate_hz=config["frames"]["rate_hz"],
        ),
    shell:
        "{EVOKE} danmaku windows --scored {input.scored:q} --probe {input.probe:q} {params.flags}"
        " --seconds-out {output.seconds:q} --out {output.windows:q} > {log:q} 2>&1"


LABEL_TARGETS = []
if VCE_RESPONSES:
    LABEL_TARGETS.extend(rules.labels_vce.output)
    LABEL_TARGETS.extend(rules.labels_v2v_sample.output)
if V2V_VOTES:
    LABEL_TARGETS.extend(rules.labels_v2v_votes.output)
    LABEL_TARGETS.extend(rules.labels_v2v_lists.output)
if EEV_CSV:
    LABEL_TARGETS.extend(rules.labels_eev.output)
# the viewers builder writes two tables in one job: a given viewer_valence table replaces it
if VIEWER_RATINGS and "viewer_valence" not in LABEL_TABLES:
    LABEL_TARGETS.extend(rules.labels_viewers.output)
if DANMAKU_CORPUS and "danmaku_seconds" not in LABEL_TABLES:  # the same: two tables in one job
    LABEL_TARGETS.extend(rules.danmaku_windows.output)
# plain paths, not rules.X.output (which would tie each to its builder and bypass the ruleorder)
LABEL_TARGETS = list(dict.fromkeys([str(p) for p in LABEL_TARGETS]
                                   + [f"{D}/labels/{name}.parquet" for name in sorted(LABEL_TABLES)]))


# What the label builders of LABEL_TARGETS read besides the annotations, and the danmaku
# chain's intermediate files: the labels target lists them, and the train and report targets
# list the part their tables need (label_upstream), so the plain command finishes an
# interrupted --forcerun of ingest_shard, a label builder or danmaku_train (see target_files).
LABEL_UPSTREAM = {}
if EEV_CSV and "eev" not in LABEL_TABLES:
    LABEL_UPSTREAM[f"{D}/labels/eev.parquet"] = list(rules.ingest.input)  # the probe's durations
if VIEWER_RATINGS and "viewer_valence" not in LABEL_TABLES:
    for _table in rules.labels_viewers.output:
        LABEL_UPSTREAM[str(_table)] = list(rules.ingest.input)
if DANMAKU_CORPUS and "danmaku_seconds" not in LABEL_TABLES:
    LABEL_UPSTREAM[f"{D}/labels/danmaku_seconds.parquet"] = [
        *rules.ingest.input,
        *rules.danmaku_parse.output,
        *rules.danmaku_train.output,
        *rules.danmaku_classify.output,
    ]
if VCE_RESPONSES and SAMPLE_PREDICTIONS:  # a train run's predictions, and its features' files
    LABEL_UPSTREAM[f"{D}/labels/v2v_sample.parquet"] = [f"{D}/{SAMPLE_PREDICTIONS}"] + (
        [] if "/labels/" in f"/{SAMPLE_PREDICTIONS}" else list(rules.features.input))


def label_upstream(tables):
    """The upstream files (LABEL_UPSTREAM) of the label tables ``tables``."""
    return list(dict.fromkeys(f for t in tables for f in LABEL_UPSTREAM.get(str(t), [])))


rule labels:
    input:
        target_files(LABEL_TARGETS, label_upstream(LABEL_TARGETS)),


localrules:
    labels,
    labels_table,
