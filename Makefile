# Two commands do all the set-up on a fresh machine: `make test` and `make demo`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test demo bench lint format install clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(PY) setup.py
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

## Run the whole test suite (installs into .venv first if needed).
test: $(STAMP)
	$(PY) -m pytest -n 2 tests

## Train a small model on the digits data set through gc.Session, then show what fusion buys.
demo: $(STAMP)
	$(PY) examples/mlp_digits.py
	$(PY) examples/bench_fusion.py

## Run the benchmark suite.
bench: $(STAMP)
	$(PY) -m graphc.bench

lint: $(STAMP)
	$(VENV)/bin/ruff check graphc tests examples
	$(VENV)/bin/ruff format --check graphc tests examples

format: $(STAMP)
	$(VENV)/bin/ruff format graphc tests examples

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
