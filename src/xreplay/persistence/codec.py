"""JSON encodings of what a checkpoint's metadata names (dtypes, schemes, layouts, RNGs, writers) and their checks.

Each ``check_*`` function validates an encoding read from an untrusted
``metadata.json`` (through a :class:`~xreplay.persistence.schema.Validator`,
so a violation names the key and the rule) before anything is built from it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from xreplay.errors import CheckpointError, SchemeError
from xreplay.persistence.schema import Validator
from xreplay.scheme import AUTO, Field, Scheme
from xreplay.storage.layout import ROW_ORDERS, RowLayout
from xreplay.transforms import OneHot
from xreplay.writers import RingWriter

__all__ = [
    "check_layout",
    "check_rng",
    "check_scheme",
    "check_writer",
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


_DTYPES = {
    encode_dtype(d): d
    for d in (
        torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.uint16, torch.uint32,
        torch.uint64, torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.complex64, torch.complex128,
    )
}  # fmt: skip
_BIT_GENERATORS = frozenset({"PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64"})


def decode_dtype(name: str) -> torch.dtype:
    """Return the torch dtype called ``name`` (numbers and bools only)."""
    dtype = _DTYPES.get(name) if isinstance(name, str) else None
    if dtype is None:
        raise CheckpointError(f"checkpoint names an unknown torch dtype {str(name)[:40]!r}; known: {sorted(_DTYPES)}")
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
    """Return what rebuilds ``layout`` besides its scheme: steps, overridden dtypes, the row size and order.

    The order is written only for ``"step"`` rows, so ``"field"`` rows encode as before it existed.
    """
    info: dict[str, Any] = {
        "max_seq_length": layout.max_seq_length,
        "overrides": {name: encode_dtype(dtype) for name, dtype in layout.overrides.items()},
        "row_bytes": layout.row_bytes,
    }
    if layout.order != "field":
        info["order"] = layout.order
    return info


def decode_layout(scheme: Scheme, info: dict[str, Any]) -> RowLayout:
    """Rebuild a row layout and check that its row size matches the one saved."""
    overrides = {name: decode_dtype(dtype) for name, dtype in info["overrides"].items()}
    layout = RowLayout(scheme, int(info["max_seq_length"]), overrides, str(info.get("order", "field")))
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
    """Return a new Generator whose bit generator continues from ``state`` (checked by :func:`check_rng`)."""
    kind = state.get("bit_generator") if isinstance(state, dict) else None
    if kind not in _BIT_GENERATORS:
        raise CheckpointError(f"checkpoint names an unknown bit generator {str(kind)[:40]!r}")
    bit_generator = getattr(np.random, kind)()
    bit_generator.state = state
    return np.random.Generator(bit_generator)


def _as_json(value: Any) -> Any:
    """Return ``value`` with numpy arrays and scalars as JSON reads them back."""
    if isinstance(value, dict):
        return {k: _as_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_as_json(v) for v in (value.tolist() if isinstance(value, np.ndarray) else value)]
    return value.item() if isinstance(value, np.generic) else value


def check_rng(v: Validator, key: str) -> np.random.Generator:
    """Return the generator encoded at ``key``, failing unless numpy takes the state exactly as saved."""
    state = v.mapping(key)
    v.string(f"{key}.bit_generator", choices=_BIT_GENERATORS)
    try:
        rng = decode_rng(state)
        same = _as_json(rng.bit_generator.state) == state
    except (TypeError, ValueError, KeyError, OverflowError, IndexError, AttributeError) as exc:
        raise v.fail(key, f"must be a state of numpy's {state['bit_generator']} ({exc})", state) from None
    if not same:
        raise v.fail(key, f"must be a state of numpy's {state['bit_generator']} (numpy normalized it)", state)
    return rng


def check_writer(v: Validator, key: str, capacity: int, ring_order: bool = True) -> None:
    """Check a ring writer state: its capacity, ``0 <= cursor < capacity``, ``0 <= size <= capacity``, writes.

    ``ring_order`` also requires what a writer that only appends keeps: ``size == min(writes, capacity)``
    and ``cursor == writes % capacity``.
    """
    v.mapping(key)
    v.integer(f"{key}.capacity", low=capacity, high=capacity)
    cursor = v.integer(f"{key}.cursor", low=0, high=max(capacity - 1, 0))
    size = v.integer(f"{key}.size", low=0, high=capacity)
    writes = v.integer(f"{key}.writes", low=size)
    if ring_order and size != min(writes, capacity):
        raise v.fail(f"{key}.size", f"must be min(writes, capacity) = {min(writes, capacity)}", size)
    if ring_order and capacity and cursor != writes % capacity:
        raise v.fail(f"{key}.cursor", f"must be writes % capacity = {writes % capacity}", cursor)
    clears = 0 if v.optional(f"{key}.clears") is None else v.integer(f"{key}.clears", low=0)
    ring = v.optional("ring")
    if isinstance(ring, dict):
        for part, value in (("capacity", capacity), ("cursor", cursor), ("writes", writes)):
            v.integer(f"ring.{part}", low=value, high=value)
        if clears or ring.get("clears") is not None:
            v.integer("ring.clears", low=clears, high=clears)


def _check_field(v: Validator, key: str, names: Any, groups: dict[str, Any]) -> None:
    """Check one encoded field."""
    v.mapping(key)
    v.shape(f"{key}.shape")
    v.string(f"{key}.dtype", choices=_DTYPES)
    group = v.get(f"{key}.group")
    if group is not None:
        v.string(f"{key}.group", choices=groups)
    v.boolean(f"{key}.per_step")
    storage = v.get(f"{key}.storage_dtype")
    if storage is not None:
        v.string(f"{key}.storage_dtype", choices={*_DTYPES, AUTO})
    derived = v.get(f"{key}.derived")
    if derived is not None:
        v.mapping(f"{key}.derived")
        v.string(f"{key}.derived.type", choices={"OneHot"})
        v.string(f"{key}.derived.source", choices=names)
        v.integer(f"{key}.derived.num_classes", low=1, high=2**31)
        v.string(f"{key}.derived.dtype", choices=_DTYPES)


def check_scheme(v: Validator, key: str) -> Scheme:
    """Return the scheme encoded at ``key`` after checking every field."""
    fields = v.mapping(f"{key}.fields")
    groups = v.mapping(f"{key}.groups")
    for name, size in groups.items():
        v.integer(f"{key}.groups.{name}", size, low=1, high=2**31)
    for name in fields:
        _check_field(v, f"{key}.fields.{name}", fields, groups)
    try:
        return decode_scheme(v.get(key))
    except (SchemeError, CheckpointError) as exc:
        raise v.fail(key, f"must be a valid scheme ({exc})", "...") from None


def check_layout(v: Validator, key: str, scheme: Scheme) -> RowLayout:
    """Return the row layout encoded at ``key`` for ``scheme`` (steps, overridden dtypes, row size)."""
    v.integer(f"{key}.max_seq_length", low=0, high=2**31)
    for name, dtype in v.mapping(f"{key}.overrides").items():
        v.string(f"{key}.overrides[{name!r}]", name, choices=scheme)
        v.string(f"{key}.overrides.{name}", dtype, choices=_DTYPES)
    saved = v.integer(f"{key}.row_bytes", low=0)
    if "order" in v.mapping(key):  # written since format 3, with .npy rows whose header states the order
        v.string(f"{key}.order", choices=set(ROW_ORDERS))
        rows = v.optional("arrays.rows")
        if not (isinstance(rows, dict) and str(rows.get("file", "")).endswith(".npy")):
            raise v.fail(f"{key}.order", "is written only with .npy rows (format 3 and later)", v.get(f"{key}.order"))
    try:
        layout = decode_layout(scheme, v.get(key))
    except (SchemeError, CheckpointError, ValueError) as exc:
        raise v.fail(key, f"must be a layout of the scheme ({exc})", "...") from None
    if layout.row_bytes != saved:
        raise v.fail(f"{key}.row_bytes", f"must be {layout.row_bytes}, the row size of the saved scheme", saved)
    return layout


def restore_writer(state: dict[str, Any]) -> RingWriter:
    """Return a ring writer at the saved cursor."""
    writer = RingWriter(int(state["capacity"]))
    writer.load_state_dict(state)
    return writer
