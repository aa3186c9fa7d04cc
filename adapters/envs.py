"""Making Gymnasium environments and checking they are ones DQN can drive."""

import math
from collections.abc import Callable
from typing import Any

import gymnasium as gym

from dqnkit.adapters.errors import CommandError

__all__ = ["action_meanings", "check_spaces", "env_factory", "make_env"]


def make_env(env_id: str, **kwargs: Any) -> gym.Env[Any, Any]:
    """``gymnasium.make(env_id)``, with a one-line error for an unknown id or unusable spaces."""
    try:
        env = gym.make(env_id, **kwargs)
    except gym.error.Error as error:
        raise CommandError(f"cannot make environment {env_id!r}: {error}") from error
    try:
        check_spaces(env_id, env.observation_space, env.action_space)
    except CommandError:
        env.close()
        raise
    return env


def check_spaces(
    env_id: str, observation_space: gym.Space[Any], action_space: gym.Space[Any]
) -> None:
    """DQN needs a Box observation and a Discrete action space."""
    if not isinstance(action_space, gym.spaces.Discrete):
        raise CommandError(
            f"{env_id} has a {type(action_space).__name__} action space; dqnkit's DQN supports "
            "Discrete action spaces only (DQN picks an argmax over a finite set of actions)"
        )
    if not isinstance(observation_space, gym.spaces.Box):
        raise CommandError(
            f"{env_id} has a {type(observation_space).__name__} observation space; dqnkit "
            "supports Box observation spaces (vectors, or images with --pixels)"
        )
    if math.prod(observation_space.shape) == 0:
        raise CommandError(f"{env_id} has an empty observation space {observation_space.shape}")


def action_meanings(env: gym.Env[Any, Any]) -> list[str] | None:
    """Names for the actions when the environment gives them (Atari's get_action_meanings)."""
    getter = getattr(env.unwrapped, "get_action_meanings", None)
    if callable(getter):
        return [str(name) for name in getter()]
    known = _KNOWN_MEANINGS.get(env.spec.id if env.spec else "")
    return list(known) if known else None


# The classic-control environments document their actions but do not expose names.
_KNOWN_MEANINGS: dict[str, tuple[str, ...]] = {
    "CartPole-v0": ("push left", "push right"),
    "CartPole-v1": ("push left", "push right"),
    "MountainCar-v0": ("accelerate left", "don't accelerate", "accelerate right"),
    "Acrobot-v1": ("torque -1", "torque 0", "torque +1"),
    "LunarLander-v3": ("do nothing", "fire left engine", "fire main engine", "fire right engine"),
}


def env_factory(
    env_id: str, preprocessing: dict[str, Any] | None = None
) -> Callable[[], gym.Env[Any, Any]]:
    """A function making the environment a policy acts in, checked once here.

    ``preprocessing`` is ``PolicySpec.preprocessing``: None for the environment's own
    observations, or a description of rendered, preprocessed frames (see
    :mod:`dqnkit.adapters.pixels`). Training, evaluation and ``dqnkit play`` all build their
    environments through here, so a policy always sees the observations it was trained on.
    """
    make_env(env_id).close()  # a clear error for a bad id or unusable spaces, once
    if preprocessing is None:
        # The passive checker only re-checks what make_env above already checked.
        return lambda: gym.make(env_id, disable_env_checker=True)
    from dqnkit.adapters import pixels

    return lambda: pixels.make_pixel_env(env_id, preprocessing)
