"""Transitions with prioritized replay and n-step returns: a compact DQN on CartPole-v1.

``TransitionBuffer`` infers its fields from the first ``add``; a
``PrioritizedSampler`` draws slots in proportion to ``priority ** alpha`` and
returns importance weights (beta annealed to 1 by a ``LinearSchedule``);
``NStepReturns`` adds ``n_step/return``, ``n_step/discount`` and
``n_step/next_obs`` to every sample, stopping at episode ends (a truncated
episode still bootstraps). ``update_priorities(sample, |td|)`` skips slots
overwritten since the sample. Needs gymnasium (``pip install 'xreplay[demo]'``).

    python examples/transitions_per_nstep.py            # 25,000 steps
    python examples/transitions_per_nstep.py --smoke    # seconds (CI)

Full run (2 cores shared with other jobs, load 5.1): greedy return 500.0 over 10 episodes after
25,000 steps, 145 s wall.
"""

import argparse

import gymnasium
import numpy as np
import torch
from torch import nn

from xreplay import LinearSchedule, NStepReturns, PrioritizedSampler, TransitionBuffer


def greedy_return(net, episodes=10):
    env, total = gymnasium.make("CartPole-v1"), 0.0
    for i in range(episodes):
        obs, _ = env.reset(seed=10_000 + i)
        done = False
        while not done:
            with torch.no_grad():
                obs, reward, terminated, truncated, _ = env.step(int(net(torch.as_tensor(obs)).argmax()))
            total, done = total + float(reward), terminated or truncated
    return total / episodes


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes for CI")
    args = parser.parse_args(argv)
    steps = 1_200 if args.smoke else 25_000
    torch.manual_seed(0)
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)

    sampler = PrioritizedSampler(50_000, alpha=0.6, beta=LinearSchedule(0.4, 1.0, steps))
    nstep = NStepReturns(3, gamma=0.99, reward="reward", terminated="terminated", truncated="truncated")
    buffer = TransitionBuffer(50_000, sampler=sampler, n_step=nstep, seed=0)

    net = nn.Sequential(nn.Linear(4, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 2))
    target = nn.Sequential(nn.Linear(4, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 2))
    target.load_state_dict(net.state_dict())
    optimizer = torch.optim.Adam(net.parameters(), lr=5e-4)

    env = gymnasium.make("CartPole-v1")
    obs, _ = env.reset(seed=0)
    for step in range(steps):
        epsilon = max(0.02, 1.0 - step / 8_000)
        with torch.no_grad():
            action = int(rng.integers(2)) if rng.random() < epsilon else int(net(torch.as_tensor(obs)).argmax())
        next_obs, reward, terminated, truncated, _ = env.step(action)
        buffer.add(
            {
                "obs": obs,
                "action": np.int64(action),
                "reward": np.float32(reward),
                "terminated": np.float32(terminated),
                "truncated": np.float32(truncated),
                "next_obs": next_obs,
            }
        )
        obs = next_obs if not (terminated or truncated) else env.reset()[0]
        if step < 1_000:
            continue
        batch = buffer.sample(128)  # fields, batch.weights (importance), batch.indices, batch.generations
        q_all = net(torch.cat([batch["obs"], batch["n_step/next_obs"]]))
        q = q_all[:128].gather(1, batch["action"][:, None]).squeeze(1)
        with torch.no_grad():  # double DQN on the 3-step return; discount is 0 after a termination
            best = q_all[128:].argmax(1, keepdim=True)
            y = (
                batch["n_step/return"]
                + batch["n_step/discount"] * target(batch["n_step/next_obs"]).gather(1, best)[:, 0]
            )
        loss = (batch.weights * nn.functional.smooth_l1_loss(q, y, reduction="none")).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        buffer.update_priorities(batch, (y - q).detach().abs())  # new priority = |TD error|
        if step % 250 == 0:
            target.load_state_dict(net.state_dict())
    print(f"greedy return after {steps:,} steps: {greedy_return(net):.1f} (CartPole-v1, max 500)")
    print(f"stale priority updates skipped: {sampler.stale_updates}")


if __name__ == "__main__":
    main()
