#!/usr/bin/env bash
# The whole GPU check in one command, for one `run` call on a lent H100 (docs/gpu.md): install
# the wheels bench/prepare_gpu_wheels.sh put in .whl/, train the worker and TRL on a ~0.5B
# Qwen2 (bench/train_throughput.py --device cuda), run the GPU tests (pytest -m gpu), and
# write every figure and log to $OUT (/tmp/tailor-gpu-out when OUT is unset). Prints a summary last.
#
# Time budget on one H100, 8 minutes in all (each step is cut off at its limit, and the
# summary still comes back):
#   1. wheels: join split pieces, pip install --target (no index)         limit  45 s (~20 expected)
#   2. smoke: import everything the check imports, print versions         limit  45 s (~20)
#   3. train benchmark: build the 0.5B model (~20 s), 4 arms x 2 repeats limit 300 s (~200)
#      in their own processes (~20-25 s each: imports, CUDA start, load,
#      40 steps of 16 chats, evaluations), then an 8192^3 bf16 matmul
#   4. pytest -m gpu tests/gpu: the worker on CUDA vs TRL and vs CPU      limit  90 s (~60)
#      (tiny model); vLLM's checks, which need vLLM's CUDA build
#   the limits add up to 480 s; give the call timeout_s 540, for the summary and the transfers.
#
#   bash bench/gpu_check.sh            # all steps
#   bash bench/gpu_check.sh tests      # a rerun of one part: wheels, smoke, then only `train` or
#                                      # `tests` (a warm machine keeps the built model in /tmp)
#
# vLLM's CUDA build is not among the wheels: vllm 0.32.0 needs torch 2.13.0 and triton 3.7.1,
# about 1 GiB together (bash bench/prepare_gpu_wheels.sh --vllm-sizes), against the 64 MiB a
# call carries. Without it the vLLM tests are reported as NOT RUN, never as passed.
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
OUT=${OUT:-/tmp/tailor-gpu-out}
mkdir -p "$OUT"
SITE=/tmp/tailor-gpu-site
export PYTHONPATH="$SITE:$REPO" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_HOME=/tmp/tailor-hf
export TOKENIZERS_PARALLELISM=false
PY=${PY:-python3}
PARTS=" ${*:-train tests} "
STARTED=$SECONDS
declare -a STEPS
FAILED=0

step() {  # NAME LIMIT_S COMMAND...: run with a time limit, record its status and duration
    local name=$1 limit=$2 begun=$SECONDS status
    shift 2
    echo "== $name (limit ${limit} s)" >&2
    # bash -c so that a function (exported below) runs under the limit too.
    timeout --kill-after=10 "$limit" bash -c '"$@"' "$name" "$@"
    status=$?
    STEPS+=("| $name | $status$( ((status == 124 || status == 137)) && echo ' (time limit)') | $((SECONDS - begun)) s |")
    ((status == 0)) || FAILED=$((FAILED + 1))
    return $status
}

install_wheels() {
    # Pieces of a wheel split by prepare_gpu_wheels.sh (NAME.whl.part-aa, -ab, ...) are joined first.
    local joined=/tmp/tailor-gpu-wheels first
    rm -rf "$joined" && mkdir -p "$joined"
    cp .whl/*.whl "$joined"/ 2>/dev/null
    for first in .whl/*.whl.part-aa; do
        [[ -e $first ]] || continue
        cat "${first%.part-aa}".part-* >"$joined/$(basename "${first%.part-aa}")"
    done
    ls "$joined"/*.whl >/dev/null || { echo "no wheels in .whl/: run bench/prepare_gpu_wheels.sh and carry .whl" >&2; return 1; }
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "$joined"/*.whl
}

export -f install_wheels
export PY SITE

{
    echo "# environment"
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv
    "$PY" --version
    "$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name())'
} >"$OUT/env.txt" 2>&1

step "install wheels" 45 install_wheels >>"$OUT/env.txt" 2>&1
step "smoke imports" 45 "$PY" bench/gpu_env.py smoke >>"$OUT/env.txt" 2>&1

[[ $PARTS == *" train "* ]] && step "train benchmark (cuda)" 300 "$PY" bench/train_throughput.py --device cuda --steps 40 --repeat 2 \
    --batch-size 16 --max-length 1024 --warmup 3 --threads 4 --no-write --work-dir /tmp/tailor-bench-train \
    --json "$OUT/train_cuda.json" >"$OUT/train_cuda.md" 2>"$OUT/train_cuda.log"

[[ $PARTS == *" tests "* ]] && step "pytest -m gpu tests/gpu" 90 "$PY" -m pytest -m gpu tests/gpu -p no:cacheprovider -rA -q \
    --junitxml="$OUT/gpu_tests.xml" >"$OUT/gpu_tests.log" 2>&1

{
    echo "# GPU check: $(grep -m1 '^torch ' "$OUT/env.txt")"
    echo
    echo "| step | exit | took |"
    echo "|---|---|---|"
    printf '%s\n' "${STEPS[@]}"
    echo
    echo "total $((SECONDS - STARTED)) s"
    echo
    echo "## train benchmark"
    cat "$OUT/train_cuda.md" 2>/dev/null
    grep -E '^== ' "$OUT/train_cuda.log" 2>/dev/null
    [[ -s $OUT/train_cuda.md ]] || tail -8 "$OUT/train_cuda.log" 2>/dev/null
    echo
    echo "## GPU tests (skipped = NOT RUN; vLLM's CUDA build cannot travel here, see docs/gpu.md)"
    grep -E '^(PASSED|FAILED|ERROR|SKIPPED)|passed|failed|error' "$OUT/gpu_tests.log" 2>/dev/null | tail -20
    echo
    echo "## versions"
    grep -vE '^(# environment)' "$OUT/env.txt" | tail -20
} >"$OUT/summary.md"
cat "$OUT/summary.md"
echo "$FAILED step(s) failed"
((FAILED == 0))
