# The two README commands: `make demo` (main job) and `make test` (whole suite).
# Both create the virtual environment on first use (from the package registries only).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test install

install: $(VENV)/.installed

$(VENV)/.installed: setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# RecBole without its tuning-only extras (ray, plotly); setup.py lists the rest it needs
	$(BIN)/pip install --quiet --no-deps "recbole==1.2.1"
	$(BIN)/pip install --quiet -e ".[test,experiments]"
	touch $@

demo: install
	$(BIN)/pmmrec-demo

test: install
	$(BIN)/python -m pytest tests -q
