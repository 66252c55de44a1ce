# Stage 6, report: every train job's metrics beside the baselines, with bootstrap intervals
# (from the runs' test predictions and the label tables) and plots.
#   results/{dataset}/report/metrics.json, report.html, report.md and PNG plots beside them.


rule report_build:
    input:
        metrics=train_outputs(),
        # the bootstrap intervals re-score each run's test predictions
        predictions=[m.replace("metrics.json", "predictions.parquet") for m in train_outputs()],
    output:
        metrics=report(f"{D}/report/metrics.json", category="Metrics"),
        html=report(f"{D}/report/report.html", category="Report"),
        md=f"{D}/report/report.md",
    log:
        f"{D}/logs/report/report.log",
    benchmark:
        f"{D}/benchmarks/report/report.tsv"
    params:
        perplexity=config.get("train", {}).get("tsne_perplexity", 5),
        out=f"{D}/report",
    shell:
        "{EVOKE} report --dataset {DATASET} --out {params.out:q} --perplexity {params.perplexity}"
        " {input.metrics:q} > {log:q} 2>&1"


rule report:
    input:
        rules.report_build.output,


localrules:
    train,
    report,
