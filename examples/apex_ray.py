"""Ape-X on one machine: actor tasks play CartPole into 2 prioritized Ray shards, one DQN learner.

* ``RayReplay`` starts two prioritized shards (alpha 0.6, beta 0.4) and a rate limiter
  (``SampleToInsertRatio``: each transition is sampled about 8 times; actors wait when the
  learner falls behind, the learner waits for at least 1,000 transitions).
* ``--actors`` Ray tasks each play CartPole with their own exploration rate (Ape-X's
  ``eps_i = 0.4 ** (1 + 7 i / (N - 1))``), write chunks of 50 transitions through their own
  pickled client (routed by writer, so one actor's stream stays in one shard) and fetch the
  learner's weights every 400 steps from a small parameter actor.
* The learner (this process) samples batches of 64 with prefetching, trains a double DQN with
  the importance weights, and sends the absolute TD errors back as priorities.

    python examples/apex_ray.py             # 2 actors x 12,000 steps (a minute or two on 2 cores)
    python examples/apex_ray.py --smoke     # seconds (CI)

One run (seed 0, shared 2-core CPU, load about 3; 2 actors x 12,000 steps, 23 s in all):
greedy return (3 episodes) 9.3 after 1,000 updates, 184.3 after 2,000, 214.8 (5 episodes) at the
end after 2,814 updates; the actors' own episode returns (with exploration) went from 85.1 (first
10 episodes) to 161.2 (last 10); the limiter counted 24,000 inserts and 180,480 sampled items
(7.5 per insert, for a target of 8). The untrained network's greedy return happened to be 96.0
with this seed. A small untuned DQN: the example shows the data path, not a tuned agent.
"""

from __future__ import annotations

import argparse
import functools
import time

import gymnasium as gym
import numpy as np
import ray
import torch
from torch import nn

from xreplay import RateLimiterTimeout, SampleToInsertRatio, TransitionBuffer
from xreplay.distributed import ClientOptions, RayReplay


def q_network() -> nn.Module:
    """Return the Q-network: CartPole's 4 observations to 2 action values."""
    return nn.Sequential(nn.Linear(4, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 2))


@ray.remote(num_cpus=0)
class Parameters:
    """The learner's latest weights (numpy arrays) and the actors' episode returns."""

    def __init__(self) -> None:
        self.weights: dict[str, np.ndarray] | None = None
        self.returns: list[tuple[float, int, float]] = []  # (time, actor, return)

    def publish(self, weights: dict[str, np.ndarray]) -> None:
        """Keep the learner's latest weights."""
        self.weights = weights

    def fetch(self) -> dict[str, np.ndarray] | None:
        """Return the latest weights (None before the first)."""
        return self.weights

    def report(self, actor: int, value: float) -> None:
        """Record an actor's episode return."""
        self.returns.append((time.time(), actor, value))

    def history(self) -> list[tuple[float, int, float]]:
        """Return every recorded (time, actor, return)."""
        return self.returns


@ray.remote(num_cpus=0)
def act(replay, parameters, actor: int, epsilon: float, steps: int, seed: int) -> int:
    """Play ``steps`` CartPole steps with an epsilon-greedy policy, writing them to the replay."""
    torch.set_num_threads(1)
    env, net, rng = gym.make("CartPole-v1"), q_network(), np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    chunk: dict[str, list] = {k: [] for k in ("obs", "action", "reward", "next_obs", "terminated")}
    total = 0.0
    for step in range(steps):
        if step % 400 == 0 and (weights := ray.get(parameters.fetch.remote())) is not None:
            net.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()})
        if rng.random() < epsilon:
            action = int(rng.integers(2))
        else:
            with torch.no_grad():
                action = int(net(torch.as_tensor(obs)).argmax())
        nxt, reward, terminated, truncated, _ = env.step(action)
        for key, value in zip(chunk, (obs, action, reward, nxt, terminated), strict=True):
            chunk[key].append(value)
        total += reward
        obs = nxt
        if terminated or truncated:
            parameters.report.remote(actor, total)
            obs, total = env.reset()[0], 0.0
        if len(chunk["obs"]) == 50:
            replay.extend({k: np.asarray(v, dtype=np.int64 if k == "action" else np.float32) for k, v in chunk.items()})
            chunk = {k: [] for k in chunk}
    replay.flush()
    return steps


def evaluate(net: nn.Module, episodes: int, seed: int) -> float:
    """Return the mean greedy return over ``episodes`` episodes."""
    env, returns = gym.make("CartPole-v1"), []
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + episode)
        done, total = False, 0.0
        while not done:
            with torch.no_grad():
                action = int(net(torch.as_tensor(obs)).argmax())
            obs, reward, terminated, truncated, _ = env.step(action)
            total, done = total + reward, terminated or truncated
        returns.append(total)
    return float(np.mean(returns))


def learn(replay, parameters, net: nn.Module, tasks: list, seed: int, evaluations: list[float]) -> int:
    """Train until every actor task is done; return the number of updates."""
    target = q_network()
    target.load_state_dict(net.state_dict())
    optimizer = torch.optim.Adam(net.parameters(), lr=5e-4)
    updates, pending = 0, list(tasks)
    while pending:
        _done, pending = ray.wait(pending, timeout=0)
        try:
            batch = replay.sample(64)  # waits (rate limiter) for 1,000 transitions, then ~8 samples per insert
        except RateLimiterTimeout:
            continue  # the actors are behind (or done: the loop ends)
        with torch.no_grad():
            best = net(batch["next_obs"]).argmax(1, keepdim=True)
            bootstrap = target(batch["next_obs"]).gather(1, best).squeeze(1)
            goal = batch["reward"] + 0.99 * (1.0 - batch["terminated"]) * bootstrap
        value = net(batch["obs"]).gather(1, batch["action"][:, None]).squeeze(1)
        td = goal - value
        loss = (batch.weights * td.pow(2)).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        replay.update_priorities(batch, td.abs().detach())
        updates += 1
        if updates % 250 == 0:
            target.load_state_dict(net.state_dict())
            parameters.publish.remote({k: v.detach().numpy().copy() for k, v in net.state_dict().items()})
        if updates % 1000 == 0:
            evaluations.append(evaluate(net, 3, seed + updates))
            print(f"  {updates:6d} updates  replay {replay.stats()['size']:6d}  greedy return {evaluations[-1]:6.1f}")
    return updates


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Run Ape-X and print the returns; return the figures (first and last evaluations, replay stats)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--actors", type=int, default=2)
    parser.add_argument("--steps", type=int, default=12_000, help="environment steps per actor")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true", help="a few hundred steps (CI)")
    args = parser.parse_args(argv)
    steps = 300 if args.smoke else args.steps
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    limiter = SampleToInsertRatio(samples_per_insert=8.0, min_size_to_sample=200 if args.smoke else 1000,
                                  error_buffer=4000.0)  # fmt: skip
    replay = RayReplay(
        functools.partial(TransitionBuffer, 50_000, sampler="prioritized", seed=args.seed),
        num_shards=2, routing="by_writer", rate_limiter=limiter, seed=args.seed,
        options=ClientOptions(prefetch=1, batches_per_call=4, rate_limit_timeout=5.0),
    )  # fmt: skip
    try:
        net, parameters = q_network(), Parameters.remote()
        parameters.publish.remote({k: v.detach().numpy().copy() for k, v in net.state_dict().items()})
        untrained = evaluate(net, 3, args.seed)
        writer_options = ClientOptions(write_batch=200, rate_limit_timeout=120.0)  # actors wait for the learner
        epsilons = [0.4 ** (1 + 7 * i / max(1, args.actors - 1)) for i in range(args.actors)]
        tasks = [
            act.remote(replay.client(i, writer_options), parameters, i, eps, steps, args.seed + 100 * i)
            for i, eps in enumerate(epsilons)
        ]
        print(f"Ape-X: {args.actors} actors x {steps} steps into 2 prioritized shards; untrained {untrained:.1f}")
        evaluations: list[float] = []
        started_at = time.monotonic()
        updates = learn(replay, parameters, net, tasks, args.seed, evaluations)
        final = evaluate(net, 5, args.seed + 10_000)
        stats = replay.stats()
        print(f"xreplay RayReplay: {updates} updates in {time.monotonic() - started_at:.1f} s, replay {stats['size']}, "
              f"limiter {stats['rate_limiter']}; greedy return {untrained:.1f} -> {final:.1f}")  # fmt: skip
        history = ray.get(parameters.history.remote())
        if len(history) >= 20:
            values = [r for _t, _a, r in sorted(history)]
            print(f"actors' episode returns: first 10 {np.mean(values[:10]):.1f}, last 10 {np.mean(values[-10:]):.1f}")
        return {"untrained": untrained, "final": final, "updates": float(updates), "size": float(stats["size"])}
    finally:
        replay.shutdown()
        if started:
            ray.shutdown()


if __name__ == "__main__":
    main()
