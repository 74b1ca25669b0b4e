# The two commands. Both set everything up first (idempotent: a stamp file skips what is done).
PY := .venv/bin/python
PYTEST_ARGS ?=

.PHONY: setup demo test lint bench bench-train screenshots clean

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

bench-train: setup  # ~15 minutes on a 2-core CPU with the default 30 steps; --steps 10 for a quicker look
	$(PY) bench/train_bench.py $(BENCH_ARGS)

screenshots: setup  # the README's web UI pictures: a real run of the default model (~5 minutes)
	HF_HUB_OFFLINE=1 $(PY) scripts/screenshots.py

clean:
	rm -rf .venv build src/*.egg-info .pytest_cache
