# The two commands. Both set everything up first (idempotent: a stamp file skips what is done).
PY := .venv/bin/python
PYTEST_ARGS ?=

.PHONY: setup demo test lint bench clean

setup:
	@bash scripts/setup.sh

demo: setup
	@bash scripts/demo.sh

test: setup
	$(PY) -m pytest -n 2 $(PYTEST_ARGS)

lint: setup
	.venv/bin/ruff check src tests bench

bench: setup
	$(PY) bench/data_bench.py

clean:
	rm -rf .venv build src/*.egg-info .pytest_cache
