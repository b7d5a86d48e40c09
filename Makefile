# Two commands do all the set-up on a fresh machine (Python >= 3.11):
#   make run    the contact center on the default config (ivr serve --demo: loopback only)
#   make test   lint, the test suite, the flow checks and the flow scenarios
# and, without a server:
#   make demo   a simulated call, a simulated week and its report in data/
VENV ?= .venv
PY := $(VENV)/bin/python
IVR := $(VENV)/bin/ivr

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed

run: install
	$(IVR) check
	$(IVR) directory import examples/katalog.csv
	$(IVR) serve --demo

demo: install
	$(IVR) check
	rm -f data/demo.db data/demo.db-wal data/demo.db-shm
	$(IVR) simulate callflows/switchboard.toml --at 2026-12-01T09:30 --caller +46701234567 \
	    --keys 2,1 --db data/demo.db --demo
	$(IVR) simulate-load --db data/demo.db --from 2026-11-30 --days 5 --demo
	$(IVR) report --db data/demo.db --from 2026-11-30 --to 2026-12-04 --format html -o data/report.html
	$(IVR) report --db data/demo.db --from 2026-11-30 --to 2026-12-04

test: install
	$(PY) -m ruff check .
	$(IVR) check
	$(IVR) test-flows
	$(PY) -m pytest -n 2 -q

bench: install
	$(PY) benchmarks/engine.py

.PHONY: install run demo test bench
