# convfeat developer tasks.  `make install demo` then `make test` on a fresh machine.
PYTHON ?= python3
PIP := $(PYTHON) -m pip

.PHONY: install demo test bench model clean

# torch first, pinned to the CPU build that may already be on disk: a plain
# dependency resolution would otherwise pull a multi-GB CUDA build.
install:
	$(PYTHON) -c "import torch" 2>/dev/null || $(PIP) install -q "torch==2.13.0" || $(PIP) install -q "torch>=2.2"
	$(PIP) install -q -e ".[test]"

demo:
	convfeat demo

# Two test processes, one per core (conftest.py gives each one torch thread); the slowest tests
# start first and module-level fixtures are made once (pyproject.toml addopts, conftest.py).
test:
	$(PYTHON) -m pytest -q -n 2

bench:
	$(PYTHON) bench/run.py

# Retrain the shipped model from scratch (offline; ~40 min on 2 CPU cores) and install it where
# the package ships it (package data of convfeat.models.shipped, so wheels carry it too).
SHIPPED_MODEL := convfeat/models/shipped/convfeat-synth

model:
	convfeat corpus synth -o runs/corpus --n 2500 --seed 0 --workers 2
	convfeat pretrain runs/corpus/manifest.csv -o runs/shipped --epochs 12 --threads 1 --seed 0 --name convfeat-synth
	mkdir -p $(SHIPPED_MODEL)
	cp runs/shipped/model.json runs/shipped/weights.npz $(SHIPPED_MODEL)/
	$(PYTHON) experiments/model_card.py $(SHIPPED_MODEL)

clean:
	rm -rf build dist *.egg-info .pytest_cache
