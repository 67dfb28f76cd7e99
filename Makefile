# The two commands the README promises:
#   make demo   set everything up and run one edition on the bundled sample data
#   make test   set everything up and run the whole test suite
# and the one to use digest for real from this checkout:
#   make install   .venv/ with digest and what it needs to run (no test or lint tools)
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEV := $(VENV)/.installed-dev
# The demo signs its (example.org) unsubscribe links with this; a real install exports its own.
DEMO_SECRET := the-demo-secret-do-not-use-it-for-real-mail

.PHONY: install demo test lint bench bench-rank bench-render bench-web clean

$(STAMP): pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $(STAMP)

$(DEV): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(DEV)

install: $(STAMP)

# Everything the demo reads and writes is in demo/ (and the bundled feeds): it cannot
# touch the subscribers, outbox or database of a real config.
demo: $(STAMP)
	rm -rf demo/outbox demo/preview demo/digest.db demo/digest.db-wal demo/digest.db-shm
	DIGEST_UNSUBSCRIBE_SECRET=$(DEMO_SECRET) $(BIN)/digest run --config demo/config.toml

test: $(DEV)
	$(BIN)/ruff check digest tests bench
	$(BIN)/ruff format --check digest tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q

lint: $(DEV)
	$(BIN)/ruff check --fix digest tests bench
	$(BIN)/ruff format digest tests bench
	$(BIN)/mypy

bench: $(DEV)
	$(BIN)/python bench/send_throughput.py

bench-rank: $(DEV)
	$(BIN)/python bench/rank_quality.py --splits 5
	$(BIN)/python bench/feedback_eval.py --splits 5 --floor

bench-render: $(DEV)
	$(BIN)/python bench/render_cost.py

bench-web: $(DEV)
	$(BIN)/python bench/web_load.py

clean:
	rm -rf $(VENV) demo/outbox demo/preview demo/digest.db* .demo preview .pytest_cache .mypy_cache \
		.ruff_cache *.egg-info build dist
