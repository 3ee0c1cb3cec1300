"""JSON encodings of the objects a checkpoint's metadata names: dtypes, schemes, layouts, RNGs, writers."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from xreplay.errors import CheckpointError
from xreplay.scheme import AUTO, Field, Scheme
from xreplay.storage.layout import RowLayout
from xreplay.transforms import OneHot
from xreplay.writers import RingWriter

__all__ = [
    "decode_dtype",
    "decode_layout",
    "decode_rng",
    "decode_scheme",
    "encode_dtype",
    "encode_layout",
    "encode_rng",
    "encode_scheme",
    "restore_writer",
]


def encode_dtype(dtype: torch.dtype) -> str:
    """Return the name of a torch dtype (``torch.float32`` -> ``"float32"``).

    Example:
        >>> encode_dtype(torch.uint8), decode_dtype("uint8")
        ('uint8', torch.uint8)
    """
    return str(dtype).removeprefix("torch.")


def decode_dtype(name: str) -> torch.dtype:
    """Return the torch dtype called ``name``."""
    dtype = getattr(torch, str(name), None)
    if not isinstance(dtype, torch.dtype):
        raise CheckpointError(f"checkpoint names an unknown torch dtype {name!r}")
    return dtype


def _encode_field(field: Field) -> dict[str, Any]:
    """Return one field as a JSON-able dict."""
    storage = field.storage_dtype
    derived = field.derived
    return {
        "shape": list(field.shape),
        "dtype": encode_dtype(field.dtype),
        "group": field.group,
        "per_step": field.per_step,
        "storage_dtype": storage if storage is None or storage == AUTO else encode_dtype(storage),  # type: ignore[arg-type]
        "derived": None
        if derived is None
        else {
            "type": "OneHot",
            "source": derived.source,
            "num_classes": derived.num_classes,
            "dtype": encode_dtype(derived.dtype),
        },
    }


def _decode_field(info: dict[str, Any]) -> Field:
    """Return the field encoded by :func:`_encode_field`."""
    storage = info["storage_dtype"]
    derived = info["derived"]
    if derived is not None and derived.get("type") != "OneHot":
        raise CheckpointError(f"checkpoint names an unknown derivation {derived.get('type')!r}")
    return Field(
        shape=tuple(info["shape"]),
        dtype=decode_dtype(info["dtype"]),
        group=info["group"],
        per_step=bool(info["per_step"]),
        storage_dtype=storage if storage is None or storage == AUTO else decode_dtype(storage),
        derived=None
        if derived is None
        else OneHot(derived["source"], int(derived["num_classes"]), decode_dtype(derived["dtype"])),
    )


def encode_scheme(scheme: Scheme) -> dict[str, Any]:
    """Return ``scheme`` as a JSON-able dict (field order kept).

    Example:
        >>> s = Scheme({"r": Field((1,))})
        >>> decode_scheme(encode_scheme(s))["r"] == s["r"]
        True
    """
    return {"fields": {name: _encode_field(field) for name, field in scheme.items()}, "groups": scheme.groups}


def decode_scheme(info: dict[str, Any]) -> Scheme:
    """Return the scheme encoded by :func:`encode_scheme`."""
    return Scheme({name: _decode_field(f) for name, f in info["fields"].items()}, info["groups"])


def encode_layout(layout: RowLayout) -> dict[str, Any]:
    """Return what rebuilds ``layout`` besides its scheme: steps, overridden dtypes and the row size."""
    return {
        "max_seq_length": layout.max_seq_length,
        "overrides": {name: encode_dtype(dtype) for name, dtype in layout.overrides.items()},
        "row_bytes": layout.row_bytes,
    }


def decode_layout(scheme: Scheme, info: dict[str, Any]) -> RowLayout:
    """Rebuild a row layout and check that its row size matches the one saved."""
    overrides = {name: decode_dtype(dtype) for name, dtype in info["overrides"].items()}
    layout = RowLayout(scheme, int(info["max_seq_length"]), overrides)
    if layout.row_bytes != int(info["row_bytes"]):
        raise CheckpointError(
            f"checkpoint rows are {info['row_bytes']} bytes but this xreplay lays the scheme out in "
            f"{layout.row_bytes}; load it with the xreplay version that wrote it"
        )
    return layout


def encode_rng(rng: np.random.Generator) -> dict[str, Any]:
    """Return a numpy Generator's bit-generator state (JSON keeps its big integers exact)."""
    return dict(rng.bit_generator.state)


def decode_rng(state: dict[str, Any]) -> np.random.Generator:
    """Return a new Generator whose bit generator continues from ``state``."""
    kind = getattr(np.random, str(state.get("bit_generator")), None)
    if kind is None or not isinstance(kind, type) or not issubclass(kind, np.random.BitGenerator):
        raise CheckpointError(f"checkpoint names an unknown bit generator {state.get('bit_generator')!r}")
    bit_generator = kind()
    bit_generator.state = state
    return np.random.Generator(bit_generator)


def restore_writer(state: dict[str, Any]) -> RingWriter:
    """Return a ring writer at the saved cursor."""
    writer = RingWriter(int(state["capacity"]))
    writer.load_state_dict(state)
    return writer
