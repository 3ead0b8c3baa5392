#!/usr/bin/env bash
# Every GPU check and benchmark of the project, in one script for a lent GPU machine (see CONTRIBUTING.md).
#   bash benchmarks/gpu.sh [OUT_DIR]                      # default benchmarks/out/gpu; all steps
#   STEPS="tests kernel serve" bash benchmarks/gpu.sh     # only these steps, in this order
# Steps (seconds on an H100/H200; each has its own time limit, writes JSON and a log under OUT_DIR, and a failing
# step does not stop the next):
#   tests     GPU tests: CUDA-graph/compiled decoding, the Triton paged kernel, the engine, fp8 (~60 s)
#   kernel    the paged decode kernel's launch grid (benchmarks/paged_kernel.py); its best configuration is passed
#             on to the later steps as MINILLM_PAGED_KERNEL unless that is already set (~40 s)
#   serve     decode attention paged vs contiguous, a profiled decode step at batch 256, the nano-vllm throughput
#             protocol with phase timings (benchmarks/serve.py; ~170 s)
#   decode    batch-1 decode vs the roofline, eager step in a CUDA graph and torch.compile-d (benchmarks/decode.py)
#   decode16  batch 1/16/64 decode (the full table)
#   quant     fp8/int8 GEMMs and the 4,096-token prefill with the report's policy (benchmarks/quant.py; ~90 s)
#   parallel  DP/TP/GPipe/pipelined inference over NCCL and gloo on the machine's GPUs (benchmarks/parallel_gpu.py)
#   train     pre-training MFU (benchmarks/train.py; ~70 s)
#   post      SmolLM2 post-training (benchmarks/post_train.py; ~300 s)
# One device call may run 600 s and a session has 15 device-minutes including the start-up: split the steps over
# two calls, e.g. STEPS="tests kernel serve" then STEPS="decode quant parallel" (pass the first call's
# MINILLM_PAGED_KERNEL to the second). Needs torch (CUDA), triton, transformers, pytest; nothing is downloaded.
set -u
OUT=${1:-${OUT:-benchmarks/out/gpu}}
mkdir -p "$OUT"
PY=${PYTHON:-python}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
STEPS=${STEPS:-tests kernel serve decode quant parallel train post}
step() {  # step NAME SECONDS CMD...
  local name=$1 limit=$2; shift 2
  echo "=== $name (limit ${limit}s): $*"
  local t0=$SECONDS
  timeout "$limit" "$@" > >(tee "$OUT/$name.log") 2>&1
  echo "=== $name: exit $? after $((SECONDS - t0))s"
}
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm,clocks.max.mem --format=csv,noheader \
  | tee "$OUT/gpu.txt"
$PY -c "import torch, transformers; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'transformers', transformers.__version__)" | tee -a "$OUT/gpu.txt"
git rev-parse --short HEAD 2>/dev/null | sed 's/^/commit /' | tee -a "$OUT/gpu.txt"

for s in $STEPS; do
  case $s in
    tests) step tests 150 $PY -m pytest -q -p no:cacheprovider -p no:nbval tests/test_gpu.py tests/test_linear.py \
             tests/test_infer_engine.py tests/test_infer_paged_attention.py tests/test_quant.py ;;
    kernel)
      step kernel 120 $PY benchmarks/paged_kernel.py --out "$OUT/paged_kernel.json"
      best=$(grep '^BEST ' "$OUT/kernel.log" | tail -1 | cut -d' ' -f2)
      if [ -z "${MINILLM_PAGED_KERNEL:-}" ] && [ -n "$best" ]; then
        export MINILLM_PAGED_KERNEL=$best
      fi
      echo "MINILLM_PAGED_KERNEL=${MINILLM_PAGED_KERNEL:-<default>}" | tee -a "$OUT/gpu.txt" ;;
    serve) step serve 230 $PY benchmarks/serve.py --mode gpu --deadline-s 160 \
             --sections ${SERVE_SECTIONS:-attention profile throughput} --out "$OUT/serve_gpu.json" ;;
    decode)
      step decode 150 $PY benchmarks/decode.py --mode gpu --repeats 3 --batches 1 --out "$OUT/decode_gpu_b1.json"
      step decode_compile 180 $PY benchmarks/decode.py --mode gpu --compile --batches 1 --repeats 3 \
        --out "$OUT/decode_gpu_compile.json" ;;
    decode16) step decode16 240 $PY benchmarks/decode.py --mode gpu --repeats 3 --out "$OUT/decode_gpu.json" ;;
    quant) step quant 200 $PY benchmarks/quant.py --mode gpu --out "$OUT/quant_gpu.json" ;;
    parallel) step parallel 150 $PY benchmarks/parallel_gpu.py --out "$OUT/parallel_gpu.json" ;;
    train) step train 220 $PY benchmarks/train.py --spec-tflops 989 --out "$OUT/train_gpu.json" ;;
    post) step post_train 300 $PY benchmarks/post_train.py --device cuda --out "$OUT/post_train_gpu.json" ;;
    *) echo "unknown step $s (see the header of this script)" ;;
  esac
done
echo "done"
