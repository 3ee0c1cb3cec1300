"""What a checkpoint load checks before it allocates: the memory this process may still use."""

from __future__ import annotations

from pathlib import Path

from xreplay.errors import CheckpointTooLargeError

__all__ = ["available_memory", "check_fits_memory"]


def _read_int(file: str, *keys: str) -> int | None:
    """Return the first integer found after one of ``keys`` in a /proc or /sys text file, None if absent."""
    try:
        with open(file) as handle:
            text = handle.read()
    except OSError:
        return None
    if not keys:
        text = text.strip()
        return int(text) if text.isdigit() else None
    for line in text.splitlines():
        for key in keys:
            if line.startswith(key):
                parts = line[len(key) :].split()
                if parts and parts[0].isdigit():
                    return int(parts[0]) * (1024 if line.rstrip().endswith("kB") else 1)
    return None


def available_memory() -> int | None:
    """Return the bytes this process may still allocate: the least of free memory, its cgroup and RLIMIT_AS."""
    limits = [_read_int("/proc/meminfo", "MemAvailable:")]
    high, used = _read_int("/sys/fs/cgroup/memory.max"), _read_int("/sys/fs/cgroup/memory.current")
    if high is not None and used is not None:
        limits.append(max(high - used, 0))
    try:
        import resource

        soft, _hard = resource.getrlimit(resource.RLIMIT_AS)
        size = _read_int("/proc/self/status", "VmSize:")
        if soft != resource.RLIM_INFINITY and size is not None:
            limits.append(max(soft - size, 0))
    except (ImportError, OSError, ValueError):
        pass
    known = [x for x in limits if x is not None]
    return min(known) if known else None


def check_fits_memory(path: Path, needed: int, what: str) -> None:
    """Raise CheckpointTooLargeError when ``needed`` bytes exceed the memory this process may allocate."""
    free = available_memory()
    if free is not None and needed > free:
        raise CheckpointTooLargeError(
            f"loading {path} needs {needed / 2**30:.2f} GiB of memory for {what}, but this process may allocate "
            f"{free / 2**30:.2f} GiB (free memory, cgroup and RLIMIT_AS); load it with mmap=True or where more "
            f"memory is available",
            path,
        )
