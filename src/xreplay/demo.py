"""The seed scenario end to end: QMIX-shaped episodes of SMAC MarineMicro_MvsM_4 through the PyMARL API.

Synthetic episodes with the map's shapes (4 agents, 10 actions, obs 40,
state 68, episode limit 60) are written step by step as PyMARL's
EpisodeRunner does, inserted into a ``ReplayBuffer`` of 5000 episodes, and
sampled as QMIX's learner reads them.
"""

from __future__ import annotations

import dataclasses
import resource
import time
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch

from xreplay.compat.pymarl import EpisodeBatch, OneHot, ReplayBuffer

__all__ = ["DemoReport", "marine_micro_scheme", "run_demo"]

N_AGENTS, N_ACTIONS, OBS, STATE, LIMIT = 4, 10, 40, 68, 60


def marine_micro_scheme() -> tuple[dict[str, Any], dict[str, int], dict[str, Any]]:
    """Return PyMARL's (scheme, groups, preprocess) for QMIX on MarineMicro_MvsM_4."""
    scheme = {
        "state": {"vshape": STATE},
        "obs": {"vshape": OBS, "group": "agents"},
        "actions": {"vshape": (1,), "group": "agents", "dtype": torch.long},
        "avail_actions": {"vshape": (N_ACTIONS,), "group": "agents", "dtype": torch.int},
        "reward": {"vshape": (1,)},
        "terminated": {"vshape": (1,), "dtype": torch.uint8},
    }
    groups = {"agents": N_AGENTS}
    preprocess = {"actions": ("actions_onehot", [OneHot(out_dim=N_ACTIONS)])}
    return scheme, groups, preprocess


def run_episode(new_batch: Callable[[], EpisodeBatch], rng: np.random.Generator) -> EpisodeBatch:
    """Write one synthetic episode step by step, as PyMARL's EpisodeRunner does."""
    batch = new_batch()
    length = int(rng.integers(20, LIMIT + 1))
    for t in range(length + 1):
        avail = (rng.random((N_AGENTS, N_ACTIONS)) < 0.7).astype(np.int64)
        avail[:, 0] = 1
        pre = {
            "state": [rng.standard_normal(STATE)],
            "avail_actions": [avail],
            "obs": [rng.standard_normal((N_AGENTS, OBS))],
        }
        actions = torch.from_numpy(rng.integers(0, N_ACTIONS, (1, N_AGENTS)))
        if t == length:  # the bootstrap step: observation and action only
            batch.update(pre, ts=t)
            batch.update({"actions": actions}, ts=t)
            break
        batch.update(pre, ts=t)
        terminated = t == length - 1 and length < LIMIT
        batch.update(
            {"actions": actions, "reward": [(float(rng.standard_normal()),)], "terminated": [(terminated,)]}, ts=t
        )
    return batch


def learner_step(batch: EpisodeBatch) -> float:
    """Read a sample as QMIX's learner does and return a masked TD-like statistic."""
    rewards = batch["reward"][:, :-1]
    actions = batch["actions"][:, :-1]
    terminated = batch["terminated"][:, :-1].float()
    mask = batch["filled"][:, :-1].float()
    mask[:, 1:] = mask[:, 1:] * (1 - terminated[:, :-1])
    q = torch.stack([batch["obs"][:, t].sum(-1) for t in range(batch.max_seq_length)], dim=1)
    chosen = torch.gather(q[:, :-1].unsqueeze(-1).expand(-1, -1, -1, N_ACTIONS), 3, actions).squeeze(3)
    onehot_used = batch["actions_onehot"][:, : batch.max_seq_length - 1].sum()
    td = (chosen.sum(-1, keepdim=True) - rewards) * mask
    return float((td**2).sum() / mask.sum().clamp(min=1)) + 0.0 * float(onehot_used)


def _rss_mib() -> float:
    """Return the current resident set size of this process in MiB."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20


@dataclasses.dataclass
class DemoReport:
    """Throughput and memory figures of one demo run."""

    episodes: int
    steps: int
    collect_s: float
    insert_eps_per_s: float
    samples: int
    sample_per_s: float
    storage_mib: float
    rss_growth_mib: float
    loss: float


def run_demo(
    episodes: int = 400,
    buffer_size: int = 5000,
    samples: int = 200,
    batch_size: int = 32,
    compact: bool = False,
    seed: int = 0,
    progress: Callable[[Iterable[int], str], Iterable[int]] | None = None,
) -> DemoReport:
    """Fill a ReplayBuffer with runner-written episodes and sample it as the learner does."""
    progress = progress or (lambda it, _desc: it)
    torch.manual_seed(seed)
    np.random.seed(seed)
    rng = np.random.default_rng(seed)
    scheme, groups, preprocess = marine_micro_scheme()
    rss0 = _rss_mib()
    buffer = ReplayBuffer(scheme, groups, buffer_size, LIMIT + 1, preprocess=preprocess, compact=compact)

    def new_batch() -> EpisodeBatch:
        return EpisodeBatch(scheme, groups, 1, LIMIT + 1, preprocess=preprocess)

    steps, collect, insert = 0, 0.0, 0.0
    for _ in progress(range(episodes), "collect + insert"):
        t0 = time.perf_counter()
        ep = run_episode(new_batch, rng)
        t1 = time.perf_counter()
        buffer.insert_episode_batch(ep)
        insert += time.perf_counter() - t1
        collect += t1 - t0
        steps += int(ep.max_t_filled())
    loss, sampled, sample_s = 0.0, 0, 0.0
    for _ in progress(range(samples), "sample + learn"):
        if not buffer.can_sample(batch_size):
            break
        t0 = time.perf_counter()
        batch = buffer.sample(batch_size)
        max_t = batch.max_t_filled()
        batch = batch[:, :max_t]
        if batch.device != "cpu":
            batch.to("cpu")
        sample_s += time.perf_counter() - t0
        loss = learner_step(batch)
        sampled += 1
    assert buffer._storage is not None
    return DemoReport(
        episodes=episodes,
        steps=steps,
        collect_s=collect,
        insert_eps_per_s=episodes / insert if insert else float("inf"),
        samples=sampled,
        sample_per_s=sampled / sample_s if sample_s else 0.0,
        storage_mib=buffer._storage.nbytes / 2**20,
        rss_growth_mib=_rss_mib() - rss0,
        loss=loss,
    )
