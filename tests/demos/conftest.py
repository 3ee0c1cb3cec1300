import importlib.util

import pytest

MISSING = [m for m in ("gymnasium", "lbforaging", "tqdm", "matplotlib") if importlib.util.find_spec(m) is None]

needs_demo_extra = pytest.mark.skipif(
    bool(MISSING), reason=f"the demo extra is not installed ({', '.join(MISSING)}): pip install -e '.[demo]'"
)
