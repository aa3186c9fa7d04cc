"""The record that flows from the environment through replay into the loss."""

from typing import NamedTuple

import torch


class Transition(NamedTuple):
    """One step of experience, or a batch of them with a leading dimension ``[B, ...]``.

    Only ``terminated`` is stored: a time-limit truncation is not the end of the MDP and the
    TD target bootstraps through it from ``next_obs``, the real final observation. So there is
    no ``done`` field that could blur the two.

    Attributes:
      obs: ``[*obs_shape]`` or ``[B, *obs_shape]`` observation at time ``t - 1``.
      action: ``[]`` or ``[B]`` integer action taken at ``t - 1``.
      reward: ``[]`` or ``[B]`` reward received at ``t``.
      next_obs: like ``obs``, the observation at ``t``.
      terminated: ``[]`` or ``[B]`` bool, True where ``next_obs`` is a terminal state.
    """

    obs: torch.Tensor
    action: torch.Tensor
    reward: torch.Tensor
    next_obs: torch.Tensor
    terminated: torch.Tensor
