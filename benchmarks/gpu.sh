#!/usr/bin/env bash
# Every GPU check and benchmark of the project, in one script for a lent GPU machine (see CONTRIBUTING.md).
#   bash benchmarks/gpu.sh [OUT_DIR]        # default benchmarks/out/gpu
# SKIP_DECODE=1 / SKIP_QUANT=1 / SKIP_COMPILE=1 / SKIP_TRAIN=1 / SKIP_SERVE=1 / SKIP_POST=1 leave those steps out.
# A short session runs the steps whose figures move most often, serve (issue 7: engine vs HF, phase timings) and
# train (issue 5: MFU). One device call may run 600 s and a session has 15 device-minutes with the start-up, so run
# tests + serve + train (limits 510 s) as:
#   SKIP_DECODE=1 SKIP_QUANT=1 SKIP_COMPILE=1 SKIP_POST=1 SERVE_SECTIONS="rejection throughput" bash benchmarks/gpu.sh
# and post_train (SmolLM2 post-training, 300 s) only in a second call if time is left.
# Each step has its own time limit, writes JSON under OUT_DIR and a log; a failing step does not stop the next.
# Needs torch (CUDA), transformers, pytest on the machine; nothing is downloaded.
set -u
OUT=${1:-${OUT:-benchmarks/out/gpu}}
mkdir -p "$OUT"
PY=${PYTHON:-python}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
step() {  # step NAME SECONDS CMD...
  local name=$1 limit=$2; shift 2
  echo "=== $name (limit ${limit}s): $*"
  local t0=$SECONDS
  timeout "$limit" "$@" > >(tee "$OUT/$name.log") 2>&1
  echo "=== $name: exit $? after $((SECONDS - t0))s"
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
$PY -c "import torch, transformers; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'transformers', transformers.__version__)" | tee -a "$OUT/gpu.txt"

step tests 90 $PY -m pytest -q -p no:cacheprovider -p no:nbval tests/test_gpu.py tests/test_linear.py \
  tests/test_infer_engine.py tests/test_infer_paged_attention.py \
  $([ "${SKIP_QUANT:-0}" = 1 ] || ls tests/test_quant.py 2>/dev/null)
[ "${SKIP_DECODE:-0}" = 1 ] || step decode 240 $PY benchmarks/decode.py --mode gpu --repeats 3 --out "$OUT/decode_gpu.json"
# A/B of the decode-attention choice (attention.py: auto = matmuls below 64 blocks, SDPA above)
for attn in $([ "${SKIP_DECODE:-0}" = 1 ] || echo sdpa matmul); do
  step decode_$attn 150 env MINILLM_DECODE_ATTN=$attn $PY benchmarks/decode.py --mode gpu --repeats 3 --batches 1 16 \
    --out "$OUT/decode_gpu_$attn.json"
done
if [ -f benchmarks/quant.py ] && [ "${SKIP_QUANT:-0}" != 1 ]; then
  step quant 150 $PY benchmarks/quant.py --mode gpu --out "$OUT/quant_gpu.json"
fi
if [ "${SKIP_COMPILE:-0}" != 1 ]; then
  step decode_compile 150 $PY benchmarks/decode.py --mode gpu --compile --batches 1 --repeats 3 \
    --out "$OUT/decode_gpu_compile.json"
fi
# SERVE_SECTIONS="rejection throughput" leaves out the sections that decode graphs do not change (attention, memory)
[ "${SKIP_SERVE:-0}" = 1 ] || step serve 200 $PY benchmarks/serve.py --mode gpu --deadline-s 150 \
  --sections ${SERVE_SECTIONS:-attention memory rejection throughput} --out "$OUT/serve_gpu.json"
[ "${SKIP_TRAIN:-0}" = 1 ] || step train 220 $PY benchmarks/train.py --spec-tflops 989 --out "$OUT/train_gpu.json"
[ "${SKIP_POST:-0}" = 1 ] || step post_train 300 $PY benchmarks/post_train.py --device cuda --out "$OUT/post_train_gpu.json"
echo "done"
