# The README's two commands: `make demo` and `make test`. Both set up .venv on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3

.PHONY: setup demo test lint bench docs
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
