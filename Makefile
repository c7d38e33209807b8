# The two fresh-machine commands are `make demo` and `make test` (see README.md).
METRICS_HOME ?= $(CURDIR)/.metrics_home
export METRICS_HOME
export DAGSTER_HOME ?= $(METRICS_HOME)/dagster

# uv from PATH, else a project-local copy in .uv-bootstrap/ (a venv of the machine's Python, so
# a distribution's own Python, which refuses `pip install` outside a venv (PEP 668), works too).
BOOTSTRAP := $(CURDIR)/.uv-bootstrap
UV ?= $(shell command -v uv 2>/dev/null || echo $(BOOTSTRAP)/bin/uv)
# Compiled bytecode: every later import (Dagster, Great Expectations) is about twice as fast
# (loading the code location: 1.7 s of CPU with it, 4.3 s without; bench/README.md). `uv sync`
# and `uv run` do not compile unless told to.
export UV_COMPILE_BYTECODE ?= 1

.PHONY: install demo test test-fast test-year-ahead dev lint

install: $(if $(filter $(BOOTSTRAP)/bin/uv,$(UV)),$(BOOTSTRAP)/bin/uv)
	$(UV) sync --frozen

$(BOOTSTRAP)/bin/uv:
	@python3 -m venv "$(BOOTSTRAP)" || { echo "python3 -m venv failed: install the venv module (Debian/Ubuntu: apt-get install python3-venv)" >&2; exit 1; }
	"$(BOOTSTRAP)/bin/python" -m pip install --quiet --disable-pip-version-check uv

demo: install
	$(UV) run metrics-pipeline demo

# Two or more workers (up to 4): many tests wait on servers and subprocesses; a file's tests stay
# on one worker so its module fixtures (a pipeline run, a server) are built once, and the files
# go out in the order of tests/conftest.py (the longest single test first).
PYTEST_PARALLEL ?= -n auto --maxprocesses 4 --dist loadfile --no-loadscope-reorder

test: install
	$(UV) run pytest $(PYTEST_PARALLEL) --durations 25

test-fast: install
	$(UV) run pytest $(PYTEST_PARALLEL) -m "not slow"

# The whole suite with the system clock a year ahead (libfaketime; tests/moved_clock.py): no test
# may depend on today's date.
test-year-ahead: install
	$(UV) run python tests/moved_clock.py 365 $(UV) run pytest $(PYTEST_PARALLEL)

# Dagster UI and daemon (sensors) on 127.0.0.1:3000, on the embedded default under METRICS_HOME,
# with the run queue checked every second (deploy/dagster-dev.yaml, copied unless there is one).
dev: install
	mkdir -p "$(DAGSTER_HOME)"
	test -f "$(DAGSTER_HOME)/dagster.yaml" || cp deploy/dagster-dev.yaml "$(DAGSTER_HOME)/dagster.yaml"
	$(UV) run dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

lint: install
	$(UV) run ruff check .
	$(UV) run ruff format --check .
	$(UV) run lint-imports
	$(UV) run python -W error -m compileall -q -f metrics_pipeline assets sensors schedules bench tests
