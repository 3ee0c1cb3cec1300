"""Sequence replay (R2D2): sample 256 slices of 80 steps from 1,000,000 and 10,000,000 stored steps.

Episodes of 200 steps of ``{obs: f32[17], act: f32[6], rew: f32, terminated: f32}`` fill a
TransitionBuffer; ``SequenceSampler`` draws slices that never cross an episode end. Reported: the median
time of one ``sample(256)`` at each size and the ratio of the larger to the smaller (target: under 2 ms
at 1,000,000 and no slower than 2x at 10,000,000).

    python benchmarks/s4_sequences.py            # full run
    python benchmarks/s4_sequences.py --smoke    # tiny sizes, seconds (CI)
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from xreplay import SequenceSampler, TransitionBuffer

EPISODE = 200


def build(size: int, length: int, seed: int = 0) -> TransitionBuffer:
    """Return a full buffer of ``size`` steps in episodes of ``EPISODE`` steps, sampled in ``length``-step slices."""
    buffer = TransitionBuffer(size, seed=seed, sampler=SequenceSampler(length=length, end_fields=("terminated",)))
    rng = np.random.default_rng(seed)
    for start in range(0, size, 100_000):
        m = min(100_000, size - start)
        terminated = np.zeros(m, np.float32)
        terminated[(EPISODE - 1 - start) % EPISODE :: EPISODE] = 1
        buffer.extend(
            {
                "obs": rng.standard_normal((m, 17), dtype=np.float32),
                "act": np.zeros((m, 6), np.float32),
                "rew": np.zeros(m, np.float32),
                "terminated": terminated,
            }
        )
    return buffer


def median_ms(buffer: TransitionBuffer, batch: int, reps: int) -> float:
    """Return the median milliseconds of one ``buffer.sample(batch)`` (draw the slices and gather them)."""
    buffer.sample(batch)
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        buffer.sample(batch)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def main(argv: list[str] | None = None) -> dict[int, float]:
    """Run the sequence workload and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes for CI")
    parser.add_argument("--reps", type=int, default=50)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    sizes, reps, length = ((20_000, 200_000), 5, 80) if args.smoke else ((1_000_000, 10_000_000), args.reps, 80)
    results = {}
    for size in sizes:
        buffer = build(size, length)
        results[size] = median_ms(buffer, 256, reps)
        del buffer
    print(f"S4 sequences: xreplay SequenceSampler, 256 slices of {length} steps, median of {reps}")
    for size, ms in results.items():
        print(f"  {size:>12,} stored steps   {ms:7.2f} ms")
    small, large = sizes
    print(f"  ratio {large:,} / {small:,}: {results[large] / results[small]:.2f}x")
    return results


if __name__ == "__main__":
    main()
