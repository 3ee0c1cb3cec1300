"""Gymnasium spaces as flat leaves (name -> item shape and dtype), the way buffers store them.

A ``Dict`` space becomes one leaf per entry, named by its key path (``"achieved_goal"``,
``"a/b"`` for nested dicts); any other supported space is one leaf named ``""``. A buffer stores
leaf ``"x"`` of the observation as field ``"obs/x"`` and the root leaf as ``"obs"``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from xreplay.datasets._common import require
from xreplay.errors import DatasetMismatchError

__all__ = ["Leaves", "check_leaves", "field_name", "infer_space", "leaf_names", "space_leaves"]

Leaves = dict[str, tuple[tuple[int, ...], np.dtype]]


def space_leaves(space: Any, what: str) -> Leaves:
    """Return the leaves of a gymnasium space: leaf name -> (item shape, dtype).

    Raises:
        DatasetMismatchError: A space other than Box, Discrete, MultiBinary, MultiDiscrete or Dict of them.

    Example:
        >>> import gymnasium as gym
        >>> space = gym.spaces.Dict({"observation": gym.spaces.Box(0, 1, (4,)), "goal": gym.spaces.Discrete(3)})
        >>> space_leaves(space, "observation")
        {'goal': ((), dtype('int64')), 'observation': ((4,), dtype('float32'))}
    """
    spaces = require("gymnasium").spaces
    out: Leaves = {}

    def visit(node: Any, prefix: str) -> None:
        if isinstance(node, spaces.Dict):
            for key, sub in node.spaces.items():
                visit(sub, f"{prefix}/{key}" if prefix else str(key))
        elif isinstance(node, spaces.Box | spaces.Discrete | spaces.MultiBinary | spaces.MultiDiscrete):
            out[prefix] = (tuple(int(d) for d in node.shape), np.dtype(node.dtype))
        else:
            raise DatasetMismatchError(
                f"{what} space {type(node).__name__} at {prefix or 'the root'!r} is not supported; "
                "expected Box, Discrete, MultiBinary, MultiDiscrete or a Dict of them"
            )

    visit(space, "")
    return out


def field_name(base: str, leaf: str) -> str:
    """Return the buffer field of ``leaf`` under ``base`` (``"obs"`` for the root leaf, ``"obs/x"`` otherwise)."""
    return f"{base}/{leaf}" if leaf else base


def leaf_names(base: str, names: list[str] | Mapping[str, Any]) -> list[str]:
    """Return the leaves that buffer fields ``names`` hold under ``base`` (``""`` for the field ``base`` itself)."""
    prefix = base + "/"
    return [("" if name == base else name[len(prefix) :]) for name in names if name == base or name.startswith(prefix)]


def infer_space(leaves: Leaves) -> Any:
    """Return a gymnasium space for ``leaves``: unbounded Boxes (a Dict of them for named leaves).

    Integer and boolean leaves get the full range of their dtype.
    """
    spaces = require("gymnasium").spaces

    def box(shape: tuple[int, ...], dtype: np.dtype) -> Any:
        if dtype.kind == "f":
            return spaces.Box(-np.inf, np.inf, shape, dtype)
        if dtype.kind == "b":
            return spaces.Box(0, 1, shape, dtype)
        info = np.iinfo(dtype)
        return spaces.Box(info.min, info.max, shape, dtype)

    if list(leaves) == [""]:
        return box(*leaves[""])
    tree: dict[str, Any] = {}
    for leaf, (shape, dtype) in leaves.items():
        *outer, last = leaf.split("/")
        node = tree
        for part in outer:
            node = node.setdefault(part, {})
        node[last] = box(shape, dtype)

    def build(node: dict[str, Any]) -> Any:
        return spaces.Dict({k: build(v) if isinstance(v, dict) else v for k, v in node.items()})

    return build(tree)


def check_leaves(expected: Leaves, received: Leaves, what: str, where: str, same_kind: bool = False) -> None:
    """Raise DatasetMismatchError naming the first leaf whose name, shape or dtype differs.

    Args:
        expected: The leaves wanted (of the buffer, or of a space the caller gave).
        received: The leaves found.
        what: ``"observation"`` or ``"action"``.
        where: Who expects (``"the buffer"``, ``"the given space"``), for the message.
        same_kind: Accept dtypes of the same kind (floats of another precision, integers of another width),
            which a buffer converts on write.
    """
    if set(expected) != set(received):
        raise DatasetMismatchError(f"{what} fields: expected {sorted(expected)} ({where}), received {sorted(received)}")
    for leaf, (shape, dtype) in expected.items():
        got_shape, got_dtype = received[leaf]
        kinds = dtype.kind.replace("u", "i"), got_dtype.kind.replace("u", "i")
        if shape != got_shape or (dtype != got_dtype and not (same_kind and kinds[0] == kinds[1])):
            raise DatasetMismatchError(
                f"{what} field {leaf or '(root)'!r}: expected shape {shape} and dtype {dtype} ({where}), "
                f"received shape {got_shape} and dtype {got_dtype}"
            )
