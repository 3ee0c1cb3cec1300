"""The optional numba accelerator: each compiled kernel module imported (and checked) once, on first use.

``XREPLAY_NUMBA=0`` turns every kernel off; without numba (``pip install 'xreplay[accel]'``) the
numpy or torch code that each kernel mirrors runs instead. A kernel module that numba cannot
compile or cache warns once and is then treated as missing.

Example:
    >>> kernels("xreplay.no_such_kernels", "numpy") is None
    True
"""

from __future__ import annotations

import importlib
import os
import threading
import warnings
from collections.abc import Callable
from types import ModuleType

__all__ = ["kernels"]

_LOADED: dict[str, ModuleType | None] = {}  # module name -> the module, None when it cannot be used
_LOAD = threading.Lock()


def kernels(module: str, instead: str, check: Callable[[ModuleType], bool] | None = None) -> ModuleType | None:
    """Return the kernel module ``module``, or None where the ``instead`` code must run.

    Args:
        module: The kernel module's dotted name (its import needs numba).
        instead: What runs without it (named in the warning when numba cannot compile it).
        check: Called once with the imported module; False keeps it unused.
    """
    if module in _LOADED:
        return _LOADED[module]
    with _LOAD:
        if module not in _LOADED:
            _LOADED[module] = _load(module, instead, check)
    return _LOADED[module]


def _load(module: str, instead: str, check: Callable[[ModuleType], bool] | None) -> ModuleType | None:
    """Import ``module`` and check it; None when numba is disabled, missing, failing or the check refuses."""
    if os.environ.get("XREPLAY_NUMBA", "1") == "0":
        return None
    try:
        loaded = importlib.import_module(module)
    except ImportError:  # numba is not installed
        return None
    except Exception as exc:  # numba is installed but cannot compile or cache (e.g. no writable cache)
        warnings.warn(f"xreplay: numba kernels {module} unavailable, {instead} runs ({exc!r})", RuntimeWarning, 5)
        return None
    return loaded if check is None or check(loaded) else None
