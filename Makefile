# convfeat developer tasks.  `make install demo` then `make test` on a fresh machine.
PYTHON ?= python3
PIP := $(PYTHON) -m pip

.PHONY: install demo test bench clean

# torch first, pinned to the CPU build that may already be on disk: a plain
# dependency resolution would otherwise pull a multi-GB CUDA build.
install:
	$(PYTHON) -c "import torch" 2>/dev/null || $(PIP) install -q "torch==2.13.0" || $(PIP) install -q "torch>=2.2"
	$(PIP) install -q -e ".[test]"

demo:
	convfeat demo

test:
	$(PYTHON) -m pytest -q

bench:
	$(PYTHON) bench/run.py

clean:
	rm -rf build dist *.egg-info .pytest_cache
