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
    >>> index = gather_index(rng, np.array([[2, 1], [0, 3]]), n=3)  # rows 0-1: shard 0's, rows 2-5: shard 1's
    >>> sorted(index[:3].tolist()), sorted(index[3:].tolist())
    ([0, 1, 2], [3, 4, 5])
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from xreplay.buffers.episodes import EpisodeSample
from xreplay.buffers.transitions import TransitionSample
from xreplay.distributed.packing import BlockPool, merge, unpack
from xreplay.distributed.packing import rows as packed_rows
from xreplay.distributed.protocol import ShardDraw, ShardInfo
from xreplay.errors import InsufficientDataError

_Arrays = dict[str, np.ndarray]

__all__ = ["Batches", "assemble", "draw_counts", "gather_index", "importance_weights"]

_SMALLEST_WEIGHT = np.float32(np.finfo(np.float32).tiny)  # the local sampler's floor for weights


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
        if np.count_nonzero(masses) == 1:  # one shard can give anything: its count is n, nothing to draw
            return _all_from(masses, n, batches)
        return rng.multinomial(n, masses / total, size=batches)
    sizes = masses.astype(np.int64)
    if n > sizes.sum():
        raise InsufficientDataError(
            f"sample size {n} exceeds the {int(sizes.sum())} items held by the live shards; lower it"
        )
    if np.count_nonzero(sizes) == 1:
        return _all_from(sizes, n, batches)
    return rng.multivariate_hypergeometric(sizes, n, size=batches)


def _all_from(masses: np.ndarray, n: int, batches: int) -> np.ndarray:
    """Return the counts of requests whose every item comes from the one shard with mass."""
    if masses.shape[0] == 1:
        return np.full((batches, 1), n, dtype=np.int64)
    counts = np.zeros((batches, masses.shape[0]), dtype=np.int64)
    counts[:, int(masses.argmax())] = n  # the only positive mass (masses are >= 0)
    return counts


def gather_index(rng: np.random.Generator, counts: np.ndarray, n: int) -> np.ndarray | None:
    """Return which row fills each position of a request, or None when one shard sends every row.

    The rows are numbered as the shards send them, shard after shard, each shard's rows batch after
    batch (its first ``counts[0, s]`` for batch 0 and so on); position ``j * n + i`` of the request
    takes row ``index[j * n + i]``. Each batch's rows are spread over a random permutation of that
    batch. When one shard sends every row they keep its order (already that of independent draws).
    """
    batches, shards = counts.shape
    if shards == 1:  # one shard: its rows, in the order it drew them
        return None
    totals = counts.sum(axis=0)
    if np.count_nonzero(totals) <= 1:  # one shard gives every row, already in random order: keep it
        return None
    if batches == 1:  # shard after shard is the batch's order: one permutation of it places them
        return rng.permutation(n)
    first = np.cumsum(totals) - totals  # the first row of each shard
    earlier = np.cumsum(counts, axis=0) - counts  # [batches, shards]: the shard's rows for earlier batches
    within = np.cumsum(counts, axis=1) - counts  # [batches, shards]: where the shard's run starts in its batch
    source = np.repeat((first[None, :] + earlier - within).reshape(-1), counts.reshape(-1))
    source += np.tile(np.arange(n, dtype=np.int64), batches)  # batch-major, each batch shard after shard
    order = rng.permuted(np.tile(np.arange(n, dtype=np.int64), (batches, 1)), axis=1)  # a permutation per batch
    return np.take_along_axis(source.reshape(batches, n), order, axis=1).reshape(-1)


def importance_weights(leaves: np.ndarray, min_leaf: float, beta: float, total: float | None = None) -> np.ndarray:
    """Return ``(min_leaf / leaves) ** beta`` as float32, computed as the local sampler computes it.

    As there, no weight rounds to 0: those below float32's smallest normal value become it. A weight
    can only be that small when ``(min_leaf / total) ** beta`` is (``total``: the mass of every shard,
    at least each leaf's), which is when the local sampler clamps; without ``total`` every weight is clamped.
    """
    weights = min_leaf / leaves
    weights **= beta
    weights32 = weights.astype(np.float32)
    if total is None or (min_leaf / total) ** beta < _SMALLEST_WEIGHT:
        np.maximum(weights32, _SMALLEST_WEIGHT, out=weights32)
    return weights32


def _merged(sent: list[tuple[int, _Arrays, _Arrays]], index: np.ndarray,
            rows: int, pool: BlockPool | None) -> tuple[_Arrays, _Arrays]:  # fmt: skip
    """Return the fields and the metadata (``indices``: global, as the shards send them) in the request's order."""
    parts: dict[tuple[str, str], list[np.ndarray]] = {}
    for _s, fields, meta in sent:
        for name, array in fields.items():
            parts.setdefault(("field", name), []).append(array)
        for name, array in meta.items():
            parts.setdefault(("meta", name), []).append(array)
    merged = merge(parts, index, rows, pool)
    fields = {name: array for (kind, name), array in merged.items() if kind == "field"}
    return fields, {name: array for (kind, name), array in merged.items() if kind == "meta"}


def _unpacked(draws: dict[int, ShardDraw]) -> list[tuple[int, _Arrays, _Arrays]]:
    """Return ``(shard, fields, meta)`` of the shards that sent rows, in shard order (views of their replies)."""
    return [(s, *draws[s].unpack()) for s in sorted(draws) if packed_rows(draws[s].meta, "indices")]


def _one_shard(draws: dict[int, ShardDraw], pool: BlockPool | None) -> tuple[_Arrays, _Arrays]:
    """Return the fields and the metadata of a request whose rows all come from one shard, in its order.

    The shard's buffer is copied once (the arrays are then writable views of the copy, as tensors
    need): nothing is merged.
    """
    sent = [s for s in draws if packed_rows(draws[s].meta, "indices")]
    if not sent:
        return {}, {}
    draw = draws[sent[0]]
    data = draw.data
    copy = np.empty(data.nbytes, dtype=np.uint8) if pool is None else pool.take(data.nbytes)
    copy[:] = data
    return unpack(copy, draw.fields), unpack(copy, draw.meta)


def assemble(
    info: ShardInfo,
    draws: dict[int, ShardDraw],
    index: np.ndarray | None,
    n: int,
    batches: int,
    first_step: int,
    min_leaf: float,
    truncate: bool,
    device: torch.device,
    pool: BlockPool | None = None,
    total: float | None = None,
) -> Batches:
    """Return the ``batches`` samples of a request from the shards' draws.

    Every array is put in the request's order once (one copy of each shard's rows, into one block
    of memory for the request) and wrapped as one tensor (moved to ``device`` once); the batches are
    slices of it.

    Args:
        info: The shards' description.
        draws: Shard -> its draw (shards asked for nothing may be missing).
        index: Which row fills each position (:func:`gather_index`), or None: one shard sent every row.
        n: Items per batch.
        batches: Batches in the request.
        first_step: Beta-schedule step of the first batch.
        min_leaf: Smallest positive mass over every shard (prioritized).
        truncate: Cut episode batches to their longest episode.
        device: Where the tensors go.
        pool: Memory reused for the request's arrays (see :class:`~xreplay.distributed.packing.BlockPool`).
        total: The mass of every live shard (prioritized; see :func:`importance_weights`), or None.
    """
    rows = n * batches
    if index is None:
        arrays, meta = _one_shard(draws, pool)
    else:
        arrays, meta = _merged(_unpacked(draws), index, rows, pool)
    indices = meta.get("indices", np.zeros(0, np.int64))
    if device.type == "cpu":  # one conversion per request (sharing the arrays' memory)
        tensors = {name: torch.from_numpy(array) for name, array in arrays.items()}
    else:
        tensors = {name: _tensor(array, device) for name, array in arrays.items()}
    if info.kind == "episodes":
        lengths = meta.get("lengths", np.zeros(0, np.int32))
        index_tensor, length_tensor = _tensor(indices, device), _tensor(lengths, device)
        return Batches(
            lambda part: _episodes(info, tensors, index_tensor, length_tensor, part, truncate, device), n, batches
        )
    generations = weights = None
    if info.prioritized and rows:
        generations, leaves = meta["generations"], meta["leaves"]
        betas = [info.beta(first_step + j) for j in range(batches)] if batches > 1 else [info.beta(first_step)]
        if batches == 1 or all(beta == betas[0] for beta in betas):  # the same operations on every row: one pass
            weights = importance_weights(leaves, min_leaf, betas[0], total)
        else:
            weights = np.empty(rows, dtype=np.float32)
            for j, beta in enumerate(betas):  # one beta per batch, as the local sampler steps it
                part = slice(j * n, (j + 1) * n)
                weights[part] = importance_weights(leaves[part], min_leaf, beta, total)
    weight_tensor = None if weights is None else _tensor(weights, device)

    def make(part: slice) -> TransitionSample:
        if batches == 1:  # the request is the batch: no slices
            return TransitionSample(tensors, indices, weight_tensor, generations)
        fields = {name: tensor[part] for name, tensor in tensors.items()}
        batch_weights = None if weight_tensor is None else weight_tensor[part]
        batch_generations = None if generations is None else generations[part]
        return TransitionSample(fields, indices[part], batch_weights, batch_generations)

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
