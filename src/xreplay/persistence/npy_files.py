"""The ``.npy`` header of each array file of a checkpoint (format 3), and its check on load.

Since format 3 every base array file (``<name>.gNNNNNN.npy``) and every
:class:`~xreplay.storage.MemmapStorage` rows file (``rows.live-NNNNNN.npy``) is a
standard ``.npy`` file: a header padded to 4096 bytes
(:func:`~xreplay.storage.npy.npy_header`), then exactly the bytes format 2 wrote
raw. The header follows from ``metadata.json`` alone: an array's ``dtype`` and
``shape``, except the ``rows`` of a checkpoint whose ``structure`` holds an
encoded ``scheme`` and ``layout`` (episode buffers, memmap storages, PyMARL
buffers), whose header describes ``shape[0]`` records of the layout's
:func:`~xreplay.storage.npy.record_dtype`. The CRC-32 in the metadata covers the
data, not the header; a load compares the header byte for byte with the one the
metadata implies. Raw files of formats 1 and 2 (``.bin``) have no header.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import numpy as np

from xreplay.errors import CheckpointCorruptError, CheckpointError, XReplayError
from xreplay.persistence.codec import decode_layout, decode_scheme
from xreplay.storage.npy import npy_header, record_dtype

__all__ = ["array_header", "check_header", "file_headers", "record_dtypes"]

_RECORDS = "rows"  # the one array stored as records of the row layout


def record_dtypes(structure: dict[str, Any]) -> dict[str, np.dtype]:
    """Return ``{"rows": record dtype}`` when ``structure`` holds a scheme and row layout that decode, else ``{}``."""
    scheme, layout = structure.get("scheme"), structure.get("layout")
    if not isinstance(scheme, dict) or not isinstance(layout, dict):
        return {}
    try:
        text = json.dumps([scheme, layout])  # a save or load asks for the same structure several times
    except (TypeError, ValueError):
        return {}
    record = _record_dtype(text)
    return {} if record is None else {_RECORDS: record}


@functools.lru_cache(maxsize=64)
def _record_dtype(text: str) -> np.dtype | None:
    """Return the record dtype of the JSON ``[scheme, layout]`` in ``text``, None when it does not decode."""
    scheme, layout = json.loads(text)
    try:
        return record_dtype(decode_layout(decode_scheme(scheme), layout))
    except (CheckpointError, XReplayError, KeyError, TypeError, ValueError, IndexError, AttributeError, OverflowError):
        return None  # not an encoded layout (another kind's structure): the plain header applies


def _file_view(name: str, dtype: np.dtype, shape: tuple[int, ...], records: dict[str, np.dtype]) -> tuple:
    """Return the (dtype, shape) the ``.npy`` header of array ``name`` states."""
    record = records.get(name)
    if record is not None and dtype == np.uint8 and len(shape) == 2 and shape[1] == record.itemsize:
        return record, shape[:1]
    return dtype, shape


def array_header(name: str, entry: dict[str, Any], records: dict[str, np.dtype]) -> bytes:
    """Return the ``.npy`` header of array ``name`` with ``entry``'s ``dtype`` and ``shape``."""
    dtype, shape = _file_view(name, np.dtype(entry["dtype"]), tuple(int(d) for d in entry["shape"]), records)
    return npy_header(dtype, shape)


def file_headers(document: dict[str, Any]) -> dict[str, bytes]:
    """Return, per array of a checked document, the bytes its file starts with before the data (b"" for ``.bin``)."""
    records = record_dtypes(document["structure"])
    return {
        name: array_header(name, entry, records) if str(entry["file"]).endswith(".npy") else b""
        for name, entry in document["arrays"].items()
    }


def check_header(file: Path, expected: bytes) -> None:
    """Raise CheckpointCorruptError unless ``file`` starts with the ``expected`` header (nothing to check when empty).

    The caller checked the file's size first.
    """
    if not expected:
        return
    with open(file, "rb", buffering=0) as stream:
        found = stream.read(len(expected))
    if found != expected:
        where = next((i for i, (a, b) in enumerate(zip(found, expected, strict=False)) if a != b), len(found))
        raise CheckpointCorruptError(
            f"checkpoint file {file} does not start with the {len(expected)}-byte .npy header that metadata.json "
            f"implies for its dtype and shape (they differ from byte {where}): it is corrupted or was rewritten; "
            f"restore it from a copy or load another checkpoint",
            file,
        )
