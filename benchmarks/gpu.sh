#!/usr/bin/env bash
# The GPU figures in one run (at most ~12 minutes on one recent GPU): the four recipes' step time at the papers'
# batch/crop with the levers off and on, RRDBNet-23 inference MP/s at tile 256/512/whole in fp32/bf16/fp16 with the
# reduced precisions' PSNR against fp32, peak memory; then the real-world degradation chain's batches/s beside its
# per-sample reference. Writes benchmarks/results/gpu-<device>.json and degradations-<device>.json (commit them).
#   benchmarks/gpu.sh              # on a machine with a CUDA GPU, from the repository root's .venv
#   benchmarks/gpu.sh --tiny       # a CPU smoke run (tiny networks; tests/test_benchmarks.py)
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY=python3
if [ "${1:-}" = "--tiny" ]; then
  shift
  exec "$PY" benchmarks/gpu.py --device cpu --tiny --steps 1 --warmup 0 --side 32 --tiles 16 0 --repeats 1 \
    --precisions fp32 bf16 --json "${OUT:-benchmarks/results/gpu-smoke.json}" "$@"
fi
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA GPU visible: run with --tiny for the CPU smoke run')"
NAME="$("$PY" -c "import torch, re; print(re.sub(r'[^a-z0-9]+', '-', torch.cuda.get_device_name(0).lower()).strip('-'))")"
timeout 480 "$PY" benchmarks/gpu.py --device cuda --compile default --json "benchmarks/results/gpu-${NAME}.json" "$@"
# the real-world degradation chain on CUDA beside its per-sample reference and the embedded training steps (~1 min)
exec timeout 240 "$PY" benchmarks/degradations.py --device cuda --repeats 10 \
  --json "benchmarks/results/degradations-${NAME}.json"
