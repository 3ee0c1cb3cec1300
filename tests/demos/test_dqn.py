import dataclasses
import json

import pytest
import torch

from tests.demos.conftest import needs_demo_extra

pytestmark = needs_demo_extra

TINY = dict(
    max_steps=1_200,
    buffer_size=2_000,
    batch_size=16,
    learning_starts=200,
    hidden=16,
    target_every=50,
    epsilon_steps=600,
    eval_every=400,
    eval_start=300,  # not a multiple of eval_every: the resumed run must keep the same schedule
    eval_episodes=2,
    checkpoint_every=300,
)


def tiny_config(**overrides):
    from xreplay.demos.dqn import DQNConfig

    return DQNConfig(**{**TINY, **overrides})


class InterruptAt:
    """A CartPole whose ``step`` raises KeyboardInterrupt on its ``n``-th call, as Ctrl-C would."""

    def __init__(self, n):
        from xreplay.demos.dqn import make_env

        self.env, self.left = make_env(), n

    def reset(self, **kwargs):
        return self.env.reset(**kwargs)

    def step(self, action):
        self.left -= 1
        if self.left == 0:
            raise KeyboardInterrupt
        return self.env.step(action)

    def close(self):
        self.env.close()


def test_resumed_run_repeats_the_uninterrupted_curve(tmp_path):
    from xreplay.demos.common import RunFolder
    from xreplay.demos.dqn import run_dqn

    config = tiny_config()
    whole = run_dqn(config, tmp_path / "whole", show_progress=False, plot=False)
    with pytest.raises(KeyboardInterrupt):
        run_dqn(config, tmp_path / "cut", show_progress=False, plot=False, env_factory=lambda: InterruptAt(700))
    _config, latest = RunFolder(tmp_path / "cut", "dqn").latest()
    assert 300 <= int(latest.name.split("-")[1]) < 700  # the checkpoint before the interruption is intact
    resumed = run_dqn(None, tmp_path / "cut", resume=True, show_progress=False, plot=False)
    assert resumed.steps == whole.steps and resumed.episodes == whole.episodes
    assert resumed.episode_returns == whole.episode_returns
    assert resumed.curve == whole.curve and len(whole.curve) >= 2
    assert resumed.final_return == whole.final_return
    for name in ("whole", "cut"):
        assert (tmp_path / name / "demo.json").is_file()


def test_resumed_network_and_optimizer_match_bit_for_bit(tmp_path):
    from xreplay.demos.common import load_state
    from xreplay.demos.dqn import run_dqn

    config = tiny_config(max_steps=600)
    run_dqn(config, tmp_path / "whole", show_progress=False, plot=False)
    with pytest.raises(KeyboardInterrupt):
        run_dqn(config, tmp_path / "cut", show_progress=False, plot=False, env_factory=lambda: InterruptAt(450))
    run_dqn(None, tmp_path / "cut", resume=True, show_progress=False, plot=False)
    (_, a), (_, b) = (load_state(next((tmp_path / n).glob("step-*"))) for n in ("whole", "cut"))
    for key, tensor in a["net"].items():
        assert torch.equal(tensor, b["net"][key]), key


def test_run_writes_curve_and_checkpoints(tmp_path):
    from xreplay.demos.dqn import run_dqn

    result = run_dqn(tiny_config(max_steps=500), tmp_path / "run", show_progress=False)
    assert result.plot == tmp_path / "run" / "curve.png" and result.plot.stat().st_size > 1000
    assert 0.0 < result.replay_share < 1.0 and "sample" in result.replay_summary
    index = json.loads((tmp_path / "run" / "demo.json").read_text())
    assert index["demo"] == "dqn" and index["latest"] == f"step-{result.steps:08d}"
    assert index["config"] == dataclasses.asdict(result.config)
    assert len(list((tmp_path / "run").glob("step-*"))) == 1  # older checkpoints are dropped


def test_resume_of_a_folder_without_checkpoint_fails_in_one_line(tmp_path):
    from xreplay.demos.common import DemoError
    from xreplay.demos.dqn import run_dqn

    with pytest.raises(DemoError, match="is not a demo checkpoint"):
        run_dqn(None, tmp_path, resume=True)


def test_resume_refuses_settings_this_demo_does_not_have(tmp_path):
    from xreplay.demos.common import DemoError
    from xreplay.demos.dqn import run_dqn

    run_dqn(tiny_config(max_steps=300), tmp_path, show_progress=False, plot=False)
    index = json.loads((tmp_path / "demo.json").read_text())
    index["config"]["warp_drive"] = 1
    (tmp_path / "demo.json").write_text(json.dumps(index))
    with pytest.raises(DemoError, match="settings this xreplay's dqn demo does not have"):
        run_dqn(None, tmp_path, resume=True)
