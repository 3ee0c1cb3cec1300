"""Small Minari datasets made locally with Minari's own API (nothing is downloaded)."""

from __future__ import annotations

import numpy as np


def make_dataset(minari, gym, dataset_id: str, episodes: list[dict], observation_space, action_space):
    """Create a Minari dataset from episode dicts through ``minari.create_dataset_from_buffers``."""
    buffers = [minari.data_collector.EpisodeBuffer(**episode) for episode in episodes]
    return minari.create_dataset_from_buffers(
        dataset_id,
        buffers,
        env="CartPole-v1",  # an env spec and all the metadata, so Minari has nothing to warn about
        eval_env="CartPole-v1",
        algorithm_name="random",
        author="xreplay tests",
        author_email="tests@example.org",
        code_permalink="https://example.org/xreplay",
        description="made by the xreplay tests",
        observation_space=observation_space,
        action_space=action_space,
    )


def box_episodes(rng: np.random.Generator, lengths=(5, 3, 6), obs_dim: int = 3, actions: int = 4) -> list[dict]:
    """Return random episodes with Box observations and Discrete actions; ends alternate terminated/truncated."""
    episodes = []
    for i, steps in enumerate(lengths):
        end = np.zeros(steps, bool)
        end[-1] = True
        episodes.append(
            {
                "observations": rng.random((steps + 1, obs_dim), dtype=np.float32),
                "actions": rng.integers(0, actions, steps),
                "rewards": rng.random(steps),
                "terminations": end if i % 2 == 0 else np.zeros(steps, bool),
                "truncations": np.zeros(steps, bool) if i % 2 == 0 else end,
            }
        )
    return episodes


def goal_episodes(rng: np.random.Generator, lengths=(4, 6), bits: int = 5) -> list[dict]:
    """Return random episodes with gymnasium's goal-conditioned dict observations (int8 bits)."""
    episodes = []
    for steps in lengths:
        state = rng.integers(0, 2, (steps + 1, bits), dtype=np.int8)
        goal = np.repeat(rng.integers(0, 2, (1, bits), dtype=np.int8), steps + 1, axis=0)
        end = np.zeros(steps, bool)
        end[-1] = True
        episodes.append(
            {
                "observations": {"observation": state, "achieved_goal": state.copy(), "desired_goal": goal},
                "actions": rng.integers(0, bits, steps),
                "rewards": -np.ones(steps, np.float32),
                "terminations": np.zeros(steps, bool),
                "truncations": end,
            }
        )
    return episodes


def goal_space(gym, bits: int = 5):
    """Return the Dict observation space of :func:`goal_episodes`."""
    binary = gym.spaces.MultiBinary(bits)
    return gym.spaces.Dict({"observation": binary, "achieved_goal": binary, "desired_goal": binary})
