import pytest
import torch

from tests.demos.conftest import needs_demo_extra

TINY = dict(max_steps=600, buffer_size=64, batch_size=4, eval_every=300, eval_episodes=2, target_every=5)


def test_lambda_returns_reduce_to_one_step_and_monte_carlo_targets():
    from xreplay.demos.qmix import lambda_returns

    rewards = torch.tensor([[[1.0], [0.0], [2.0]]])
    terminated = torch.tensor([[[0.0], [0.0], [1.0]]])
    mask = torch.ones(1, 3, 1)
    values = torch.tensor([[[10.0], [20.0], [30.0]]])  # V(s_1), V(s_2), V(s_3)
    one_step = lambda_returns(rewards, terminated, mask, values, gamma=0.5, td_lambda=0.0)
    assert one_step.flatten().tolist() == [1 + 0.5 * 10, 0 + 0.5 * 20, 2.0]
    monte_carlo = lambda_returns(rewards, terminated, mask, values, gamma=0.5, td_lambda=1.0)
    assert monte_carlo.flatten().tolist() == [1 + 0.5 * (0 + 0.5 * 2), 0 + 0.5 * 2, 2.0]


def test_lambda_returns_bootstrap_at_the_last_valid_step():
    from xreplay.demos.qmix import lambda_returns

    rewards, terminated = torch.zeros(1, 3, 1), torch.zeros(1, 3, 1)
    mask = torch.tensor([[[1.0], [1.0], [0.0]]])  # the episode's last step is t = 1 (padding after)
    values = torch.tensor([[[1.0], [4.0], [99.0]]])
    out = lambda_returns(rewards, terminated, mask, values, gamma=1.0, td_lambda=1.0)
    assert out[0, :2, 0].tolist() == [4.0, 4.0]  # nothing of the padded step leaks in


@needs_demo_extra
@pytest.mark.parametrize("per", [False, True], ids=["uniform", "prioritized"])
def test_qmix_run_measures_random_and_test_returns(per, tmp_path):
    from xreplay.demos.qmix import QMIXConfig, run_qmix

    result = run_qmix(QMIXConfig(per=per, **TINY), tmp_path / "run", show_progress=False)
    assert result.steps >= 600 and result.episodes >= 12
    assert 0.0 <= result.random_return <= 1.0 and 0.0 <= result.final_return <= 1.0
    steps = [step for step, _ in result.curve]
    assert steps[0] == 0 and 300 <= steps[1] < 350 and steps[-1] == result.steps  # at the first episode end
    assert 0.0 < result.replay_share < 1.0 and "sample" in result.replay_summary
    assert ("priority update" in result.replay_summary) == per
    assert result.plot is not None and result.plot.stat().st_size > 1000
