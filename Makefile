# One place for set-up. `make demo` and `make test` are the two README commands.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.certprune-installed

.PHONY: setup demo test test-all bench clean

$(STAMP): pyproject.toml Makefile
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first, pinned to the CPU build cached on these machines
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[test]'
	# auto_LiRPA 0.3 declares torch<1.13; we install it without deps and patch it at use
	$(BIN)/pip install -q --no-deps auto-lirpa==0.3
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/certprune demo

test: $(STAMP)
	CERTPRUNE_DATA=$${CERTPRUNE_DATA:-$(abspath ../shared/data)} $(BIN)/python -m pytest -m "not slow" -q

test-all: $(STAMP)
	CERTPRUNE_DATA=$${CERTPRUNE_DATA:-$(abspath ../shared/data)} $(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) *.egg-info
