"""dtype helpers: torch and numpy dtypes mapped to each other, their kinds, and lossless range checks."""

from __future__ import annotations

import functools

import numpy as np
import torch

from xreplay.errors import FieldValueError

__all__ = [
    "check_fits",
    "covering_dtype",
    "dtype_range",
    "exceeds",
    "numpy_dtype",
    "numpy_kind",
    "torch_dtype",
    "torch_kind",
    "value_range",
]


def numpy_kind(dtype: np.dtype) -> str:
    """Return 'b' (bool), 'i' (integer), 'f' (floating) or 'c' (complex) for a numpy dtype."""
    return "i" if dtype.kind in "iu" else dtype.kind


def torch_kind(dtype: torch.dtype) -> str:
    """Return 'b' (bool), 'i' (integer), 'f' (floating) or 'c' (complex) for a torch dtype."""
    if dtype == torch.bool:
        return "b"
    return "f" if dtype.is_floating_point else ("c" if dtype.is_complex else "i")


@functools.cache
def numpy_dtype(dtype: torch.dtype) -> np.dtype | None:
    """Return the numpy dtype of a torch dtype, or None when numpy has none (e.g. bfloat16).

    Example:
        >>> numpy_dtype(torch.float32), numpy_dtype(torch.bfloat16)
        (dtype('float32'), None)
    """
    try:
        return torch.empty(0, dtype=dtype).numpy().dtype
    except TypeError:
        return None


def torch_dtype(dtype: np.dtype | str) -> torch.dtype:
    """Return the torch dtype of a numpy dtype (or its name); non-native byte orders map to the native one."""
    return torch.from_numpy(np.zeros(0, dtype=np.dtype(dtype).newbyteorder("="))).dtype


# Narrowest first; "auto" storage widens along this ladder.
_INTEGER_LADDER = (torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


@functools.cache
def dtype_range(dtype: torch.dtype) -> tuple[int, int] | None:
    """Return the inclusive value range of an integer or bool dtype, None for floats."""
    if dtype == torch.bool:
        return (0, 1)
    if dtype.is_floating_point or dtype.is_complex:
        return None
    info = torch.iinfo(dtype)
    return (int(info.min), int(info.max))


def value_range(values: torch.Tensor) -> tuple[int, int] | None:
    """Return (min, max) of an integer or bool tensor as Python ints, None when empty."""
    if values.numel() == 0:
        return None
    if values.device.type == "cpu" and values.dtype != torch.bfloat16:
        array = values.numpy()  # numpy's reductions cost less per call on small CPU arrays
        return (int(array.min()), int(array.max()))
    if values.dtype == torch.bool:
        return (int(values.all()), int(values.any()))
    lo, hi = torch.aminmax(values)
    return (int(lo), int(hi))


def covering_dtype(low: int, high: int, at_least: torch.dtype = torch.bool) -> torch.dtype:
    """Return the narrowest ladder dtype that holds [low, high] and every value of ``at_least``."""
    base = dtype_range(at_least) or (low, high)
    lo, hi = min(low, base[0]), max(high, base[1])
    for dtype in _INTEGER_LADDER:
        rng = dtype_range(dtype)
        assert rng is not None
        if rng[0] <= lo and hi <= rng[1]:
            return dtype
    raise FieldValueError(f"values in [{lo}, {hi}] do not fit in int64")


_UNSIGNED = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}


def exceeds(values: torch.Tensor, high: int) -> bool:
    """Return whether a tensor holds a value outside ``[0, high]`` (one vectorized comparison on CPU integers).

    Negative integers are caught too: viewed as unsigned integers of the same size they are huge.
    Float tensors are compared as they are.
    """
    if values.device.type == "cpu" and values.dtype != torch.bool and not values.is_floating_point():
        array = values.numpy()
        return bool((array.view(_UNSIGNED[array.itemsize]) > high).any())
    return bool(((values < 0) | (values > high)).any())


def check_fits(name: str, values: torch.Tensor, storage: torch.dtype) -> tuple[int, int] | None:
    """Raise FieldValueError unless every value of ``values`` is held exactly by ``storage``.

    Returns:
        The (min, max) of the values when an integer range check was made, else None.
    """
    if values.numel() == 0 or values.dtype == storage:
        return None
    target = dtype_range(storage)
    if target is None:
        # Float storage: exact when the round trip through storage reproduces the values.
        if not torch.equal(values.to(storage).to(values.dtype), values):
            raise FieldValueError(
                f"field {name!r}: values of dtype {values.dtype} are not held exactly by storage dtype {storage}"
            )
        return None
    if values.is_complex():
        raise FieldValueError(f"field {name!r}: complex values cannot be stored as {storage}")
    if values.is_floating_point():
        if not bool(torch.isfinite(values).all()):
            bad = values[~torch.isfinite(values)].reshape(-1)[0].item()
            raise FieldValueError(f"field {name!r}: {bad} cannot be stored as {storage}, which holds finite integers")
        if not torch.equal(values, values.trunc()):
            raise FieldValueError(f"field {name!r}: non-integral values cannot be stored as {storage}")
    elif target[0] == 0 and not exceeds(values, target[1]):
        return None  # unsigned storage: one comparison settles it (the range is computed only to report)
    rng = value_range(values)
    assert rng is not None
    if rng[0] < target[0] or rng[1] > target[1]:
        raise FieldValueError(
            f"field {name!r}: values span [{rng[0]}, {rng[1]}] but storage dtype "
            f"{storage} holds [{target[0]}, {target[1]}]; declare a wider storage_dtype"
        )
    return rng
