# lift-sys: every target does its own set-up, idempotently.
#   make run    venv + install + embedded model, then generate an IR for a sample request
#   make test   same set-up (+ the xgrammar extra), then the test suite
#   make bench  decode benchmark -> docs/bench/decode.json

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
# llama.cpp is compiled for this CPU's vector extensions with AMX off
# (the default -march=native build segfaults in decode on AMX CPUs).
LLAMA_CMAKE_ARGS := $(shell sh scripts/llama_cmake_args.sh)
REQUEST ?= a function that returns the n-th Fibonacci number, raising ValueError for negative n

.PHONY: run test bench install install-test sandbox clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# llama-cpp-python from its sdist with lift-sys's llama.cpp patches (built once per machine, cached)
$(VENV)/.installed: pyproject.toml $(PY) scripts/llama_wheel.sh $(wildcard scripts/llama_patches/*.patch)
	sh scripts/llama_wheel.sh $(PY)
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PIP) install --progress-bar off -e '.[model]'
	touch $@

# torch first, alone: pinned to the CPU build so no resolver step can pull a CUDA one.
$(VENV)/.installed-test: $(VENV)/.installed
	$(PIP) install --progress-bar off 'torch==2.13.0'
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PIP) install --progress-bar off -e '.[model,xgrammar,dev,modal]'
	touch $@

# bubblewrap for the verification sandbox (apt as root; elsewhere a note and the process-level fallback)
sandbox:
	@sh scripts/install_bwrap.sh

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

run: install sandbox
	$(VENV)/bin/lift-sys ir "$(REQUEST)"

test: install-test sandbox
	$(PY) -m pytest -ra

bench: install-test
	$(VENV)/bin/lift-sys bench decode --reps 5 --output docs/bench/decode.json
	$(VENV)/bin/lift-sys bench server --output docs/bench/server.json

clean:
	rm -rf $(VENV)
