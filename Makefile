# The two commands of the README's quick start:
#   make serve   install hfgit into .venv and run the gatekeeper (SQLite + ./data)
#   make test    install hfgit with its test extras into .venv and run the test suite
PYTHON ?= python3
VENV ?= .venv
DATA ?= ./data
HOST ?= 127.0.0.1
PORT ?= 8080

.PHONY: serve test lint bench

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(VENV)/bin/python
	$(VENV)/bin/python -m pip install -q -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(VENV)/bin/python
	$(VENV)/bin/python -m pip install -q -e '.[test]'
	touch $@ $(VENV)/.installed

serve: $(VENV)/.installed
	$(VENV)/bin/hfgit serve --data-dir $(DATA) --host $(HOST) --port $(PORT)

test: $(VENV)/.installed-test
	$(VENV)/bin/python -m pytest

lint: $(VENV)/.installed-test
	$(VENV)/bin/ruff format --check src tests bench examples
	$(VENV)/bin/ruff check src tests bench examples
