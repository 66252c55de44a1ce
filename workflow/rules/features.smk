# One job per (extractor, shard). Two rules with the same command, split by extractor
# (common.smk): features_shard_gpu declares gpu=1 for the torch models, features_shard
# for the rest declares none, so a cluster profile can give GPUs to the first only.
rule features_shard:
    input:
        frames=f"{D}/frames/{{shard}}.h5",
        probe=f"{D}/ingest/shards/{{shard}}.parquet",
    output:
        h5=f"{D}/features/{{extractor}}/{{shard}}.h5",
        status=f"{D}/features/{{extractor}}/{{shard}}.status.parquet",
    log:
        f"{D}/logs/features/{{extractor}}/{{shard}}.log",
    benchmark:
        f"{D}/benchmarks/features/{{extractor}}/{{shard}}.tsv"
    wildcard_constraints:
        extractor=one_of(CPU_EXTRACTORS),
    threads: 2
    resources:
        mem_mb=4000,
        runtime=480,
    params:
        settings=extractor_settings,
    shell:
        "{EVOKE} features shard --extractor {wildcards.extractor} --shard {wildcards.shard}"
        " --dataset {DATASET} --frames {input.frames:q} --probe {input.probe:q}"
        " --settings {params.settings} --runtime {FEATURES_RUNTIME}"
        " --out {output.h5:q} --status {output.status:q}"
        " > {log:q} 2>&1"


use rule features_shard as features_shard_gpu with:
    wildcard_constraints:
        extractor=one_of(GPU_EXTRACTORS),
    resources:
        mem_mb=4000,
        runtime=480,
        gpu=1,


rule features_merge:
    input:
        status=expand(
            f"{D}/features/{{extractor}}/{{shard}}.status.parquet",
            extractor=EXTRACTOR_NAMES,
            shard=sorted(SHARDS),
        ),
        # the earlier stages' failures first, so results/{dataset}/failures.parquet is
        # complete under the features target (see frames_merge)
        upstream=rules.frames_merge.output.failures,
    output:
        index=f"{D}/features/index.parquet",
        failures=f"{D}/features/failures.parquet",
    log:
        f"{D}/logs/features/merge.log",
    benchmark:
        f"{D}/benchmarks/features/merge.tsv"
    shell:
        "{EVOKE} features merge {input.status:q} --dataset {DATASET} --out {output.index:q} > {log:q} 2>&1"


rule features:
    input:
        # the per-shard files too (an interrupted --forcerun: see target_files), and the
        # frames and ingest stages' files
        target_files(
            rules.features_merge.output,
            expand(f"{D}/features/{{extractor}}/{{shard}}.{{kind}}", extractor=EXTRACTOR_NAMES,
                   shard=sorted(SHARDS), kind=["h5", "status.parquet"]),
            rules.frames.input,
        ),
