# syntax=docker/dockerfile:1.7
# The inference service on CPU: the `hf` engine (transformers + peft) with the CPU build
# of torch. The dev overlay runs it with tailor-tiny; GPUs use inference-gpu.Dockerfile.
#
#   docker build -f deploy/docker/inference.Dockerfile -t ghcr.io/tailor/inference:0.1.0 .

ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu

# ---- build -------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS build
ARG TORCH_INDEX
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
WORKDIR /src
# Exact versions first (requirements/inference.txt, compiled by `make lock`); its torch line is the
# CPU build (torch==2.13.0+cpu), which only PyTorch's CPU index serves.
COPY requirements/inference.txt ./requirements/
RUN /opt/venv/bin/pip install --extra-index-url "${TORCH_INDEX}" -r requirements/inference.txt
COPY pyproject.toml README.md ./
COPY services ./services
COPY protos ./protos
RUN /opt/venv/bin/pip install --no-deps ".[inference]"

# ---- runtime -----------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 tailor \
 && useradd --system --uid 10001 --gid tailor --home-dir /tmp --shell /usr/sbin/nologin tailor
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    HF_HOME=/data/huggingface \
    TAILOR_INFERENCE_LISTEN=0.0.0.0:50053 \
    TAILOR_DATA_DIR=/data
USER 10001:10001
EXPOSE 50053 9090
ENTRYPOINT ["python", "-m", "services.inference"]
