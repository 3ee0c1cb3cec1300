"""A code-free encoding of Python values: what a checkpoint can hold without unpickling.

:func:`encode` turns a value built from ``None``, bools, ints, floats,
complex numbers, strings, bytes, lists, tuples, dicts, sets, deques, numpy
arrays and scalars of numeric, bool or string dtypes, and dense torch tensors
into a JSON tree plus byte segments (the arrays' raw bytes). :func:`decode`
rebuilds it without ever calling a constructor named by the data: every node
is one of the tags below, checked before use, so a crafted checkpoint can at
worst be refused. Anything else (instances of user classes, dict subclasses,
sparse tensors...) is pickled into a segment under the tag ``"p"`` and its type
is reported; decoding one needs ``trusted=True``, since unpickling runs code
chosen by whoever wrote the data.

Tags: a JSON scalar or list stands for itself; a JSON object of one key, the
tag, for anything else: ``D`` a dict with string keys (a JSON object), ``d``
any other dict (key/value pairs), ``u`` tuple, ``s`` set, ``f`` frozenset,
``q`` deque (maxlen, items), ``c`` complex, ``b`` bytes, ``a`` numpy array,
``n`` numpy scalar, ``T`` torch tensor, ``r`` a record (``make_record``),
``p`` pickle.

Example:
    >>> tree, segments, unsafe = encode({"obs": np.arange(3), "n": (1, 2.5)})
    >>> offsets = np.cumsum([0] + [len(s) for s in segments])
    >>> data = np.frombuffer(b"".join(segments), dtype=np.uint8)
    >>> value = decode(tree, data, offsets, trusted=False, where="example")
    >>> value["obs"].tolist(), value["n"], unsafe
    ([0, 1, 2], (1, 2.5), set())
"""

from __future__ import annotations

import collections
import json
import math
import pickle
import re
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from xreplay.errors import CheckpointCorruptError, UntrustedCheckpointError

__all__ = ["decode", "encode"]

_NUMPY_DTYPE = re.compile(r"^[<>|=]?(b1|[iu][1248]|f[248]|c(8|16)|[SU]\d{1,6})$")
_TORCH_DTYPES = {
    str(d).removeprefix("torch."): d
    for d in (
        torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.float16,
        torch.bfloat16, torch.float32, torch.float64, torch.complex64, torch.complex128,
    )
}  # fmt: skip
_SCALARS = (type(None), bool, int, float, str)
_STR_KEYS: tuple[set[type], ...] = ({str}, set())
_PLAIN_DTYPES: dict[str, np.dtype | None] = {}  # dtype string -> the dtype, None when not plain (memo)


def _plain_dtype(name: Any) -> np.dtype | None:
    """Return the numpy dtype ``name`` names when it is a plain number, bool or string dtype, else None."""
    if not isinstance(name, str):
        return None
    found = _PLAIN_DTYPES.get(name, False)
    if found is False:
        found = np.dtype(name) if _NUMPY_DTYPE.match(name) else None
        if len(_PLAIN_DTYPES) < 256:
            _PLAIN_DTYPES[name] = found
    return found  # type: ignore[return-value]


class _Encoder:
    """One encoding pass: the byte segments written and the types that had to be pickled."""

    def __init__(self, record_type: type | None) -> None:
        self.segments: list[bytes | memoryview] = []
        self.unsafe: set[str] = set()
        self.record_type = record_type
        self.encoders: dict[type, Callable[[Any], Any]] = {
            list: lambda x: [self.one(e) for e in x],
            dict: self.mapping,
            tuple: lambda x: {"u": [self.one(e) for e in x]},
            set: lambda x: {"s": [self.one(e) for e in x]},
            frozenset: lambda x: {"f": [self.one(e) for e in x]},
            collections.deque: lambda x: {"q": [x.maxlen, [self.one(e) for e in x]]},
            complex: lambda x: {"c": [x.real, x.imag]},
            bytes: lambda x: {"b": self.segment(x)},
            np.ndarray: self.array,
            torch.Tensor: self.tensor,
        }
        if record_type is not None:
            self.encoders[record_type] = lambda x: {"r": [self.one(x.data), self.one(x.index), self.one(x.meta)]}

    def mapping(self, x: dict) -> Any:
        """Encode a dict: a JSON object when every key is a string, else key/value pairs."""
        if set(map(type, x)) in _STR_KEYS:
            return {"D": {k: v if type(v) in _SCALARS else self.one(v) for k, v in x.items()}}
        return {"d": [[self.one(k), self.one(v)] for k, v in x.items()]}

    def segment(self, data: bytes | memoryview) -> int:
        """Add a byte segment; return its number."""
        self.segments.append(data)
        return len(self.segments) - 1

    def array(self, x: np.ndarray) -> Any:
        """Encode a numpy array of a plain dtype (else pickle it)."""
        if _plain_dtype(x.dtype.str) is None:
            return self.pickled(x)
        return {"a": [x.dtype.str, list(x.shape), self.segment(np.ascontiguousarray(x).tobytes())]}

    def tensor(self, x: torch.Tensor) -> Any:
        """Encode a dense torch tensor of a plain dtype (else pickle it)."""
        name = str(x.dtype).removeprefix("torch.")
        if x.layout != torch.strided or x.is_quantized or name not in _TORCH_DTYPES or x.device.type == "meta":
            return self.pickled(x)
        flat = x.detach().cpu().contiguous().reshape(-1)
        data = flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b""
        return {"T": [name, list(x.shape), self.segment(data), bool(x.requires_grad), str(x.device)]}

    def pickled(self, x: Any) -> Any:
        """Pickle a value the encoding cannot hold, noting its type."""
        self.unsafe.add(f"{type(x).__module__}.{type(x).__qualname__}")
        return {"p": self.segment(pickle.dumps(x, protocol=pickle.HIGHEST_PROTOCOL))}

    def one(self, x: Any) -> Any:
        """Encode one value."""
        kind = type(x)
        if kind in _SCALARS:
            return x
        encoder = self.encoders.get(kind)
        if encoder is not None:
            return encoder(x)
        if isinstance(x, np.generic) and _plain_dtype(x.dtype.str) is not None:
            return {"n": [x.dtype.str, self.segment(x.tobytes())]}
        return self.pickled(x)


def encode(value: Any, record_type: type | None = None) -> tuple[bytes, list[bytes | memoryview], set[str]]:
    """Return ``(tree, segments, unsafe)``: the JSON tree (bytes), the byte segments, and the pickled types.

    ``record_type`` (a ``BufferedData``-like class with ``data``, ``index``, ``meta``) is stored as a record.
    """
    encoder = _Encoder(record_type)
    tree = json.dumps(encoder.one(value), separators=(",", ":")).encode("utf-8")
    return tree, encoder.segments, encoder.unsafe


class _Decoder:
    """One decoding pass over checked byte segments."""

    def __init__(self, data: np.ndarray, offsets: np.ndarray, trusted: bool, make_record: Any, where: str) -> None:
        self.data, self.offsets, self.trusted, self.make_record, self.where = data, offsets, trusted, make_record, where
        self.decoders: dict[str, Callable[[Any], Any]] = {
            "D": self.mapping,
            "d": lambda v: {self.one(k): self.one(e) for k, e in self.pairs(v)},
            "u": lambda v: tuple(self.one(e) for e in self.items(v)),
            "s": lambda v: {self.one(e) for e in self.items(v)},
            "f": lambda v: frozenset(self.one(e) for e in self.items(v)),
            "q": self.deque,
            "c": lambda v: complex(*self.numbers(v, 2)),
            "b": lambda v: bytes(self.segment(v)),
            "a": self.array,
            "n": self.scalar,
            "T": self.tensor,
            "r": self.record,
            "p": self.pickled,
        }

    def bad(self, what: str) -> CheckpointCorruptError:
        """Return the error for a node that breaks the encoding."""
        return CheckpointCorruptError(
            f"{self.where}: the stored records hold {what}; the payload is corrupted", self.where
        )

    def mapping(self, v: Any) -> dict:
        """Decode a dict with string keys."""
        if type(v) is not dict:
            raise self.bad("a malformed dict")
        return {k: e if type(e) in _SCALARS else self.one(e) for k, e in v.items()}

    def items(self, v: Any) -> list:
        """Return a node's list of items."""
        if not isinstance(v, list):
            raise self.bad(f"a malformed node ({str(v)[:40]})")
        return v

    def pairs(self, v: Any) -> list:
        """Return a dict node's key/value pairs."""
        items = self.items(v)
        if not all(isinstance(p, list) and len(p) == 2 for p in items):
            raise self.bad("a malformed dict")
        return items

    def numbers(self, v: Any, n: int) -> list:
        """Return ``n`` numbers of a node."""
        items = self.items(v)
        if len(items) != n or not all(type(e) in (int, float) for e in items):
            raise self.bad("a malformed number")
        return items

    def segment(self, index: Any) -> np.ndarray:
        """Return byte segment ``index`` (a view of the payload)."""
        if type(index) is not int or not 0 <= index < len(self.offsets) - 1:
            raise self.bad(f"a reference to byte segment {str(index)[:20]} of {len(self.offsets) - 1}")
        return self.data[int(self.offsets[index]) : int(self.offsets[index + 1])]

    def shaped(self, raw: np.ndarray, itemsize: int, shape: Any) -> tuple[int, ...]:
        """Return ``shape`` after checking it describes exactly the segment's bytes."""
        if type(shape) is not list or len(shape) > 32:
            raise self.bad(f"an invalid shape {str(shape)[:40]}")
        for d in shape:
            if type(d) is not int or d < 0:
                raise self.bad(f"an invalid shape {str(shape)[:40]}")
        if math.prod(shape) * itemsize != raw.size:
            raise self.bad(f"an array of shape {shape} over {raw.size} bytes")
        return tuple(shape)

    def deque(self, v: Any) -> collections.deque:
        """Decode a deque."""
        maxlen, items = self.items(v) if len(self.items(v)) == 2 else (None, None)
        if items is None or not (maxlen is None or (type(maxlen) is int and maxlen >= 0)):
            raise self.bad("a malformed deque")
        return collections.deque((self.one(e) for e in self.items(items)), maxlen=maxlen)

    def array(self, v: Any) -> np.ndarray:
        """Decode a numpy array (a copy owning its memory)."""
        name, shape, index = v if type(v) is list and len(v) == 3 else (None, None, None)
        dtype = _plain_dtype(name)
        if dtype is None:
            raise self.bad(f"an array of dtype {str(name)[:20]}")
        raw = self.segment(index)
        return raw.view(dtype).reshape(self.shaped(raw, dtype.itemsize, shape)).copy()

    def scalar(self, v: Any) -> np.generic:
        """Decode a numpy scalar."""
        name, index = v if type(v) is list and len(v) == 2 else (None, None)
        dtype = _plain_dtype(name)
        if dtype is None:
            raise self.bad(f"a scalar of dtype {str(name)[:20]}")
        raw = self.segment(index)
        self.shaped(raw, dtype.itemsize, [])
        return raw.view(dtype)[0]  # type: ignore[no-any-return]

    def tensor(self, v: Any) -> torch.Tensor:
        """Decode a torch tensor onto its saved device."""
        name, shape, index, grad, device = self.items(v) if len(self.items(v)) == 5 else (None,) * 5
        dtype = _TORCH_DTYPES.get(name) if isinstance(name, str) else None
        if dtype is None or type(grad) is not bool or not isinstance(device, str):
            raise self.bad(f"a tensor of dtype {str(name)[:20]}")
        raw = self.segment(index)
        size = self.shaped(raw, dtype.itemsize, shape)
        flat = torch.from_numpy(raw.copy()).view(dtype) if raw.size else torch.empty(0, dtype=dtype)
        tensor = flat.reshape(size)
        if device != "cpu":
            try:
                tensor = tensor.to(device)
            except (RuntimeError, ValueError) as exc:
                raise self.bad(f"a tensor on device {device[:20]!r}, unavailable here ({exc})") from None
        return tensor.requires_grad_(grad) if grad else tensor

    def record(self, v: Any) -> Any:
        """Decode a stored record."""
        if self.make_record is None or len(self.items(v)) != 3:
            raise self.bad("a malformed record")
        data, index, meta = (self.one(e) for e in v)
        return self.make_record(data, index, meta)

    def pickled(self, v: Any) -> Any:
        """Unpickle a value the encoding could not hold, when trusted."""
        if not self.trusted:
            raise UntrustedCheckpointError(
                f"{self.where} holds pickled Python objects; unpickling runs code chosen by whoever wrote it. Load it "
                f"with trusted=True only if you trust its author",
                self.where,
            )
        return pickle.loads(self.segment(v).tobytes())

    def one(self, node: Any) -> Any:
        """Decode one node."""
        kind = type(node)
        if kind in _SCALARS:
            return node
        if kind is list:
            return [self.one(e) for e in node]
        if kind is not dict or len(node) != 1:
            raise self.bad(f"an unknown node {str(node)[:40]}")
        ((tag, value),) = node.items()
        decoder = self.decoders.get(tag)
        if decoder is None:
            raise self.bad(f"an unknown node {str(node)[:40]}")
        return decoder(value)


def decode(
    tree: bytes | np.ndarray,
    data: np.ndarray,
    offsets: np.ndarray,
    trusted: bool,
    where: str,
    make_record: Any = None,
) -> Any:
    """Return the value :func:`encode` encoded, from its tree, its concatenated segments and their offsets.

    Args:
        tree: The JSON tree (bytes, or a uint8 array of them).
        data: The segments, concatenated (uint8).
        offsets: ``n + 1`` int64 offsets of the ``n`` segments into ``data``.
        trusted: Allow unpickling the values that had to be pickled.
        where: The checkpoint, named in errors.
        make_record: ``(data, index, meta) -> record`` for record nodes.

    Raises:
        CheckpointCorruptError: The tree, a segment or an offset is malformed.
        UntrustedCheckpointError: A pickled value is met and ``trusted`` is False.
    """
    offsets = np.asarray(offsets)
    if (
        offsets.ndim != 1
        or offsets.size < 1
        or offsets.dtype.kind not in "iu"
        or offsets[0] != 0
        or offsets[-1] != data.size
        or (np.diff(offsets) < 0).any()
    ):
        raise CheckpointCorruptError(f"{where}: the payload's segment offsets are inconsistent", where)
    text = tree.tobytes() if isinstance(tree, np.ndarray) else tree
    try:
        root = json.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise CheckpointCorruptError(f"{where}: the payload's tree is not valid JSON ({exc})", where) from None
    decoder = _Decoder(np.asarray(data, dtype=np.uint8).reshape(-1), offsets, trusted, make_record, where)
    try:
        return decoder.one(root)
    except RecursionError:
        raise decoder.bad("values nested too deeply") from None
    except TypeError as exc:  # an unhashable dict key or set member
        raise decoder.bad(f"a value of the wrong kind ({exc})") from None
