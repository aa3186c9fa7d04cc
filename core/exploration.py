"""Epsilon-greedy action selection and its schedules."""

import math

import torch

from dqnkit.core._checks import check_rank, check_unit_interval

__all__ = ["epsilon_greedy", "exponential_epsilon", "linear_epsilon"]


def epsilon_greedy(
    q_values: torch.Tensor, epsilon: float, generator: torch.Generator
) -> torch.Tensor:
    """Per row: a uniformly random action with probability ``epsilon``, else the greedy one.

    See "Human-level control through deep reinforcement learning" by Mnih et al.
    (https://www.nature.com/articles/nature14236), "Methods: training details".

    Args:
      q_values: ``[B, A]`` Q-values.
      epsilon: the exploration probability, in ``[0, 1]``.
      generator: the only source of randomness. It is advanced by the same amount whatever
        ``epsilon`` is, so a run's random stream does not depend on its schedule.

    Returns:
      ``[B]`` int64 actions on ``q_values``' device. Ties go to the lowest action index.
    """
    check_rank("q_values", q_values, 2)
    check_unit_interval("epsilon", epsilon)
    batch, n_actions = q_values.shape
    if n_actions == 0:
        raise ValueError(f"q_values needs at least one action, got shape {tuple(q_values.shape)}")
    device = generator.device
    explore = torch.rand(batch, generator=generator, device=device) < epsilon
    random_actions = torch.randint(0, n_actions, (batch,), generator=generator, device=device)
    greedy = q_values.argmax(dim=1)
    return torch.where(explore.to(greedy.device), random_actions.to(greedy.device), greedy)


def linear_epsilon(step: int, start: float, end: float, duration: int) -> float:
    """Moves linearly from ``start`` to ``end`` over ``duration`` steps, then stays at ``end``.

    The DQN paper's schedule (1.0 to 0.1 over the first million frames, Mnih et al. 2015).
    """
    _check_schedule(step, start, end)
    if duration <= 0:
        raise ValueError(f"duration must be positive, got {duration}")
    # epsilon(t) = start + min(t / duration, 1) * (end - start)
    fraction = min(step / duration, 1.0)
    return start + fraction * (end - start)


def exponential_epsilon(step: int, start: float, end: float, decay: float) -> float:
    """Decays from ``start`` towards ``end`` with time constant ``decay`` steps.

    The PyTorch DQN tutorial's schedule (``EPS_START``, ``EPS_END``, ``EPS_DECAY``).
    """
    _check_schedule(step, start, end)
    if decay <= 0:
        raise ValueError(f"decay must be positive, got {decay}")
    # epsilon(t) = end + (start - end) * exp(-t / decay)
    return end + (start - end) * math.exp(-step / decay)


def _check_schedule(step: int, start: float, end: float) -> None:
    if step < 0:
        raise ValueError(f"step must be non-negative, got {step}")
    check_unit_interval("start", start)
    check_unit_interval("end", end)
