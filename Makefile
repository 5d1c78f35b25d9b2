# Quickstart: `make demo` and `make test` on a fresh Debian machine with python3 (>= 3.11),
# python3-venv and make (README "Quickstart").
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
READY := $(VENV)/.ready
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test
# setuptools announces every editable install of a flat layout ("Editable installation ... be careful
# with folders in your working directory with the same name as your package"): agent/ and probes/
# are those packages, so the note says nothing here. Ignored by its message; other warnings show.
PIP ?= PYTHONWARNINGS="ignore:Editable installation" $(BIN)/python -m pip

.PHONY: demo test venv clean lint

# A usable venv: its python runs pip. A half-made one (python3 -m venv failed after creating
# bin/python, e.g. without python3-venv) is removed and made again, never left to break make.
$(READY):
	@$(PY) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || { \
	  echo "signalpath needs Python >= 3.11; $(PY) is: $$($(PY) --version 2>&1)."; \
	  echo "Install a newer python3 and run: make PY=python3.11 (or newer)"; exit 1; }
	@if ! $(BIN)/python -m pip --version >/dev/null 2>&1; then \
	  if [ -e $(VENV) ]; then echo "$(VENV) is incomplete (an earlier python3 -m venv failed?): making it again"; \
	    rm -rf $(VENV); fi; \
	  echo "creating $(VENV) with $$($(PY) --version 2>&1)"; \
	  $(PY) -m venv $(VENV) || { rm -rf $(VENV); \
	    echo "python3 -m venv failed: apt-get install python3-venv, then make again"; exit 1; }; \
	fi
	$(PIP) install -q --upgrade pip
	@touch $@

$(STAMP): $(READY) pyproject.toml constraints.txt
	$(PIP) install -q -c constraints.txt -e .
	@touch $@

$(TEST_STAMP): $(STAMP)
	$(PIP) install -q -c constraints.txt -e '.[test]'
	@touch $@

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/signalpath demo

# The gate (STYLE.md 17): lint and types first, then the tests with warnings as errors
# (pyproject.toml: [tool.ruff], [tool.mypy], filterwarnings).
lint: $(TEST_STAMP)
	$(BIN)/ruff check agent probes tests dashboards
	$(BIN)/mypy

# Three workers (pytest-xdist), a test file to each at a time: most lab tests wait on real-time
# media, so the suite uses about one core of two on average (measured: 734 s of CPU in 704 s of
# wall time with three workers); three workers took it from 14 min 52 s (two) to 10 min 22 s on
# 2 cores. PYTEST_WORKERS=0 runs everything in one process. The 15 slowest tests are listed at
# the end: the suite must stay under 15 minutes on 2 cores (.ci/run).
PYTEST_WORKERS ?= 3
test: lint
	$(BIN)/python -m pytest -q -p no:cacheprovider -n $(PYTEST_WORKERS) --dist loadfile --durations=15 $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
