"""The CartPole DQN agent of ``xreplay demo dqn``: its settings, Q-network, learner and checkpoint state.

:class:`DQNLearner` owns everything a run's checkpoint must carry: the
online and target networks, the optimizer, the prioritized
:class:`~xreplay.TransitionBuffer` with :class:`~xreplay.NStepReturns`, the
exploration generator and the counters. The training loop that drives it,
evaluations aside, lives in :mod:`xreplay.demos.dqn`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from xreplay.buffers import NStepReturns, TransitionBuffer
from xreplay.demos.common import ReplayClock, load_state, rng_state, save_state, set_rng_state
from xreplay.persistence import load, save
from xreplay.samplers import LinearSchedule, PrioritizedSampler

__all__ = ["DQNConfig", "DQNLearner", "QNetwork", "episode_seed", "evaluate", "make_env", "n_step_returns"]


@dataclasses.dataclass(frozen=True)
class DQNConfig:
    """Hyperparameters of the CartPole DQN (defaults: the documented run)."""

    seed: int = 0
    max_steps: int = 100_000
    buffer_size: int = 50_000
    batch_size: int = 128
    learning_starts: int = 1_000
    gamma: float = 0.99
    n_step: int = 3
    lr: float = 5e-4
    hidden: int = 256
    target_every: int = 250
    epsilon_steps: int = 8_000
    epsilon_end: float = 0.02
    alpha: float = 0.6
    beta_start: float = 0.4
    eval_every: int = 2_500
    eval_start: int = 10_000
    eval_episodes: int = 20
    target: float = 475.0  # what the fresh final evaluation must reach
    stop_at: float = 490.0  # training stops at an evaluation this good: a margin above the target
    checkpoint_every: int = 10_000
    threads: int = 1


class QNetwork(nn.Module):
    """A two-hidden-layer MLP from observations to one Q-value per action."""

    def __init__(self, obs: int, actions: int, hidden: int):
        """Build the layers."""
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(obs, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, actions)
        )

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """Return Q-values ``[batch, actions]``."""
        return self.layers(obs)


def make_env() -> Any:
    """Return a fresh CartPole-v1."""
    import gymnasium

    return gymnasium.make("CartPole-v1")


def episode_seed(seed: int, episode: int) -> int:
    """Return the reset seed of training episode ``episode`` (evaluations use seeds from 2**31 up)."""
    return (seed * 1_000_003 + episode) % 2**31


def evaluate(net: QNetwork, seed: int, episodes: int, first: int = 0) -> float:
    """Return the mean return of ``episodes`` greedy episodes (reset seeds from ``first``)."""
    env = make_env()
    returns = []
    for i in range(episodes):
        obs, _ = env.reset(seed=2**31 + seed * 10_007 + first + i)
        total, done = 0.0, False
        while not done:
            with torch.inference_mode():
                action = int(net(torch.as_tensor(obs)).argmax())
            obs, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    env.close()
    return float(np.mean(returns))


class DQNLearner:
    """The DQN's state: networks, optimizer, buffer, generators and counters.

    Args:
        config: The run's hyperparameters (the networks are seeded by ``config.seed``).
    """

    def __init__(self, config: DQNConfig):
        """Build everything from ``config`` (networks seeded by ``config.seed``)."""
        self.config = config
        torch.manual_seed(config.seed)
        self.net = QNetwork(4, 2, config.hidden)
        self.target = QNetwork(4, 2, config.hidden)
        self.target.load_state_dict(self.net.state_dict())
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=config.lr, fused=True)
        self.rng = np.random.default_rng(config.seed)
        self.buffer = self._new_buffer(config)
        self.step = 0
        self.updates = 0
        self.episodes = 0
        self.curve: list[tuple[int, float]] = []
        self.episode_returns: list[float] = []
        self.solved = False
        self.next_eval = config.eval_start  # the first episode end at or after this step evaluates
        self.next_checkpoint = config.checkpoint_every

    @staticmethod
    def _new_buffer(config: DQNConfig) -> TransitionBuffer:
        """Return the prioritized transition buffer with 3-step returns."""
        sampler = PrioritizedSampler(
            config.buffer_size,
            alpha=config.alpha,
            beta=LinearSchedule(config.beta_start, 1.0, max(config.max_steps - config.learning_starts, 1)),
        )
        return TransitionBuffer(
            config.buffer_size,
            sampler=sampler,
            seed=config.seed,
            n_step=n_step_returns(config),
        )

    def epsilon(self) -> float:
        """Return the exploration rate at the current step (linear decay)."""
        c = self.config
        return max(c.epsilon_end, 1.0 - (1.0 - c.epsilon_end) * self.step / c.epsilon_steps)

    def act(self, obs: np.ndarray) -> int:
        """Return an epsilon-greedy action."""
        if self.rng.random() < self.epsilon():
            return int(self.rng.integers(2))
        with torch.inference_mode():
            return int(self.net(torch.from_numpy(obs)).argmax())

    def learn(self, clock: ReplayClock) -> None:
        """Sample a batch, take one double-DQN step and write back the new priorities."""
        c = self.config
        with clock.replay("sample"):
            batch = self.buffer.sample(c.batch_size)
        obs, next_obs = batch["obs"], batch["n_step/next_obs"]
        q_all = self.net(torch.cat([obs, next_obs]))
        q = q_all[: c.batch_size].gather(1, batch["action"][:, None]).squeeze(1)
        with torch.no_grad():
            best_next = q_all[c.batch_size :].argmax(1, keepdim=True)
            next_q = self.target(next_obs).gather(1, best_next).squeeze(1)
            target = batch["n_step/return"] + batch["n_step/discount"] * next_q
        td = target - q
        assert batch.weights is not None
        loss = (batch.weights * nn.functional.smooth_l1_loss(q, target, reduction="none")).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(self.net.parameters(), 10.0)
        self.optimizer.step()
        with clock.replay("priority update"):
            self.buffer.update_priorities(batch, td.detach().abs())
        self.updates += 1
        if self.updates % c.target_every == 0:
            self.target.load_state_dict(self.net.state_dict())

    # -- checkpoints ------------------------------------------------------------

    def save(self, folder: Path) -> None:
        """Write the buffer, the networks, the optimizer and the counters into ``folder``."""
        save(self.buffer, folder / "replay", incremental=False)
        state = {
            "step": self.step,
            "updates": self.updates,
            "episodes": self.episodes,
            "curve": self.curve,
            "episode_returns": self.episode_returns,
            "solved": self.solved,
            "next_eval": self.next_eval,
            "next_checkpoint": self.next_checkpoint,
            "rng": rng_state(self.rng),
        }
        tensors = {
            "net": self.net.state_dict(),
            "target": self.target.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "torch_rng": torch.get_rng_state(),
        }
        save_state(folder, state, tensors)

    def load(self, folder: Path) -> None:
        """Continue from a checkpoint written by :meth:`save`."""
        state, tensors = load_state(folder)
        self.buffer = load(folder / "replay", kind=TransitionBuffer)
        self.buffer.n_step = n_step_returns(self.config)
        self.net.load_state_dict(tensors["net"])
        self.target.load_state_dict(tensors["target"])
        self.optimizer.load_state_dict(tensors["optimizer"])
        torch.set_rng_state(tensors["torch_rng"])
        set_rng_state(self.rng, state["rng"])
        self.step, self.updates, self.episodes = int(state["step"]), int(state["updates"]), int(state["episodes"])
        self.curve = [(int(s), float(r)) for s, r in state["curve"]]
        self.episode_returns = [float(r) for r in state["episode_returns"]]
        self.solved = bool(state["solved"])
        self.next_eval, self.next_checkpoint = int(state["next_eval"]), int(state["next_checkpoint"])


def n_step_returns(config: DQNConfig) -> NStepReturns:
    """Return the n-step return computation of ``config``."""
    return NStepReturns(config.n_step, config.gamma, reward="reward", terminated="terminated", truncated="truncated")
