# syntax=docker/dockerfile:1.7
# The dataset service: uploads, validation and statistics of training files (gRPC).
# Token counts need a tokenizer (transformers + tokenizers) but never a model, so the
# `dataset` extra carries no torch.
#
#   docker build -f deploy/docker/dataset.Dockerfile -t ghcr.io/tailor/dataset:0.1.0 .

ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

# ---- build -------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
WORKDIR /src
# Exact versions first (requirements/dataset.txt, compiled from pyproject.toml by `make lock`),
# then the project itself without letting pip resolve anything again.
COPY requirements/dataset.txt ./requirements/
RUN /opt/venv/bin/pip install -r requirements/dataset.txt
COPY pyproject.toml README.md ./
COPY services ./services
COPY protos ./protos
RUN /opt/venv/bin/pip install --no-deps ".[dataset]"

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
    TAILOR_DATASET_LISTEN=0.0.0.0:50051 \
    TAILOR_DATA_DIR=/data
USER 10001:10001
EXPOSE 50051 9090
ENTRYPOINT ["python", "-m", "services.dataset"]
