"""What the dataset readers and writers share: lazy imports of the extras, age order, dtype and scheme encodings."""

from __future__ import annotations

import contextlib
import importlib
import os
import shutil
from contextlib import AbstractContextManager
from pathlib import Path
from types import ModuleType
from typing import Any, cast

import numpy as np
import torch

from xreplay.errors import DatasetCorruptError
from xreplay.scheme import AUTO, Field, Scheme
from xreplay.storage import dtypes as _dtypes
from xreplay.storage.dtypes import torch_dtype
from xreplay.transforms import OneHot
from xreplay.writers import RingWriter

__all__ = [
    "age_slices",
    "decode_scheme",
    "encode_scheme",
    "numpy_dtype",
    "remove_quietly",
    "require",
    "torch_dtype",
    "writers_stopped",
]


def require(module: str) -> ModuleType:
    """Return the imported ``module`` of the ``datasets`` extra, or fail with the command that installs it.

    Raises:
        ImportError: ``module`` is not installed.
    """
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ImportError(
            f"xreplay.datasets needs {module.split('.')[0]} ({e}); install it with: pip install 'xreplay[datasets]'"
        ) from e


def age_slices(writer: RingWriter, first: int, count: int) -> list[slice]:
    """Return the slot slices of items ``first .. first + count - 1`` in age order (0 = the oldest stored).

    At most two slices: the run up to the end of the ring, then the wrapped run from slot 0.
    """
    oldest = writer.cursor if writer.size == writer.capacity else 0  # a full ring's oldest item is at the cursor
    start = (oldest + first) % writer.capacity
    head = min(count, writer.capacity - start)  # items before the end of the ring
    slices = [slice(start, start + head)]
    if count > head:
        slices.append(slice(0, count - head))  # the rest wrapped around to slot 0
    return slices


def numpy_dtype(dtype: torch.dtype) -> np.dtype:
    """Return the numpy dtype of a torch dtype.

    Raises:
        TypeError: numpy has no such dtype (e.g. bfloat16).
    """
    found = _dtypes.numpy_dtype(dtype)
    if found is None:
        raise TypeError(f"numpy has no dtype for {dtype}")
    return found


def _dtype_name(dtype: torch.dtype) -> str:
    """Return ``"float32"`` for ``torch.float32``."""
    return str(dtype).removeprefix("torch.")


def _named_dtype(name: Any, where: str) -> torch.dtype:
    """Return the torch dtype called ``name`` or raise DatasetCorruptError naming ``where``."""
    dtype = getattr(torch, str(name), None)
    if not isinstance(dtype, torch.dtype):
        raise DatasetCorruptError(f"{where}: unknown dtype {name!r}")
    return dtype


def encode_scheme(scheme: Scheme) -> dict[str, Any]:
    """Return ``scheme`` as a JSON-able dict (field order kept).

    Example:
        >>> s = Scheme({"obs": Field((3,)), "action": Field((1,), torch.int64, storage_dtype=AUTO)})
        >>> decode_scheme(encode_scheme(s), "here") == s
        True
    """
    fields = {}
    for name, field in scheme.items():
        storage = field.storage_dtype
        derived = field.derived
        fields[name] = {
            "shape": list(field.shape),
            "dtype": _dtype_name(field.dtype),
            "group": field.group,
            "per_step": field.per_step,
            "storage_dtype": storage if storage is None or storage == AUTO else _dtype_name(storage),  # type: ignore[arg-type]
            "one_hot": None
            if derived is None
            else {"source": derived.source, "num_classes": derived.num_classes, "dtype": _dtype_name(derived.dtype)},
        }
    return {"fields": fields, "groups": scheme.groups}


def decode_scheme(info: Any, where: str) -> Scheme:
    """Return the scheme encoded by :func:`encode_scheme`.

    Raises:
        DatasetCorruptError: ``info`` is not such an encoding (``where`` names its origin).
    """
    try:
        fields = {}
        for name, f in info["fields"].items():
            storage = f["storage_dtype"]
            one_hot = f["one_hot"]
            fields[name] = Field(
                shape=tuple(int(d) for d in f["shape"]),
                dtype=_named_dtype(f["dtype"], f"{where} field {name!r}"),
                group=f["group"],
                per_step=bool(f["per_step"]),
                storage_dtype=storage if storage is None or storage == AUTO else _named_dtype(storage, where),
                derived=None
                if one_hot is None
                else OneHot(one_hot["source"], int(one_hot["num_classes"]), _named_dtype(one_hot["dtype"], where)),
            )
        return Scheme(fields, {str(k): int(v) for k, v in info["groups"].items()})
    except DatasetCorruptError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise DatasetCorruptError(f"{where}: the scheme attribute is not a valid xreplay scheme ({e!r})") from e


def remove_quietly(path: str | os.PathLike[str]) -> None:
    """Remove a file or directory tree left by a failed write, ignoring errors."""
    target = Path(path)
    if target.is_dir():
        shutil.rmtree(target, ignore_errors=True)
    else:
        try:
            target.unlink()
        except OSError:
            pass


def writers_stopped(buffer: Any) -> AbstractContextManager[Any]:
    """Return the context holding ``buffer``'s mutation lock: no write changes its items while they are exported."""
    lock = getattr(buffer, "lock", None)
    return cast(AbstractContextManager[Any], lock) if hasattr(lock, "__enter__") else contextlib.nullcontext()
