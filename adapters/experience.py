"""A run's replay memory: one small protocol over both core buffers.

The loop calls :class:`Replay` without knowing which buffer it holds:

- :class:`TransitionMemory` wraps :mod:`dqnkit.core.replay` for vector observations: a row is a
  whole transition (a CartPole state is 16 bytes; sharing it would save nothing);
- :class:`FrameMemory` wraps :mod:`dqnkit.core.frame_replay` for image observations
  ``[C, H, W]``: every frame stored once, next_obs shared with the following obs.

Steps are staged as numpy references and written to the core buffer in one copy per field when
the buffer is next read (:meth:`Replay.sample` or :meth:`Replay.checkpoint`): the loop never
flushes by hand, and sampling always sees every step recorded so far.

Seams for what comes next: :class:`Sample` carries ``indices`` and ``weights`` (None for uniform
sampling) and :meth:`Replay.update_priorities` takes the new priorities of a sampled batch (a
no-op here), which is the whole interface a prioritized memory needs from the loop. An n-step
builder sits between :class:`~dqnkit.adapters.vector.Step` and :meth:`Replay.add`.
"""

import math
from typing import Any, NamedTuple, Protocol

import numpy as np
import torch

from dqnkit.adapters.errors import CommandError
from dqnkit.core import (
    FrameReplayState,
    PrioritizedState,
    ReplayState,
    Transition,
    frame_replay,
    prioritized,
    replay,
    sum_tree,
)

__all__ = [
    "FrameMemory",
    "Memory",
    "PrioritizedMemory",
    "Replay",
    "Sample",
    "TransitionMemory",
    "create_memory",
    "example_row",
    "restore_memory",
    "shares_frames",
]

Array = np.ndarray[Any, Any]


def example_row(obs_shape: tuple[int, ...], obs_dtype: torch.dtype) -> Transition:
    """One zero transition as the loop stores them: int64 action, float32 reward, bool flag."""
    obs = torch.zeros(obs_shape, dtype=obs_dtype)
    return Transition(
        obs=obs,
        action=torch.zeros((), dtype=torch.int64),
        reward=torch.zeros((), dtype=torch.float32),
        next_obs=obs.clone(),
        terminated=torch.zeros((), dtype=torch.bool),
    )


def shares_frames(obs_shape: tuple[int, ...]) -> bool:
    """True for image observations ``[C, H, W]``: they go into a frame-sharing buffer."""
    return len(obs_shape) == 3


class Sample(NamedTuple):
    """A batch drawn from a memory.

    Attributes:
      batch: the transitions, ``[B, ...]`` per field.
      indices: ``[B]`` where they are stored, for :meth:`Replay.update_priorities`; None when
        the memory has no priorities.
      weights: ``[B]`` importance-sampling weights for the loss; None for uniform sampling.
    """

    batch: Transition
    indices: torch.Tensor | None = None
    weights: torch.Tensor | None = None


class Replay(Protocol):
    """What the training loop needs from a replay memory."""

    def start(self, streams: Array, obs: Array) -> None:
        """Records the first observation of a new episode for each of ``streams``."""

    def add(
        self, obs: Array, action: Array, reward: Array, next_obs: Array, terminated: Array
    ) -> None:
        """Records one step of every environment (``next_obs``: the real final obs at a done)."""

    def sample(self, batch_size: int, generator: torch.Generator, progress: float) -> Sample:
        """A batch of everything recorded so far; ``progress`` is the fraction of the run done
        (a prioritized memory anneals its importance-weight exponent with it)."""

    def update_priorities(self, indices: torch.Tensor | None, td_error: torch.Tensor) -> None:
        """Takes ``|td_error|`` of the batch at ``indices`` (uniform memories ignore it)."""

    def written(self) -> int:
        """Rows recorded since the run began (staged ones included)."""

    def checkpoint(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """The stored rows as named tensors and the counters as JSON."""


class _Staged:
    """Numpy rows waiting to be written, one list per field."""

    def __init__(self) -> None:
        self.rows: list[tuple[Array, ...]] = []
        self.count = 0

    def append(self, row: tuple[Array, ...]) -> None:
        self.rows.append(row)
        self.count += len(row[0])

    def take(self, device: torch.device) -> list[torch.Tensor]:
        columns = [
            torch.from_numpy(np.concatenate(column)).to(device)
            for column in zip(*self.rows, strict=True)
        ]
        self.rows.clear()
        self.count = 0
        return columns


class TransitionMemory:
    """Whole transitions in :mod:`dqnkit.core.replay`."""

    kind = "transitions"

    def __init__(self, state: ReplayState, written: int = 0) -> None:
        self.state = state
        self._written = written
        self._staged = _Staged()

    def start(self, streams: Array, obs: Array) -> None:
        pass  # rows carry their own obs

    def add(
        self, obs: Array, action: Array, reward: Array, next_obs: Array, terminated: Array
    ) -> None:
        self._staged.append((obs, action, reward.astype(np.float32), next_obs, terminated))

    def _flush(self) -> ReplayState:
        if self._staged.count:
            self._written += self._staged.count
            columns = self._staged.take(self.state.storage.obs.device)
            self.state = self._write(Transition(*columns))
        return self.state

    def _write(self, rows: Transition) -> ReplayState:
        return replay.add(self.state, rows)

    def sample(self, batch_size: int, generator: torch.Generator, progress: float = 0.0) -> Sample:
        return Sample(replay.sample(self._flush(), batch_size, generator))

    def update_priorities(self, indices: torch.Tensor | None, td_error: torch.Tensor) -> None:
        pass

    def written(self) -> int:
        return self._written + self._staged.count

    def checkpoint(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        state = self._flush()
        tensors = {
            name: field[: state.size]
            for name, field in zip(Transition._fields, state.storage, strict=True)
        }
        meta = {
            "kind": self.kind,
            "capacity": state.capacity,
            "cursor": state.cursor,
            "size": state.size,
            "written": self._written,
        }
        return tensors, meta

    @classmethod
    def restore(
        cls,
        meta: dict[str, Any],
        tensors: dict[str, torch.Tensor],
        example: Transition,
        streams: int,
        device: torch.device,
    ) -> "TransitionMemory":
        capacity, size, cursor, written = _ints(meta, "capacity", "size", "cursor", "written")
        if size != min(written, capacity) or cursor != written % capacity:
            raise ValueError(
                f"replay counters disagree: size {size}, cursor {cursor} after {written} rows "
                f"in {capacity}"
            )
        _check_fields(tensors, Transition._fields, example, size)
        state = replay.init(capacity, example, device=device)
        state = replay.add(state, Transition(*(tensors[name] for name in Transition._fields)))
        return cls(state._replace(cursor=cursor, size=size), written)


class FrameMemory:
    """Frames stored once each in :mod:`dqnkit.core.frame_replay`."""

    kind = "frames"
    _FIELDS = ("obs", "action", "reward", "terminated", "source")

    def __init__(self, state: FrameReplayState) -> None:
        self.state = state
        self._staged = _Staged()

    def start(self, streams: Array, obs: Array) -> None:
        n = len(streams)
        if n:
            self._staged.append(
                (
                    np.asarray(streams, dtype=np.int64),
                    obs,
                    np.ones(n, dtype=np.bool_),
                    np.zeros(n, dtype=np.int64),
                    np.zeros(n, dtype=np.float32),
                    np.zeros(n, dtype=np.bool_),
                )
            )

    def add(
        self, obs: Array, action: Array, reward: Array, next_obs: Array, terminated: Array
    ) -> None:
        n = len(action)
        self._staged.append(
            (
                np.arange(n, dtype=np.int64),
                next_obs,
                np.zeros(n, dtype=np.bool_),
                action,
                reward.astype(np.float32),
                terminated,
            )
        )

    def _flush(self) -> FrameReplayState:
        if self._staged.count:
            columns = self._staged.take(self.state.obs.device)
            self.state = self._write(frame_replay.Entry(*columns))
        return self.state

    def _write(self, entries: frame_replay.Entry) -> FrameReplayState:
        return frame_replay.add(self.state, entries)

    def sample(self, batch_size: int, generator: torch.Generator, progress: float = 0.0) -> Sample:
        return Sample(frame_replay.sample(self._flush(), batch_size, generator))

    def update_priorities(self, indices: torch.Tensor | None, td_error: torch.Tensor) -> None:
        pass

    def written(self) -> int:
        return self.state.written + self._staged.count

    def checkpoint(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        state = self._flush()
        tensors = {name: getattr(state, name)[: state.size] for name in self._FIELDS}
        tensors["latest"] = state.latest
        meta = {"kind": self.kind, "capacity": state.capacity, "written": state.written}
        if state.stack > 1:  # Atari: one frame per slot (issue 12)
            meta["stack"] = state.stack
        return tensors, meta

    @classmethod
    def restore(
        cls,
        meta: dict[str, Any],
        tensors: dict[str, torch.Tensor],
        example: Transition,
        streams: int,
        device: torch.device,
    ) -> "FrameMemory":
        capacity, written = _ints(meta, "capacity", "written")
        stack = meta.get("stack", 1)
        if stack not in (1, example.obs.shape[0]) or isinstance(stack, bool):
            shape = tuple(example.obs.shape)
            raise ValueError(f"replay stack {stack!r} does not fit observations {shape}")
        state = frame_replay.init(capacity, example, streams=streams, device=device, stack=stack)
        size = min(written, capacity)
        expected = {name: getattr(state, name) for name in cls._FIELDS}
        if set(tensors) != {*cls._FIELDS, "latest"}:
            raise ValueError(f"replay tensors {sorted(tensors)} are not {sorted(expected)}")
        for name, stored in expected.items():
            _check_tensor(name, tensors[name], (size, *stored.shape[1:]), stored.dtype)
            stored[:size].copy_(tensors[name])
        _check_tensor("latest", tensors["latest"], tuple(state.latest.shape), state.latest.dtype)
        latest = tensors["latest"]
        if bool(((latest < -1) | (latest >= max(written, 1))).any()):
            raise ValueError("replay's latest frames point outside what was written")
        source = state.source[:size]
        if size and bool(((source < -1) | (source >= written)).any()):
            raise ValueError("replay sources point outside what was written")
        return cls(state._replace(latest=latest.to(device), written=written))


class PrioritizedMemory:
    """Either memory above, drawn by priority (:mod:`dqnkit.core.prioritized`).

    Rows are staged and stored by the wrapped memory, whose writes go through
    ``prioritized.add`` (new rows at the largest priority seen); :meth:`sample` returns slot
    indices and importance weights, with ``beta`` annealed linearly from ``beta`` to 1 over the
    run; :meth:`update_priorities` writes ``(|td_error| + eps) ** alpha`` back.
    """

    kind = "prioritized"

    def __init__(
        self,
        inner: "TransitionMemory | FrameMemory",
        *,
        alpha: float,
        beta: float,
        eps: float,
        state: PrioritizedState | None = None,
    ) -> None:
        self.inner, self.alpha, self.beta, self.eps = inner, alpha, beta, eps
        self.state = prioritized.init(inner.state) if state is None else state
        inner._write = self._write  # type: ignore[method-assign]

    def _write(self, rows: Transition | frame_replay.Entry) -> Any:
        self.state = prioritized.add(self.state, rows)
        return self.state.buffer

    def start(self, streams: Array, obs: Array) -> None:
        self.inner.start(streams, obs)

    def add(
        self, obs: Array, action: Array, reward: Array, next_obs: Array, terminated: Array
    ) -> None:
        self.inner.add(obs, action, reward, next_obs, terminated)

    def sample(self, batch_size: int, generator: torch.Generator, progress: float = 0.0) -> Sample:
        self.inner._flush()
        beta = self.beta + (1.0 - self.beta) * min(max(progress, 0.0), 1.0)
        batch, indices, weights = prioritized.sample(self.state, batch_size, generator, beta)
        return Sample(batch, indices, weights)

    def update_priorities(self, indices: torch.Tensor | None, td_error: torch.Tensor) -> None:
        assert indices is not None
        self.state = prioritized.update_priorities(
            self.state, indices, td_error, self.alpha, self.eps
        )

    def written(self) -> int:
        return self.inner.written()

    def checkpoint(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        tensors, ring = self.inner.checkpoint()
        tree = self.state.tree
        tensors = {**tensors, "priority_tree": tree.tree}
        meta = {
            "kind": self.kind,
            "ring": ring,
            "branching": tree.branching,
            "max_priority": self.state.max_priority,
            "reach": self.state.reach,
        }
        return tensors, meta

    @classmethod
    def restore(
        cls,
        meta: dict[str, Any],
        tensors: dict[str, torch.Tensor],
        example: Transition,
        streams: int,
        device: torch.device,
        **options: float,
    ) -> "PrioritizedMemory":
        ring = {k: v for k, v in tensors.items() if k != "priority_tree"}
        inner = restore_memory(meta.get("ring"), ring, example, streams, device)
        if isinstance(inner, PrioritizedMemory) or "priority_tree" not in tensors:
            raise ValueError("prioritized replay without its ring or its priority tree")
        branching, reach = _ints(meta, "branching", "reach")
        max_priority = meta.get("max_priority")
        if not isinstance(max_priority, float) or not math.isfinite(max_priority):
            raise ValueError(f"replay max_priority must be a finite float, got {max_priority!r}")
        like = sum_tree.init(inner.state.capacity, device, branching=branching)
        tree = tensors["priority_tree"]
        _check_tensor("priority_tree", tree, tuple(like.tree.shape), like.tree.dtype)
        if bool((tree < 0).any()):
            raise ValueError("replay priority_tree holds negative priorities")
        state = PrioritizedState(
            inner.state, like._replace(tree=tree.to(device)), max_priority, reach
        )
        return cls(inner, state=state, **options)


Memory = TransitionMemory | FrameMemory | PrioritizedMemory
"""Any of the memories (what :func:`create_memory` returns)."""

_KINDS: dict[str, type[TransitionMemory] | type[FrameMemory]] = {
    TransitionMemory.kind: TransitionMemory,
    FrameMemory.kind: FrameMemory,
}


def create_memory(
    capacity: int,
    example: Transition,
    streams: int,
    device: torch.device,
    *,
    priorities: dict[str, float] | None = None,
    stack: int = 1,
) -> Memory:
    """An empty memory; frame-sharing when ``example.obs`` is an image; prioritized when
    ``priorities`` (``alpha``, ``beta``, ``eps``) are given; ``stack=k`` when observations are
    stacks of ``k`` frames of which only the newest is new at each step (Atari's), stored once.

    Raises:
      CommandError: the buffer would not fit in memory.
    """
    row_bytes = sum(t.element_size() * t.numel() for t in example)
    try:
        memory: TransitionMemory | FrameMemory
        if shares_frames(tuple(example.obs.shape)):
            memory = FrameMemory(
                frame_replay.init(capacity, example, streams=streams, device=device, stack=stack)
            )
        else:
            memory = TransitionMemory(replay.init(capacity, example, device=device))
    except (RuntimeError, MemoryError) as error:
        raise CommandError(
            f"cannot allocate a replay buffer of {capacity} rows "
            f"({capacity * row_bytes / 2**30:.1f} GiB): lower --buffer-size"
        ) from error
    if priorities is not None:
        alpha, beta, eps = (priorities[k] for k in ("alpha", "beta", "eps"))
        return PrioritizedMemory(memory, alpha=alpha, beta=beta, eps=eps)
    return memory


def restore_memory(
    meta: Any,
    tensors: dict[str, torch.Tensor],
    example: Transition,
    streams: int,
    device: torch.device,
    *,
    priorities: dict[str, float] | None = None,
) -> Memory:
    """The memory :meth:`Replay.checkpoint` saved (``priorities`` as for :func:`create_memory`).

    Raises:
      ValueError: the kind is unknown, a counter or tensor is missing or has the wrong shape
        or dtype, or the counters disagree with the rows.
    """
    kind = meta.get("kind") if isinstance(meta, dict) else meta
    if kind == PrioritizedMemory.kind and priorities is not None:
        return PrioritizedMemory.restore(meta, tensors, example, streams, device, **priorities)
    if kind not in _KINDS or (priorities is not None and kind != PrioritizedMemory.kind):
        expected = "prioritized" if priorities is not None else "uniform"
        raise ValueError(f"replay kind {kind!r} where the run's settings give {expected} replay")
    return _KINDS[kind].restore(meta, tensors, example, streams, device)


def _ints(meta: dict[str, Any], *names: str) -> list[int]:
    values = []
    for name in names:
        value = meta.get(name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"replay {name} must be a non-negative int, got {value!r}")
        values.append(value)
    if meta.get("capacity") == 0:
        raise ValueError("replay capacity 0")
    return values


def _check_fields(
    tensors: dict[str, torch.Tensor], names: tuple[str, ...], example: Transition, rows: int
) -> None:
    if set(tensors) != set(names):
        raise ValueError(f"replay tensors {sorted(tensors)} are not {sorted(names)}")
    for name, like in zip(names, example, strict=True):
        _check_tensor(name, tensors[name], (rows, *like.shape), like.dtype)


def _check_tensor(
    name: str, tensor: torch.Tensor, shape: tuple[int, ...], dtype: torch.dtype
) -> None:
    if tuple(tensor.shape) != shape or tensor.dtype != dtype:
        raise ValueError(
            f"replay {name} is {tuple(tensor.shape)} {tensor.dtype}, expected {shape} {dtype}"
        )
    if tensor.dtype.is_floating_point and not bool(torch.isfinite(tensor).all()):
        raise ValueError(f"replay {name} holds non-finite values")
