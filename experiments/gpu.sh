#!/usr/bin/env bash
# GPU figures (issue 14): the CUDA tests, `speechlstm bench` on the GPU, a profiled
# training step, and the shipped recipe trained on the GPU (timed), each result in OUT_DIR.
#   bash experiments/gpu.sh DATA_DIR OUT_DIR [python]
# DATA_DIR: the Speech Commands tree the shipped model trains on (../shared/data/speech_commands_mini).
set -uo pipefail
DATA=$1 OUT=$2 PY=${3:-python3}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
$PY -m pytest -q -p no:cacheprovider tests/test_cuda.py 2>&1 | tail -5 | tee "$OUT/test_cuda.txt"
$PY -m speechlstm bench --device cuda --json > "$OUT/bench_cuda.json" 2> "$OUT/bench_cuda.log"
$PY -m speechlstm bench --device cuda --train "$DATA" --json > "$OUT/train_profile_cuda.json" 2>> "$OUT/bench_cuda.log"
TIMEFORMAT="wall_s %R"
{ time $PY -m speechlstm train --data-dir "$DATA" --out "$OUT/commands12-gpu.pt" --device cuda --quiet \
    > "$OUT/train_gpu.log" 2>&1; } 2>> "$OUT/train_gpu.log"
tail -3 "$OUT/train_gpu.log"
# Seeds 1 and 2 of the same recipe side by side on the one GPU (seed variance of GPU-trained models).
for seed in 1 2; do
  { time $PY -m speechlstm train --data-dir "$DATA" --out "$OUT/commands12-gpu-s$seed.pt" --device cuda --quiet \
      --set train.optim.seed=$seed > "$OUT/train_gpu_s$seed.log" 2>&1; } 2>> "$OUT/train_gpu_s$seed.log" &
done
wait
tail -qn 2 "$OUT"/train_gpu_s*.log
