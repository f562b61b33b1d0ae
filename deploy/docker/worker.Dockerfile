# syntax=docker/dockerfile:1.7
# The training worker on GPUs: one batch/v1 Job per fine-tune, created by the trainer's
# Kubernetes executor. It carries torch (CUDA build), transformers and peft (the `trainer`
# extra). PyPI's Linux torch wheels bundle the CUDA runtime, cuDNN and NCCL as nvidia-*
# wheels, so a plain Python base suffices: only the driver comes from the node (NVIDIA
# container toolkit). Several GPUs in one pod run through torchrun, which torch ships.
#
#   docker build -f deploy/docker/worker.Dockerfile -t ghcr.io/tailor/worker:0.1.0 .

ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

# ---- build -------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
WORKDIR /src
# Exact versions (requirements/worker-cuda.txt, compiled by `make lock`): PyPI's Linux wheel
# of torch==2.13.0 is the CUDA build, and it pins its nvidia-* runtime wheels itself; the
# trainer extra = torch + transformers + peft + safetensors (+ the kubernetes client).
COPY requirements/worker-cuda.txt ./requirements/
RUN /opt/venv/bin/pip install -r requirements/worker-cuda.txt
COPY pyproject.toml README.md ./
COPY services ./services
COPY protos ./protos
RUN /opt/venv/bin/pip install --no-deps ".[trainer]" \
 && /opt/venv/bin/python -c "import torch, transformers, peft"

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
    TRITON_CACHE_DIR=/tmp/triton \
    TAILOR_DATA_DIR=/data
# the uid build_job_manifest runs the worker as (services/trainer/executors/kubernetes.py)
USER 10001:10001
# The trainer's executor passes its own command (TAILOR_TRAINER_WORKER_COMMAND); this is the default.
ENTRYPOINT ["python", "-m", "services.trainer.worker"]
