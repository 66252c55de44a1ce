#!/usr/bin/env bash
# One command: set up a fresh clone and run the whole workflow on the embedded demo.
# The demo's own settings (its manifest, annotations and training) are in
# data/demo/config.yaml, written by `evoke demo build` (scripts/setup.sh runs it) and
# laid over config.yaml. Extra arguments go to Snakemake: bash scripts/demo.sh frames
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# targets first: --configfile (like --config) takes every word after it up to the next option
.venv/bin/snakemake --cores "${EVOKE_CORES:-2}" "$@" --configfile data/demo/config.yaml
report=results/demo/report/report.html
if [ -f "$report" ]; then
  echo "[demo] the report: $report (and report.md beside it); progress: .venv/bin/evoke status --dataset demo"
else
  echo "[demo] done; no report yet (the target you asked for stops before it): .venv/bin/evoke status --dataset demo"
fi
