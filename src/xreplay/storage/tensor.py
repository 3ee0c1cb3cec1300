"""TensorStorage: preallocated episode rows on CPU or CUDA, in compact lossless dtypes."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import torch

from xreplay.errors import ArgumentError, SchemeError
from xreplay.scheme import Scheme
from xreplay.storage.dtypes import check_fits, covering_dtype, numpy_dtype, value_range
from xreplay.storage.layout import RowLayout
from xreplay.storage.resources import as_count, as_device, check_allocation, memory_limit

__all__ = ["TensorStorage", "available_memory"]

Index = slice | torch.Tensor


def available_memory(device: torch.device) -> int | None:
    """Return the bytes this process can still allocate on ``device``, None if unknown.

    The smallest of available memory, ``RLIMIT_AS`` and cgroup limits; see
    :func:`xreplay.storage.resources.memory_limit`.
    """
    return memory_limit(device).nbytes


class TensorStorage:
    """Fixed-capacity storage of episodes as packed byte rows.

    Each slot is one row holding every stored field of one episode; fields
    are typed views into the rows (:attr:`columns`). Integer fields may be
    stored narrower than they are declared; reads convert back, so callers
    always see the declared dtype and exact values.

    Args:
        scheme: The fields to store.
        capacity: Number of episode slots.
        max_seq_length: Steps per episode for per-step fields.
        device: ``"cpu"`` or a CUDA device.
        pin_memory: Allocate CPU rows in page-locked memory for fast transfer.
        row_order: ``"field"`` (each field's steps together: fast whole-episode reads) or ``"step"``
            (each step's fields together: fast transition reads, e.g. hindsight relabelling); see
            :mod:`xreplay.storage.layout`.

    Raises:
        ArgumentError: ``capacity`` or ``max_seq_length`` is not an int >= 0,
            ``device`` is not a usable device, or ``row_order`` is unknown.
        CapacityError: The rows would not fit in the memory this process may use.

    Example:
        >>> from xreplay.scheme import Field, Scheme
        >>> s = TensorStorage(Scheme({"r": Field((1,))}), capacity=4, max_seq_length=3)
        >>> s.columns["r"].shape
        torch.Size([4, 3, 1])
    """

    def __init__(
        self,
        scheme: Scheme,
        capacity: int,
        max_seq_length: int,
        device: str | torch.device = "cpu",
        pin_memory: bool = False,
        row_order: str = "field",
    ):
        """Allocate zeroed rows for ``capacity`` episodes."""
        self.capacity = as_count(capacity, "capacity")
        max_seq_length = as_count(max_seq_length, "max_seq_length")
        self.scheme = scheme
        self.device = as_device(device)
        self.pin_memory = bool(pin_memory) and self.device.type == "cpu"
        if self.pin_memory and not torch.cuda.is_available():
            raise SchemeError(
                "pin_memory=True page-locks CPU storage for fast copies to a GPU, but torch sees no CUDA "
                "device; drop pin_memory or run where CUDA is available"
            )
        self.layout = RowLayout(scheme, max_seq_length, order=row_order)
        self.rows = self._allocate(self.layout)
        self.columns = self.layout.views(self.rows)
        self._mark_absent(self.columns)

    def _mark_absent(self, columns: Mapping[str, torch.Tensor]) -> None:
        """Set every derived column to its 'absent' index, so unwritten steps decode as zeros."""
        for name, column in self.layout.columns.items():
            derived = self.scheme[name].derived
            if column.mask and derived is not None:
                columns[name].fill_(derived.absent)

    @classmethod
    def wrap(cls, scheme: Scheme, layout: RowLayout, rows: torch.Tensor) -> TensorStorage:
        """Return a storage over existing ``rows`` of ``layout`` (e.g. gathered rows), without copying."""
        storage = cls.__new__(cls)
        storage.scheme, storage.layout, storage.rows = scheme, layout, rows
        storage.capacity, storage.device, storage.pin_memory = int(rows.shape[0]), rows.device, False
        storage.columns = layout.views(rows)
        return storage

    def to(self, device: str | torch.device) -> TensorStorage:
        """Return this storage on ``device`` (itself when already there), moving the rows in one copy."""
        device = as_device(device)
        if device == self.device:
            return self
        return TensorStorage.wrap(self.scheme, self.layout, self.rows.to(device))

    @property
    def host_columns(self) -> dict[str, np.ndarray] | None:
        """Return numpy views of the columns of CPU storage (None on other devices, or with a bfloat16 column).

        numpy assignments cost less per call than torch copies, which matters when
        writing one small episode at a time; both views share the same memory.
        """
        if self.rows.device.type != "cpu":
            return None
        cached = getattr(self, "_host_columns", None)
        if cached is None or cached[0] is not self.rows:
            numpy_views = all(numpy_dtype(column.dtype) is not None for column in self.columns.values())
            views = {name: column.numpy() for name, column in self.columns.items()} if numpy_views else None
            cached = self._host_columns = (self.rows, views)
        return cached[1]

    @property
    def max_seq_length(self) -> int:
        """Return the number of steps per episode."""
        return self.layout.max_seq_length

    @property
    def nbytes(self) -> int:
        """Return the bytes held by the rows."""
        return self.capacity * self.layout.row_bytes

    def _allocate(self, layout: RowLayout) -> torch.Tensor:
        """Allocate zeroed rows for ``layout``, failing early when they cannot fit."""
        # Small allocations (a runner's batch) skip the look-up of the memory limit.
        check_allocation(
            self.capacity * layout.row_bytes,
            self.device,
            f"storage for {self.capacity} episodes x {layout.row_bytes} bytes",
            "lower the capacity or use compact storage dtypes",
        )
        shape = (self.capacity, layout.row_bytes)
        if self.device.type == "cpu" and not self.pin_memory and self.capacity * layout.row_bytes > 2**22:
            # numpy asks the kernel for transparent huge pages on large arrays: random row gathers then
            # miss the TLB far less often (about 10% faster samples of the S1 buffer).
            return torch.from_numpy(np.zeros(shape, dtype=np.uint8))
        rows = torch.zeros(shape, dtype=torch.uint8, device=self.device)
        return rows.pin_memory() if self.pin_memory else rows

    # -- validation ---------------------------------------------------------

    def plan_dtypes(
        self, values: Mapping[str, torch.Tensor], ranges: dict[str, tuple[int, int] | None] | None = None
    ) -> dict[str, torch.dtype]:
        """Check that ``values`` fit their columns; return the widenings they need.

        Strict columns raise :class:`FieldValueError`; ``"auto"`` columns
        report the narrowest dtype that holds both old and new values.
        Nothing is modified. ``ranges``, when given, receives the (min, max)
        of every integer value checked, for reuse by the caller.
        """
        widen: dict[str, torch.dtype] = {}
        for name, value in values.items():
            col = self.layout.columns[name]
            if col.mask:
                continue
            if col.auto:
                if value.is_floating_point():
                    check_fits(name, value, torch.int64)
                rng = value_range(value)
                if ranges is not None:
                    ranges[name] = rng
                if rng is not None:
                    dtype = covering_dtype(rng[0], rng[1], at_least=col.dtype)
                    if dtype != col.dtype:
                        widen[name] = dtype
            else:
                rng = check_fits(name, value, col.dtype)
                if ranges is not None and rng is not None:
                    ranges[name] = rng
        return widen

    def relayout(self, dtypes: Mapping[str, torch.dtype]) -> None:
        """Store the named columns in new dtypes, keeping every stored value."""
        if not dtypes:
            return
        layout = self.layout
        for name, dtype in dtypes.items():
            layout = layout.with_dtype(name, dtype)
        rows = self._allocate(layout)
        for name, col in layout.columns.items():
            old = self.layout.columns[name]
            new_view = layout.view(rows, name)
            if old.mask and not col.mask:
                # A derived field becomes stored: materialise its current values.
                new_view.copy_(self._derive(self.columns, name))
            else:
                new_view.copy_(self.columns[name])
        self.layout, self.rows = layout, rows
        self.columns = layout.views(rows)

    # -- writes ---------------------------------------------------------------

    # -- state ----------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Return the storage's state: its rows (the tensor itself, not a copy) and what lays them out.

        ``layout`` holds the row order, the overridden (widened or materialised) dtypes and the row size:
        rows mean something only in the layout that wrote them.
        """
        return {"rows": self.rows, "layout": self._layout_state()}

    def _layout_state(self) -> dict[str, Any]:
        """Return the row order, dtype overrides and row size of this storage's layout."""
        layout = self.layout
        return {"order": layout.order, "overrides": dict(layout.overrides), "row_bytes": layout.row_bytes}

    def check_state_dict(self, state: Mapping[str, Any]) -> None:
        """Raise ArgumentError unless ``state["rows"]`` fits this storage: uint8 rows of its shape, in its layout.

        A state without ``layout`` (rows alone) is taken to be in this storage's layout.
        """
        rows = state.get("rows") if isinstance(state, Mapping) else None
        shape = tuple(rows.shape) if rows is not None and hasattr(rows, "shape") else None
        dtype = str(getattr(rows, "dtype", None))
        if shape != tuple(self.rows.shape) or dtype not in ("torch.uint8", "uint8"):
            raise ArgumentError(
                f"storage state 'rows': expected uint8 rows of shape {tuple(self.rows.shape)}, received {dtype} {shape}"
            )
        layout = state.get("layout")  # type: ignore[union-attr]
        if layout is not None and layout != self._layout_state():
            raise ArgumentError(
                f"storage state 'layout': the rows were written in layout {layout}, this storage lays them out "
                f"as {self._layout_state()}; load them into a storage of that layout (row_order, widened dtypes)"
            )

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Copy the rows of a :meth:`state_dict` (checked first) into this storage."""
        self.check_state_dict(state)
        rows = state["rows"]
        source = rows if isinstance(rows, torch.Tensor) else torch.from_numpy(np.asarray(rows))
        self.rows.copy_(source)

    def write_rows(self, index: Index, rows: torch.Tensor) -> None:
        """Copy whole rows of the same layout into the slots at ``index``."""
        if isinstance(index, slice):
            self.rows[index].copy_(rows)
        else:
            self.rows[index] = rows

    # -- reads ----------------------------------------------------------------

    def gather(self, indices: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """Return the rows at ``indices`` (one gather of whole rows)."""
        if out is not None:
            return torch.index_select(self.rows, 0, indices, out=out)
        return self.rows.index_select(0, indices)

    def gather_fields(
        self, indices: torch.Tensor, names: Iterable[str] | None = None, steps: int | None = None
    ) -> dict[str, torch.Tensor]:
        """Return the fields of the slots at ``indices`` in their declared dtypes, each gathered into its own output.

        The same values as ``decode(gather(indices), names, steps)``, in one pass over the returned bytes:
        each column is gathered straight from storage (through its strided view, whatever the layout),
        so no row of compact columns is copied first; a narrowed column is widened from its gathered
        values and a derived field expanded from its gathered class indices. ``steps`` keeps the first
        steps of per-step fields (only those are gathered); every field comes back contiguous.
        """
        columns = self.columns
        layout = self.layout.columns
        out: dict[str, torch.Tensor] = {}
        for name in layout if names is None else names:
            field = self.scheme[name]
            column = columns[name]
            if steps is not None and field.per_step:
                column = column[:, :steps]
            value = column.index_select(0, indices)
            if layout[name].mask:
                value = self._derive({name: value}, name)
            elif value.dtype != field.dtype:
                value = value.to(field.dtype)
            out[name] = value
        return out

    def decode(
        self,
        rows: torch.Tensor,
        names: Iterable[str] | None = None,
        steps: int | None = None,
    ) -> dict[str, torch.Tensor]:
        """Return fields of ``rows`` in their declared dtypes.

        Columns stored in their declared dtype come back as views into
        ``rows``; narrowed columns are converted and derived fields computed.

        Args:
            rows: Rows of this storage's layout, e.g. from :meth:`gather`.
            names: Fields to return, all by default.
            steps: Keep only the first ``steps`` steps of per-step fields.
        """
        wanted = list(self.layout.columns if names is None else names)
        views = self.layout.views(rows, wanted)
        out: dict[str, torch.Tensor] = {}
        for name in wanted:
            field = self.scheme[name]
            if self.layout.columns[name].mask:
                value = self._derive(views, name)
            else:
                value = views[name]
                if value.dtype != field.dtype:
                    value = value.to(field.dtype)
            if steps is not None and field.per_step:
                value = value[:, :steps]
            out[name] = value
        return out

    def _derive(self, views: Mapping[str, torch.Tensor], name: str) -> torch.Tensor:
        """Compute derived field ``name`` from the class indices stored in its column."""
        derived = self.scheme[name].derived
        assert derived is not None
        return derived.decode(views[name]).to(self.scheme[name].dtype)

    def encode_derived(self, name: str, value: torch.Tensor) -> torch.Tensor | None:
        """Return the class indices that store ``value`` for derived field ``name``.

        Returns None when ``value`` cannot be held as indices (a row that is
        neither one-hot nor all zeros, or a multi-index source); the caller
        must then materialise the column before writing.
        """
        derived = self.scheme[name].derived
        assert derived is not None
        if self.scheme.item_shape(derived.source)[-1:] != (1,):
            return None
        return derived.encode(value)
