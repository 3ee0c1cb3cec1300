"""Ape-X on one machine: CartPole actor processes feed a shared prioritized buffer, one DQN learner samples it.

* ``--actors`` processes (``torch.multiprocessing``, spawn by default) each run a
  gymnasium CartPole with an epsilon-greedy copy of the Q-network; actor ``i``
  explores with Ape-X's ``epsilon_i = 0.4 ** (1 + 7 i / (N - 1))``. Every 32
  steps an actor computes the absolute TD errors of its steps with its copy of
  the network and writes them, with those errors as initial priorities, through
  its :class:`~xreplay.shared.SharedTransitionWriter`.
* The learner (this process) owns the :class:`~xreplay.shared.SharedTransitionBuffer`
  and its priority tree: double DQN on batches of 64 drawn by priority, new
  priorities from the TD errors, the network's weights published to the actors
  every 50 updates (shared tensors, taken under a lock).
* A shared :class:`~xreplay.rate_limiters.SampleToInsertRatio` keeps each
  transition sampled about ``--samples-per-insert`` times: when the learner
  falls behind, actors wait; when actors fall behind, the learner waits.

It prints actor steps/s, learner updates/s and the mean return of the last 20
episodes of the actor that explores least (and of all actors) as it rises.

    python examples/apex_cartpole.py                       # 2 actors, 90 seconds
    python examples/apex_cartpole.py --actors 4 --seconds 300
    python examples/apex_cartpole.py --smoke               # seconds (CI)

One run (2 actors, spawn, shared 2-core CPU; CartPole-v1's limit is 500):

     10 s  actor steps/s   27637  learner updates/s    858  return (last 20)  351.2 (all actors 255.8)
     20 s  actor steps/s   29662  learner updates/s    927  return (last 20)  500.0 (all actors 308.3)
     40 s  actor steps/s   28778  learner updates/s    899  return (last 20)  500.0 (all actors 304.6)
     60 s  actor steps/s   29832  learner updates/s    933  return (last 20)  229.0 (all actors 133.1)
     80 s  actor steps/s   29148  learner updates/s    910  return (last 20)  500.0 (all actors 277.0)

The learner draws 64 transitions per update, so 2 samples per insert hold updates/s at
2 x steps/s / 64; this untuned DQN reaches the limit and then oscillates, as DQN does on CartPole.
"""

from __future__ import annotations

import argparse
import queue
import time
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.multiprocessing as tmp
from torch import nn

from xreplay.rate_limiters import SampleToInsertRatio
from xreplay.samplers import LinearSchedule, PrioritizedSampler
from xreplay.shared import SharedTransitionBuffer

GAMMA = 0.99
CHUNK = 32  # actor steps per write
FIELDS = {
    "obs": ((4,), torch.float32),
    "action": ((), torch.int64),
    "reward": ((), torch.float32),
    "next_obs": ((4,), torch.float32),
    "terminated": ((), torch.bool),
}


def q_network() -> nn.Module:
    """Return the Q-network: 4 observations in, 2 action values out."""
    return nn.Sequential(nn.Linear(4, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 2))


def td_errors(net: nn.Module, target: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Return double-DQN TD errors of ``batch`` (the online net picks the next action, the target values it)."""
    with torch.no_grad():
        best = net(batch["next_obs"]).argmax(1, keepdim=True)
        value = target(batch["next_obs"]).gather(1, best).squeeze(1)
        goal = batch["reward"] + GAMMA * (~batch["terminated"]).float() * value  # truncation still bootstraps
    return goal - net(batch["obs"]).gather(1, batch["action"][:, None]).squeeze(1)


def actor(index: int, actors: int, writer: Any, weights: list[torch.Tensor], lock: Any, version: Any,
          stop: Any, steps: Any, returns: Any, seed: int) -> None:
    """Play CartPole epsilon-greedily and write 32-step chunks with their TD errors as initial priorities."""
    torch.set_num_threads(1)
    epsilon = 0.4 ** (1 + 7 * index / max(1, actors - 1))
    rng = np.random.default_rng(seed + index)
    env = gym.make("CartPole-v1")
    net = q_network()
    seen = -1
    obs, _ = env.reset(seed=seed + index)
    total, chunk = 0.0, {name: [] for name in FIELDS}
    while not stop.value:
        if version.value != seen:  # the learner published new weights
            with lock:
                seen = version.value
                for param, shared in zip(net.parameters(), weights, strict=True):
                    param.data.copy_(shared)
        for _ in range(CHUNK):
            if rng.random() < epsilon:
                action = int(rng.integers(2))
            else:
                with torch.no_grad():
                    action = int(net(torch.as_tensor(obs)[None]).argmax())
            nxt, reward, terminated, truncated, _ = env.step(action)
            for name, value in (("obs", obs), ("action", action), ("reward", reward), ("next_obs", nxt),
                                ("terminated", terminated)):
                chunk[name].append(value)
            total += reward
            obs = nxt
            if terminated or truncated:
                returns.put((index, total))
                obs, total = env.reset()[0], 0.0
        batch = {name: torch.as_tensor(np.array(values)) for name, values in chunk.items()}
        batch["obs"], batch["next_obs"] = batch["obs"].float(), batch["next_obs"].float()
        batch["reward"] = batch["reward"].float()
        with torch.no_grad():
            priorities = td_errors(net, net, batch).abs().numpy() + 1e-3
        try:
            writer.extend({name: value.numpy() for name, value in batch.items()}, priorities=priorities, timeout=2.0)
        except TimeoutError:
            pass  # the learner is busy (or stopping): drop these steps, check the stop flag
        except RuntimeError:
            break  # the buffer was closed
        steps[index] += CHUNK
        chunk = {name: [] for name in FIELDS}
    writer.close()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run actors and the learner; print progress; return the measured rates and the returns curve."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--actors", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=90.0)
    parser.add_argument("--samples-per-insert", type=float, default=2.0)
    parser.add_argument("--lr", type=float, default=2.5e-4)
    parser.add_argument("--target-every", type=int, default=250, help="learner updates between target copies")
    parser.add_argument("--capacity", type=int, default=100_000)
    parser.add_argument("--start-method", default="spawn", choices=["spawn", "fork", "forkserver"])
    parser.add_argument("--report", type=float, default=10.0, help="seconds between progress lines")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true", help="a few seconds (CI)")
    args = parser.parse_args(argv)
    min_size = 1000
    if args.smoke:
        args.seconds, args.report, min_size = 4.0, 1.0, 200
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    ctx = tmp.get_context(args.start_method)
    batch_size = 64
    error_buffer = max(2000.0, 8 * CHUNK * args.samples_per_insert)  # room for a few chunks from every actor
    limiter = SampleToInsertRatio(args.samples_per_insert, min_size, error_buffer, shared=True, context=ctx)
    sampler = PrioritizedSampler(args.capacity, alpha=0.6, beta=LinearSchedule(0.4, 1.0, 20_000))
    buf = SharedTransitionBuffer(args.capacity, FIELDS, sampler=sampler, seed=args.seed, rate_limiter=limiter)
    net, target = q_network(), q_network()
    target.load_state_dict(net.state_dict())
    optimizer = torch.optim.Adam(net.parameters(), lr=args.lr)
    weights = [param.detach().clone().share_memory_() for param in net.parameters()]
    lock, version, stop = ctx.Lock(), ctx.Value("q", 0, lock=False), ctx.Value("i", 0, lock=False)
    steps, returns = ctx.Array("q", args.actors, lock=False), ctx.Queue()
    procs = [
        ctx.Process(target=actor, args=(i, args.actors, buf.writer(), weights, lock, version, stop, steps, returns,
                                        args.seed), daemon=True)
        for i in range(args.actors)
    ]
    for p in procs:
        p.start()
    print(f"{args.actors} actors ({args.start_method}), epsilons "
          + ", ".join(f"{0.4 ** (1 + 7 * i / max(1, args.actors - 1)):.3g}" for i in range(args.actors))
          + f"; samples per insert {args.samples_per_insert}; segment {buf.path}")
    start = last = time.monotonic()
    updates = last_updates = last_steps = 0
    recent: dict[int, list[float]] = {i: [] for i in range(args.actors)}
    greedy = args.actors - 1  # the actor that explores least: its returns show what the policy does
    curve: list[tuple[float, float, float, float]] = []
    try:
        while time.monotonic() - start < args.seconds:
            batch = buf.try_sample(batch_size) if len(buf) >= min_size else None
            if batch is not None:
                errors = td_errors(net, target, batch)
                loss = (batch.weights * nn.functional.smooth_l1_loss(errors, torch.zeros_like(errors),
                                                                     reduction="none")).mean()
                optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(net.parameters(), 10.0)
                optimizer.step()
                buf.update_priorities(batch, errors.detach().abs().numpy() + 1e-3)
                updates += 1
                if updates % 50 == 0:
                    with lock:
                        for param, shared in zip(net.parameters(), weights, strict=True):
                            shared.copy_(param.detach())
                        version.value += 1
                if updates % args.target_every == 0:
                    target.load_state_dict(net.state_dict())
            else:
                time.sleep(0.001)  # the limiter wants more inserts first
            while True:
                try:
                    who, value = returns.get_nowait()
                except queue.Empty:
                    break
                recent[who] = (recent[who] + [value])[-20:]
            now = time.monotonic()
            if now - last >= args.report:
                failed = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
                if failed:
                    raise RuntimeError(f"actor processes exited with {failed}")
                total_steps = int(sum(steps))
                rates = ((total_steps - last_steps) / (now - last), (updates - last_updates) / (now - last))
                mean = float(np.mean(recent[greedy])) if recent[greedy] else float("nan")
                everyone = [r for values in recent.values() for r in values]
                curve.append((now - start, rates[0], rates[1], mean))
                overall = float(np.mean(everyone)) if everyone else float("nan")
                print(f"{now - start:6.0f} s  actor steps/s {rates[0]:7.0f}  learner updates/s {rates[1]:6.0f}  "
                      f"return (last 20) {mean:6.1f} (all actors {overall:5.1f})  buffer {len(buf):6d}")
                last, last_steps, last_updates = now, total_steps, updates
    finally:
        stop.value = 1
        buf.close()  # wakes actors waiting on the limiter
        deadline = time.monotonic() + 10
        while any(p.is_alive() for p in procs) and time.monotonic() < deadline:
            try:  # actors flush their queued returns before they can exit
                returns.get(timeout=0.05)
            except queue.Empty:
                pass
        for p in procs:
            if p.is_alive():
                p.terminate()
            p.join()
    return {"updates": updates, "actor_steps": int(sum(steps)), "curve": curve, "returns": recent[greedy]}


if __name__ == "__main__":
    main()
