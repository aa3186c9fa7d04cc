"""frame_replay with stack=k: one frame per slot, stacks assembled at sample time.

Checked against a plain model of the episodes: a stack is the last k frames of its episode,
the episode's first frame repeated before it (as Gymnasium's FrameStackObservation pads a
reset), never a frame of the episode before; and a transition is sampleable exactly while every
frame its obs stack reads is still stored.
"""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from dqnkit.core import Transition, frame_replay, prioritized, sum_tree
from dqnkit.core.frame_replay import Entry

FRAME = (2, 3)  # a tiny "84x84"


def example(k: int) -> Transition:
    obs = torch.zeros((k, *FRAME), dtype=torch.uint8)
    return Transition(obs, torch.tensor(0), torch.tensor(0.0), obs.clone(), torch.tensor(False))


def frames(ids: list[int]) -> torch.Tensor:
    """``[len(ids), *FRAME]`` uint8, frame i filled with ids[i]."""
    return torch.tensor(ids, dtype=torch.uint8).view(-1, 1, 1).expand(-1, *FRAME).clone()


def entries(rows: list[tuple[int, int, bool]], stacks: torch.Tensor | None = None) -> Entry:
    """(stream, frame id, first) per slot; the frame id is also the action and the reward."""
    n = len(rows)
    ids = [f for _, f, _ in rows]
    return Entry(
        stream=torch.tensor([s for s, _, _ in rows], dtype=torch.int64),
        obs=frames(ids) if stacks is None else stacks,
        first=torch.tensor([first for _, _, first in rows], dtype=torch.bool),
        action=torch.tensor(ids, dtype=torch.int64),
        reward=torch.tensor(ids, dtype=torch.float32),
        terminated=torch.zeros(n, dtype=torch.bool),
    )


def ids_of(stacks: torch.Tensor) -> list[list[int]]:
    """Each stack's frame ids (every pixel of a frame holds its id)."""
    assert (stacks == stacks[..., :1, :1]).all()
    return stacks[..., 0, 0].tolist()


def test_stacks_golden_and_never_across_an_episode_start() -> None:
    state = frame_replay.init(10, example(3), stack=3)
    assert state.obs.shape == (10, *FRAME)  # one frame per slot
    # episode A: reset 10, steps 11, 12, 13; episode B: reset 20, step 21
    rows = [(0, 10, True), (0, 11, False), (0, 12, False), (0, 13, False)]
    rows += [(0, 20, True), (0, 21, False)]
    state = frame_replay.add(state, entries(rows))
    slots = torch.tensor([1, 2, 3, 5])
    batch = frame_replay.gather(state, slots)
    assert ids_of(batch.obs) == [[10, 10, 10], [10, 10, 11], [10, 11, 12], [20, 20, 20]]
    assert ids_of(batch.next_obs) == [[10, 10, 11], [10, 11, 12], [11, 12, 13], [20, 20, 21]]
    assert batch.action.tolist() == [11, 12, 13, 21]
    assert batch.obs.shape == (4, 3, *FRAME)
    assert sorted(frame_replay.sampleable(state).tolist()) == [1, 2, 3, 5]
    drawn = frame_replay.sample(state, 50, torch.Generator().manual_seed(0))
    assert set(drawn.action.tolist()) == {11, 12, 13, 21}


def test_stacks_across_the_rings_wraparound_golden() -> None:
    # 6 slots, stacks of 3, one long episode: reset 0, steps 1..8 fill slots 0..5, then wrap.
    state = frame_replay.init(6, example(3), stack=3)
    state = frame_replay.add(state, entries([(0, 0, True)] + [(0, i, False) for i in range(1, 9)]))
    # writes 3..8 are stored (slots 3, 4, 5, 0, 1, 2). The obs stack of write n reads writes
    # n-3..n-1, so only writes 6, 7, 8 (slots 0, 1, 2) still have theirs.
    assert sorted(frame_replay.sampleable(state).tolist()) == [0, 1, 2]
    batch = frame_replay.gather(state, torch.tensor([0, 1, 2]))
    assert ids_of(batch.obs) == [[3, 4, 5], [4, 5, 6], [5, 6, 7]]
    assert ids_of(batch.next_obs) == [[4, 5, 6], [5, 6, 7], [6, 7, 8]]
    for _ in range(3):
        drawn = frame_replay.sample(state, 20, torch.Generator().manual_seed(1))
        assert set(drawn.action.tolist()) <= {6, 7, 8}


def test_stacked_observations_and_new_frames_store_the_same() -> None:
    rows = [(0, 1, True), (0, 2, False), (0, 3, False)]
    # What FrameStackObservation(k=2) gives: [1, 1], [1, 2], [2, 3].
    stacks = torch.stack([frames([1, 1]), frames([1, 2]), frames([2, 3])])
    a = frame_replay.add(frame_replay.init(5, example(2), stack=2), entries(rows))
    b = frame_replay.add(frame_replay.init(5, example(2), stack=2), entries(rows, stacks))
    assert torch.equal(a.obs[:3], b.obs[:3])
    assert ids_of(frame_replay.gather(b, torch.tensor([2])).obs) == [[1, 2]]
    with pytest.raises(ValueError, match="stacks of 3 frames, expected 2"):
        frame_replay.add(
            frame_replay.init(5, example(2), stack=2),
            entries(rows, torch.zeros((3, 3, *FRAME), dtype=torch.uint8)),
        )


def test_init_checks_the_stack() -> None:
    with pytest.raises(ValueError, match=r"stack \[4, \*frame\]"):
        frame_replay.init(5, example(3), stack=4)
    with pytest.raises(ValueError, match="stack must be a positive int"):
        frame_replay.init(5, example(3), stack=0)
    assert frame_replay.init(5, example(3)).stack == 1  # unchanged default: whole observations
    assert frame_replay.init(5, example(3)).obs.shape == (5, 3, *FRAME)


# --- against a plain model -----------------------------------------------------------------


@st.composite
def scripts(draw):
    k = draw(st.integers(1, 4))
    streams = draw(st.integers(1, 3))
    capacity = draw(st.integers(streams + 1, 14))
    batches, started, frame_id = [], set(), 0
    for _ in range(draw(st.integers(1, 8))):
        batch = []
        for _ in range(draw(st.integers(0, 6))):
            stream = draw(st.integers(0, streams - 1))
            is_first = stream not in started or draw(st.integers(0, 4)) == 0
            started.add(stream)
            batch.append((stream, frame_id % 256, is_first))
            frame_id += 1
        batches.append(batch)
    return k, streams, capacity, batches


def model_stacks(writes, n, k):
    """For write n (a transition): its obs and next_obs stacks' ids and the writes it reads."""
    stream = writes[n][0]
    episode: list[int] = []  # write numbers of n's episode up to n, oldest first
    m = n
    while True:
        episode.insert(0, m)
        if writes[m][2]:  # a first slot: the episode's start
            break
        m = max(j for j in range(m) if writes[j][0] == stream)

    def last_k(numbers):
        padded = [numbers[0]] * k + numbers
        return padded[-k:]

    obs, next_obs = last_k(episode[:-1]), last_k(episode)
    return [writes[j][1] for j in obs], [writes[j][1] for j in next_obs], obs


@given(scripts())
def test_stacks_and_sampleable_slots_match_a_model(case):
    k, streams, capacity, batches = case
    state = frame_replay.init(capacity, example(k), streams=streams, stack=k)
    pstate = prioritized.init(frame_replay.init(capacity, example(k), streams=streams, stack=k))
    writes: list[tuple[int, int, bool]] = []
    for batch in batches:
        # stack=1 stores whole observations [1, *FRAME]; stack=k > 1 one frame per slot
        new = entries(batch)
        if k == 1:
            new = new._replace(obs=new.obs[:, None])
        state = frame_replay.add(state, new)
        pstate = prioritized.add(pstate, new)
        writes += batch
        oldest = max(0, len(writes) - capacity)
        expected = {}
        for n in range(oldest, len(writes)):
            if writes[n][2]:
                continue
            obs, next_obs, read = model_stacks(writes, n, k)
            if min(read) >= oldest:
                expected[n % capacity] = (obs, next_obs)
        assert set(frame_replay.sampleable(state).tolist()) == set(expected)
        positive = {i for i, p in enumerate(sum_tree.priorities(pstate.tree).tolist()) if p > 0}
        assert positive == set(expected)
        if expected:
            slots = torch.tensor(sorted(expected))
            got = frame_replay.gather(state, slots)
            want_obs = [expected[s][0] for s in sorted(expected)]
            want_next = [expected[s][1] for s in sorted(expected)]
            if k == 1:
                assert got.obs[:, 0, 0, 0].tolist() == [o[0] for o in want_obs]
                assert got.next_obs[:, 0, 0, 0].tolist() == [o[0] for o in want_next]
            else:
                assert ids_of(got.obs) == want_obs
                assert ids_of(got.next_obs) == want_next
            drawn = frame_replay.sample(state, 16, torch.Generator().manual_seed(len(writes)))
            assert set(drawn.action.tolist()) <= {writes[n][1] for n in range(len(writes))}
