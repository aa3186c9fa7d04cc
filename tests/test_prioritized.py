"""Prioritized replay and importance weights: golden values by hand, and properties."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from dqnkit.core import Transition, frame_replay, importance_weights, prioritized, replay, sum_tree
from dqnkit.core.frame_replay import Entry


def row_example() -> Transition:
    return Transition(
        obs=torch.zeros(2),
        action=torch.tensor(0),
        reward=torch.tensor(0.0),
        next_obs=torch.zeros(2),
        terminated=torch.tensor(False),
    )


def rows_with_ids(ids: list[int]) -> Transition:
    """Rows whose every field carries the row's id (action = id)."""
    n = len(ids)
    column = torch.tensor(ids, dtype=torch.float32)
    return Transition(
        obs=column[:, None].expand(n, 2).clone(),
        action=torch.tensor(ids, dtype=torch.int64),
        reward=column.clone(),
        next_obs=column[:, None].expand(n, 2) + 0.5,
        terminated=torch.zeros(n, dtype=torch.bool),
    )


def leaves(state: prioritized.PrioritizedState) -> list[float]:
    return sum_tree.priorities(state.tree).tolist()


# --- importance_weights --------------------------------------------------------------------


def test_importance_weights_golden() -> None:
    p = torch.tensor([0.1, 0.2, 0.4], dtype=torch.float64)
    # (N P)^-1 / max: P_min / P = [1, 1/2, 1/4]
    assert importance_weights(p, 10, 1.0).tolist() == [1.0, 0.5, 0.25]
    # beta = 1/2: [1, 2^-1/2, 1/2]
    torch.testing.assert_close(
        importance_weights(p, 10, 0.5),
        torch.tensor([1.0, 2**-0.5, 0.5], dtype=torch.float64),
    )
    assert importance_weights(p, 10, 0.0).tolist() == [1.0, 1.0, 1.0]


def test_importance_weights_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match=r"in \(0, 1\]"):
        importance_weights(torch.tensor([0.0, 0.5]), 4, 0.5)
    with pytest.raises(ValueError, match=r"in \(0, 1\]"):
        importance_weights(torch.tensor([math.nan]), 4, 0.5)
    with pytest.raises(ValueError, match="beta"):
        importance_weights(torch.tensor([0.5]), 4, 1.5)
    with pytest.raises(ValueError, match="size"):
        importance_weights(torch.tensor([0.5]), 0, 0.5)
    with pytest.raises(ValueError, match="rank 1"):
        importance_weights(torch.tensor([[0.5]]), 4, 0.5)


probabilities = st.lists(
    st.floats(1e-30, 1.0, allow_nan=False, exclude_min=False), min_size=1, max_size=32
)


@given(probabilities, st.integers(1, 10**7), st.floats(0.0, 1.0))
def test_importance_weights_are_the_normalised_formula(ps, size, beta):
    p = torch.tensor(ps, dtype=torch.float64)
    w = importance_weights(p, size, beta)
    raw = [(size * pi) ** -beta for pi in ps]
    for wi, ri in zip(w.tolist(), raw, strict=True):
        assert wi == pytest.approx(ri / max(raw), rel=1e-9)


@given(probabilities, st.integers(1, 10**7), st.floats(0.0, 1.0), st.booleans())
def test_importance_weights_lie_in_zero_one_and_are_one_at_the_smallest_p(ps, size, beta, f32):
    p = torch.tensor(ps, dtype=torch.float32 if f32 else torch.float64)
    w = importance_weights(p, size, beta)
    assert w.dtype == p.dtype
    assert bool(((w > 0) & (w <= 1)).all())
    assert (w[p == p.min()] == 1).all()
    assert torch.equal(importance_weights(p, size, 0.0), torch.ones_like(p))


# --- over the uniform ring -----------------------------------------------------------------


def test_prioritized_replay_golden() -> None:
    state = prioritized.init(replay.init(4, row_example()))
    assert (state.max_priority, state.reach) == (1.0, 0)
    state = prioritized.add(state, rows_with_ids([10, 11, 12]))
    assert leaves(state) == [1.0, 1.0, 1.0, 0.0]  # new rows at the max priority seen (1)
    # p = (|delta| + eps)^alpha with alpha = 1, eps = 0.5: 1.5 and 3.5
    state = prioritized.update_priorities(
        state, torch.tensor([0, 1]), torch.tensor([-1.0, 3.0]), alpha=1.0, eps=0.5
    )
    assert leaves(state) == [1.5, 3.5, 1.0, 0.0]
    assert state.max_priority == 3.5
    state = prioritized.add(state, rows_with_ids([13, 14]))  # wraps: slot 3, then slot 0
    assert leaves(state) == [3.5, 3.5, 1.0, 3.5]
    # alpha = 1/2: sqrt(|delta| + eps); a smaller priority does not lower the max.
    state = prioritized.update_priorities(
        state, torch.tensor([2]), torch.tensor([3.5]), alpha=0.5, eps=0.5
    )
    assert leaves(state) == [3.5, 3.5, 2.0, 3.5]
    assert state.max_priority == 3.5


def test_prioritized_sample_returns_the_rows_their_slots_and_weights() -> None:
    state = prioritized.init(replay.init(4, row_example()))
    state = prioritized.add(state, rows_with_ids([0, 1, 2, 3]))
    state = prioritized.update_priorities(
        state, torch.arange(4), torch.tensor([0.0, 1.0, 2.0, 5.0]), alpha=1.0, eps=1.0
    )  # priorities 1, 2, 3, 6 of 12
    batch, indices, weights = prioritized.sample(state, 6, torch.Generator().manual_seed(0), 1.0)
    assert batch.action.tolist() == indices.tolist()  # row i holds id i
    assert isinstance(state.buffer, replay.ReplayState)
    assert torch.equal(batch.obs, state.buffer.storage.obs[indices])
    assert weights.dtype == torch.float32
    p = torch.tensor([1.0, 2.0, 3.0, 6.0])[indices] / 12
    torch.testing.assert_close(weights, (p.min() / p).float())
    # stratified over 12 with 6 draws: segments of 2 -> slots 0|1, 1, 2|2, 3, 3, 3 in order
    assert indices.tolist()[3:] == [3, 3, 3]
    assert indices.tolist() == sorted(indices.tolist())


def test_sample_frequencies_follow_the_priorities() -> None:
    state = prioritized.init(replay.init(8, row_example()))
    state = prioritized.add(state, rows_with_ids(list(range(5))))
    td = torch.tensor([0.0, 1.0, 3.0, 0.0, 7.0])
    state = prioritized.update_priorities(state, torch.arange(5), td, alpha=1.0, eps=1.0)
    generator = torch.Generator().manual_seed(3)
    draws = torch.cat([prioritized.sample(state, 32, generator, 0.4)[1] for _ in range(500)])
    counts = torch.bincount(draws, minlength=8).tolist()
    assert counts[5:] == [0, 0, 0]  # unwritten slots: priority 0, never drawn
    expected = [len(draws) * p / 16 for p in (1.0, 2.0, 4.0, 1.0, 8.0)]
    for count, e in zip(counts, expected, strict=False):
        assert abs(count - e) < 5 * math.sqrt(e)


def test_update_priorities_rejects_bad_input() -> None:
    state = prioritized.add(prioritized.init(replay.init(4, row_example())), rows_with_ids([1]))
    index = torch.tensor([0])
    with pytest.raises(ValueError, match="finite"):
        prioritized.update_priorities(state, index, torch.tensor([math.nan]), 0.6, 1e-6)
    with pytest.raises(ValueError, match="finite"):
        prioritized.update_priorities(state, index, torch.tensor([math.inf]), 0.6, 1e-6)
    with pytest.raises(ValueError, match="alpha"):
        prioritized.update_priorities(state, index, torch.tensor([1.0]), 1.5, 1e-6)
    with pytest.raises(ValueError, match="eps"):
        prioritized.update_priorities(state, index, torch.tensor([1.0]), 0.6, 0.0)
    with pytest.raises(ValueError, match="same shape"):
        prioritized.update_priorities(state, torch.tensor([0, 1]), torch.tensor([1.0]), 0.6, 1.0)
    assert leaves(state) == [1.0, 0.0, 0.0, 0.0]  # nothing was written


def test_init_wants_an_empty_ring() -> None:
    full = replay.add(replay.init(4, row_example()), rows_with_ids([1]))
    with pytest.raises(ValueError, match="empty"):
        prioritized.init(full)
    with pytest.raises(ValueError, match="ReplayState or a FrameReplayState"):
        prioritized.init(full.storage)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="empty prioritized replay"):
        prioritized.sample(prioritized.init(replay.init(4, row_example())), 2, torch.Generator(), 1)


@st.composite
def replay_scripts(draw):
    """A capacity and a script of adds (row counts) and priority updates (slot, td pairs)."""
    capacity = draw(st.integers(1, 12))
    add = st.tuples(st.just("add"), st.integers(0, 2 * capacity))
    td = st.floats(-50, 50, allow_nan=False)
    update = st.tuples(
        st.just("update"), st.lists(st.tuples(st.integers(0, capacity - 1), td), max_size=6)
    )
    script = draw(st.lists(st.one_of(add, update), max_size=10))
    return capacity, script, draw(st.floats(0.0, 1.0)), draw(st.floats(1e-6, 1.0))


@given(replay_scripts())
def test_priorities_match_a_plain_model(case):
    capacity, script, alpha, eps = case
    state = prioritized.init(replay.init(capacity, row_example()))
    model, max_seen, cursor, size, next_id = [0.0] * capacity, 1.0, 0, 0, 0
    for action, arg in script:
        if action == "add":
            ids = list(range(next_id, next_id + arg))
            next_id += arg
            state = prioritized.add(state, rows_with_ids(ids))
            for _ in ids:  # each new row, one after the other, at the largest priority seen
                model[cursor] = max_seen
                cursor, size = (cursor + 1) % capacity, min(size + 1, capacity)
        else:
            if not arg:
                continue
            index = torch.tensor([i for i, _ in arg])
            td = torch.tensor([d for _, d in arg], dtype=torch.float64)
            state = prioritized.update_priorities(state, index, td, alpha, eps)
            for i, d in arg:
                model[i] = (abs(d) + eps) ** alpha
                max_seen = max(max_seen, model[i])
    assert leaves(state) == pytest.approx(model, rel=1e-12)
    assert state.max_priority == pytest.approx(max_seen, rel=1e-12)
    assert (state.buffer.cursor, state.buffer.size) == (cursor, size)


# --- over the frame ring -------------------------------------------------------------------


def frame_entries(rows: list[tuple[int, int, bool]]) -> Entry:
    """(stream, obs id, first) per slot; the obs id is also the action and reward."""
    n = len(rows)
    ids = torch.tensor([o for _, o, _ in rows], dtype=torch.int64)
    return Entry(
        stream=torch.tensor([s for s, _, _ in rows], dtype=torch.int64),
        obs=ids[:, None].expand(n, 2).to(torch.float32),
        first=torch.tensor([f for _, _, f in rows], dtype=torch.bool),
        action=ids.clone(),
        reward=ids.to(torch.float32),
        terminated=torch.zeros(n, dtype=torch.bool),
    )


def test_frame_ring_first_slots_are_never_drawn() -> None:
    state = prioritized.init(frame_replay.init(6, row_example(), streams=2))
    # stream 0: reset 100, step 101; stream 1: reset 200, steps 201, 202
    state = prioritized.add(
        state,
        frame_entries(
            [(0, 100, True), (1, 200, True), (0, 101, False), (1, 201, False), (1, 202, False)]
        ),
    )
    assert leaves(state) == [0.0, 0.0, 1.0, 1.0, 1.0, 0.0]
    batch, indices, _ = prioritized.sample(state, 30, torch.Generator().manual_seed(0), 0.5)
    assert set(indices.tolist()) <= {2, 3, 4}
    for i, obs, next_obs in zip(
        indices.tolist(), batch.obs[:, 0], batch.next_obs[:, 0], strict=True
    ):
        assert next_obs.item() == {2: 101, 3: 201, 4: 202}[i]
        assert obs.item() == {2: 100, 3: 200, 4: 201}[i]


def test_frame_ring_transitions_lose_their_priority_with_their_obs() -> None:
    state = prioritized.init(frame_replay.init(4, row_example(), streams=1))
    state = prioritized.add(state, frame_entries([(0, 0, True), (0, 1, False), (0, 2, False)]))
    assert leaves(state) == [0.0, 1.0, 1.0, 0.0]
    state = prioritized.update_priorities(
        state, torch.tensor([1, 2]), torch.tensor([4.0, 9.0]), alpha=1.0, eps=1.0
    )
    # Two more steps: slot 3, then slot 0 (overwriting obs 0, the obs of the transition in
    # slot 1, which is therefore no longer drawable).
    state = prioritized.add(state, frame_entries([(0, 3, False), (0, 4, False)]))
    assert leaves(state) == [10.0, 0.0, 10.0, 10.0]
    # A stale write-back to that slot keeps it at 0.
    state = prioritized.update_priorities(
        state, torch.tensor([1]), torch.tensor([2.0]), alpha=1.0, eps=1.0
    )
    assert leaves(state)[1] == 0.0


@st.composite
def frame_scripts(draw):
    streams = draw(st.integers(1, 3))
    capacity = draw(st.integers(streams + 1, 12))
    batches = []
    started: set[int] = set()
    obs_id = 0
    for _ in range(draw(st.integers(1, 8))):
        batch = []
        for _ in range(draw(st.integers(0, 5))):
            stream = draw(st.integers(0, streams - 1))
            is_first = stream not in started or draw(st.booleans())
            started.add(stream)
            batch.append((stream, obs_id, is_first))
            obs_id += 1
        batches.append(batch)
    return streams, capacity, batches


@given(frame_scripts())
def test_frame_ring_positive_priorities_are_exactly_the_sampleable_slots(case):
    streams, capacity, batches = case
    state = prioritized.init(frame_replay.init(capacity, row_example(), streams=streams))
    for batch in batches:
        state = prioritized.add(state, frame_entries(batch))
        positive = {i for i, p in enumerate(leaves(state)) if p > 0}
        assert isinstance(state.buffer, frame_replay.FrameReplayState)
        assert positive == set(frame_replay.sampleable(state.buffer).tolist())
