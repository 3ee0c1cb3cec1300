from tests.demos.conftest import needs_demo_extra

pytestmark = needs_demo_extra


def test_r2d2_trains_both_learners_and_plots_both_curves(tmp_path):
    from xreplay.demos.r2d2 import R2D2Config, run_r2d2

    config = R2D2Config(steps=900, learning_starts=300, eval_every=300, eval_episodes=2, batch_size=4)
    result = run_r2d2(config, tmp_path / "run", show_progress=False)
    assert set(result.curves) == {"recurrent", "feed-forward"}
    for curve in result.curves.values():
        assert [step for step, _ in curve] == [300, 600, 900]
        assert all(0 < ret <= 500 for _, ret in curve)
    assert all(0.0 < share < 1.0 for share in result.replay_share.values())
    assert result.plot is not None and result.plot.stat().st_size > 1000


def test_recurrent_net_carries_state_and_feed_forward_does_not():
    import torch

    from xreplay.demos.r2d2 import FeedForwardQ, RecurrentQ

    obs = torch.randn(1, 5, 2)
    recurrent, feed_forward = RecurrentQ(2, 2, 8), FeedForwardQ(2, 2, 8)
    q, state = recurrent(obs)
    q_last, _ = recurrent(obs[:, -1:], None)
    assert not torch.allclose(q[:, -1], q_last[:, 0])  # the last step's value depends on the past
    q_ff, _ = feed_forward(obs)
    assert torch.allclose(q_ff[:, -1], feed_forward(obs[:, -1:])[0][:, 0])
