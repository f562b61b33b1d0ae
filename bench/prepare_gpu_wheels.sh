#!/usr/bin/env bash
# Download here, where PyPI is reachable, the wheels bench/gpu_check.sh installs on a lent GPU
# machine (which reaches no registry): the names in bench/gpu_wheels.txt at the versions of
# requirements/bench.txt, built for that machine (CPython 3.12, x86-64 manylinux), into .whl/
# (ignored by git). A wheel over 60 MiB is split into 60 MiB pieces (NAME.whl.part-aa, ...)
# that gpu_check.sh joins again. Prints every wheel's size and the total, which travels with
# the working tree: a call carries at most 64 MiB in all, so it stops if the total exceeds it.
#
#   bash bench/prepare_gpu_wheels.sh              # download into .whl/ (about 40 MiB)
#   bash bench/prepare_gpu_wheels.sh --vllm-sizes # only report what vLLM's CUDA build would need
#   IMAGE_PACKAGES=list.txt bash bench/prepare_gpu_wheels.sh  # also check the import closure
#
# IMAGE_PACKAGES: the GPU image's package names (KINDS.md's list); when given, gpu_env.py
# checks that every module the GPU check imports is on the image or among the wheels.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-.venv/bin/python}
DEST=.whl
LOCK=requirements/bench.txt
LIMIT_MIB=64
PIECE=60M
PLATFORMS=(manylinux_2_39_x86_64 manylinux_2_35_x86_64 manylinux_2_34_x86_64 manylinux_2_31_x86_64
           manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64
           manylinux2014_x86_64 manylinux1_x86_64)
PIP_TARGET_ARGS=(--no-deps --only-binary=:all: --python-version 3.12 --implementation cp)
for platform in "${PLATFORMS[@]}"; do PIP_TARGET_ARGS+=(--platform "$platform"); done

pinned() {  # NAME -> NAME==VERSION from the lock (names compared as pip normalizes them)
    local key
    key=$(echo "$1" | tr 'A-Z_.' 'a-z--')
    awk -F'==' -v key="$key" '{name=tolower($1); gsub(/[_.]/, "-", name)} name == key {print $0; exit}' "$LOCK" |
        sed 's/ .*//'
}

mib() { awk -v b="$1" 'BEGIN {printf "%.1f", b / 1048576}'; }

if [[ ${1:-} == --vllm-sizes ]]; then
    # vLLM's CUDA build and what it pins that the image's torch 2.11 cannot stand in for.
    # Sizes from the index's own answer (pip install --dry-run --report), nothing downloaded.
    report=$(mktemp)
    total=0
    for requirement in vllm==0.32.0 torch==2.13.0 triton==3.7.1; do
        "$PYTHON" -m pip install -q --dry-run --ignore-installed --report "$report" --target /tmp/unused \
            "${PIP_TARGET_ARGS[@]}" "$requirement" >/dev/null
        url=$("$PYTHON" -c 'import json,sys; print(json.load(open(sys.argv[1]))["install"][0]["download_info"]["url"])' "$report")
        bytes=$(curl -sIL "$url" | awk 'tolower($1) == "content-length:" {n=$2} END {print n+0}')
        total=$((total + bytes))
        printf '%-20s %8s MiB  %s\n' "$requirement" "$(mib "$bytes")" "${url##*/}"
    done
    rm -f "$report"
    echo "total $(mib "$total") MiB: $(( (total + 62914559) / 62914560 )) pieces of 60 MiB, one call each at best"
    exit 0
fi

mkdir -p "$DEST"
requirements=()
while read -r name _; do
    [[ -z $name || $name == \#* ]] && continue
    requirement=$(pinned "$name")
    [[ -n $requirement ]] || { echo "$name: not in $LOCK" >&2; exit 1; }
    requirements+=("$requirement")
done <bench/gpu_wheels.txt

"$PYTHON" -m pip download -q "${PIP_TARGET_ARGS[@]}" -d "$DEST" "${requirements[@]}"

# One version of each: a stale wheel of an earlier lock would stop the whole install there.
for requirement in "${requirements[@]}"; do
    name=${requirement%%==*}
    version=${requirement#*==}
    wheel_name=$(echo "$name" | tr 'A-Z.-' 'a-z__')
    for path in "$DEST"/*.whl "$DEST"/*.whl.part-*; do
        [[ -e $path ]] || continue
        base=$(basename "$path")
        base_name=$(echo "${base%%-*}" | tr 'A-Z.-' 'a-z__')
        [[ $base_name == "$wheel_name" && $base != "${base%%-*}-$version-"* ]] && rm -v "$path"
    done
done

for wheel in "$DEST"/*.whl; do
    [[ -e $wheel ]] || continue
    if (($(stat -c %s "$wheel") > 60 * 1048576)); then
        split -b "$PIECE" "$wheel" "$wheel.part-"
        rm "$wheel"
    fi
done

total=0
while read -r bytes path; do
    total=$((total + bytes))
    printf '%8s MiB  %s\n' "$(mib "$bytes")" "${path#"$DEST"/}"
done < <(find "$DEST" -maxdepth 1 -type f -printf '%s %p\n' | sort -k2)
tree=$( (git ls-files -z; git ls-files -z --others --exclude-standard) | xargs -0 stat -c %s 2>/dev/null |
    awk '{s += $1} END {print s + 0}')
echo "wheels: $(mib "$total") MiB in $(find "$DEST" -maxdepth 1 -type f | wc -l) files; working tree $(mib "$tree") MiB;" \
    "together $(mib $((total + tree))) MiB of the $LIMIT_MIB MiB a call carries"

if [[ -n ${IMAGE_PACKAGES:-} ]]; then
    "$PYTHON" bench/gpu_env.py closure --image "$IMAGE_PACKAGES" --wheels "$DEST"
fi
if ((total + tree > LIMIT_MIB * 1048576)); then
    echo "over the $LIMIT_MIB MiB a call carries: trim bench/gpu_wheels.txt" >&2
    exit 1
fi
