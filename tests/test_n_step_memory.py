"""The n-step memory: windows worked out by hand, and a plain model of episodes per stream."""

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file

from dqnkit.adapters import TrainConfig, train
from dqnkit.adapters.experience import (
    NStepMemory,
    PrioritizedMemory,
    TransitionMemory,
    create_memory,
    example_row,
    restore_memory,
)

CPU = torch.device("cpu")
EXAMPLE = example_row((2,), torch.float32)


def n_step_memory(n: int, gamma: float, streams: int, **options: Any) -> NStepMemory:
    memory = create_memory(1_000, EXAMPLE, streams, CPU, n_step=(n, gamma), **options)
    assert isinstance(memory, NStepMemory)
    return memory


def stored(memory: NStepMemory) -> dict[str, list[Any]]:
    tensors, _ = memory.checkpoint()
    return {
        name: tensors[name].tolist()
        for name in ("obs", "reward", "next_obs", "terminated", "discount")
    }


def obs(*values: float) -> np.ndarray:
    """One observation per stream, ``[value, value]``."""
    return np.array([[v, v] for v in values], dtype=np.float32)


def step(
    memory: NStepMemory,
    before: list[float],
    rewards: list[float],
    after: list[float],
    terminated: list[bool],
    ended: list[int],
    reset: list[float],
) -> None:
    """One loop step: add every stream's step, then start the streams whose episode ended."""
    n = len(before)
    memory.add(
        obs(*before),
        np.zeros(n, dtype=np.int64),
        np.array(rewards),
        obs(*after),
        np.array(terminated),
    )
    if ended:
        memory.start(np.array(ended), obs(*reset))


def test_windows_by_hand_with_a_termination_and_a_truncation() -> None:
    """n = 3, gamma = 0.5, two streams. Stream 0: rewards 1, 2, 4, 8, terminated on the 4th
    step. Stream 1: rewards 1, 1, truncated on the 2nd step, then 2, 3, 5 of a new episode."""
    memory = n_step_memory(3, 0.5, streams=2)
    step(memory, [0, 100], [1, 1], [1, 101], [False, False], [], [])
    assert memory.written() == 2
    assert stored(memory)["reward"] == []
    # Stream 1 is cut by a time limit: both open windows bootstrap from its final obs 102.
    step(memory, [1, 101], [2, 1], [2, 102], [False, False], [1], [200])
    # Stream 0's first window is complete: 1 + 0.5 * 2 + 0.25 * 4 = 3, discount 0.5 ** 3.
    step(memory, [2, 200], [4, 2], [3, 201], [False, False], [], [])
    # Stream 0 terminates: its three open windows end at the terminal step, discount 0.
    step(memory, [3, 201], [8, 3], [4, 202], [True, False], [0], [300])
    # Stream 1's new episode completes a window: 2 + 0.5 * 3 + 0.25 * 5 = 4.75.
    step(memory, [300, 202], [1, 5], [301, 203], [False, False], [], [])
    rows = stored(memory)
    assert [o[0] for o in rows["obs"]] == [100, 101, 0, 1, 2, 3, 200]
    assert rows["reward"] == [1.5, 1.0, 3.0, 6.0, 8.0, 8.0, 4.75]
    assert [o[0] for o in rows["next_obs"]] == [102, 102, 3, 4, 4, 4, 203]
    assert rows["terminated"] == [False, False, False, True, True, True, False]
    assert rows["discount"] == [0.25, 0.5, 0.125, 0.0, 0.0, 0.0, 0.125]
    # Every step given is a row or waits in an open window (stream 0: 1, stream 1: 2).
    assert memory.written() == 10
    assert memory.count.tolist() == [1, 2]


def test_a_sample_carries_each_rows_discount() -> None:
    memory = n_step_memory(2, 0.9, streams=1)
    step(memory, [0], [1], [1], [False], [], [])
    step(memory, [1], [1], [2], [False], [0], [10])  # truncated: windows of 2 and 1 steps
    sample = memory.sample(64, torch.Generator().manual_seed(0))
    assert sample.discount is not None
    by_obs = {
        o[0]: d for o, d in zip(sample.batch.obs.tolist(), sample.discount.tolist(), strict=True)
    }
    assert by_obs == {0.0: pytest.approx(0.81), 1.0: pytest.approx(0.9)}


def reference_rows(
    episodes: list[list[tuple[float, bool]]], n: int, gamma: float, finished: list[bool]
) -> list[tuple[float, float, bool, float]]:
    """(start step id, return, terminated, discount) for every window a plain reading of n-step
    DQN stores: all windows of finished episodes, and complete ones of the running one."""
    rows = []
    for episode, done in zip(episodes, finished, strict=True):
        terminal = done and episode[-1][1]
        for t in range(len(episode)):
            window = episode[t : t + n]
            if len(window) < n and not done:
                continue  # still open
            ret = sum(gamma**k * r for k, (r, _) in enumerate(window))
            ends = terminal and t + n >= len(episode)
            rows.append((float(t), ret, ends, 0.0 if ends else gamma ** len(window)))
    return rows


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(2, 4),
    gamma=st.sampled_from([0.0, 0.5, 0.99, 1.0]),
    streams=st.integers(1, 3),
    events=st.lists(
        st.tuples(st.integers(-3, 3), st.sampled_from(["go", "go", "go", "term", "trunc"])),
        min_size=1,
        max_size=40,
    ),
)
def test_rows_match_a_plain_model_of_episodes(
    n: int, gamma: float, streams: int, events: list[tuple[int, str]]
) -> None:
    """Stream s sees the events shifted by s; each step's obs encodes (stream, episode, t)."""
    memory = n_step_memory(n, gamma, streams)
    episodes: list[list[list[tuple[float, bool]]]] = [[[]] for _ in range(streams)]
    for i in range(len(events)):
        happened = [events[(i + s) % len(events)] for s in range(streams)]
        before = [
            1000.0 * s + 100 * (len(episodes[s]) - 1) + len(episodes[s][-1]) for s in range(streams)
        ]
        for s, (reward, what) in enumerate(happened):
            episodes[s][-1].append((float(reward), what == "term"))
        ended = [s for s, (_, what) in enumerate(happened) if what != "go"]
        step(
            memory,
            before,
            [float(r) for r, _ in happened],
            [b + 0.5 for b in before],
            [what == "term" for _, what in happened],
            ended,
            [0.0] * len(ended),
        )
        for s in ended:
            episodes[s].append([])
    expected = []
    for s in range(streams):
        finished = [True] * (len(episodes[s]) - 1) + [False]
        for e, episode in enumerate(episodes[s]):
            for t, ret, ends, discount in reference_rows([episode], n, gamma, [finished[e]]):
                expected.append((1000.0 * s + 100 * e + t, ret, ends, discount))
    rows = stored(memory)
    got = [
        (o[0], r, term, d)
        for o, r, term, d in zip(
            rows["obs"], rows["reward"], rows["terminated"], rows["discount"], strict=True
        )
    ]
    assert sorted(g[0] for g in got) == sorted(e[0] for e in expected)
    for (o, r, term, d), (eo, er, eterm, ed) in zip(sorted(got), sorted(expected), strict=True):
        assert o == eo
        assert term == eterm
        assert r == pytest.approx(er, rel=1e-6, abs=1e-6)
        assert d == pytest.approx(ed, rel=1e-6)
    # No row spans two episodes: a row's next obs is in its own episode.
    for o, n_obs in zip(rows["obs"], rows["next_obs"], strict=True):
        assert 0 < n_obs[0] - o[0] <= n
    assert memory.written() == len(events) * streams


@pytest.mark.parametrize("prioritized", [False, True])
def test_a_checkpoint_restores_open_windows_and_rows(prioritized: bool) -> None:
    options: dict[str, Any] = {}
    if prioritized:
        options["priorities"] = {"alpha": 0.6, "beta": 0.4, "eps": 1e-6}
    memory = n_step_memory(3, 0.9, streams=2, **options)
    assert isinstance(memory.inner, PrioritizedMemory if prioritized else TransitionMemory)
    for t in range(5):
        step(
            memory,
            [t, 10 + t],
            [t, -t],
            [t + 1, 11 + t],
            [False, t == 3],
            [1] if t == 3 else [],
            [50],
        )
    tensors, meta = memory.checkpoint()
    again = restore_memory(meta, tensors, EXAMPLE, 2, CPU, n_step=(3, 0.9), **options)
    assert isinstance(again, NStepMemory)
    assert again.count.tolist() == memory.count.tolist() == [2, 1]
    for later in (memory, again):  # the same next steps give the same rows
        step(later, [5, 51], [7, 7], [6, 52], [True, False], [0], [60])
    assert stored(again) == stored(memory)
    a = memory.sample(8, torch.Generator().manual_seed(4))
    b = again.sample(8, torch.Generator().manual_seed(4))
    assert a.discount is not None
    assert b.discount is not None
    assert torch.equal(a.discount, b.discount)
    assert torch.equal(a.batch.reward, b.batch.reward)


def test_a_checkpoint_of_other_settings_or_damaged_windows_is_refused() -> None:
    memory = n_step_memory(3, 0.9, streams=1)
    step(memory, [0], [1], [1], [False], [], [])
    tensors, meta = memory.checkpoint()
    with pytest.raises(ValueError, match="n-step 3 where the run's settings give 4"):
        restore_memory(meta, tensors, EXAMPLE, 1, CPU, n_step=(4, 0.9))
    with pytest.raises(ValueError, match="where the run's settings give one-step replay"):
        restore_memory(meta, tensors, EXAMPLE, 1, CPU)
    with pytest.raises(ValueError, match="open n-step windows"):
        restore_memory({**meta, "open": [3]}, tensors, EXAMPLE, 1, CPU, n_step=(3, 0.9))
    damaged = {**tensors, "n_step/reward": tensors["n_step/reward"].float()}
    with pytest.raises(ValueError, match="n_step/reward"):
        restore_memory(meta, damaged, EXAMPLE, 1, CPU, n_step=(3, 0.9))
    plain_tensors, plain_meta = create_memory(10, EXAMPLE, 1, CPU).checkpoint()
    with pytest.raises(ValueError, match="where the run's settings give n-step replay"):
        restore_memory(plain_meta, plain_tensors, EXAMPLE, 1, CPU, n_step=(3, 0.9))
    with pytest.raises(ValueError, match="carry n-step discounts"):
        restore_memory(
            meta["inner"], {k: v for k, v in tensors.items() if "/" not in k}, EXAMPLE, 1, CPU
        )


def test_frames_get_the_frame_ring_with_windows_built_at_sample_time() -> None:
    from dqnkit.adapters.experience import FrameMemory

    memory = create_memory(10, example_row((1, 4, 4), torch.uint8), 1, CPU, n_step=(3, 0.9))
    assert isinstance(memory, FrameMemory)  # tests/test_frame_n_step.py has its rows
    assert memory.n_step == (3, 0.9)


def test_clipped_rewards_are_clipped_one_by_one_before_the_sum() -> None:
    memory = n_step_memory(2, 0.5, streams=1, clip_rewards=True)
    step(memory, [0], [5.0], [1], [False], [], [])
    step(memory, [1], [-0.25], [2], [False], [], [])
    step(memory, [2], [0.0], [3], [True], [0], [10])
    # sign(5) + 0.5 * sign(-0.25) = 0.5 (clipping the sum 4.875 would give 1), then
    # sign(-0.25) + 0.5 * sign(0) = -1, then sign(0) = 0 at the terminal step.
    assert stored(memory)["reward"] == [0.5, -1.0, 0.0]


class _Script(gym.Env[np.ndarray, int]):
    """Episode k of an instance: obs ``[t, k, 0, 0]``, reward t on step t; even episodes
    terminate on step 3, odd ones run until the time limit truncates them on step 4."""

    observation_space = gym.spaces.Box(-100, 100, (4,), np.float32)
    action_space = gym.spaces.Discrete(2)  # type: ignore[assignment]

    def __init__(self) -> None:
        self.k = -1

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Any:
        super().reset(seed=seed)
        self.t, self.k = 0, self.k + 1
        return self._obs(), {}

    def _obs(self) -> np.ndarray:
        return np.array([self.t, self.k, 0, 0], dtype=np.float32)

    def step(self, action: int) -> Any:
        self.t += 1
        return self._obs(), float(self.t), self.k % 2 == 0 and self.t == 3, False, {}


if "dqnkit-test/NStepScript-v0" not in gym.registry:
    gym.register(
        "dqnkit-test/NStepScript-v0",
        entry_point=_Script,  # type: ignore[arg-type]
        max_episode_steps=4,
    )


def test_the_loop_stores_the_windows_worked_out_by_hand(tmp_path: Path) -> None:
    """Two environments, n = 2, gamma = 0.5, no learning; the final checkpoint's rows."""
    config = TrainConfig(
        env_id="dqnkit-test/NStepScript-v0",
        n_step=2,
        gamma=0.5,
        num_envs=2,
        total_steps=60,
        learning_starts=60,
        checkpoint_every=0,
        final_eval_episodes=1,
        out=str(tmp_path),
    )
    run_dir = train(config, quiet=True).run_dir
    rows = load_file(str(sorted((run_dir / "checkpoints").iterdir())[-1]))
    obs, next_obs = rows["replay/obs"], rows["replay/next_obs"]
    assert len(obs) > 20
    for o, r, n_o, term, d in zip(
        obs.tolist(),
        rows["replay/reward"].tolist(),
        next_obs.tolist(),
        rows["replay/terminated"].tolist(),
        rows["replay/discount"].tolist(),
        strict=True,
    ):
        t, k = int(o[0]), int(o[1])
        last = 3 if k % 2 == 0 else 4  # the episode's final step
        end = min(t + 2, last)  # the window's last step
        assert n_o[:2] == [end, k]  # never into the next episode
        assert r == sum(0.5 ** (s - t - 1) * s for s in range(t + 1, end + 1))
        assert term == (k % 2 == 0 and end == 3)
        assert d == (0.0 if term else 0.5 ** (end - t))
    # 60 steps: each row is one; what is missing waits in the two open windows (at most 1 each).
    assert 58 <= len(obs) <= 60


def test_the_learner_bootstraps_with_each_rows_discount() -> None:
    """The TD error of an n-step batch: q - (R + discount * max_a Q_target(next_obs, a))."""
    from dqnkit.adapters.experience import Sample
    from dqnkit.adapters.learner import Learner
    from dqnkit.core import Transition

    config = TrainConfig(env_id="CartPole-v1", gamma=0.9, hidden=(8,), learning_rate=1e-9)
    learner = Learner(config, (2,), 3, CPU)
    batch = Transition(
        obs=torch.tensor([[0.1, 0.2], [0.3, -0.4], [1.0, 1.0]]),
        action=torch.tensor([0, 2, 1]),
        reward=torch.tensor([1.5, -2.0, 0.5]),
        next_obs=torch.tensor([[0.5, 0.5], [-1.0, 0.0], [0.2, 0.1]]),
        terminated=torch.tensor([False, False, True]),
    )
    discount = torch.tensor([0.729, 0.81, 0.0])
    with torch.no_grad():
        q = learner.online(batch.obs).gather(1, batch.action[:, None]).squeeze(1)
        bootstrap = learner.target(batch.next_obs).max(1).values
    update = learner.update(Sample(batch, discount=discount))
    expected = q - (batch.reward + torch.tensor([0.729, 0.81, 0.0]) * bootstrap)
    torch.testing.assert_close(update.td_error, expected)
    # The same batch read as one-step rows bootstraps with gamma = 0.9 instead.
    one_step = learner.update(Sample(batch)).td_error
    assert not torch.allclose(one_step, update.td_error, atol=1e-3)
