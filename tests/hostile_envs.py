"""Environments that misbehave, registered under ``dqnkit-test/`` for the refusal tests.

Importing this module registers them. Each is CartPole-shaped (a 4-vector, 2 actions) unless
its point is a different space, so that a CartPole policy can be pointed at it with --env.
"""

from typing import Any

import gymnasium as gym
import numpy as np

__all__ = ["HOSTILE_ENVS"]


class _Base(gym.Env[np.ndarray, Any]):
    observation_space: gym.spaces.Space[Any] = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)
    action_space: gym.spaces.Space[Any] = gym.spaces.Discrete(2)

    def __init__(self) -> None:
        self.t = 0

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(4, np.float32), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        self.t += 1
        return np.full(4, 0.1, np.float32), 1.0, self.t >= 5, False, {}


class RaiseOnStep(_Base):
    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        raise RuntimeError("the simulator lost its connection")


class RaiseOnReset(_Base):
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        raise OSError("no such level file")


class NaNObservation(_Base):
    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = super().step(action)
        obs[2] = np.nan
        return obs, reward, terminated, truncated, info


class NaNReward(_Base):
    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        obs, _, terminated, truncated, info = super().step(action)
        return obs, float("nan"), terminated, truncated, info


class NeverEnds(_Base):
    """No termination and (registered without max_episode_steps) no time limit."""

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        self.t += 1
        return np.zeros(4, np.float32), 1.0, False, False, {}


class MatrixObservation(_Base):
    observation_space = gym.spaces.Box(-1.0, 1.0, (2, 2), np.float32)


class ScalarObservation(_Base):
    observation_space = gym.spaces.Box(-1.0, 1.0, (), np.float32)


class ShiftedActions(_Base):
    action_space = gym.spaces.Discrete(2, start=5)


HOSTILE_ENVS: dict[str, Any] = {
    "dqnkit-test/RaiseOnStep-v0": RaiseOnStep,
    "dqnkit-test/RaiseOnReset-v0": RaiseOnReset,
    "dqnkit-test/NaNObservation-v0": NaNObservation,
    "dqnkit-test/NaNReward-v0": NaNReward,
    "dqnkit-test/NeverEnds-v0": NeverEnds,
    "dqnkit-test/MatrixObservation-v0": MatrixObservation,
    "dqnkit-test/ScalarObservation-v0": ScalarObservation,
    "dqnkit-test/ShiftedActions-v0": ShiftedActions,
}

for _env_id, _cls in HOSTILE_ENVS.items():
    if _env_id not in gym.registry:
        gym.register(id=_env_id, entry_point=_cls, disable_env_checker=True)
