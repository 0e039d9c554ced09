#!/usr/bin/env bash
# The GPU measurements, as one script for a short loan of a GPU machine (about 10 minutes on one
# H200): Lab conversion and training speed on the GPU, then one epoch of the `full` profile's
# ResNet18 training on generated photos and its projected 50-epoch total.
#
#   PY=python3 OUT=runs/bench/gpu bash bench/gpu.sh
#
# PY needs torch, torchvision, scikit-image, Pillow, tqdm and PyYAML (no notebooks, no papermill);
# the JSON files it writes go to $OUT, to be copied into figures/results/ beside the CPU ones.
set -euo pipefail
PY=${PY:-.venv/bin/python}
OUT=${OUT:-runs/bench/gpu}
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
"$PY" bench/lab.py --device cuda --out "$OUT/bench_lab_gpu.json"
"$PY" bench/train.py --device cuda --seconds 5 --out "$OUT/bench_train_gpu.json"
"$PY" bench/full_epoch.py --device cuda --images 8000 --out "$OUT/bench_full_epoch_gpu.json"
"$PY" bench/full_epoch.py --device cuda --images 8000 --compile --out "$OUT/bench_full_epoch_gpu_compiled.json"
