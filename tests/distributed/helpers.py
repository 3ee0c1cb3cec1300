"""Shared pieces of the distributed tests: a chi-square p-value, transition data, item bookkeeping."""

import numpy as np
import torch

from xreplay.distributed.protocol import decode_indices


def chi_square_p(observed: np.ndarray, expected_probabilities: np.ndarray) -> float:
    """Return the p-value of Pearson's chi-square test of ``observed`` counts against the probabilities."""
    total = observed.sum()
    expected = expected_probabilities * total
    statistic = float(((observed - expected) ** 2 / expected).sum())
    dof = observed.shape[0] - 1
    return float(torch.special.gammaincc(torch.tensor(dof / 2, dtype=torch.float64), torch.tensor(statistic / 2)))


def transitions(n: int, start: int = 0) -> dict[str, np.ndarray]:
    """Return ``n`` transitions whose ``item`` field numbers them from ``start`` (S2-like other fields)."""
    item = np.arange(start, start + n, dtype=np.int64)
    return {
        "item": item,
        "obs": np.repeat(item[:, None].astype(np.float32), 3, axis=1),
        "info": {"rew": item.astype(np.float32) / 10},
    }


def shards_of(indices: np.ndarray) -> np.ndarray:
    """Return the shard of each global index."""
    return decode_indices(indices)[0]
