# syntax=docker/dockerfile:1.7
# The gateway: the public OpenAI-compatible HTTP API (FastAPI + uvicorn).
# No torch, no transformers: it only speaks HTTP and gRPC, so the image stays small.
#
#   docker build -f deploy/docker/gateway.Dockerfile -t ghcr.io/tailor/gateway:0.1.0 .
#
# Build context: the repository root. Python matches the project's (requires-python >= 3.11).

ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

# ---- build: resolve and install into a self-contained virtualenv -------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
WORKDIR /src
# Exact versions first (requirements/gateway.txt, compiled from pyproject.toml by `make lock`),
# then the project itself without letting pip resolve anything again.
COPY requirements/gateway.txt ./requirements/
RUN /opt/venv/bin/pip install -r requirements/gateway.txt
COPY pyproject.toml README.md ./
COPY services ./services
COPY protos ./protos
RUN /opt/venv/bin/pip install --no-deps ".[gateway]"

# ---- runtime: the interpreter and the virtualenv, nothing else ---------------------------
FROM ${PYTHON_IMAGE} AS runtime
# 10001: the uid the Kubernetes manifests run as (runAsNonRoot needs a numeric USER)
RUN groupadd --system --gid 10001 tailor \
 && useradd --system --uid 10001 --gid tailor --home-dir /tmp --shell /usr/sbin/nologin tailor
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    TAILOR_GATEWAY_HOST=0.0.0.0 \
    TAILOR_DATA_DIR=/data
USER 10001:10001
EXPOSE 8000
ENTRYPOINT ["python", "-m", "services.gateway"]
