"""``xreplay.load`` opens a compat checkpoint in a fresh interpreter that never imported the compat layer.

The adapters of the legacy kinds register on import of their layer; the package metadata names them under
the ``xreplay.checkpoint_kinds`` entry points, so loading finds them without the caller importing anything.
"""

import subprocess
import sys
from importlib.metadata import entry_points

import pytest

from xreplay.persistence.kinds import ENTRY_POINT_GROUP

LOAD = """
import sys
import xreplay
assert not any(m.startswith("xreplay.compat") for m in sys.modules), "a compat layer was imported up front"
buffer = xreplay.load(sys.argv[1])
print(type(buffer).__module__, type(buffer).__name__, {probe})
"""


def _save_ding(path):
    from xreplay.compat.ding import DequeBuffer

    buffer = DequeBuffer(size=8)
    for i in range(5):
        buffer.push({"x": i}, meta={"env": i % 2})
    buffer.save_data(str(path))
    return "xreplay.compat.ding.deque_buffer DequeBuffer 5", "buffer.count()"


def _save_pymarl(path):
    import torch

    import xreplay
    from xreplay.compat.pymarl import ReplayBuffer

    scheme = {"state": {"vshape": 3}, "actions": {"vshape": (1,), "group": "agents", "dtype": torch.long}}
    buffer = ReplayBuffer(scheme, {"agents": 2}, buffer_size=4, max_seq_length=3, device="cpu")
    xreplay.save(buffer, path)
    return "xreplay.compat.pymarl.replay_buffer ReplayBuffer 4", "buffer.buffer_size"


@pytest.mark.parametrize(("kind", "save"), [("ding.deque_buffer", _save_ding), ("pymarl.replay_buffer", _save_pymarl)])
def test_a_fresh_interpreter_loads_a_compat_checkpoint_through_the_entry_points(tmp_path, kind, save):
    if not entry_points(group=ENTRY_POINT_GROUP, name=kind):
        pytest.skip("xreplay's package metadata is not installed here (PYTHONPATH run)")
    path = tmp_path / "ckpt"
    expected, probe = save(path)
    done = subprocess.run(
        [sys.executable, "-c", LOAD.format(probe=probe), str(path)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == expected.split()
