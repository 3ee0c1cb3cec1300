"""Versioned, atomic on-disk snapshots of buffer state."""

from xreplay.persistence.snapshot import FORMAT_VERSION, read_snapshot, write_snapshot

__all__ = ["FORMAT_VERSION", "read_snapshot", "write_snapshot"]
