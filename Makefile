# One command per job: `make demo`, `make test`, `make check`, `make bench`.
# `make bench BENCH_ARGS=--sdk` adds python-wechaty 0.10.7 to bench/closed_loop.py.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CLIENT := socket_client
ARGS ?=
BENCH_ARGS ?=
PYTEST_ARGS ?=
BENCH_ARGS ?=

.PHONY: setup demo test test-python test-node check bench clean

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

test: setup test-python test-node

test-python: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-node: setup
	cd $(CLIENT) && npm test

check: setup
	$(BIN)/ruff format --check MetaPuppet tests bench example
	$(BIN)/ruff check MetaPuppet tests bench example
	$(BIN)/mypy
	cd $(CLIENT) && npm run typecheck

bench: setup
	$(BIN)/python bench/roundtrip.py $(ARGS)
	$(BIN)/python bench/messages.py
	$(BIN)/python bench/dialogs.py
	$(BIN)/python bench/fanout.py
	$(BIN)/python bench/closed_loop.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) $(CLIENT)/node_modules .pytest_cache
