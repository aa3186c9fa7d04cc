"""The actor: every transition real, episodes never spliced, and envs rebuilt exactly."""

import copy
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

from dqnkit.adapters.errors import CommandError
from dqnkit.adapters.loop_state import EnvSnapshot
from dqnkit.adapters.vector import Exploration, VectorActor


class ScriptedEnv(gym.Env[np.ndarray, int]):
    """Observations are [episode, t, noise], noise drawn from np_random at each reset. An
    episode lasts 2 + noise % 3 steps and terminates when noise is even, else is truncated (a
    time limit): an env rebuilt from a snapshot continues identically only if its generator
    was restored."""

    observation_space = gym.spaces.Box(-1e6, 1e6, (3,), np.float32)
    action_space = gym.spaces.Discrete(2)  # type: ignore[assignment]

    def __init__(self) -> None:
        self.episode = -1
        self.t = 0
        self.noise = 0.0

    def _obs(self) -> np.ndarray:
        return np.array([self.episode, self.t, self.noise], dtype=np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Any:
        super().reset(seed=seed)
        self.episode += 1
        self.t = 0
        self.noise = float(self.np_random.integers(0, 1000))
        return self._obs(), {}

    def step(self, action: int) -> Any:
        self.t += 1
        end = self.t == length(self.noise)
        even = self.noise % 2 == 0
        return self._obs(), float(10 * self.t + action), end and even, end and not even, {}


def length(noise: float) -> int:
    return 2 + int(noise) % 3


def tape(num_envs: int, steps: int) -> list[tuple[Any, ...]]:
    actor = VectorActor(ScriptedEnv, num_envs, "Scripted")
    snapshots = [EnvSnapshot() for _ in range(num_envs)]
    actor.start(seed=0, snapshots=snapshots)
    events: list[tuple[Any, ...]] = []
    for t in range(steps):
        step = actor.step(np.arange(num_envs) % 2 ^ t % 2, snapshots)
        for i in range(num_envs):
            events.append(
                (
                    i,
                    tuple(step.obs[i]),
                    int(step.action[i]),
                    float(step.reward[i]),
                    tuple(step.next_obs[i]),
                    bool(step.terminated[i]),
                    bool(step.truncated[i]),
                )
            )
        for end in step.ended:
            events.append(("end", end.env, end.episode_return, end.length))
    return events


@pytest.mark.parametrize("num_envs", [1, 3])
def test_every_transition_is_one_step_of_one_episode(num_envs: int) -> None:
    events = tape(num_envs, steps=20)
    transitions = [e for e in events if e[0] != "end"]
    endings = set()
    for _, obs, action, reward, next_obs, terminated, truncated in transitions:
        episode, t, noise = obs
        assert next_obs[0] == episode
        assert next_obs[2] == noise
        assert next_obs[1] == t + 1
        assert reward == 10 * (t + 1) + action
        end = next_obs[1] == length(noise)
        assert terminated == (end and noise % 2 == 0)
        assert truncated == (end and noise % 2 == 1)
        endings.add((terminated, truncated))
    assert endings == {(False, False), (True, False), (False, True)}
    # Each env's episodes are 0, 1, 2... in order, each starting at t = 0, none skipped.
    for i in range(num_envs):
        starts = [e[1][0] for e in transitions if e[0] == i and e[1][1] == 0]
        assert starts == list(range(len(starts)))


def test_episode_ends_report_return_and_length() -> None:
    events = tape(1, steps=30)
    expected, total, steps = [], 0.0, 0
    for event in events:
        if event[0] == "end":
            continue
        total, steps = total + event[3], steps + 1
        if event[5] or event[6]:
            expected.append(("end", 0, total, steps))
            total, steps = 0.0, 0
    ends = [e for e in events if e[0] == "end"]
    assert len(ends) >= 5
    assert ends == expected


def test_a_rebuilt_actor_continues_exactly() -> None:
    """Snapshots taken mid-episode rebuild envs whose next steps equal the originals'."""
    actor = VectorActor(ScriptedEnv, 2, "Scripted")
    snapshots = [EnvSnapshot() for _ in range(2)]
    actor.start(seed=5, snapshots=snapshots)
    for t in range(7):
        actor.step(np.array([t % 2, 1]), snapshots)
    saved = copy.deepcopy(snapshots)
    rebuilt = VectorActor(ScriptedEnv, 2, "Scripted")
    # Episode counters are the env's own (not part of its state): rebuild them by replaying.
    assert np.array_equal(rebuilt.start(seed=5, snapshots=saved)[:, 1:], actor.obs[:, 1:])
    for t in range(6):
        a = actor.step(np.array([1, t % 2]), snapshots)
        b = rebuilt.step(np.array([1, t % 2]), saved)
        assert np.array_equal(a.next_obs[:, 1:], b.next_obs[:, 1:])
        assert np.array_equal(a.reward, b.reward)
        assert np.array_equal(actor.obs[:, 1:], rebuilt.obs[:, 1:])


class Failing(ScriptedEnv):
    def step(self, action: int) -> Any:
        raise RuntimeError("physics exploded")


def test_an_environment_that_raises_is_a_one_line_error() -> None:
    actor = VectorActor(Failing, 1, "Failing-v0")
    snapshots = [EnvSnapshot()]
    actor.start(seed=0, snapshots=snapshots)
    with pytest.raises(CommandError, match="environment Failing-v0 raised in step: Runtime"):
        actor.step(np.array([0]), snapshots)


@pytest.mark.parametrize("num_envs", [1, 5])
@pytest.mark.parametrize("epsilon", [0.0, 0.3, 0.9, 1.0])
def test_exploration_is_epsilon_greedy_over_its_blocks_draws(epsilon: float, num_envs: int) -> None:
    """Each step's actions: the random action where the uniform is below epsilon, else argmax."""
    q = torch.randn(num_envs, 3, generator=torch.Generator().manual_seed(1))
    exploration = Exploration(seed=7, num_envs=num_envs, n_actions=3, block=8)
    for step in range(50):
        uniforms, random_actions = exploration.draws(step)
        expected = np.where(uniforms < epsilon, random_actions, q.argmax(1).numpy())
        assert np.array_equal(exploration.actions(step, epsilon, lambda: q), expected)


def test_exploration_draws_are_uniform_and_new_in_every_block() -> None:
    exploration = Exploration(seed=0, num_envs=4, n_actions=3, block=100)
    draws = [exploration.draws(step) for step in range(5_000)]
    uniforms = np.stack([u for u, _ in draws])
    actions = np.stack([a for _, a in draws])
    assert uniforms.dtype == np.float32
    assert actions.dtype == np.int64
    # 20,000 draws each: 5 standard deviations of a mean of U(0, 1) is about 0.01.
    assert abs(float(uniforms.mean()) - 0.5) < 0.011
    counts = np.bincount(actions.ravel(), minlength=3)
    assert set(actions.ravel().tolist()) == {0, 1, 2}
    assert (np.abs(counts - 20_000 / 3) < 5 * np.sqrt(20_000 * 2 / 9)).all()
    # No block repeats another (or another seed's).
    assert not np.array_equal(uniforms[:100], uniforms[100:200])
    other = Exploration(seed=1, num_envs=4, n_actions=3, block=100)
    assert not np.array_equal(other.draws(0)[0], exploration.draws(0)[0])


def test_exploration_restarted_mid_block_continues_exactly() -> None:
    """A resumed run makes a new Exploration at the step it stopped: the same draws follow."""
    straight = Exploration(seed=3, num_envs=2, n_actions=4, block=16)
    through = [straight.draws(step) for step in range(40)]
    resumed = Exploration(seed=3, num_envs=2, n_actions=4, block=16)
    for step in range(21, 40):
        u, a = resumed.draws(step)
        assert np.array_equal(u, through[step][0])
        assert np.array_equal(a, through[step][1])


def test_exploration_skips_the_network_when_every_row_explores() -> None:
    def no_network() -> torch.Tensor:
        raise AssertionError("called")

    actions = Exploration(0, 4, 3).actions(0, 1.0, no_network)
    assert actions.shape == (4,)
    assert ((actions >= 0) & (actions < 3)).all()


class LivesEnv(gym.Env[np.ndarray, int]):
    """Three lives, one lost on steps 2 and 4, the game over (terminated) on step 6."""

    observation_space = gym.spaces.Box(-1e6, 1e6, (1,), np.float32)
    action_space = gym.spaces.Discrete(2)  # type: ignore[assignment]

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Any:
        super().reset(seed=seed)
        self.t, self.lives = 0, 3
        return np.zeros(1, np.float32), {"lives": self.lives}

    def step(self, action: int) -> Any:
        self.t += 1
        if self.t in (2, 4, 6):
            self.lives -= 1
        return np.full(1, self.t, np.float32), 1.0, self.t == 6, False, {"lives": self.lives}


@pytest.mark.parametrize("num_envs", [1, 2])
def test_a_lost_life_is_flagged_on_its_step_and_the_episode_goes_on(num_envs: int) -> None:
    actor = VectorActor(LivesEnv, num_envs, "Lives")
    snapshots = [EnvSnapshot() for _ in range(num_envs)]
    actor.start(seed=0, snapshots=snapshots)
    flags, ends = [], []
    for _ in range(8):
        step = actor.step(np.zeros(num_envs, dtype=np.int64), snapshots)
        flags.append(step.lost_life.tolist())
        ends.append(step.terminated.tolist())
    # Steps 2 and 4 lose a life mid-game; step 6 loses the last one and ends the game; the
    # new game's reset restores the lives, which is not a loss (step 7), and its second step
    # loses one again (step 8).
    expected = [False, True, False, True, False, True, False, True]
    assert flags == [[lost] * num_envs for lost in expected]
    assert [e[0] for e in ends] == [False] * 5 + [True, False, False]
    # Rebuilt from a snapshot after step 3 (lives 2), the next loss is still seen on step 4.
    rebuilt = VectorActor(LivesEnv, 1, "Lives")
    snapshot = [EnvSnapshot(actions=[0, 0, 0])]
    rebuilt.start(seed=0, snapshots=snapshot)
    assert rebuilt.lives == [2]
    assert rebuilt.step(np.zeros(1, dtype=np.int64), snapshot).lost_life.tolist() == [True]


def test_envs_without_lives_never_lose_one() -> None:
    actor = VectorActor(ScriptedEnv, 1, "Scripted")
    snapshots = [EnvSnapshot()]
    actor.start(seed=0, snapshots=snapshots)
    assert not any(actor.step(np.zeros(1, np.int64), snapshots).lost_life[0] for _ in range(20))
