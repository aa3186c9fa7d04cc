"""Experience replay that stores every observation once: next_obs is shared, not copied.

A plain replay row holds ``obs`` and ``next_obs``, so with frames every observation is stored
twice (as one transition's next_obs and the following transition's obs). Here the storage is a
ring of *slots*, one per observation, in the order the environments produced them:

- a **first** slot holds an episode's first observation (what ``reset`` returned);
- a **transition** slot holds the observation a stream (one environment) stepped to, with the
  action, reward and ``terminated`` flag of that step. Its ``obs`` is the same stream's previous
  slot, which the slot records by write number in ``source``.

So a transition is ``(obs[source], action, reward, obs[itself], terminated)``. An episode's last
observation, terminated or truncated, is stored in its own transition slot and its reset
observation in the next first slot: a truncated transition keeps its real final observation,
and one episode never borrows an observation from the next. Each episode costs one slot more
than its number of steps; the ring holds ``capacity`` observations.

A transition is *sampleable* while its obs slot has not been overwritten (the oldest few
transitions of a full ring lose it first); first slots are never sampled. :func:`sample` draws
uniformly among the sampleable transitions.

**Frame stacks** (``init(..., stack=k)``, for Atari's stacks of 4 frames): an observation is a
stack ``[k, *frame]`` whose last frame is new at each step, so a slot stores only that frame,
``[*frame]``, and :func:`gather` assembles the stacks of ``obs`` and ``next_obs`` from the
stream's previous slots by following ``source``. A stack never reaches back across an episode's
start: frames before its first slot are that first frame repeated, as Gymnasium's
``FrameStackObservation`` pads a reset. A transition is then sampleable while every slot its
``obs`` stack reads is still stored. With ``stack=1`` (the default) nothing of this applies.

**n-step windows** (:func:`n_step_window`): ``source`` read backwards gives each slot its
``successor``, the same stream's next transition, so the ``n`` steps that begin with a drawn
transition are found at sample time, for any ``n``, without storing anything per ``n``.

Like :mod:`dqnkit.core.replay` the buffer is pure functions over an explicit state, writing in
place only into storage allocated by :func:`init`. The idea of storing each frame once and
sampling around the invalid slots is the one of Dopamine's ``OutOfGraphReplayBuffer``
(https://github.com/google/dopamine); the layout and code here are ours.
"""

from typing import NamedTuple

import torch

from dqnkit.core._checks import check_batch, check_positive_int
from dqnkit.core.replay import write_segments
from dqnkit.core.transition import Transition

__all__ = [
    "Entry",
    "FrameReplayState",
    "add",
    "gather",
    "init",
    "link_successors",
    "n_step_window",
    "oldest_needed",
    "sample",
    "sample_indices",
    "sampleable",
]

NO_SOURCE = -1  # the ``source`` of a first slot, and ``latest`` of a stream not yet started

# Rounds of redrawing non-sampleable indices before sample() switches to an exact draw among the
# sampleable ones (which costs a pass over the whole ring).
_REDRAWS = 4


class Entry(NamedTuple):
    """Slots to write: one observation each, for any number ``M`` of slots.

    Attributes:
      stream: ``[M]`` integer, the environment (in ``[0, streams)``) the observation comes from.
      obs: ``[M, *obs_shape]``, the observation.
      first: ``[M]`` bool, True for an episode's first observation (then the other fields are
        ignored), False for the observation a step reached.
      action: ``[M]``, the action taken from the stream's previous observation.
      reward: ``[M]``, the reward of that step.
      terminated: ``[M]`` bool, the step reached a terminal state (not a time limit).
    """

    stream: torch.Tensor
    obs: torch.Tensor
    first: torch.Tensor
    action: torch.Tensor
    reward: torch.Tensor
    terminated: torch.Tensor


class FrameReplayState(NamedTuple):
    """A ring of observation slots and the transitions between them.

    Attributes:
      obs: ``[capacity, *obs_shape]``, each slot's observation.
      action: ``[capacity]``, the action that reached the slot (transition slots only).
      reward: ``[capacity]``, its reward.
      terminated: ``[capacity]``, its terminated flag.
      source: ``[capacity]`` int64, the write number of the slot holding the transition's obs;
        :data:`NO_SOURCE` for first slots. Slot ``n % capacity`` holds write number ``n``.
      successor: ``[capacity]`` int64, the write number of the transition slot whose obs this
        slot is (the same stream's next step), :data:`NO_SOURCE` while there is none: after an
        episode's last step, and for a stream's newest slot. It is ``source`` read backwards,
        so it is derived (:func:`link_successors`), never saved; :func:`n_step_window` walks it.
      latest: ``[streams]`` int64, the write number of each stream's newest slot (its current
        observation), :data:`NO_SOURCE` before the stream's first.
      written: the number of slots written since :func:`init`.
      stack: the number ``k`` of frames per observation; with ``k > 1`` ``obs`` holds one
        frame per slot, ``[capacity, *frame]``, and observations are ``[k, *frame]``.
    """

    obs: torch.Tensor
    action: torch.Tensor
    reward: torch.Tensor
    terminated: torch.Tensor
    source: torch.Tensor
    successor: torch.Tensor
    latest: torch.Tensor
    written: int
    stack: int = 1

    @property
    def capacity(self) -> int:
        """The number of slots (observations) the ring holds."""
        return int(self.obs.shape[0])

    @property
    def streams(self) -> int:
        """The number of environments writing into the ring."""
        return int(self.latest.shape[0])

    @property
    def cursor(self) -> int:
        """The slot the next write goes to."""
        return self.written % self.capacity

    @property
    def size(self) -> int:
        """How many slots hold data."""
        return min(self.written, self.capacity)


def init(
    capacity: int,
    example: Transition,
    streams: int = 1,
    device: torch.device | str | None = None,
    *,
    stack: int = 1,
) -> FrameReplayState:
    """Allocates an empty ring of ``capacity`` slots for rows shaped and typed like ``example``.

    Args:
      capacity: the number of observations kept; older slots are overwritten first.
      example: one transition (no leading dimension); ``next_obs`` must match ``obs``.
      streams: how many environments write into the ring, each with its own episodes.
      device: where the storage lives; ``example.obs``'s device when None.
      stack: ``k > 1`` when ``example.obs`` is a stack ``[k, *frame]`` of frames, newest last:
        each slot then stores one frame and stacks are assembled at sample time.
    """
    check_positive_int("capacity", capacity)
    check_positive_int("streams", streams)
    check_positive_int("stack", stack)
    if capacity <= streams:
        raise ValueError(
            f"capacity ({capacity}) must exceed streams ({streams}): a transition's obs is "
            "written up to streams slots before it and must still be stored"
        )
    if not isinstance(example, Transition):
        raise ValueError(f"example must be a Transition, got {type(example).__name__}")
    if example.next_obs.shape != example.obs.shape or example.next_obs.dtype != example.obs.dtype:
        raise ValueError(
            "example.next_obs must have obs's shape and dtype: they share one storage, got "
            f"{tuple(example.obs.shape)} {example.obs.dtype} and "
            f"{tuple(example.next_obs.shape)} {example.next_obs.dtype}"
        )
    if stack > 1 and (example.obs.dim() == 0 or example.obs.shape[0] != stack):
        raise ValueError(
            f"with stack={stack}, example.obs must be a stack [{stack}, *frame] of frames, "
            f"got shape {tuple(example.obs.shape)}"
        )
    where = example.obs.device if device is None else torch.device(device)

    def empty(like: torch.Tensor) -> torch.Tensor:
        return torch.empty((capacity, *like.shape), dtype=like.dtype, device=where)

    return FrameReplayState(
        obs=empty(example.obs[-1] if stack > 1 else example.obs),
        action=empty(example.action),
        reward=empty(example.reward),
        terminated=empty(example.terminated),
        source=torch.full((capacity,), NO_SOURCE, dtype=torch.int64, device=where),
        successor=torch.full((capacity,), NO_SOURCE, dtype=torch.int64, device=where),
        latest=torch.full((streams,), NO_SOURCE, dtype=torch.int64, device=where),
        written=0,
        stack=stack,
    )


def add(state: FrameReplayState, entries: Entry) -> FrameReplayState:
    """Writes slots into the ring, in place, and returns the advanced state.

    Within ``entries`` the slots are in the order they happened; a transition's obs is the
    previous slot of its stream in ``entries``, or the stream's latest slot before this call.
    With ``stack > 1``, ``entries.obs`` may be the stacks ``[M, k, *frame]`` (only their last,
    newest frame is stored) or the new frames ``[M, *frame]``.

    Raises:
      ValueError: shapes or dtypes that do not fit the storage, a stream out of range, or a
        transition of a stream that has no observation yet (write its first one before).
    """
    if state.stack > 1 and entries.obs.dim() == state.obs.dim() + 1:
        if entries.obs.shape[1] != state.stack:
            raise ValueError(
                f"entries.obs has shape {tuple(entries.obs.shape)}: stacks of "
                f"{entries.obs.shape[1]} frames, expected {state.stack}"
            )
        entries = entries._replace(obs=entries.obs[:, -1])
    count = _check_entries(state, entries)
    device = state.obs.device
    stream = entries.stream.to(device=device, dtype=torch.int64)
    first = entries.first.to(device=device, dtype=torch.bool)
    numbers = state.written + torch.arange(count, dtype=torch.int64, device=device)

    # Group the slots by stream, in order of writing (the keys are distinct, so the sort is
    # deterministic); each slot's predecessor is the slot before it in its group, or the
    # stream's latest slot for the first of a group.
    order = torch.argsort(stream * count + numbers)
    grouped = stream[order]
    same_stream = torch.zeros(count, dtype=torch.bool, device=device)
    same_stream[1:] = grouped[1:] == grouped[:-1]
    before = torch.empty(count, dtype=torch.int64, device=device)
    before[1:] = numbers[order][:-1]
    previous = torch.empty_like(before)
    previous[order] = torch.where(same_stream, before, state.latest[grouped])
    orphans = ~first & (previous == NO_SOURCE)
    if bool(orphans.any()):
        index = int(torch.nonzero(orphans)[0, 0])
        raise ValueError(
            f"entries[{index}] is a transition of stream {int(stream[index])}, which has no "
            "observation yet: add that stream's reset observation with first=True before"
        )
    source = torch.where(first, NO_SOURCE, previous)
    latest = state.latest.scatter_reduce(0, stream, numbers, reduce="amax", include_self=True)

    columns = (
        (state.obs, entries.obs),
        (state.action, entries.action),
        (state.reward, entries.reward),
        (state.terminated, entries.terminated),
        (state.source, source),
        (state.successor, torch.full_like(source, NO_SOURCE)),  # overwritten slots lose theirs
    )
    for dst, src, length in write_segments(state.cursor, count, state.capacity):
        for stored, new in columns:
            stored[dst : dst + length].copy_(new[src : src + length])
    after = state._replace(latest=latest, written=state.written + count)
    # Each slot is the obs of at most one transition (its stream's next step): distinct targets.
    linked = source >= _oldest_kept(after)
    after.successor[source[linked] % state.capacity] = numbers[linked]
    return after


def link_successors(state: FrameReplayState) -> FrameReplayState:
    """``state`` with ``successor`` rebuilt, in place, from ``source`` (after a restore): what
    :func:`add` keeps up to date write by write."""
    slots = torch.arange(state.size, dtype=torch.int64, device=state.source.device)
    source = state.source[: state.size]
    linked = source >= _oldest_kept(state)
    state.successor.fill_(NO_SOURCE)
    state.successor[source[linked] % state.capacity] = _write_number(state, slots)[linked]
    return state


def n_step_window(
    state: FrameReplayState, index: torch.Tensor, n: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The slots of the ``n`` steps that begin with each transition in slots ``index``.

    Step ``k`` of a window is the ``k``-th transition of the same stream after ``index``'s
    (step 0 is ``index`` itself); a window is cut short after a terminated step, after an
    episode's last step (a truncation), and at the stream's newest slot, so it never spans two
    episodes. The rewards, terminated flags and the last real step's ``next_obs`` are then
    the inputs of :func:`dqnkit.core.n_step_return` and of the bootstrap.

    Returns:
      ``(slots, mask)``, each ``[B, n]``: ``slots`` int64 slot positions (past a window's end,
      its last real step repeated), ``mask`` bool, True for the steps that exist (column 0
      always).
    """
    check_positive_int("n", n)
    current = index.to(torch.int64)
    alive = torch.ones_like(current, dtype=torch.bool)
    slots, mask = [current], [alive]
    for _ in range(n - 1):
        following = state.successor.index_select(0, current)
        ended = state.terminated.index_select(0, current).to(torch.bool)
        alive = alive & ~ended & (following != NO_SOURCE)
        current = torch.where(alive, following.clamp(min=0) % state.capacity, current)
        slots.append(current)
        mask.append(alive)
    return torch.stack(slots, dim=1), torch.stack(mask, dim=1)


def sampleable(state: FrameReplayState) -> torch.Tensor:
    """The slots holding a transition whose obs is still stored, oldest first, as int64 ``[K]``."""
    size = state.size
    slots = torch.arange(size, dtype=torch.int64, device=state.obs.device)
    if state.written > state.capacity:
        slots = (slots + state.cursor) % state.capacity
    if state.stack > 1:
        return slots[oldest_needed(state, slots) >= _oldest_kept(state)]
    return slots[state.source[slots] >= _oldest_kept(state)]


def oldest_needed(state: FrameReplayState, index: torch.Tensor) -> torch.Tensor:
    """The write number of the oldest slot each transition in slots ``index`` reads.

    That is its obs slot (``source``), or with ``stack = k`` the slot of the oldest frame of
    its obs stack, ``k - 1`` steps further back in its episode (or the episode's first slot).
    The transition is sampleable exactly while this slot is still stored; first slots, and
    transitions whose chain of slots is already broken, give :data:`NO_SOURCE`.
    """
    source = state.source.index_select(0, index)
    if state.stack == 1:
        return source
    oldest = _oldest_kept(state)
    chain = _chain(state, index)
    valid = (chain[:, 1:] >= oldest).all(dim=1)
    return torch.where(valid, chain[:, -1], NO_SOURCE)


def _chain(state: FrameReplayState, index: torch.Tensor) -> torch.Tensor:
    """``[B, k + 1]`` the slots a stack of ``k`` frames reads, newest first, as write numbers.

    Column 0 is the transition's own slot (``next_obs``'s newest frame), column 1 its obs
    slot, and each further column the previous slot of the episode, or the same slot again
    once the episode's first slot is reached: ``obs`` stacks columns ``k..1``, ``next_obs``
    columns ``k - 1..0``. Only meaningful while every number in it is still stored.
    """
    capacity = state.capacity
    links = [_write_number(state, index)]
    current = state.source.index_select(0, index)
    links.append(current)
    for _ in range(state.stack - 1):
        previous = state.source.index_select(0, current.clamp(min=0) % capacity)
        # A first slot (no source) is repeated: a stack never reaches into the last episode.
        current = torch.where(previous == NO_SOURCE, current, previous)
        links.append(current)
    return torch.stack(links, dim=1)


def gather(state: FrameReplayState, index: torch.Tensor) -> Transition:
    """The transitions in slots ``index`` (each sampleable), as fresh tensors ``[B, ...]``."""
    if state.stack > 1:
        return _gather_stacks(state, index)
    return _gather(state, index, state.source.index_select(0, index))


def _gather_stacks(state: FrameReplayState, index: torch.Tensor) -> Transition:
    k, frame = state.stack, state.obs.shape[1:]
    # Oldest frame first, as the stacks were observed.
    slots = _chain(state, index).flip(1) % state.capacity
    batch = index.shape[0]
    return Transition(
        obs=state.obs.index_select(0, slots[:, :k].reshape(-1)).view(batch, k, *frame),
        action=state.action.index_select(0, index),
        reward=state.reward.index_select(0, index),
        next_obs=state.obs.index_select(0, slots[:, 1:].reshape(-1)).view(batch, k, *frame),
        terminated=state.terminated.index_select(0, index),
    )


def _gather(state: FrameReplayState, index: torch.Tensor, source: torch.Tensor) -> Transition:
    return Transition(
        obs=state.obs.index_select(0, source % state.capacity),
        action=state.action.index_select(0, index),
        reward=state.reward.index_select(0, index),
        next_obs=state.obs.index_select(0, index),
        terminated=state.terminated.index_select(0, index),
    )


def sample(state: FrameReplayState, batch_size: int, generator: torch.Generator) -> Transition:
    """Draws ``batch_size`` transitions uniformly, with replacement, among the sampleable ones:
    ``gather(state, sample_indices(state, batch_size, generator))``."""
    return gather(state, sample_indices(state, batch_size, generator))


def sample_indices(
    state: FrameReplayState, batch_size: int, generator: torch.Generator
) -> torch.Tensor:
    """The slots :func:`sample` draws: ``batch_size`` uniform draws among the sampleable ones.

    Non-sampleable draws (first slots, transitions whose obs was overwritten) are redrawn from
    a fresh batch, a few times, then among the sampleable slots only; the result depends only
    on the state and ``generator``.

    Raises:
      ValueError: no transition is sampleable yet, or ``batch_size`` is not a positive int.
    """
    check_positive_int("batch_size", batch_size)
    size, oldest, device = state.size, _oldest_kept(state), state.obs.device
    if size == 0:
        raise ValueError("cannot sample from an empty replay buffer (nothing written)")

    def draw(n: int, high: int) -> torch.Tensor:
        return torch.randint(0, high, (n,), generator=generator, device=generator.device).to(device)

    # Slots [0, size) are exactly the written ones: writes start at slot 0 and wrap only once full.
    index = draw(batch_size, size)
    for _ in range(_REDRAWS):
        bad = oldest_needed(state, index) < oldest
        if not bool(bad.any()):
            return index
        index = torch.where(bad, draw(batch_size, size), index)
    bad = oldest_needed(state, index) < oldest
    if bool(bad.any()):
        valid = sampleable(state)
        if valid.numel() == 0:
            what = "obs stack" if state.stack > 1 else "obs"
            raise ValueError(
                f"no transition to sample yet: no stored transition has its {what} still "
                "stored (the ring holds only episodes' first observations, or is too small)"
            )
        index = torch.where(bad, valid[draw(batch_size, int(valid.numel()))], index)
    return index


def _write_number(state: FrameReplayState, slots: torch.Tensor) -> torch.Tensor:
    """The write number each of ``slots`` holds: the latest ``n <= written - 1`` with
    ``n % capacity == slot``."""
    last = state.written - 1
    return last - (last - slots) % state.capacity


def _oldest_kept(state: FrameReplayState) -> int:
    """The write number of the oldest slot still stored; a source below it is gone."""
    return max(0, state.written - state.capacity)


def _check_entries(state: FrameReplayState, entries: Entry) -> int:
    """Checks ``entries`` against the storage field by field and returns their common count."""
    if not isinstance(entries, Entry):
        raise ValueError(f"entries must be an Entry, got {type(entries).__name__}")
    flags = torch.empty((0,), dtype=torch.bool)
    stored = [torch.empty((0,), dtype=torch.int64), state.obs, flags]
    stored += [state.action, state.reward, state.terminated]
    count = check_batch("entries", entries, Entry._fields, stored)
    if count and bool(((entries.stream < 0) | (entries.stream >= state.streams)).any()):
        raise ValueError(
            f"entries.stream must be in [0, {state.streams}), got values "
            f"{int(entries.stream.min())}..{int(entries.stream.max())}"
        )
    return count
