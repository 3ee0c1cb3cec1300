"""examples/apex_ray.py runs end to end on the local Ray (actor tasks, 2 prioritized shards, a DQN learner)."""

import importlib.util
import pathlib

import pytest

pytest.importorskip("gymnasium")
EXAMPLE = pathlib.Path(__file__).parents[2] / "examples" / "apex_ray.py"


def test_apex_example_smoke_run(ray_cluster, capsys):
    spec = importlib.util.spec_from_file_location("apex_ray", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    figures = module.main(["--smoke", "--actors", "2"])
    out = capsys.readouterr().out
    assert "xreplay RayReplay" in out and figures["updates"] > 0
    assert figures["size"] == 600  # 2 actors x 300 steps, every one written once
