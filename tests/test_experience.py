"""A run's replay memory: image steps go through the frame-sharing buffer and come out whole."""

import numpy as np
import pytest
import torch

from dqnkit.adapters.experience import (
    FrameMemory,
    PrioritizedMemory,
    TransitionMemory,
    create_memory,
    example_row,
    restore_memory,
)
from dqnkit.core import frame_replay


def test_vector_observations_use_the_plain_buffer_and_images_the_frame_sharing_one() -> None:
    cpu = torch.device("cpu")
    plain = create_memory(10, example_row((4,), torch.float32), 2, cpu)
    frames = create_memory(10, example_row((1, 2, 3), torch.uint8), 2, cpu)
    assert isinstance(plain, TransitionMemory)
    assert isinstance(frames, FrameMemory)
    assert frames.state.streams == 2


def test_frames_come_back_as_the_transitions_the_loop_recorded() -> None:
    """Two environments driven the way adapters/train.py drives them: start, then per step
    ``add`` for all and ``start`` for those whose episode ended, sampled at odd moments (which
    writes what is staged). Env 0 terminates at its 3rd step; env 1 is truncated at its 2nd and
    4th."""
    memory = create_memory(100, example_row((1, 2, 3), torch.uint8), 2, torch.device("cpu"))
    assert isinstance(memory, FrameMemory)
    made = 0

    def frames(n: int) -> np.ndarray:
        nonlocal made
        ids = np.arange(made, made + n, dtype=np.uint8)
        made += n
        return np.broadcast_to(ids[:, None, None, None], (n, 1, 2, 3)).copy()

    obs = frames(2)
    memory.start(np.arange(2), obs)
    ends = {2: ([0], [True]), 1: ([1], [False]), 3: ([1], [False])}  # step -> (envs, terminated)
    expected: list[tuple[int, int, float, int, bool]] = []
    for t in range(5):
        action = np.array([t % 2, 1 - t % 2], dtype=np.int64)
        reward = np.array([t, 10 + t], dtype=np.float64)  # float64, as gymnasium returns it
        next_obs = frames(2)
        done_envs, terminal = ends.get(t, ([], []))
        terminated = np.zeros(2, dtype=np.bool_)
        terminated[done_envs] = terminal
        memory.add(obs, action, reward, next_obs, terminated)
        for i in range(2):
            expected.append(
                (obs[i, 0, 0, 0], action[i], reward[i], next_obs[i, 0, 0, 0], terminated[i])
            )
        obs = next_obs.copy()
        if done_envs:
            obs[done_envs] = frames(len(done_envs))
            memory.start(np.array(done_envs), obs[done_envs])
        if t in (1, 2):
            memory.sample(4, torch.Generator().manual_seed(t))
    assert memory.written() == made == 15
    memory.checkpoint()  # writes the rest

    # 2 first frames + 10 steps + 3 resets, every frame once.
    assert memory.state.written == made == 15
    batch = frame_replay.gather(memory.state, frame_replay.sampleable(memory.state))
    got = [
        (int(o[0, 0, 0]), int(a), float(r), int(n[0, 0, 0]), bool(d))
        for o, a, r, n, d in zip(
            batch.obs, batch.action, batch.reward, batch.next_obs, batch.terminated, strict=True
        )
    ]
    assert got == [(int(o), int(a), float(r), int(n), bool(d)) for o, a, r, n, d in expected]
    # Truncation keeps the real final frame: env 1's step 1 ends in frame 5, and its next
    # episode starts from the reset frame 6 (frames 0-1 first, 2-3 step 0, 4-5 step 1, 6 reset).
    assert got[3] == (3, 0, 11.0, 5, False)
    assert got[5][0] == 6


def test_the_plain_buffer_records_whole_rows() -> None:
    memory = create_memory(4, example_row((2,), torch.float32), 2, torch.device("cpu"))
    assert isinstance(memory, TransitionMemory)
    obs = np.array([[0, 0], [1, 1]], dtype=np.float32)
    memory.start(np.arange(2), obs)  # nothing to record: rows carry their own obs
    memory.add(obs, np.array([1, 0]), np.array([0.5, 1.5]), obs + 2, np.array([False, True]))
    # Sampling sees the staged step without any flush by the caller.
    batch = memory.sample(64, torch.Generator().manual_seed(0)).batch
    assert sorted(set(batch.reward.tolist())) == [0.5, 1.5]
    assert memory.state.size == 2
    stored = memory.state.storage
    assert stored.obs[:2].tolist() == [[0, 0], [1, 1]]
    assert stored.next_obs[:2].tolist() == [[2, 2], [3, 3]]
    assert stored.reward[:2].tolist() == [0.5, 1.5]
    assert stored.terminated[:2].tolist() == [False, True]


def filled(steps: int) -> TransitionMemory:
    memory = create_memory(5, example_row((2,), torch.float32), 1, torch.device("cpu"))
    assert isinstance(memory, TransitionMemory)
    for t in range(steps):
        obs = np.full((1, 2), t, dtype=np.float32)
        memory.add(obs, np.array([t % 2]), np.array([float(t)]), obs + 1, np.array([t % 3 == 0]))
    return memory


@pytest.mark.parametrize("steps", [3, 5, 7])  # below, at and past capacity
def test_a_checkpoint_restores_the_same_memory(steps: int) -> None:
    memory = filled(steps)
    tensors, meta = memory.checkpoint()
    again = restore_memory(meta, tensors, example_row((2,), torch.float32), 1, torch.device("cpu"))
    assert again.written() == memory.written() == steps
    a = memory.sample(16, torch.Generator().manual_seed(1)).batch
    b = again.sample(16, torch.Generator().manual_seed(1)).batch
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t, m: m.update(size=4), "counters disagree"),
        (lambda t, m: m.update(cursor=0), "counters disagree"),
        (lambda t, m: m.update(kind="prioritised"), "replay kind 'prioritised'"),
        (lambda t, m: t.update(reward=t["reward"][:-1]), "replay reward is"),
        (lambda t, m: t.update(action=t["action"].float()), "replay action is"),
        (lambda t, m: t.pop("terminated"), "replay tensors"),
        (lambda t, m: t["obs"].__setitem__(0, float("nan")), "non-finite"),
    ],
)
def test_a_damaged_replay_is_refused(change: object, message: str) -> None:
    tensors, meta = filled(7).checkpoint()
    tensors = {k: v.clone() for k, v in tensors.items()}
    change(tensors, meta)  # type: ignore[operator]
    with pytest.raises(ValueError, match=message):
        restore_memory(meta, tensors, example_row((2,), torch.float32), 1, torch.device("cpu"))


PRIORITIES = {"alpha": 0.6, "beta": 0.4, "eps": 1e-6}


def test_a_prioritized_memory_samples_by_priority_and_round_trips() -> None:
    example = example_row((2,), torch.float32)
    memory = create_memory(8, example, 1, torch.device("cpu"), priorities=PRIORITIES)
    assert isinstance(memory, PrioritizedMemory)
    for t in range(6):
        obs = np.full((1, 2), t, dtype=np.float32)
        memory.add(obs, np.array([0]), np.array([float(t)]), obs + 1, np.array([False]))
    sample = memory.sample(4, torch.Generator().manual_seed(0), progress=0.0)
    assert sample.indices is not None
    assert sample.weights is not None
    assert sample.indices.shape == sample.weights.shape == (4,)
    # Give slot 5 a huge TD error and the others none: it is drawn almost always after.
    memory.update_priorities(torch.arange(6), torch.tensor([0.0] * 5 + [1e6]))
    drawn = memory.sample(64, torch.Generator().manual_seed(1), progress=1.0)
    assert drawn.indices is not None
    assert drawn.weights is not None
    assert (drawn.indices == 5).sum() >= 60
    assert torch.equal(
        drawn.batch.reward[drawn.indices == 5],
        torch.full_like(drawn.batch.reward[drawn.indices == 5], 5.0),
    )
    tensors, meta = memory.checkpoint()
    assert meta["kind"] == "prioritized"
    assert "priority_tree" in tensors
    again = restore_memory(meta, tensors, example, 1, torch.device("cpu"), priorities=PRIORITIES)
    assert isinstance(again, PrioritizedMemory)
    a = memory.sample(16, torch.Generator().manual_seed(2), progress=0.5)
    b = again.sample(16, torch.Generator().manual_seed(2), progress=0.5)
    assert a.indices is not None
    assert b.indices is not None
    assert torch.equal(a.indices, b.indices)
    assert a.weights is not None
    assert b.weights is not None
    assert torch.equal(a.weights, b.weights)
    with pytest.raises(ValueError, match="where the run's settings give uniform replay"):
        restore_memory(meta, tensors, example, 1, torch.device("cpu"))
    plain_tensors, plain_meta = filled(3).checkpoint()
    with pytest.raises(ValueError, match="where the run's settings give prioritized replay"):
        restore_memory(
            plain_meta, plain_tensors, example, 1, torch.device("cpu"), priorities=PRIORITIES
        )
