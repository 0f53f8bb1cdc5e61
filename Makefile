# The two commands a newcomer needs: `make demo` (set up, then the main job: the quickstart in
# JupyterLab on the embedded emulator) and `make test` (set up, then every check CI runs).
# Set-up is idempotent: the venv is (re)built only when pyproject.toml changes.
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Demo mode: no API key needed, runs go to the embedded emulator.
DEMO_ENV := PARALLEL_NB_DEMO=1

.PHONY: setup demo demo-headless emulator test test-notebooks lint format notebooks

setup: $(STAMP)

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# The quickstart in JupyterLab, in demo mode (open the URL it prints; Ctrl-C stops it).
demo: $(STAMP)
	$(DEMO_ENV) $(BIN)/jupyter lab --ip 127.0.0.1 --no-browser notebooks/quickstart.ipynb

# The same notebook executed headless; the executed copy lands in artifacts/.
demo-headless: $(STAMP)
	mkdir -p artifacts/data
	$(DEMO_ENV) PARALLEL_NB_DATA_DIR=artifacts/data $(BIN)/jupyter nbconvert --to notebook \
		--execute notebooks/quickstart.ipynb --output-dir artifacts --output quickstart.executed.ipynb
	@echo "executed: artifacts/quickstart.executed.ipynb"

# The Task API emulator alone, for the official SDK or curl (http://127.0.0.1:8787).
emulator: $(STAMP)
	$(BIN)/python -m parallel_nb.emulator --port 8787

lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Every test: lint, unit and HTTP tests, the real-browser test, then the notebooks under nbval.
test: lint
	scripts/ensure-chromium
	$(BIN)/pytest
	$(MAKE) --no-print-directory test-notebooks

# Every notebook cell must run; cells tagged nbval-check-output must reproduce their stored
# (sanitised) outputs. Demo mode, emulator at full speed, a fresh run store (no cache hits).
test-notebooks: $(STAMP)
	data=$$(mktemp -d) && trap 'rm -rf "$$data"' EXIT && \
	$(DEMO_ENV) PARALLEL_NB_TIME_SCALE=0 PARALLEL_NB_DATA_DIR="$$data" $(BIN)/pytest \
		-p no:cacheprovider --nbval-lax --nbval-current-env \
		--nbval-sanitize-with tests/notebooks/nbval_sanitize.cfg notebooks/

# Re-execute notebooks/ in place after changing output formats (then review the diff).
notebooks: $(STAMP)
	$(BIN)/python scripts/refresh_notebooks.py
