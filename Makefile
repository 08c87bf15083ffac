# Two commands on a fresh machine: `make demo` and `make test`. Both create (or reuse) .venv, install
# the pinned CPU torch and the package, and build the C++ extension in place.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
CSRC := $(shell find csrc -name '*.cc' -o -name '*.cpp' -o -name '*.h')
EXT_STAMP := $(VENV)/.extension-built
PYTEST_WORKERS ?= 2

.PHONY: setup build demo test bench clean

$(VENV)/.installed: pyproject.toml setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install "torch==2.13.0" "setuptools>=68" wheel ninja
	SER_FAST_SKIP_EXTENSION=1 $(PIP) install --no-build-isolation -e ".[test,bench]"
	touch $@

$(EXT_STAMP): $(VENV)/.installed $(CSRC)
	$(PY) setup.py -q build_ext --inplace
	touch $@

setup: $(VENV)/.installed
build: $(EXT_STAMP)

demo: build
	$(PY) -m ser_fast.demo

test: build
	$(PY) -m pytest -q -n $(PYTEST_WORKERS) tests

bench: build
	$(PY) bench/bench_frontend.py --markdown BENCHMARKS.md
	$(PY) bench/bench_ops.py --markdown BENCHMARKS.md
	$(PY) bench/bench_train.py --markdown BENCHMARKS.md
	$(PY) bench/bench_merit.py --markdown BENCHMARKS.md
	$(PY) bench/bench_inference.py --markdown BENCHMARKS.md

clean:
	rm -rf build $(VENV) ser_fast/_C*.so *.egg-info
