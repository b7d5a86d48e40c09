# Two commands do all the set-up on a fresh machine (Python >= 3.11):
#   make demo   check the default flow and run a simulated call through it, recorded in data/ivr.db
#   make test   lint, the test suite, the flow checks and the flow scenarios
VENV ?= .venv
PY := $(VENV)/bin/python
IVR := $(VENV)/bin/ivr

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed

demo: install
	$(IVR) check
	$(IVR) simulate callflows/switchboard.toml --at 2026-12-01T09:30 --caller +46701234567 \
	    --keys 2,1 --db data/ivr.db --demo

test: install
	$(PY) -m ruff check .
	$(PY) -m pytest -n 2 -q
	$(IVR) check
	$(IVR) test-flows

bench: install
	$(PY) benchmarks/engine.py

.PHONY: install demo test bench
