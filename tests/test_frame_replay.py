"""The frame ring against hand-computed cases and a plain Python model of the slots written.

Every observation carries a unique id (the tensor is filled with it), so a gathered row can be
traced back to the step that produced it: ``obs``/``next_obs`` ids show which slots a transition
was read from, and whether an episode boundary was crossed.
"""

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from dqnkit.core import Transition, frame_replay
from dqnkit.core.frame_replay import Entry, FrameReplayState

NO_SOURCE = -1  # the documented source of a first slot and latest of a stream not yet started


class ObsKind(NamedTuple):
    """How an observation id becomes a tensor: filled into ``shape`` with ``dtype``."""

    shape: tuple[int, ...]
    dtype: torch.dtype


VECTOR = ObsKind((2,), torch.float32)
FRAME = ObsKind((1, 2, 3), torch.uint8)  # ids stay below 256 so each one is still unique


def observations(ids: Sequence[int], kind: ObsKind = VECTOR) -> torch.Tensor:
    """``[len(ids), *kind.shape]``, row ``i`` filled with ``ids[i]`` (works for no ids too)."""
    flat = torch.tensor(list(ids), dtype=torch.int64)
    return flat.reshape(-1, *(1 for _ in kind.shape)).expand(-1, *kind.shape).to(kind.dtype)


def example(kind: ObsKind = VECTOR) -> Transition:
    obs = torch.zeros(kind.shape, dtype=kind.dtype)
    return Transition(
        obs=obs,
        action=torch.tensor(0),
        reward=torch.tensor(0.0),
        next_obs=obs.clone(),
        terminated=torch.tensor(False),
    )


class Row(NamedTuple):
    """One slot to write, in plain Python."""

    stream: int
    obs: int
    first: bool
    action: int = 0
    reward: float = 0.0
    terminated: bool = False


def first(stream: int, obs: int) -> Row:
    """An episode's reset observation."""
    return Row(stream, obs, first=True)


def step(stream: int, obs: int, action: int, reward: float, terminated: bool = False) -> Row:
    """The observation ``stream`` stepped to, with the step's action, reward and flag."""
    return Row(stream, obs, False, action, reward, terminated)


def entries(rows: Sequence[Row], kind: ObsKind = VECTOR) -> Entry:
    return Entry(
        stream=torch.tensor([r.stream for r in rows], dtype=torch.int64),
        obs=observations([r.obs for r in rows], kind),
        first=torch.tensor([r.first for r in rows], dtype=torch.bool),
        action=torch.tensor([r.action for r in rows], dtype=torch.int64),
        reward=torch.tensor([r.reward for r in rows], dtype=torch.float32),
        terminated=torch.tensor([r.terminated for r in rows], dtype=torch.bool),
    )


# A transition as it really happened: (obs id, action, reward, next_obs id, terminated).
Expected = tuple[int, int, float, int, bool]


def transitions(rows: Sequence[Expected], kind: ObsKind = VECTOR) -> Transition:
    return Transition(
        obs=observations([r[0] for r in rows], kind),
        action=torch.tensor([r[1] for r in rows], dtype=torch.int64),
        reward=torch.tensor([r[2] for r in rows], dtype=torch.float32),
        next_obs=observations([r[3] for r in rows], kind),
        terminated=torch.tensor([r[4] for r in rows], dtype=torch.bool),
    )


def assert_transitions_equal(actual: Transition, expected: Transition) -> None:
    for name, got, want in zip(Transition._fields, actual, expected, strict=True):
        assert got.dtype == want.dtype, name
        assert got.shape == want.shape, name
        assert torch.equal(got, want), f"{name}: {got.tolist()} != {want.tolist()}"


def rows_of(batch: Transition) -> list[Expected]:
    """A batch as plain tuples; each observation is reduced to its id (all its entries equal)."""
    out: list[Expected] = []
    for i in range(batch.action.shape[0]):
        obs, next_obs = batch.obs[i].flatten(), batch.next_obs[i].flatten()
        assert bool((obs == obs[0]).all())
        assert bool((next_obs == next_obs[0]).all())
        out.append(
            (
                int(obs[0]),
                int(batch.action[i]),
                float(batch.reward[i]),
                int(next_obs[0]),
                bool(batch.terminated[i]),
            )
        )
    return out


def assert_roughly_uniform(rows: Sequence[Expected], expected: Iterable[Expected]) -> None:
    """Each expected row appears within 5 binomial standard deviations of ``len(rows) / k``."""
    kinds = set(expected)
    n, p = len(rows), 1 / len(kinds)
    mean, sd = n * p, math.sqrt(n * p * (1 - p))
    for row in kinds:
        assert abs(rows.count(row) - mean) < 5 * sd, (row, rows.count(row), mean)


TENSOR_FIELDS = ("obs", "action", "reward", "terminated", "source", "successor", "latest")
Snapshot = tuple[int, dict[str, torch.Tensor]]


def snapshot(state: FrameReplayState) -> Snapshot:
    """``written`` and a byte copy of every tensor, to show later that a failed call changed
    nothing. Unwritten slots hold torch.empty's garbage (NaN floats, bools that are neither 0
    nor 1, which a plain clone would normalise), so the bytes are copied and compared."""
    return state.written, {n: getattr(state, n).view(torch.uint8).clone() for n in TENSOR_FIELDS}


def assert_same_state(state: FrameReplayState, before: Snapshot) -> None:
    written, tensors = before
    assert state.written == written
    for name, stored in tensors.items():
        assert torch.equal(getattr(state, name).view(torch.uint8), stored), name


def state_of(capacity: int, streams: int, rows: Sequence[Row]) -> FrameReplayState:
    state = frame_replay.init(capacity, example(), streams=streams)
    return frame_replay.add(state, entries(rows))


def obs_ids(state: FrameReplayState) -> list[int]:
    """The id in each slot of a full ring (slot order, not write order)."""
    return [int(state.obs[i, 0]) for i in range(state.capacity)]


# --- init ----------------------------------------------------------------------------------


def test_init_allocates_empty_slots_like_the_example() -> None:
    state = frame_replay.init(5, example(FRAME), streams=3)
    assert isinstance(state, FrameReplayState)
    assert (state.capacity, state.streams, state.written) == (5, 3, 0)
    assert (state.cursor, state.size) == (0, 0)
    assert (state.obs.shape, state.obs.dtype) == ((5, 1, 2, 3), torch.uint8)
    assert (state.action.shape, state.action.dtype) == ((5,), torch.int64)
    assert (state.reward.shape, state.reward.dtype) == ((5,), torch.float32)
    assert (state.terminated.shape, state.terminated.dtype) == ((5,), torch.bool)
    assert state.source.dtype == torch.int64
    assert state.source.tolist() == [NO_SOURCE] * 5
    assert state.latest.dtype == torch.int64
    assert state.latest.tolist() == [NO_SOURCE] * 3
    assert frame_replay.sampleable(state).tolist() == []


@pytest.mark.parametrize("capacity", [0, -1, 2.5, True])
def test_init_rejects_bad_capacity(capacity: object) -> None:
    with pytest.raises(ValueError, match="capacity must be a positive int"):
        frame_replay.init(capacity, example())  # type: ignore[arg-type]


def test_init_rejects_a_capacity_that_cannot_hold_a_transition() -> None:
    # With 3 streams writing in turn, a transition's obs is up to 3 slots back.
    with pytest.raises(ValueError, match=r"capacity \(3\) must exceed streams \(3\)"):
        frame_replay.init(3, example(), streams=3)


@pytest.mark.parametrize("streams", [0, -2, 1.0])
def test_init_rejects_bad_streams(streams: object) -> None:
    with pytest.raises(ValueError, match="streams must be a positive int"):
        frame_replay.init(4, example(), streams=streams)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "next_obs",
    [torch.zeros(3), torch.zeros(1, 2), torch.zeros(2, dtype=torch.float64)],
    ids=["longer", "other-rank", "other-dtype"],
)
def test_init_rejects_a_next_obs_unlike_obs(next_obs: torch.Tensor) -> None:
    with pytest.raises(ValueError, match=r"example\.next_obs must have obs's shape and dtype"):
        frame_replay.init(4, example()._replace(next_obs=next_obs))


def test_init_rejects_a_non_transition_example() -> None:
    with pytest.raises(ValueError, match="example must be a Transition"):
        frame_replay.init(4, tuple(example()))  # type: ignore[arg-type]


# --- hand-computed cases -------------------------------------------------------------------

# Capacity 5, two streams; slot = write number % 5. Each row: the call's entries, then the
# expected written, cursor, size, latest, source (slot order), sampleable, the gathered
# transitions (obs id, action, reward, next_obs id, terminated) and the obs id in every slot
# (None where never written).
GOLDEN_CAPACITY = 5
GOLDEN: list[
    tuple[
        list[Row], int, int, int, list[int], list[int], list[int], list[Expected], list[int | None]
    ]
] = [
    (
        # w0: s0 resets to 10; w1: s1 resets to 20. Only first slots: nothing sampleable.
        [first(0, 10), first(1, 20)],
        2, 2, 2, [0, 1], [-1, -1, -1, -1, -1], [], [],
        [10, 20, None, None, None],
    ),
    (
        # w2: s0 steps 10 -> 11 (source w0); w3: s1 steps 20 -> 21 (source w1).
        # oldest kept write = max(0, 4 - 5) = 0, so both sources are still stored.
        [step(0, 11, 1, 0.5), step(1, 21, 0, 1.0)],
        4, 4, 4, [2, 3], [-1, -1, 0, 1, -1], [2, 3],
        [(10, 1, 0.5, 11, False), (20, 0, 1.0, 21, False)],
        [10, 20, 11, 21, None],
    ),
    (
        # w4: s0 steps 11 -> 12 and terminates (source w2); w5: s0 resets to 13 in slot 0,
        # overwriting w0 (obs 10). oldest kept = 6 - 5 = 1; write order from cursor 1 is slots
        # 1, 2, 3, 4, 0 (w1..w5) with sources -1, 0, 1, 2, -1: w2 (slot 2) lost its obs slot,
        # w3 (slot 3, source 1) and w4 (slot 4, source 2) remain.
        [step(0, 12, 2, -1.0, terminated=True), first(0, 13)],
        6, 1, 5, [5, 3], [-1, -1, 0, 1, 2], [3, 4],
        [(20, 0, 1.0, 21, False), (11, 2, -1.0, 12, True)],
        [13, 20, 11, 21, 12],
    ),
    (
        # w6: s1 steps 21 -> 22 (source w3) into slot 1, overwriting w1 (obs 20). oldest
        # kept = 2; write order is slots 2, 3, 4, 0, 1 (w2..w6), sources 0, 1, 2, -1, 3: now w3
        # lost its obs too, leaving w4 (slot 4) then w6 (slot 1): oldest first, not slot order.
        [step(1, 22, 1, 2.0)],
        7, 2, 5, [5, 6], [-1, 3, 0, 1, 2], [4, 1],
        [(11, 2, -1.0, 12, True), (21, 1, 2.0, 22, False)],
        [13, 22, 11, 21, 12],
    ),
    (
        # w7: s0 steps from its reset observation 13 (w5) to 14, into slot 2 over w2 (obs 11).
        # oldest kept = 3; write order slots 3, 4, 0, 1, 2 (w3..w7), sources 1, 2, -1, 3, 5:
        # w4 just lost obs 11, leaving w6 (slot 1) and w7 (slot 2, obs = the reset obs 13).
        [step(0, 14, 0, 0.25)],
        8, 3, 5, [7, 6], [-1, 3, 5, 1, 2], [1, 2],
        [(21, 1, 2.0, 22, False), (13, 0, 0.25, 14, False)],
        [13, 22, 14, 21, 12],
    ),
]  # fmt: skip


def test_golden_ring_filled_call_by_call() -> None:
    state = frame_replay.init(GOLDEN_CAPACITY, example(), streams=2)
    for rows, written, cursor, size, latest, source, slots, gathered, obs in GOLDEN:
        state = frame_replay.add(state, entries(rows))
        assert (state.written, state.cursor, state.size) == (written, cursor, size)
        assert state.latest.tolist() == latest
        assert state.source.tolist() == source
        index = frame_replay.sampleable(state)
        assert index.dtype == torch.int64
        assert index.tolist() == slots
        assert_transitions_equal(frame_replay.gather(state, index), transitions(gathered))
        for slot, obs_id in enumerate(obs):
            if obs_id is not None:
                assert state.obs[slot].tolist() == [float(obs_id)] * 2, slot


def test_golden_ring_filled_in_one_call_larger_than_capacity() -> None:
    """All 8 writes at once: w0..w2 are overwritten within the call, the end state is the same."""
    state = frame_replay.init(GOLDEN_CAPACITY, example(), streams=2)
    state = frame_replay.add(state, entries([row for call in GOLDEN for row in call[0]]))
    _, written, cursor, size, latest, source, slots, gathered, obs = GOLDEN[-1]
    assert (state.written, state.cursor, state.size) == (written, cursor, size)
    assert state.latest.tolist() == latest
    assert state.source.tolist() == source
    assert obs_ids(state) == obs
    assert frame_replay.sampleable(state).tolist() == slots
    assert_transitions_equal(frame_replay.gather(state, torch.tensor(slots)), transitions(gathered))


def test_gather_follows_the_index_given_repeats_included() -> None:
    state = state_of(5, 2, [row for call in GOLDEN[:3] for row in call[0]])
    # After the third golden call: slot 4 is 11 -> 12 (terminated), slot 3 is 20 -> 21.
    batch = frame_replay.gather(state, torch.tensor([4, 3, 4]))
    assert rows_of(batch) == [
        (11, 2, -1.0, 12, True),
        (20, 0, 1.0, 21, False),
        (11, 2, -1.0, 12, True),
    ]


# --- episode boundaries --------------------------------------------------------------------

# Capacity 10 (nothing is overwritten), two interleaved streams:
#   w0 s0 reset 100            w1 s1 reset 500
#   w2 s0 100 -> 101           w3 s1 500 -> 501
#   w4 s0 101 -> 102, then s0 is truncated (time limit): no terminated flag, and
#   w5 s0 reset 200            w6 s1 501 -> 502 terminated
#   w7 s1 reset 600            w8 s0 200 -> 201 (first step of s0's second episode)
BOUNDARY_ROWS = [
    first(0, 100),
    first(1, 500),
    step(0, 101, 1, 1.0),
    step(1, 501, 0, 0.5),
    step(0, 102, 1, 1.0),
    first(0, 200),
    step(1, 502, 2, -1.0, terminated=True),
    first(1, 600),
    step(0, 201, 0, 3.0),
]
# Sources: w2 <- w0, w3 <- w1, w4 <- w2, w6 <- w3, w8 <- w5; the first slots w0, w1, w5, w7
# are never sampleable.
BOUNDARY_SAMPLEABLE = [2, 3, 4, 6, 8]
BOUNDARY_TRANSITIONS: list[Expected] = [
    (100, 1, 1.0, 101, False),
    (500, 0, 0.5, 501, False),
    (101, 1, 1.0, 102, False),  # truncated: next_obs is the real final 102, not the reset 200
    (501, 2, -1.0, 502, True),  # terminated is stored; next_obs is the terminal 502, not 600
    (200, 0, 3.0, 201, False),  # the new episode starts from its reset observation
]
FIRST_OBS = {100, 500, 200, 600}


@pytest.mark.parametrize("chunk", [1, 2, 4, len(BOUNDARY_ROWS)])
def test_episode_boundaries(chunk: int) -> None:
    state = frame_replay.init(10, example(), streams=2)
    for start in range(0, len(BOUNDARY_ROWS), chunk):
        state = frame_replay.add(state, entries(BOUNDARY_ROWS[start : start + chunk]))
    assert (state.written, state.cursor, state.size) == (9, 9, 9)
    # s0's newest slot is w8, s1's is its reset w7.
    assert state.latest.tolist() == [8, 7]
    assert state.source[:9].tolist() == [-1, -1, 0, 1, 2, -1, 3, -1, 5]
    index = frame_replay.sampleable(state)
    assert index.tolist() == BOUNDARY_SAMPLEABLE
    assert_transitions_equal(frame_replay.gather(state, index), transitions(BOUNDARY_TRANSITIONS))


def test_sample_never_returns_a_first_slot_and_covers_every_transition() -> None:
    state = state_of(10, 2, BOUNDARY_ROWS)
    batch = frame_replay.sample(state, 5000, torch.Generator().manual_seed(0))
    rows = rows_of(batch)
    assert set(rows) == set(BOUNDARY_TRANSITIONS)
    assert not {r[3] for r in rows} & FIRST_OBS
    # Nothing crosses an episode boundary: no 102 -> 200 nor 502 -> 600.
    assert not {(r[0], r[3]) for r in rows} & {(102, 200), (502, 600)}
    # 5 sampleable transitions: 1000 draws each expected, 5 standard deviations ~ 141.
    assert_roughly_uniform(rows, BOUNDARY_TRANSITIONS)


# --- sample --------------------------------------------------------------------------------


def test_sample_is_reproducible_with_the_same_seed() -> None:
    state = state_of(10, 2, BOUNDARY_ROWS)
    a = frame_replay.sample(state, 64, torch.Generator().manual_seed(123))
    b = frame_replay.sample(state, 64, torch.Generator().manual_seed(123))
    assert_transitions_equal(a, b)


def test_sample_after_wraparound_skips_transitions_that_lost_their_obs() -> None:
    # The fourth golden state: sampleable are slot 4 (11 -> 12) and slot 1 (21 -> 22); slot 2
    # (10 -> 11) and slot 3 (20 -> 21) lost their obs slots, slot 0 is a first slot.
    state = state_of(5, 2, [row for call in GOLDEN[:4] for row in call[0]])
    rows = rows_of(frame_replay.sample(state, 2000, torch.Generator().manual_seed(7)))
    expected = {(11, 2, -1.0, 12, True), (21, 1, 2.0, 22, False)}
    assert set(rows) == expected
    # 1000 draws each expected, 5 standard deviations ~ 112.
    assert_roughly_uniform(rows, expected)


def test_sample_is_uniform_when_a_redraw_is_needed() -> None:
    # Capacity 4, one stream, one long episode: w0 reset 1, then w1..w4 step 1 -> 2 -> 3 -> 4
    # -> 5. w4 lands in slot 0 over w0, so w1 (slot 1, 1 -> 2) lost its obs; slots 2, 3, 0
    # (2 -> 3, 3 -> 4, 4 -> 5) are sampleable. A quarter of the first draws hit slot 1 and are
    # redrawn: the redraws must be uniform too (slot 0 gets no extra share).
    rows = [first(0, 1)] + [step(0, i + 1, i, 0.5) for i in range(1, 5)]
    state = state_of(4, 1, rows)
    assert frame_replay.sampleable(state).tolist() == [2, 3, 0]
    batch = rows_of(frame_replay.sample(state, 4000, torch.Generator().manual_seed(11)))
    expected = [(2, 2, 0.5, 3, False), (3, 3, 0.5, 4, False), (4, 4, 0.5, 5, False)]
    assert set(batch) == set(expected)
    # 1333 draws each expected, 5 standard deviations ~ 149.
    assert_roughly_uniform(batch, expected)


def test_sample_with_one_step_episodes() -> None:
    # Capacity 6, one stream, every episode one terminated step: w0 first 10, w1 10 -> 11 T,
    # w2 first 20, w3 20 -> 21 T, w4 first 30, w5 30 -> 31 T, w6 first 40, w7 40 -> 41 T.
    # written 8: oldest kept w2, so w1 is gone; half of the kept slots are first slots.
    rows: list[Row] = []
    for episode in range(1, 5):
        rows += [first(0, 10 * episode), step(0, 10 * episode + 1, episode, 1.0, True)]
    state = state_of(6, 1, rows)
    # Slots in write order from cursor 2: 2 (w2), 3 (w3), 4 (w4), 5 (w5), 0 (w6), 1 (w7).
    assert frame_replay.sampleable(state).tolist() == [3, 5, 1]
    batch = frame_replay.sample(state, 3000, torch.Generator().manual_seed(3))
    assert set(rows_of(batch)) == {
        (20, 2, 1.0, 21, True),
        (30, 3, 1.0, 31, True),
        (40, 4, 1.0, 41, True),
    }


def test_sample_with_a_single_sampleable_transition_among_first_slots() -> None:
    # Capacity 12, 11 streams: w0..w10 reset every stream to 100 + stream; w11 steps s3 from
    # 103 to 7. 11 of 12 slots are first slots: after the redraws most of a big batch is still
    # invalid, and the exact draw must give the one transition every time.
    rows = [first(s, 100 + s) for s in range(11)] + [step(3, 7, 2, 0.5)]
    state = state_of(12, 11, rows)
    assert frame_replay.sampleable(state).tolist() == [11]
    for seed in range(5):
        batch = frame_replay.sample(state, 64, torch.Generator().manual_seed(seed))
        assert rows_of(batch) == [(103, 2, 0.5, 7, False)] * 64


def test_sample_is_uniform_when_most_draws_are_first_slots() -> None:
    # Capacity 12, 10 streams: w0..w9 reset stream s to 100 + s; w10 steps s2 from 102 to 7,
    # w11 steps s5 from 105 to 8. Only slots 10 and 11 are sampleable: (10/12)^5 ~ 40% of the
    # first draws are still first slots after the redraws, and the draw that replaces them
    # must be uniform too.
    rows = [first(s, 100 + s) for s in range(10)] + [step(2, 7, 1, 0.5), step(5, 8, 2, 1.5)]
    state = state_of(12, 10, rows)
    assert frame_replay.sampleable(state).tolist() == [10, 11]
    batch = rows_of(frame_replay.sample(state, 2000, torch.Generator().manual_seed(5)))
    expected = [(102, 1, 0.5, 7, False), (105, 2, 1.5, 8, False)]
    assert set(batch) == set(expected)
    # 1000 draws each expected, 5 standard deviations ~ 112.
    assert_roughly_uniform(batch, expected)


def test_sample_from_an_empty_ring_raises() -> None:
    state = frame_replay.init(4, example(), streams=2)
    with pytest.raises(ValueError, match="empty"):
        frame_replay.sample(state, 2, torch.Generator().manual_seed(0))


def test_sample_from_first_slots_only_raises() -> None:
    state = state_of(4, 3, [first(0, 1), first(1, 2), first(2, 3), first(0, 4)])
    with pytest.raises(ValueError, match="no transition to sample"):
        frame_replay.sample(state, 8, torch.Generator().manual_seed(0))


def test_sample_raises_when_every_transition_lost_its_obs() -> None:
    # Capacity 2: w1 (1 -> 2) ends the episode, w2 (reset 3) overwrites w1's obs slot w0;
    # what is left is a transition without its obs and a first slot.
    state = state_of(2, 1, [first(0, 1), step(0, 2, 0, 1.0, True), first(0, 3)])
    assert frame_replay.sampleable(state).tolist() == []
    with pytest.raises(ValueError, match="no transition to sample"):
        frame_replay.sample(state, 8, torch.Generator().manual_seed(0))


@pytest.mark.parametrize("batch_size", [0, -3, 2.0, True])
def test_sample_rejects_a_bad_batch_size(batch_size: object) -> None:
    state = state_of(10, 2, BOUNDARY_ROWS)
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        frame_replay.sample(state, batch_size, torch.Generator())  # type: ignore[arg-type]


# --- purity and in-place writes ------------------------------------------------------------


def test_add_writes_in_place_and_returns_a_new_state() -> None:
    state = frame_replay.init(5, example(), streams=2)
    state = frame_replay.add(state, entries([first(0, 10), first(1, 20)]))
    latest_before = state.latest.clone()
    new = frame_replay.add(state, entries([step(0, 11, 1, 0.5)]))

    for name in ("obs", "action", "reward", "terminated", "source"):
        assert getattr(new, name) is getattr(state, name), name
    assert new.obs[2].tolist() == [11.0, 11.0]
    assert state.source[2].item() == 0  # the shared storage: the old state sees the write
    # The old state's counters are its own: written is an int, latest must not move.
    assert state.written == 2
    assert state.latest.tolist() == latest_before.tolist() == [0, 1]
    assert (new.written, new.latest.tolist()) == (3, [2, 1])


def test_add_of_nothing_changes_nothing() -> None:
    state = state_of(5, 2, [first(0, 10), first(1, 20), step(0, 11, 1, 0.5)])
    before = snapshot(state)
    new = frame_replay.add(state, entries([]))
    assert_same_state(new, before)
    assert_same_state(state, before)


# --- errors --------------------------------------------------------------------------------


def test_a_transition_before_any_observation_raises_and_writes_nothing() -> None:
    state = frame_replay.init(5, example(), streams=2)
    before = snapshot(state)
    with pytest.raises(ValueError, match=r"entries\[0\] is a transition of stream 0"):
        frame_replay.add(state, entries([step(0, 1, 0, 1.0)]))
    assert_same_state(state, before)


def test_an_orphan_later_in_the_entries_raises_and_writes_nothing() -> None:
    state = state_of(6, 2, [first(0, 10), step(0, 11, 1, 0.5)])
    before = snapshot(state)
    # Valid rows for s0 come first; s1 has no observation yet at entries[2].
    with pytest.raises(ValueError, match=r"entries\[2\] is a transition of stream 1"):
        frame_replay.add(state, entries([step(0, 12, 0, 1.0), first(0, 13), step(1, 21, 0, 1.0)]))
    assert_same_state(state, before)
    assert state.written == 2
    # Nothing was lost: the valid rows go in afterwards. w2 steps s0 11 -> 12 (source w1),
    # w3 resets s0 to 13; capacity 6 keeps everything, so w1 (10 -> 11) and w2 are sampleable.
    state = frame_replay.add(state, entries([step(0, 12, 0, 1.0), first(0, 13)]))
    assert frame_replay.sampleable(state).tolist() == [1, 2]
    assert rows_of(frame_replay.gather(state, frame_replay.sampleable(state))) == [
        (10, 1, 0.5, 11, False),
        (11, 0, 1.0, 12, False),
    ]


def test_a_transition_before_its_streams_first_in_the_same_entries_raises() -> None:
    state = frame_replay.init(5, example(), streams=1)
    before = snapshot(state)
    with pytest.raises(ValueError, match=r"entries\[0\] is a transition of stream 0"):
        frame_replay.add(state, entries([step(0, 11, 0, 1.0), first(0, 10)]))
    assert_same_state(state, before)
    # The right order is accepted.
    state = frame_replay.add(state, entries([first(0, 10), step(0, 11, 0, 1.0)]))
    assert rows_of(frame_replay.gather(state, frame_replay.sampleable(state))) == [
        (10, 0, 1.0, 11, False)
    ]


@pytest.mark.parametrize("stream", [2, -1])
def test_a_stream_out_of_range_raises(stream: int) -> None:
    state = state_of(5, 2, [first(0, 10), first(1, 20)])
    before = snapshot(state)
    with pytest.raises(ValueError, match=r"entries\.stream must be in \[0, 2\)"):
        frame_replay.add(state, entries([first(stream, 30)]))
    assert_same_state(state, before)


BAD_FIELDS = {
    "obs-shape": ("obs", torch.zeros(1, 3), r"entries\.obs has shape \(1, 3\)"),
    "obs-rank": ("obs", torch.zeros(1, 2, 1), r"entries\.obs has shape \(1, 2, 1\)"),
    "scalar-stream": ("stream", torch.tensor(0), r"entries\.stream has shape \(\)"),
    "action-shape": ("action", torch.zeros(1, 1, dtype=torch.int64), r"entries\.action"),
    "float-action": ("action", torch.zeros(1), r"entries\.action has dtype torch\.float32"),
    "float-stream": ("stream", torch.zeros(1), r"entries\.stream has dtype torch\.float32"),
    "int-first": ("first", torch.ones(1, dtype=torch.int64), r"entries\.first has dtype"),
    "rows": ("reward", torch.zeros(2), "same leading dimension"),
    "rows-obs": ("obs", torch.zeros(3, 2), "same leading dimension"),
}


@pytest.mark.parametrize("case", BAD_FIELDS.values(), ids=BAD_FIELDS.keys())
def test_add_rejects_entries_that_do_not_fit(case: tuple[str, torch.Tensor, str]) -> None:
    name, value, message = case
    state = state_of(5, 2, [first(0, 10)])
    before = snapshot(state)
    with pytest.raises(ValueError, match=message):
        frame_replay.add(state, entries([first(1, 20)])._replace(**{name: value}))
    assert_same_state(state, before)


def test_add_rejects_float_obs_in_a_uint8_ring() -> None:
    state = frame_replay.init(5, example(FRAME), streams=1)
    before = snapshot(state)
    bad = entries([first(0, 10)], FRAME)._replace(obs=torch.zeros(1, 1, 2, 3))
    with pytest.raises(ValueError, match=r"entries\.obs has dtype torch\.float32.*torch\.uint8"):
        frame_replay.add(state, bad)
    assert_same_state(state, before)
    # The same frame as uint8 is accepted.
    assert frame_replay.add(state, entries([first(0, 10)], FRAME)).written == 1


def test_add_rejects_a_non_entry() -> None:
    state = frame_replay.init(5, example(), streams=1)
    with pytest.raises(ValueError, match="entries must be an Entry"):
        frame_replay.add(state, tuple(entries([first(0, 1)])))  # type: ignore[arg-type]


# --- properties against a plain model ------------------------------------------------------


@dataclass(frozen=True)
class Written:
    """One slot of the model: the row written and, for a transition, what really happened."""

    row: Row
    source: int  # write number of the stream's previous slot; NO_SOURCE for a first slot
    transition: Expected | None


@dataclass(frozen=True)
class Scenario:
    capacity: int
    streams: int
    kind: ObsKind
    slots: list[Written]  # every slot, in write order
    cuts: list[int]  # the add() calls: slots[cuts[i] : cuts[i + 1]]


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    """Streams of scripted episodes, as an environment loop would write them.

    Every stream resets first; then each step, every stream (in a drawn order) writes the
    observation it reached, and if the episode ended (terminated or truncated) its next reset
    observation. Observation ids count up from 1, so they are unique (and below 256 for uint8).
    """
    streams = draw(st.integers(1, 4), label="streams")
    capacity = draw(st.integers(streams + 1, 12), label="capacity")
    kind = draw(st.sampled_from([VECTOR, FRAME]), label="kind")
    n_steps = draw(st.integers(0, 30), label="steps")

    slots: list[Written] = []
    current_obs = [0] * streams  # each stream's current observation id
    current_write = [NO_SOURCE] * streams  # and the write number of its slot
    next_id = 1

    def write(row: Row, transition: Expected | None) -> None:
        source = NO_SOURCE if row.first else current_write[row.stream]
        slots.append(Written(row, source, transition))
        current_obs[row.stream] = row.obs
        current_write[row.stream] = len(slots) - 1

    for s in range(streams):
        write(first(s, next_id), None)
        next_id += 1
    for _ in range(n_steps):
        for s in draw(st.permutations(range(streams))):
            action = draw(st.integers(0, 5))
            reward = draw(st.floats(-8, 8, width=32, allow_subnormal=False))
            outcome = draw(st.sampled_from(["continue", "terminated", "truncated"]))
            terminated = outcome == "terminated"
            row = step(s, next_id, action, reward, terminated)
            write(row, (current_obs[s], action, reward, next_id, terminated))
            next_id += 1
            if outcome != "continue":
                write(first(s, next_id), None)
                next_id += 1
    assert next_id <= 256

    inner = draw(st.lists(st.integers(0, len(slots)), max_size=6), label="cuts")
    return Scenario(capacity, streams, kind, slots, [0, *sorted(inner), len(slots)])


def model_sampleable(slots: Sequence[Written], capacity: int) -> list[int]:
    """Write numbers of the sampleable transitions, oldest first: among the last ``capacity``
    slots, those whose obs slot (``source``) is also among the last ``capacity``."""
    kept = range(max(0, len(slots) - capacity), len(slots))
    return [n for n in kept if slots[n].transition is not None and slots[n].source in kept]


def run_scenario(scenario: Scenario, check_each_call: bool = True) -> FrameReplayState:
    capacity, kind, slots = scenario.capacity, scenario.kind, scenario.slots
    state = frame_replay.init(capacity, example(kind), streams=scenario.streams)
    for start, stop in itertools.pairwise(scenario.cuts):
        state = frame_replay.add(state, entries([w.row for w in slots[start:stop]], kind))
        if not check_each_call:
            continue
        done = slots[:stop]
        assert state.written == stop
        assert state.size == min(stop, capacity)
        assert state.cursor == stop % capacity
        latest = [
            max((n for n, w in enumerate(done) if w.row.stream == s), default=NO_SOURCE)
            for s in range(scenario.streams)
        ]
        assert state.latest.tolist() == latest
        for n in range(max(0, stop - capacity), stop):
            stored = observations([done[n].row.obs], kind)[0]
            assert torch.equal(state.obs[n % capacity], stored), n
            assert state.source[n % capacity].item() == done[n].source, n

        live = model_sampleable(done, capacity)
        index = frame_replay.sampleable(state)
        assert index.tolist() == [n % capacity for n in live]
        expected = [done[n].transition for n in live]
        assert_transitions_equal(
            frame_replay.gather(state, index),
            transitions([t for t in expected if t is not None], kind),
        )
    return state


@given(scenario=scenarios())
def test_add_sampleable_and_gather_match_the_model(scenario: Scenario) -> None:
    run_scenario(scenario)


@given(
    scenario=scenarios(),
    batch_size=st.integers(1, 32),
    seed=st.integers(0, 2**32 - 1),
)
def test_sample_draws_only_sampleable_transitions(
    scenario: Scenario, batch_size: int, seed: int
) -> None:
    state = run_scenario(scenario, check_each_call=False)
    live = model_sampleable(scenario.slots, scenario.capacity)
    if not live:
        with pytest.raises(ValueError, match="no transition to sample"):
            frame_replay.sample(state, batch_size, torch.Generator().manual_seed(seed))
        return
    allowed = {scenario.slots[n].transition for n in live}
    batch = frame_replay.sample(state, batch_size, torch.Generator().manual_seed(seed))
    again = frame_replay.sample(state, batch_size, torch.Generator().manual_seed(seed))
    assert_transitions_equal(batch, again)
    assert batch.obs.shape == (batch_size, *scenario.kind.shape)
    assert batch.obs.dtype == scenario.kind.dtype
    for row in rows_of(batch):
        assert row in allowed
