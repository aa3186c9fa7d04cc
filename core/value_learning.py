"""Q-learning targets and the Huber loss."""

from typing import Any

import torch

from dqnkit.core._checks import check_floating, check_rank, check_unit_interval

__all__ = ["huber_loss", "n_step_return", "td_target"]


def td_target(
    reward: torch.Tensor,
    terminated: torch.Tensor,
    next_q: torch.Tensor,
    gamma: float | torch.Tensor,
    next_q_online: torch.Tensor | None = None,
) -> torch.Tensor:
    """The one-step Q-learning target, or the double-DQN target.

    See "Human-level control through deep reinforcement learning" by Mnih et al.
    (https://www.nature.com/articles/nature14236) and, for the double-DQN variant,
    "Deep Reinforcement Learning with Double Q-learning" by van Hasselt et al.
    (https://arxiv.org/abs/1509.06461).

    Args:
      reward: ``[B]`` float, reward ``r_t``.
      terminated: ``[B]`` bool, True where ``s_t`` is terminal: no bootstrap there. A time-limit
        truncation is not a termination and must be passed as False.
      next_q: ``[B, A]`` Q-values at ``s_t`` from the target network.
      gamma: the discount, a float or a ``[B]`` tensor (e.g. ``gamma ** n`` for n-step returns).
      next_q_online: ``[B, A]`` Q-values at ``s_t`` from the online network; when given, the
        bootstrap action is chosen by these values and valued by ``next_q`` (double DQN).

    Returns:
      ``[B]`` targets with no gradient: ``r_t`` on terminated rows, whatever ``next_q`` holds
      there (inf and NaN included), else ``r_t + gamma * next_q[argmax]``.
    """
    check_rank("next_q", next_q, 2)
    check_floating("next_q", next_q)
    batch = next_q.shape[0]
    if reward.shape != (batch,):
        raise ValueError(
            f"reward must have shape [B] = {[batch]} to match next_q {tuple(next_q.shape)}, "
            f"got {tuple(reward.shape)}"
        )
    if terminated.shape != (batch,) or terminated.dtype != torch.bool:
        raise ValueError(
            f"terminated must be a bool tensor of shape {[batch]} to match next_q "
            f"{tuple(next_q.shape)}, got {terminated.dtype} {tuple(terminated.shape)}"
        )
    if isinstance(gamma, torch.Tensor):
        if gamma.shape != (batch,):
            raise ValueError(
                f"gamma as a tensor must have shape {[batch]} to match next_q "
                f"{tuple(next_q.shape)}, got {tuple(gamma.shape)}"
            )
    else:
        check_unit_interval("gamma", gamma)
    if next_q_online is not None and next_q_online.shape != next_q.shape:
        raise ValueError(
            f"next_q_online must have the shape of next_q {tuple(next_q.shape)}, "
            f"got {tuple(next_q_online.shape)}"
        )

    # Targets are constants for the loss: no gradient flows into the target network.
    with torch.no_grad():
        if next_q_online is None:
            # max_a Q_target(s_t, a)
            bootstrap = next_q.max(dim=1).values
        else:
            # Q_target(s_t, argmax_a Q_online(s_t, a))
            best = next_q_online.argmax(dim=1, keepdim=True)
            bootstrap = next_q.gather(1, best).squeeze(1)
        # y = r_t + gamma * bootstrap, or r_t at terminal states. torch.where, not
        # (1 - terminated) * bootstrap: a NaN or inf bootstrap would leak through 0 * x.
        return torch.where(terminated, reward, reward + gamma * bootstrap).detach()


def n_step_return(
    reward: torch.Tensor,
    terminated: torch.Tensor,
    gamma: float,
    mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The discounted sum of up to ``n`` rewards and the discount of the bootstrap after them.

    See "Reinforcement Learning: An Introduction" by Sutton & Barto (2nd ed., 2018), section 7.1
    (n-step TD, equation 7.1), as used by Rainbow ("Rainbow: Combining Improvements in Deep
    Reinforcement Learning" by Hessel et al., https://arxiv.org/abs/1710.02298).

    Args:
      reward: ``[B, n]`` float, ``reward[b, k]`` the reward of step ``k`` of row ``b``'s window.
      terminated: ``[B, n]`` bool, True where step ``k`` reached a terminal state.
      gamma: the per-step discount, in ``[0, 1]``.
      mask: ``[B, n]`` bool, True for the steps that exist: each row's first ``m_b >= 1``
        steps. A window is cut short (False after its end) by a time-limit truncation or by
        the end of the stream. None means every step exists.

    Returns:
      ``(returns, discount)``, each ``[B]`` in ``reward``'s dtype. With ``m`` one past the
      first terminated step of the window, or else its number of steps:
      ``returns = sum_{k<m} gamma**k * reward[:, k]`` and ``discount = 0`` if a step of the
      window terminated, else ``gamma**m``. The n-step target is then
      ``td_target(returns, discount == 0, next_q_at_m, gamma=discount)``, where
      ``next_q_at_m`` are the Q-values at the observation after step ``m - 1``. With ``n = 1``
      they are ``td_target``'s own pieces: ``reward`` and ``gamma`` (0 where terminated).
      Rewards past the end of a window, NaN included, never reach the sum.
    """
    check_rank("reward", reward, 2)
    check_floating("reward", reward)
    check_unit_interval("gamma", gamma)
    if terminated.shape != reward.shape or terminated.dtype != torch.bool:
        raise ValueError(
            f"terminated must be a bool tensor shaped like reward {tuple(reward.shape)}, "
            f"got {terminated.dtype} {tuple(terminated.shape)}"
        )
    n = reward.shape[1]
    if n == 0:
        raise ValueError(f"reward needs at least one step per row, got {tuple(reward.shape)}")
    if mask is None:
        mask = torch.ones_like(terminated)
    elif mask.shape != reward.shape or mask.dtype != torch.bool:
        raise ValueError(
            f"mask must be a bool tensor shaped like reward {tuple(reward.shape)}, "
            f"got {mask.dtype} {tuple(mask.shape)}"
        )
    elif bool((~mask[:, 0]).any()) or bool((mask[:, 1:] & ~mask[:, :-1]).any()):
        raise ValueError(
            "mask must be True for a prefix of each row, of at least one step: "
            "a window has no gaps and starts with its first step"
        )

    with torch.no_grad():
        # Step k counts when it exists and no earlier step of its window terminated.
        stop = terminated & mask
        ended_before = torch.zeros_like(stop)
        ended_before[:, 1:] = stop[:, :-1].cumsum(dim=1) > 0
        counted = mask & ~ended_before
        # G = sum_{k<m} gamma^k r_k. torch.where, not counted * r: a NaN reward past the
        # window's end would leak through 0 * NaN.
        powers = gamma ** torch.arange(n, dtype=reward.dtype, device=reward.device)
        returns = torch.where(counted, reward * powers, torch.zeros_like(reward)).sum(dim=1)
        m = counted.sum(dim=1)
        # gamma^m bootstraps from the observation after the window's last step; nothing does
        # after a terminal step.
        discount = torch.where(
            stop.any(dim=1), torch.zeros_like(returns), gamma ** m.to(reward.dtype)
        )
    return returns.detach(), discount.detach()


class _Huber(torch.autograd.Function):
    """Huber's loss with its gradient stated, not derived: ``clamp(x, -delta, delta)``.

    Autograd through any closed form of the loss rounds or masks its way to a different
    gradient somewhere: ``delta * (|x| - min(|x|, delta))`` cancels to 0 for ``|x|`` far below
    ``delta`` (x = 2e-8 gets 0, not 2e-8), and a ``torch.where`` over the two branches sends
    ``0 * inf = NaN`` from the unused one at ``x = inf`` and 0 rather than NaN at ``x = NaN``.
    """

    # forward(ctx, ...) rather than a separate setup_context: with setup_context, every apply
    # binds its arguments through inspect.signature, a tenth of a small network's update.
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, delta: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.delta = delta
        abs_x = x.abs()
        quadratic = abs_x.clamp(max=delta)
        # 0.5 * x**2 where |x| <= delta, delta * (|x| - 0.5 * delta) elsewhere, as one
        # expression: 0.5 * q**2 + delta * (|x| - q) with q = min(|x|, delta). NaN stays NaN.
        return 0.5 * quadratic.square() + delta * (abs_x - quadratic)

    @staticmethod
    def backward(ctx: Any, *grad_outputs: Any) -> Any:
        (x,) = ctx.saved_tensors
        (grad,) = grad_outputs
        # d/dx huber(x) = clamp(x, -delta, delta); torch.clamp keeps NaN as NaN.
        return grad * x.clamp(-ctx.delta, ctx.delta), None


def huber_loss(x: torch.Tensor, delta: float = 1.0) -> torch.Tensor:
    """Elementwise Huber loss: quadratic within ``delta`` of zero, linear outside.

    See "Robust Estimation of a Location Parameter" by Huber (1964); DQN uses it on the TD
    error so that large errors give a gradient of constant size (Mnih et al. 2015, "Methods").

    Args:
      x: any-shaped float tensor, typically the TD error ``q - target``.
      delta: the positive threshold between the quadratic and linear parts.

    Returns:
      A tensor shaped like ``x``: ``0.5 * x**2`` where ``|x| <= delta``,
      ``delta * (|x| - 0.5 * delta)`` elsewhere. Its gradient is exactly
      ``clamp(x, -delta, delta)`` (a custom autograd function states it), NaN where ``x`` is NaN.
    """
    check_floating("x", x)
    if not delta > 0:
        raise ValueError(f"delta must be positive, got {delta}")
    out: torch.Tensor = _Huber.apply(x, float(delta))  # type: ignore[no-untyped-call]
    return out
