"""HindsightSampler: uniform transitions of stored goal-conditioned episodes, goals relabelled at sample time."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Mapping
from typing import Any

import numpy as np
import torch

from xreplay.buffers.episodes import EpisodeBuffer
from xreplay.buffers.transitions import TransitionSample
from xreplay.errors import FieldShapeError, FieldValueError, InsufficientDataError, UnknownFieldError
from xreplay.her.gather import TransitionGather
from xreplay.scheme import Field, Scheme
from xreplay.storage.dtypes import numpy_dtype, torch_dtype

__all__ = ["STRATEGIES", "GoalFields", "HindsightSample", "HindsightSampler", "goal_scheme"]

STRATEGIES = ("future", "final", "episode")
RewardFn = Callable[[np.ndarray, np.ndarray, Mapping[str, np.ndarray]], Any]


@dataclasses.dataclass(frozen=True)
class GoalFields:
    """Which fields of the buffer hold a goal-conditioned episode's parts, and which go to ``compute_reward``.

    Args:
        obs: Prefix of the observation fields (``obs/observation``, ``obs/achieved_goal``, ...).
        next_obs: Prefix of the next observations in samples (``next_obs/observation``, ...).
        achieved_goal: Key of the achieved goal in the observation dict.
        desired_goal: Key of the desired goal.
        reward: Field of the reward.
        info: Per-step fields passed to ``compute_reward``, by name (kept as a tuple).

    Example:
        >>> fields = GoalFields(desired_goal="target", info=["weight"])
        >>> fields.desired_goal, fields.info
        ('target', ('weight',))
    """

    obs: str = "obs"
    next_obs: str = "next_obs"
    achieved_goal: str = "achieved_goal"
    desired_goal: str = "desired_goal"
    reward: str = "reward"
    info: Collection[str] = ()

    def __post_init__(self) -> None:
        """Keep ``info`` as a tuple, so the value stays immutable."""
        object.__setattr__(self, "info", tuple(self.info))


class HindsightSample(TransitionSample):
    """Relabelled transitions: flat field name -> tensor ``[n, *item]``, next observations under ``next_obs/``.

    Attributes:
        indices: Episode slots sampled (int64 numpy array).
        steps: Step of each transition in its episode.
        relabelled: Whether each transition's goal was replaced (bool numpy array).
        goal_steps: The step whose achieved goal became the desired goal, -1 where it was kept.
    """

    def __init__(
        self,
        fields: dict[str, torch.Tensor],
        indices: np.ndarray,
        steps: np.ndarray,
        relabelled: np.ndarray,
        goal_steps: np.ndarray,
    ):
        """Wrap gathered fields and where they came from."""
        super().__init__(fields, indices)
        self.steps, self.relabelled, self.goal_steps = steps, relabelled, goal_steps


def goal_scheme(
    observation_space: Any, action_space: Any, obs: str = "obs", reward_dtype: torch.dtype = torch.float32
) -> Scheme:
    """Return the scheme of episodes of a goal-conditioned environment (a Dict observation space).

    Fields: ``obs/<key>`` per entry of the observation space, ``action``, ``reward``, and
    ``terminated`` / ``truncated`` (bool), all per step.

    Example:
        >>> import gymnasium as gym
        >>> space = gym.spaces.Dict({k: gym.spaces.MultiBinary(4) for k in ("observation", "achieved_goal",
        ...                                                                 "desired_goal")})
        >>> list(goal_scheme(space, gym.spaces.Discrete(4)))[:3]
        ['obs/achieved_goal', 'obs/desired_goal', 'obs/observation']
    """
    fields = {
        f"{obs}/{key}": Field(tuple(sub.shape), torch_dtype(sub.dtype)) for key, sub in observation_space.spaces.items()
    }
    fields["action"] = Field(tuple(action_space.shape), torch_dtype(action_space.dtype))
    fields["reward"] = Field((), reward_dtype)
    fields["terminated"] = Field((), torch.bool)
    fields["truncated"] = Field((), torch.bool)
    return Scheme(fields)


class HindsightSampler:
    """Samples transitions of stored goal-conditioned episodes, relabelling goals at sample time.

    Sampling reads fastest from a buffer built with ``row_order="step"`` (see :mod:`xreplay.her`);
    with CPU storage the fields of each transition are then one gather of one range of bytes.

    Args:
        buffer: Episodes stored as described in :mod:`xreplay.her`.
        compute_reward: ``compute_reward(achieved_goal, desired_goal, info)`` on numpy batches
            ``[m, *goal]`` (``info``: the ``info`` fields of the transitions, by name), returning
            ``m`` rewards; gymnasium-robotics' ``env.unwrapped.compute_reward`` is one.
        strategy: Where relabelled goals come from: ``"future"`` (a step after the transition),
            ``"final"`` (the episode's last observation) or ``"episode"`` (any step after the first).
        relabel_ratio: Share of each batch relabelled (the HER paper's k = 4 goals is 0.8).
        goal_fields: Where the observations, goals and reward are, and the ``info`` fields passed to
            ``compute_reward`` (:class:`GoalFields`; its defaults when None).

    Raises:
        UnknownFieldError: A named field is not a per-step field of the buffer.
        FieldShapeError: Achieved and desired goals differ in shape.
        ValueError: An unknown strategy or a ratio outside [0, 1].

    Example:
        >>> from xreplay.scheme import Field, Scheme
        >>> scheme = Scheme({f"obs/{k}": Field((1,)) for k in ("observation", "achieved_goal", "desired_goal")}
        ...                 | {"reward": Field(())})
        >>> buf = EpisodeBuffer(scheme, capacity=4, max_seq_length=4, seed=0)
        >>> steps = torch.arange(4.0).reshape(1, 4, 1)  # the achieved goal is the step number; the goal is 9
        >>> _ = buf.add({"obs/observation": steps, "obs/achieved_goal": steps, "obs/desired_goal": steps * 0 + 9,
        ...              "reward": torch.full((1, 4), -1.0)})
        >>> her = HindsightSampler(buf, lambda a, d, info: (a == d).all(-1) - 1.0, strategy="final", relabel_ratio=1.0)
        >>> batch = her.sample(4)
        >>> batch["obs/desired_goal"].flatten().tolist()  # the goal reached at the end: 3
        [3.0, 3.0, 3.0, 3.0]
        >>> [(t, nxt, r) for t, nxt, r in zip(batch.steps.tolist(), batch["next_obs/achieved_goal"].flatten().tolist(),
        ...                                   batch["reward"].tolist())]  # reward 0 where the next step reaches it
        [(2, 3.0, 0.0), (1, 2.0, -1.0), (1, 2.0, -1.0), (0, 1.0, -1.0)]
    """

    def __init__(
        self,
        buffer: EpisodeBuffer,
        compute_reward: RewardFn,
        strategy: str = "future",
        relabel_ratio: float = 0.8,
        *,
        goal_fields: GoalFields | None = None,
    ):
        """Check the fields and the settings."""
        fields = goal_fields if goal_fields is not None else GoalFields()
        obs, next_obs, reward, info = fields.obs, fields.next_obs, fields.reward, fields.info
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, received {strategy!r}")
        if not 0.0 <= relabel_ratio <= 1.0:
            raise ValueError(f"relabel_ratio must lie in [0, 1], received {relabel_ratio}")
        if not callable(compute_reward):
            raise TypeError(f"compute_reward must be callable, received {type(compute_reward).__name__}")
        scheme = buffer.scheme
        self.achieved, self.desired = f"{obs}/{fields.achieved_goal}", f"{obs}/{fields.desired_goal}"
        for name in (self.achieved, self.desired, reward, *info):
            if name not in scheme or not scheme[name].per_step or scheme[name].derived is not None:
                raise UnknownFieldError(
                    f"field {name!r}: expected a stored per-step field of the buffer, which has {list(scheme)}"
                )
        if scheme.item_shape(self.achieved) != scheme.item_shape(self.desired):
            raise FieldShapeError(
                f"field {self.desired!r}: expected the shape of {self.achieved!r} {scheme.item_shape(self.achieved)}, "
                f"received {scheme.item_shape(self.desired)}"
            )
        self.buffer, self.compute_reward, self.goal_fields = buffer, compute_reward, fields
        self.strategy, self.relabel_ratio = strategy, float(relabel_ratio)
        self.reward, self.info = reward, tuple(info)
        self._reward_item = scheme.item_shape(reward)
        self._reward_size = int(np.prod(self._reward_item, dtype=np.int64))
        prefix = obs + "/"
        stored = scheme.stored()
        self._observed = [n for n in stored if scheme[n].per_step and n.startswith(prefix)]
        self._next = {n: next_obs + n[len(obs) :] for n in scheme if n.startswith(prefix) and scheme[n].per_step}
        self._per_step = [n for n in stored if scheme[n].per_step and not n.startswith(prefix)]
        self._per_episode = [n for n in stored if not scheme[n].per_step]
        self._derived = [n for n in scheme if scheme[n].derived is not None]
        self._declared_torch = {n: scheme[n].dtype for n in stored}
        numpy_dtypes = {n: numpy_dtype(scheme[n].dtype) for n in stored}
        self._numpy = all(d is not None for d in numpy_dtypes.values())  # else (bfloat16) gather with torch
        self._declared = numpy_dtypes
        self._cumulative: tuple[tuple[int, int, int], np.ndarray, np.ndarray, int] | None = None
        self._plan: tuple[Mapping[str, np.ndarray], TransitionGather, dict[str, np.dtype]] | None = None

    def _transitions(self) -> tuple[np.ndarray, np.ndarray, int]:
        """Return (transitions per stored episode, their running total, the common count or 0), cached per write."""
        buffer = self.buffer
        lengths = buffer.episode_lengths()
        key = (buffer.writer.writes, lengths.shape[0], id(lengths.base))
        cached = self._cumulative
        if cached is None or cached[0] != key:
            counts = np.maximum(lengths.astype(np.int64) - 1, 0)  # the last step only holds an observation
            same = int(counts[0]) if counts.size and (counts == counts[0]).all() else 0
            cached = self._cumulative = (key, counts, np.cumsum(counts), same)
        return cached[1], cached[2], cached[3]

    def can_sample(self, n: int) -> bool:
        """Return whether at least one transition is stored (sampling is with replacement)."""
        _counts, total, _same = self._transitions()
        return n == 0 or (total.shape[0] > 0 and int(total[-1]) > 0)

    def sample(self, n: int) -> HindsightSample:
        """Sample ``n`` transitions uniformly (with replacement) and relabel ``relabel_ratio`` of them.

        Raises:
            InsufficientDataError: No transition is stored.
            FieldShapeError: ``compute_reward`` returned another shape than one reward per relabelled transition.
            FieldValueError: ``compute_reward`` returned something that is not numbers.
        """
        rng = self.buffer.rng
        state = rng.bit_generator.state  # restored when the sample fails, so a failure changes nothing
        try:
            return self._sample(rng, n)
        except BaseException:
            rng.bit_generator.state = state
            raise

    def _draw(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, ...]:
        """Return (episode slots, steps, relabelled mask, goal steps of the relabelled) for ``n`` transitions."""
        counts, total, same = self._transitions()
        stored = int(total[-1]) if total.shape[0] else 0
        if stored == 0:
            raise InsufficientDataError(f"cannot sample {n} transitions: the buffer holds no transition; add episodes")
        flat = rng.integers(0, stored, n)  # uniform over all stored transitions
        if same:  # episodes of one length (a time limit): the episode and step are a division away
            episodes, steps = np.divmod(flat, same)
        else:
            episodes = np.searchsorted(total, flat, side="right")  # the episode whose running total passes it
            steps = flat - (total[episodes] - counts[episodes])  # offset inside that episode
        relabelled = rng.random(n) < self.relabel_ratio
        chosen = np.flatnonzero(relabelled)
        last = same if same else counts[episodes[chosen]]  # step of the episode's final observation
        if self.strategy == "future":  # uniform over the steps after the transition, t + 1 .. last
            after = steps[chosen]
            goals = after + 1 + (rng.random(chosen.size) * (last - after)).astype(np.int64)
        elif self.strategy == "final":
            goals = np.full(chosen.size, last, dtype=np.int64) if same else last
        else:  # uniform over every step after the first, 1 .. last
            goals = 1 + (rng.random(chosen.size) * last).astype(np.int64)
        return episodes, steps, relabelled, chosen, goals

    def _sample(self, rng: np.random.Generator, n: int) -> HindsightSample:
        """Draw, gather (in the declared dtypes), relabel and wrap one batch."""
        episodes, steps, relabelled, chosen, goals = self._draw(rng, n)
        host = self.buffer.storage.host_columns if self._numpy else None
        if host is not None:
            out, achieved = self._gather_host(host, episodes, steps, chosen, goals)
        else:
            out, achieved = self._gather_device(episodes, steps, chosen, goals)
        if chosen.size:
            self._relabel(out, achieved, chosen)
        fields = {name: torch.from_numpy(v) if type(v) is np.ndarray else v for name, v in out.items()}
        if self._derived:
            self._add_derived(fields, episodes, steps)
        goal_steps = np.full(n, -1, dtype=np.int64)
        goal_steps[chosen] = goals
        return HindsightSample(fields, episodes, steps, relabelled, goal_steps)

    def _gather_host(
        self,
        host: Mapping[str, np.ndarray],
        episodes: np.ndarray,
        steps: np.ndarray,
        chosen: np.ndarray,
        goals: np.ndarray,
    ) -> tuple[dict[str, Any], Any]:
        """Return the fields of CPU storage at the draws (one byte-offset gather per group), and the new goals."""
        cached = self._plan
        if cached is None or cached[0] is not host:  # first use, or the storage's arrays were replaced
            rows = self.buffer.storage.rows.numpy()  # the memory of the columns: step-major rows gather by step
            plan = TransitionGather(host, self._observed, self._per_step, self._per_episode, rows)
            casts = {name: d for name, d in self._declared.items() if d is not None and host[name].dtype != d}
            self._plan = (host, plan, casts)
        else:
            plan, casts = cached[1], cached[2]
        gathered = plan.gather(episodes, steps)
        for name, dtype in casts.items():  # storage dtypes that differ from the declared ones
            gathered[name] = gathered[name].astype(dtype)
        out: dict[str, Any] = {}
        for name in self._observed:  # gathered as [n, 2, *item]: each step and its next step
            both = gathered.pop(name)
            out[name], out[self._next[name]] = both[:, 0], both[:, 1]
        out.update(gathered)
        achieved = None
        if chosen.size:
            achieved = plan.take(self.achieved, episodes[chosen], goals)
            if self.achieved in casts:
                achieved = achieved.astype(casts[self.achieved])
        return out, achieved

    def _gather_device(
        self,
        episodes: np.ndarray,
        steps: np.ndarray,
        chosen: np.ndarray,
        goals: np.ndarray,
    ) -> tuple[dict[str, Any], Any]:
        """Return the fields of storage on another device (or with a dtype numpy lacks) at the draws, with torch."""
        columns, declared = self.buffer.storage.columns, self._declared_torch
        n = episodes.shape[0]
        both_episodes, both_steps = np.concatenate((episodes, episodes)), np.concatenate((steps, steps + 1))
        out: dict[str, Any] = {}
        for name in self._observed:  # one gather for the steps and their next steps
            both = _cast(_gather_torch(columns[name], both_episodes, both_steps), declared[name])
            out[name], out[self._next[name]] = both[:n], both[n:]
        for name in self._per_step:
            out[name] = _cast(_gather_torch(columns[name], episodes, steps), declared[name])
        for name in self._per_episode:
            out[name] = _cast(_gather_torch(columns[name], episodes, None), declared[name])
        achieved = None
        if chosen.size:
            gathered = _gather_torch(columns[self.achieved], episodes[chosen], goals)
            achieved = _cast(gathered, declared[self.achieved])
        return out, achieved

    def _relabel(self, out: dict[str, Any], goals: Any, chosen: np.ndarray) -> None:
        """Put ``goals`` in the desired goals of the ``chosen`` transitions and recompute their rewards."""
        desired, reward = self.desired, self.reward
        index = chosen if isinstance(goals, np.ndarray) else torch.from_numpy(chosen).to(goals.device)
        for name in (desired, self._next[desired]):
            out[name][index] = goals
        achieved = _host(out[self._next[self.achieved]][index])
        info = {name: _host(out[name][index]) for name in self.info}
        rewards = np.asarray(self.compute_reward(achieved, _host(goals), info))
        if rewards.dtype.kind not in "biuf":
            raise FieldValueError(f"compute_reward returned dtype {rewards.dtype}; expected numbers for {reward!r}")
        item = self._reward_item
        expected = (chosen.size, *item)
        if rewards.shape != expected:
            if rewards.shape == (chosen.size,) and self._reward_size == 1:
                rewards = rewards.reshape(expected)
            else:
                raise FieldShapeError(
                    f"compute_reward returned shape {rewards.shape} for {chosen.size} relabelled transitions; "
                    f"expected {expected} to fill field {reward!r}"
                )
        target = out[reward]
        if isinstance(target, np.ndarray):
            target[index] = rewards
        else:
            target[index] = torch.from_numpy(rewards).to(target.device, target.dtype)

    def _add_derived(self, fields: dict[str, torch.Tensor], episodes: np.ndarray, steps: np.ndarray) -> None:
        """Compute derived (one-hot) fields from their stored class indices."""
        scheme = self.buffer.scheme
        host = self.buffer.storage.host_columns
        columns: Mapping[str, Any] = host if host is not None else self.buffer.storage.columns
        gather = _gather_numpy if host is not None else _gather_torch
        n = episodes.shape[0]
        for name in self._derived:
            derived = scheme[name].derived
            assert derived is not None
            dtype = scheme[name].dtype
            if name in self._next:  # an observation field: its next step too
                both = np.concatenate((episodes, episodes)), np.concatenate((steps, steps + 1))
                pair = torch.as_tensor(gather(columns[name], *both))
                fields[name] = derived.decode(pair[:n]).to(dtype)
                fields[self._next[name]] = derived.decode(pair[n:]).to(dtype)
            else:
                index = gather(columns[name], episodes, steps if scheme[name].per_step else None)
                fields[name] = derived.decode(torch.as_tensor(index)).to(dtype)


def _cast(value: Any, dtype: Any) -> Any:
    """Return a gathered value in ``dtype`` (numpy or torch), converted only when it differs."""
    if isinstance(value, np.ndarray):
        return value if value.dtype == dtype else value.astype(dtype)
    return value if value.dtype == dtype else value.to(dtype)


def _gather_numpy(column: np.ndarray, episodes: np.ndarray, steps: np.ndarray | None) -> np.ndarray:
    """Return ``column[episodes, steps]`` (or ``column[episodes]``) of a numpy view, as a new array."""
    return column[episodes] if steps is None else column[episodes, steps]


def _gather_torch(column: torch.Tensor, episodes: np.ndarray, steps: np.ndarray | None) -> torch.Tensor:
    """Return ``column[episodes, steps]`` of a tensor on any device."""
    index = torch.from_numpy(np.ascontiguousarray(episodes)).to(column.device)
    if steps is None:
        return column[index]
    return column[index, torch.from_numpy(np.ascontiguousarray(steps)).to(column.device)]


def _host(value: Any) -> np.ndarray:
    """Return a gathered value as a numpy array on the host."""
    return value if isinstance(value, np.ndarray) else value.cpu().numpy()
