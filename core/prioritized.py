"""Prioritized experience replay over either ring: :mod:`replay` or :mod:`frame_replay`.

See "Prioritized Experience Replay" by Schaul et al. (ICLR 2016,
https://arxiv.org/abs/1511.05952), algorithm 1 with proportional prioritization: transition
``i`` is drawn with probability ``P(i) = p_i / sum_k p_k``, where ``p_i = (|delta_i| + eps)^alpha``
after its last TD error ``delta_i``; a new transition enters at the largest priority seen so far
(so it is drawn at least once soon); the loss of each drawn transition is weighted by
``w_i = (N * P(i))^-beta / max_j w_j`` to correct the bias (DESIGN.md, pitfall 12).

The state wraps a ring's state with a :mod:`sum_tree` of one leaf per slot. Like the rings, this
is pure functions over an explicit :class:`PrioritizedState`: :func:`add` and
:func:`update_priorities` write in place only into the ring's storage and the tree's tensor
(both allocated by their ``init``) and return the new state.

With the frame ring a slot is drawn only while it holds a sampleable transition: first slots
(an episode's reset observation) and transitions whose obs slot was overwritten have priority 0.
"""

from typing import NamedTuple

import torch

from dqnkit.core import frame_replay, replay, sum_tree
from dqnkit.core._checks import check_floating, check_positive_int, check_rank
from dqnkit.core.frame_replay import Entry, FrameReplayState
from dqnkit.core.replay import ReplayState
from dqnkit.core.transition import Transition

__all__ = [
    "PrioritizedState",
    "add",
    "importance_weights",
    "init",
    "sample",
    "update_priorities",
]


class PrioritizedState(NamedTuple):
    """A ring buffer, the priorities of its slots, and the largest priority seen.

    Attributes:
      buffer: the ring, a :class:`ReplayState` or a :class:`FrameReplayState`.
      tree: one leaf per slot of the ring, ``p_i`` (already raised to ``alpha``); 0 for a slot
        that holds nothing drawable.
      max_priority: the largest priority written so far (1.0 before any update, as in
        Schaul et al.); new transitions enter with it.
      reach: frame ring only: the largest distance, in writes, from a transition's slot back to
        the oldest slot it reads (its obs, or its obs stack's oldest frame) seen so far (0 for
        :mod:`replay`). Overwriting a slot can make only the
        next ``reach`` slots unsampleable, so only those are checked on each add.
    """

    buffer: ReplayState | FrameReplayState
    tree: sum_tree.SumTreeState
    max_priority: float
    reach: int


def init(
    buffer: ReplayState | FrameReplayState, *, branching: int | None = None
) -> PrioritizedState:
    """Wraps an empty ring (from ``replay.init`` or ``frame_replay.init``) with a sum tree.

    ``branching`` is the tree's (None: :func:`sum_tree.default_branching`).

    Raises:
      ValueError: ``buffer`` is not a ring's state, or already holds data (its slots would
        have no priority).
    """
    if isinstance(buffer, ReplayState):
        written, device = buffer.size, buffer.storage.obs.device
    elif isinstance(buffer, FrameReplayState):
        written, device = buffer.written, buffer.obs.device
    else:
        raise ValueError(
            f"buffer must be a ReplayState or a FrameReplayState, got {type(buffer).__name__}"
        )
    if written != 0:
        raise ValueError(
            f"buffer must be empty (fresh from its init) to be prioritized, it holds {written}"
        )
    tree = sum_tree.init(buffer.capacity, device, branching=branching)
    return PrioritizedState(buffer=buffer, tree=tree, max_priority=1.0, reach=0)


def add(state: PrioritizedState, rows: Transition | Entry) -> PrioritizedState:
    """Adds to the ring (``replay.add`` rows or ``frame_replay.add`` entries) at the max priority.

    Returns:
      The state with the ring advanced and every slot written at ``max_priority`` (frame ring:
      0 for first slots and for transitions no longer sampleable).
    """
    buffer = state.buffer
    if isinstance(buffer, ReplayState):
        if not isinstance(rows, Transition):
            raise ValueError(f"rows for a replay ring must be a Transition, got {type(rows)}")
        after = replay.add(buffer, rows)
        count = int(rows.obs.shape[0])
        kept = min(count, buffer.capacity)
        device = buffer.storage.obs.device
        slots = (buffer.cursor + count - kept + torch.arange(kept, device=device)) % buffer.capacity
        priority = torch.full((kept,), state.max_priority, dtype=torch.float64, device=device)
        # The slots of one add are distinct (at most capacity of them) and the priority valid.
        tree = sum_tree._write(state.tree, slots, priority)
        return state._replace(buffer=after, tree=tree)
    if not isinstance(rows, Entry):
        raise ValueError(f"entries for a frame ring must be an Entry, got {type(rows)}")
    return _add_frames(state, buffer, rows)


def _add_frames(
    state: PrioritizedState, buffer: FrameReplayState, entries: Entry
) -> PrioritizedState:
    after = frame_replay.add(buffer, entries)
    capacity, device = buffer.capacity, buffer.obs.device
    count = after.written - buffer.written
    kept = min(count, capacity)
    oldest = max(0, after.written - capacity)
    numbers = torch.arange(after.written - kept, after.written, device=device)
    slots = numbers % capacity
    # The oldest slot each transition reads (its obs, or its obs stack's oldest frame); first
    # slots and broken chains give -1.
    needed = frame_replay.oldest_needed(after, slots)
    drawable = needed >= oldest
    reach = state.reach
    if bool(drawable.any()):
        reach = max(reach, int((numbers - needed)[drawable].max()))
    priority = torch.where(
        drawable,
        torch.tensor(state.max_priority, dtype=torch.float64, device=device),
        torch.tensor(0.0, dtype=torch.float64, device=device),
    )
    # Transitions written before this add whose obs slot it overwrote: only the slots at most
    # ``reach`` writes after the oldest kept one can have lost their obs.
    old_oldest = max(0, buffer.written - capacity)
    end = min(oldest + reach, after.written - kept)
    if oldest > old_oldest and end > oldest:
        older = torch.arange(oldest, end, device=device) % capacity
        lost = older[frame_replay.oldest_needed(after, older) < oldest]
        slots = torch.cat([lost, slots])
        priority = torch.cat(
            [torch.zeros(lost.shape, dtype=torch.float64, device=device), priority]
        )
    # Distinct slots: the older ones precede the newly written ones in the ring.
    tree = sum_tree._write(state.tree, slots, priority)
    return state._replace(buffer=after, tree=tree, reach=reach)


def sample(
    state: PrioritizedState, batch_size: int, generator: torch.Generator, beta: float
) -> tuple[Transition, torch.Tensor, torch.Tensor]:
    """Draws a stratified batch by priority, with its slots and importance weights.

    Args:
      state: the prioritized ring, with at least one drawable transition.
      batch_size: the number of transitions ``B``.
      generator: the only source of randomness (``B`` float64 uniforms).
      beta: the importance-sampling exponent in ``[0, 1]`` (annealed to 1 in Schaul et al.).

    Returns:
      ``(batch, indices, weights)``: a :class:`Transition` of fresh ``[B, ...]`` tensors, the
      ``[B]`` int64 slots they came from (for :func:`update_priorities`) and ``[B]`` float32
      weights in ``(0, 1]`` (:func:`importance_weights`).
    """
    check_positive_int("batch_size", batch_size)
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"beta must be in [0, 1], got {beta}")
    tree = state.tree
    root = sum_tree.total(tree)
    if not root > 0:
        raise ValueError("cannot sample from an empty prioritized replay (no drawable transition)")
    indices, priority = sum_tree._sample(tree, batch_size, generator, root)
    # w_i = (P_min / P_i)^beta = (p_min / p_i)^beta, as importance_weights (checked there; the
    # priorities here are positive by construction).
    weights = (priority.min() / priority).pow_(beta).to(torch.float32)
    buffer = state.buffer
    if isinstance(buffer, ReplayState):
        batch = Transition(*(field.index_select(0, indices) for field in buffer.storage))
    else:
        batch = frame_replay.gather(buffer, indices)
    return batch, indices, weights.clamp_(min=torch.finfo(torch.float32).tiny)


def update_priorities(
    state: PrioritizedState,
    indices: torch.Tensor,
    td_error: torch.Tensor,
    alpha: float,
    eps: float,
) -> PrioritizedState:
    """Writes back the priorities of a sampled batch after its update.

    ``p_i = (|td_error_i| + eps) ** alpha`` (Schaul et al., section 3.3, proportional variant);
    ``alpha = 0`` is uniform replay, ``alpha = 1`` full prioritization.

    Args:
      state: the prioritized ring; its tree is written in place.
      indices: ``[B]`` int64 slots, as :func:`sample` returned them (duplicates allowed: the
        last wins).
      td_error: ``[B]`` float TD errors of those transitions (any sign; no gradient is kept).
      alpha: the prioritization exponent, in ``[0, 1]``.
      eps: a positive constant so that no transition's priority falls to 0.

    Returns:
      The state with the new priorities and ``max_priority`` raised to their largest.

    Raises:
      ValueError: mismatched shapes, ``alpha`` outside ``[0, 1]``, ``eps <= 0``, or a
        non-finite TD error (a NaN loss must not hide in the tree).
    """
    check_rank("td_error", td_error, 1)
    check_floating("td_error", td_error)
    if indices.shape != td_error.shape:
        raise ValueError(
            f"indices and td_error must have the same shape, got {tuple(indices.shape)} and "
            f"{tuple(td_error.shape)}"
        )
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if not eps > 0:
        raise ValueError(f"eps must be positive, got {eps}")
    tree = state.tree
    device = tree.tree.device
    indices = indices.to(device)
    # p_i = (|delta_i| + eps)^alpha
    priority = (td_error.detach().to(device=device, dtype=torch.float64).abs() + eps) ** alpha
    if not bool(torch.isfinite(priority).all()):
        raise ValueError(f"td_error must be finite, got {td_error.tolist()}")
    buffer = state.buffer
    if isinstance(buffer, FrameReplayState):
        # A slot overwritten since it was sampled may now hold a first slot or a transition
        # whose obs is gone: it must stay at 0.
        oldest = max(0, buffer.written - buffer.capacity)
        drawable = frame_replay.oldest_needed(buffer, indices) >= oldest
        priority = torch.where(drawable, priority, torch.zeros_like(priority))
    tree = sum_tree.update(tree, indices, priority)
    max_priority = (
        max(state.max_priority, float(priority.max().item()))
        if priority.numel()
        else state.max_priority
    )
    return state._replace(tree=tree, max_priority=max_priority)


def importance_weights(probabilities: torch.Tensor, size: int, beta: float) -> torch.Tensor:
    """Importance-sampling weights of a prioritized batch, normalised by the batch's largest.

    See Schaul et al. (2016), section 3.4: ``w_i = (N * P(i))^-beta / max_j w_j``.

    Args:
      probabilities: ``[B]`` float, each drawn transition's ``P(i)``, in ``(0, 1]``.
      size: ``N``, the number of transitions in the buffer (it cancels in the normalisation
        but is checked as part of the contract).
      beta: the exponent, in ``[0, 1]``: 0 gives all ones, 1 corrects the bias fully.

    Returns:
      ``[B]`` weights in ``(0, 1]`` in ``probabilities``' dtype, 1 where ``P`` is smallest;
      a weight too small for the dtype is raised to its smallest normal number.
    """
    check_rank("probabilities", probabilities, 1)
    check_floating("probabilities", probabilities)
    check_positive_int("size", size)
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"beta must be in [0, 1], got {beta}")
    if probabilities.numel() == 0:
        raise ValueError("probabilities must hold at least one value, got none")
    p = probabilities.to(torch.float64)
    if not bool(((p > 0) & (p <= 1)).all()):
        raise ValueError(f"probabilities must be in (0, 1], got {probabilities.tolist()}")
    # (N P_i)^-beta / max_j (N P_j)^-beta = (min_j P_j / P_i)^beta: N cancels, and the ratio
    # form cannot overflow where N P_i is tiny.
    weights = (p.min() / p) ** beta
    tiny = torch.finfo(probabilities.dtype).tiny
    return weights.clamp_(min=tiny).to(probabilities.dtype)
