# The two commands the README promises:
#   make demo   set everything up and run one edition on the bundled sample data
#   make test   set everything up and run the whole test suite
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench bench-rank bench-render bench-web clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	rm -rf outbox .demo
	mkdir -p .demo
	DIGEST_UNSUBSCRIBE_SECRET=demo-only-not-secret $(BIN)/digest run --config demo/config.toml

test: $(STAMP)
	$(BIN)/ruff check digest tests bench
	$(BIN)/ruff format --check digest tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check --fix digest tests bench
	$(BIN)/ruff format digest tests bench
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python bench/send_throughput.py

bench-rank: $(STAMP)
	$(BIN)/python bench/rank_quality.py

bench-render: $(STAMP)
	$(BIN)/python bench/render_cost.py

bench-web: $(STAMP)
	$(BIN)/python bench/web_load.py

clean:
	rm -rf $(VENV) outbox .demo preview .pytest_cache .mypy_cache .ruff_cache *.egg-info
