"""Repository-level pytest settings: skip collecting optional-accelerator modules whose extra is absent."""

import importlib.util

# The numba kernels import numba at module level; without the `accel` extra there is nothing to collect.
collect_ignore = [] if importlib.util.find_spec("numba") else ["src/xreplay/samplers/_tree_numba.py"]
