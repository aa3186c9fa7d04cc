"""Uniform experience replay as a ring buffer of pre-allocated tensors.

See "Human-level control through deep reinforcement learning" by Mnih et al.
(https://www.nature.com/articles/nature14236), section "Methods: experience replay".

The buffer is three pure functions over an explicit :class:`ReplayState`:

- :func:`init` allocates one tensor per :class:`Transition` field, ``[capacity, *shape]``;
- :func:`add` writes rows into that storage *in place* (the one mutation the core allows:
  the storage is pre-allocated so that adding never allocates) and returns the new state;
- :func:`sample` draws a batch uniformly with replacement using only the caller's generator.

The index arithmetic lives apart from the write, in :func:`write_segments`, so it can be
tested against a plain model of a bounded FIFO.
"""

from typing import NamedTuple

import torch

from dqnkit.core._checks import check_batch, check_positive_int
from dqnkit.core.transition import Transition

__all__ = ["ReplayState", "add", "gather", "init", "sample", "sample_indices", "write_segments"]


class ReplayState(NamedTuple):
    """A ring buffer's storage and position.

    Attributes:
      storage: a :class:`Transition` of tensors with leading dimension ``capacity``.
      cursor: the row the next write goes to, in ``[0, capacity)``.
      size: how many rows hold data, in ``[0, capacity]``.
    """

    storage: Transition
    cursor: int
    size: int

    @property
    def capacity(self) -> int:
        """The number of rows the storage holds."""
        return int(self.storage.obs.shape[0])


def init(
    capacity: int, example: Transition, device: torch.device | str | None = None
) -> ReplayState:
    """Allocates an empty buffer for rows shaped and typed like ``example``.

    Args:
      capacity: the number of rows kept; older rows are overwritten first.
      example: one row (no leading dimension), e.g. ``obs: [4] float32, action: [] int64``.
      device: where the storage lives; ``example``'s device when None.

    Returns:
      A state with ``cursor == size == 0`` and uninitialised storage.
    """
    check_positive_int("capacity", capacity)
    if not isinstance(example, Transition):
        raise ValueError(f"example must be a Transition, got {type(example).__name__}")
    storage = Transition(
        *(
            torch.empty(
                (capacity, *field.shape),
                dtype=field.dtype,
                device=field.device if device is None else device,
            )
            for field in example
        )
    )
    return ReplayState(storage=storage, cursor=0, size=0)


def write_segments(cursor: int, count: int, capacity: int) -> list[tuple[int, int, int]]:
    """Where ``count`` new rows land in a ring of ``capacity`` rows whose next write is ``cursor``.

    Rows that would be overwritten within the same write are skipped: only the last
    ``min(count, capacity)`` rows are written.

    Returns:
      Up to two ``(dst_start, src_start, length)`` slices, in write order.
    """
    kept = min(count, capacity)
    src = count - kept
    dst = (cursor + src) % capacity
    first = min(kept, capacity - dst)
    segments = [(dst, src, first)] if first else []
    if kept > first:
        segments.append((0, src + first, kept - first))
    return segments


def add(state: ReplayState, rows: Transition) -> ReplayState:
    """Writes a batch of rows into the storage, in place, and returns the advanced state.

    Args:
      state: the buffer; its storage tensors are written in place.
      rows: a :class:`Transition` of tensors ``[N, *field_shape]`` for any ``N >= 0`` (more than
        the capacity is fine: only the newest ``capacity`` rows are kept).

    Returns:
      The state with ``cursor = (cursor + N) % capacity`` and ``size = min(size + N, capacity)``.

    Raises:
      ValueError: a field's trailing shape differs from the storage's, the fields disagree on
        ``N``, or a dtype cannot be stored without changing kind (float into an integer field).
    """
    count = _check_rows(state.storage, rows)
    capacity = state.capacity
    for dst, src, length in write_segments(state.cursor, count, capacity):
        for stored, new in zip(state.storage, rows, strict=True):
            stored[dst : dst + length].copy_(new[src : src + length])
    return ReplayState(
        storage=state.storage,
        cursor=(state.cursor + count) % capacity,
        size=min(state.size + count, capacity),
    )


def sample(state: ReplayState, batch_size: int, generator: torch.Generator) -> Transition:
    """Draws ``batch_size`` rows uniformly, with replacement, among the written rows.

    The same as ``gather(state, sample_indices(state, batch_size, generator))``.

    Args:
      state: the buffer; only its first ``size`` rows are ever read.
      batch_size: the number of rows ``B`` to draw.
      generator: the only source of randomness; the same seed gives the same batch.

    Returns:
      A :class:`Transition` of fresh tensors ``[B, *field_shape]`` with the stored dtypes.
    """
    return _gather(state, sample_indices(state, batch_size, generator))


def sample_indices(state: ReplayState, batch_size: int, generator: torch.Generator) -> torch.Tensor:
    """``[B]`` int64 rows drawn uniformly, with replacement, from ``[0, size)``, on the
    storage's device (for a caller that keeps more per row than a :class:`Transition`)."""
    if state.size == 0:
        raise ValueError("cannot sample from an empty replay buffer (size 0)")
    check_positive_int("batch_size", batch_size)
    # Rows [0, size) are exactly the written ones: writes start at row 0 and wrap only once full.
    index = torch.randint(
        0, state.size, (batch_size,), generator=generator, device=generator.device
    )
    device = state.storage.obs.device
    return index if index.device == device else index.to(device)


def gather(state: ReplayState, index: torch.Tensor) -> Transition:
    """The rows at ``index`` (``[B]`` int64, each in ``[0, size)``) as fresh tensors."""
    if index.dtype != torch.int64 or index.dim() != 1:
        shape = tuple(index.shape)
        raise ValueError(f"index must be a [B] int64 tensor, got {index.dtype} {shape}")
    if index.numel() and not bool(((index >= 0) & (index < state.size)).all()):
        raise ValueError(f"index holds rows outside the {state.size} written")
    return _gather(state, index)


def _gather(state: ReplayState, index: torch.Tensor) -> Transition:
    return Transition(*(field.index_select(0, index) for field in state.storage))


def _check_rows(storage: Transition, rows: Transition) -> int:
    """Checks ``rows`` against ``storage`` field by field and returns their common count."""
    if not isinstance(rows, Transition):
        raise ValueError(f"rows must be a Transition, got {type(rows).__name__}")
    return check_batch("rows", rows, Transition._fields, list(storage))
