"""Native episodes: a Scheme of typed fields, step-wise writes with EpisodeWriter, whole-episode samples.

Two agents walk a 1-D corridor for a random number of steps; every step is
written as a runner would (``writer.append``), the episode is closed with its
bootstrap step (``writer.end``), and a learner samples whole episodes cut to
the longest one in the batch (``truncate=True``). Storage dtypes are compact
(actions as uint8, flags as bool, one-hot actions derived at read time), and
reads return the declared dtypes.

    python examples/native_episodes.py            # 2,000 episodes into a 1,000-episode buffer
    python examples/native_episodes.py --smoke    # seconds (CI)

Full run (2 cores shared with other jobs, load 2.9-3.8): 2,000 episodes written step-wise at 170
episodes/s, sample(32, truncate=True) 726/s, 1,000 x 51 steps stored in 1.2 MiB; 44.2 steps per
sampled episode.
"""

import argparse
import time

import numpy as np
import torch

from xreplay import EpisodeBuffer, Field, OneHot, Scheme

AGENTS, ACTIONS, LIMIT = 2, 3, 50


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes for CI")
    args = parser.parse_args(argv)
    episodes, capacity = (40, 16) if args.smoke else (2_000, 1_000)

    # One field per quantity; group="agents" adds an agent dimension; storage_dtype keeps it compact.
    scheme = Scheme(
        {
            "obs": Field((2,), group="agents"),  # position and goal of each agent
            "actions": Field((1,), dtype=torch.long, group="agents", storage_dtype=torch.uint8),
            "actions_onehot": Field((ACTIONS,), group="agents", derived=OneHot("actions", ACTIONS)),
            "reward": Field((1,)),
            "terminated": Field((1,), dtype=torch.uint8, storage_dtype=torch.bool),
        },
        groups={"agents": AGENTS},
    )
    buffer = EpisodeBuffer(scheme, capacity=capacity, max_seq_length=LIMIT + 1, seed=0)
    rng = np.random.default_rng(0)

    start = time.perf_counter()
    for _ in range(episodes):
        writer = buffer.episode_writer()  # collects one episode, then adds it in one copy
        position, goal = np.zeros(AGENTS), rng.integers(-5, 6, AGENTS)
        for t in range(LIMIT):
            actions = rng.integers(0, ACTIONS, (AGENTS, 1))  # 0: left, 1: stay, 2: right
            obs = np.stack([position, goal], axis=1).astype(np.float32)
            position = position + actions[:, 0] - 1
            done = bool((position == goal).all()) or t == LIMIT - 1
            writer.append(
                {"obs": obs, "actions": actions, "reward": [float(done)], "terminated": [int(done and t < LIMIT - 1)]}
            )
            if done:
                break
        writer.end({"obs": np.stack([position, goal], axis=1).astype(np.float32)})  # the bootstrap step
    write_s = time.perf_counter() - start

    start = time.perf_counter()
    samples = 50 if args.smoke else 2_000
    for _ in range(samples):
        batch = buffer.sample(min(32, len(buffer)), truncate=True)  # cut to the longest sampled episode
    sample_s = time.perf_counter() - start

    # A learner reads typed fields; filled marks the steps each episode really has.
    assert batch["actions_onehot"].dtype == torch.float32 and batch["actions"].dtype == torch.long
    mask = batch["filled"][:, :-1].float()
    print(f"stored {len(buffer)} episodes; sampled batch of {batch['obs'].shape[0]} x {batch['obs'].shape[1]} steps")
    print(f"mean episode length in the batch: {float(mask.sum(dim=1).mean()):.1f} steps")
    print(f"write  {episodes / write_s:,.0f} episodes/s (step-wise)")
    print(f"sample {samples / sample_s:,.0f} samples/s of 32 episodes")
    print(f"storage {buffer.storage.nbytes / 2**20:.1f} MiB for {capacity} x {LIMIT + 1} steps")


if __name__ == "__main__":
    main()
