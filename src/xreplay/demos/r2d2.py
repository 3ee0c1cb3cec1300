"""``xreplay demo r2d2``: sequence replay lets a recurrent Q-network learn where a feed-forward one cannot.

CartPole-v1 with the velocities hidden: each observation is only the cart
position and the pole angle, so a policy must infer the velocities from the
recent past. Every step goes into a native
:class:`~xreplay.TransitionBuffer` (episode ends flagged by ``terminated`` /
``truncated``); both learners sample from it with
:class:`~xreplay.PrioritizedSequenceSampler` (``burn_in + length`` steps that
never cross an episode end, R2D2's ``eta * max + (1 - eta) * mean`` sequence
priority) and write the absolute TD errors back as step priorities:

* **recurrent**: an LSTM Q-network; the burn-in steps only warm up its state
  (no gradient), then double-Q 3-step targets are trained on ``length``
  steps, as R2D2 does (with a zero initial state instead of stored ones);
* **feed-forward**: the same training on the same slices with an MLP that
  sees one observation at a time.

Both run the same number of environment steps with the same seeds; their
greedy evaluation returns go on one plot.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from xreplay.buffers import TransitionBuffer
from xreplay.demos.common import ReplayClock, RunFolder, plot_curves, progress_bar, require_extra
from xreplay.samplers import PrioritizedSequenceSampler, SequenceSampler

__all__ = ["R2D2Config", "R2D2Result", "run_r2d2"]

NAME = "r2d2"
EXTRA = ("gymnasium", "tqdm", "matplotlib")
VISIBLE = [0, 2]  # cart position and pole angle; the velocities (1, 3) are hidden


@dataclasses.dataclass(frozen=True)
class R2D2Config:
    """Hyperparameters shared by both learners (defaults: the documented run)."""

    seed: int = 0
    steps: int = 60_000
    buffer_size: int = 100_000
    batch_size: int = 32
    burn_in: int = 8
    length: int = 16
    n_step: int = 3
    gamma: float = 0.99
    lr: float = 1e-3
    hidden: int = 64
    learning_starts: int = 2_000
    train_every: int = 4
    target_every: int = 500  # learner updates
    epsilon_steps: int = 20_000
    epsilon_end: float = 0.02
    eval_every: int = 5_000
    eval_episodes: int = 10
    threads: int = 1


@dataclasses.dataclass
class R2D2Result:
    """Curves and figures of both learners."""

    config: R2D2Config
    curves: dict[str, list[tuple[int, float]]]
    seconds: dict[str, float]
    replay_share: dict[str, float]
    replay_summary: dict[str, str]
    plot: Path | None


class RecurrentQ(nn.Module):
    """LSTM Q-network over observation sequences."""

    def __init__(self, obs: int, actions: int, hidden: int):
        """Build the layers."""
        super().__init__()
        self.encode = nn.Sequential(nn.Linear(obs, hidden), nn.ReLU())
        self.lstm = nn.LSTM(hidden, hidden, batch_first=True)
        self.head = nn.Linear(hidden, actions)

    def forward(self, obs: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
        """Return Q-values ``[batch, t, actions]`` and the final recurrent state."""
        out, state = self.lstm(self.encode(obs), state)
        return self.head(out), state


class FeedForwardQ(nn.Module):
    """MLP Q-network that sees one observation at a time (same interface as :class:`RecurrentQ`)."""

    def __init__(self, obs: int, actions: int, hidden: int):
        """Build the layers."""
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(obs, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, actions)
        )

    def forward(self, obs: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
        """Return Q-values ``[batch, t, actions]``; there is no state."""
        return self.layers(obs), None


def make_env() -> Any:
    """Return a fresh CartPole-v1 (observations are cut to the visible part by the caller)."""
    import gymnasium

    return gymnasium.make("CartPole-v1")


class _Learner:
    """One Q-network trained from prioritized sequence slices of its own buffer."""

    def __init__(self, kind: str, config: R2D2Config):
        """Build the network, its target, the buffer and the sampler."""
        self.config = c = config
        torch.manual_seed(c.seed)
        network = RecurrentQ if kind == "recurrent" else FeedForwardQ
        self.net, self.target = network(len(VISIBLE), 2, c.hidden), network(len(VISIBLE), 2, c.hidden)
        self.target.load_state_dict(self.net.state_dict())
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=c.lr)
        self.sampler = PrioritizedSequenceSampler(
            SequenceSampler(
                length=c.length + c.n_step, burn_in=c.burn_in, pad=True, end_fields=("terminated", "truncated")
            )
        )
        self.buffer = TransitionBuffer(c.buffer_size, seed=c.seed, sampler=self.sampler)
        self.rng = np.random.default_rng(c.seed)
        self.updates = 0

    def act(self, obs: np.ndarray, state: Any, epsilon: float) -> tuple[int, Any]:
        """Return an epsilon-greedy action and the next recurrent state."""
        with torch.inference_mode():
            q, state = self.net(torch.from_numpy(obs)[None, None], state)
        if self.rng.random() < epsilon:
            return int(self.rng.integers(2)), state
        return int(q[0, -1].argmax()), state

    def learn(self, clock: ReplayClock) -> None:
        """One update on ``batch_size`` slices: burn-in, n-step double-Q targets, new step priorities."""
        c = self.config
        with clock.replay("sample"):
            s = self.buffer.sample(c.batch_size)
        assert s.mask is not None and s.weights is not None  # a sequence sampler's windows
        obs, action = s.fields["obs"], s.fields["action"]
        reward, mask = s.fields["reward"], s.mask.float()
        ended = s.fields["terminated"].float()  # 1 at a step that ended its episode by failing
        b, n, L = c.burn_in, c.n_step, c.length
        with torch.no_grad():
            _, state = self.net(obs[:, :b]) if b else (None, None)
            _, target_state = self.target(obs[:, :b]) if b else (None, None)
        q, _ = self.net(obs[:, b:], state)  # [batch, L + n, actions]
        with torch.no_grad():
            target_q, _ = self.target(obs[:, b:], target_state)
            best = q.detach().argmax(dim=2, keepdim=True)
            bootstrap = target_q.gather(2, best).squeeze(2)  # [batch, L + n]
            r, m, e = reward[:, b:], mask[:, b:], ended[:, b:]
            end = torch.maximum(e, s.fields["truncated"][:, b:].float()) * m  # valid steps that end an episode
            returns = torch.zeros(obs.shape[0], L)
            alive = torch.ones(obs.shape[0], L)  # no episode end among the summed steps so far
            stopped = torch.zeros(obs.shape[0], L)  # an episode end lies in the n-step window
            for k in range(n):  # n-step sums over the slice, stopping at the episode end
                returns += alive * (c.gamma**k) * r[:, k : k + L] * m[:, k : k + L]
                alive = alive * (1 - end[:, k : k + L])
                stopped = torch.maximum(stopped, end[:, k : k + L])
            # A truncated episode is cut without a bootstrap: its next observation is not in the slice.
            target = returns + alive * (c.gamma**n) * bootstrap[:, n : n + L] * m[:, n : n + L]
        chosen = q[:, :L].gather(2, action[:, b : b + L, None]).squeeze(2)
        # Steps whose n-step target is known: the window ends inside the episode, or the episode ends in it
        # (slices padded past the newest stored step are not trained on there).
        learn = m[:, :L] * torch.maximum(m[:, n : n + L], stopped)
        td = (target - chosen) * learn
        loss = (s.weights[:, None] * nn.functional.smooth_l1_loss(chosen, target, reduction="none") * learn).sum()
        loss = loss / learn.sum().clamp(min=1)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(self.net.parameters(), 10.0)
        self.optimizer.step()
        # The last n steps of a slice only serve as targets: they get the slice's mean error as priority.
        errors = td.detach().abs()
        mean = errors.sum(dim=1, keepdim=True) / learn.sum(dim=1, keepdim=True).clamp(min=1)
        errors = torch.cat([errors, mean.expand(-1, n)], dim=1)
        with clock.replay("priority update"):
            self.buffer.update_priorities(s, errors)
        self.updates += 1
        if self.updates % c.target_every == 0:
            self.target.load_state_dict(self.net.state_dict())

    def evaluate(self, episodes: int, first: int) -> float:
        """Return the mean greedy return over ``episodes`` episodes."""
        env = make_env()
        returns = []
        for i in range(episodes):
            obs, _ = env.reset(seed=2**31 + first + i)
            state, total, done = None, 0.0, False
            while not done:
                action, state = self.act(obs[VISIBLE].astype(np.float32), state, 0.0)
                obs, reward, terminated, truncated, _ = env.step(action)
                total += float(reward)
                done = terminated or truncated
            returns.append(total)
        env.close()
        return float(np.mean(returns))


def train(
    kind: str, config: R2D2Config, show_progress: bool = True
) -> tuple[list[tuple[int, float]], float, ReplayClock]:
    """Train one learner for ``config.steps`` environment steps; return its curve, seconds and replay clock."""
    c = config
    learner, env, clock = _Learner(kind, c), make_env(), ReplayClock()
    curve: list[tuple[int, float]] = []
    step, episode, started = 0, 0, time.perf_counter()
    bar = progress_bar(c.steps, f"r2d2 {kind}", disable=not show_progress)
    try:
        while step < c.steps:
            clock.start_loop()
            raw, _ = env.reset(seed=c.seed * 1_000_003 + episode)
            obs, state, total, done = raw[VISIBLE].astype(np.float32), None, 0.0, False
            while not done:
                epsilon = max(c.epsilon_end, 1.0 - (1.0 - c.epsilon_end) * step / c.epsilon_steps)
                action, state = learner.act(obs, state, epsilon)
                raw, reward, terminated, truncated, _ = env.step(action)
                with clock.replay("write"):
                    learner.buffer.add(
                        {
                            "obs": obs,
                            "action": np.int64(action),
                            "reward": np.float32(reward),
                            "terminated": np.float32(terminated),
                            "truncated": np.float32(truncated),
                        }
                    )
                obs, total, step = raw[VISIBLE].astype(np.float32), total + float(reward), step + 1
                done = terminated or truncated
                if step >= c.learning_starts and step % c.train_every == 0:
                    learner.learn(clock)
                if step % c.eval_every == 0:
                    clock.pause_loop()
                    curve.append((step, learner.evaluate(c.eval_episodes, first=c.seed * 10_007 + step)))
                    clock.start_loop()
            episode += 1
            clock.pause_loop()
            bar.update(step - bar.n)
            bar.set_postfix(ret=f"{total:.0f}", eval=f"{curve[-1][1]:.0f}" if curve else "-", refresh=False)
    finally:
        bar.close()
        env.close()
    return curve, time.perf_counter() - started, clock


def run_r2d2(
    config: R2D2Config | None = None,
    out: str | Path = "xreplay-demo-r2d2",
    show_progress: bool = True,
    plot: bool = True,
) -> R2D2Result:
    """Train the recurrent and the feed-forward learner and plot both curves.

    Raises:
        DemoError: The demo extra is missing or ``out`` is not a folder the demo may write to.
    """
    require_extra(EXTRA)
    c = config or R2D2Config()
    torch.set_num_threads(c.threads)
    folder = RunFolder(out, NAME)
    folder.start(dataclasses.asdict(c))
    curves, seconds, share, summary = {}, {}, {}, {}
    for kind in ("recurrent", "feed-forward"):
        curves[kind], seconds[kind], clock = train(kind, c, show_progress)
        share[kind], summary[kind] = clock.share(), clock.summary()
    png = None
    if plot:
        png = plot_curves(
            folder.path / "curve.png",
            {f"{k} Q-network": ([s for s, _ in v], [r for _, r in v]) for k, v in curves.items()},
            f"Prioritized sequence replay (burn-in {c.burn_in}, length {c.length}), CartPole without velocities",
            "environment steps",
            f"greedy return ({c.eval_episodes} episodes)",
            {"maximum 500": 500.0},
        )
    return R2D2Result(c, curves, seconds, share, summary, png)


def main(args: Any, out: Path) -> int:
    """Run the demo for ``xreplay demo r2d2`` (parsed ``args``) and print its figures."""
    require_extra(EXTRA)
    overrides: dict[str, Any] = {"seed": args.seed, "threads": args.threads}
    if args.steps is not None:
        overrides["steps"] = args.steps
    config = dataclasses.replace(R2D2Config(), **overrides)
    print(
        f"xreplay demo r2d2: CartPole-v1 without velocities, recurrent vs feed-forward Q-network from "
        f"PrioritizedSequenceSampler slices ({config.burn_in} burn-in + {config.length} steps), "
        f"{config.steps:,} steps each, seed {config.seed}, run folder {out}"
    )
    r = run_r2d2(config, out, show_progress=not args.no_progress)
    for kind, curve in r.curves.items():
        last = [ret for _s, ret in curve[-3:]]
        best = max((ret for _s, ret in curve), default=float("nan"))
        print(
            f"{kind:13s} final greedy return {np.mean(last):6.1f} (mean of the last {len(last)} evaluations), "
            f"best {best:.1f}, {r.seconds[kind]:.0f} s"
        )
        print(f"{'':13s} replay {r.replay_summary[kind]}")
    if r.plot is not None:
        print(f"curve         {r.plot}")
    return 0
