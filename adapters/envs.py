"""Making Gymnasium environments and checking they are ones DQN can drive.

Every environment dqnkit makes goes through :func:`gym_make`, which refuses an id that names
a Python module (``"pkg:Env-v0"``: ``gymnasium.make`` would import ``pkg`` and run its code)
unless the caller says the user typed it (``allow_import=True``). Ids read from files (a
weights file, an artifact's metadata, a run's config.json) are data and never import anything.
"""

import contextlib
import math
from collections.abc import Callable, Iterator
from typing import Any

import gymnasium as gym
import numpy as np

from dqnkit.adapters.errors import CommandError

__all__ = [
    "action_meanings",
    "check_env_id",
    "check_env_matches",
    "check_spaces",
    "env_errors",
    "env_factory",
    "env_name",
    "finite_observation",
    "gym_make",
    "make_env",
    "policy_env_factory",
]


def check_env_id(env_id: Any, *, allow_import: bool = False) -> str:
    """``env_id`` when it is an id dqnkit may pass to ``gymnasium.make``; CommandError if not.

    Args:
      env_id: the id, e.g. ``"CartPole-v1"`` or ``"ALE/Pong-v5"``.
      allow_import: True only when the user typed the id (on the command line or in Python):
        then ``"pkg:Env-v0"`` may import ``pkg``, as gymnasium does.
    """
    if not isinstance(env_id, str) or not env_id.strip():
        raise CommandError(f"environment id {env_id!r} is not a non-empty string")
    if ":" in env_id and not allow_import:
        module = env_id.split(":", 1)[0]
        raise CommandError(
            f"environment id {env_id!r} names the Python module {module!r}, which "
            f"gymnasium.make would import and run; an id read from a file never imports "
            f"code: if you trust {module!r}, pass the id yourself with --env {env_id}"
        )
    return env_id


def gym_make(env_id: str, *, allow_import: bool = False, **kwargs: Any) -> gym.Env[Any, Any]:
    """``gymnasium.make`` behind :func:`check_env_id`, with a one-line error for a bad id."""
    check_env_id(env_id, allow_import=allow_import)
    if env_id.startswith("ALE/"):  # Atari (issue 12): the ALE registers its envs on import
        from dqnkit.adapters import atari

        atari.register_ale()
    try:
        with env_errors(env_id, "make"):
            return gym.make(env_id, **kwargs)
    except gym.error.Error as error:
        raise CommandError(f"cannot make environment {env_id!r}: {error}") from error


def make_env(env_id: str, *, allow_import: bool = False, **kwargs: Any) -> gym.Env[Any, Any]:
    """:func:`gym_make`, then :func:`check_spaces` (the env is closed if they are unusable)."""
    env = gym_make(env_id, allow_import=allow_import, **kwargs)
    try:
        check_spaces(env_id, env.observation_space, env.action_space)
    except CommandError:
        env.close()
        raise
    return env


@contextlib.contextmanager
def env_errors(env_id: str, call: str) -> Iterator[None]:
    """Turns an exception raised by an environment's code into a one-line CommandError.

    An environment is someone else's code: an error inside its ``reset`` or ``step`` is not a
    dqnkit bug, and the user gets its type and message in one line instead of a traceback.
    """
    try:
        yield
    except (CommandError, KeyboardInterrupt, gym.error.Error):
        raise
    except Exception as error:  # the environment's own code, whatever it raises
        message = str(error).strip().splitlines()
        detail = f": {message[0]}" if message else ""
        raise CommandError(
            f"environment {env_id!r} raised {type(error).__name__} in {call}(){detail}"
        ) from error


def env_name(env: gym.Env[Any, Any]) -> str:
    """The id an environment was made from, for messages (its class when it has no spec)."""
    return env.spec.id if env.spec is not None else type(env.unwrapped).__name__


def finite_observation(obs: Any, env_id: str) -> Any:
    """``obs``, unless it holds NaN or infinity (CommandError: the environment is broken)."""
    array = np.asarray(obs)
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise CommandError(f"environment {env_id!r} returned a non-finite observation")
    return obs


def check_spaces(
    env_id: str, observation_space: gym.Space[Any], action_space: gym.Space[Any]
) -> None:
    """DQN needs a Box observation of rank 1 or 3 (vectors, or [C, H, W] images) and a
    Discrete action space starting at 0."""
    if not isinstance(action_space, gym.spaces.Discrete):
        raise CommandError(
            f"{env_id} has a {type(action_space).__name__} action space; dqnkit's DQN supports "
            "Discrete action spaces only (DQN picks an argmax over a finite set of actions)"
        )
    if int(action_space.start) != 0:
        raise CommandError(
            f"{env_id} has actions {action_space} starting at {int(action_space.start)}; "
            "dqnkit's policies return action indices from 0 (wrap the env to shift them)"
        )
    if int(action_space.n) < 1:
        raise CommandError(f"{env_id} has no actions ({action_space})")
    if not isinstance(observation_space, gym.spaces.Box):
        raise CommandError(
            f"{env_id} has a {type(observation_space).__name__} observation space; dqnkit "
            "supports Box observation spaces (vectors, or images with --pixels)"
        )
    shape = tuple(observation_space.shape)
    if math.prod(shape) == 0:
        raise CommandError(f"{env_id} has an empty observation space {shape}")
    if len(shape) not in (1, 3):
        raise CommandError(
            f"{env_id} observations have shape {shape}; dqnkit takes vectors [N] (an MLP) or "
            "images [C, H, W] (a CNN): wrap the env to flatten or reshape them"
        )


def check_env_matches(
    env: gym.Env[Any, Any], obs_shape: tuple[int, ...], n_actions: int, env_id: str
) -> None:
    """The environment's spaces must be the ones the policy was made for."""
    space = env.observation_space
    if tuple(space.shape or ()) != tuple(obs_shape):
        raise CommandError(
            f"{env_id} observations have shape {space.shape}; the policy takes {tuple(obs_shape)}"
        )
    actions = env.action_space
    if not isinstance(actions, gym.spaces.Discrete) or int(actions.n) != n_actions:
        raise CommandError(
            f"{env_id} has action space {actions}; the policy has {n_actions} actions"
        )


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
    env_id: str,
    preprocessing: dict[str, Any] | None = None,
    *,
    allow_import: bool = False,
    render_mode: str | None = None,
) -> Callable[[], gym.Env[Any, Any]]:
    """A function making the environment a policy acts in, checked once here.

    ``preprocessing`` is ``PolicySpec.preprocessing``: None for the environment's own
    observations, or a description of rendered, preprocessed frames (see
    :mod:`dqnkit.adapters.pixels`). Training, evaluation and ``dqnkit play`` all build their
    environments through here, so a policy always sees the observations it was trained on.
    ``allow_import`` as in :func:`check_env_id`: only for an id the user typed.
    ``render_mode`` (``"rgb_array"``, ``"human"``) is for watching; pixel environments always
    render ``rgb_array``.
    """
    make_env(env_id, allow_import=allow_import).close()  # a clear error for a bad id, once
    if preprocessing is None:
        # The passive checker only re-checks what make_env above already checked; the id was
        # checked (and its module, if allowed, imported) by the call above.
        # render_mode only when asked: not every environment's constructor takes it.
        kwargs = {} if render_mode is None else {"render_mode": render_mode}
        return lambda: gym_make(
            env_id, allow_import=allow_import, disable_env_checker=True, **kwargs
        )
    if preprocessing.get("kind") == "atari-nature":  # Atari (issue 12): adapters/atari.py
        from dqnkit.adapters import atari

        atari.AtariSpec.from_dict(preprocessing)  # a clear error for a bad description, once
        mode = render_mode or "rgb_array"
        return lambda: atari.make_atari_env(
            env_id, preprocessing, allow_import=allow_import, render_mode=mode
        )
    from dqnkit.adapters import pixels

    return lambda: pixels.make_pixel_env(env_id, preprocessing, allow_import=allow_import)


def policy_env_factory(
    env_id: str,
    preprocessing: dict[str, Any] | None,
    *,
    obs_shape: tuple[int, ...],
    n_actions: int,
    allow_import: bool = False,
    render_mode: str | None = None,
) -> Callable[[], gym.Env[Any, Any]]:
    """:func:`env_factory` for a policy of ``obs_shape`` and ``n_actions``, checked to fit:
    one environment is made and compared with the policy's contract before any episode."""
    make = env_factory(env_id, preprocessing, allow_import=allow_import, render_mode=render_mode)
    env = make()
    try:
        check_env_matches(env, obs_shape, n_actions, env_id)
    finally:
        env.close()
    return make
