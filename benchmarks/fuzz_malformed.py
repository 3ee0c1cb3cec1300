"""Malformed-input fuzz: seeded bad calls on every buffer kind, and how xreplay answers them.

Runs the catalogue of ``tests/malformed.py`` (corrupted field values, unknown or missing keys, bad
sizes, indices, lengths, priorities, metas) over the four layers: native episodes (``EpisodeBuffer``,
``EpisodeWriter``), native transitions (``TransitionBuffer`` uniform, prioritized, and storing next
observations once with stream ids), the PyMARL
layer (``EpisodeBatch``, ``ReplayBuffer``, ``PrioritizedReplayBuffer``) and the DI-engine layer
(``DequeBuffer`` with ``PriorityExperienceReplay``). Each call runs on a fresh, full and wrapped
buffer and is classified:

* refused with a typed ``XReplayError`` whose message names the field or argument at fault;
* refused, but the buffer's full state (stored bytes, counters, cursors, sampler and priority
  state, every random generator) changed (a "raise that changed state");
* accepted where it must be refused, or accepted with other values than a correct buffer stores
  (a "value silently stored wrong");
* accepted and stored exactly (inputs that are valid after all, e.g. a sparse tensor).

Usage::

    python benchmarks/fuzz_malformed.py              # 2,000 calls
    python benchmarks/fuzz_malformed.py --smoke      # 160 calls (CI)
"""

from __future__ import annotations

import argparse
import collections
import pathlib
import sys
import time
import warnings

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # the repository root, for tests.malformed

from tests.malformed import KINDS, RandomChooser, draw_call, run_call  # noqa: E402

LAYERS = {
    "native episodes": ("native_episode", "native_episode_writer"),
    "native transitions": ("native_transition_uniform", "native_transition_prioritized", "native_transition_next_obs"),
    "PyMARL": ("pymarl_episode_batch", "pymarl_replay_buffer", "pymarl_prioritized"),
    "DI-engine": ("ding_deque_per",),
}


def fuzz(calls: int, seed: int) -> tuple[dict[str, collections.Counter], list[str]]:
    """Run ``calls`` malformed calls, spread evenly over the four layers; return counters per layer and failures."""
    counts: dict[str, collections.Counter] = {layer: collections.Counter() for layer in LAYERS}
    failures: list[str] = []
    per_layer = calls // len(LAYERS)
    for layer_number, (layer, kinds) in enumerate(LAYERS.items()):
        for i in range(per_layer):
            kind = kinds[i % len(kinds)]
            try:
                buffer, call = draw_call(kind, RandomChooser(seed * 1_000_003 + layer_number * 100_000 + i))
            except TypeError:  # an older xreplay (e.g. without stream ids) cannot build this kind: not counted
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                outcome = run_call(buffer, call)
            tally = counts[layer]
            tally["calls"] += 1
            if not outcome.refused:
                right = call.check_accepted is not None and outcome.stored_right
                tally["accepted, stored exactly" if right else "silently stored wrong"] += 1
                if not right:
                    failures.append(f"{kind}: {call.description} was accepted")
                continue
            tally["refused"] += 1
            tally["typed"] += outcome.typed
            tally["names the culprit"] += outcome.names_culprit
            tally["typed and naming"] += outcome.typed and outcome.names_culprit
            tally["raise changed state"] += not outcome.state_unchanged
            if not (outcome.typed and outcome.names_culprit and outcome.state_unchanged):
                failures.append(f"{kind}: {call.description}: {outcome.error}")
    return counts, failures


def main(argv: list[str] | None = None) -> None:
    """Run the fuzz and print the table of outcomes per layer."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="160 calls, a few seconds")
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    calls = 160 if args.smoke else args.calls
    start = time.perf_counter()
    counts, failures = fuzz(calls, args.seed)
    elapsed = time.perf_counter() - start
    total = sum(counts.values(), collections.Counter())
    rows = [*counts.items(), ("all", total)]
    print(f"xreplay malformed-input fuzz: {total['calls']} calls, seed {args.seed}, {elapsed:.1f} s "
          f"({len(KINDS)} buffer kinds)")
    header = ("layer", "calls", "refused", "typed+named", "% typed+named", "raise changed state",
              "silently wrong", "accepted exactly")
    print("  ".join(f"{h:>19s}" for h in header))
    for layer, tally in rows:
        share = 100.0 * tally["typed and naming"] / tally["refused"] if tally["refused"] else float("nan")
        cells = (layer, tally["calls"], tally["refused"], tally["typed and naming"], f"{share:.1f}",
                 tally["raise changed state"], tally["silently stored wrong"], tally["accepted, stored exactly"])
        print("  ".join(f"{c!s:>19s}" for c in cells))
    met = (
        total["raise changed state"] == 0
        and total["silently stored wrong"] == 0
        and total["typed and naming"] >= 0.95 * total["refused"]
    )
    verdict = "met" if met else "NOT met"
    print(f"targets (0 raises that change state, 0 silently wrong, >= 95% typed and naming): {verdict}")
    for failure in failures[:20]:
        print("  not met:", failure)


if __name__ == "__main__":
    main()
