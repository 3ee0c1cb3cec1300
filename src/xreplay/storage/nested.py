"""Nested dicts of fields as flat ``"outer/inner"`` names, and back."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["SEPARATOR", "flatten", "unflatten"]

SEPARATOR = "/"
"""Joins the keys of nested dicts into one field name."""


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Return ``data`` with nested mappings flattened into ``"outer/inner"`` keys."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{prefix}{key}{SEPARATOR}"))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
    """Return nested dicts rebuilt from ``"outer/inner"`` keys."""
    nested: dict[str, Any] = {}
    for key, value in flat.items():
        *outer, last = key.split(SEPARATOR)
        node = nested
        for part in outer:
            node = node.setdefault(part, {})
        node[last] = value
    return nested
