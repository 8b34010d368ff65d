# The two commands: `make demo` runs the example DAG on the bundled data, `make test` runs the tests.
# Both set up everything they need on a fresh machine: a .venv with the pinned dependencies.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

BENCH_VENV := .venv-benchmark
BENCH_STAMP := $(BENCH_VENV)/.installed

.PHONY: demo test lint clean benchmark benchmark-scale chromium

demo: $(STAMP)
	@scripts/run-demo

test: $(STAMP) chromium
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The Data Docs and audit pages are checked offline in headless Chromium (Debian's package). Installed
# once, if it is missing; on a machine without apt, install Chromium by hand and put it on PATH.
chromium:
	@command -v chromium > /dev/null || { \
		echo "installing Debian's chromium for the browser tests"; \
		if [ "$$(id -u)" -eq 0 ]; then SUDO=; else SUDO=sudo; fi; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium; }

lint: $(STAMP)
	$(BIN)/ruff check src tests dags benchmarks
	$(BIN)/ruff format --check src tests dags benchmarks

# Compares the value scan with Presidio's analyzer (benchmarks/README.md). Presidio lives in a venv of
# its own, never in .venv: the tests and CI do not need it.
benchmark: $(BENCH_STAMP)
	$(BENCH_VENV)/bin/python benchmarks/run.py $(BENCHMARK_ARGS)

# Governance at 1, 10 and 30 million generated rows against a bare pyarrow pass, its peak memory, k-anonymity
# against DuckDB and the operator's import cost (benchmarks/README.md). DuckDB (a 24 MB wheel the tests do
# not need) is installed into .venv by this target only, at this pin. SCALE_SIZES=1M,10M selects sizes.
DUCKDB_VERSION := 2.0.0
SCALE_SIZES ?= 1M,10M,30M
SCALE_REPEATS ?= 3,2,1

benchmark-scale: $(STAMP)
	$(BIN)/python -m pip install --quiet --constraint constraints.txt duckdb==$(DUCKDB_VERSION)
	$(BIN)/python benchmarks/scale.py --sizes $(SCALE_SIZES) --repeats $(SCALE_REPEATS) $(BENCHMARK_ARGS)

$(BENCH_STAMP): pyproject.toml constraints.txt benchmarks/constraints.txt benchmarks/requirements.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "Python 3.11 or newer is needed (set PYTHON=...)"; exit 1; }
	test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(BENCH_VENV)/bin/python -m pip install --quiet --constraint constraints.txt \
		--constraint benchmarks/constraints.txt --editable . --requirement benchmarks/requirements.txt
	touch $(BENCH_STAMP)

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "Python 3.11 or newer is needed (set PYTHON=...)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --constraint constraints.txt --editable ".[test]"
	# pyCANON, the independent k-anonymity and l-diversity check of tests/deid/test_risk_pycanon.py, pins
	# exact older numpy and pandas releases that cannot be resolved with ours; it runs on ours, so it is
	# installed for the tests without its dependencies.
	$(BIN)/python -m pip install --quiet --no-deps pycanon==1.3.6
	touch $(STAMP)

clean:
	rm -rf demo-output .airflow
