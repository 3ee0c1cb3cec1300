"""Shared-memory segments: one file in ``/dev/shm`` per shared buffer, created by the learner.

A segment is a file on a memory file system (``/dev/shm`` on Linux; the
``XREPLAY_SHM_DIR`` environment variable names another folder) that every
process of a run maps into its address space. It starts with a header that
names its owner (the learner's pid and the start time of that process), its
size, a random token and a JSON description of the arrays that follow:

    offset 0   magic "XRSHM001", format version, state (creating/ready/closed), JSON length
    offset 128 JSON description (layout of the body), then padding to a page
    page       body: the arrays of :class:`~xreplay.shared.layout.SlotLayout`

Creation checks the free space of the file system first and fails with a
:class:`~xreplay.errors.CapacityError` stating the bytes needed and available,
before anything is created; the pages are then reserved with
``posix_fallocate`` so a full ``/dev/shm`` fails at creation, not with a
``SIGBUS`` on a later write. The owner unlinks the file on :meth:`Segment.close`
and at interpreter exit; a segment whose owner died without doing so (a crashed
learner) is *stale*: :func:`stale_segments` lists them, a learner asking for
the name of one gets a :class:`~xreplay.errors.StaleSegmentError`, and
:func:`remove_stale_segments` removes them. Nothing reuses one silently.

Example:
    >>> segment = Segment.create(4096, {"kind": "example"})
    >>> segment.description["kind"], segment.state == READY, os.path.exists(segment.path)
    ('example', True, True)
    >>> segment.close()
    >>> os.path.exists(segment.path)
    False
"""

from __future__ import annotations

import dataclasses
import json
import logging
import mmap
import os
import re
import secrets
import struct
import tempfile
import time
import weakref
from pathlib import Path
from typing import Any

import numpy as np

from xreplay.errors import BufferClosedError, CapacityError, SharedMemoryError, StaleSegmentError
from xreplay.shared.processes import process_alive, process_start_time

__all__ = [
    "CLOSED",
    "CREATING",
    "READY",
    "Segment",
    "SegmentInfo",
    "list_segments",
    "process_alive",
    "process_start_time",
    "remove_stale_segments",
    "segment_dir",
    "shm_space",
    "stale_segments",
]

log = logging.getLogger("xreplay.shared")

PREFIX = "xreplay-"
MAGIC = b"XRSHM001"
VERSION = 1
CREATING, READY, CLOSED = 0, 1, 2
_HEADER = struct.Struct("<8sIIIIQQQd16s")  # magic, version, state, json length, pad, size, pid, start, created, token
_JSON_AT = 128  # the JSON follows the 72-byte header
_STATE_AT = 12  # byte offset of the state word in the header
_PAGE = mmap.PAGESIZE
_NAME = re.compile(r"^[A-Za-z0-9._-]{1,200}$")


def segment_dir() -> Path:
    """Return the folder segments live in: ``$XREPLAY_SHM_DIR``, else ``/dev/shm``, else the temporary folder."""
    chosen = os.environ.get("XREPLAY_SHM_DIR")
    if chosen:
        return Path(chosen)
    if os.path.isdir("/dev/shm"):
        return Path("/dev/shm")
    return Path(tempfile.gettempdir())


def shm_space(directory: Path | None = None) -> tuple[int, int]:
    """Return ``(free, total)`` bytes of the file system that holds segments."""
    info = os.statvfs(directory or segment_dir())
    return int(info.f_bavail * info.f_frsize), int(info.f_blocks * info.f_frsize)


# -- segments ---------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SegmentInfo:
    """What the header of a segment file says.

    Attributes:
        path: The file.
        size: Its size in bytes.
        owner_pid: The pid of the learner that created it.
        owner_alive: Whether that process still runs.
        state: ``CREATING``, ``READY`` or ``CLOSED``.
        created: Creation time (seconds since the epoch).
        description: The JSON description of its arrays.
    """

    path: Path
    size: int
    owner_pid: int
    owner_alive: bool
    state: int
    created: float
    description: dict[str, Any]

    @property
    def stale(self) -> bool:
        """Return whether the segment outlived its owner (a crashed or killed learner)."""
        return not self.owner_alive


def _read_info(path: Path) -> SegmentInfo | None:
    """Return the header of ``path``, None when it is not an xreplay segment."""
    try:
        with open(path, "rb") as file:
            head = file.read(_JSON_AT)
            if len(head) < _HEADER.size:
                return None
            magic, version, state, length, _pad, size, pid, start, created, _token = _HEADER.unpack_from(head)
            if magic != MAGIC or version != VERSION:
                return None
            description = json.loads(file.read(length).decode("utf-8")) if length else {}
    except (OSError, ValueError):
        return None
    return SegmentInfo(path, int(size), int(pid), process_alive(int(pid), int(start)), int(state), created, description)


def list_segments(directory: Path | None = None) -> list[SegmentInfo]:
    """Return the xreplay segments in ``directory`` (the segment folder by default)."""
    folder = Path(directory or segment_dir())
    found = []
    for name in sorted(os.listdir(folder)):
        if name.startswith(PREFIX):
            info = _read_info(folder / name)
            if info is not None:
                found.append(info)
    return found


def stale_segments(directory: Path | None = None) -> list[SegmentInfo]:
    """Return the segments whose owner process is gone (left by a crashed learner)."""
    return [info for info in list_segments(directory) if info.stale]


def remove_stale_segments(directory: Path | None = None) -> list[Path]:
    """Delete the stale segments and return their paths (segments of running learners are kept)."""
    removed = []
    for info in stale_segments(directory):
        try:
            info.path.unlink()
        except FileNotFoundError:
            continue
        removed.append(info.path)
    return removed


def _describe_stale(infos: list[SegmentInfo]) -> str:
    """Return a one-line summary of stale segments for a message."""
    items = [f"{i.path} ({i.size / 2**20:.1f} MiB, pid {i.owner_pid}, {time.ctime(i.created)})" for i in infos[:5]]
    more = f" and {len(infos) - 5} more" if len(infos) > 5 else ""
    return ", ".join(items) + more


def _release(path: str, pid: int, mapping: mmap.mmap) -> None:
    """Mark the segment closed and remove its file, when called in the process that created it (not a fork)."""
    if os.getpid() != pid:
        return
    if not mapping.closed:
        struct.pack_into("<I", mapping, _STATE_AT, CLOSED)  # writers that still map it see this and fail typed
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


class Segment:
    """One mapped segment file: its header, its JSON description and its body.

    Create one with :meth:`create` (the learner) or :meth:`attach` (writers).
    Each process maps the file itself and keeps its own descriptor (on which
    writers take their reservation lock where it is ``flock``: such locks
    belong to an open file, and the kernel drops them when the process dies).
    """

    def __init__(
        self,
        path: Path,
        fd: int,
        mapping: mmap.mmap,
        token: bytes,
        description: dict[str, Any],
        owner: bool,
        owner_process: tuple[int, int] = (0, 0),
    ):
        """Wrap an open, mapped segment (use :meth:`create` or :meth:`attach`)."""
        self.path = path
        self.owner_process = owner_process if not owner else (os.getpid(), process_start_time())
        self.fd = fd
        self.mapping = mapping
        self.token = token
        self.description = description
        self.owner = owner
        self.body_offset = _body_offset(len(json.dumps(description).encode("utf-8")))
        self._finalizer = weakref.finalize(self, _release, str(path), os.getpid(), mapping) if owner else None

    @classmethod
    def create(cls, body_bytes: int, description: dict[str, Any], name: str | None = None) -> Segment:
        """Create, size and map a new segment owned by this process.

        Args:
            body_bytes: Bytes of the body (the arrays).
            description: JSON-able description stored in the header.
            name: File name after the ``xreplay-`` prefix; a unique one by default.

        Raises:
            CapacityError: The file system lacks the space; nothing was created.
            StaleSegmentError: ``name`` is held by a segment whose owner died.
            SharedMemoryError: ``name`` is invalid or held by a running learner.
        """
        text = json.dumps(description).encode("utf-8")
        body_at = _body_offset(len(text))
        size = body_at + int(body_bytes)
        folder = segment_dir()
        path = folder / (PREFIX + (name if name is not None else f"{os.getpid()}-{secrets.token_hex(6)}"))
        if name is not None and not _NAME.match(name):
            raise SharedMemoryError(f"segment name {name!r} must be 1-200 letters, digits, '.', '_' or '-'", path)
        stale = stale_segments(folder)
        if stale:
            log.warning(
                "stale shared-memory segments of crashed runs: %s; remove them with "
                "xreplay.shared.remove_stale_segments()",
                _describe_stale(stale),
            )
        if os.path.exists(path):
            info = _read_info(path)
            if info is not None and info.stale:
                raise StaleSegmentError(
                    f"segment {path} was left by a run that crashed (pid {info.owner_pid}, created "
                    f"{time.ctime(info.created)}, {info.size / 2**20:.1f} MiB); it is not reused: remove it "
                    f"with xreplay.shared.remove_stale_segments() or choose another name",
                    path,
                )
            owner = f"learner pid {info.owner_pid}" if info is not None else "a file that is not an xreplay segment"
            raise SharedMemoryError(f"segment {path} exists already ({owner}); choose another name", path)
        free, total = shm_space(folder)
        if size > free:
            raise CapacityError(
                f"the shared buffer needs {size} bytes ({size / 2**20:.1f} MiB) in {folder}, which has "
                f"{free} bytes ({free / 2**20:.1f} MiB) free of {total / 2**20:.1f} MiB; lower the capacity, "
                f"remove stale segments (xreplay.shared.remove_stale_segments()) or enlarge {folder} "
                f"(e.g. docker --shm-size)"
            )
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise SharedMemoryError(f"segment {path} was created by another process meanwhile", path) from None
        token = secrets.token_bytes(16)
        try:
            os.ftruncate(fd, body_at)
            header = _HEADER.pack(
                MAGIC, VERSION, CREATING, len(text), 0, size, os.getpid(), process_start_time(), time.time(), token
            )
            os.pwrite(fd, header, 0)  # owner first: a half-created segment is never taken for stale
            os.pwrite(fd, text, _JSON_AT)
            _reserve(fd, size, path, folder)
            mapping = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        except BaseException:
            os.close(fd)
            os.unlink(path)
            raise
        segment = cls(path, fd, mapping, token, description, owner=True)
        segment.state = READY
        return segment

    @classmethod
    def attach(cls, path: str | os.PathLike[str], token: bytes | None = None) -> Segment:
        """Map an existing segment (in a writer process).

        Raises:
            BufferClosedError: The segment is gone or closed (its learner closed the buffer).
            SharedMemoryError: The file is not a ready xreplay segment, or ``token`` names another one.
        """
        path = Path(path)
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            raise BufferClosedError(f"shared buffer {path} is gone: its learner closed it (or exited)") from None
        try:
            head = os.pread(fd, _JSON_AT, 0)
            if len(head) < _HEADER.size:
                raise SharedMemoryError(f"{path} is not an xreplay shared-memory segment", path)
            magic, version, state, length, _pad, size, pid, start, _created, found = _HEADER.unpack_from(head)
            if magic != MAGIC or version != VERSION:
                raise SharedMemoryError(f"{path} is not an xreplay shared-memory segment of version {VERSION}", path)
            if token is not None and found != token:
                raise SharedMemoryError(f"{path} is another segment than the one this handle was made for", path)
            if state == CLOSED:
                raise BufferClosedError(f"shared buffer {path} was closed by its learner")
            if state != READY:
                raise SharedMemoryError(f"segment {path} is not ready (state {state})", path)
            description = json.loads(os.pread(fd, length, _JSON_AT).decode("utf-8"))
            mapping = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        except BaseException:
            os.close(fd)
            raise
        return cls(path, fd, mapping, found, description, owner=False, owner_process=(int(pid), int(start)))

    def owner_alive(self) -> bool:
        """Return whether the learner that created the segment still runs."""
        return process_alive(*self.owner_process)

    @property
    def size(self) -> int:
        """Return the size of the mapping in bytes."""
        return len(self.mapping)

    @property
    def state(self) -> int:
        """Return ``CREATING``, ``READY`` or ``CLOSED`` as stored in the header."""
        return int(struct.unpack_from("<I", self.mapping, _STATE_AT)[0])

    @state.setter
    def state(self, value: int) -> None:
        """Store the state in the header."""
        struct.pack_into("<I", self.mapping, _STATE_AT, value)

    def state_view(self) -> np.ndarray:
        """Return the header's state word as a one-element uint32 array (a cheap check on every write)."""
        return np.frombuffer(self.mapping, dtype=np.uint32, count=1, offset=_STATE_AT)

    def array(self, offset: int, dtype: Any, shape: tuple[int, ...]) -> np.ndarray:
        """Return a numpy view of ``shape`` at ``offset`` bytes into the body."""
        count = int(np.prod(shape, dtype=np.int64))
        return np.frombuffer(self.mapping, dtype=dtype, count=count, offset=self.body_offset + offset).reshape(shape)

    def close(self) -> None:
        """Unmap the segment; the owner also marks it closed and removes the file (writers then fail typed)."""
        if self._finalizer is not None:
            self._finalizer()  # at most once; also runs at interpreter exit if close() never comes
        try:
            self.mapping.close()
        except BufferError:
            pass  # arrays still view it (a caller kept one): the mapping goes when they do
        try:
            os.close(self.fd)
        except OSError:
            pass


def _body_offset(json_length: int) -> int:
    """Return the page-aligned offset of the body after a header with ``json_length`` bytes of JSON."""
    return -(-(_JSON_AT + json_length) // _PAGE) * _PAGE


def _reserve(fd: int, size: int, path: Path, folder: Path) -> None:
    """Allocate every page of the segment now, so a full file system fails here and not later with SIGBUS."""
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as exc:
        if exc.errno in (getattr(os, "EOPNOTSUPP", -1), 95):  # no fallocate on this file system: size it only
            os.ftruncate(fd, size)
            return
        free, total = shm_space(folder)
        raise CapacityError(
            f"could not reserve {size} bytes ({size / 2**20:.1f} MiB) for {path}: {exc.strerror}; "
            f"{folder} has {free / 2**20:.1f} MiB free of {total / 2**20:.1f} MiB"
        ) from exc
