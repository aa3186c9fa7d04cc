"""A sum tree over a pre-allocated tensor, as pure functions: prioritized sampling in O(log N).

See "Prioritized Experience Replay" by Schaul et al. (ICLR 2016,
https://arxiv.org/abs/1511.05952), section 3.3 and appendix B.2.1: each leaf holds one
transition's priority, each internal node the sum of its children, so the root holds the total;
finding the leaf whose cumulative range holds a prefix sum walks one path from the root, and a
batch is drawn *stratified*, one prefix per equal segment of the total.

The tree here is ``branching``-ary rather than binary: a batch walks down all its paths at once,
one level per step, and on a CPU each step costs about ten small tensor operations whatever
their size, so fewer levels means faster draws. By default the branching is the smallest that
gives three levels below the root (at least 16: 48 for 100,000 leaves, 100 for a million),
against 17 and 20 levels for a binary tree.

Priorities are stored in float64 and every internal node is recomputed from its children when
one of them changes, never updated by adding a difference: a float32 tree updated by deltas
drifts from the sum of its leaves over millions of updates (DESIGN.md, pitfall 12); this one
equals it at any time up to the rounding of one sum per node.

Layout: one flat float64 tensor, level by level from the root: the root (index 0, followed by
``branching - 1`` unused zeros), then its ``branching`` children, then theirs, down to the
leaves. Every level is padded with zeros to a multiple of ``branching``, so the tensor reads as
rows of ``branching`` siblings, and node ``j`` of a level has as children the ``j``-th row of
the next level. Zero leaves are never found.
"""

import functools
import math
from typing import NamedTuple

import torch

from dqnkit.core._checks import check_positive_int

__all__ = [
    "SumTreeState",
    "default_branching",
    "find",
    "init",
    "priorities",
    "sample",
    "total",
    "update",
]

_MIN_BRANCHING = 16
_LEVELS = 3  # below the root, for the default branching


def default_branching(capacity: int) -> int:
    """The smallest branching (at least 16) that puts ``capacity`` leaves three levels down."""
    check_positive_int("capacity", capacity)
    branching = max(_MIN_BRANCHING, math.ceil(math.pow(capacity, 1 / _LEVELS)))
    while branching**_LEVELS < capacity:  # a rounded-down cube root
        branching += 1
    return branching


class SumTreeState(NamedTuple):
    """A sum tree's storage and shape.

    Attributes:
      tree: ``[nodes]`` float64, every level from the root down to the leaves (see the module).
      capacity: the number of leaves that can hold a priority, indices ``[0, capacity)``.
      branching: the number of children of each internal node.
    """

    tree: torch.Tensor
    capacity: int
    branching: int


@functools.lru_cache(maxsize=64)
def _levels(capacity: int, branching: int) -> tuple[tuple[int, int], ...]:
    """``(offset, size)`` of each level in the flat tensor, from the root down to the leaves.

    Every offset and size is a multiple of ``branching``; the root level's size counts its
    padding (only its first node, the root, is used).
    """
    sizes = []
    count = capacity
    while True:
        padded = -(-count // branching) * branching
        sizes.append(padded)
        count = padded // branching
        if count == 1:
            break
    sizes.append(branching)  # the root, padded to a row of its own
    sizes.reverse()
    levels, offset = [], 0
    for size in sizes:
        levels.append((offset, size))
        offset += size
    return tuple(levels)


def init(
    capacity: int,
    device: torch.device | str | None = None,
    *,
    branching: int | None = None,
) -> SumTreeState:
    """Allocates a tree of ``capacity`` leaves, every priority 0 (nothing can be drawn yet).

    Args:
      capacity: the number of leaves, one per replay slot.
      device: where the tree lives (the CPU when None).
      branching: the number of children per internal node, at least 2; None for
        :func:`default_branching`.
    """
    check_positive_int("capacity", capacity)
    if branching is None:
        branching = default_branching(capacity)
    check_positive_int("branching", branching)
    if branching < 2:
        raise ValueError(f"branching must be at least 2, got {branching}")
    offset, size = _levels(capacity, branching)[-1]
    tree = torch.zeros(offset + size, dtype=torch.float64, device=device)
    return SumTreeState(tree=tree, capacity=capacity, branching=branching)


def priorities(state: SumTreeState) -> torch.Tensor:
    """The ``[capacity]`` leaf priorities, a view into the tree: read it, do not write it."""
    offset, _ = _levels(state.capacity, state.branching)[-1]
    return state.tree[offset : offset + state.capacity]


def total(state: SumTreeState) -> float:
    """The sum of all priorities (the root)."""
    return float(state.tree[0].item())


def update(state: SumTreeState, index: torch.Tensor, priority: torch.Tensor) -> SumTreeState:
    """Sets the priorities of leaves ``index``, in place, and recomputes their ancestors.

    Args:
      state: the tree; its tensor is written in place (as replay storage is).
      index: ``[K]`` integer leaf indices in ``[0, capacity)``; duplicates are allowed and the
        last write of an index wins, as in a loop over the pairs.
      priority: ``[K]`` real priorities, each finite and non-negative; 0 means never drawn.

    Returns:
      The state (the same tensor, updated).

    Raises:
      ValueError: shapes that differ, an index out of range, or a priority that is negative,
        infinite or NaN.
    """
    tree, capacity = state.tree, state.capacity
    if index.dim() != 1 or index.dtype.is_floating_point or index.dtype == torch.bool:
        raise ValueError(
            f"index must be a 1-D integer tensor, got {index.dtype} {tuple(index.shape)}"
        )
    if priority.shape != index.shape:
        raise ValueError(
            f"priority must have index's shape {tuple(index.shape)}, got {tuple(priority.shape)}"
        )
    if index.numel() == 0:
        return state
    if bool(((index < 0) | (index >= capacity)).any()):
        raise ValueError(
            f"index must be in [0, {capacity}), got values {int(index.min())}..{int(index.max())}"
        )
    priority = priority.to(device=tree.device, dtype=torch.float64)
    if not bool((torch.isfinite(priority) & (priority >= 0)).all()):
        bad = priority[~(torch.isfinite(priority) & (priority >= 0))][0].item()
        raise ValueError(f"priorities must be finite and non-negative, got {bad}")
    index = index.to(device=tree.device, dtype=torch.int64)

    # Last write wins: a stable sort keeps equal indices in the order given, so the last of
    # each run of equal indices is the last write; the writes below then have no duplicates.
    order = torch.argsort(index, stable=True)
    index = index[order]
    last = torch.ones_like(index, dtype=torch.bool)
    last[:-1] = index[1:] != index[:-1]
    return _write(state, index[last], priority[order][last])


def _write(state: SumTreeState, index: torch.Tensor, priority: torch.Tensor) -> SumTreeState:
    """:func:`update` without checks: distinct in-range int64 ``index``, valid float64 values."""
    tree, capacity, branching = state
    levels = _levels(capacity, branching)
    offset, size = levels[-1]
    tree[offset : offset + size].index_copy_(0, index, priority)
    rows = tree.view(-1, branching)
    # Each ancestor is recomputed as the sum of its children (no delta updates: no drift):
    # the children of node j of a level are row (child level's offset / branching) + j.
    # A parent listed twice (unsorted leaves) is written twice with the same sum: harmless.
    for (parent_offset, parent_size), (child_offset, _) in zip(
        reversed(levels[:-1]), reversed(levels[1:]), strict=True
    ):
        index = torch.unique_consecutive(torch.div(index, branching, rounding_mode="floor"))
        sums = rows.index_select(0, index + child_offset // branching).sum(dim=1)
        tree[parent_offset : parent_offset + parent_size].index_copy_(0, index, sums)
    return state


def find(state: SumTreeState, prefix: torch.Tensor) -> torch.Tensor:
    """For each prefix sum in ``[0, total)``, the leaf whose cumulative range holds it.

    Leaf ``i`` holds ``[c_{i-1}, c_i)`` with ``c_i`` the sum of priorities ``0..i``: the result
    is ``searchsorted(c, prefix, right=True)`` (a prefix exactly at ``c_i`` belongs to the next
    leaf of positive priority) and a leaf of zero priority is never returned. The tree adds in a
    different order than a running sum, so with priorities that are not exactly representable
    the two can differ at a boundary by a rounding of the sums.

    Args:
      state: the tree, with a positive total.
      prefix: ``[B]`` real prefix sums, each in ``[0, total)``.

    Returns:
      ``[B]`` int64 leaf indices on the tree's device.
    """
    if prefix.dim() != 1 or not prefix.is_floating_point():
        raise ValueError(
            f"prefix must be a 1-D float tensor, got {prefix.dtype} {tuple(prefix.shape)}"
        )
    root = total(state)
    if not root > 0:
        raise ValueError(f"cannot find in a tree whose total is {root}: set priorities first")
    prefix = prefix.to(device=state.tree.device, dtype=torch.float64)
    if not bool(((prefix >= 0) & (prefix < root)).all()):
        raise ValueError(f"each prefix must be in [0, total) = [0, {root}), got {prefix.tolist()}")
    return _descend(state, prefix)[0]


def sample(state: SumTreeState, batch_size: int, generator: torch.Generator) -> torch.Tensor:
    """Draws ``batch_size`` leaves, each with probability its priority over the total, stratified.

    As in Schaul et al. (appendix B.2.1), ``[0, total)`` is cut into ``batch_size`` equal
    segments and one prefix is drawn uniformly in each, so a batch covers the whole range.
    Each draw is still distributed as ``priority / total``.

    Args:
      state: the tree, with a positive total.
      batch_size: the number of leaves ``B`` to draw.
      generator: the only source of randomness (``B`` float64 uniforms).

    Returns:
      ``[B]`` int64 leaf indices on the tree's device, in segment order; never a leaf of zero
      priority.
    """
    check_positive_int("batch_size", batch_size)
    root = total(state)
    if not root > 0:
        raise ValueError(f"cannot sample from a tree whose total is {root}: set priorities first")
    return _sample(state, batch_size, generator, root)[0]


def _sample(
    state: SumTreeState, batch_size: int, generator: torch.Generator, root: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`sample` without its checks, with the drawn leaves' priorities."""
    uniform = torch.rand(
        batch_size, dtype=torch.float64, generator=generator, device=generator.device
    )
    # prefix_j = (j + u_j) * total / B, one per segment [j, j + 1) * total / B.
    steps = torch.arange(batch_size, dtype=torch.float64, device=generator.device)
    prefix = steps.add_(uniform).mul_(root / batch_size)
    if prefix.device != state.tree.device:
        prefix = prefix.to(state.tree.device)
    return _descend(state, prefix)


def _descend(state: SumTreeState, prefix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Walks every prefix from the root to its leaf, one level at a time: (leaf, priority).

    The fast walk takes at each node the child whose range ``[before_k, before_k + p_k)``
    holds the prefix, with ``before_k`` the sum of the children before ``k``. Rounding can
    carry a prefix to or past the total of a node's children and the walk into a zero child
    after the last positive one; the few walks that end on a zero leaf are redone by
    :func:`_descend_clamped`, which stays on the last positive child.
    """
    tree, capacity, branching = state
    levels = _levels(capacity, branching)
    leaf_offset = levels[-1][0]
    rows = tree.view(-1, branching)
    # The root's children, one row shared by every prefix: a 1-D search, no gather.
    children = rows[1]
    before = children.cumsum(dim=0).sub_(children)
    child = torch.searchsorted(before, prefix, right=True).sub_(1)
    remaining = (prefix - before.index_select(0, child)).unsqueeze_(1)
    node = child.unsqueeze_(1)
    for offset, _ in levels[2:]:
        children = rows.index_select(0, node.view(-1).add(offset // branching))
        # before_k = sum of the children before k: the child holding the prefix is the last k
        # with before_k <= prefix (zero children share their successor's before_k: skipped).
        before = children.cumsum(dim=1).sub_(children)
        child = torch.searchsorted(before, remaining, right=True).sub_(1)
        remaining = remaining - before.gather(1, child)
        node = child.add_(node, alpha=branching)
    leaf = node.view(-1)
    priority = tree.index_select(0, leaf + leaf_offset)
    # A zero leaf can only come from rounding (or a zero total, refused before): redo those.
    zero = priority == 0
    if bool(zero.any()):
        leaf = torch.where(zero, _descend_clamped(state, prefix), leaf)
        priority = tree.index_select(0, leaf + leaf_offset)
    return leaf, priority


def _descend_clamped(state: SumTreeState, prefix: torch.Tensor) -> torch.Tensor:
    """:func:`_descend`'s walk, never stepping past a node's last positive child."""
    tree, capacity, branching = state
    rows = tree.view(-1, branching)
    remaining = prefix.unsqueeze(1)
    node = torch.zeros_like(remaining, dtype=torch.int64)
    for offset, _ in _levels(capacity, branching)[1:]:
        children = rows.index_select(0, node.view(-1).add(offset // branching))
        cum = children.cumsum(dim=1)
        before = cum - children
        child = torch.searchsorted(before, remaining, right=True).sub_(1)
        # The last positive child is the first whose running sum reaches the children's total.
        last = torch.searchsorted(cum, cum[:, -1:].contiguous(), right=False)
        child = torch.minimum(child, last)
        remaining = remaining - before.gather(1, child)
        node = child.add_(node, alpha=branching)
    return node.view(-1)
