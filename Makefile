# Two commands do all the set-up on a fresh machine: `make test` and `make demo`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test demo bench fuzz lint format install clean onnx-suite

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(PY) setup.py
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

## Run the whole test suite (installs into .venv first if needed): the layer contracts of
## .importlinter first (modules import only downward), then the tests.
test: $(STAMP)
	$(VENV)/bin/lint-imports --no-cache
	$(PY) -m pytest -n 2 tests

## Train a small model on the digits data set through gc.Session, then show what fusion buys.
demo: $(STAMP)
	$(PY) examples/mlp_digits.py
	$(PY) examples/bench_fusion.py

## Differential fuzzer, long run: N random programs from seed SEED on fused and unfused cpu
## against the reference (forward and gradients); a failure prints its seed and a shrunk
## reproducer. `make fuzz SEED=123 N=50000`
SEED ?= 0
N ?= 20000
JOBS ?= 2
BATCH ?= 8
fuzz: $(STAMP)
	$(PY) scripts/fuzz.py --seed $(SEED) --n $(N) --jobs $(JOBS) --batch $(BATCH) --keep-going

## ONNX's whole node conformance suite (about 1,300 included cases) on the cpu target and the
## reference interpreter, and every `light` model of the onnx package (make test runs slices).
onnx-suite: $(STAMP)
	$(PY) -m pytest -n $(JOBS) -q tests/onnx/full_onnx_suite.py tests/onnx/full_onnx_models.py

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
