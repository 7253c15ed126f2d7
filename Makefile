# Two entry points: `make demo` (score the bundled digits with the bundled tiny VLM) and `make test`.
# Both create .venv with a CPU build of torch pinned, then install this package with its extras.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_CPU ?= torch==2.13.0+cpu
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu

.PHONY: install demo test test-all test-exports consumers lint format benchmark clean

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

# ms-swift, LLaMA-Factory and verl each in a throwaway environment of its own (their pins clash with
# ours): the CPU torch first, the trainer without its dependencies, then what its data loader imports.
# --no-compile: Python compiles only the modules a checker imports, which saves minutes on 2 cores.
CONSUMERS ?= .venv-consumers
CONSUMER_NAMES := swift llamafactory verl

$(CONSUMERS)/%/.installed: tests/consumers/%.txt tests/consumers/constraints.txt
	rm -rf $(CONSUMERS)/$*
	$(PYTHON) -m venv $(CONSUMERS)/$*
	$(CONSUMERS)/$*/bin/python -m pip install --quiet --upgrade pip
	$(CONSUMERS)/$*/bin/python -m pip install --quiet --no-compile "$(TORCH_CPU)" || \
		$(CONSUMERS)/$*/bin/python -m pip install --quiet --no-compile "$(TORCH_CPU)" --index-url "$(TORCH_CPU_INDEX)"
	$(CONSUMERS)/$*/bin/python -m pip install --quiet --no-compile --no-deps $$(sed -n 's/^# no-deps: //p' tests/consumers/$*.txt)
	$(CONSUMERS)/$*/bin/python -m pip install --quiet --no-compile -c tests/consumers/constraints.txt -r tests/consumers/$*.txt
	if [ -f tests/consumers/$*_post_install.py ]; then $(CONSUMERS)/$*/bin/python tests/consumers/$*_post_install.py; fi
	touch $@

consumers: $(foreach name,$(CONSUMER_NAMES),$(CONSUMERS)/$(name)/.installed)

# Each export loaded back by its trainer's own code (TRL here; the others in their environments).
test-exports: install consumers
	$(BIN)/python -m pytest -m exports tests/test_exports_consumers.py

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix . && $(BIN)/ruff format .

clean:
	rm -rf $(VENV) $(CONSUMERS) build dist src/*.egg-info .pytest_cache .ruff_cache
