"""Resource checks made before anything is allocated: counts, devices and memory limits.

Every buffer checks the size of what it is about to allocate (its storage,
its priority trees, a sample) against the memory the process may still use:
the smallest of the memory the system has available (``MemAvailable``), the
address space left under the process's ``RLIMIT_AS`` and the room left under
its cgroup's memory limit (v2 ``memory.max`` or v1 ``memory.limit_in_bytes``,
ancestors included). On CUDA the limit is the device's free memory. A size
over the limit raises :class:`~xreplay.errors.CapacityError` stating the size
needed and the limit, before any allocation; sizes under 64 MiB skip the
look-up, which reads a few small files.
"""

from __future__ import annotations

import dataclasses
import numbers
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from xreplay.errors import ArgumentError, CapacityError, DeviceError, IndexOutOfRangeError

__all__ = ["MemoryLimit", "as_count", "as_device", "check_allocation", "check_index_range", "memory_limit"]

CHECK_ABOVE = 2**26  # allocations of at most 64 MiB are not checked
_BOOLS = (bool, np.bool_)
_CGROUP_ROOT = Path("/sys/fs/cgroup")
_PROC_CGROUP = Path("/proc/self/cgroup")


def as_count(value: Any, what: str, minimum: int = 0) -> int:
    """Return ``value`` as an int after checking it is an integer (not a bool) of at least ``minimum``.

    Args:
        value: The argument (a Python or numpy integer).
        what: Its name in the message (``"capacity"``, ``"sample size"``).
        minimum: The smallest value accepted.

    Raises:
        ArgumentError: ``value`` is not an integer, is a bool, or is below ``minimum``.

    Example:
        >>> as_count(np.int64(3), "capacity", minimum=1)
        3
    """
    if type(value) is int and value >= minimum:  # the common case, without the ABC check
        return value
    if isinstance(value, _BOOLS) or not isinstance(value, numbers.Integral):
        raise ArgumentError(f"{what} must be an int >= {minimum}, received {value!r} ({type(value).__name__})")
    count = int(value)
    if count < minimum:
        raise ArgumentError(f"{what} must be an int >= {minimum}, received {count}")
    return count


def as_device(device: Any, what: str = "device") -> torch.device:
    """Return ``device`` as a ``torch.device`` after checking that it names a usable device.

    Raises:
        DeviceError: ``device`` is not a device name (``"gpu"``), is the ``meta``
            device (which holds no data), or names a device torch cannot use here
            (``"cuda"`` without a GPU, ``"cuda:3"`` with one GPU).
    """
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise DeviceError(
            f"{what} must be a torch device such as 'cpu', 'cuda' or 'cuda:0', received {device!r}"
        ) from None
    if parsed.type == "cpu":
        return parsed
    if parsed.type == "meta":
        raise DeviceError(f"{what} 'meta' holds no data; use 'cpu' or 'cuda'")
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"{what} {device!r} needs CUDA, but torch sees no CUDA device here; use 'cpu'")
    try:
        torch.empty(0, device=parsed)  # the cheapest proof that the device exists and works
    except (RuntimeError, AssertionError, ValueError) as exc:
        raise DeviceError(f"{what} {device!r} cannot be used here: {exc}") from None
    return parsed


def check_index_range(indices: np.ndarray, size: int, what: str, where: str) -> None:
    """Refuse int64 ``indices`` outside ``[0, size)``, naming the first one (one reduction when all are inside).

    The message reads ``"{what} {index} is outside {where}"``, ``{size}`` in ``where`` replaced by ``size``.

    Raises:
        IndexOutOfRangeError: An index is negative or at least ``size``.
    """
    if indices.size and not indices.view(np.uint64).max() < size:  # negatives are huge as unsigned
        bad = int(indices[(indices < 0) | (indices >= size)].reshape(-1)[0])
        raise IndexOutOfRangeError(f"{what} {bad} is outside {where.format(size=size)}")


@dataclasses.dataclass(frozen=True)
class MemoryLimit:
    """The bytes a process may still allocate on a device, and where each bound comes from.

    Attributes:
        nbytes: The smallest bound, or None when no bound is known.
        bounds: Name of each bound (``"available memory"``, ``"RLIMIT_AS"``,
            ``"cgroup /sys/fs/cgroup/memory.max"``, ``"free CUDA memory"``) -> bytes.
    """

    nbytes: int | None
    bounds: dict[str, int]

    def describe(self) -> str:
        """Return the bounds as text, smallest first."""
        parts = sorted(self.bounds.items(), key=lambda item: item[1])
        return ", ".join(f"{name} {_mib(size)}" for name, size in parts)


def memory_limit(device: torch.device | str = "cpu") -> MemoryLimit:
    """Return the bytes this process may still allocate on ``device`` (see the module docstring)."""
    device = torch.device(device)
    bounds: dict[str, int] = {}
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        bounds["free CUDA memory"] = int(free)
    elif device.type == "cpu":
        for name, value in (
            ("available memory", _available_memory()),
            ("RLIMIT_AS", _address_space_left()),
            *_cgroup_room(),
        ):
            if value is not None:
                bounds[name] = max(int(value), 0)
    return MemoryLimit(min(bounds.values()) if bounds else None, bounds)


def check_allocation(nbytes: int, device: torch.device | str, what: str | Callable[[], str], fix: str) -> None:
    """Raise CapacityError when ``nbytes`` more bytes on ``device`` exceed :func:`memory_limit`.

    Args:
        nbytes: The size about to be allocated.
        device: Where it goes.
        what: What is allocated (``"storage for 5000 episodes x 27912 bytes"``), or a callable
            returning it (so hot paths format nothing unless they fail).
        fix: How to need less (``"lower the capacity"``).

    Raises:
        CapacityError: ``nbytes`` is larger than the limit; the message states both.
    """
    if nbytes <= CHECK_ABOVE:
        return
    limit = memory_limit(device)
    if limit.nbytes is not None and nbytes > limit.nbytes:
        what = what() if callable(what) else what
        raise CapacityError(
            f"{what} needs {_mib(nbytes)} on {torch.device(device)}, but this process may allocate at most "
            f"{_mib(limit.nbytes)} there ({limit.describe()}); {fix}"
        )


def _mib(nbytes: int) -> str:
    """Return ``nbytes`` in MiB (GiB when large) as text."""
    if nbytes >= 2**34:
        return f"{nbytes / 2**30:,.1f} GiB"
    return f"{nbytes / 2**20:,.1f} MiB"


def _available_memory() -> int | None:
    """Return the system's available memory (``MemAvailable``, else free physical pages), None if unknown."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def _address_space_left() -> int | None:
    """Return the address space left under ``RLIMIT_AS`` (None when unlimited or unknown)."""
    try:
        import resource
    except ImportError:  # not on this platform (Windows)
        return None
    soft, _hard = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY or soft < 0:
        return None
    return int(soft) - _virtual_size()


def _virtual_size() -> int:
    """Return this process's virtual memory size in bytes (0 when it cannot be read)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        return 0


def _cgroup_room() -> list[tuple[str, int]]:
    """Return ``(name, bytes left)`` for each memory limit of this process's cgroups and their ancestors."""
    try:
        lines = _PROC_CGROUP.read_text().splitlines()
    except OSError:
        return []
    room = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        controllers, path = parts[1], parts[2].lstrip("/")
        if controllers == "":  # cgroup v2: one unified hierarchy
            base, limit_file, usage_file = _CGROUP_ROOT, "memory.max", "memory.current"
        elif "memory" in controllers.split(","):  # cgroup v1: the memory controller's hierarchy
            base, limit_file, usage_file = _CGROUP_ROOT / "memory", "memory.limit_in_bytes", "memory.usage_in_bytes"
        else:
            continue
        folder = base / path
        while True:  # the cgroup itself, then every ancestor up to the mount point
            limit = _read_int(folder / limit_file)
            if limit is not None and limit < 2**60:  # v1 reports "no limit" as a huge number
                room.append((f"cgroup {folder / limit_file}", limit - (_read_int(folder / usage_file) or 0)))
            if folder == base or base not in folder.parents:
                break
            folder = folder.parent
    return room


def _read_int(path: Path) -> int | None:
    """Return the integer in a one-line file, None for ``max``, a missing file or other text."""
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
