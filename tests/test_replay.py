"""The ring buffer against a plain Python model of a bounded FIFO, plus hand-computed cases."""

from collections import deque

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from dqnkit.core import ReplayState, Transition, replay


def cartpole_row(value: float = 0.0) -> Transition:
    return Transition(
        obs=torch.full((4,), value),
        action=torch.tensor(int(value) % 2),
        reward=torch.tensor(value),
        next_obs=torch.full((4,), value + 0.5),
        terminated=torch.tensor(int(value) % 3 == 0),
    )


def rows_with_ids(ids: list[int]) -> Transition:
    """A batch whose every field encodes the row's id, so a stored row can be traced back."""
    t = torch.tensor(ids, dtype=torch.float32)
    return Transition(
        obs=t[:, None].repeat(1, 4),
        action=torch.tensor(ids, dtype=torch.int64),
        reward=t,
        next_obs=t[:, None].repeat(1, 4) + 0.5,
        terminated=torch.tensor([i % 3 == 0 for i in ids], dtype=torch.bool),
    )


def assert_row_is(storage: Transition, index: int, row_id: int) -> None:
    assert storage.obs[index].tolist() == [float(row_id)] * 4
    assert storage.action[index].item() == row_id
    assert storage.reward[index].item() == float(row_id)
    assert storage.next_obs[index].tolist() == [row_id + 0.5] * 4
    assert storage.terminated[index].item() == (row_id % 3 == 0)


# --- hand-computed cases -------------------------------------------------------------------


def test_init_allocates_capacity_rows_like_the_example() -> None:
    state = replay.init(5, cartpole_row())
    assert (state.capacity, state.size, state.cursor) == (5, 0, 0)
    assert state.storage.obs.shape == (5, 4)
    assert state.storage.obs.dtype == torch.float32
    assert state.storage.action.shape == (5,)
    assert state.storage.action.dtype == torch.int64
    assert state.storage.terminated.dtype == torch.bool


def test_write_segments_golden() -> None:
    assert replay.write_segments(cursor=0, count=3, capacity=5) == [(0, 0, 3)]
    assert replay.write_segments(cursor=3, count=3, capacity=5) == [(3, 0, 2), (0, 2, 1)]
    assert replay.write_segments(cursor=4, count=5, capacity=5) == [(4, 0, 1), (0, 1, 4)]
    # 12 rows into 5 from cursor 1: rows 0..6 are overwritten within the write; rows 7..11
    # land at (1 + 7) % 5 = 3, 4, then 0, 1, 2.
    assert replay.write_segments(cursor=1, count=12, capacity=5) == [(3, 7, 2), (0, 9, 3)]
    assert replay.write_segments(cursor=2, count=0, capacity=5) == []


def test_add_wraps_around_golden() -> None:
    state = replay.init(4, cartpole_row())
    state = replay.add(state, rows_with_ids([10, 11, 12]))
    assert (state.size, state.cursor) == (3, 3)
    state = replay.add(state, rows_with_ids([13, 14]))
    assert (state.size, state.cursor) == (4, 1)
    for index, row_id in enumerate([14, 11, 12, 13]):
        assert_row_is(state.storage, index, row_id)


def test_add_writes_in_place_into_the_callers_storage() -> None:
    state = replay.init(3, cartpole_row())
    obs_storage = state.storage.obs
    new_state = replay.add(state, rows_with_ids([7]))
    assert new_state.storage.obs is obs_storage
    assert obs_storage[0].tolist() == [7.0] * 4


def test_add_rejects_a_float_action() -> None:
    state = replay.init(3, cartpole_row())
    bad = rows_with_ids([1])._replace(action=torch.tensor([1.0]))
    with pytest.raises(ValueError, match=r"rows\.action has dtype torch\.float32.*torch\.int64"):
        replay.add(state, bad)


def test_add_rejects_a_wrong_trailing_shape_naming_both() -> None:
    state = replay.init(3, cartpole_row())
    bad = rows_with_ids([1])._replace(obs=torch.zeros(1, 5))
    with pytest.raises(ValueError, match=r"rows\.obs has shape \(1, 5\).*\(3, 4\)"):
        replay.add(state, bad)


def test_add_rejects_fields_with_different_row_counts() -> None:
    state = replay.init(3, cartpole_row())
    bad = rows_with_ids([1, 2])._replace(reward=torch.zeros(3))
    with pytest.raises(ValueError, match="same leading dimension"):
        replay.add(state, bad)


def test_add_accepts_a_lossless_widening() -> None:
    state = replay.init(3, cartpole_row())
    rows = rows_with_ids([1])._replace(obs=torch.ones(1, 4, dtype=torch.float64))
    assert replay.add(state, rows).size == 1


def test_sample_from_empty_buffer_raises() -> None:
    state = replay.init(3, cartpole_row())
    with pytest.raises(ValueError, match="empty"):
        replay.sample(state, 2, torch.Generator().manual_seed(0))


@pytest.mark.parametrize("capacity", [0, -1, 2.5])
def test_init_rejects_bad_capacity(capacity):
    with pytest.raises(ValueError, match="capacity"):
        replay.init(capacity, cartpole_row())


# --- properties against a plain model ------------------------------------------------------


@given(
    capacity=st.integers(1, 8),
    batch_sizes=st.lists(st.integers(0, 24), max_size=8),
)
def test_add_matches_a_bounded_fifo_model(capacity, batch_sizes):
    """After any adds (0..3x capacity each), size, cursor and rows equal a deque(maxlen) model."""
    state = replay.init(capacity, cartpole_row())
    model: deque[int] = deque(maxlen=capacity)
    written = 0
    for n in batch_sizes:
        ids = list(range(written, written + n))
        written += n
        state = replay.add(state, rows_with_ids(ids))
        model.extend(ids)
        assert state.size == len(model)
        assert state.cursor == written % capacity
        # The model's newest row sits just before the cursor; oldest at the cursor once full.
        for age, row_id in enumerate(reversed(model)):
            assert_row_is(state.storage, (state.cursor - 1 - age) % capacity, row_id)


@given(
    capacity=st.integers(1, 8),
    n_written=st.integers(1, 30),
    batch_size=st.integers(1, 16),
    seed=st.integers(0, 2**32 - 1),
)
def test_sample_draws_only_written_rows_reproducibly(capacity, n_written, batch_size, seed):
    state = replay.init(capacity, cartpole_row())
    state = replay.add(state, rows_with_ids(list(range(n_written))))
    live = set(range(max(0, n_written - capacity), n_written))

    batch = replay.sample(state, batch_size, torch.Generator().manual_seed(seed))
    again = replay.sample(state, batch_size, torch.Generator().manual_seed(seed))

    for field, stored, repeat in zip(batch, state.storage, again, strict=True):
        assert field.dtype == stored.dtype
        assert field.shape == (batch_size, *stored.shape[1:])
        assert torch.equal(field, repeat)
    for i, row_id in enumerate(batch.action.tolist()):
        assert row_id in live
        # Each sampled row is a whole stored row, never a mix of two.
        assert batch.obs[i].tolist() == [float(row_id)] * 4
        assert batch.reward[i].item() == float(row_id)
        assert batch.terminated[i].item() == (row_id % 3 == 0)


def test_sample_is_uniform_over_written_rows() -> None:
    state = replay.init(10, cartpole_row())
    state = replay.add(state, rows_with_ids([0, 1, 2, 3]))
    batch = replay.sample(state, 40_000, torch.Generator().manual_seed(1))
    counts = torch.bincount(batch.action, minlength=10)
    assert counts[4:].sum().item() == 0
    # Each of the 4 rows expects 10,000 draws; 5 standard deviations is about 433.
    assert (counts[:4] - 10_000).abs().max().item() < 450


def test_add_returns_a_new_state_and_leaves_the_old_one_as_it_was() -> None:
    # A pure function over a plain record: add returns a new ReplayState holding the same
    # storage tensors (written in place) and never changes the one it was given.
    state = replay.init(3, cartpole_row())
    after = replay.add(state, rows_with_ids([7, 8]))
    assert type(after) is ReplayState
    assert ReplayState._fields == ("storage", "cursor", "size")
    assert (state.cursor, state.size) == (0, 0)
    assert (after.cursor, after.size) == (2, 2)
    assert all(a is b for a, b in zip(after.storage, state.storage, strict=True))
    again = replay.add(after, rows_with_ids([9, 10]))
    assert (after.cursor, after.size) == (2, 2)
    assert (again.cursor, again.size) == (1, 3)
    assert again.capacity == 3


def test_sample_is_gather_of_sample_indices() -> None:
    state = replay.add(replay.init(8, cartpole_row()), rows_with_ids(list(range(11))))
    index = replay.sample_indices(state, 32, torch.Generator().manual_seed(3))
    assert index.dtype == torch.int64
    assert index.shape == (32,)
    assert bool(((index >= 0) & (index < 8)).all())
    via_gather = replay.gather(state, index)
    batch = replay.sample(state, 32, torch.Generator().manual_seed(3))
    for a, b in zip(batch, via_gather, strict=True):
        assert torch.equal(a, b)
    # Rows 3..10 were written last; slot i holds the id whose id % 8 == i.
    assert [
        (r - i) % 8 for r, i in zip(via_gather.action.tolist(), index.tolist(), strict=True)
    ] == [0] * 32


def test_gather_refuses_rows_not_written() -> None:
    state = replay.add(replay.init(8, cartpole_row()), rows_with_ids([0, 1, 2]))
    with pytest.raises(ValueError, match="outside the 3 written"):
        replay.gather(state, torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="int64"):
        replay.gather(state, torch.tensor([0.0]))
