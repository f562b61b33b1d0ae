# Tailor: the two promises are `make up` (run the platform locally) and `make test`.
# Each target installs what it needs into $(VENV) first.

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU wheel of torch; an unpinned torch would pull CUDA builds. GPU images
# install their own torch (see deploy/docker).
TORCH_SPEC ?= torch==2.13.0
EXTRAS ?= dev
STAMP := $(VENV)/.installed-$(EXTRAS)
PYTEST_ARGS ?=

.PHONY: install proto up demo test test-gpu bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[$(EXTRAS)]"
	touch $@

# Regenerate the committed protobuf/gRPC code from protos/.
proto: install
	$(PY) -m services.common.protogen

# Run dataset, trainer, inference and gateway on loopback with embedded defaults.
up: install
	exec $(PY) -m services.local_stack

# Against a running `make up`: upload a small dataset, fine-tune tailor-tiny, chat with it.
demo: install
	$(PY) -m services.gateway.demo

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

test-gpu: install
	$(PY) -m pytest -m gpu tests/gpu $(PYTEST_ARGS)

bench:
	$(MAKE) install EXTRAS=dev,bench
	@for b in bench/*.py; do case $$b in */report.py|*/harness.py|*/__init__.py) continue;; esac; \
		echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache
