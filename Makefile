# Two commands for a fresh machine: `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test lint clean

setup:
	./scripts/setup_env.sh

demo: setup
	$(PY) tools/demo.py --jobs 2

test: setup
	$(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check kd_det tools tests

clean:
	rm -rf output
