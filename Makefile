# inkwell: `make run` serves the embedded default (SQLite + SQLite-backed Celery broker);
# `make test` runs the whole suite. Both create/update .venv in the project root first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8000
export PORT

.PHONY: venv run migrate api worker test lint bench clean

$(VENV)/.installed: requirements.txt requirements-dev.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	@touch $@

venv: $(VENV)/.installed

migrate: venv
	$(PY) -m alembic upgrade head

run: venv
	$(PY) scripts/run_local.py

api: venv
	$(PY) -m api

worker: venv
	$(PY) -m worker

test: venv
	$(PY) -m pytest $(PYTEST_ARGS)

lint: venv
	$(PY) -m ruff check .

clean:
	rm -rf var .pytest_cache .ruff_cache
