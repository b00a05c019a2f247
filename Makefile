# Every target bootstraps what it needs: a fresh clone needs only python3, node and npm.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed

.PHONY: demo test check lint typecheck bench clean setup chaos test-compiled

setup: $(STAMP) $(NODE_STAMP)

$(STAMP): pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	DEX_PURE_PYTHON=1 $(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

demo: $(STAMP)
	$(PY) -m exchange.tools demo

test: $(STAMP) $(NODE_STAMP)
	$(PY) -m pytest -q

# The long chaos suite (docs/reliability.md): every test of tests/chaos/ with many seeds,
# many kills and faults (minutes); `make test` runs the same tests short. The totals
# are printed at the end and kept in chaos-report.json.
chaos: $(STAMP) $(NODE_STAMP)
	CHAOS_PROFILE=long CHAOS_REPORT=chaos-report.json $(PY) -m pytest -q tests/chaos

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

# Test folders are checked one at a time: each has its own conftest.py module.
TEST_DIRS := tests/core tests/transports tests/exchange tests/e2e tests/chaos tests/support tests/examples tests/packaging

typecheck: $(STAMP)
	$(PY) -m mypy
	$(PY) -m mypy tests/conftest.py tests/test_readme.py tests/test_layout.py
	for d in $(TEST_DIRS); do $(PY) -m mypy $$d || exit 1; done

check: lint typecheck test test-compiled

# The compiled core (docs/core.md, "Compiled build"): a wheel of this tree with the core
# compiled by mypyc, unpacked into build/compiled/site, then the core's tests, the replay
# and the book-hash cases run against it (DEX_EXPECT_COMPILED=1: a test checks it loaded).
COMPILED_SITE := $(CURDIR)/build/compiled/site
COMPILED_TESTS := tests/core tests/exchange/versions tests/exchange/tools/test_dex_cli.py
test-compiled: $(STAMP)
	rm -rf build/compiled build/lib.* build/temp.* build/bdist.*
	$(PY) -m pip wheel --quiet --no-deps --no-build-isolation -w build/compiled .
	$(PY) -m zipfile -e build/compiled/distributed_exchange-*.whl $(COMPILED_SITE)
	DEX_EXPECT_COMPILED=1 PYTHONPATH=$(COMPILED_SITE) $(PY) -P -m pytest -q \
		-p no:cacheprovider $(COMPILED_TESTS)

.PHONY: docs
# The documentation site, with the API reference generated from the docstrings; strict:
# a warning fails (tests/packaging/test_docs_site.py checks the same build).
docs: $(STAMP)
	$(PY) -m mkdocs build --strict --site-dir site

bench: $(STAMP) $(NODE_STAMP)
	$(PY) bench/core_bench.py
	$(PY) bench/transport_bench.py
	$(PY) bench/versions_bench.py
	$(PY) bench/grape_cost.py
	$(PY) bench/e2e_bench.py --books 1000,10000 --replicas 0,3

.PHONY: charts
# docs/img/*.png from the results kept in bench/results/*.json (bench/charts.py says how
# to refresh those); needs matplotlib, in the bench extra (part of dev).
charts: $(STAMP)
	$(PY) bench/charts.py

clean:
	rm -rf $(VENV) node_modules data .pytest_cache .mypy_cache .ruff_cache chaos-report.json
