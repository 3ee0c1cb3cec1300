# The README's two commands: `make demo` and `make test`. Both set up .venv on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3

DING_VENV ?= .venv-ding
DING := $(DING_VENV)/bin/python

.PHONY: setup demo test lint bench docs parity
setup: $(VENV)/.installed

# torch==2.13.0 is pinned by constraints.txt so a CPU machine installs the local CPU wheel,
# never the CUDA build; the package metadata itself keeps a range.
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -c constraints.txt -e ".[dev]"
	touch $@

# The dev extras include the demo extra (gymnasium, lbforaging, tqdm, matplotlib): set-up installs it.
demo: setup
	$(VENV)/bin/xreplay demo

test: setup
	$(VENV)/bin/ruff check src tests benchmarks examples
	$(VENV)/bin/lint-imports  # the layering of pyproject.toml's [tool.importlinter]
	$(PY) -m pytest
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict -d $(VENV)/site  # no -q: it hides the warnings strict mode counts

# The docs site (mkdocs-material + mkdocstrings, API reference from the docstrings) into site/.
docs: setup
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

lint: setup
	$(VENV)/bin/ruff check src tests benchmarks examples
	$(VENV)/bin/mypy

bench: setup
	$(PY) benchmarks/s1_episodes.py
	$(PY) benchmarks/s2_transitions.py
	$(PY) benchmarks/s3_ding.py
	$(PY) benchmarks/s4_sequences.py
	$(PY) benchmarks/s5_checkpoint.py
	$(PY) benchmarks/s7_ray.py
	$(PY) benchmarks/s8_datasets.py

# DI-engine 0.5.3 parity: bit-identical draws against the real DI-engine, in its own numpy<2 virtualenv.
# DI-engine's metadata cannot resolve beside torch 2.13, so its import closure is pinned and installed --no-deps.
$(DING_VENV)/.installed: .ci/ding-requirements.txt constraints.txt
	$(PYTHON) -m venv $(DING_VENV)
	$(DING) -m pip install -q -c constraints.txt "numpy==1.26.4" torch "pytest>=8" "hypothesis>=6.100"
	$(DING) -m pip install -q --no-deps -r .ci/ding-requirements.txt
	touch $@

parity: $(DING_VENV)/.installed
	$(DING) -c "import ding.data.buffer.middleware"  # fail here, not by skipping the parity tests
	PYTHONPATH=src $(DING) -m pytest -p no:cacheprovider tests/compat/ding
