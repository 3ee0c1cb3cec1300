"""Bit flipping (the HER paper's task) with DQN, with and without hindsight relabelling.

The state is n bits, the goal another n bits, an action flips one bit; the reward is -1 per
step until the state equals the goal, which ends the episode; episodes last at most n steps.
With n = 15 a random policy almost never sees the goal, so DQN on the stored rewards learns
nothing; relabelling goals with states reached later in the same episode (strategy ``future``,
80% of each batch) turns every episode into successes and the task is solved.

Episodes go into an ``EpisodeBuffer`` with gymnasium dict observations (``goal_scheme``), its
rows step-major (``row_order="step"``, the order transition sampling reads fastest), and
``HindsightSampler`` draws the training batches; ``--no-her`` runs the same agent with
``relabel_ratio=0``. Each epoch: 50 cycles of 16 episodes (one per environment) and 40 DQN
updates of 128 transitions, then the greedy success rate over 208 episodes.

    python examples/her_bitflip.py              # n=15, both variants (a few minutes on a CPU)
    python examples/her_bitflip.py --smoke      # seconds (CI)

Measured on a shared 2-core CPU (load about 2-3 from other jobs; ``python examples/her_bitflip.py
--epochs 8 --seed 0``, torch 1 thread, 4 to 12 s an epoch), greedy success rate after each epoch:

    epoch            1     2     3     4     5     6     7     8
    with HER      0.66  0.96  1.00  1.00  1.00  1.00  1.00  1.00
    without HER   0.00  0.00  0.00  0.00  0.00  0.00  0.00  0.00

With HER the success rate passes 0.9 after the second epoch (about 25 s); without it no
evaluation episode reaches its goal in 8 epochs (6,400 episodes). Seeds 1 and 2: 0.59, 0.97
and 0.55, 0.93 after epochs 1 and 2 with HER, then 1.00; 0.00 throughout without it.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from xreplay import EpisodeBuffer
from xreplay.her import HindsightSampler, goal_scheme


class BitFlipEnv(gym.Env):
    """n bits to turn into a goal, one flip per step; a goal-conditioned gymnasium environment."""

    def __init__(self, bits: int):
        self.bits = bits
        binary = gym.spaces.MultiBinary(bits)
        self.observation_space = gym.spaces.Dict(
            {"observation": binary, "achieved_goal": binary, "desired_goal": binary}
        )
        self.action_space = gym.spaces.Discrete(bits)
        self.state = np.zeros(bits, dtype=np.int8)
        self.goal = np.zeros(bits, dtype=np.int8)
        self.steps = 0

    def _obs(self) -> dict[str, np.ndarray]:
        return {"observation": self.state.copy(), "achieved_goal": self.state.copy(), "desired_goal": self.goal.copy()}

    def reset(self, *, seed: int | None = None, options: Any = None) -> tuple[dict[str, np.ndarray], dict]:
        """Draw a new state and goal."""
        super().reset(seed=seed)
        self.state = self.np_random.integers(0, 2, self.bits, dtype=np.int8)
        self.goal = self.np_random.integers(0, 2, self.bits, dtype=np.int8)
        self.steps = 0
        return self._obs(), {}

    def step(self, action: int) -> tuple[dict[str, np.ndarray], float, bool, bool, dict]:
        """Flip bit ``action``; the episode ends at the goal (terminated) or after ``bits`` steps (truncated)."""
        self.state[action] ^= 1
        self.steps += 1
        reward = float(self.compute_reward(self.state, self.goal, {}))
        return self._obs(), reward, reward == 0.0, self.steps >= self.bits and reward != 0.0, {}

    @staticmethod
    def compute_reward(achieved: np.ndarray, desired: np.ndarray, info: Any) -> np.ndarray:
        """Return 0 where the achieved goal is the desired one, -1 elsewhere (batched like gymnasium-robotics)."""
        return (achieved == desired).all(axis=-1).astype(np.float32) - 1.0


def collect(envs: list[BitFlipEnv], net: nn.Module, epsilon: float, rng: np.random.Generator) -> dict[str, Any]:
    """Run one episode in each env (epsilon-greedy); return the padded episodes and their lengths."""
    n, bits = len(envs), envs[0].bits
    steps = bits + 1  # at most `bits` transitions and the last observation
    data = {
        **{f"obs/{k}": np.zeros((n, steps, bits), np.int8) for k in ("observation", "achieved_goal", "desired_goal")},
        "action": np.zeros((n, steps), np.int64),
        "reward": np.zeros((n, steps), np.float32),
        "terminated": np.zeros((n, steps), bool),
        "truncated": np.zeros((n, steps), bool),
    }
    obs = [env.reset(seed=int(rng.integers(2**31)))[0] for env in envs]
    running = np.ones(n, bool)
    lengths = np.ones(n, np.int64)
    for t in range(bits):
        for i in np.flatnonzero(running):
            for k, v in obs[i].items():
                data[f"obs/{k}"][i, t] = v
        state = np.stack([np.concatenate([o["observation"], o["desired_goal"]]) for o in obs]).astype(np.float32)
        with torch.no_grad():
            greedy = net(torch.from_numpy(state)).argmax(1).numpy()
        actions = np.where(rng.random(n) < epsilon, rng.integers(0, bits, n), greedy)
        for i in np.flatnonzero(running):
            obs[i], reward, terminated, truncated, _ = envs[i].step(int(actions[i]))
            data["action"][i, t], data["reward"][i, t] = actions[i], reward
            data["terminated"][i, t], data["truncated"][i, t] = terminated, truncated
            lengths[i] = t + 2
            if terminated or truncated:
                running[i] = False
                for k, v in obs[i].items():
                    data[f"obs/{k}"][i, t + 1] = v  # the observation after the last action
        if not running.any():
            break
    return {"episodes": data, "lengths": lengths}


def evaluate(envs: list[BitFlipEnv], net: nn.Module, episodes: int, rng: np.random.Generator) -> float:
    """Return the greedy policy's success rate over ``episodes`` episodes."""
    successes = 0
    for _ in range(episodes // len(envs)):
        batch = collect(envs, net, 0.0, rng)
        successes += int(batch["episodes"]["terminated"].any(axis=1).sum())
    return successes / (episodes // len(envs) * len(envs))


def q_network(bits: int, hidden: int = 256) -> nn.Module:
    """Return an MLP from (state, goal) to one value per bit flip."""
    return nn.Sequential(
        nn.Linear(2 * bits, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, bits)
    )


def train(bits: int, her: bool, epochs: int, cycles: int, seed: int, log: bool = True) -> list[float]:
    """Train DQN on bit flipping; return the success rate after each epoch."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    envs = [BitFlipEnv(bits) for _ in range(16)]
    buffer = EpisodeBuffer(
        goal_scheme(envs[0].observation_space, envs[0].action_space),
        capacity=50_000,
        max_seq_length=bits + 1,
        seed=seed,
        row_order="step",  # each step's fields together: a sampled transition is one range of bytes
    )
    sampler = HindsightSampler(buffer, BitFlipEnv.compute_reward, strategy="future", relabel_ratio=0.8 if her else 0.0)
    net, target = q_network(bits), q_network(bits)
    target.load_state_dict(net.state_dict())
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    gamma, curve = 0.98, []
    for epoch in range(epochs):
        start = time.perf_counter()
        for _ in range(cycles):
            batch = collect(envs, net, 0.2, rng)
            buffer.add(batch["episodes"], lengths=batch["lengths"])
            for _ in range(40):
                sample = sampler.sample(128)
                state = torch.cat([sample["obs/observation"], sample["obs/desired_goal"]], 1).float()
                after = torch.cat([sample["next_obs/observation"], sample["next_obs/desired_goal"]], 1).float()
                reward = sample["reward"]
                done = (reward == 0).float()  # reward 0 means the goal is reached, which ends the episode
                with torch.no_grad():
                    value = target(after).max(1).values
                    goal = (reward + gamma * (1 - done) * value).clamp(-1 / (1 - gamma), 0.0)
                q = net(state).gather(1, sample["action"][:, None]).squeeze(1)
                loss = nn.functional.mse_loss(q, goal)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            with torch.no_grad():  # Polyak-averaged target network
                for p, tp in zip(net.parameters(), target.parameters(), strict=True):
                    tp.mul_(0.95).add_(p, alpha=0.05)
        curve.append(evaluate(envs, net, 208, rng))
        if log:
            label = "with HER" if her else "without HER"
            print(f"{label:12s} epoch {epoch + 1}: success {curve[-1]:.2f} ({time.perf_counter() - start:.1f} s)")
    return curve


def main(argv: list[str] | None = None) -> dict[str, list[float]]:
    """Run both variants and print their success curves."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bits", type=int, default=15)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--cycles", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-her", action="store_true", help="only the variant without relabelling")
    parser.add_argument("--her-only", action="store_true", help="only the variant with relabelling")
    parser.add_argument("--smoke", action="store_true", help="4 bits, 2 short epochs (seconds)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.bits, args.epochs, args.cycles = 4, 2, 3
    torch.set_num_threads(1)
    variants = [v for v in (True, False) if not (args.no_her and v) and not (args.her_only and not v)]
    curves = {
        ("with HER" if her else "without HER"): train(args.bits, her, args.epochs, args.cycles, args.seed)
        for her in variants
    }
    print(f"{'epoch':12s}" + "".join(f"{e + 1:6d}" for e in range(args.epochs)))
    for label, curve in curves.items():
        print(f"{label:12s}" + "".join(f"{s:6.2f}" for s in curve))
    return curves


if __name__ == "__main__":
    main()
