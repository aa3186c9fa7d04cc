"""Turning a vector environment's step into real transitions, whatever its autoreset mode.

Gymnasium >= 1.0 vector environments reset finished sub-environments in one of three ways
(``envs.metadata["autoreset_mode"]``):

- NEXT_STEP (the default): the step *after* a done returns the reset observation with reward 0.
  That step's (obs, next_obs) pair spans two episodes: a fake transition that must be dropped.
- SAME_STEP: the done step already returns the reset observation; the real final observation is
  in ``infos["final_obs"]`` and is the one to bootstrap from.
- DISABLED: nothing is reset; the caller resets finished sub-environments itself.
"""

from typing import Any, NamedTuple

import numpy as np
from gymnasium.vector import AutoresetMode

__all__ = ["StepRows", "step_rows"]


class StepRows(NamedTuple):
    """The transitions one vector step produced.

    Attributes:
      valid: ``[N]`` bool, False for rows that are not transitions (NEXT_STEP's reset step).
      next_obs: ``[N, *obs]`` the observation each transition ends in (the real final one at a
        done), to store as ``next_obs``.
      done: ``[N]`` bool, episodes that ended on this step (terminated or truncated).
    """

    valid: np.ndarray[Any, Any]
    next_obs: np.ndarray[Any, Any]
    done: np.ndarray[Any, Any]


def step_rows(
    *,
    mode: AutoresetMode,
    next_obs: np.ndarray[Any, Any],
    terminated: np.ndarray[Any, Any],
    truncated: np.ndarray[Any, Any],
    infos: dict[str, Any],
    previous_done: np.ndarray[Any, Any],
) -> StepRows:
    """Which rows of a vector step are real transitions, and what they end in.

    Args:
      mode: the vector environment's autoreset mode.
      next_obs: ``[N, *obs]`` the observations ``envs.step`` returned.
      terminated: ``[N]`` from ``envs.step``.
      truncated: ``[N]`` from ``envs.step``.
      infos: the info dict from ``envs.step``.
      previous_done: ``[N]`` the previous step's ``done`` (all False after a reset).
    """
    done = np.logical_or(terminated, truncated)
    if mode == AutoresetMode.NEXT_STEP:
        # A sub-environment done on the previous step was reset by this one: no transition.
        return StepRows(valid=~previous_done, next_obs=next_obs, done=done & ~previous_done)
    if mode == AutoresetMode.SAME_STEP:
        real_next = next_obs
        if done.any():
            real_next = next_obs.copy()
            has_final = infos.get("_final_obs", done)
            for i in np.flatnonzero(done & has_final):
                real_next[i] = infos["final_obs"][i]
        return StepRows(valid=np.ones_like(done), next_obs=real_next, done=done)
    if mode == AutoresetMode.DISABLED:
        return StepRows(valid=np.ones_like(done), next_obs=next_obs, done=done)
    raise ValueError(f"unknown autoreset mode {mode!r}")
