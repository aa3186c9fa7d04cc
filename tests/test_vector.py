"""No fake reset transition enters replay, whatever the vector env's autoreset mode."""

from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode, SyncVectorEnv

from dqnkit.adapters.vector import step_rows


class ScriptedEnv(gym.Env[np.ndarray, int]):
    """Observations are [episode, t]. Episode k lasts 2 + k % 3 steps; even episodes
    terminate, odd ones are truncated (a time limit), so both kinds of ending occur."""

    observation_space = gym.spaces.Box(-1e6, 1e6, (2,), np.float32)
    action_space = gym.spaces.Discrete(2)  # type: ignore[assignment]

    def __init__(self) -> None:
        self.episode = -1
        self.t = 0

    def _obs(self) -> np.ndarray:
        return np.array([self.episode, self.t], dtype=np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Any:
        super().reset(seed=seed)
        self.episode += 1
        self.t = 0
        return self._obs(), {}

    def step(self, action: int) -> Any:
        self.t += 1
        end = self.t == 2 + self.episode % 3
        terminated = end and self.episode % 2 == 0
        truncated = end and self.episode % 2 == 1
        return self._obs(), 1.0, terminated, truncated, {}


def collect(mode: AutoresetMode, num_envs: int, steps: int) -> list[tuple[Any, ...]]:
    envs = SyncVectorEnv([ScriptedEnv for _ in range(num_envs)], autoreset_mode=mode)
    assert envs.metadata["autoreset_mode"] == mode
    obs, _ = envs.reset(seed=0)
    previous_done = np.zeros(num_envs, dtype=bool)
    transitions = []
    for _ in range(steps):
        next_obs, _, terminated, truncated, infos = envs.step(np.zeros(num_envs, dtype=np.int64))
        rows = step_rows(
            mode=mode,
            next_obs=next_obs,
            terminated=terminated,
            truncated=truncated,
            infos=infos,
            previous_done=previous_done,
        )
        for i in np.flatnonzero(rows.valid):
            transitions.append(
                (obs[i].copy(), rows.next_obs[i].copy(), bool(terminated[i]), bool(truncated[i]))
            )
        previous_done = rows.done
        obs = next_obs
        if mode == AutoresetMode.DISABLED and rows.done.any():
            reset_obs, _ = envs.reset(options={"reset_mask": rows.done})
            obs = np.where(rows.done[:, None], reset_obs, next_obs)
    return transitions


@pytest.mark.parametrize("mode", list(AutoresetMode))
@pytest.mark.parametrize("num_envs", [1, 3])
def test_every_transition_is_real(mode: AutoresetMode, num_envs: int) -> None:
    transitions = collect(mode, num_envs, steps=40)
    assert len(transitions) > 20
    endings = set()
    for obs, next_obs, terminated, truncated in transitions:
        episode, t = obs
        # Within one episode, one step later: never across a reset.
        assert next_obs[0] == episode
        assert next_obs[1] == t + 1
        length = 2 + int(episode) % 3
        assert terminated == (next_obs[1] == length and episode % 2 == 0)
        assert truncated == (next_obs[1] == length and episode % 2 == 1)
        endings.add((terminated, truncated))
    assert endings == {(False, False), (True, False), (False, True)}


@pytest.mark.parametrize("mode", list(AutoresetMode))
def test_no_step_of_an_episode_is_lost(mode: AutoresetMode) -> None:
    transitions = collect(mode, 1, steps=30)
    seen = [(int(o[0]), int(o[1])) for o, *_ in transitions]
    finished = {e for e, t in seen if t + 1 == 2 + e % 3}
    for e in finished:
        assert [t for ep, t in seen if ep == e] == list(range(2 + e % 3))


def test_next_step_mode_would_leak_a_fake_transition_without_the_mask() -> None:
    """The pitfall itself: in NEXT_STEP mode the step after a done spans two episodes."""
    envs = SyncVectorEnv([ScriptedEnv], autoreset_mode=AutoresetMode.NEXT_STEP)
    obs, _ = envs.reset(seed=0)
    spans = []
    for _ in range(6):
        next_obs, *_ = envs.step(np.zeros(1, dtype=np.int64))
        spans.append(obs[0][0] != next_obs[0][0])
        obs = next_obs
    assert any(spans)
