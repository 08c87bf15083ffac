# Two commands on a fresh machine: `make demo` and `make test`. Both create (or reuse) .venv, install
# the pinned CPU torch and the package against constraints.txt (the versions the suite last passed
# with), and build the C++ extension in place.
#   make test-latest   the suite in .venv-latest, made anew with the newest release of every dependency
#   make constraints   rewrite constraints.txt from .venv-latest, once `make test-latest` has passed
PYTHON ?= python3
VENV ?= .venv
CONSTRAINTS ?= constraints.txt
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
# torch stays pinned everywhere, test-latest included: the C++ extension is built against this
# release, and it is the CPU wheel these machines carry (an open range pulls a multi-GB CUDA build).
TORCH := torch==2.13.0
EXTRAS := test,bench
CSRC := $(shell find csrc -name '*.cc' -o -name '*.cpp' -o -name '*.h')
EXT_STAMP := $(VENV)/.extension-built
PYTEST_WORKERS ?= 2
LATEST_VENV := .venv-latest

.PHONY: setup build demo reproduce test test-latest constraints bench clean

$(VENV)/.installed: pyproject.toml setup.py $(CONSTRAINTS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -c $(CONSTRAINTS) "$(TORCH)" setuptools wheel ninja
	SER_FAST_SKIP_EXTENSION=1 $(PIP) install -c $(CONSTRAINTS) --no-build-isolation -e ".[$(EXTRAS)]"
	touch $@

$(EXT_STAMP): $(VENV)/.installed $(CSRC)
	$(PY) setup.py -q build_ext --inplace
	touch $@

setup: $(VENV)/.installed
build: $(EXT_STAMP)

demo: build
	$(PY) -m ser_fast.demo

# The three papers' grids on the built-in corpora, with CIs and paired tests (ser_fast/reproduce/builtin.py says what
# it runs); re-running resumes. REPRODUCE_OUT=dir to write elsewhere.
REPRODUCE_OUT ?= reproduce_out
reproduce: build
	$(PY) -m ser_fast.reproduce --out $(REPRODUCE_OUT)

# The import contracts (pyproject.toml's [tool.importlinter]) first: a layer that imports upward fails the build.
test: build
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q -n $(PYTEST_WORKERS) tests

# No constraints: pip takes the newest release that pyproject.toml's ranges allow.
test-latest:
	rm -rf $(LATEST_VENV)
	$(MAKE) test VENV=$(LATEST_VENV) CONSTRAINTS=/dev/null
	$(LATEST_VENV)/bin/python -m pip freeze --all --exclude-editable --exclude pip > $(LATEST_VENV)/passed.txt

# A local version tag (torch's +cpu) is dropped: the index a user installs from may not carry it.
constraints: $(LATEST_VENV)/passed.txt
	{ echo "# The versions \`make test-latest\` last passed with; \`make constraints\` rewrites this file."; \
	  sed -E 's/^([A-Za-z0-9_.-]+==[^+]+)\+.*/\1/' $<; } > $(CONSTRAINTS)

bench: build
	$(PY) bench/bench_frontend.py --markdown BENCHMARKS.md
	$(PY) bench/bench_ops.py --markdown BENCHMARKS.md
	$(PY) bench/bench_train.py --markdown BENCHMARKS.md
	$(PY) bench/bench_merit.py --markdown BENCHMARKS.md
	$(PY) bench/bench_inference.py --markdown BENCHMARKS.md
	$(PY) bench/bench_streaming.py --markdown BENCHMARKS.md

clean:
	rm -rf build $(VENV) $(LATEST_VENV) ser_fast/_C*.so *.egg-info
