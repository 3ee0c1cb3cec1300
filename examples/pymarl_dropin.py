"""The PyMARL drop-in: EpisodeBatch / ReplayBuffer / OneHot with the episode-runner write pattern, unchanged.

Only the import changes (``from components.episode_buffer import ...`` becomes
``from xreplay.compat.pymarl import ...``). The runner writes each step with
``update(..., ts=t)`` (pre-transition data, then actions/reward/terminated),
ends with the bootstrap step, and calls ``insert_episode_batch``; the learner
calls ``sample``, cuts to ``max_t_filled()`` and slices ``[:, :-1]`` as QMIX's
learner does. ``PrioritizedReplayBuffer`` is pymarl2's (``sample(n, t)``
returns ``(batch, idxes, weights)``). Sampling uses ``numpy.random`` (and
``random`` for the prioritized buffer) exactly as PyMARL does, so seeded runs
sample the same episodes.

    python examples/pymarl_dropin.py            # 3,000 episodes, 5,000-episode buffer
    python examples/pymarl_dropin.py --smoke    # seconds (CI)

Full run (2 cores shared with other jobs, load 4.4): 3,000 episodes inserted; sample(32) +
max_t_filled + slicing 443/s (uniform) and 123/s (prioritized, with update_priorities); beta reached
1.00, no stale update.
"""

import argparse
import random
import time

import numpy as np
import torch

from xreplay.compat.pymarl import EpisodeBatch, OneHot, PrioritizedReplayBuffer, ReplayBuffer

AGENTS, ACTIONS, OBS, STATE, LIMIT = 3, 5, 10, 16, 40


def run_episode(new_batch, rng):
    """Write one episode step by step, as PyMARL's EpisodeRunner does (random observations and actions)."""
    batch = new_batch()
    length = int(rng.integers(10, LIMIT + 1))
    for t in range(length):
        pre = {
            "state": [rng.standard_normal(STATE)],
            "avail_actions": [np.ones((AGENTS, ACTIONS))],
            "obs": [rng.standard_normal((AGENTS, OBS))],
        }
        batch.update(pre, ts=t)
        actions = torch.from_numpy(rng.integers(0, ACTIONS, (1, AGENTS)))
        terminated = t == length - 1 and length < LIMIT  # a time-out is not a termination
        batch.update({"actions": actions, "reward": [(float(rng.random()),)], "terminated": [(terminated,)]}, ts=t)
    last = {
        "state": [rng.standard_normal(STATE)],
        "avail_actions": [np.ones((AGENTS, ACTIONS))],
        "obs": [rng.standard_normal((AGENTS, OBS))],
    }
    batch.update(last, ts=length)
    batch.update({"actions": torch.from_numpy(rng.integers(0, ACTIONS, (1, AGENTS)))}, ts=length)
    return batch


def learner_reads(batch):
    """Read a sample as QMIX's learner does; return the masked mean reward (a stand-in for the TD loss)."""
    max_t = batch.max_t_filled()
    batch = batch[:, :max_t]
    rewards = batch["reward"][:, :-1]
    terminated = batch["terminated"][:, :-1].float()
    mask = batch["filled"][:, :-1].float()
    mask[:, 1:] = mask[:, 1:] * (1 - terminated[:, :-1])
    assert batch["actions_onehot"].shape[-1] == ACTIONS
    return (rewards * mask).sum() / mask.sum(), mask


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes for CI")
    args = parser.parse_args(argv)
    episodes, size, samples = (40, 32, 20) if args.smoke else (3_000, 5_000, 1_000)
    np.random.seed(0)
    random.seed(0)
    rng = np.random.default_rng(0)
    scheme = {
        "state": {"vshape": STATE},
        "obs": {"vshape": OBS, "group": "agents"},
        "actions": {"vshape": (1,), "group": "agents", "dtype": torch.long},
        "avail_actions": {"vshape": (ACTIONS,), "group": "agents", "dtype": torch.int},
        "reward": {"vshape": (1,)},
        "terminated": {"vshape": (1,), "dtype": torch.uint8},
    }
    groups = {"agents": AGENTS}
    preprocess = {"actions": ("actions_onehot", [OneHot(out_dim=ACTIONS)])}

    def new_batch():
        return EpisodeBatch(scheme, groups, 1, LIMIT + 1, preprocess=preprocess)

    uniform = ReplayBuffer(scheme, groups, size, LIMIT + 1, preprocess=preprocess)
    prioritized = PrioritizedReplayBuffer(
        scheme, groups, size, LIMIT + 1, alpha=0.6, beta=0.4, t_max=samples, preprocess=preprocess
    )
    for _ in range(episodes):
        episode = run_episode(new_batch, rng)
        uniform.insert_episode_batch(episode)
        prioritized.insert_episode_batch(episode)

    start = time.perf_counter()
    for _ in range(samples):
        value, _mask = learner_reads(uniform.sample(32))
    uniform_rate = samples / (time.perf_counter() - start)
    start = time.perf_counter()
    for t in range(samples):
        batch, idxes, weights = prioritized.sample(32, t)
        value, mask = learner_reads(batch)
        prioritized.update_priorities(idxes, mask.sum(dim=(1, 2)).numpy() + 1e-6)  # e.g. |TD| per episode
    prioritized_rate = samples / (time.perf_counter() - start)
    print(f"{uniform.episodes_in_buffer} episodes stored; last masked mean reward {float(value):.3f}")
    print(f"sample(32) + max_t_filled + slicing: {uniform_rate:,.0f}/s uniform, {prioritized_rate:,.0f}/s prioritized")
    print(f"prioritized: beta {prioritized.beta:.2f}, stale updates skipped {prioritized.stale_updates}")


if __name__ == "__main__":
    main()
