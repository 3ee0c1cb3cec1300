"""The version of xreplay (one place, read by the package, its checkpoints and its command line)."""

__version__ = "0.1.0"
