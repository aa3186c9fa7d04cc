"""The training loop's state: one typed record, saved field by field in every checkpoint.

Everything the loop needs to continue a run exactly, apart from tensors (networks, optimizer,
replay, generators), lives in :class:`LoopState`: counters, each environment's episode so far,
the metrics rows and the periodic evaluations. The loop changes it in plain sight; nothing else
holds a reference into it. :meth:`LoopState.to_json` and :meth:`LoopState.from_json` are exact
inverses, and ``from_json`` checks every field, so a damaged checkpoint is refused whole.
"""

import math
from dataclasses import dataclass, field, fields
from typing import Any

__all__ = ["EnvSnapshot", "EpisodeRow", "Evaluation", "LoopState"]


@dataclass
class EnvSnapshot:
    """How to rebuild one sub-environment mid-episode: replay its episode from its start.

    Attributes:
      rng: the state of its ``np_random`` just before this episode's reset; None for the first
        episode, which starts from the run's seed.
      actions: the actions of this episode so far.
      episode_return: the undiscounted return of this episode so far.
    """

    rng: dict[str, Any] | None = None
    actions: list[int] = field(default_factory=list)
    episode_return: float = 0.0


@dataclass(frozen=True)
class EpisodeRow:
    """One finished training episode: a row of metrics.csv.

    Attributes:
      step: environment steps (over all environments) when it ended.
      episode: its number, from 1.
      episode_return: its undiscounted return.
      episode_length: its steps.
      epsilon: the exploration rate on its last step.
      td_loss: the latest training loss then; None before the first update.
      sps: environment steps per second of this process so far (wall-clock dependent).
    """

    step: int
    episode: int
    episode_return: float
    episode_length: int
    epsilon: float
    td_loss: float | None
    sps: float


@dataclass(frozen=True)
class Evaluation:
    """A periodic greedy evaluation: at ``step``, ``mean_return`` +- ``std_return``."""

    step: int
    mean_return: float
    std_return: float


@dataclass
class LoopState:
    """Where a run stands between two steps.

    Attributes:
      step: environment steps so far, over all environments.
      episodes: training episodes finished (``== len(metrics)``).
      updates: gradient steps so far.
      synced_at: ``updates`` at the last hard target copy (a copy of an unchanged network is
        skipped); None before the first.
      last_loss: the latest training loss; None before the first update.
      solved_at: the step at which a periodic evaluation reached ``stop_return``; the loop
        stops there. None while not solved.
      envs: one snapshot per sub-environment.
      metrics: the finished episodes, in order.
      evaluations: the periodic greedy evaluations, in order.
    """

    step: int = 0
    episodes: int = 0
    updates: int = 0
    synced_at: int | None = None
    last_loss: float | None = None
    solved_at: int | None = None
    envs: list[EnvSnapshot] = field(default_factory=list)
    metrics: list[EpisodeRow] = field(default_factory=list)
    evaluations: list[Evaluation] = field(default_factory=list)

    @classmethod
    def fresh(cls, num_envs: int) -> "LoopState":
        return cls(envs=[EnvSnapshot() for _ in range(num_envs)])

    def recent_return(self, episodes: int = 100) -> float | None:
        """Mean return of the last ``episodes`` training episodes (None before the first)."""
        recent = [row.episode_return for row in self.metrics[-episodes:]]
        return sum(recent) / len(recent) if recent else None

    def to_json(self) -> dict[str, Any]:
        """The state as JSON values; rows and evaluations as lists in their field order."""
        return {
            "step": self.step,
            "episodes": self.episodes,
            "updates": self.updates,
            "synced_at": self.synced_at,
            "last_loss": self.last_loss,
            "solved_at": self.solved_at,
            "envs": [
                {"rng": e.rng, "actions": e.actions, "episode_return": e.episode_return}
                for e in self.envs
            ],
            "metrics": [[getattr(row, f.name) for f in _ROW_FIELDS] for row in self.metrics],
            "evaluations": [[e.step, e.mean_return, e.std_return] for e in self.evaluations],
        }

    @classmethod
    def from_json(cls, data: Any, *, num_envs: int) -> "LoopState":
        """Reads :meth:`to_json`'s output, checking every field.

        Raises:
          ValueError: a field is missing, unknown, of the wrong type or out of range, or the
            fields disagree (episodes against metrics rows, snapshots against ``num_envs``).
        """
        _check_keys("loop state", data, {f.name for f in fields(cls)})
        state = cls(
            step=_count(data, "step"),
            episodes=_count(data, "episodes"),
            updates=_count(data, "updates"),
            synced_at=_count(data, "synced_at", optional=True),
            last_loss=_number(data, "last_loss", optional=True),
            solved_at=_count(data, "solved_at", optional=True),
            envs=[_snapshot(e) for e in _list(data, "envs")],
            metrics=[_row(r) for r in _list(data, "metrics")],
            evaluations=[_evaluation(e) for e in _list(data, "evaluations")],
        )
        if len(state.envs) != num_envs:
            raise ValueError(f"{len(state.envs)} environment snapshots for {num_envs} envs")
        if state.episodes != len(state.metrics):
            raise ValueError(f"{state.episodes} episodes but {len(state.metrics)} metrics rows")
        if [row.episode for row in state.metrics] != list(range(1, state.episodes + 1)):
            raise ValueError("metrics rows are not episodes 1, 2, ... in order")
        if any(row.step > state.step for row in state.metrics) or any(
            e.step > state.step for e in state.evaluations
        ):
            raise ValueError(f"rows or evaluations after the state's step {state.step}")
        if state.solved_at is not None and state.solved_at > state.step:
            raise ValueError(f"solved_at {state.solved_at} after step {state.step}")
        return state


_ROW_FIELDS = fields(EpisodeRow)


def _check_keys(what: str, data: Any, expected: set[str]) -> None:
    if not isinstance(data, dict):
        raise ValueError(f"{what} is a {type(data).__name__}, not an object")
    unknown, missing = sorted(set(data) - expected), sorted(expected - set(data))
    if unknown or missing:
        raise ValueError(f"{what} has unknown fields {unknown} / lacks {missing}")


def _count(data: dict[str, Any], name: str, *, optional: bool = False) -> Any:
    value = data[name]
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a non-negative int, got {value!r}")
    return value


def _number(data: dict[str, Any], name: str, *, optional: bool = False) -> Any:
    value = data[name]
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def _list(data: dict[str, Any], name: str) -> list[Any]:
    value = data[name]
    if not isinstance(value, list):
        raise ValueError(f"{name} must be a list, got {type(value).__name__}")
    return value


def _snapshot(data: Any) -> EnvSnapshot:
    _check_keys("environment snapshot", data, {"rng", "actions", "episode_return"})
    if data["rng"] is not None and not isinstance(data["rng"], dict):
        raise ValueError(f"an environment snapshot's rng must be an object, got {data['rng']!r}")
    actions = _list(data, "actions")
    if any(isinstance(a, bool) or not isinstance(a, int) or a < 0 for a in actions):
        raise ValueError("an environment snapshot's actions must be non-negative ints")
    return EnvSnapshot(data["rng"], actions, _number(data, "episode_return"))


def _row(values: Any) -> EpisodeRow:
    names = [f.name for f in _ROW_FIELDS]
    if not isinstance(values, list) or len(values) != len(names):
        raise ValueError(f"a metrics row must be a list of {len(names)} values: {names}")
    data = dict(zip(names, values, strict=True))
    return EpisodeRow(
        step=_count(data, "step"),
        episode=_count(data, "episode"),
        episode_return=_number(data, "episode_return"),
        episode_length=_count(data, "episode_length"),
        epsilon=_number(data, "epsilon"),
        td_loss=_number(data, "td_loss", optional=True),
        sps=_number(data, "sps"),
    )


def _evaluation(values: Any) -> Evaluation:
    if not isinstance(values, list) or len(values) != 3:
        raise ValueError("an evaluation must be [step, mean_return, std_return]")
    data = dict(zip(("step", "mean_return", "std_return"), values, strict=True))
    return Evaluation(
        _count(data, "step"), _number(data, "mean_return"), _number(data, "std_return")
    )
