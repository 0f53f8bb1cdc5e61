# The two commands a newcomer needs: `make demo` (set up, then the main job) and `make test`
# (set up, then every check CI runs). Set-up is idempotent: it re-runs only when pyproject.toml changes.
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint format

setup: $(STAMP)

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# The embedded Task API emulator on http://127.0.0.1:8787 (Ctrl-C stops it).
demo: $(STAMP)
	$(BIN)/python -m parallel_nb.emulator --port 8787

lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: lint
	$(BIN)/pytest
