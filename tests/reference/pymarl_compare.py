"""Comparison helpers shared by the PyMARL compat tests (reference model vs xreplay)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from xreplay.errors import XReplayError


def assert_same_tensor(ref: torch.Tensor, ours: torch.Tensor, what: str = "") -> None:
    assert isinstance(ours, torch.Tensor), f"{what}: not a tensor: {type(ours)}"
    assert ours.dtype == ref.dtype, f"{what}: dtype {ours.dtype} != {ref.dtype}"
    assert ours.shape == ref.shape, f"{what}: shape {tuple(ours.shape)} != {tuple(ref.shape)}"
    assert ours.device == ref.device, f"{what}: device {ours.device} != {ref.device}"
    assert torch.equal(ours.cpu(), ref.cpu()), f"{what}: values differ\nref={ref}\nours={ours}"


def assert_same_fields(ref_fields: Any, our_fields: Any, what: str) -> None:
    assert list(our_fields.keys()) == list(ref_fields.keys()), (
        f"{what}: keys {list(our_fields.keys())} != {list(ref_fields.keys())}"
    )
    for k in ref_fields:
        assert_same_tensor(ref_fields[k], our_fields[k], f"{what}[{k!r}]")


def assert_same_batch(ref: Any, ours: Any, what: str = "batch") -> None:
    """Same sizes, scheme key order, groups, field order, dtypes, shapes and values."""
    assert ours.batch_size == ref.batch_size, f"{what}: batch_size {ours.batch_size!r} != {ref.batch_size!r}"
    assert type(ours.batch_size) is type(ref.batch_size), f"{what}: batch_size type"
    assert ours.max_seq_length == ref.max_seq_length, (
        f"{what}: max_seq_length {ours.max_seq_length!r} != {ref.max_seq_length!r}"
    )
    assert type(ours.max_seq_length) is type(ref.max_seq_length), f"{what}: max_seq_length type"
    assert list(ours.scheme) == list(ref.scheme), f"{what}: scheme keys {list(ours.scheme)} != {list(ref.scheme)}"
    assert dict(ours.groups) == dict(ref.groups), f"{what}: groups"
    assert ours.device == ref.device, f"{what}: device"
    assert ours.preprocess.keys() == ref.preprocess.keys(), f"{what}: preprocess keys"
    assert_same_fields(ref.data.transition_data, ours.data.transition_data, f"{what}.transition_data")
    assert_same_fields(ref.data.episode_data, ours.data.episode_data, f"{what}.episode_data")


def assert_same_buffer(ref: Any, ours: Any, what: str = "buffer") -> None:
    mine = (ours.buffer_index, ours.episodes_in_buffer, ours.buffer_size)
    theirs = (ref.buffer_index, ref.episodes_in_buffer, ref.buffer_size)
    assert mine == theirs, f"{what}: (buffer_index, episodes_in_buffer, buffer_size) ours={mine} ref={theirs}"
    assert_same_batch(ref, ours, what)


def assert_same_result(ref: Any, ours: Any, what: str = "result") -> None:
    """Compare a ``__getitem__`` result: a tensor or a batch."""
    if isinstance(ref, torch.Tensor):
        assert_same_tensor(ref, ours, what)
    else:
        assert_same_batch(ref, ours, what)


def outcome(fn: Callable[[], Any]) -> tuple[Any, BaseException | None]:
    try:
        return fn(), None
    except Exception as exc:  # noqa: BLE001 - we compare exception classes
        return None, exc


def assert_same_outcome(ref_fn: Callable[[], Any], our_fn: Callable[[], Any], what: str) -> tuple[Any, Any]:
    """Run both; both must succeed, or ours must raise a typed error that is an instance of the reference's class.

    The reference raises upstream's classes (``IndexError``, ``RuntimeError``...); xreplay raises an
    ``XReplayError`` subclass that also derives from that class, so ``except IndexError`` still works.
    An ``AssertionError`` (upstream's bare asserts) is the one class kept as it is.
    """
    ref, ref_exc = outcome(ref_fn)
    ours, our_exc = outcome(our_fn)
    if ref_exc is None or our_exc is None:
        assert ref_exc is None and our_exc is None, f"{what}: ours raised {our_exc!r}, reference raised {ref_exc!r}"
        return ref, ours
    assert isinstance(our_exc, type(ref_exc)), f"{what}: ours raised {our_exc!r}, reference raised {ref_exc!r}"
    if type(ref_exc) is not AssertionError:
        assert isinstance(our_exc, XReplayError), f"{what}: ours raised an untyped {our_exc!r}"
    return ref, ours


def rng_state_equal(a: tuple, b: tuple) -> bool:
    return a[0] == b[0] and np.array_equal(a[1], b[1]) and tuple(a[2:]) == tuple(b[2:])
