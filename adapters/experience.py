"""A run's replay memory: one small protocol over both core buffers.

The loop calls :class:`Replay` without knowing which buffer it holds:

- :class:`TransitionMemory` wraps :mod:`dqnkit.core.replay` for vector observations: a row is a
  whole transition (a CartPole state is 16 bytes; sharing it would save nothing);
- :class:`FrameMemory` wraps :mod:`dqnkit.core.frame_replay` for image observations
  ``[C, H, W]``: every frame stored once, next_obs shared with the following obs.

Steps are staged as numpy references and written to the core buffer in one copy per field when
the buffer is next read (:meth:`Replay.sample` or :meth:`Replay.checkpoint`): the loop never
flushes by hand, and sampling always sees every step recorded so far.

Two wrappers keep that protocol: :class:`PrioritizedMemory` draws by priority (:class:`Sample`
then carries ``indices`` and ``weights``, and :meth:`Replay.update_priorities` takes the batch's
new priorities), and :class:`NStepMemory` turns the steps it is given into n-step transitions
(:class:`Sample` then carries each row's bootstrap ``discount``); the frame ring builds its
n-step transitions itself, when a batch is drawn (:class:`FrameMemory` with ``n_step``).
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
    n_step_return,
    prioritized,
    replay,
    sum_tree,
)

__all__ = [
    "FrameMemory",
    "Memory",
    "NStepMemory",
    "PrioritizedMemory",
    "Replay",
    "Sample",
    "TransitionMemory",
    "create_memory",
    "example_row",
    "restore_memory",
    "ring_of",
    "shares_frames",
    "stored_stack",
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
      discount: ``[B]`` float32, the discount of each row's bootstrap (``gamma ** m`` for an
        ``m``-step row, see :class:`NStepMemory` and :class:`FrameMemory`); None: every row is
        one step (``gamma``). With it, ``batch.reward`` is the n-step sum, its rewards already
        clipped one by one where the run clips rewards.
    """

    batch: Transition
    indices: torch.Tensor | None = None
    weights: torch.Tensor | None = None
    discount: torch.Tensor | None = None


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
    """Whole transitions in :mod:`dqnkit.core.replay`; with ``discount`` (a ``[capacity]``
    float32 tensor), each row's bootstrap discount beside it, for :class:`NStepMemory`."""

    kind = "transitions"

    def __init__(
        self, state: ReplayState, written: int = 0, discount: torch.Tensor | None = None
    ) -> None:
        self.state = state
        self.discount = discount
        self._written = written
        self._staged = _Staged()

    def start(self, streams: Array, obs: Array) -> None:
        pass  # rows carry their own obs

    def add(
        self,
        obs: Array,
        action: Array,
        reward: Array,
        next_obs: Array,
        terminated: Array,
        discount: Array | None = None,
    ) -> None:
        row = (obs, action, reward.astype(np.float32), next_obs, terminated)
        if (discount is None) != (self.discount is None):
            raise ValueError("rows carry a discount exactly when the memory stores one")
        self._staged.append(row if discount is None else (*row, discount.astype(np.float32)))

    def _flush(self) -> ReplayState:
        if self._staged.count:
            count = self._staged.count
            self._written += count
            columns = self._staged.take(self.state.storage.obs.device)
            if self.discount is not None:
                segments = replay.write_segments(self.state.cursor, count, self.state.capacity)
                for dst, src, length in segments:
                    self.discount[dst : dst + length].copy_(columns[5][src : src + length])
            self.state = self._write(Transition(*columns[:5]))
        return self.state

    def _write(self, rows: Transition) -> ReplayState:
        return replay.add(self.state, rows)

    def sample(self, batch_size: int, generator: torch.Generator, progress: float = 0.0) -> Sample:
        state = self._flush()
        if self.discount is None:
            return Sample(replay.sample(state, batch_size, generator))
        index = replay.sample_indices(state, batch_size, generator)
        return self.finish(replay.gather(state, index), index)

    def finish(self, batch: Transition, index: torch.Tensor) -> Sample:
        """The sample of the rows ``batch`` read from slots ``index``: with their discounts."""
        return Sample(batch, discount=None if self.discount is None else self.discount[index])

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
        if self.discount is not None:
            tensors["discount"] = self.discount[: state.size]
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
        rows = {name: tensor for name, tensor in tensors.items() if name != "discount"}
        _check_fields(rows, Transition._fields, example, size)
        state = replay.init(capacity, example, device=device)
        state = replay.add(state, Transition(*(tensors[name] for name in Transition._fields)))
        discount = None
        if "discount" in tensors:
            _check_tensor("discount", tensors["discount"], (size,), torch.float32)
            discount = torch.zeros(capacity, dtype=torch.float32, device=device)
            discount[:size].copy_(tensors["discount"])
        return cls(state._replace(cursor=cursor, size=size), written, discount)


class FrameMemory:
    """Frames stored once each in :mod:`dqnkit.core.frame_replay`.

    With ``n_step = (n, gamma)`` a drawn transition becomes the n-step one that begins with it,
    built at sample time from the ring's later slots (:func:`dqnkit.core.frame_replay.
    n_step_window`): rewards summed by :func:`dqnkit.core.n_step_return` (each clipped to its
    sign first with ``clip_rewards``), ``next_obs`` the last real step's, and the bootstrap
    discount in :attr:`Sample.discount`. The ring is the same for every ``n``. Unlike
    :class:`NStepMemory`, a stream's newest steps are drawn too, their windows cut at the
    newest slot (bootstrapping from it with ``gamma ** m``, a shorter but valid target).
    """

    kind = "frames"
    _FIELDS = ("obs", "action", "reward", "terminated", "source")

    def __init__(
        self,
        state: FrameReplayState,
        n_step: tuple[int, float] | None = None,
        clip_rewards: bool = False,
    ) -> None:
        self.state = state
        self.n_step, self.clip_rewards = n_step, clip_rewards
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
        state = self._flush()
        if self.n_step is None:
            return Sample(frame_replay.sample(state, batch_size, generator))
        index = frame_replay.sample_indices(state, batch_size, generator)
        return self.finish(frame_replay.gather(state, index), index)

    def finish(self, batch: Transition, index: torch.Tensor) -> Sample:
        """The sample of the transitions ``batch`` read from slots ``index``: made n-step ones
        when the memory has ``n_step``."""
        if self.n_step is None:
            return Sample(batch)
        n, gamma = self.n_step
        state = self.state
        slots, mask = frame_replay.n_step_window(state, index, n)
        reward = state.reward[slots]
        if self.clip_rewards:  # each reward, before the sum (Atari's rewards are clipped)
            reward = reward.sign()
        terminated = state.terminated[slots] & mask
        returns, discount = n_step_return(reward, terminated, gamma, mask)
        last = slots.gather(1, (mask.sum(dim=1, keepdim=True) - 1)).squeeze(1)
        batch = batch._replace(
            reward=returns,
            next_obs=frame_replay.gather(state, last).next_obs,
            terminated=terminated.any(dim=1),
        )
        return Sample(batch, discount=discount)

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
        state = state._replace(latest=latest.to(device), written=written)
        return cls(frame_replay.link_successors(state))


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
        self,
        obs: Array,
        action: Array,
        reward: Array,
        next_obs: Array,
        terminated: Array,
        discount: Array | None = None,
    ) -> None:
        if discount is None:
            self.inner.add(obs, action, reward, next_obs, terminated)
        else:
            assert isinstance(self.inner, TransitionMemory)
            self.inner.add(obs, action, reward, next_obs, terminated, discount)

    def sample(self, batch_size: int, generator: torch.Generator, progress: float = 0.0) -> Sample:
        self.inner._flush()
        beta = self.beta + (1.0 - self.beta) * min(max(progress, 0.0), 1.0)
        batch, indices, weights = prioritized.sample(self.state, batch_size, generator, beta)
        return self.inner.finish(batch, indices)._replace(indices=indices, weights=weights)

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
        discounted = "discount" in ring  # checked against the run's settings by the caller
        inner = _restore_ring(meta.get("ring"), ring, example, streams, device, None,
                              discounted=discounted)  # fmt: skip
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


class NStepMemory:
    """n-step transitions built from the steps it is given, stored in a :class:`TransitionMemory`
    (uniform or prioritized) with each row's bootstrap discount.

    For each environment the last ``n - 1`` steps wait here. A step that completes a window of
    ``n`` stores ``(obs_t, action_t, sum_k gamma^k r_{t+k}, obs_{t+n}, False)`` with discount
    ``gamma ** n``. When an episode ends, every window still open is stored at once, cut at the
    episode's last step: a terminated episode's with ``terminated`` True (discount 0), a
    truncated one's bootstrapping from the real final observation with ``gamma ** m`` for its
    ``m`` steps. So no row spans two episodes. The sums and discounts are
    :func:`dqnkit.core.n_step_return`'s. A run's last ``n - 1`` steps per environment are never
    stored (their windows stay open).

    The loop's calls say where episodes end: :meth:`add` with ``terminated``, and
    :meth:`start` for every stream that begins a new episode (after a truncation too).
    """

    kind = "n_step"

    def __init__(
        self,
        inner: "TransitionMemory | PrioritizedMemory",
        *,
        n: int,
        gamma: float,
        streams: int,
        example: Transition,
        clip_rewards: bool = False,
    ) -> None:
        if n < 2:
            raise ValueError(f"n-step memory needs n >= 2, got {n}")
        self.inner, self.n, self.gamma = inner, n, gamma
        self.clip_rewards = clip_rewards
        obs_dtype = example.obs.numpy().dtype
        self.obs: Array = np.zeros((streams, n, *example.obs.shape), dtype=obs_dtype)
        self.action: Array = np.zeros((streams, n), dtype=np.int64)
        self.reward: Array = np.zeros((streams, n), dtype=np.float64)
        self.count: Array = np.zeros(streams, dtype=np.int64)
        # The latest step's next_obs, by reference: the loop never writes an array it has
        # handed over, and an episode's open windows are stored before the next step's add.
        self._final: Array = np.zeros((streams, *example.obs.shape), dtype=obs_dtype)

    def start(self, streams: Array, obs: Array) -> None:
        streams = np.asarray(streams, dtype=np.int64)
        self._store(streams[self.count[streams] > 0], terminated=False)
        self.inner.start(streams, obs)

    def add(
        self, obs: Array, action: Array, reward: Array, next_obs: Array, terminated: Array
    ) -> None:
        every = np.arange(len(action))
        slot = self.count[every]
        self.obs[every, slot] = obs
        self.action[every, slot] = action
        self.reward[every, slot] = np.sign(reward) if self.clip_rewards else reward
        self.count += 1
        self._final = next_obs
        ended = np.flatnonzero(terminated)
        full = np.flatnonzero((self.count == self.n) & ~terminated)
        if len(ended):
            self._store(ended, terminated=True)
        if len(full):
            self._store(full, terminated=False, first_only=True)

    def _store(self, streams: Array, *, terminated: bool, first_only: bool = False) -> None:
        """Stores the open windows of ``streams`` (only each one's oldest with ``first_only``,
        shifting the rest down), cut at their latest step."""
        if not len(streams):
            return
        n = self.n
        rows, starts = [], []
        for stream in streams.tolist():
            count = int(self.count[stream])
            for first in range(1 if first_only else count):
                rows.append(stream)
                starts.append(first)
        row, start = np.array(rows), np.array(starts)
        offset = start[:, None] + np.arange(n)
        mask = offset < self.count[row][:, None]
        reward = np.where(mask, self.reward[row[:, None], np.minimum(offset, n - 1)], 0.0)
        ends = np.zeros_like(mask)
        if terminated:  # the window's last real step is the terminal one
            ends[np.arange(len(row)), self.count[row] - 1 - start] = True
        returns, discount = n_step_return(
            torch.from_numpy(reward), torch.from_numpy(ends), self.gamma, torch.from_numpy(mask)
        )
        self.inner.add(
            self.obs[row, start],
            self.action[row, start],
            returns.numpy(),
            self._final[row],
            np.full(len(row), terminated),
            discount.numpy(),
        )
        if first_only:
            self.obs[streams, :-1] = self.obs[streams, 1:]
            self.action[streams, :-1] = self.action[streams, 1:]
            self.reward[streams, :-1] = self.reward[streams, 1:]
            self.count[streams] -= 1
        else:
            self.count[streams] = 0

    def sample(self, batch_size: int, generator: torch.Generator, progress: float = 0.0) -> Sample:
        return self.inner.sample(batch_size, generator, progress)

    def update_priorities(self, indices: torch.Tensor | None, td_error: torch.Tensor) -> None:
        self.inner.update_priorities(indices, td_error)

    def written(self) -> int:
        """Steps given so far: the rows stored plus the steps still waiting in open windows."""
        return self.inner.written() + int(self.count.sum())

    def checkpoint(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        tensors, inner = self.inner.checkpoint()
        open_steps = {
            "n_step/obs": self.obs[:, : self.n - 1],
            "n_step/action": self.action[:, : self.n - 1],
            "n_step/reward": self.reward[:, : self.n - 1],
        }
        tensors = {**tensors, **{k: torch.from_numpy(v.copy()) for k, v in open_steps.items()}}
        meta = {"kind": self.kind, "n": self.n, "open": self.count.tolist(), "inner": inner}
        return tensors, meta

    @classmethod
    def restore(
        cls,
        meta: dict[str, Any],
        tensors: dict[str, torch.Tensor],
        example: Transition,
        streams: int,
        device: torch.device,
        *,
        n: int,
        gamma: float,
        priorities: dict[str, float] | None,
        clip_rewards: bool = False,
    ) -> "NStepMemory":
        if meta.get("n") != n:
            raise ValueError(f"replay n-step {meta.get('n')!r} where the run's settings give {n}")
        counts = meta.get("open")
        if not (
            isinstance(counts, list)
            and len(counts) == streams
            and all(type(c) is int and 0 <= c < n for c in counts)
        ):
            raise ValueError(f"replay open n-step windows {counts!r} are not {streams} ints < {n}")
        ring = {k: v for k, v in tensors.items() if not k.startswith("n_step/")}
        inner = _restore_ring(meta.get("inner"), ring, example, streams, device, priorities,
                              discounted=True)  # fmt: skip
        if not isinstance(inner, TransitionMemory | PrioritizedMemory):
            raise ValueError("n-step replay must wrap transitions")
        memory = cls(inner, n=n, gamma=gamma, streams=streams, example=example,
                     clip_rewards=clip_rewards)  # fmt: skip
        shape = tuple(example.obs.shape)
        like = {
            "n_step/obs": ((streams, n - 1, *shape), example.obs.dtype),
            "n_step/action": ((streams, n - 1), torch.int64),
            "n_step/reward": ((streams, n - 1), torch.float64),
        }
        for name, (want, dtype) in like.items():
            if name not in tensors:
                raise ValueError(f"replay {name} is missing")
            _check_tensor(name, tensors[name], want, dtype)
        memory.obs[:, : n - 1] = tensors["n_step/obs"].numpy()
        memory.action[:, : n - 1] = tensors["n_step/action"].numpy()
        memory.reward[:, : n - 1] = tensors["n_step/reward"].numpy()
        memory.count[:] = counts
        return memory


Memory = TransitionMemory | FrameMemory | PrioritizedMemory | NStepMemory
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
    n_step: tuple[int, float] | None = None,
    clip_rewards: bool = False,
) -> Memory:
    """An empty memory; frame-sharing when ``example.obs`` is an image; prioritized when
    ``priorities`` (``alpha``, ``beta``, ``eps``) are given; ``stack=k`` when observations are
    stacks of ``k`` frames of which only the newest is new at each step (Atari's), stored once;
    giving ``n``-step transitions discounted by ``gamma`` when ``n_step = (n, gamma)``
    (``n >= 2``), their rewards clipped to their sign one by one before the sum with
    ``clip_rewards`` (one-step rewards are the learner's to clip).

    Raises:
      CommandError: the buffer would not fit in memory.
    """
    row_bytes = sum(t.element_size() * t.numel() for t in example)
    try:
        memory: TransitionMemory | FrameMemory
        if shares_frames(tuple(example.obs.shape)):
            memory = FrameMemory(
                frame_replay.init(capacity, example, streams=streams, device=device, stack=stack),
                n_step,
                clip_rewards,
            )
        else:
            discount = None
            if n_step is not None:
                discount = torch.zeros(capacity, dtype=torch.float32, device=device)
            memory = TransitionMemory(replay.init(capacity, example, device=device), 0, discount)
    except (RuntimeError, MemoryError) as error:
        raise CommandError(
            f"cannot allocate a replay buffer of {capacity} rows "
            f"({capacity * row_bytes / 2**30:.1f} GiB): lower --buffer-size"
        ) from error
    wrapped: TransitionMemory | FrameMemory | PrioritizedMemory = memory
    if priorities is not None:
        alpha, beta, eps = (priorities[k] for k in ("alpha", "beta", "eps"))
        wrapped = PrioritizedMemory(memory, alpha=alpha, beta=beta, eps=eps)
    if n_step is None or isinstance(memory, FrameMemory):
        return wrapped
    assert not isinstance(wrapped, FrameMemory)
    n, gamma = n_step
    return NStepMemory(wrapped, n=n, gamma=gamma, streams=streams, example=example,
                       clip_rewards=clip_rewards)  # fmt: skip


def ring_of(memory: Memory) -> TransitionMemory | FrameMemory:
    """The memory that stores the rows, under any prioritized or n-step wrapper."""
    while isinstance(memory, PrioritizedMemory | NStepMemory):
        memory = memory.inner
    return memory


def stored_stack(memory: Memory) -> int:
    """Frames per observation the memory assembles from single-frame slots (Atari's 4), else 1."""
    ring = ring_of(memory)
    return ring.state.stack if isinstance(ring, FrameMemory) else 1


def restore_memory(
    meta: Any,
    tensors: dict[str, torch.Tensor],
    example: Transition,
    streams: int,
    device: torch.device,
    *,
    priorities: dict[str, float] | None = None,
    n_step: tuple[int, float] | None = None,
    clip_rewards: bool = False,
) -> Memory:
    """The memory :meth:`Replay.checkpoint` saved (``priorities`` and ``n_step`` as for
    :func:`create_memory`).

    Raises:
      ValueError: the kind is unknown or not the run's settings', a counter or tensor is
        missing or has the wrong shape or dtype, or the counters disagree with the rows.
    """
    if not isinstance(meta, dict):
        raise ValueError(f"replay metadata must be an object, got {type(meta).__name__}")
    kind = meta.get("kind")
    if n_step is not None and shares_frames(tuple(example.obs.shape)):
        # The frame ring is the same for every n: n-step windows are built at sample time.
        memory = _restore_ring(meta, tensors, example, streams, device, priorities,
                               discounted=False)  # fmt: skip
        ring = ring_of(memory)
        if not isinstance(ring, FrameMemory):
            raise ValueError(f"replay kind {kind!r} where the run's observations give frames")
        ring.n_step, ring.clip_rewards = n_step, clip_rewards
        return memory
    if n_step is not None:
        if kind != NStepMemory.kind:
            raise ValueError(f"replay kind {kind!r} where the run's settings give n-step replay")
        n, gamma = n_step
        return NStepMemory.restore(meta, tensors, example, streams, device, n=n, gamma=gamma,
                                   priorities=priorities, clip_rewards=clip_rewards)  # fmt: skip
    if kind == NStepMemory.kind:
        raise ValueError("replay kind 'n_step' where the run's settings give one-step replay")
    return _restore_ring(meta, tensors, example, streams, device, priorities, discounted=False)


def _restore_ring(
    meta: Any,
    tensors: dict[str, torch.Tensor],
    example: Transition,
    streams: int,
    device: torch.device,
    priorities: dict[str, float] | None,
    *,
    discounted: bool,
) -> TransitionMemory | FrameMemory | PrioritizedMemory:
    """A uniform or prioritized memory; ``discounted``: its rows carry n-step discounts."""
    if ("discount" in tensors) != discounted:
        raise ValueError(f"replay rows {'lack' if discounted else 'carry'} n-step discounts")
    if not isinstance(meta, dict):
        raise ValueError(f"replay metadata must be an object, got {type(meta).__name__}")
    kind = meta.get("kind")
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
