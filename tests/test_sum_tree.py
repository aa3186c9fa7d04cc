"""sum_tree: golden values by hand, and properties against a plain list of priorities."""

import itertools
import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from dqnkit.core import sum_tree


def levels_of(state: sum_tree.SumTreeState) -> list[torch.Tensor]:
    """The tree's levels from the root down, each as rows of ``branching`` siblings."""
    out = []
    for offset, size in sum_tree._levels(state.capacity, state.branching):
        out.append(state.tree[offset : offset + size])
    return out


def test_sum_tree_golden() -> None:
    # 10 leaves, 4 children per node: leaves padded to 12, then 3 nodes padded to 4, then the
    # root (padded to a row of 4): [root, 0, 0, 0 | n0 n1 n2 0 | 12 leaves].
    state = sum_tree.init(10, branching=4)
    assert state.tree.dtype == torch.float64
    assert state.tree.shape == (4 + 4 + 12,)
    state = sum_tree.update(
        state, torch.tensor([0, 3, 3, 9, 5]), torch.tensor([1.0, 5.0, 2.0, 4.0, 0.0])
    )
    # leaf 3 is written twice: the last write (2.0) wins. n0 = 1 + 2, n1 = 0, n2 = 4.
    assert state.tree.tolist() == [
        7.0, 0, 0, 0,
        3.0, 0.0, 4.0, 0,
        1.0, 0, 0, 2.0, 0, 0, 0, 0, 0, 4.0, 0, 0,
    ]  # fmt: skip
    assert sum_tree.total(state) == 7.0
    assert sum_tree.priorities(state).tolist() == [1.0, 0, 0, 2.0, 0, 0, 0, 0, 0, 4.0]
    # cumulative: leaf 0 holds [0, 1), leaf 3 [1, 3), leaf 9 [3, 7); boundaries go right.
    prefix = torch.tensor([0.0, 0.999, 1.0, 2.5, 3.0, 6.999])
    assert sum_tree.find(state, prefix).tolist() == [0, 0, 3, 3, 9, 9]
    # an update lowers the total again: the parents are recomputed, not added to.
    state = sum_tree.update(state, torch.tensor([9]), torch.tensor([0.5]))
    assert sum_tree.total(state) == 3.5
    assert state.tree[6].item() == 0.5


def test_binary_tree_golden() -> None:
    state = sum_tree.init(4, branching=2)
    state = sum_tree.update(state, torch.arange(4), torch.tensor([1.0, 2.0, 3.0, 4.0]))
    # [root, pad | 3, 7 | 1, 2, 3, 4]
    assert state.tree.tolist() == [10.0, 0.0, 3.0, 7.0, 1.0, 2.0, 3.0, 4.0]
    assert sum_tree.find(state, torch.tensor([0.5, 1.0, 3.0, 5.99, 6.0, 9.99])).tolist() == [
        0, 1, 2, 2, 3, 3
    ]  # fmt: skip


def test_sum_tree_rejects_bad_priorities_and_indices() -> None:
    state = sum_tree.init(5)
    for bad in (-1.0, math.nan, math.inf, -math.inf):
        with pytest.raises(ValueError, match="finite and non-negative"):
            sum_tree.update(state, torch.tensor([0, 1]), torch.tensor([1.0, bad]))
    assert sum_tree.total(state) == 0.0  # nothing was written
    with pytest.raises(ValueError, match=r"index must be in \[0, 5\)"):
        sum_tree.update(state, torch.tensor([5]), torch.tensor([1.0]))
    with pytest.raises(ValueError, match="index must be a 1-D integer"):
        sum_tree.update(state, torch.tensor([0.0]), torch.tensor([1.0]))
    with pytest.raises(ValueError, match="shape"):
        sum_tree.update(state, torch.tensor([0, 1]), torch.tensor([1.0]))
    with pytest.raises(ValueError, match="total is 0"):
        sum_tree.sample(state, 4, torch.Generator())
    with pytest.raises(ValueError, match="total is 0"):
        sum_tree.find(state, torch.tensor([0.0]))
    state = sum_tree.update(state, torch.tensor([2]), torch.tensor([3.0]))
    with pytest.raises(ValueError, match=r"in \[0, total\)"):
        sum_tree.find(state, torch.tensor([3.0]))
    with pytest.raises(ValueError, match=r"in \[0, total\)"):
        sum_tree.find(state, torch.tensor([-0.5]))
    with pytest.raises(ValueError, match="branching"):
        sum_tree.init(5, branching=1)
    with pytest.raises(ValueError, match="capacity"):
        sum_tree.init(0)


# --- properties ----------------------------------------------------------------------------

branchings = st.sampled_from([2, 3, 4, 32])


@st.composite
def update_sequences(draw, values=None):
    """A capacity, a branching and batches of (index, priority) writes, duplicates included."""
    capacity = draw(st.integers(1, 80))
    value = values if values is not None else st.floats(0, 1e6, allow_nan=False)
    batch = st.lists(st.tuples(st.integers(0, capacity - 1), value), min_size=0, max_size=12)
    return capacity, draw(branchings), draw(st.lists(batch, min_size=1, max_size=6))


def apply(capacity, branching, batches):
    state = sum_tree.init(capacity, branching=branching)
    model = [0.0] * capacity
    for writes in batches:
        index = torch.tensor([i for i, _ in writes], dtype=torch.int64)
        priority = torch.tensor([p for _, p in writes], dtype=torch.float64)
        state = sum_tree.update(state, index, priority)
        for i, p in writes:  # a plain loop: the last write of an index wins
            model[i] = p
    return state, model


@given(update_sequences())
def test_every_node_is_the_sum_of_its_children(case):
    state, model = apply(*case)
    assert sum_tree.priorities(state).tolist() == model
    assert sum_tree.total(state) == pytest.approx(math.fsum(model), rel=1e-12, abs=0)
    levels = levels_of(state)
    for parents, children in itertools.pairwise(levels):
        rows = children.view(-1, state.branching)
        used = rows.shape[0]
        assert torch.equal(parents[:used], rows.sum(dim=1))
        for parent, row in zip(parents[:used].tolist(), rows.tolist(), strict=True):
            assert parent == pytest.approx(math.fsum(row), rel=1e-12, abs=0)
        assert not parents[used:].any()  # padding stays 0
    assert not levels[-1][state.capacity :].any()


# Small integers (many zeros) add exactly in float64, in any order: the tree's sums and a
# running sum agree bit for bit, so find must agree with searchsorted exactly, boundaries
# included.
exact = st.integers(0, 6).map(float)


@given(update_sequences(values=exact), st.lists(st.floats(0, 1), max_size=20))
def test_find_agrees_with_searchsorted_over_the_cumulative_sum(case, fractions):
    state, model = apply(*case)
    total = sum(model)
    if total == 0:
        return
    cum = torch.tensor(model, dtype=torch.float64).cumsum(0)
    # every boundary below the total, and points between them
    boundaries = sorted({c for c in [0.0, *cum.tolist()] if c < total})
    points = [min(f * total, math.nextafter(total, 0)) for f in fractions]
    prefix = torch.tensor(boundaries + points, dtype=torch.float64)
    found = sum_tree.find(state, prefix)
    assert found.tolist() == torch.searchsorted(cum, prefix, right=True).tolist()
    assert all(model[i] > 0 for i in found.tolist())


@given(
    update_sequences(values=st.floats(0, 1e3, allow_nan=False, allow_infinity=False)),
    st.lists(st.floats(0, 1), max_size=20),
)
def test_find_never_returns_a_zero_leaf_even_when_sums_round(case, fractions):
    state, model = apply(*case)
    total = sum_tree.total(state)
    if total == 0:
        return
    # the very top of the range included, where rounding would walk into trailing zeros
    points = [min(f * total, math.nextafter(total, 0)) for f in fractions]
    points.append(math.nextafter(total, 0))
    found = sum_tree.find(state, torch.tensor(points, dtype=torch.float64))
    cum = [math.fsum(model[: i + 1]) for i in range(len(model))]
    for p, i in zip(points, found.tolist(), strict=True):
        assert model[i] > 0
        lower = cum[i - 1] if i else 0.0
        assert lower - 1e-9 * total <= p < cum[i] + 1e-9 * total


@given(update_sequences(), st.integers(1, 64), st.integers(0, 2**32))
def test_sample_draws_only_positive_leaves_reproducibly(case, batch_size, seed):
    state, model = apply(*case)
    if sum(model) == 0:
        return
    a = sum_tree.sample(state, batch_size, torch.Generator().manual_seed(seed))
    b = sum_tree.sample(state, batch_size, torch.Generator().manual_seed(seed))
    assert torch.equal(a, b)
    assert a.dtype == torch.int64
    assert a.shape == (batch_size,)
    assert all(model[i] > 0 for i in a.tolist())


def chi_square_critical(df: int, z: float) -> float:
    """The chi-square quantile at standard-normal quantile z (Wilson-Hilferty)."""
    return df * (1 - 2 / (9 * df) + z * math.sqrt(2 / (9 * df))) ** 3


def test_sample_frequencies_are_proportional_to_priority() -> None:
    priorities = [5.0, 0.0, 1.0, 3.0, 0.0, 0.5, 8.0, 2.0, 0.0, 4.5, 1.0, 6.0]
    state = sum_tree.init(len(priorities), branching=4)
    state = sum_tree.update(state, torch.arange(len(priorities)), torch.tensor(priorities))
    generator = torch.Generator().manual_seed(2016)
    draws = torch.cat([sum_tree.sample(state, 50, generator) for _ in range(400)])
    counts = torch.bincount(draws, minlength=len(priorities)).tolist()
    total = sum(priorities)
    positive = [i for i, p in enumerate(priorities) if p > 0]
    assert all(counts[i] == 0 for i, p in enumerate(priorities) if p == 0)
    n = len(draws)
    statistic = sum((counts[i] - n * priorities[i] / total) ** 2 / (n * priorities[i] / total)
                    for i in positive)  # fmt: skip
    # z = 4.75: a false-alarm rate of about 1e-6 for independent draws; stratified draws vary
    # less than independent ones, so the rate is lower still. The seed is fixed anyway.
    critical = chi_square_critical(len(positive) - 1, 4.75)
    assert statistic < critical
    # ... and the test has power: uniform frequencies over the positive leaves fail it.
    uniform = sum((n / len(positive) - n * priorities[i] / total) ** 2
                  / (n * priorities[i] / total) for i in positive)  # fmt: skip
    assert uniform > 10 * critical


def test_sample_is_stratified_one_draw_per_segment() -> None:
    # 8 equal leaves, a batch of 8: segment j of the total holds exactly leaf j.
    state = sum_tree.init(8, branching=2)
    state = sum_tree.update(state, torch.arange(8), torch.ones(8))
    for seed in range(5):
        assert sum_tree.sample(state, 8, torch.Generator().manual_seed(seed)).tolist() == list(
            range(8)
        )


def test_update_recomputes_instead_of_accumulating() -> None:
    # Many writes of large then small values: a tree updated by differences would keep the
    # rounding of every difference; this one equals the sum of its leaves after each batch.
    state = sum_tree.init(1000)
    generator = torch.Generator().manual_seed(0)
    for step in range(200):
        index = torch.randint(0, 1000, (64,), generator=generator)
        scale = 1e12 if step % 2 == 0 else 1e-3
        priority = torch.rand(64, generator=generator, dtype=torch.float64) * scale
        state = sum_tree.update(state, index, priority)
        leaves = sum_tree.priorities(state).tolist()
        assert sum_tree.total(state) == pytest.approx(math.fsum(leaves), rel=1e-13)
    state = sum_tree.update(state, torch.arange(1000), torch.zeros(1000))
    assert sum_tree.total(state) == 0.0


# Found by search: with these priorities, a prefix just below a leaf's upper boundary rounds,
# after the subtractions down the binary tree, into a run of zero leaves.
ROUNDING_CASE = [
    0.0008413863945408909, 3.386633359590182e-10, 0.0, 1.0468793011995759e-10,
    0.5586461850954703, 0.0, 0.0, 157.03189522008742, 3.242203824026889e-10, 0.57490566421198,
    798.9642519587057, 318.7993046091209, 0.7485137769587532, 148.7564989709166, 0.0,
    451.81376471677106, 9.128847372842237e-10, 0.0, 0.0, 0.0, 0.0,
]  # fmt: skip


def test_a_walk_that_rounds_into_zero_leaves_is_redone(monkeypatch) -> None:
    state = sum_tree.init(len(ROUNDING_CASE), branching=2)
    state = sum_tree.update(
        state, torch.arange(len(ROUNDING_CASE)), torch.tensor(ROUNDING_CASE, dtype=torch.float64)
    )
    calls = []
    clamped = sum_tree._descend_clamped

    def counting(*args):
        calls.append(1)
        return clamped(*args)

    monkeypatch.setattr(sum_tree, "_descend_clamped", counting)
    cum = torch.tensor(ROUNDING_CASE, dtype=torch.float64).cumsum(0).tolist()
    total = sum_tree.total(state)
    prefix = [math.nextafter(c, 0) for c in cum if c > 0 and math.nextafter(c, 0) < total]
    found = sum_tree.find(state, torch.tensor(prefix, dtype=torch.float64)).tolist()
    assert calls  # the fast walk did land on a zero leaf here
    assert all(ROUNDING_CASE[i] > 0 for i in found)
