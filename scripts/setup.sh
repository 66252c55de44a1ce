#!/usr/bin/env bash
# Set up a fresh clone of evoke: Debian packages (ffmpeg, ...), a virtualenv in
# .venv with the pinned Python dependencies, and the embedded demo dataset in
# data/demo. Safe to run again: every step skips what is already there.
#
#   bash scripts/setup.sh            # what the demo needs
#   EVOKE_WITH_SLURM=1 bash scripts/setup.sh   # also a local SLURM for the cluster tests
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[setup] %s\n' "$*" >&2; }

# --- Debian packages -------------------------------------------------------
need=()
command -v ffmpeg >/dev/null && command -v ffprobe >/dev/null || need+=(ffmpeg)
command -v espeak-ng >/dev/null || need+=(espeak-ng)
[ -f /usr/share/doc/opencv-doc/examples/data/vtest.avi ] || need+=(opencv-doc)
[ -d /usr/share/sounds/alsa ] || need+=(alsa-utils)
# headless Chromium renders the HTML report in its test (tests/heads/test_report_browser.py)
command -v chromium >/dev/null || need+=(chromium)
if [ "${EVOKE_WITH_SLURM:-0}" = 1 ]; then
  for b in slurmctld slurmd sinfo munged; do
    command -v "$b" >/dev/null || { need+=(slurmctld slurmd slurm-client munge); break; }
  done
fi
if [ ${#need[@]} -gt 0 ]; then
  log "installing Debian packages: ${need[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# --- Python ----------------------------------------------------------------
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  log "creating .venv with $($PY --version)"
  "$PY" -m venv .venv
fi
stamp=.venv/.evoke-requirements
if [ ! -f "$stamp" ] || ! cat requirements.txt requirements-nodeps.txt | cmp -s - "$stamp"; then
  log "installing pinned Python dependencies (requirements.txt, requirements-nodeps.txt)"
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -r requirements.txt
  .venv/bin/pip install -q --no-deps -r requirements-nodeps.txt
  cat requirements.txt requirements-nodeps.txt > "$stamp"
fi
# the distribution used to be called `evoke` (a name PyPI gives to another project):
# drop that install of this checkout so one package owns the `evoke` command
.venv/bin/pip show -q evoke >/dev/null 2>&1 && .venv/bin/pip uninstall -q -y evoke
.venv/bin/pip install -q --no-deps -e .

# --- the embedded demo ------------------------------------------------------
if [ "${EVOKE_SKIP_DEMO:-0}" != 1 ]; then
  .venv/bin/evoke demo build --out data/demo
fi
log "ready: bash scripts/demo.sh (the demo), or .venv/bin/snakemake --cores 2 --config dataset=NAME manifest=FILE (your own videos)"
