# frames.backend: nvdec decodes on an NVIDIA GPU, so its shard jobs ask for one (gpu=1, as
# features_shard_gpu does); pyav and decord jobs ask for none.
FRAMES_GPU = {"gpu": 1} if config["frames"]["backend"] == "nvdec" else {}


rule frames_shard:
    input:
        probe=f"{D}/ingest/shards/{{shard}}.parquet",
    output:
        h5=frames_file(f"{D}/frames/{{shard}}.h5"),
        status=f"{D}/frames/{{shard}}.status.parquet",
    log:
        f"{D}/logs/frames/{{shard}}.log",
    benchmark:
        f"{D}/benchmarks/frames/{{shard}}.tsv"
    threads: 2
    resources:
        mem_mb=2000,
        runtime=240,
        **FRAMES_GPU,
    params:
        settings=settings("frames"),
    shell:
        "{EVOKE} frames shard --shard {wildcards.shard} --dataset {DATASET}"
        " --probe {input.probe:q} --settings {params.settings}"
        " --out {output.h5:q} --status {output.status:q} --threads {threads} > {log:q} 2>&1"


rule frames_merge:
    input:
        status=shard_files(f"{D}/frames/{{shard}}.status.parquet"),
        # the ingest stage's failures first: results/{dataset}/failures.parquet, rebuilt
        # here, is then complete under the frames target too
        upstream=rules.ingest_merge.output.failures,
    output:
        index=f"{D}/frames/index.parquet",
        failures=f"{D}/frames/failures.parquet",
    log:
        f"{D}/logs/frames/merge.log",
    benchmark:
        f"{D}/benchmarks/frames/merge.tsv"
    shell:
        "{EVOKE} frames merge {input.status:q} --dataset {DATASET} --out {output.index:q} > {log:q} 2>&1"


rule frames:
    input:
        # every shard's status (kept under frames.keep: false too) and the kept frames: an
        # interrupted --forcerun frames_shard removed some (see target_files); a removed temp()
        # file asked for here would be sampled again. And the ingest stage's files.
        target_files(
            rules.frames_merge.output,
            shard_files(f"{D}/frames/{{shard}}.status.parquet"),
            shard_files(f"{D}/frames/{{shard}}.h5") if config["frames"]["keep"] else [],
            rules.ingest.input,
        ),
