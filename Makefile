# Developer entry points. `make venv` once, then `make app`, `make test`, `make bench`.

PYTHON ?= python3
VENV ?= .venv
PORT ?= 8501
DATA_DIR ?= ../shared/datasets
PYTEST_ARGS ?=

BIN := $(VENV)/bin
# Touched after a successful install; pip runs again only when pyproject.toml is newer.
STAMP := $(VENV)/.installed
# -q hides progress and "already satisfied" lines but still prints warnings and errors.
PIP_FLAGS ?= --quiet --progress-bar off --disable-pip-version-check

.PHONY: venv app test bench lint format checkpoints clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install $(PIP_FLAGS) -e ".[test]"
	@touch $@

app: venv
	$(BIN)/streamlit run app.py --server.port $(PORT) --browser.gatherUsageStats false

test: venv
	$(BIN)/ruff check .
	$(BIN)/python -m pytest --cov=vae_core --cov-report=term $(PYTEST_ARGS)

bench: venv
	@set -e; for script in benchmarks/*.py; do \
		echo "== $$script"; \
		$(BIN)/python $$script; \
	done

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

checkpoints: venv
	$(BIN)/python -m vae_core ship --data-dir $(DATA_DIR) --out checkpoints

clean:
	rm -rf build dist *.egg-info .pytest_cache .ruff_cache .hypothesis .coverage test-artifacts benchmarks/results
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
