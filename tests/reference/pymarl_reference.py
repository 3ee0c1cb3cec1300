"""A small, deliberately naive reference model of PyMARL's episode storage.

Written from ``/work/shared/specs/pymarl-buffer-spec.md`` (not from PyMARL's code): every
field is a plain torch tensor in one of two plain dicts, every operation is done the
straightforward way. It follows the upstream behaviour except where
``xreplay.compat.pymarl`` documents a fix, in which case it follows the fix:

* ``update`` (and ``insert_episode_batch``) is atomic: the reference snapshots every
  tensor, runs the upstream key-by-key algorithm, and restores the snapshot in place if
  anything raises (upstream leaves earlier keys and ``filled`` written).
* ``insert_episode_batch`` wraps with a loop instead of recursion (same rows/indices).
* unknown string keys raise ``ValueError`` (upstream: with an empty message).
* ``sample`` raises ``AssertionError`` naming both numbers (upstream: bare assert).
* ``extend`` is not modelled (upstream always raises ``TypeError``; ours works).

Nothing here is fast; it is meant to be obviously right.
"""

from __future__ import annotations

import warnings
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

__all__ = ["RefEpisodeBatch", "RefOneHot", "RefReplayBuffer", "parse", "num_items", "safe_view_check"]


class RefOneHot:
    """One-hot over the last dim into ``out_dim`` classes; float32 result; multi-hot if last dim > 1."""

    def __init__(self, out_dim: int):
        self.out_dim = out_dim

    def transform(self, tensor: torch.Tensor) -> torch.Tensor:
        out = tensor.new_zeros(*tensor.shape[:-1], self.out_dim)
        out.scatter_(-1, tensor.long(), 1)
        return out.float()

    def infer_output_info(self, vshape_in: Any, dtype_in: Any) -> tuple[tuple[int], torch.dtype]:
        return (self.out_dim,), torch.float32


def convert(value: Any, dtype: torch.dtype, device: Any) -> torch.Tensor:
    """oxwhirl's ``torch.tensor(value, dtype)``; where it raises TypeError on a list, EPyMARL's ``np.array`` route.

    Spec §12: a drop-in keeps oxwhirl's result where it succeeds and returns EPyMARL's where
    only EPyMARL's succeeds. Two documented refinements of xreplay are modelled too: complex
    values into a real field are refused (TypeError), and NaN/infinity into an integer field or
    integers out of range via the ``np.array`` route are refused (RuntimeError), instead of a
    silent change.
    """
    integer = not (dtype.is_floating_point or dtype.is_complex or dtype == torch.bool)
    if isinstance(value, torch.Tensor):
        if value.is_complex() and not dtype.is_complex:
            raise TypeError("complex into a real field")
        if integer and value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise RuntimeError("NaN or infinity into an integer field")
        return value.detach().clone().to(dtype=dtype, device=device)  # == torch.tensor(v, ...)
    if isinstance(value, np.ndarray):
        if value.dtype.kind == "c" and not dtype.is_complex:
            raise TypeError("complex into a real field")
        if integer and value.dtype.kind == "f" and not np.isfinite(value).all():
            raise RuntimeError("NaN or infinity into an integer field")
    try:
        with warnings.catch_warnings():  # runners pass lists of ndarrays; torch warns it is slow
            warnings.filterwarnings("ignore", message="Creating a tensor from a list of numpy.ndarrays")
            return torch.tensor(value, dtype=dtype, device=device)
    except TypeError:
        if not isinstance(value, list):
            raise
        try:
            array = np.array(value)
        except (ValueError, TypeError):
            raise TypeError("not convertible") from None
        if array.dtype.kind not in "biuf":
            raise TypeError("not numbers") from None
        if integer and array.size and array.dtype.kind in "iuf":
            if array.dtype.kind == "f" and not np.isfinite(array).all():
                raise RuntimeError("NaN or infinity into an integer field") from None
            info = torch.iinfo(dtype)
            if float(array.min()) <= info.min - 1 or float(array.max()) >= info.max + 1:
                raise RuntimeError("out of range") from None
        return torch.tensor(array, dtype=dtype, device=device)


def parse(items: Any) -> tuple:
    """Spec §3: batch-only indices get a full time slice; Python ints become 1-wide slices."""
    batch_only = isinstance(items, (slice, int, list, np.ndarray)) or (
        isinstance(items, torch.Tensor) and items.dtype == torch.int64 and items.device.type == "cpu"
    )
    if batch_only:
        items = (items, slice(None))
    if isinstance(items[1], list):
        raise IndexError("Indexing across Time must be contiguous")
    out = []
    for it in items:
        out.append(slice(it, it + 1) if isinstance(it, int) else it)
    return tuple(out)


def num_items(index: Any, size: int) -> int | None:
    """Spec §3 ``_get_num_items``: len for list/ndarray, a (possibly negative) count for slices, else None."""
    if isinstance(index, (list, np.ndarray)):
        return len(index)
    if isinstance(index, slice):
        start, stop, step = index.indices(size)
        return 1 + (stop - start - 1) // step
    return None


def safe_view_check(v: torch.Tensor, dest: torch.Tensor) -> None:
    """Spec §4.3, including the cursor that wraps around through negative indexing."""
    vs = v.shape
    i = len(vs) - 1
    for s in reversed(dest.shape):
        if vs[i] == s:
            i -= 1
        elif s != 1:
            raise ValueError(f"Unsafe reshape of {v.shape} to {dest.shape}")


class RefEpisodeBatch:
    def __init__(self, scheme, groups, batch_size, max_seq_length, data=None, preprocess=None, device="cpu"):
        self.scheme = dict(scheme)  # shallow copy
        self.groups = groups
        self.batch_size = batch_size
        self.max_seq_length = max_seq_length
        self.preprocess = preprocess if preprocess is not None else {}
        self.device = device
        if data is not None:
            self.data = data
            return
        self.data = SimpleNamespace(transition_data={}, episode_data={})
        for src, (new_key, transforms) in self.preprocess.items():
            assert src in self.scheme
            vshape = self.scheme[src]["vshape"]
            dtype = self.scheme[src]["dtype"]
            for t in transforms:
                vshape, dtype = t.infer_output_info(vshape, dtype)
            entry = {"vshape": vshape, "dtype": dtype}
            for extra in ("group", "episode_const"):
                if extra in self.scheme[src]:
                    entry[extra] = self.scheme[src][extra]
            self.scheme[new_key] = entry
        assert "filled" not in self.scheme, '"filled" is a reserved key for masking.'
        self.scheme["filled"] = {"vshape": (1,), "dtype": torch.long}
        for key, info in self.scheme.items():
            assert "vshape" in info, f"Scheme must define vshape for {key}"
            vshape = info["vshape"]
            shape = (vshape,) if isinstance(vshape, int) else tuple(vshape)
            group = info.get("group", None)
            if group:
                assert group in self.groups, f"Group {group} must have its number of members defined in _groups_"
                shape = (self.groups[group], *shape)
            dtype = info.get("dtype", torch.float32)
            if info.get("episode_const", False):
                self.data.episode_data[key] = torch.zeros((batch_size, *shape), dtype=dtype, device=device)
            else:
                self.data.transition_data[key] = torch.zeros(
                    (batch_size, max_seq_length, *shape), dtype=dtype, device=device
                )

    # -- helpers ---------------------------------------------------------------
    def _all_tensors(self) -> list[torch.Tensor]:
        return list(self.data.transition_data.values()) + list(self.data.episode_data.values())

    def _atomic(self, fn) -> None:
        """Run ``fn``; if it raises, put every tensor back exactly as it was (in place)."""
        tensors = self._all_tensors()
        saved = [t.clone() for t in tensors]
        try:
            fn()
        except BaseException:
            with torch.no_grad():
                for t, s in zip(tensors, saved, strict=False):
                    t.copy_(s)
            raise

    # -- update ----------------------------------------------------------------
    def update(self, data, bs=slice(None), ts=slice(None), mark_filled=True) -> None:
        self._atomic(lambda: self._update_upstream(data, bs, ts, mark_filled))

    def _update_upstream(self, data, bs, ts, mark_filled) -> None:
        idx = parse((bs, ts))
        for k, v in data.items():
            if k in self.data.transition_data:
                target = self.data.transition_data
                if mark_filled:
                    target["filled"][idx] = 1
                    mark_filled = False
                where = idx
            elif k in self.data.episode_data:
                target = self.data.episode_data
                where = idx[0]
            else:
                raise KeyError(f"{k} not found in transition or episode data")
            dtype = self.scheme[k].get("dtype", torch.float32)
            v = convert(v, dtype, self.device)
            dest = target[k][where]
            safe_view_check(v, dest)
            target[k][where] = v.view_as(dest)
            if k in self.preprocess:
                new_k, transforms = self.preprocess[k]
                out = target[k][where]
                for t in transforms:
                    out = t.transform(out)
                target[new_k][where] = out.view_as(target[new_k][where])

    # -- reads -------------------------------------------------------------------
    def __getitem__(self, item):
        if isinstance(item, str):
            if item in self.data.episode_data:
                return self.data.episode_data[item]
            if item in self.data.transition_data:
                return self.data.transition_data[item]
            raise ValueError(item)
        if isinstance(item, tuple) and all(isinstance(x, str) for x in item):
            trans, epi = {}, {}
            for k in item:
                if k in self.data.transition_data:
                    trans[k] = self.data.transition_data[k]
                elif k in self.data.episode_data:
                    epi[k] = self.data.episode_data[k]
                else:
                    raise KeyError(f"Unrecognised key {k}")
            scheme = {k: self.scheme[k] for k in item}
            groups = {
                self.scheme[k]["group"]: self.groups[self.scheme[k]["group"]] for k in item if "group" in self.scheme[k]
            }
            return RefEpisodeBatch(
                scheme,
                groups,
                self.batch_size,
                self.max_seq_length,
                data=SimpleNamespace(transition_data=trans, episode_data=epi),
                device=self.device,
            )
        idx = parse(item)
        trans = {k: v[idx] for k, v in self.data.transition_data.items()}
        epi = {k: v[idx[0]] for k, v in self.data.episode_data.items()}
        return RefEpisodeBatch(
            self.scheme,
            self.groups,
            num_items(idx[0], self.batch_size),
            num_items(idx[1], self.max_seq_length),
            data=SimpleNamespace(transition_data=trans, episode_data=epi),
            device=self.device,
        )

    def max_t_filled(self) -> torch.Tensor:
        return torch.sum(self.data.transition_data["filled"], 1).max(0)[0]

    def to(self, device) -> None:
        for d in (self.data.transition_data, self.data.episode_data):
            for k in d:
                d[k] = d[k].to(device)
        self.device = device

    def __repr__(self) -> str:
        return (
            f"EpisodeBatch. Batch Size:{self.batch_size} Max_seq_len:{self.max_seq_length} "
            f"Keys:{self.scheme.keys()} Groups:{self.groups.keys()}"
        )


class RefReplayBuffer(RefEpisodeBatch):
    def __init__(self, scheme, groups, buffer_size, max_seq_length, preprocess=None, device="cpu"):
        super().__init__(scheme, groups, buffer_size, max_seq_length, preprocess=preprocess, device=device)
        self.buffer_size = buffer_size
        self.buffer_index = 0
        self.episodes_in_buffer = 0

    def insert_episode_batch(self, ep) -> None:
        if not isinstance(ep.batch_size, int):
            raise TypeError("ep_batch.batch_size must be an int")
        saved = (self.buffer_index, self.episodes_in_buffer)
        try:
            self._atomic(lambda: self._insert_loop(ep))
        except BaseException:
            self.buffer_index, self.episodes_in_buffer = saved
            raise

    def _insert_loop(self, ep) -> None:
        # The upstream recursion "insert ep[0:left], then ep[left:]" written as a loop.
        while True:
            left = self.buffer_size - self.buffer_index
            if ep.batch_size <= left:
                self._insert_fitting(ep)
                return
            self._insert_fitting(ep[0:left, :])
            ep = ep[left:, :]

    def _insert_fitting(self, ep) -> None:
        i, n = self.buffer_index, ep.batch_size
        self._update_upstream(ep.data.transition_data, slice(i, i + n), slice(0, ep.max_seq_length), False)
        self._update_upstream(ep.data.episode_data, slice(i, i + n), slice(None), True)
        self.buffer_index += n
        self.episodes_in_buffer = max(self.episodes_in_buffer, self.buffer_index)
        self.buffer_index %= self.buffer_size

    def can_sample(self, batch_size: int) -> bool:
        return self.episodes_in_buffer >= batch_size

    def sample(self, batch_size: int):
        if not self.can_sample(batch_size):
            raise AssertionError(f"{batch_size} > {self.episodes_in_buffer}")
        if self.episodes_in_buffer == batch_size:
            return self[:batch_size]
        ids = np.random.choice(self.episodes_in_buffer, batch_size, replace=False)
        return self[ids]

    def __repr__(self) -> str:
        return (
            f"ReplayBuffer. {self.episodes_in_buffer}/{self.buffer_size} episodes. "
            f"Keys:{self.scheme.keys()} Groups:{self.groups.keys()}"
        )
