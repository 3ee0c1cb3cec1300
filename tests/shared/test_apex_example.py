"""examples/apex_cartpole.py runs: actor processes write, the learner updates, progress is printed."""

import importlib.util
import pathlib

import pytest

pytest.importorskip("gymnasium")

EXAMPLE = pathlib.Path(__file__).parents[2] / "examples" / "apex_cartpole.py"


def test_apex_cartpole_smoke_run(capsys):
    spec = importlib.util.spec_from_file_location("apex_cartpole", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = module.main(["--smoke", "--start-method", "fork"])
    out = capsys.readouterr().out
    assert "actor steps/s" in out and "learner updates/s" in out and "return (last 20)" in out
    assert result["actor_steps"] > 0 and result["updates"] > 0 and result["curve"]
    assert result["returns"]  # episodes finished and were reported
