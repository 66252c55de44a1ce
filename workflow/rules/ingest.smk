from evoke.ingest import CONTENT_KEYS

# Download-only settings (retries, rate limit, cookies, timeouts, size limit, link or
# copy) reach the job through this global, not params: Snakemake reruns a rule when its
# params change, and rerunning ingest would rerun frames and features after it. Only
# CONTENT_KEYS, which change what ingest writes, are params.
INGEST_CONTENT = shlex.quote(
    json.dumps({k: config["ingest"][k] for k in CONTENT_KEYS}, sort_keys=True)
)
INGEST_DOWNLOAD = shlex.quote(
    json.dumps(
        {k: v for k, v in config["ingest"].items() if k not in CONTENT_KEYS},
        sort_keys=True,
    )
)


rule ingest_shard:
    output:
        probe=f"{D}/ingest/shards/{{shard}}.parquet",
    log:
        f"{D}/logs/ingest/{{shard}}.log",
    benchmark:
        f"{D}/benchmarks/ingest/{{shard}}.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=240,
    params:
        manifest=config["manifest"],
        shard_size=config["shard_size"],
        rows=shard_digest,
        settings=INGEST_CONTENT,
    shell:
        "{EVOKE} ingest shard --shard {wildcards.shard} --manifest {params.manifest:q}"
        " --dataset {DATASET} --shard-size {params.shard_size}"
        " --settings {params.settings} --download-settings {INGEST_DOWNLOAD}"
        " --out {output.probe:q} > {log:q} 2>&1"


rule ingest_merge:
    input:
        shard_files(f"{D}/ingest/shards/{{shard}}.parquet"),
    output:
        probe=f"{D}/ingest/probe.parquet",
        failures=f"{D}/ingest/failures.parquet",
    log:
        f"{D}/logs/ingest/merge.log",
    benchmark:
        f"{D}/benchmarks/ingest/merge.tsv"
    shell:
        "{EVOKE} ingest merge {input:q} --dataset {DATASET} --out {output.probe:q} > {log:q} 2>&1"


rule ingest:
    input:
        # every shard's table too (an interrupted --forcerun ingest_shard: see target_files)
        target_files(rules.ingest_merge.output, shard_files(f"{D}/ingest/shards/{{shard}}.parquet")),
