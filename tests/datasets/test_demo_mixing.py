"""The demonstration-mixing recipe: a Minari dataset into an expert buffer, mixed into online batches."""

from __future__ import annotations

import importlib.util
import pathlib

import numpy as np
import pytest
import torch

from xreplay import TransitionBuffer, sample_mixed
from xreplay.datasets import from_minari, to_minari

pytest.importorskip("minari")
gym = pytest.importorskip("gymnasium")


def _steps(n: int, value: float) -> dict[str, np.ndarray]:
    obs = np.full((n, 4), value, np.float32)
    return {
        "obs": obs,
        "action": np.zeros(n, np.int64),
        "reward": np.ones(n, np.float32),
        "next_obs": obs + 1,
        "terminated": np.zeros(n, bool),
        "truncated": np.eye(n, dtype=bool)[-1],
    }


def test_expert_rows_fill_their_share_of_every_batch(tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    demos = TransitionBuffer(16)
    demos.extend(_steps(16, 7.0))
    to_minari(demos, dataset_id="demos-v0")
    expert = from_minari("demos-v0", seed=0)
    online = TransitionBuffer(64, seed=0)
    online.extend(_steps(64, -1.0))
    parts = sample_mixed([(online, 0.75), (expert, 0.25)], 128)
    batch = {name: torch.cat([part[name] for part in parts]) for name in parts[0]}
    assert batch["obs"].shape == (128, 4)
    assert (batch["obs"][:96] == -1).all() and (batch["obs"][96:] == 7).all()  # 96 online rows, then 32 expert ones


def test_demo_mixing_example_runs_at_smoke_size(capsys):
    path = pathlib.Path(__file__).parents[2] / "examples" / "demo_mixing.py"
    spec = importlib.util.spec_from_file_location("demo_mixing", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    curves = module.main(["--smoke"])
    assert set(curves) == {"25% demonstrations", "0% demonstrations"} and all(len(c) == 5 for c in curves.values())
    assert "expert buffer: 100 transitions" in capsys.readouterr().out
