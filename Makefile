# Two commands on a fresh machine with Python 3.11: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-long lint typecheck check install stateful-long bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/stocksync demo

test: $(STAMP)
	rm -rf .test-reports
	$(BIN)/python -m pytest -q -p no:cacheprovider -n 2 --dist worksteal tests
	@$(BIN)/python -m tests.report

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

check: lint typecheck test

# What does not fit `make test`'s 15 minutes (docs/testing.md): the stateful test at length.
test-long: stateful-long

# The stateful test with far more examples than CI runs, on the in-memory platform and on the
# Shopify sandbox (see docs/testing.md).
stateful-long: $(STAMP)
	STOCKSYNC_STATEFUL_EXAMPLES=2000 STOCKSYNC_STATEFUL_STEPS=100 \
	STOCKSYNC_STATEFUL_SANDBOX_EXAMPLES=300 STOCKSYNC_STATEFUL_SANDBOX_STEPS=100 \
		$(BIN)/python -m pytest -q -p no:cacheprovider tests/integration/test_stateful.py

bench: $(STAMP)
	$(BIN)/python bench/engine_throughput.py

# Source changes propagated to five Shopify sandbox destinations by stocksync's web and worker
# processes, against a naive consumer (several minutes; see bench/README.md).
.PHONY: bench-shopify
bench-shopify: $(STAMP)
	$(BIN)/python bench/shopify_propagation.py

clean:
	rm -rf $(VENV) .stocksync .pytest_cache .mypy_cache .ruff_cache
