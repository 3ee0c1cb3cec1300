"""Field and Scheme: what an episode holds, declared once and validated.

A :class:`Field` declares one named array of an episode: its per-item shape,
the dtype every read returns, an optional per-agent group, whether it has one
value per step or one per episode, the dtype it is stored in, and whether it
is derived from another field at read time instead of being stored.

A :class:`Scheme` is a frozen, validated mapping of names to fields plus the
sizes of the groups. It can be built from a PyMARL ``scheme`` dict with
:meth:`Scheme.from_pymarl`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from typing import Any, Literal

import torch

from xreplay.errors import SchemeError
from xreplay.transforms import OneHot

__all__ = ["AUTO", "Field", "Scheme", "StorageDtype"]

AUTO: Literal["auto"] = "auto"
"""Storage dtype that starts at the narrowest integer type and widens losslessly."""

StorageDtype = torch.dtype | Literal["auto"] | None


def _as_shape(shape: Any, name: str) -> tuple[int, ...]:
    """Normalise an int, list or tuple shape into a tuple of non-negative ints."""
    if isinstance(shape, int):
        shape = (shape,)
    try:
        dims = tuple(int(d) for d in shape)
    except TypeError:
        raise SchemeError(f"field {name!r}: shape must be an int or a sequence of ints, got {shape!r}") from None
    if any(d < 0 for d in dims):
        raise SchemeError(f"field {name!r}: shape dimensions must be >= 0, got {dims}")
    return dims


@dataclasses.dataclass(frozen=True)
class Field:
    """One named array of an episode.

    Args:
        shape: Per-item shape, without the episode, step or group dimensions.
        dtype: The dtype every read returns.
        group: Name of a group (e.g. ``"agents"``); its size is put in front of
            ``shape``.
        per_step: One value per step (True) or one per episode (False).
        storage_dtype: ``None`` stores ``dtype``; a narrower dtype stores in it
            and raises on values it cannot hold; ``"auto"`` starts at the
            narrowest integer dtype and widens losslessly when needed.
        derived: A derivation (such as :class:`~xreplay.transforms.OneHot`)
            that computes this field from another one at read time; nothing
            is stored for it.

    Example:
        >>> Field((40,), group="agents").shape
        (40,)
    """

    shape: tuple[int, ...] = ()
    dtype: torch.dtype = torch.float32
    group: str | None = None
    per_step: bool = True
    storage_dtype: StorageDtype = None
    derived: OneHot | None = None

    def __post_init__(self) -> None:
        """Normalise the shape and check the dtypes."""
        object.__setattr__(self, "shape", _as_shape(self.shape, "<field>"))
        if not isinstance(self.dtype, torch.dtype):
            raise SchemeError(f"dtype must be a torch.dtype, got {self.dtype!r}")
        sd = self.storage_dtype
        if sd is not None and sd != AUTO and not isinstance(sd, torch.dtype):
            raise SchemeError(f"storage_dtype must be a torch.dtype, 'auto' or None, got {sd!r}")
        if self.dtype.is_complex or (isinstance(sd, torch.dtype) and sd.is_complex):
            raise SchemeError(
                f"dtype {self.dtype if self.dtype.is_complex else sd}: complex fields are not stored; "
                f"store the real and imaginary parts as two float fields (or one with a trailing dimension of 2)"
            )
        if sd == AUTO and self.dtype.is_floating_point:
            raise SchemeError(f"storage_dtype='auto' narrows integer fields only; dtype is {self.dtype}")


class Scheme(Mapping[str, Field]):
    """A frozen, validated set of named fields plus the sizes of their groups.

    Example:
        >>> s = Scheme({"obs": Field((40,), group="agents")}, groups={"agents": 4})
        >>> s.item_shape("obs")
        (4, 40)
    """

    def __init__(self, fields: Mapping[str, Field], groups: Mapping[str, int] | None = None):
        """Validate ``fields`` against ``groups`` and freeze them."""
        self._fields: dict[str, Field] = dict(fields)
        self._groups: dict[str, int] = dict(groups or {})
        for name, size in self._groups.items():
            if not isinstance(size, int) or size < 0:
                raise SchemeError(f"group {name!r}: size must be an int >= 0, got {size!r}")
        for name, field in self._fields.items():
            if not isinstance(field, Field):
                raise SchemeError(f"field {name!r}: expected a Field, got {type(field).__name__}")
            if field.group is not None and field.group not in self._groups:
                raise SchemeError(
                    f"field {name!r}: group {field.group!r} has no size; known groups are {sorted(self._groups)}"
                )
            if field.derived is not None:
                self._check_derivation(name, field)
        self._by_timing = (
            tuple(k for k, f in self._fields.items() if f.per_step),
            tuple(k for k, f in self._fields.items() if not f.per_step),
        )

    def _check_derivation(self, name: str, field: Field) -> None:
        """Check that a derived field's source exists and is stored."""
        source = field.derived.source if field.derived is not None else ""
        src = self._fields.get(source)
        if src is None:
            raise SchemeError(f"field {name!r} is derived from {source!r}, which is not in the scheme")
        if src.derived is not None:
            raise SchemeError(f"field {name!r} is derived from {source!r}, which is itself derived")
        if src.per_step != field.per_step or src.group != field.group:
            raise SchemeError(f"field {name!r} must have the same group and per_step as its source {source!r}")

    def __getitem__(self, name: str) -> Field:
        """Return the field called ``name``."""
        return self._fields[name]

    def __iter__(self) -> Iterator[str]:
        """Iterate over field names in declaration order."""
        return iter(self._fields)

    def __len__(self) -> int:
        """Return the number of fields."""
        return len(self._fields)

    def __repr__(self) -> str:
        """Show the fields and groups."""
        return f"Scheme({self._fields!r}, groups={self._groups!r})"

    @property
    def groups(self) -> dict[str, int]:
        """Return a copy of the group sizes."""
        return dict(self._groups)

    def names_by_timing(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """Return the names of the per-step fields and of the per-episode fields, in scheme order."""
        return self._by_timing

    def item_shape(self, name: str) -> tuple[int, ...]:
        """Return the shape of one step (or one episode) of ``name``, group included."""
        field = self._fields[name]
        if field.group is None:
            return field.shape
        return (self._groups[field.group], *field.shape)

    def stored(self) -> list[str]:
        """Return the names of the fields that are stored, not derived."""
        return [n for n, f in self._fields.items() if f.derived is None]

    @classmethod
    def from_pymarl(
        cls,
        scheme: Mapping[str, Mapping[str, Any]],
        groups: Mapping[str, int] | None = None,
        preprocess: Mapping[str, tuple[str, list[Any]]] | None = None,
        compact: bool = False,
    ) -> Scheme:
        """Build a scheme from a PyMARL scheme dict (``vshape``, ``dtype``, ``group``, ``episode_const``).

        Preprocess outputs that are a single one-hot transform become derived
        fields when ``compact`` is true, and stored fields otherwise. With
        ``compact``, integer fields are stored with ``storage_dtype="auto"``.
        """
        fields: dict[str, Field] = {}
        onehot_sources: dict[str, tuple[str, int]] = {}
        for src, (out, transforms) in (preprocess or {}).items():
            if len(transforms) == 1 and hasattr(transforms[0], "out_dim"):
                onehot_sources[out] = (src, int(transforms[0].out_dim))
        for name, info in scheme.items():
            if "vshape" not in info:
                raise SchemeError(f"field {name!r}: a PyMARL scheme entry needs 'vshape'")
            dtype = info.get("dtype", torch.float32)
            narrow = compact and not dtype.is_floating_point and not dtype.is_complex
            derived = None
            if compact and name in onehot_sources:
                source, out_dim = onehot_sources[name]
                derived = OneHot(source, out_dim)
            fields[name] = Field(
                shape=_as_shape(info["vshape"], name),
                dtype=dtype,
                group=info.get("group") or None,
                per_step=not info.get("episode_const", False),
                storage_dtype=AUTO if narrow and derived is None else None,
                derived=derived,
            )
        return cls(fields, groups)
