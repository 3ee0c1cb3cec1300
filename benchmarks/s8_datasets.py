"""Workload S8: offline datasets out and in (HDF5, Minari) and hindsight relabelling, xreplay vs direct h5py/Minari.

Data: the full S2 buffer (``s2_transitions``: 1,000,000 transitions of obs f32[17], next_obs
f32[17], act f32[6], rew f32, done f32, episodes of 1,000 steps; 160 MiB). Measured in one
process, medians over repetitions, variants interleaved, files in a temporary folder (page
cache, no fsync), removal not timed:

* ``to_hdf5`` (the default: a CRC-32 per dataset; HDF5's Fletcher-32 chunk checksums; no
  checksum) against h5py writing the buffer's five field arrays directly
  (``create_dataset(name, data=column)``: contiguous, unchunked, unchecked);
* ``to_minari`` (1,000 episodes in Minari's HDF5 layout) against the same h5py baseline, against
  h5py's high-level API writing the same per-episode arrays, and against the floor of that
  layout: h5py's low-level API creating the same groups, datasets and attributes (7,000 HDF5
  objects and 2,000 attributes for 1,000 episodes) and writing per-episode arrays prepared
  beforehand, nothing else;
* ``from_minari`` (into a new TransitionBuffer) against Minari's own iteration into numpy
  (``iterate_episodes`` then one concatenation per field: obs, next_obs, actions, rewards,
  terminations, truncations);
* HER: relabelled sampling of 256 transitions (``future``, ratio 0.8, a vectorized FetchReach
  reward) from 10,000 stored episodes of 50 steps (FetchReach-sized: observation f32[10], goals
  f32[3], action f32[4]) against uniform sampling of 256 from a TransitionBuffer of the same
  500,000 transitions; HER with ratio 0 (plain uniform sampling of the episodes); and the floor
  of HER on episode storage: the byte-offset gathers of the same fields and goals from the same
  episode rows at prepared draws, nothing else. Each over two EpisodeBuffers of the same
  episodes: step-major rows (``row_order="step"``, what HER is meant to run on: a transition is
  one range of bytes) and the default field-major rows (each field of an episode together).

Targets: to_hdf5 and to_minari >= 0.8x the h5py baseline; from_minari >= 1x Minari's
iteration; HER (step-major rows) < 2x uniform sampling of the same batch from a
TransitionBuffer. Where a format's layout costs more than the flat baseline (Minari's group per
episode; episode rows that keep each field of an episode together), the floor of that layout is
printed next to it.

    python benchmarks/s8_datasets.py            # full run (about a minute)
    python benchmarks/s8_datasets.py --dir /dev/shm  # files in memory: no disk writeback in the timings
    python benchmarks/s8_datasets.py --her-only # the HER rows only (seconds to build, then the timings)
    python benchmarks/s8_datasets.py --datasets-only  # the HDF5 and Minari rows only
    python benchmarks/s8_datasets.py --smoke    # tiny sizes, seconds (CI)
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from s2_transitions import XReplay, fill
from xreplay import EpisodeBuffer, TransitionBuffer
from xreplay.datasets import MinariFields, from_minari, to_hdf5, to_minari
from xreplay.her import HindsightSampler
from xreplay.her.gather import TransitionGather
from xreplay.scheme import Field, Scheme

S2_FIELDS = MinariFields(action="act", reward="rew", terminated="done", truncated=None)
BATCH = 256


def h5py_direct(buffer: TransitionBuffer, path: Path) -> None:
    """Write the buffer's field arrays with h5py, one dataset each (the baseline)."""
    import h5py

    with h5py.File(path, "w") as out:
        for name, column in buffer.storage.columns.items():
            out.create_dataset(name, data=column.numpy())


def h5py_episodes(buffer: TransitionBuffer, path: Path, steps: int) -> None:
    """Write the per-episode arrays of Minari's layout with h5py's high-level API."""
    import h5py

    columns = {name: column.numpy() for name, column in buffer.storage.columns.items()}
    with h5py.File(path, "w") as out:
        for episode, start in enumerate(range(0, len(buffer), steps)):
            stop = start + steps
            group = out.create_group(f"episode_{episode}")
            group.attrs["id"], group.attrs["total_steps"] = episode, steps
            group.create_dataset(
                "observations", data=np.concatenate([columns["obs"][start:stop], columns["next_obs"][stop - 1 : stop]])
            )
            group.create_dataset("actions", data=columns["act"][start:stop])
            group.create_dataset("rewards", data=columns["rew"][start:stop])
            group.create_dataset("terminations", data=columns["done"][start:stop] != 0)
            group.create_dataset("truncations", data=np.zeros(steps, bool))


def minari_layout_arrays(buffer: TransitionBuffer, steps: int) -> list[dict[bytes, np.ndarray]]:
    """Return the per-episode arrays of Minari's layout, prepared once (the floor below writes them as they are)."""
    columns = {name: column.numpy() for name, column in buffer.storage.columns.items()}
    episodes = []
    for start in range(0, len(buffer), steps):
        stop = start + steps
        episodes.append(
            {
                b"observations": np.concatenate([columns["obs"][start:stop], columns["next_obs"][stop - 1 : stop]]),
                b"actions": columns["act"][start:stop].copy(),
                b"rewards": columns["rew"][start:stop].copy(),
                b"terminations": columns["done"][start:stop] != 0,
                b"truncations": np.zeros(steps, bool),
            }
        )
    return episodes


def h5py_minari_floor(episodes: list[dict[bytes, np.ndarray]], path: Path) -> None:
    """Create Minari's groups, attributes and datasets with h5py's low-level API and write prepared arrays: the floor.

    Nothing but HDF5's own work: types and dataspaces cached (and passed as the memory types,
    so that h5py creates no type per write), arrays already in their final form, one
    ``H5Dwrite`` per dataset.
    """
    import h5py

    h5d, h5g, h5s = h5py.h5d, h5py.h5g, h5py.h5s
    types: dict[np.dtype, Any] = {}
    spaces: dict[tuple[int, ...], Any] = {}
    for array in (array for arrays in episodes for array in arrays.values()):  # HDF5 types and dataspaces: once
        if array.dtype not in types:
            types[array.dtype] = h5py.h5t.py_create(array.dtype, logical=True)
        if array.shape not in spaces:
            spaces[array.shape] = h5s.create_simple(array.shape)
    int64, scalar = h5py.h5t.py_create(np.dtype(np.int64), logical=True), h5s.create(h5s.SCALAR)
    with h5py.File(path, "w") as out:
        for episode, arrays in enumerate(episodes):
            group = h5g.create(out.id, f"episode_{episode}".encode())
            for name, value in ((b"id", episode), (b"total_steps", arrays[b"rewards"].shape[0])):
                h5py.h5a.create(group, name, int64, scalar).write(np.array(value, dtype=np.int64), mtype=int64)
            for name, array in arrays.items():
                tid = types[array.dtype]
                h5d.create(group, name, tid, spaces[array.shape]).write(h5s.ALL, h5s.ALL, array, mtype=tid)
            h5g.create(group, b"infos")


def minari_iteration(dataset_id: str) -> dict[str, np.ndarray]:
    """Read a Minari dataset with Minari's own iteration into one numpy array per field (the baseline)."""
    import minari

    episodes = list(minari.load_dataset(dataset_id).iterate_episodes())
    return {
        "obs": np.concatenate([e.observations[:-1] for e in episodes]),
        "next_obs": np.concatenate([e.observations[1:] for e in episodes]),
        "act": np.concatenate([e.actions for e in episodes]),
        "rew": np.concatenate([e.rewards for e in episodes]),
        "terminated": np.concatenate([e.terminations for e in episodes]),
        "truncated": np.concatenate([e.truncations for e in episodes]),
    }


def timed_writes(ops: dict[str, Callable[[Path], object]], root: Path, reps: int) -> dict[str, float]:
    """Return the median seconds of each ``op(fresh path)``, interleaved, after one warm-up round."""
    times: dict[str, list[float]] = {name: [] for name in ops}
    for rep in range(reps + 1):
        for name, op in ops.items():
            target = root / f"{name.replace(' ', '_')}-{rep}-v0"
            start = time.perf_counter()
            op(target)
            elapsed = time.perf_counter() - start
            if rep:
                times[name].append(elapsed)
            shutil.rmtree(target) if target.is_dir() else target.unlink()
    return {name: float(np.median(t)) for name, t in times.items()}


def timed_calls(ops: dict[str, Callable[[], object]], reps: int, calls: int) -> dict[str, float]:
    """Return the median seconds per call of each op, interleaved."""
    times: dict[str, list[float]] = {name: [] for name in ops}
    for _ in range(reps):
        for name, op in ops.items():
            start = time.perf_counter()
            for _ in range(calls):
                op()
            times[name].append((time.perf_counter() - start) / calls)
    return {name: float(np.median(t)) for name, t in times.items()}


def her_buffers(
    episodes: int, steps: int, seed: int = 0, row_orders: tuple[str, ...] = ("step", "field")
) -> tuple[dict[str, EpisodeBuffer], TransitionBuffer]:
    """Return EpisodeBuffers of goal-conditioned episodes (by row order) and a TransitionBuffer of their transitions."""
    dims = {"obs/observation": 10, "obs/achieved_goal": 3, "obs/desired_goal": 3}
    scheme = Scheme(
        {
            **{name: Field((d,)) for name, d in dims.items()},
            "action": Field((4,)),
            "reward": Field(()),
            "terminated": Field((), torch.bool),
            "truncated": Field((), torch.bool),
        }
    )
    rng = np.random.default_rng(seed)
    episode_buffers = {
        order: EpisodeBuffer(scheme, episodes, steps + 1, seed=seed, row_order=order) for order in row_orders
    }
    transitions = TransitionBuffer(episodes * steps, seed=seed)
    for first in range(0, episodes, 500):
        n = min(500, episodes - first)
        obs = {name: rng.random((n, steps + 1, d), dtype=np.float32) for name, d in dims.items()}
        rest = {
            "action": rng.random((n, steps + 1, 4), dtype=np.float32),
            "reward": -np.ones((n, steps + 1), np.float32),
            "terminated": np.zeros((n, steps + 1), bool),
            "truncated": np.zeros((n, steps + 1), bool),
        }
        rest["truncated"][:, steps - 1] = True
        for episode_buffer in episode_buffers.values():
            episode_buffer.add({**obs, **rest})
        flat = {name: v[:, :steps].reshape(n * steps, *v.shape[2:]) for name, v in {**obs, **rest}.items()}
        flat.update({"next_" + k: v[:, 1:].reshape(n * steps, -1) for k, v in obs.items()})
        transitions.extend(flat)
    return episode_buffers, transitions


def her_gather_floor(buffer: EpisodeBuffer, steps: int, draws: int, seed: int = 1) -> Callable[[], object]:
    """Return a call that only gathers a relabelled batch's fields from the episode rows: the floor of HER sampling.

    Each call takes the next of ``draws`` prepared draws (256 transitions, 80% of them with a
    future goal) and gathers every field, next observations included, and the goals with the
    byte-offset gathers :class:`~xreplay.her.HindsightSampler` uses: no draws, relabelling,
    reward or tensors.
    """
    columns = buffer.storage.host_columns
    assert columns is not None
    observed = [name for name in columns if name.startswith("obs/")]
    others = [name for name in columns if name not in observed]
    plan = TransitionGather(columns, observed, others, [], buffer.storage.rows.numpy())
    rng = np.random.default_rng(seed)
    prepared = []
    for _ in range(draws):
        episodes, at = rng.integers(0, len(buffer), BATCH), rng.integers(0, steps, BATCH)
        chosen = np.flatnonzero(rng.random(BATCH) < 0.8)
        goals = at[chosen] + 1 + (rng.random(chosen.size) * (steps - at[chosen])).astype(np.int64)
        prepared.append((episodes, at, episodes[chosen], goals))
    cycle = itertools.cycle(prepared)

    def gather() -> object:
        episodes, at, goal_episodes, goals = next(cycle)
        return plan.gather(episodes, at), plan.take("obs/achieved_goal", goal_episodes, goals)

    return gather


def reach_reward(achieved: np.ndarray, desired: np.ndarray, info: object) -> np.ndarray:
    """FetchReach's sparse reward: 0 within 5 cm of the goal, -1 elsewhere."""
    return -(np.linalg.norm(achieved - desired, axis=-1) > 0.05).astype(np.float32)


def main(argv: list[str] | None = None) -> None:
    """Run S8 and print medians and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, seconds")
    parser.add_argument("--capacity", type=int, default=1_000_000)
    parser.add_argument("--episodes", type=int, default=10_000)
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--dir", default=None, help="folder for the files (default: the system's temporary folder)")
    parser.add_argument("--her-only", action="store_true", help="only the HER rows (no HDF5 or Minari)")
    parser.add_argument("--datasets-only", action="store_true", help="only the HDF5 and Minari rows (no HER)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.capacity, args.episodes, args.reps, args.calls = 5_000, 200, 2, 20
    torch.set_num_threads(1)
    root = Path(tempfile.mkdtemp(prefix="s8-", dir=args.dir))
    previous = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(root / "minari")  # a private local folder
    try:
        run(args, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
        if previous is None:
            del os.environ["MINARI_DATASETS_PATH"]
        else:
            os.environ["MINARI_DATASETS_PATH"] = previous


def run(args: argparse.Namespace, root: Path) -> None:
    """Measure every S8 operation."""
    if not args.her_only:
        run_datasets(args, root)
    if not args.datasets_only:
        run_her(args)


def run_datasets(args: argparse.Namespace, root: Path) -> None:
    """Measure the HDF5 and Minari writes and reads."""
    s2 = XReplay(args.capacity, prioritized=False)
    fill(s2, args.capacity, np.random.default_rng(0))
    buffer = s2.buf
    steps = min(1000, len(buffer))
    layout = minari_layout_arrays(buffer, steps)
    writes = timed_writes(
        {
            "h5py direct": lambda p: h5py_direct(buffer, p),
            "h5py Minari-layout floor": lambda p: h5py_minari_floor(layout, p),
            "to_hdf5": lambda p: to_hdf5(buffer, p),
            "to_hdf5 fletcher32": lambda p: to_hdf5(buffer, p, checksum="fletcher32"),
            "to_hdf5 checksum=None": lambda p: to_hdf5(buffer, p, checksum=None),
            "h5py per-episode": lambda p: h5py_episodes(buffer, p, steps),
            "to_minari": lambda p: to_minari(buffer, p, fields=S2_FIELDS),
        },
        root,
        args.reps,
    )
    to_minari(buffer, dataset_id="s2-v0", fields=S2_FIELDS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Minari's own reader is not ours to fix
        reads = timed_calls(
            {
                "minari iteration": lambda: minari_iteration("s2-v0"),
                "from_minari": lambda: from_minari("s2-v0", fields=S2_FIELDS),
            },
            args.reps,
            1,
        )
    print(f"S8 capacity={args.capacity} reps={args.reps}")
    print(f"{'operation':34s}{'median':>12s}{'ratio':>10s}  target")
    base = writes["h5py direct"]
    for name in ("h5py direct", "to_hdf5", "to_hdf5 fletcher32", "to_hdf5 checksum=None", "to_minari"):
        target = "  speed vs h5py direct >= 0.8" if name in ("to_hdf5", "to_minari") else ""
        print(f"{name:34s}{writes[name] * 1e3:10.1f}ms{base / writes[name]:10.2f}{target}")
    per_episode = writes["h5py per-episode"]
    print(f"{'h5py per-episode (Minari layout)':34s}{per_episode * 1e3:10.1f}ms{base / per_episode:10.2f}")
    print(f"{'to_minari vs h5py per-episode':34s}{'':12s}{per_episode / writes['to_minari']:10.2f}")
    floor = writes["h5py Minari-layout floor"]
    print(f"{'h5py Minari-layout floor':34s}{floor * 1e3:10.1f}ms{base / floor:10.2f}  (objects + prepared arrays)")
    print(f"{'to_minari vs the floor':34s}{'':12s}{floor / writes['to_minari']:10.2f}  speed >= 0.8")
    print(f"{'minari iteration into numpy':34s}{reads['minari iteration'] * 1e3:10.1f}ms{1:10.2f}")
    speed = reads["minari iteration"] / reads["from_minari"]
    print(f"{'from_minari (xreplay)':34s}{reads['from_minari'] * 1e3:10.1f}ms{speed:10.2f}  speed >= 1")


def run_her(args: argparse.Namespace) -> None:
    """Measure hindsight relabelled sampling over step-major and field-major episode rows, interleaved."""
    buffers, transitions = her_buffers(args.episodes, 50)
    ops: dict[str, Callable[[], object]] = {"uniform TransitionBuffer": lambda: transitions.sample(BATCH)}
    for order, episodes in buffers.items():
        future = HindsightSampler(episodes, reach_reward, "future", 0.8)
        plain = HindsightSampler(episodes, reach_reward, "future", 0.0)
        ops[f"HER future 0.8, {order} rows"] = lambda future=future: future.sample(BATCH)
        ops[f"HER ratio 0, {order} rows"] = lambda plain=plain: plain.sample(BATCH)
        ops[f"HER gathers only, {order} rows"] = her_gather_floor(episodes, 50, args.calls)
    samples = timed_calls(ops, args.reps, args.calls)
    print(f"S8 HER episodes={args.episodes}x50 reps={args.reps} calls={args.calls}")
    print(f"{'operation':34s}{'median':>12s}{'ratio':>10s}  target")
    uniform = samples["uniform TransitionBuffer"]
    for name, seconds in samples.items():
        target = "  time vs TransitionBuffer < 2" if name == "HER future 0.8, step rows" else ""
        print(f"{name:34s}{seconds * 1e6:10.1f}us{seconds / uniform:10.2f}{target}")
    for order in buffers:
        relabelled = samples[f"HER future 0.8, {order} rows"] / samples[f"HER ratio 0, {order} rows"]
        print(f"{f'future 0.8 vs ratio 0, {order} rows':34s}{'':12s}{relabelled:10.2f}  time vs the same episodes")
    field, step = samples["HER future 0.8, field rows"], samples["HER future 0.8, step rows"]
    print(f"{'step rows vs field rows':34s}{'':12s}{step / field:10.2f}  time of HER future 0.8")


if __name__ == "__main__":
    main()
