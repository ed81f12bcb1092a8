# Outreach: `make run` starts the app, `make test` runs every test. Both set up .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)
DATA ?= $(CURDIR)/data
# the whole test run's limit: a hang shows up as a failure with the test's stack, inside CI's own limit
TEST_TIMEOUT ?= 3600

.PHONY: run test lint typecheck unit bench bench-quick bench-ui server clean

# Only what the user needs on the terminal: one line, or on failure the end of the install's log
# (pip's and setuptools' own warnings read like errors to a new user; they stay in the log)
$(STAMP): pyproject.toml
	@echo "Setting up $(VENV) (first run or a changed pyproject.toml; a few minutes; details in $(VENV)/install.log)"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip > $(VENV)/install.log 2>&1 || true
	@{ $(PY) -m pip install -q -e ".[dev]" && \
	   $(PY) -c "import flet, fastapi, sqlmodel, cryptography, requests, hypothesis"; } >> $(VENV)/install.log 2>&1 || \
	 { tail -n 25 $(VENV)/install.log; echo "Setting up $(VENV) failed: see $(VENV)/install.log"; exit 1; }
	@rm -f $(VENV)/.installed-*
	@touch $(STAMP)

run: $(STAMP)
	@$(PY) -m app.run --data-dir "$(DATA)"

server: $(STAMP)
	$(VENV)/bin/outreach-server --data-dir "$(DATA)"

lint: $(STAMP)
	$(VENV)/bin/ruff check app models sync bench tests
	$(VENV)/bin/lint-imports --no-cache

typecheck: $(STAMP)
	$(VENV)/bin/mypy

unit: $(STAMP)
	$(PY) -m pytest -q -m "not browser"

test: $(STAMP)
	$(MAKE) --no-print-directory lint
	$(MAKE) --no-print-directory typecheck
	@url=$$(scripts/test-services.sh); \
	if [ -z "$$url" ] && [ -n "$$CI_REQUIRE_SERVICES" ]; then echo "PostgreSQL is required here"; exit 1; fi; \
	if [ -z "$$url" ]; then echo "note: no PostgreSQL; its tests will be skipped"; fi; \
	OUTREACH_TEST_PG_URL="$$url" PYTHONUNBUFFERED=1 timeout --kill-after=30 $(TEST_TIMEOUT) \
		$(PY) -m pytest -q -p no:cacheprovider --durations=25 < /dev/null; \
	rc=$$?; if [ $$rc = 124 ]; then echo "make test: the tests did not finish in $(TEST_TIMEOUT) s"; fi; exit $$rc

bench: $(STAMP)
	$(PY) -m bench

bench-quick: $(STAMP)
	$(PY) -m bench --quick

bench-ui: $(STAMP)
	$(PY) -m bench.ui

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
