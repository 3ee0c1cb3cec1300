"""Make the reference model in ``tests/reference`` importable as ``pymarl_reference``."""

import sys
from pathlib import Path

_REFERENCE = str(Path(__file__).resolve().parents[2] / "reference")
if _REFERENCE not in sys.path:
    sys.path.insert(0, _REFERENCE)
