"""Exact sampling across shards: per-shard counts, placement in the batch, importance weights, assembly.

One buffer holding every item draws item ``i`` with probability
``m_i / M`` (``m_i = priority ** alpha``, or 1 when uniform; ``M`` their
sum). Sharded, the client draws how many of a batch's ``n`` items each shard
gives, ``counts ~ Multinomial(n, M_s / M)`` with ``M_s`` the shard's mass, and
shard ``s`` draws its ``counts[s]`` items from ``m_i / M_s``. Each of the
``n`` items then comes from shard ``s`` and item ``i`` with probability
``M_s / M * m_i / M_s = m_i / M``, independently: the same distribution.
Without replacement (episodes), the counts follow the multivariate
hypergeometric distribution over the shards' sizes, and each shard draws its
share without replacement: again the distribution of one buffer.

The items are then put at random positions of the batch (a permutation per
batch), so the batch's order is that of ``n`` independent draws too. The
importance weight of item ``i`` is ``(min_m / m_i) ** beta`` with ``min_m``
the smallest positive mass over every shard, computed exactly as the local
sampler computes it, so equal priorities give bit-identical weights.

Example:
    >>> rng = np.random.default_rng(0)
    >>> counts = draw_counts(rng, np.array([1.0, 3.0, 0.0]), n=4, batches=2, replace=True)
    >>> counts.shape, counts.sum(axis=1).tolist(), counts[:, 2].tolist()
    ((2, 3), [4, 4], [0, 0])
    >>> [t.tolist() for t in placement(rng, np.array([[2, 1], [0, 3]]), n=3)]  # shard 0's rows, shard 1's
    [[1, 2], [0, 3, 5, 4]]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from xreplay.buffers.episodes import EpisodeSample
from xreplay.buffers.transitions import TransitionSample
from xreplay.distributed.protocol import ShardDraw, ShardInfo, encode_indices
from xreplay.errors import InsufficientDataError

__all__ = ["Batches", "assemble", "draw_counts", "importance_weights", "placement"]


def draw_counts(rng: np.random.Generator, masses: np.ndarray, n: int, batches: int, replace: bool) -> np.ndarray:
    """Return ``[batches, shards]`` per-shard item counts, each row summing to ``n``.

    Args:
        rng: The client's generator.
        masses: Sampling mass of each shard (0 for a shard that is down or empty); with
            ``replace=False`` the shards' sizes (integers).
        n: Items per batch.
        batches: Batches drawn at once.
        replace: Multinomial counts (with replacement) or multivariate hypergeometric ones (without).

    Raises:
        InsufficientDataError: Nothing can be drawn, or ``n`` exceeds the items held without replacement.
    """
    masses = np.asarray(masses, dtype=np.float64)
    total = float(masses.sum())
    if replace:
        if not total > 0.0:
            if n == 0:
                return np.zeros((batches, masses.shape[0]), dtype=np.int64)
            raise InsufficientDataError(f"cannot sample {n} items: the live shards hold no sampling mass ({masses})")
        return rng.multinomial(n, masses / total, size=batches)
    sizes = masses.astype(np.int64)
    if n > sizes.sum():
        raise InsufficientDataError(
            f"sample size {n} exceeds the {int(sizes.sum())} items held by the live shards; lower it"
        )
    return rng.multivariate_hypergeometric(sizes, n, size=batches)


def placement(rng: np.random.Generator, counts: np.ndarray, n: int) -> list[np.ndarray]:
    """Return, for each shard, the positions (in ``[0, batches * n)``) of its rows, batch after batch.

    Shard ``s`` sends ``counts[:, s].sum()`` rows, the first ``counts[0, s]`` for batch 0 and so
    on; the positions spread each batch's rows over a random permutation of that batch. When one
    shard sends every row they keep its order (already that of independent draws).
    """
    batches, shards = counts.shape
    totals = counts.sum(axis=0)
    if np.count_nonzero(totals) <= 1:  # one shard gives every row, already in random order: keep it
        return [np.arange(batches * n) if total else np.zeros(0, np.int64) for total in totals]
    if batches == 1:  # the shards' rows are already in random order: one permutation of the batch places them
        return np.split(rng.permutation(n), np.cumsum(counts[0, :-1]))
    owner = np.repeat(np.tile(np.arange(shards), batches), counts.reshape(-1))  # batch-major: who fills each place
    order = rng.permuted(np.tile(np.arange(n, dtype=np.int64), (batches, 1)), axis=1)  # a permutation per batch
    order += (np.arange(batches, dtype=np.int64) * n)[:, None]  # batch j occupies [j * n, (j + 1) * n)
    by_shard = order.reshape(-1)[np.argsort(owner, kind="stable")]  # stable: batch order kept within a shard
    return np.split(by_shard, np.cumsum(counts.sum(axis=0))[:-1])


def importance_weights(leaves: np.ndarray, min_leaf: float, beta: float) -> np.ndarray:
    """Return ``(min_leaf / leaves) ** beta`` as float32, computed as the local sampler computes it."""
    weights = min_leaf / leaves
    weights **= beta
    return weights.astype(np.float32)


def _scatter(parts: dict[int, Any], targets: dict[int, np.ndarray], rows: int) -> np.ndarray:
    """Return one array of ``rows`` rows holding each shard's ``parts[s]`` at its target positions."""
    first = next(part for s, part in parts.items() if targets[s].size)
    if first.shape[0] == rows:  # one shard gives every row, in order (see placement): one plain copy
        return np.array(first)
    out = np.empty((rows, *first.shape[1:]), dtype=first.dtype)
    for s, part in parts.items():
        if targets[s].size:
            out[targets[s]] = part
    return out


def assemble(
    info: ShardInfo,
    draws: dict[int, ShardDraw],
    targets: dict[int, np.ndarray],
    n: int,
    batches: int,
    first_step: int,
    min_leaf: float,
    truncate: bool,
    device: torch.device,
) -> Batches:
    """Return the ``batches`` samples of a request from the shards' draws.

    Every field is scattered once into one array for the whole request (one copy per field and
    shard) and wrapped as one tensor (moved to ``device`` once); the batches are slices of it.

    Args:
        info: The shards' description.
        draws: Shard -> its draw (shards asked for nothing may be missing).
        targets: Shard -> positions of its rows (:func:`placement`).
        n: Items per batch.
        batches: Batches in the request.
        first_step: Beta-schedule step of the first batch.
        min_leaf: Smallest positive mass over every shard (prioritized).
        truncate: Cut episode batches to their longest episode.
        device: Where the tensors go.
    """
    rows = n * batches
    names = next((list(d.fields) for s, d in draws.items() if targets[s].size), [])
    arrays = {name: _scatter({s: d.fields.get(name) for s, d in draws.items()}, targets, rows) for name in names}
    index = np.empty(rows, dtype=np.int64)
    for s, draw in draws.items():
        if targets[s].size:
            index[targets[s]] = encode_indices(s, draw.state.epoch, draw.slots)
    tensors = {name: _tensor(array, device) for name, array in arrays.items()}  # one conversion per request
    if info.kind == "episodes":
        lengths = _scatter({s: d.lengths for s, d in draws.items()}, targets, rows) if rows else np.zeros(0, np.int32)
        index_tensor, length_tensor = _tensor(index, device), _tensor(lengths, device)
        return Batches(
            lambda part: _episodes(info, tensors, index_tensor, length_tensor, part, truncate, device), n, batches
        )
    generations = weights = None
    if info.prioritized and rows:
        generations = _scatter({s: d.generations for s, d in draws.items()}, targets, rows)
        leaves = _scatter({s: d.leaves for s, d in draws.items()}, targets, rows)
        weights = np.empty(rows, dtype=np.float32)
        for j in range(batches):  # one beta per batch, as the local sampler steps it
            part = slice(j * n, (j + 1) * n)
            weights[part] = importance_weights(leaves[part], min_leaf, info.beta(first_step + j))
    weight_tensor = None if weights is None else _tensor(weights, device)

    def make(part: slice) -> TransitionSample:
        fields = {name: tensor[part] for name, tensor in tensors.items()}
        batch_weights = None if weight_tensor is None else weight_tensor[part]
        batch_generations = None if generations is None else generations[part]
        return TransitionSample(fields, index[part], batch_weights, batch_generations)

    return Batches(make, n, batches)


class Batches:
    """The batches of one request, each made when taken.

    Waiting batches are then a few slices of the request's arrays, not objects that live long
    enough to be promoted to Python's oldest garbage-collector generation (whose full collections
    cost a learner process with torch and Ray loaded tens of microseconds per batch).
    """

    def __init__(self, make: Callable[[slice], Any], n: int, count: int):
        """Hold ``make(rows)``, which returns the batch of those rows."""
        self._make, self._n, self._taken, self.count = make, n, 0, count

    def __len__(self) -> int:
        """Return the batches not taken yet."""
        return self.count - self._taken

    def take(self) -> Any:
        """Return the next batch."""
        start = self._taken * self._n
        self._taken += 1
        return self._make(slice(start, start + self._n))


def _episodes(
    info: ShardInfo,
    tensors: dict[str, torch.Tensor],
    index: torch.Tensor,
    lengths: torch.Tensor,
    part: slice,
    truncate: bool,
    device: torch.device,
) -> EpisodeSample:
    """Return one batch of episodes, with ``filled`` recomputed from the lengths (as the local buffer does)."""
    batch_lengths = lengths[part]
    steps = int(batch_lengths.max()) if truncate and batch_lengths.numel() else info.max_seq_length
    per_step = set(info.per_step)
    fields = {name: t[part, :steps] if name in per_step else t[part] for name, t in tensors.items()}
    span = torch.arange(steps, device=device)
    fields["filled"] = (batch_lengths[:, None] > span).unsqueeze(-1)
    return EpisodeSample(fields, index[part], batch_lengths, steps)


def _tensor(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """Return a tensor sharing ``array``'s memory, moved to ``device`` when it is not the CPU."""
    tensor = torch.from_numpy(array)
    return tensor if device.type == "cpu" else tensor.to(device, non_blocking=True)
