# Two entry points for a fresh machine (see README.md):
#   make demo   installs into .venv, runs examples/rag.yaml locally (aistack up) and asks it a question
#   make test   installs into .venv, runs `make lint` (ruff, mypy), installs the vLLM engine and runs
#               the whole test suite
# Both create the virtualenv themselves with tools/install.py: it checks the interpreter first
# (Python 3.11.5+, <3.12), rebuilds a .venv made with another Python, takes the CPU build of
# torch from a local wheel or PyTorch's CPU index, and skips everything while pyproject.toml,
# constraints.txt and the Python are unchanged.

# The interpreter: python3.11 where there is one (python3 is often 3.12), else python3;
# `make PYTHON=/path/to/python3.11 ...` to choose.
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV   ?= .venv
BIN    := $(VENV)/bin
AGENTS_VENV ?= .venv-agents

.PHONY: demo test lint agents-client test-containers container-tools install crd operator-manifests gitops-example engine vllm-flags gpu-check clean

install:
	@$(PYTHON) tools/install.py --venv $(VENV) --extras dev

# ENGINE=transformers skips the vLLM engine (and its install): `make demo` runs the offline model
# through transformers, `make test` skips the engine's tests. A failed install does the same, saying so.
ENGINE ?= auto

demo: install
	$(BIN)/aistack validate --quiet examples/*.yaml
	@if [ "$(ENGINE)" != transformers ]; then $(BIN)/aistack engine install || echo "make demo: the vLLM \
	engine could not be installed (the error above); the offline model runs through transformers"; fi
	HF_HUB_OFFLINE=1 $(BIN)/python examples/demo.py --engine $(ENGINE)

# Container-image tests (tests/containers) skip, each saying why, unless buildah/podman are
# installed: `make container-tools` first (CI does).
# The engine's tests (tests/integration/engine) need it installed (once: ~3.5 GB, 2-8 minutes); where
# it cannot be, they skip, each saying why.
test: lint
	@$(MAKE) --no-print-directory agents-client
	@if [ "$(ENGINE)" != transformers ]; then $(BIN)/aistack engine install || echo "make test: the vLLM \
	engine could not be installed (the error above); its tests skip"; fi
	HF_HUB_OFFLINE=1 AISTACK_AGENTS_PYTHON=$${AISTACK_AGENTS_PYTHON:-$(AGENTS_VENV)/bin/python} $(BIN)/python -m pytest

# The OpenAI Agents SDK needs openai>=3, which cannot share .venv: it gets an interpreter of its own
# (pinned by constraints-agents.txt, ~1 min once) for tests/integration/runtime/test_agents_sdk.py.
# Never fails: where it cannot be made, that test skips, saying why.
agents-client:
	@$(PYTHON) tools/install.py --agents-client --venv $(AGENTS_VENV) || echo "make test: the Agents SDK \
	could not be installed (the error above); its test skips"

# ruff (settings in pyproject.toml) and mypy through tools/typecheck.py, which lets mypy see the
# folders as the aistack.* packages they are installed as; `make test` runs it before pytest.
lint: install
	$(BIN)/ruff check .
	$(BIN)/python tools/typecheck.py

# The container tooling (buildah, podman, runc, slirp4netns, debootstrap via apt-get, as root);
# never fails: without it the container tests skip and say why.
container-tools:
	@images/install-tools.sh

# Only the tests that build and run the OCI images (they also run within `make test`).
test-containers: install container-tools
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -m containers tests/containers --durations=10

crd: install
	$(BIN)/python -m aistack.api

# deploy/operator/ (the kustomize install) from the data the Pulumi install uses.
operator-manifests: install
	$(BIN)/python -m aistack.platform.operator_manifests

# deploy/gitops/example/ as `aistack init-gitops` writes it (a test fails when they differ).
gitops-example: install
	rm -rf deploy/gitops/example
	$(BIN)/aistack init-gitops deploy/gitops/example --from examples/production.yaml

# The vLLM engine in its own virtualenv (~/.cache/aistack/engines/, or $AISTACK_ENGINE_HOME) and the
# offline model's weights as a folder vLLM loads; once, then a no-op while the pins are unchanged.
engine: install
	$(BIN)/aistack engine install

# On a host with an NVIDIA GPU: the production example's rendered vLLM command on vLLM's CUDA build
# (installed first where missing), its tokens/s printed and recorded (bench/gpu_check.py); refuses
# with exit code 2, installing nothing of vLLM, where there is no NVIDIA GPU.
gpu-check: install
	$(BIN)/python bench/gpu_check.py --install

# api/vllm_flags.py from the installed engine's real parser (after changing the vLLM pin).
vllm-flags: engine
	$(BIN)/python -m aistack.runtime.engine.parser

clean:
	rm -rf $(VENV) build dist *.egg-info testing/*.egg-info
