"""Malformed calls on every buffer kind, and what each must do: refuse naming its culprit, or store exactly.

Used by the property test (``tests/test_malformed_inputs.py``, choices drawn by Hypothesis) and by
``benchmarks/fuzz_malformed.py`` (choices drawn from a seeded ``random.Random``). :func:`draw_call`
builds one call on a buffer from a :data:`KINDS` builder; :func:`run_call` runs it and reports the
outcome: a typed ``XReplayError``, whether its message names the field or argument at fault, whether
the buffer's full state (:mod:`tests.snapshots`) is bit-identical afterwards, and, for a call that
succeeds, whether what it stored is exactly what a correct buffer stores.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np
import torch

from tests import snapshots
from xreplay import EpisodeBuffer, Field, OneHot, Scheme, TransitionBuffer
from xreplay.compat.ding import DequeBuffer, PriorityExperienceReplay
from xreplay.compat.pymarl import EpisodeBatch, PrioritizedReplayBuffer, ReplayBuffer
from xreplay.compat.pymarl import OneHot as PymarlOneHot
from xreplay.errors import XReplayError
from xreplay.samplers import PrioritizedSampler

__all__ = ["KINDS", "LAYERS", "Call", "Chooser", "Outcome", "RandomChooser", "draw_call", "run_call"]


class Chooser(Protocol):
    """Where a malformed call's choices come from (Hypothesis, or a seeded random generator)."""

    def choice(self, options: Sequence[Any]) -> Any:
        """Return one of ``options``."""


class RandomChooser:
    """Choices from a seeded ``random.Random`` (the benchmark's source)."""

    def __init__(self, seed: int):
        self.rng = random.Random(seed)

    def choice(self, options: Sequence[Any]) -> Any:
        return options[self.rng.randrange(len(options))]


@dataclasses.dataclass
class Call:
    """One call on a buffer: what it does, the names its refusal must mention, how to check an acceptance."""

    description: str
    run: Callable[[], Any]
    names: tuple[str, ...]
    check_accepted: Callable[[], bool] | None = None  # None: the call must be refused


@dataclasses.dataclass
class Outcome:
    """What a call did."""

    description: str
    refused: bool
    typed: bool = False
    names_culprit: bool = False
    state_unchanged: bool = True
    stored_right: bool = True  # for accepted calls: the stored values are what a correct buffer stores
    error: str = ""


def run_call(buffer: Any, call: Call) -> Outcome:
    """Run ``call`` on ``buffer`` and report its :class:`Outcome`."""
    before = snapshots.of(buffer)
    try:
        call.run()
    except Exception as exc:  # noqa: BLE001 - every exception is classified
        message = str(exc)
        return Outcome(
            call.description,
            refused=True,
            typed=isinstance(exc, XReplayError),
            names_culprit=any(name in message for name in call.names),
            state_unchanged=snapshots.of(buffer) == before,
            error=f"{type(exc).__name__}: {message[:200]}",
        )
    right = call.check_accepted() if call.check_accepted is not None else False
    return Outcome(call.description, refused=False, stored_right=right)


# -- corrupted values ------------------------------------------------------------------------------

SIZES = [
    ("float", 2.5), ("negative", -1), ("bool", True), ("text", "3"), ("none", None), ("numpy_float", np.float64(2))
]


def corruptions(valid: np.ndarray, kind: str, bounds: tuple[int, int] | None = None) -> dict[str, Any]:
    """Return malformed replacements of ``valid`` by name, for a field of ``kind`` ``"float"`` or ``"int"``.

    ``bounds`` is the range an integer field holds (a one-hot source's classes, a narrow storage dtype).
    Every replacement must be refused, naming the field.
    """
    shape = valid.shape
    bad: dict[str, Any] = {
        "text": np.full(shape, "x").tolist(),
        "none": None,
        "object": [object()] * (shape[0] if shape else 1),
        "complex_array": valid.astype(np.complex128) + 1j,
        "complex_tensor": torch.from_numpy(np.asarray(valid, np.complex64)) + 1j,
        "ragged": [[0.0, 1.0], [0.0]],
        "extra_dim": np.zeros((*shape, 2), dtype=valid.dtype),
        "meta_tensor": torch.empty(shape, device="meta"),
    }
    if kind == "int":
        bad["nan_into_int"] = np.full(shape, np.nan)
        bad["inf_into_int"] = np.full(shape, np.inf)
        bad["fraction_into_int"] = np.full(shape, 0.5)
        if bounds is not None:
            bad["above_range"] = np.full(shape, bounds[1] + 1, dtype=np.int64)
            bad["below_range"] = np.full(shape, bounds[0] - 1, dtype=np.int64)
    else:
        bad["float64_overflow"] = np.full(shape, 1e300)
        bad["python_float_overflow"] = np.full(shape, 1e300).tolist()
    return bad


def _pick(chooser: Chooser, options: dict[str, Any]) -> tuple[str, Any]:
    """Return one ``(name, value)`` of ``options``, chosen by name (a stable order for Hypothesis)."""
    name = chooser.choice(sorted(options))
    return name, options[name]


def _equal(stored: torch.Tensor, expected: Any) -> bool:
    """Return whether ``stored`` holds exactly ``expected`` (cast to its dtype)."""
    return torch.equal(stored.cpu(), torch.as_tensor(np.asarray(expected)).to(stored.dtype).reshape(stored.shape))


# -- native episodes ---------------------------------------------------------------------------------

STEPS = 4
_EPISODE_KINDS = {"obs": ("float", None), "actions": ("int", (0, 2)), "count": ("int", None), "tag": ("int", None)}


def _episode(i: int) -> dict[str, np.ndarray]:
    return {
        "obs": np.full((1, STEPS, 2), float(i), np.float32),
        "actions": np.full((1, STEPS, 1), i % 3, np.int64),
        "count": np.full((1, STEPS, 1), i, np.int64),
        "tag": np.full((1, 1), i, np.int64),
    }


def make_episode_buffer() -> EpisodeBuffer:
    """Return a full, wrapped episode buffer (uint8-stored actions with a one-hot view) sampled once."""
    scheme = Scheme(
        {
            "obs": Field((2,)),
            "actions": Field((1,), dtype=torch.long, storage_dtype=torch.uint8),
            "onehot": Field((3,), derived=OneHot("actions", 3)),
            "count": Field((1,), dtype=torch.long),
            "tag": Field((1,), dtype=torch.long, per_step=False),
        }
    )
    buffer = EpisodeBuffer(scheme, capacity=3, max_seq_length=STEPS, seed=0)
    for i in range(4):
        buffer.add(_episode(i))
    buffer.sample(2)
    return buffer


def episode_calls(buffer: EpisodeBuffer, chooser: Chooser) -> Call:
    """Draw a malformed call on a native episode buffer."""
    op = chooser.choice(["add_field", "add_field", "add_sparse", "add_odd", "add_keys", "add_lengths", "sample", "get"])
    valid = _episode(5)
    if op == "add_odd":  # valid values in numpy dtypes torch lacks: stored exactly
        name, how = chooser.choice([("obs", "long_double"), ("obs", "big_endian"), ("count", "big_endian"),
                                    ("count", "uint32")])
        convert = {
            "long_double": lambda v: v.astype(np.longdouble),
            "big_endian": lambda v: v.astype(v.dtype.newbyteorder(">")),
            "uint32": lambda v: v.astype(np.uint32),
        }[how]
        value = convert(valid[name])
        episode = {**valid, name: value}
        slot = buffer.writer.cursor
        return Call(f"episode add {name}={how}", lambda: buffer.add(episode), (f"'{name}'",),
                    lambda: _equal(buffer.get([slot])[name], valid[name]))
    if op == "add_field":
        name = chooser.choice(sorted(_EPISODE_KINDS))
        corruption, value = _pick(chooser, corruptions(valid[name], *_EPISODE_KINDS[name]))
        episode = {**valid, name: value}
        return Call(f"episode add {name}={corruption}", lambda: buffer.add(episode), (f"'{name}'",))
    if op == "add_sparse":
        name = chooser.choice(["obs", "count"])
        episode = {**valid, name: torch.from_numpy(valid[name]).to_sparse()}
        slot = buffer.writer.cursor
        return Call(f"episode add {name}=sparse", lambda: buffer.add(episode), (f"'{name}'",),
                    lambda: _equal(buffer.get([slot])[name], valid[name]))
    if op == "add_keys":
        how = chooser.choice(["unknown", "missing", "derived"])
        episode = {
            "unknown": {**valid, "extra": valid["obs"]},
            "missing": {k: v for k, v in valid.items() if k != "count"},
            "derived": {**valid, "onehot": np.zeros((1, STEPS, 3), np.float32)},
        }[how]
        names = {"unknown": ("'extra'",), "missing": ("'count'",), "derived": ("'onehot'",)}[how]
        return Call(f"episode add {how} key", lambda: buffer.add(episode), names)
    if op == "add_lengths":
        lengths = chooser.choice([[2.5], [STEPS + 1], [-1], [1, 2], ["2"], [True]])
        return Call(f"episode add lengths={lengths}", lambda: buffer.add(valid, lengths=lengths), ("lengths",))
    if op == "sample":
        what, n = chooser.choice([*SIZES, ("too_many", 4), ("huge_with_replacement", 10**14)])
        replace = what == "huge_with_replacement"
        return Call(f"episode sample({what})", lambda: buffer.sample(n, replace=replace), ("sample size", "sample of"))
    slots = chooser.choice([[0.5], [True], ["0"], [3], [-1], [[0, 1], [2]]])
    return Call(f"episode get({slots})", lambda: buffer.get(slots), ("episode index",))


def make_episode_writer() -> Any:
    """Return an episode writer with one staged step, over a full episode buffer."""
    writer = make_episode_buffer().episode_writer()
    writer.append({"obs": [1.0, 2.0], "actions": [1], "count": [1], "tag": [1]})
    return writer


def writer_calls(writer: Any, chooser: Chooser) -> Call:
    """Draw a malformed append or end on a native episode writer."""
    name = chooser.choice(sorted(_EPISODE_KINDS))
    valid = {k: (v[0] if k == "tag" else v[0, 0]) for k, v in _episode(1).items()}
    corruption, value = _pick(chooser, corruptions(valid[name], *_EPISODE_KINDS[name]))
    step = {**valid, name: value}
    if chooser.choice(["append", "end"]) == "append":
        return Call(f"writer append {name}={corruption}", lambda: writer.append(step), (f"'{name}'",))
    return Call(f"writer end {name}={corruption}", lambda: writer.end(step), (f"'{name}'",))


# -- native transitions -------------------------------------------------------------------------------

_TRANSITION_KINDS = {"a": ("int", None), "b": ("float", None), "u": ("int", (0, 255))}


def make_transition_buffer(prioritized: bool) -> TransitionBuffer:
    """Return a full, wrapped transition buffer (int64, float32 and uint8 fields) sampled once."""
    sampler = PrioritizedSampler(4, alpha=1.0) if prioritized else "uniform"
    buffer = TransitionBuffer(4, sampler=sampler, seed=0)
    buffer.extend({"a": np.arange(8, dtype=np.int64).reshape(4, 2), "b": np.ones((4, 2), np.float32),
                   "u": np.arange(4, dtype=np.uint8)})
    buffer.add({"a": np.array([9, 9]), "b": np.zeros(2, np.float32), "u": np.uint8(3)})
    buffer.sample(3)
    return buffer


_PRIORITY_CASES = [
    ([0, 1], [np.nan, 1.0], ("priority nan",)),
    ([0, 1], [np.inf, 1.0], ("priority inf",)),
    ([0, 1], [-1.0, 1.0], ("priority -1.0",)),
    ([0, 1], ["1.5", "2"], ("priorities must be real",)),
    ([0, 1], [True, False], ("priorities must be real",)),
    ([0, 1], [1e308, 1.0], ("priority 1e+308",)),
    ([0, 1], [1.0], ("indices but 1 priorities",)),
    ([0.5, 1.0], [1.0, 1.0], ("indices must be integers",)),
    ([0, 9], [1.0, 1.0], ("index 9",)),
    ([0, -1], [1.0, 1.0], ("index -1",)),
]


def transition_calls(buffer: TransitionBuffer, chooser: Chooser) -> Call:
    """Draw a malformed call on a native transition buffer (uniform or prioritized)."""
    prioritized = isinstance(buffer.sampler, PrioritizedSampler)
    ops = ["extend_field", "extend_field", "add_field", "sparse", "odd", "keys", "sample", "gather", "priorities"]
    op = chooser.choice(ops + (["priorities"] if prioritized else []))
    batch = {"a": np.array([[5, 5]]), "b": np.full((1, 2), 0.5, np.float32), "u": np.array([7], np.uint8)}
    if op in ("extend_field", "add_field"):
        name = chooser.choice(sorted(_TRANSITION_KINDS))
        valid = batch[name] if op == "extend_field" else batch[name][0]
        corruption, value = _pick(chooser, corruptions(valid, *_TRANSITION_KINDS[name]))
        if op == "add_field":
            one = {k: v[0] for k, v in batch.items()} | {name: value}
            return Call(f"transition add {name}={corruption}", lambda: buffer.add(one), (f"'{name}'",))
        data = {**batch, name: value}
        return Call(f"transition extend {name}={corruption}", lambda: buffer.extend(data), (f"'{name}'",))
    if op == "odd":  # valid values in numpy dtypes torch lacks: stored exactly
        name, how = chooser.choice([("b", "long_double"), ("b", "big_endian"), ("a", "big_endian")])
        value = batch[name].astype(np.longdouble) if how == "long_double" else batch[name].astype(
            batch[name].dtype.newbyteorder(">"))
        data = {**batch, name: value}
        slot = buffer.writer.cursor
        return Call(f"transition extend {name}={how}", lambda: buffer.extend(data), (f"'{name}'",),
                    lambda: _equal(buffer.gather([slot])[name], batch[name]))
    if op == "sparse":
        name = chooser.choice(["a", "b"])
        data = {**batch, name: torch.from_numpy(batch[name]).to_sparse()}
        slot = buffer.writer.cursor
        return Call(f"transition extend {name}=sparse", lambda: buffer.extend(data), (f"'{name}'",),
                    lambda: _equal(buffer.gather([slot])[name], batch[name]))
    if op == "keys":
        how = chooser.choice(["unknown", "missing"])
        data = {**batch, "extra": batch["a"]} if how == "unknown" else {"a": batch["a"], "b": batch["b"]}
        return Call(f"transition extend {how} key", lambda: buffer.extend(data), ("'extra'", "'u'"))
    if op == "sample":
        what, n = chooser.choice([*SIZES, ("huge", 10**13)])
        return Call(f"transition sample({what})", lambda: buffer.sample(n), ("sample size", "sample of"))
    if op == "gather":
        indices = chooser.choice([[0.5], [True], ["0"], [4], [-1]])
        return Call(f"transition gather({indices})", lambda: buffer.gather(indices), ("transition index",))
    if not prioritized:
        return Call("uniform update_priorities", lambda: buffer.update_priorities([0], [1.0], "current"),
                    ("prioritized",))
    indices, priorities, names = chooser.choice(_PRIORITY_CASES)
    if chooser.choice(["current", "generations"]) == "generations":
        seen = np.zeros(len(indices), np.int32)
        return Call(f"transition update_priorities({indices}, {priorities}, generations)",
                    lambda: buffer.update_priorities(indices, priorities, seen), names)
    return Call(f"transition update_priorities({indices}, {priorities})",
                lambda: buffer.update_priorities(indices, priorities, "current"), names)


def make_next_obs_buffer() -> TransitionBuffer:
    """Return a full, wrapped buffer of two interleaved streams storing next observations once."""
    buffer = TransitionBuffer(6, next_obs_from="obs", stream="env", seed=0)
    for t in range(4):
        buffer.extend({"obs": np.full((2, 2), t, np.float32), "next_obs": np.full((2, 2), t + 1, np.float32),
                       "env": np.arange(2), "done": np.zeros(2, bool)})
    return buffer


def next_obs_calls(buffer: TransitionBuffer, chooser: Chooser) -> Call:
    """Draw a malformed write on a next-observation buffer with stream ids."""
    batch = {"obs": np.full((2, 2), 4, np.float32), "next_obs": np.full((2, 2), 5, np.float32),
             "env": np.arange(2), "done": np.zeros(2, bool)}
    name = chooser.choice(["obs", "next_obs", "env", "keys"])
    if name == "keys":
        how = chooser.choice(["no_next_obs", "no_stream", "nested_next_obs"])
        data = {
            "no_next_obs": {k: v for k, v in batch.items() if k != "next_obs"},
            "no_stream": {k: v for k, v in batch.items() if k != "env"},
            "nested_next_obs": {**batch, "next_obs": {"x": batch["next_obs"]}},
        }[how]
        return Call(f"next-obs extend {how}", lambda: buffer.extend(data), ("next_obs", "'env'"))
    if name == "env":
        corruption, value = _pick(chooser, {"float": np.array([0.5, 1.5]), "negative": np.array([-1, 0]),
                                            "huge": np.array([0, 2**40]), "text": ["a", "b"], "one": np.array([0])})
    else:
        corruption, value = _pick(chooser, corruptions(batch[name], "float"))
    data = {**batch, name: value}
    return Call(f"next-obs extend {name}={corruption}", lambda: buffer.extend(data), (f"'{name}'",))


# -- PyMARL --------------------------------------------------------------------------------------------

PYMARL_SCHEME = {
    "state": {"vshape": 3},
    "actions": {"vshape": (1,), "group": "agents", "dtype": torch.long},
    "terminated": {"vshape": (1,), "dtype": torch.uint8},
    "ep_id": {"vshape": (1,), "dtype": torch.long, "episode_const": True},
}
PYMARL_GROUPS = {"agents": 2}


def _pymarl_preprocess() -> dict[str, Any]:
    return {"actions": ("actions_onehot", [PymarlOneHot(out_dim=4)])}


def _pymarl_episodes(n: int, seed: int) -> EpisodeBatch:
    batch = EpisodeBatch(PYMARL_SCHEME, PYMARL_GROUPS, n, 5, preprocess=_pymarl_preprocess())
    rng = np.random.default_rng(seed)
    for t in range(4):
        batch.update({"state": rng.random((n, 3)).tolist(), "actions": rng.integers(0, 4, (n, 2, 1)),
                      "terminated": [[int(t == 3)]] * n}, ts=t)
    batch.update({"ep_id": [[seed]] * n})
    return batch


def make_pymarl_batch() -> EpisodeBatch:
    """Return a runner's episode batch of 2 episodes with 4 steps written."""
    return _pymarl_episodes(2, 0)


def make_pymarl_replay() -> ReplayBuffer:
    """Return a full, wrapped PyMARL replay buffer."""
    buffer = ReplayBuffer(PYMARL_SCHEME, PYMARL_GROUPS, 3, 5, preprocess=_pymarl_preprocess())
    for seed in range(2):
        buffer.insert_episode_batch(_pymarl_episodes(2, seed))
    return buffer


def make_pymarl_prioritized() -> PrioritizedReplayBuffer:
    """Return a full, wrapped pymarl2 prioritized buffer sampled once."""
    buffer = PrioritizedReplayBuffer(
        PYMARL_SCHEME, PYMARL_GROUPS, 3, 5, alpha=1.0, beta=0.4, t_max=100, preprocess=_pymarl_preprocess()
    )
    for seed in range(2):
        buffer.insert_episode_batch(_pymarl_episodes(2, seed))
    random.seed(0)
    buffer.sample(2, t=1)
    return buffer


_PYMARL_VALUES = {
    "state": {
        "text": [["x", "y", "z"]], "none": None, "object": [[object()] * 3], "complex": np.full((1, 3), 1 + 1j),
        "complex_tensor": torch.zeros(1, 3, dtype=torch.complex64), "ragged": [[1.0, 2.0], [3.0]],
        "unsafe_reshape": [1.0, 2.0], "zero_d": 1.0, "view_fails": [[1.0, 2.0, 3.0]] * 4,
        "meta_tensor": torch.empty(1, 3, device="meta"), "dict": {"a": 1.0},
    },
    "actions": {
        "nan": np.full((1, 2, 1), np.nan), "inf_tensor": torch.full((1, 2, 1), float("inf")),
        "one_hot_range": [[[1], [9]]], "beyond_int64": [[[2**70], [0]]], "text": [[["a"], ["b"]]],
    },
    "terminated": {"overflow_from_list": [[300]], "numpy_bool_overflow": [(np.bool_(True), 300)], "none": None},
    "ep_id": {"text": [["a"]], "complex": np.full((1, 1), 2j)},
}


def pymarl_calls(batch: EpisodeBatch, chooser: Chooser) -> Call:
    """Draw a malformed call on a PyMARL episode batch, replay buffer or prioritized buffer."""
    ops = ["update", "update", "update", "keys", "index"]
    if isinstance(batch, ReplayBuffer):
        ops += ["insert", "sample"]
    if isinstance(batch, PrioritizedReplayBuffer):
        ops += ["priorities", "priorities", "per_sample"]
    op = chooser.choice(ops + ["sparse"])
    if op == "sparse":
        value = torch.tensor([[0.25, 0.5, 0.75]])
        return Call("pymarl update state=sparse", lambda: batch.update({"state": value.to_sparse()}, bs=0, ts=1),
                    ("'state'",), lambda: _equal(batch["state"][0, 1], value[0]))
    if op == "update":
        name = chooser.choice(sorted(_PYMARL_VALUES))
        corruption, value = _pick(chooser, _PYMARL_VALUES[name])
        return Call(f"pymarl update {name}={corruption}", lambda: batch.update({name: value}, bs=0, ts=1),
                    (f"'{name}'",))
    if op == "keys":
        return Call("pymarl update unknown key",
                    lambda: batch.update({"state": [[1.0, 2.0, 3.0]], "nope": [1]}, bs=0, ts=1), ("nope",))
    if op == "index":
        what, bs, ts = chooser.choice([("bs_out_of_range", [7], 1), ("bs_float", 0.5, 1), ("ts_list", 0, [0, 1]),
                                       ("ts_float", 0, 1.5), ("bs_text", "0", 1)])
        return Call(f"pymarl update {what}", lambda: batch.update({"state": [[1.0, 2.0, 3.0]]}, bs=bs, ts=ts),
                    ("index", "Time"))
    if op == "insert":
        what = chooser.choice(["dict", "tensor_indexed", "wrong_scheme", "longer_episodes"])
        if what == "dict":
            other: Any = {"state": [1.0]}
        elif what == "tensor_indexed":
            other = _pymarl_episodes(2, 5)[torch.tensor([0])]
        elif what == "wrong_scheme":
            other = EpisodeBatch({**PYMARL_SCHEME, "state": {"vshape": 4}}, PYMARL_GROUPS, 1, 5)
        else:
            other = EpisodeBatch(PYMARL_SCHEME, PYMARL_GROUPS, 1, 7, preprocess=_pymarl_preprocess())
        return Call(f"pymarl insert_episode_batch({what})", lambda: batch.insert_episode_batch(other),
                    ("EpisodeBatch", "batch_size", "'state'"))
    if op == "sample":
        what, n = chooser.choice(SIZES)
        return Call(f"pymarl sample({what})", lambda: batch.sample(n) if not isinstance(
            batch, PrioritizedReplayBuffer) else batch.sample(n, t=1), ("batch_size",))
    if op == "per_sample":
        return Call("pymarl prioritized sample(t='1')", lambda: batch.sample(2, t="1"), ("training step",))
    indices, priorities, names = chooser.choice(_PRIORITY_CASES)
    return Call(f"pymarl update_priorities({indices}, {priorities})",
                lambda: batch.update_priorities(indices, priorities), names)


# -- DI-engine --------------------------------------------------------------------------------------------


def make_ding() -> DequeBuffer:
    """Return a full DI-engine buffer with prioritized replay, sampled once."""
    buffer = DequeBuffer(size=4)
    buffer.use(PriorityExperienceReplay(buffer, IS_weight=True, priority_power_factor=1.0))
    for i in range(5):
        buffer.push({"x": i}, meta={"priority": 1.0 + i})
    np.random.seed(0)
    buffer.sample(2)
    return buffer


_DING_PRIORITIES = {"text": "1.5", "nan": float("nan"), "negative": -1.0, "inf": float("inf"), "huge": 1e308,
                    "list": [1.0], "none": None, "bool": True}


def ding_calls(buffer: DequeBuffer, chooser: Chooser) -> Call:
    """Draw a malformed call on a DI-engine DequeBuffer with PriorityExperienceReplay."""
    per = buffer._middleware[0]
    op = chooser.choice(["push", "push", "update", "update", "priorities", "sample", "lookup"])
    record = buffer.storage[1]
    if op == "push":
        where = chooser.choice(["meta", "data", "meta_type", "data_type"])
        if where == "data_type":  # no meta: PER looks for 'priority' in the data, which must support 'in'
            return Call("ding push(5) without meta", lambda: buffer.push(5), ("data", "meta"))
        if where == "meta_type":
            meta = chooser.choice(["x", [1, 2], 3])
            return Call(f"ding push(meta={meta!r})", lambda: buffer.push({"x": 9}, meta=meta), ("meta",))
        corruption, priority = _pick(chooser, _DING_PRIORITIES)
        if where == "data":
            data = {"x": 9, "priority": priority}
            return Call(f"ding push(data priority={corruption})", lambda: buffer.push(data), ("priority",))
        return Call(f"ding push(priority={corruption})", lambda: buffer.push({"x": 9}, meta={"priority": priority}),
                    ("priority",))
    if op == "update":
        how = chooser.choice(["priority", "priority", "meta_type", "no_priority", "wrong_slot", "no_meta"])
        if how == "priority":
            corruption, priority = _pick(chooser, _DING_PRIORITIES)
            meta: Any = {**record.meta, "priority": priority}
            how = f"priority={corruption}"
        else:
            meta = {"meta_type": "x", "no_priority": {"other": 1}, "wrong_slot": {"priority": 1.0, "priority_idx": 3},
                    "no_meta": None}[how]
        return Call(f"ding update({how})", lambda: buffer.update(record.index, {"replaced": True}, meta),
                    ("priority", "meta", record.index))
    if op == "priorities":
        indices, priorities = chooser.choice([
            ([record.index], [1.0, 2.0]), ([record.index], ["1.5"]), ([record.index], [float("nan")]),
            ([record.index], [1e308]), (record.index, [1.0]), ([record.index, record.index], [1.0]),
        ])
        return Call(f"ding update_priorities({len(indices)} indices, {priorities})",
                    lambda: per.update_priorities(indices, priorities), ("priorit", "indices", "string"))
    if op == "sample":
        kwargs = chooser.choice([{"size": 2.5}, {"size": "2"}, {}, {"size": 2, "indices": [record.index]},
                                 {"size": 1, "unroll_len": 2}, {"size": 1, "unroll_len": 1.5, "groupby": "x"}])
        return Call(f"ding sample({kwargs})", lambda: buffer.sample(**kwargs), ("size", "indices", "unroll_len"))
    index = chooser.choice(["nope", "0" * 32, 12])
    if chooser.choice(["get_by_index", "sample"]) == "get_by_index":
        return Call(f"ding get_by_index({index!r})", lambda: buffer.get_by_index(index), ("index",))
    return Call(f"ding sample(indices=[{index!r}])", lambda: buffer.sample(indices=[index]), ("index", "indices"))


# -- registry ------------------------------------------------------------------------------------------------

KINDS: dict[str, tuple[str, Callable[[], Any], Callable[[Any, Chooser], Call]]] = {
    "native_episode": ("native", make_episode_buffer, episode_calls),
    "native_episode_writer": ("native", make_episode_writer, writer_calls),
    "native_transition_uniform": ("native", lambda: make_transition_buffer(False), transition_calls),
    "native_transition_prioritized": ("native", lambda: make_transition_buffer(True), transition_calls),
    "native_transition_next_obs": ("native", make_next_obs_buffer, next_obs_calls),
    "pymarl_episode_batch": ("pymarl", make_pymarl_batch, pymarl_calls),
    "pymarl_replay_buffer": ("pymarl", make_pymarl_replay, pymarl_calls),
    "pymarl_prioritized": ("pymarl", make_pymarl_prioritized, pymarl_calls),
    "ding_deque_per": ("ding", make_ding, ding_calls),
}
LAYERS = ("native", "pymarl", "ding")


def draw_call(kind: str, chooser: Chooser) -> tuple[Any, Call]:
    """Build a fresh buffer of ``kind`` and draw one malformed call on it."""
    _layer, make, calls = KINDS[kind]
    buffer = make()
    return buffer, calls(buffer, chooser)
