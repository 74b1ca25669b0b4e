# The two commands. Both set everything up first (idempotent: a stamp file skips what is done).
PY := .venv/bin/python
PYTEST_ARGS ?=

.PHONY: setup demo test test-ci lint bench bench-train bench-lf bench-infer bench-dist screenshots clean

setup:
	@bash scripts/setup.sh

demo: setup
	@bash scripts/demo.sh

test: setup
	$(PY) -m pytest -n 2 --dist worksteal -m "not ci" $(PYTEST_ARGS)

test-ci: setup  # the tests CI adds after make test (~15 minutes): FSDP, ZeRO-1/2/3, kill -9 and two machines, every alignment stage under DDP, the forgetting guard, held-out DPO, the web UI eval/export tabs, GGUF files run in llama.cpp
	PY=$(PY) scripts/llama_cpp.sh  # llama.cpp built for this CPU's instruction sets, once (~8 min)
	$(PY) -m pytest -n 2 --dist worksteal -m ci $(PYTEST_ARGS)

lint: setup
	.venv/bin/ruff check src tests bench

bench: setup
	$(PY) bench/data_bench.py

bench-train: setup  # ~15 minutes on a 2-core CPU with the default 30 steps; --steps 10 for a quicker look
	$(PY) bench/train_bench.py $(BENCH_ARGS)

bench-lf: setup  # LLaMA-Factory 0.9.5 in .venv-lf (~3 minutes once), then train_bench with it as a contender
	bash bench/setup_llamafactory.sh
	$(PY) bench/train_bench.py --contenders tuneforge,TRL,HF,LF $(BENCH_ARGS)

bench-infer: setup  # single-stream decoding: generate vs chat's engine vs static cache (+ torch.compile)
	$(PY) bench/infer_bench.py $(BENCH_ARGS)

bench-dist: setup  # ~10 minutes: 1 vs 2 processes for every strategy, on the default model
	HF_HUB_OFFLINE=1 $(PY) bench/dist_bench.py $(BENCH_ARGS)

screenshots: setup  # the README's web UI pictures: a real run of the default model (~5 minutes)
	HF_HUB_OFFLINE=1 $(PY) scripts/screenshots.py

clean:
	rm -rf .venv .venv-lf build src/*.egg-info .pytest_cache
