# The two commands a new user needs: `make demo` and `make test`. Each installs what it needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo demo-mismatch test test-floor lint clean

# The oldest asyncssh setup.py accepts, and the transport tests that must pass on it.
ASYNCSSH_FLOOR := 2.15.0
FLOOR_VENV := .venv-floor
FLOOR_TESTS := tests/test_transport_contract.py tests/test_transport_failures.py \
	tests/test_transport_route.py tests/test_transport_asyncssh.py

$(BIN)/.installed: setup.py pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

demo: $(BIN)/.installed
	$(BIN)/repro demo

demo-mismatch: $(BIN)/.installed
	$(BIN)/repro demo --vary build-path

test: $(BIN)/.installed test-floor
	bash scripts/sysdeps.sh
	$(BIN)/python -m pytest -q

$(FLOOR_VENV)/.installed: setup.py pyproject.toml Makefile
	$(PYTHON) -m venv $(FLOOR_VENV)
	$(FLOOR_VENV)/bin/python -m pip install -q --upgrade pip
	$(FLOOR_VENV)/bin/python -m pip install -q -e . pytest "asyncssh==$(ASYNCSSH_FLOOR)"
	touch $@

# The asyncssh transport contract (in-process servers, a jump host too) on the declared floor.
test-floor: $(FLOOR_VENV)/.installed
	$(FLOOR_VENV)/bin/python -c 'import asyncssh; assert asyncssh.__version__ == "$(ASYNCSSH_FLOOR)"'
	$(FLOOR_VENV)/bin/python -m pytest -q -p no:cacheprovider -W ignore::DeprecationWarning \
		-k "asyncssh and not openssh" $(FLOOR_TESTS)

lint: $(BIN)/.installed
	$(BIN)/python -m mypy repro

clean:
	rm -rf $(VENV) $(FLOOR_VENV) .lab
