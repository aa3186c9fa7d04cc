"""n-step transitions from the frame ring: windows walked forward through ``successor``.

The core's :func:`frame_replay.n_step_window` against hand-worked slots and against the plain
model of :mod:`tests.test_frame_replay`; the memory's n-step rows (:class:`FrameMemory` with
``n_step``) against the formula worked out by hand, uniform and prioritized, with and without
reward clipping; a checkpoint's rebuilt successors; a short pixel run that resumes exactly.
"""

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from safetensors.torch import load_file

from dqnkit.adapters.config import config_for
from dqnkit.adapters.experience import (
    FrameMemory,
    Memory,
    PrioritizedMemory,
    create_memory,
    example_row,
    restore_memory,
)
from dqnkit.adapters.training import train
from dqnkit.core import frame_replay
from tests.runs import rewind_to_first_checkpoint
from tests.test_frame_replay import (
    NO_SOURCE,
    Scenario,
    entries,
    first,
    run_scenario,
    scenarios,
    state_of,
    step,
)

CPU = torch.device("cpu")

# One stream: an episode that terminates after 3 steps, one truncated after 2, then an open one.
#   write:  0   1   2   3    4    5   6   7    8   9  10
#   slot:   f0  s1  s2  s3T  f4   s5  s6  f7   s8 s9 s10
ROWS = [
    first(0, 100),
    step(0, 101, 1, 1.0),
    step(0, 102, 2, 2.0),
    step(0, 103, 3, 4.0, terminated=True),
    first(0, 104),
    step(0, 105, 1, 8.0),
    step(0, 106, 2, 16.0),  # truncated: the stream's next slot is a first one
    first(0, 107),
    step(0, 108, 0, 32.0),
    step(0, 109, 1, 64.0),
    step(0, 110, 2, 128.0),  # the stream's newest slot
]


def test_windows_by_hand() -> None:
    state = state_of(16, 1, ROWS)
    index = torch.tensor([1, 2, 3, 5, 6, 8, 9, 10])
    slots, mask = frame_replay.n_step_window(state, index, 3)
    assert slots.tolist() == [
        [1, 2, 3],  # a full window ending at the terminal step
        [2, 3, 3],  # cut after the terminal step
        [3, 3, 3],
        [5, 6, 6],  # cut at the truncation (slot 7 is the next episode's first)
        [6, 6, 6],
        [8, 9, 10],
        [9, 10, 10],  # cut at the stream's newest slot
        [10, 10, 10],
    ]
    assert mask.tolist() == [
        [True, True, True],
        [True, True, False],
        [True, False, False],
        [True, True, False],
        [True, False, False],
        [True, True, True],
        [True, True, False],
        [True, False, False],
    ]
    one, one_mask = frame_replay.n_step_window(state, index, 1)
    assert one.tolist() == [[i] for i in index.tolist()]
    assert bool(one_mask.all())


def test_a_window_stops_at_a_terminal_step_that_the_game_goes_on_from() -> None:
    # --terminal-on-life-loss: the life-losing step is terminal in replay, but the game goes
    # on without a reset, so the next step's obs slot is the terminal one.
    rows = [first(0, 1), step(0, 2, 0, 1.0), step(0, 3, 0, 1.0, terminated=True)]
    rows += [step(0, 4, 0, 1.0), step(0, 5, 0, 1.0)]
    state = state_of(16, 1, rows)
    assert state.successor[2].item() == 3  # linked: the game went on
    slots, mask = frame_replay.n_step_window(state, torch.tensor([1, 2, 3]), 3)
    assert slots.tolist() == [[1, 2, 2], [2, 2, 2], [3, 4, 4]]
    assert mask.tolist() == [[True, True, False], [True, False, False], [True, True, False]]


def test_windows_follow_their_own_stream_when_streams_interleave() -> None:
    rows = [first(0, 1), first(1, 2)]
    rows += [step(0, 3, 0, 1.0), step(1, 4, 0, 10.0), step(1, 5, 0, 20.0), step(0, 6, 0, 2.0)]
    rows += [step(1, 7, 0, 30.0), step(0, 8, 0, 3.0)]
    state = state_of(16, 2, rows)
    slots, mask = frame_replay.n_step_window(state, torch.tensor([2, 3]), 3)
    assert slots.tolist() == [[2, 5, 7], [3, 4, 6]]
    assert bool(mask.all())


def test_a_new_step_links_its_obs_slot_and_an_overwrite_unlinks_it() -> None:
    state = state_of(4, 1, [first(0, 1), step(0, 2, 0, 0.0)])
    assert state.successor.tolist()[:2] == [1, NO_SOURCE]
    state = frame_replay.add(state, entries([step(0, 3, 0, 0.0)]))
    assert state.successor.tolist()[:3] == [1, 2, NO_SOURCE]
    # Writes 3 and 4 go to slots 3 and 0: slot 0 now holds write 4, the newest, with no successor.
    state = frame_replay.add(state, entries([step(0, 4, 0, 0.0), step(0, 5, 0, 0.0)]))
    assert state.successor.tolist() == [NO_SOURCE, 2, 3, 4]


def model_window(scenario: Scenario, number: int, n: int) -> list[int]:
    """Write numbers of the window beginning with transition ``number``: the same stream's
    following transitions, up to ``n``, stopping after a terminated step and wherever the
    stream has no next transition (an episode's end, or its newest slot)."""
    slots = scenario.slots
    window = [number]
    while len(window) < n and not slots[window[-1]].row.terminated:
        following = [k for k, w in enumerate(slots) if w.source == window[-1]]
        if not following:
            break
        window.append(following[0])
    return window


@given(scenario=scenarios(), n=st.integers(1, 5))
def test_windows_match_the_model_and_successors_rebuild_exactly(scenario: Scenario, n: int) -> None:
    state = run_scenario(scenario, check_each_call=False)
    index = frame_replay.sampleable(state)
    slots, mask = frame_replay.n_step_window(state, index, n)
    capacity, written = scenario.capacity, len(scenario.slots)
    for row, slot in enumerate(index.tolist()):
        number = written - 1 - (written - 1 - slot) % capacity
        window = model_window(scenario, number, n)
        got = [s for s, m in zip(slots[row].tolist(), mask[row].tolist(), strict=True) if m]
        assert got == [k % capacity for k in window], (number, window)
        assert mask[row].tolist() == [k < len(window) for k in range(n)]
        streams = {scenario.slots[k].row.stream for k in window}
        assert len(streams) == 1
    rebuilt = frame_replay.link_successors(state._replace(successor=state.successor.clone()))
    kept = torch.arange(state.size)
    assert torch.equal(rebuilt.successor[kept], state.successor[kept])


# --- the memory's n-step rows ---------------------------------------------------------------


def frame_memory(n: int, gamma: float, *, clip: bool = False, prioritized: bool = False) -> Memory:
    example = example_row((1, 2, 2), torch.uint8)
    options = {"alpha": 0.6, "beta": 0.4, "eps": 1e-6} if prioritized else None
    return create_memory(32, example, 1, CPU, priorities=options, n_step=(n, gamma),
                         clip_rewards=clip)  # fmt: skip


def play(memory: Memory, rows: list[tuple[int, float, bool, bool]]) -> None:
    """Feeds one stream: each row (obs id, reward, terminated, truncated) is one step."""
    frame = lambda i: np.full((1, 1, 2, 2), i, dtype=np.uint8)  # noqa: E731
    memory.start(np.array([0]), frame(0))
    current = 0
    for obs, reward, terminated, truncated in rows:
        memory.add(frame(current), np.array([obs % 3]), np.array([reward]), frame(obs),
                   np.array([terminated]))  # fmt: skip
        current = obs
        if terminated or truncated:
            current = obs + 100
            memory.start(np.array([0]), frame(current))


EPISODES = [(1, 1.0, False, False), (2, -3.0, False, False), (3, 0.5, True, False)]
EPISODES += [(4, 2.0, False, False), (5, 4.0, False, True), (6, 1.0, False, False)]
EPISODES += [(7, 2.0, False, False)]


@pytest.mark.parametrize("prioritized", [False, True])
@pytest.mark.parametrize("clip", [False, True])
def test_memory_rows_by_hand(clip: bool, prioritized: bool) -> None:
    memory = frame_memory(2, 0.5, clip=clip, prioritized=prioritized)
    play(memory, EPISODES)
    sample = memory.sample(256, torch.Generator().manual_seed(0), 0.0)
    assert sample.discount is not None
    assert (sample.indices is not None) == prioritized
    r = (lambda x: float(np.sign(x))) if clip else (lambda x: x)
    # obs id -> (reward, next_obs id, terminated, discount), with gamma 0.5 and n = 2.
    expected = {
        0: (r(1.0) + 0.5 * r(-3.0), 2, False, 0.25),
        1: (r(-3.0) + 0.5 * r(0.5), 3, True, 0.0),
        2: (r(0.5), 3, True, 0.0),
        103: (r(2.0) + 0.5 * r(4.0), 5, False, 0.25),
        4: (r(4.0), 5, False, 0.5),  # truncated: bootstraps from 5 after one step
        105: (r(1.0) + 0.5 * r(2.0), 7, False, 0.25),
        6: (r(2.0), 7, False, 0.5),  # the newest step: cut there
    }
    seen = set()
    for i in range(256):
        obs = int(sample.batch.obs[i, 0, 0, 0])
        got = (
            float(sample.batch.reward[i]),
            int(sample.batch.next_obs[i, 0, 0, 0]),
            bool(sample.batch.terminated[i]),
            float(sample.discount[i]),
        )
        assert got == pytest.approx(expected[obs]), obs
        seen.add(obs)
    assert seen == set(expected)


def test_a_checkpoint_restores_the_windows_for_any_n() -> None:
    memory = frame_memory(3, 0.9, prioritized=True)
    play(memory, EPISODES)
    tensors, meta = memory.checkpoint()
    assert "successor" not in tensors  # derived from source, not saved
    example = example_row((1, 2, 2), torch.uint8)
    options = {"alpha": 0.6, "beta": 0.4, "eps": 1e-6}
    again = restore_memory(meta, tensors, example, 1, CPU, priorities=options, n_step=(3, 0.9))
    assert isinstance(again, PrioritizedMemory)
    assert isinstance(again.inner, FrameMemory)
    assert again.inner.n_step == (3, 0.9)
    assert isinstance(memory, PrioritizedMemory)
    assert isinstance(memory.inner, FrameMemory)
    assert torch.equal(again.inner.state.successor, memory.inner.state.successor)
    a = memory.sample(64, torch.Generator().manual_seed(3), 0.5)
    b = again.sample(64, torch.Generator().manual_seed(3), 0.5)
    assert all(torch.equal(x, y) for x, y in zip(a.batch, b.batch, strict=True))
    assert a.discount is not None
    assert b.discount is not None
    assert torch.equal(a.discount, b.discount)


@pytest.mark.slow
def test_pixel_training_with_n_step_resumes_exactly(tmp_path: Path) -> None:
    config = config_for(
        "CartPole-v1", pixels=True, n_step=3, prioritized=True, total_steps=240,
        learning_starts=60, train_every=4, batch_size=16, num_envs=2, buffer_size=100,
        checkpoint_every=120, final_eval_episodes=1, eval_every=0, out=str(tmp_path),
    )  # fmt: skip
    straight = train(config, quiet=True).run_dir
    copy = rewind_to_first_checkpoint(straight, tmp_path / "copy")
    train(config, resume=copy, quiet=True)
    a = load_file(straight / "policy.safetensors")
    b = load_file(copy / "policy.safetensors")
    assert all(a[k].equal(b[k]) for k in a)


def test_stacked_frames_bootstrap_from_the_stack_after_the_window() -> None:
    """Atari's layout (one frame per slot, stacks assembled at sample time), stack of 2, n = 2:
    the row from stack (t-1, t) bootstraps from stack (t+1, t+2), never across the reset."""
    example = example_row((2, 2, 2), torch.uint8)
    memory = create_memory(32, example, 1, CPU, stack=2, n_step=(2, 1.0))

    def stack(a: int, b: int) -> np.ndarray:
        return np.stack([np.full((2, 2), a), np.full((2, 2), b)]).astype(np.uint8)[None]

    memory.start(np.array([0]), stack(1, 1))
    frames = [1]
    for t, frame in enumerate([2, 3, 4, 5]):
        terminated = t == 3
        memory.add(stack(*frames[-2:]) if len(frames) > 1 else stack(1, 1), np.array([0]),
                   np.array([1.0]), stack(frames[-1], frame), np.array([terminated]))  # fmt: skip
        frames.append(frame)
    memory.start(np.array([0]), stack(9, 9))
    sample = memory.sample(128, torch.Generator().manual_seed(0), 0.0)
    rows = {}
    for i in range(128):
        obs = tuple(int(f) for f in sample.batch.obs[i, :, 0, 0])
        nxt = tuple(int(f) for f in sample.batch.next_obs[i, :, 0, 0])
        rows[obs] = (nxt, float(sample.batch.reward[i]), bool(sample.batch.terminated[i]))
    assert rows == {
        (1, 1): ((2, 3), 2.0, False),
        (1, 2): ((3, 4), 2.0, False),
        (2, 3): ((4, 5), 2.0, True),
        (3, 4): ((4, 5), 1.0, True),
    }


def test_an_n_step_frame_run_refuses_a_checkpoint_of_whole_rows() -> None:
    rows = create_memory(8, example_row((2,), torch.float32), 1, CPU)
    tensors, meta = rows.checkpoint()
    with pytest.raises(ValueError, match="replay obs is"):
        restore_memory(meta, tensors, example_row((1, 2, 2), torch.uint8), 1, CPU, n_step=(3, 0.9))
