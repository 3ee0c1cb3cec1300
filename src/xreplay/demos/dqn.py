"""``xreplay demo``: DQN with prioritized replay and 3-step returns on gymnasium's CartPole-v1.

Transitions go into a native :class:`~xreplay.TransitionBuffer` (next
observations stored once, :class:`~xreplay.PrioritizedSampler` with beta
annealed to 1, :class:`~xreplay.NStepReturns` computed at sample time); the
learner is double DQN with a Huber loss weighted by the importance weights,
and new priorities are the absolute TD errors. Every ``eval_every`` steps the
greedy policy plays ``eval_episodes`` episodes; training stops once their mean
return reaches ``target`` (475, CartPole's "solved" level) or after
``max_steps``. Every random draw comes from seeded generators that the
checkpoints carry (training episodes are reset with seeds derived from the
run's seed and the episode number), so a resumed run repeats an uninterrupted
one exactly.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from xreplay.demos.common import DemoError, ReplayClock, RunFolder, plot_curves, progress_bar, require_extra
from xreplay.demos.dqn_agent import DQNConfig, DQNLearner, episode_seed, evaluate, make_env

__all__ = ["DQNConfig", "DQNResult", "run_dqn"]

NAME = "dqn"
EXTRA = ("gymnasium", "tqdm", "matplotlib")


@dataclasses.dataclass
class DQNResult:
    """What a run measured: the curve, the final evaluation, timings and replay's share."""

    config: DQNConfig
    steps: int
    episodes: int
    curve: list[tuple[int, float]]  # (step, mean greedy return) of each evaluation
    episode_returns: list[float]  # return of every training episode, in order
    final_return: float
    solved: bool
    seconds: float
    replay_share: float
    replay_summary: str
    plot: Path | None
    folder: Path


def run_dqn(
    config: DQNConfig | None = None,
    out: str | Path = "xreplay-demo-dqn",
    resume: bool = False,
    show_progress: bool = True,
    plot: bool = True,
    env_factory: Callable[[], Any] | None = None,
) -> DQNResult:
    """Train (or, with ``resume``, continue training) the CartPole DQN in run folder ``out``.

    Args:
        config: Hyperparameters; ignored on resume (the folder's own are used).
        out: Run folder (checkpoints, ``curve.png``).
        resume: Continue from the folder's latest checkpoint.
        show_progress: Show a tqdm bar.
        plot: Write ``curve.png``.
        env_factory: Builds the training environment (default: CartPole-v1).

    Raises:
        DemoError: The demo extra is missing, or ``out`` is not a checkpoint of this demo (on resume)
            or not a folder it may write to.
        KeyboardInterrupt: Interrupted; the latest checkpoint is intact.
    """
    require_extra(EXTRA)
    folder = RunFolder(out, NAME)
    start_folder = None
    if resume:
        saved, start_folder = folder.latest()
        try:
            config = DQNConfig(**saved)
        except TypeError:
            raise DemoError(
                f"{folder.index} holds settings this xreplay's dqn demo does not have ({sorted(saved)}); "
                f"start the demo again without --resume"
            ) from None
    config = config or DQNConfig()
    torch.set_num_threads(config.threads)
    trainer = DQNLearner(config)
    if start_folder is not None:
        trainer.load(start_folder)
    else:
        folder.start(dataclasses.asdict(config))
    env = (env_factory or make_env)()
    clock = ReplayClock()
    started = time.perf_counter()
    bar = progress_bar(config.max_steps, "dqn CartPole-v1", initial=trainer.step, disable=not show_progress)
    try:
        _train(trainer, env, folder, clock, bar)
    finally:
        bar.close()
        env.close()
    seconds = time.perf_counter() - started
    final = evaluate(trainer.net, config.seed, config.eval_episodes, first=1_000_000)
    png = None
    if plot:
        png = _plot(trainer, folder.path / "curve.png")
    return DQNResult(
        config=config,
        steps=trainer.step,
        episodes=trainer.episodes,
        curve=list(trainer.curve),
        episode_returns=list(trainer.episode_returns),
        final_return=final,
        solved=trainer.solved,
        seconds=seconds,
        replay_share=clock.share(),
        replay_summary=clock.summary(),
        plot=png,
        folder=folder.path,
    )


def _train(trainer: DQNLearner, env: Any, folder: RunFolder, clock: ReplayClock, bar: Any) -> None:
    """Run episodes until solved or out of steps; checkpoint at the first episode end after each period."""
    c = trainer.config
    moved = 0  # transitions written and sampled (the replay throughput)
    while trainer.step < c.max_steps and not trainer.solved:
        clock.start_loop()
        obs, _ = env.reset(seed=episode_seed(c.seed, trainer.episodes))
        obs = obs.astype(np.float32)
        total, done = 0.0, False
        while not done:
            action = trainer.act(obs)
            next_obs, reward, terminated, truncated, _ = env.step(action)
            next_obs = next_obs.astype(np.float32)
            transition = {
                "obs": obs,
                "action": np.int64(action),
                "reward": np.float32(reward),
                "terminated": np.float32(terminated),
                "truncated": np.float32(truncated),
                "next_obs": next_obs,
            }
            with clock.replay("write"):
                trainer.buffer.add(transition)
            moved += 1
            trainer.step += 1
            if trainer.step >= c.learning_starts:
                trainer.learn(clock)
                moved += c.batch_size
            obs, total, done = next_obs, total + float(reward), terminated or truncated
        trainer.episodes += 1
        trainer.episode_returns.append(total)
        clock.pause_loop()
        bar.update(trainer.step - bar.n)
        if trainer.step >= trainer.next_eval:
            trainer.next_eval += c.eval_every
            mean = evaluate(trainer.net, c.seed, c.eval_episodes)
            trainer.curve.append((trainer.step, mean))
            trainer.solved = mean >= c.stop_at
        bar.set_postfix(
            ret=f"{total:.0f}",
            eval=f"{trainer.curve[-1][1]:.0f}" if trainer.curve else "-",
            replay=f"{clock.items_per_second(moved):,.0f} tr/s",
            refresh=False,
        )
        if trainer.step >= trainer.next_checkpoint or trainer.solved or trainer.step >= c.max_steps:
            trainer.next_checkpoint = (trainer.step // c.checkpoint_every + 1) * c.checkpoint_every
            folder.checkpoint(trainer.step, trainer.save)


def _plot(trainer: DQNLearner, path: Path) -> Path:
    """Write the learning curve: training episode returns and greedy evaluations."""
    returns = np.asarray(trainer.episode_returns)
    window = min(20, max(len(returns), 1))
    smooth = np.convolve(returns, np.ones(window) / window, mode="valid") if len(returns) else returns
    steps = np.cumsum(returns)  # CartPole: one reward per step, so a return is a length
    curves = {
        f"training episodes (mean of {window})": (steps[window - 1 :].tolist(), smooth.tolist()),
        f"greedy evaluation ({trainer.config.eval_episodes} episodes)": (
            [s for s, _ in trainer.curve],
            [r for _, r in trainer.curve],
        ),
    }
    title = f"DQN + PER + {trainer.config.n_step}-step returns on CartPole-v1 (seed {trainer.config.seed})"
    return plot_curves(path, curves, title, "environment steps", "return", {"target 475": trainer.config.target})


def main(args: Any, out: Path) -> int:
    """Run the demo for ``xreplay demo [dqn]`` (parsed ``args``) and print its figures."""
    require_extra(EXTRA)
    overrides: dict[str, Any] = {"seed": args.seed, "threads": args.threads}
    if args.steps is not None:
        overrides["max_steps"] = args.steps
    if args.checkpoint_every is not None:
        overrides["checkpoint_every"] = args.checkpoint_every
    config = dataclasses.replace(DQNConfig(), **overrides)
    if args.resume:
        RunFolder(out, NAME).latest()  # a folder that is not this demo's checkpoint fails here, in one line
        print(f"xreplay demo: resuming the DQN run in {out} from its last checkpoint")
        ignored = [
            flag
            for flag, value in (("--steps", args.steps), ("--checkpoint-every", args.checkpoint_every))
            if value is not None
        ]
        if ignored:
            print(f"xreplay demo: ignoring {', '.join(ignored)}: a resumed run keeps the settings it started with")
    else:
        print(
            f"xreplay demo: DQN + prioritized replay + {config.n_step}-step returns on CartPole-v1, "
            f"seed {config.seed}, run folder {out}"
        )
    result = run_dqn(config, out, resume=bool(args.resume), show_progress=not args.no_progress)
    c = result.config
    if result.solved:
        step, mean = result.curve[-1]
        print(
            f"solved      step {step:,} (episode {result.episodes}): greedy mean {mean:.1f} over "
            f"{c.eval_episodes} episodes >= {c.stop_at:.0f}, {result.seconds:.1f} s"
        )
    else:
        best = max((mean for _step, mean in result.curve), default=None)
        seen = "no evaluation yet" if best is None else f"best evaluation {best:.1f}"
        print(f"not solved  after {result.steps:,} steps ({result.seconds:.1f} s); {seen}")
    print(f"final       mean return {result.final_return:.1f} over {c.eval_episodes} fresh greedy episodes")
    print(f"replay      {result.replay_summary}")
    if result.plot is not None:
        print(f"curve       {result.plot}")
    print(f"checkpoint  {result.folder} (continue: xreplay demo --resume {result.folder})")
    return 0
