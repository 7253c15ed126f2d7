# Two entry points: `make demo` (score the bundled digits with the bundled tiny VLM) and `make test`.
# Both create .venv with a CPU build of torch pinned, then install this package with its extras.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_CPU ?= torch==2.13.0+cpu
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu

.PHONY: install demo test test-all lint format benchmark clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# CPU torch: from the local wheel store / configured index if it has it, else PyTorch's CPU index.
	$(BIN)/python -m pip install --quiet "$(TORCH_CPU)" || \
		$(BIN)/python -m pip install --quiet "$(TORCH_CPU)" --index-url "$(TORCH_CPU_INDEX)"
	$(BIN)/python -m pip install --quiet -e ".[dev,demo]"
	touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/curate demo

test: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest

test-all: install
	$(BIN)/python -m pytest -m "slow or not slow"

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix . && $(BIN)/ruff format .

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache
