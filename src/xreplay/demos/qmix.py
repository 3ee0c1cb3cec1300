"""``xreplay demo qmix``: QMIX on level-based foraging, written against the PyMARL drop-in layer.

Two agents on lbforaging's ``Foraging-5x5-2p-1f-coop-v3`` (the food needs
both agents loading it together at the same step; the team return is
normalised so that collecting it scores 1.0, and a random policy scores
about 0.02).
The runner writes each episode step by step as PyMARL's ``EpisodeRunner``
does (``EpisodeBatch.update(..., ts=t)`` before and after every action, the
bootstrap step last), inserts it with ``ReplayBuffer.insert_episode_batch``,
and the learner reads ``sample(32)`` sliced to ``max_t_filled()`` exactly as
PyMARL's ``QLearner`` does: shared-parameter agents (observation + agent id,
a feed-forward net: the task is fully observed), a QMIX monotonic mixer over
the concatenated observations, double-Q TD(lambda) targets (as pymarl2's QMIX:
the rare rewards propagate back faster) and a target network copied every
``target_every`` episodes. ``--per`` swaps in pymarl2's
``PrioritizedReplayBuffer`` (episodes drawn by TD-error priority with
importance weights). Training runs for a wall-clock budget (``--minutes``).
"""

from __future__ import annotations

import dataclasses
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from xreplay.compat.pymarl import EpisodeBatch, OneHot, PrioritizedReplayBuffer, ReplayBuffer
from xreplay.demos.common import ReplayClock, RunFolder, plot_curves, progress_bar, require_extra

__all__ = ["QMIXConfig", "QMIXResult", "run_qmix"]

NAME = "qmix"
EXTRA = ("gymnasium", "lbforaging", "tqdm", "matplotlib")


@dataclasses.dataclass(frozen=True)
class QMIXConfig:
    """Hyperparameters of the QMIX demo (defaults: the documented run)."""

    env: str = "Foraging-5x5-2p-1f-coop-v3"
    limit: int = 50  # lbforaging's max_episode_steps
    seed: int = 0
    minutes: float = 9.0
    max_steps: int = 2_000_000
    per: bool = False
    buffer_size: int = 5_000
    batch_size: int = 32
    lr: float = 5e-4
    gamma: float = 0.99
    hidden: int = 64
    mixing_embed: int = 32
    hypernet_embed: int = 64
    epsilon_steps: int = 200_000
    epsilon_end: float = 0.05
    target_every: int = 200  # episodes
    updates: int = 2  # learner updates per episode
    td_lambda: float = 0.8  # TD(lambda) targets, as pymarl2's QMIX (sparse rewards propagate faster)
    eval_every: int = 25_000
    eval_episodes: int = 32
    alpha: float = 0.6
    beta: float = 0.4
    beta_steps: int = 40_000  # environment steps over which --per anneals beta to 1
    threads: int = 1


@dataclasses.dataclass
class QMIXResult:
    """What a run measured."""

    config: QMIXConfig
    steps: int
    episodes: int
    random_return: float
    curve: list[tuple[int, float]]  # (step, mean greedy test return)
    final_return: float
    seconds: float
    replay_share: float
    replay_summary: str
    plot: Path | None


class Agent(nn.Module):
    """Shared agent network: observation and one-hot agent id -> one Q-value per action."""

    def __init__(self, inputs: int, actions: int, hidden: int):
        """Build the layers."""
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(inputs, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, actions)
        )

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """Return Q-values ``[..., actions]``."""
        return self.layers(inputs)


class Mixer(nn.Module):
    """QMIX's monotonic mixer: per-agent Q-values -> team Q, weights from hypernetworks of the state."""

    def __init__(self, agents: int, state: int, embed: int, hyper: int):
        """Build the hypernetworks."""
        super().__init__()
        self.agents, self.embed = agents, embed
        self.w1 = nn.Sequential(nn.Linear(state, hyper), nn.ReLU(), nn.Linear(hyper, agents * embed))
        self.b1 = nn.Linear(state, embed)
        self.w2 = nn.Sequential(nn.Linear(state, hyper), nn.ReLU(), nn.Linear(hyper, embed))
        self.v = nn.Sequential(nn.Linear(state, embed), nn.ReLU(), nn.Linear(embed, 1))

    def forward(self, qs: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """Return the team Q ``[batch, t, 1]`` of agent Qs ``[batch, t, agents]`` in ``state``."""
        b, t = qs.shape[:2]
        s = state.reshape(b * t, -1)
        w1 = self.w1(s).abs().view(-1, self.agents, self.embed)
        hidden = nn.functional.elu(torch.bmm(qs.reshape(-1, 1, self.agents), w1) + self.b1(s).view(-1, 1, self.embed))
        w2 = self.w2(s).abs().view(-1, self.embed, 1)
        return (torch.bmm(hidden, w2) + self.v(s).view(-1, 1, 1)).view(b, t, 1)


def make_env(name: str) -> Any:
    """Return the lbforaging environment ``name`` (registered by importing lbforaging)."""
    import gymnasium
    import lbforaging  # noqa: F401  (registers the Foraging-* environments)

    return gymnasium.make(name, disable_env_checker=True)


class _QMIX:
    """Networks, optimizer, buffer and the runner/learner of the demo."""

    def __init__(self, config: QMIXConfig):
        """Build everything, seeding torch, ``random`` and ``numpy.random`` (PyMARL's sampling RNGs)."""
        self.config = c = config
        torch.manual_seed(c.seed)
        random.seed(c.seed)
        np.random.seed(c.seed)
        self.rng = np.random.default_rng(c.seed)
        self.env = make_env(c.env)
        self.agents = len(self.env.action_space)
        self.actions = int(self.env.action_space[0].n)
        self.obs_size = int(self.env.observation_space[0].shape[0])
        state = self.agents * self.obs_size
        self.obs_scale = np.float32(1.0 / max(float(self.env.observation_space[0].high.max()), 1.0))
        self.scheme = {
            "state": {"vshape": state},
            "obs": {"vshape": self.obs_size, "group": "agents"},
            "actions": {"vshape": (1,), "group": "agents", "dtype": torch.long},
            "avail_actions": {"vshape": (self.actions,), "group": "agents", "dtype": torch.int},
            "reward": {"vshape": (1,)},
            "terminated": {"vshape": (1,), "dtype": torch.uint8},
        }
        self.groups = {"agents": self.agents}
        self.preprocess = {"actions": ("actions_onehot", [OneHot(out_dim=self.actions)])}
        args = (self.scheme, self.groups, c.buffer_size, c.limit + 1)
        if c.per:  # sample(batch, t) with t the environment steps so far, as pymarl2's learner calls it
            self.buffer: ReplayBuffer = PrioritizedReplayBuffer(
                *args, alpha=c.alpha, beta=c.beta, t_max=c.beta_steps, preprocess=self.preprocess
            )
        else:
            self.buffer = ReplayBuffer(*args, preprocess=self.preprocess)
        inputs = self.obs_size + self.agents
        self.agent, self.target_agent = Agent(inputs, self.actions, c.hidden), Agent(inputs, self.actions, c.hidden)
        self.mixer = Mixer(self.agents, state, c.mixing_embed, c.hypernet_embed)
        self.target_mixer = Mixer(self.agents, state, c.mixing_embed, c.hypernet_embed)
        self._sync_targets()
        self.params = list(self.agent.parameters()) + list(self.mixer.parameters())
        self.optimizer = torch.optim.Adam(self.params, lr=c.lr)
        self.ids = torch.eye(self.agents)
        self.steps = self.episodes = 0

    def _sync_targets(self) -> None:
        """Copy the learning networks into the target networks."""
        self.target_agent.load_state_dict(self.agent.state_dict())
        self.target_mixer.load_state_dict(self.mixer.state_dict())

    def epsilon(self) -> float:
        """Return the exploration rate at the current step."""
        c = self.config
        return max(c.epsilon_end, 1.0 - (1.0 - c.epsilon_end) * self.steps / c.epsilon_steps)

    def choose(self, obs: np.ndarray, avail: np.ndarray, epsilon: float) -> np.ndarray:
        """Return one epsilon-greedy action per agent among the available ones."""
        with torch.inference_mode():
            q = self.agent(torch.cat([torch.from_numpy(obs), self.ids], dim=1))
            greedy = q.masked_fill(torch.from_numpy(avail) == 0, -float("inf")).argmax(dim=1).numpy()
        explore = self.rng.random(self.agents) < epsilon
        randoms = np.array([self.rng.choice(np.flatnonzero(a)) for a in avail])  # per agent: a handful of actions
        return np.where(explore, randoms, greedy)

    def run_episode(self, epsilon: float, seed: int, clock: ReplayClock | None = None) -> tuple[EpisodeBatch, float]:
        """Play one episode, writing it step by step as PyMARL's EpisodeRunner; return it and its return."""
        c, env = self.config, self.env
        timed = clock.replay if clock is not None else _untimed
        with timed("write"):
            batch = EpisodeBatch(self.scheme, self.groups, 1, c.limit + 1, preprocess=self.preprocess)
        obs_tuple, _ = env.reset(seed=seed)
        obs = np.stack(obs_tuple).astype(np.float32) * self.obs_scale  # positions and levels scaled to [-1, 1]
        avail = np.ones((self.agents, self.actions), dtype=np.int64)  # lbforaging turns invalid moves into NONE
        total, t, done = 0.0, 0, False
        while not done:
            pre = {"state": [obs.reshape(-1)], "avail_actions": [avail], "obs": [obs]}
            with timed("write"):
                batch.update(pre, ts=t)
            actions = self.choose(obs, avail, epsilon)
            obs_tuple, rewards, terminated, truncated, _ = env.step(tuple(int(a) for a in actions))
            reward = float(sum(rewards))
            total += reward
            done = bool(terminated or truncated) or t + 1 >= c.limit
            timeout = done and t + 1 >= c.limit and not (terminated and float(env.unwrapped.field.sum()) == 0)
            post = {"actions": actions[None], "reward": [(reward,)], "terminated": [(done and not timeout,)]}
            with timed("write"):
                batch.update(post, ts=t)
            obs = np.stack(obs_tuple).astype(np.float32) * self.obs_scale
            t += 1
        with timed("write"):  # the bootstrap step: observation and the action the agents would take
            batch.update({"state": [obs.reshape(-1)], "avail_actions": [avail], "obs": [obs]}, ts=t)
            batch.update({"actions": self.choose(obs, avail, epsilon)[None]}, ts=t)
        return batch, total

    def _inputs(self, batch: EpisodeBatch) -> torch.Tensor:
        """Return agent inputs ``[batch, t, agents, obs + agents]`` (observation and agent id)."""
        obs = batch["obs"]
        ids = self.ids.expand(obs.shape[0], obs.shape[1], -1, -1)
        return torch.cat([obs, ids], dim=-1)

    def learn(self, clock: ReplayClock) -> None:
        """Sample 32 episodes, slice them to ``max_t_filled``, take one QMIX step (and update priorities)."""
        c = self.config
        with clock.replay("sample"):
            if isinstance(self.buffer, PrioritizedReplayBuffer):
                batch, idxes, weights_np = self.buffer.sample(c.batch_size, self.steps)
                weights = torch.as_tensor(weights_np, dtype=torch.float32).view(-1, 1, 1)
            else:
                batch, weights = self.buffer.sample(c.batch_size), torch.ones(1, 1, 1)
            batch = batch[:, : batch.max_t_filled()]
        rewards = batch["reward"][:, :-1]
        actions = batch["actions"][:, :-1]
        terminated = batch["terminated"][:, :-1].float()
        mask = batch["filled"][:, :-1].float()
        mask[:, 1:] = mask[:, 1:] * (1 - terminated[:, :-1])
        avail = batch["avail_actions"]
        inputs = self._inputs(batch)
        q = self.agent(inputs)
        chosen = q[:, :-1].gather(3, actions).squeeze(3)
        with torch.no_grad():
            next_q = q[:, 1:].detach().masked_fill(avail[:, 1:] == 0, -1e9)
            best = next_q.argmax(dim=3, keepdim=True)
            target_q = self.target_agent(inputs)[:, 1:].gather(3, best).squeeze(3)
            target_tot = self.target_mixer(target_q, batch["state"][:, 1:])  # Q_tot(s_{t+1}), double-Q action
            targets = lambda_returns(rewards, terminated, mask, target_tot, c.gamma, c.td_lambda)
        td = (self.mixer(chosen, batch["state"][:, :-1]) - targets) * mask
        loss = (weights * td**2).sum() / mask.sum()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(self.params, 10.0)
        self.optimizer.step()
        if isinstance(self.buffer, PrioritizedReplayBuffer):
            priorities = (td.detach().abs().sum(dim=(1, 2)) / mask.sum(dim=(1, 2)).clamp(min=1)).numpy()
            with clock.replay("priority update"):
                self.buffer.update_priorities(idxes, priorities + 1e-6)

    def evaluate(self, episodes: int, epsilon: float = 0.0, first: int = 0) -> float:
        """Return the mean team return of ``episodes`` episodes at ``epsilon`` (0: greedy; 1: random)."""
        returns = [self.run_episode(epsilon, seed=2**30 + first + i)[1] for i in range(episodes)]
        return float(np.mean(returns))


def lambda_returns(
    rewards: torch.Tensor,
    terminated: torch.Tensor,
    mask: torch.Tensor,
    next_values: torch.Tensor,
    gamma: float,
    td_lambda: float,
) -> torch.Tensor:
    """Return TD(lambda) targets ``[batch, t, 1]``: ``G_t = r_t + gamma (1 - d_t) ((1 - l) V_{t+1} + l G_{t+1})``.

    ``next_values[:, t]`` is the target value of the state after step ``t``; past the last valid step of an
    episode (``mask`` 0) the recursion bootstraps from ``next_values`` alone. ``td_lambda = 0`` gives
    one-step targets.
    """
    returns = torch.zeros_like(rewards)
    steps = rewards.shape[1]
    for t in range(steps - 1, -1, -1):  # backwards: each target blends the next state's value and return
        blend = next_values[:, t]
        if t + 1 < steps:
            following = torch.where(mask[:, t + 1] > 0, returns[:, t + 1], next_values[:, t])
            blend = (1 - td_lambda) * next_values[:, t] + td_lambda * following
        returns[:, t] = rewards[:, t] + gamma * (1 - terminated[:, t]) * blend
    return returns


@dataclasses.dataclass
class _Untimed:
    """A no-op stand-in for :meth:`ReplayClock.replay` outside the training loop."""

    def __enter__(self) -> None:
        """Do nothing."""

    def __exit__(self, *exc: object) -> None:
        """Do nothing."""


def _untimed(_what: str) -> _Untimed:
    """Return a context that times nothing."""
    return _Untimed()


def run_qmix(
    config: QMIXConfig | None = None,
    out: str | Path = "xreplay-demo-qmix",
    show_progress: bool = True,
    plot: bool = True,
) -> QMIXResult:
    """Train QMIX for ``config.minutes`` (or ``max_steps``) and return the measured curve and figures.

    Raises:
        DemoError: The demo extra is missing or ``out`` is not a folder the demo may write to.
    """
    require_extra(EXTRA)
    c = config or QMIXConfig()
    torch.set_num_threads(c.threads)
    folder = RunFolder(out, NAME)
    folder.start(dataclasses.asdict(c))
    demo = _QMIX(c)
    random_return = demo.evaluate(c.eval_episodes * 2, epsilon=1.0, first=10**6)
    curve = [(0, demo.evaluate(c.eval_episodes))]
    clock = ReplayClock()
    started = time.perf_counter()
    deadline = started + 60 * c.minutes
    next_eval = c.eval_every
    bar = progress_bar(c.max_steps, f"qmix {c.env}{' PER' if c.per else ''}", disable=not show_progress)
    try:
        while demo.steps < c.max_steps and time.perf_counter() < deadline:
            clock.start_loop()
            batch, total = demo.run_episode(demo.epsilon(), seed=demo.episodes, clock=clock)
            with clock.replay("write"):
                demo.buffer.insert_episode_batch(batch)
            demo.steps += int(batch.max_t_filled()) - 1
            demo.episodes += 1
            if demo.buffer.can_sample(c.batch_size):
                for _ in range(c.updates):
                    demo.learn(clock)
            if demo.episodes % c.target_every == 0:
                demo._sync_targets()
            clock.pause_loop()
            if demo.steps >= next_eval:
                next_eval += c.eval_every
                curve.append((demo.steps, demo.evaluate(c.eval_episodes)))
            bar.update(demo.steps - bar.n)
            bar.set_postfix(ret=f"{total:.2f}", test=f"{curve[-1][1]:.2f}", eps=f"{demo.epsilon():.2f}", refresh=False)
    finally:
        bar.close()
    seconds = time.perf_counter() - started
    final = demo.evaluate(c.eval_episodes * 2, first=10**7)
    curve.append((demo.steps, final))
    png = None
    if plot:
        png = plot_curves(
            folder.path / "curve.png",
            {f"QMIX{' + PER' if c.per else ''} greedy test return": ([s for s, _ in curve], [r for _, r in curve])},
            f"QMIX through xreplay.compat.pymarl on {c.env} (seed {c.seed})",
            "environment steps",
            "normalised team return",
            {"random policy": random_return, "maximum": 1.0},
        )
    demo.env.close()
    return QMIXResult(
        c, demo.steps, demo.episodes, random_return, curve, final, seconds, clock.share(), clock.summary(), png
    )


def main(args: Any, out: Path) -> int:
    """Run the demo for ``xreplay demo qmix`` (parsed ``args``) and print its figures."""
    require_extra(EXTRA)
    overrides: dict[str, Any] = {"seed": args.seed, "threads": args.threads, "per": bool(args.per)}
    if args.steps is not None:
        overrides["max_steps"] = args.steps
    if args.minutes is not None:
        overrides["minutes"] = args.minutes
    config = dataclasses.replace(QMIXConfig(), **overrides)
    replay = "pymarl2 PrioritizedReplayBuffer" if config.per else "PyMARL ReplayBuffer"
    print(
        f"xreplay demo qmix: QMIX on {config.env} through xreplay.compat.pymarl ({replay}), seed {config.seed}, "
        f"up to {config.minutes:g} min, run folder {out}"
    )
    r = run_qmix(config, out, show_progress=not args.no_progress)
    gap = (r.final_return - r.random_return) / (1.0 - r.random_return) if r.random_return < 1.0 else float("nan")
    print(f"trained     {r.steps:,} steps, {r.episodes:,} episodes in {r.seconds:.0f} s")
    print(f"random      mean test return {r.random_return:.3f} (uniform actions)")
    print(f"final       mean test return {r.final_return:.3f} of 1.0: {100 * gap:.0f}% of the gap from random closed")
    print(f"replay      {r.replay_summary}")
    if r.plot is not None:
        print(f"curve       {r.plot}")
    return 0
