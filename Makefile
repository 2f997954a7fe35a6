# The two commands a new user needs: `make demo` and `make test`. Each installs what it needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo demo-mismatch test lint clean

$(BIN)/.installed: setup.py pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

demo: $(BIN)/.installed
	$(BIN)/repro demo

demo-mismatch: $(BIN)/.installed
	$(BIN)/repro demo --vary build-path

test: $(BIN)/.installed
	bash scripts/sysdeps.sh
	$(BIN)/python -m pytest -q

lint: $(BIN)/.installed
	$(BIN)/python -m mypy repro

clean:
	rm -rf $(VENV) .lab
