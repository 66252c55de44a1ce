# Stage 6, report: every train job's metrics beside the baselines, with bootstrap intervals
# (from the runs' test predictions and the label tables) and plots.
#   results/{dataset}/report/metrics.json, report.html, report.md and PNG plots beside them.


def report_reads():
    """What the report reads besides the runs: what every train job reads (the intervals
    re-score each run's test predictions with its task's own loader: the label tables, the
    probe table for their splits) and the VCE table (the emodiversity and t-SNE plots, drawn
    without a vce run too)."""
    files = [f for task in dict.fromkeys(t for t, _, _ in train_jobs()) for f in task_inputs(task).values()]
    vce = f"{D}/labels/vce.parquet"
    return list(dict.fromkeys(files + ([vce] if vce in LABEL_TARGETS else [])))


rule report_build:
    input:
        metrics=train_outputs(),
        # the bootstrap intervals re-score each run's test predictions
        predictions=[m.replace("metrics.json", "predictions.parquet") for m in train_outputs()],
        reads=report_reads(),
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
        # and every file the runs came from (an interrupted --forcerun of an earlier stage: see
        # target_files)
        target_files(rules.report_build.output, rules.train.input),


localrules:
    train,
    report,
