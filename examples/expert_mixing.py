"""Mixing an expert buffer: sample_mixed draws a fixed share of every batch from demonstrations.

As DI-engine's SQIL/R2D3 data fetchers do, ``sample_mixed([(agent, 0.75),
(expert, 0.25)], 128)`` takes ``int(128 * weight)`` records from each buffer,
in order. The expert buffer is filled once with transitions of a hand-written
CartPole controller (push towards where the pole is falling); a DQN then
learns from mixed batches, and the same DQN without the expert buffer is the
baseline. Both use the same seeds and step budget. Needs gymnasium.

    python examples/expert_mixing.py            # 8,000 agent steps each
    python examples/expert_mixing.py --smoke    # seconds (CI)

Full run (2 cores shared with other jobs, load 4.0): greedy return over 10 episodes after 8,000 steps:
404.2 with 25% expert data, 66.7 without.
"""

import argparse
import random

import gymnasium
import numpy as np
import torch
from torch import nn

from xreplay import sample_mixed
from xreplay.compat.ding import DequeBuffer


def expert_action(obs):
    """A controller that balances CartPole: push towards where the pole is falling."""
    return int(obs[2] + 0.5 * obs[3] > 0)


def collect_expert(buffer, transitions, seed):
    env = gymnasium.make("CartPole-v1")
    obs, _ = env.reset(seed=seed)
    for _ in range(transitions):
        action = expert_action(obs)
        next_obs, reward, terminated, truncated, _ = env.step(action)
        buffer.push({"obs": obs, "action": action, "reward": reward, "next_obs": next_obs, "done": terminated})
        obs = next_obs if not (terminated or truncated) else env.reset()[0]


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


def train(steps, expert):
    torch.manual_seed(0)
    random.seed(0)
    rng = np.random.default_rng(0)
    agent = DequeBuffer(size=50_000)
    net = nn.Sequential(nn.Linear(4, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 2))
    target = nn.Sequential(nn.Linear(4, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 2))
    target.load_state_dict(net.state_dict())
    optimizer = torch.optim.Adam(net.parameters(), lr=5e-4)
    sources = [(agent, 0.75), (expert, 0.25)] if expert is not None else [(agent, 1.0)]
    env = gymnasium.make("CartPole-v1")
    obs, _ = env.reset(seed=0)
    for step in range(steps):
        epsilon = max(0.02, 1.0 - step / 4_000)
        with torch.no_grad():
            action = int(rng.integers(2)) if rng.random() < epsilon else int(net(torch.as_tensor(obs)).argmax())
        next_obs, reward, terminated, truncated, _ = env.step(action)
        agent.push({"obs": obs, "action": action, "reward": reward, "next_obs": next_obs, "done": terminated})
        obs = next_obs if not (terminated or truncated) else env.reset()[0]
        if step < 500:
            continue
        data = [record.data for record in sample_mixed(sources, 128)]  # agent records first, then expert ones
        o = torch.as_tensor(np.stack([d["obs"] for d in data]))
        o2 = torch.as_tensor(np.stack([d["next_obs"] for d in data]))
        a = torch.tensor([d["action"] for d in data])
        r = torch.tensor([d["reward"] for d in data], dtype=torch.float32)
        done = torch.tensor([d["done"] for d in data], dtype=torch.float32)
        q = net(o).gather(1, a[:, None]).squeeze(1)
        with torch.no_grad():
            y = r + 0.99 * (1 - done) * target(o2).max(1).values
        loss = nn.functional.smooth_l1_loss(q, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 250 == 0:
            target.load_state_dict(net.state_dict())
    return greedy_return(net)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes for CI")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    steps = 700 if args.smoke else 8_000
    expert = DequeBuffer(size=20_000)
    collect_expert(expert, 2_000 if args.smoke else 20_000, seed=1)
    print(f"expert buffer: {expert.count()} transitions of a hand-written controller")
    with_expert, without = train(steps, expert), train(steps, None)
    print(f"greedy return after {steps:,} steps: with 25% expert data {with_expert:.1f}, without {without:.1f}")


if __name__ == "__main__":
    main()
