# One command per job: `make demo`, `make test`, `make check`, `make bench`.
# Your own robot without activating the venv: `make init`, `make serve BOT=mybot:bot`,
# `make client`, `make doctor` (each runs .venv/bin/metapuppet; ARGS adds flags).
# `make bench BENCH_ARGS=--sdk` adds python-wechaty 0.10.7 to bench/closed_loop.py.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CLIENT := socket_client
ARGS ?=
BENCH_ARGS ?=
PYTEST_ARGS ?=
# worker processes for the Python tests (pytest-xdist); TEST_WORKERS=0 runs them in one
TEST_WORKERS ?= 3
BOT ?=
CONFIG ?=

.PHONY: setup demo init serve client doctor test test-python test-node test-crash check bench clean

setup: $(VENV)/.installed $(CLIENT)/node_modules/.installed

$(VENV)/.installed: pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

$(CLIENT)/node_modules/.installed: $(CLIENT)/package.json $(CLIENT)/package-lock.json
	cd $(CLIENT) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

demo: setup
	$(BIN)/metapuppet demo $(ARGS)

init: setup
	$(BIN)/metapuppet init $(ARGS)

serve: setup
	$(BIN)/metapuppet serve $(if $(BOT),--bot $(BOT)) $(if $(CONFIG),--config $(CONFIG)) $(ARGS)

client: setup
	$(BIN)/metapuppet client $(if $(CONFIG),--config $(CONFIG)) $(ARGS)

doctor: setup
	$(BIN)/metapuppet doctor $(if $(CONFIG),--config $(CONFIG)) $(ARGS)

test: setup test-python test-node

test-python: setup
	$(BIN)/python -m pytest -n $(TEST_WORKERS) $(PYTEST_ARGS)

test-node: setup
	cd $(CLIENT) && npm test

# Every SIGKILL scenario of tests/test_crash_e2e.py (server, Node client, both; 50 ms and
# 500 ms handlers; both delivery paths): `make test` runs a subset of them (about 1 min).
test-crash: setup
	$(BIN)/python -m pytest -s tests/test_crash_e2e.py $(PYTEST_ARGS)

check: setup
	$(BIN)/ruff format --check MetaPuppet tests bench example scripts
	$(BIN)/ruff check MetaPuppet tests bench example scripts
	$(BIN)/mypy
	$(BIN)/python scripts/check_imports.py
	$(BIN)/python scripts/check_sizes.py
	cd $(CLIENT) && npm run typecheck

bench: setup
	$(BIN)/python bench/roundtrip.py $(ARGS)
	$(BIN)/python bench/messages.py
	$(BIN)/python bench/dialogs.py
	$(BIN)/python bench/fanout.py
	$(BIN)/python bench/closed_loop.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) $(CLIENT)/node_modules .pytest_cache
