"""A run's replay memory: image steps go through the frame-sharing buffer and come out whole."""

import numpy as np
import torch

from dqnkit.adapters.experience import Experience, example_row
from dqnkit.core import FrameReplayState, ReplayState, frame_replay


def test_vector_observations_use_the_plain_buffer_and_images_the_frame_sharing_one() -> None:
    cpu = torch.device("cpu")
    plain = Experience.create(10, example_row((4,), torch.float32), 2, cpu)
    frames = Experience.create(10, example_row((1, 2, 3), torch.uint8), 2, cpu)
    assert isinstance(plain.state, ReplayState)
    assert isinstance(frames.state, FrameReplayState)
    assert frames.state.streams == 2


def test_frames_come_back_as_the_transitions_the_loop_recorded() -> None:
    """Two environments driven the way adapters/train.py drives them: start, then per step
    ``step`` for all and ``start`` for those whose episode ended, flushed at odd moments. Env 0
    terminates at its 3rd step; env 1 is truncated at its 2nd and 4th."""
    memory = Experience.create(100, example_row((1, 2, 3), torch.uint8), 2, torch.device("cpu"))
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
        memory.step(obs, action, reward, next_obs, terminated)
        for i in range(2):
            expected.append(
                (obs[i, 0, 0, 0], action[i], reward[i], next_obs[i, 0, 0, 0], terminated[i])
            )
        obs = next_obs.copy()
        if done_envs:
            obs[done_envs] = frames(len(done_envs))
            memory.start(np.array(done_envs), obs[done_envs])
        if t in (1, 2):
            memory.flush()
    memory.flush()

    assert isinstance(memory.state, FrameReplayState)
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
    memory = Experience.create(4, example_row((2,), torch.float32), 2, torch.device("cpu"))
    obs = np.array([[0, 0], [1, 1]], dtype=np.float32)
    memory.start(np.arange(2), obs)  # nothing to record: rows carry their own obs
    memory.step(obs, np.array([1, 0]), np.array([0.5, 1.5]), obs + 2, np.array([False, True]))
    memory.flush()
    assert isinstance(memory.state, ReplayState)
    assert memory.state.size == 2
    stored = memory.state.storage
    assert stored.obs[:2].tolist() == [[0, 0], [1, 1]]
    assert stored.next_obs[:2].tolist() == [[2, 2], [3, 3]]
    assert stored.reward[:2].tolist() == [0.5, 1.5]
    assert stored.terminated[:2].tolist() == [False, True]
