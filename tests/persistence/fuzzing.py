"""A checkpoint fuzzer: damage or craft a checkpoint, load it, and judge what happened.

Each case copies a good checkpoint of one kind (see ``tests/persistence/kinds.py``) into
``<root>/inside/ckpt``, next to canary files in ``<root>/outside``, applies one mutation
(byte flips, truncations, deleted or renamed files, crafted metadata values, traversal paths,
links and pipes, pickled payloads, the crafted values of issue 9's findings) and runs one
reader on it: ``load`` (read, ``mmap=True``, ``mmap="shared"`` followed by a write and a save),
``verify`` or ``xreplay inspect``. The verdict is one of

* ``refused``: a :class:`~xreplay.errors.CheckpointError` whose message names the checkpoint;
* ``unchanged``: it loaded exactly the saved state (the mutation touched nothing that matters);
* ``as written``: crafted metadata (with a valid checksum) that the loader took exactly as written;

or a failure: loaded silently different, another exception, an error naming nothing, a read or
write outside the folder (an audit hook records every file opened), code run (a pickle that
creates a marker), or a reader that hung.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import random
import shutil
import signal
import sys
import zlib
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from tests.persistence import kinds
from xreplay.errors import CheckpointError
from xreplay.persistence import verify
from xreplay.persistence.format import write_metadata

FAILURES = ("silently different", "untyped error", "unnamed error", "read outside", "wrote outside", "ran code", "hung")
_OPENED: list[str] = []
_RECORDING = [False]


def _audit(event: str, args: tuple) -> None:
    """Record the path of every file opened while recording (``open`` covers builtins.open and os.open)."""
    if _RECORDING[0] and event == "open" and args and isinstance(args[0], (str, bytes, os.PathLike)):
        _OPENED.append(os.fsdecode(args[0]))


sys.addaudithook(_audit)


class _Marker:
    """A pickle that creates a directory when unpickled: proof that loading ran code."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple:
        return (os.mkdir, (str(self.path),))


@dataclasses.dataclass
class Case:
    """One fuzzed checkpoint and its verdict."""

    kind: str
    mutation: str
    reader: str
    verdict: str
    detail: str = ""

    @property
    def failed(self) -> bool:
        """Return whether the verdict misses the targets."""
        return self.verdict in FAILURES


def _read(path: Path) -> dict[str, Any]:
    return json.loads((path / "metadata.json").read_text())


def _reseal(path: Path, meta: dict[str, Any]) -> None:
    write_metadata(path, {k: v for k, v in meta.items() if k != "checksum"}, fsync=False)


def _files(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_file())


def _leaves(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Return the key paths of every leaf of a JSON document."""
    if isinstance(node, dict):
        return [leaf for k, v in node.items() for leaf in _leaves(v, (*prefix, k))] or [prefix]
    if isinstance(node, list):
        return [leaf for i, v in enumerate(node) for leaf in _leaves(v, (*prefix, i))] or [prefix]
    return [prefix]


def _set(node: Any, keys: tuple, value: Any) -> None:
    for key in keys[:-1]:
        node = node[key]
    node[keys[-1]] = value


_POOL = [-1, 0, 1, 13, 2**31, 10**11, 2**64, -(2**63), 1.5, float("nan"), "x", "", None, True, [], {}, [1, 2], "../x"]


# -- mutations: each takes (rng, checkpoint dir, canary dir, marker) and returns its name --------------------


def _flip(rng: random.Random, path: Path, *_: Any) -> str:
    files = _files(path)
    file = path / "metadata.json" if rng.random() < 0.35 else rng.choice(files)
    data = bytearray(file.read_bytes())
    if not data:
        return "flip(empty)"
    for _ in range(rng.randint(1, 3)):
        data[rng.randrange(len(data))] ^= rng.randint(1, 255)
    file.write_bytes(bytes(data))
    return f"flip {file.name}"


def _truncate(rng: random.Random, path: Path, *_: Any) -> str:
    file = rng.choice(_files(path))
    os.truncate(file, rng.randrange(max(file.stat().st_size, 1)))
    return f"truncate {file.name}"


def _extend(rng: random.Random, path: Path, *_: Any) -> str:
    file = rng.choice(_files(path))
    with open(file, "ab") as handle:
        handle.write(rng.randbytes(rng.randint(1, 64)))
    return f"extend {file.name}"


def _delete(rng: random.Random, path: Path, *_: Any) -> str:
    file = rng.choice(_files(path))
    file.unlink()
    return f"delete {file.name}"


def _rename(rng: random.Random, path: Path, *_: Any) -> str:
    files = [f for f in _files(path) if f.name != "metadata.json"]
    a, b = rng.choice(files), rng.choice(files)
    if a == b or rng.random() < 0.3:
        target = path / a.name.replace(".g0", ".g9").replace("live-0", "live-9")
        a.rename(target)
        return f"rename {a.name}"
    temp = path / "swap.tmp"
    a.rename(temp)
    b.rename(a)
    temp.rename(b)
    return f"swap {a.name} {b.name}"


def _crafted(rng: random.Random, path: Path, *_: Any) -> str:
    meta = _read(path)
    leaves = [leaf for leaf in _leaves(meta) if leaf and leaf[0] not in ("format", "checksum")]
    keys = rng.choice(leaves)
    value = rng.choice(_POOL)
    _set(meta, keys, value)
    reseal = rng.random() < 0.85
    if reseal:
        _reseal(path, meta)
    else:
        (path / "metadata.json").write_text(json.dumps(meta))
    return f"set {'.'.join(map(str, keys))}={value!r}{'' if reseal else ' (no reseal)'}"


def _entries(meta: dict[str, Any]) -> list[dict[str, Any]]:
    """Return every array and delta entry that names a file."""
    out = []
    for entry in meta["arrays"].values():
        out.append(entry)
        out.extend(entry.get("deltas", []))
    return out


def _traversal(rng: random.Random, path: Path, outside: Path, *_: Any) -> str:
    meta = _read(path)
    entry = rng.choice(_entries(meta))
    original = path / entry["file"]
    secret = outside / "secret.bin"
    if original.exists():  # the canary matches the entry's size and checksum: only the path check stands
        size = original.stat().st_size
        secret.write_bytes(rng.randbytes(size))
        if "crc32" in entry:
            entry["crc32"] = zlib.crc32(secret.read_bytes())
    choice = rng.randrange(9)
    if choice == 6:  # a link inside the folder, with a valid name, that leads out
        original.unlink(missing_ok=True)
        original.symlink_to(secret)
        return f"symlink {entry['file']} -> outside"
    if choice == 7:  # a pipe with a valid name: opening it would never return
        original.unlink(missing_ok=True)
        os.mkfifo(original)
        return f"fifo {entry['file']}"
    if choice == 8:  # the finding: a live rows entry pointed at a file outside
        meta["arrays"]["rows"] = {
            **meta["arrays"].get("rows", {"dtype": "|u1", "shape": [1, 1]}),
            "file": f"../../outside/{secret.name}",
            "live": True,
        }
        _reseal(path, meta)
        return "live rows -> outside"
    names = [
        "../../outside/secret.bin",
        str(secret),
        "../../../../../../etc/passwd",
        "sub/" + entry["file"],
        "..",
        entry["file"] + "/../../../outside/secret.bin",
    ]
    entry["file"] = names[choice]
    _reseal(path, meta)
    return f"file={names[choice]!r}"


def _set_array(path: Path, meta: dict[str, Any], name: str, data: bytes, dtype: str = "|u1") -> None:
    """Replace array ``name`` by ``data`` (one base file with a valid checksum)."""
    entry = meta["arrays"].get(name, {})
    file = entry.get("file") or f"{name.replace('.', '_')}.g000001.bin"
    for old in [entry.get("file"), *(d["file"] for d in entry.get("deltas", []))]:
        if old:
            (path / old).unlink(missing_ok=True)
    (path / file).write_bytes(data)
    itemsize = np.dtype(dtype).itemsize
    meta["arrays"][name] = {
        "dtype": dtype,
        "shape": [len(data) // itemsize],
        "file": file,
        "nbytes": len(data),
        "crc32": zlib.crc32(data),
        "deltas": [],
    }


def _pickled(rng: random.Random, path: Path, _outside: Path, marker: Path) -> str:
    meta = _read(path)
    blob = pickle.dumps({"items": [_Marker(marker)]})
    choice = rng.randrange(4)
    if meta["kind"] == "ding.deque_buffer" and choice < 2:
        if choice == 0:  # payload version 1: one pickle
            meta["state"]["payload_version"] = 1
            _set_array(path, meta, "payload", blob)
        else:  # a pickled node inside the safe encoding, and metadata that says there is none
            tree = json.dumps({"p": 0}).encode()
            _set_array(path, meta, "payload.tree", tree)
            _set_array(path, meta, "payload.data", blob)
            _set_array(path, meta, "payload.offsets", np.array([0, len(blob)], np.int64).tobytes(), "<i8")
            meta["state"]["python_objects"] = []
        _reseal(path, meta)
        return f"pickled payload ({'version 1' if choice == 0 else 'hidden node'})"
    if choice == 2:  # an object-dtype array, which numpy would fill with pointers
        _set_array(path, meta, "extra", blob)
        meta["arrays"]["extra"]["dtype"] = "|O"
        _reseal(path, meta)
        return "object dtype array"
    (path / "metadata.json").write_bytes(blob)
    return "metadata.json is a pickle"


def _finding(rng: random.Random, path: Path, *_: Any) -> str:
    """Apply one of the crafted values of issue 9 (finding 7), with valid checksums."""
    meta = _read(path)
    state, structure = meta["state"], meta["structure"]
    options: list[tuple[str, Callable[[], None]]] = []
    if "writer" in state:
        options += [
            ("cursor=13 on capacity 8", lambda: state["writer"].update(cursor=13)),
            ("size=-1", lambda: state["writer"].update(size=-1)),
        ]
    if "capacity" in structure:
        options.append(("capacity=10**11", lambda: structure.update(capacity=10**11)))
    if "rng" in state:
        options.append(("garbage rng", lambda: state.update(rng={"bit_generator": "PCG64", "state": "garbage"})))
    if isinstance(structure.get("sampler"), dict) and "beta" in structure["sampler"]:
        options.append(("unknown schedule", lambda: structure["sampler"].update(beta={"type": "cosine"})))
    if "count" in state:
        options.append(("count=10**6", lambda: state.update(count=10**6)))
    if "lengths" in meta["arrays"]:
        capacity = meta["arrays"]["lengths"]["shape"][0]
        for bad in (999, -5):
            data = np.zeros(capacity, np.int32)
            data[0] = bad

            def lengths(data: bytes = data.tobytes()) -> None:
                _set_array(path, meta, "lengths", data, "<i4")

            options.append((f"length {bad}", lengths))
    rows = meta["arrays"].get("rows") or meta["arrays"].get("column0")
    if rows is not None and not rows.get("live"):
        name = "rows" if "rows" in meta["arrays"] else "column0"

        def one_row() -> None:
            row_bytes = int(np.prod(rows["shape"][1:])) * np.dtype(rows["dtype"]).itemsize
            _set_array(path, meta, name, bytes(row_bytes), rows["dtype"])
            meta["arrays"][name]["shape"] = [1, *rows["shape"][1:]]

        options.append(("one-row column", one_row))
    label, apply = rng.choice(options)
    apply()
    _reseal(path, meta)
    return label


MUTATIONS: dict[str, tuple[float, Callable[..., str]]] = {
    "flip": (3, _flip),
    "truncate": (1, _truncate),
    "extend": (1, _extend),
    "delete": (1, _delete),
    "rename": (1, _rename),
    "crafted": (3, _crafted),
    "traversal": (2, _traversal),
    "pickled": (1, _pickled),
    "finding": (1, _finding),
}


# -- readers -----------------------------------------------------------------------------------------------


def _read_with(kind: str, reader: str, path: Path) -> Any:
    """Run ``reader`` on the checkpoint; return the loaded object (or None for verify/inspect)."""
    if reader == "verify":
        verify(path)
        return None
    if reader == "inspect":
        from xreplay.persistence.inspect import summarize

        summarize(path)
        return None
    loaded = kinds.load_back(kind, path, {"load": False, "mmap": True, "shared": "shared"}[reader])
    if reader == "shared":  # keep using the files: one write and a save into the folder
        kinds.write(kind, loaded, 99)
        kinds.save(kind, loaded, path)
    return loaded


def _timeout(*_: Any) -> None:
    raise TimeoutError("reader hung")


def _judge(kind: str, mutation: str, reader: str, path: Path, original: Any, meta_after: dict | None) -> Case:
    """Run the reader and judge the result (see the module docstring)."""
    previous = signal.signal(signal.SIGALRM, _timeout)
    signal.alarm(20)
    _OPENED.clear()
    _RECORDING[0] = True
    try:
        loaded = _read_with(kind, reader, path)
        if loaded is None:  # verify or inspect passed: the load must give the saved state too
            loaded = kinds.load_back(kind, path)
    except TimeoutError:
        return Case(kind, mutation, reader, "hung")
    except CheckpointError as exc:
        named = str(path) in str(exc) or "metadata.json" in str(exc)
        return Case(kind, mutation, reader, "refused" if named else "unnamed error", f"{type(exc).__name__}: {exc}")
    except Exception as exc:  # noqa: BLE001 - any other exception is what the fuzzer looks for
        return Case(kind, mutation, reader, "untyped error", f"{type(exc).__name__}: {exc}")
    finally:
        _RECORDING[0] = False
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    if reader == "shared":
        return Case(kind, mutation, reader, "unchanged")  # it loaded and was written: judged by the checks after
    snapshot = kinds.snapshot(loaded)
    if snapshot == original:
        return Case(kind, mutation, reader, "unchanged")
    if meta_after is not None and _as_written(snapshot, original, meta_after):
        return Case(kind, mutation, reader, "as written")
    return Case(kind, mutation, reader, "silently different", mutation)


def _as_written(snapshot: tuple, original: tuple, meta: dict[str, Any]) -> bool:
    """Return whether a load of crafted metadata gave exactly the crafted values (and the saved arrays)."""
    loaded = json.loads(snapshot[0])
    wanted = {k: meta.get(k) for k in loaded}
    wanted.get("state", {}).pop("numpy_global_rng", None)
    return loaded == json.loads(json.dumps(wanted)) and snapshot[1] == original[1]


def _outside_state(outside: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in outside.iterdir() if p.is_file() and not p.is_symlink()}


class Fuzzer:
    """Builds one good checkpoint per kind once, then fuzzes copies of them."""

    def __init__(self, root: Path, seed: int = 0) -> None:
        self.root = root
        self.rng = random.Random(seed)
        self.templates: dict[str, tuple[Path, tuple]] = {}
        for kind in kinds.KINDS:
            path = root / "templates" / kind / "ckpt"
            path.parent.mkdir(parents=True)
            buffer = kinds.filled(kind, path if kind == "memmap" else None, writes=5)
            kinds.save(kind, buffer, path)
            for i in range(5, 8):  # a second save: delta files too
                kinds.write(kind, buffer, i)
            kinds.save(kind, buffer, path)
            self.templates[kind] = (path, kinds.snapshot(kinds.load_back(kind, path)))

    def case(self, number: int) -> Case:
        """Fuzz one copy of a random kind's checkpoint."""
        rng = self.rng
        kind = rng.choice(kinds.KINDS)
        template, original = self.templates[kind]
        box = self.root / f"case{number}"
        path = box / "inside" / "ckpt"
        outside = box / "outside"
        outside.mkdir(parents=True)
        (outside / "secret.bin").write_bytes(b"secret" * 10)
        (outside / "victim.bin").write_bytes(b"victim" * 10)
        shutil.copytree(template, path, symlinks=True)
        marker = box / "pwned"
        name = rng.choices(list(MUTATIONS), weights=[w for w, _ in MUTATIONS.values()])[0]
        mutation = MUTATIONS[name][1](rng, path, outside, marker)
        readers = ["load", "verify", "inspect"] if kind == "ding" else ["load", "mmap", "shared", "verify", "inspect"]
        reader = rng.choice(readers)
        before = _outside_state(outside)
        try:
            meta_after = _read(path) if name in ("crafted", "finding") else None
        except (OSError, ValueError):
            meta_after = None
        result = _judge(kind, mutation, reader, path, original, meta_after)
        outside_paths = {os.path.realpath(outside), os.path.realpath(marker)}
        touched = [p for p in _OPENED if any(os.path.realpath(p).startswith(o) for o in outside_paths)]
        if touched:
            result = Case(kind, mutation, reader, "read outside", ", ".join(touched[:3]))
        if _outside_state(outside) != before or sorted(p.name for p in outside.iterdir()) != sorted(before):
            result = Case(kind, mutation, reader, "wrote outside", mutation)
        if marker.exists():
            result = Case(kind, mutation, reader, "ran code", mutation)
        shutil.rmtree(box, ignore_errors=True)
        return result

    def run(self, n: int) -> list[Case]:
        """Fuzz ``n`` checkpoints."""
        return [self.case(i) for i in range(n)]


def tally(cases: list[Case]) -> Counter:
    """Return the number of cases per verdict."""
    return Counter(case.verdict for case in cases)
