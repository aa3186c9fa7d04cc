"""Q-learning targets and the Huber loss."""

from typing import Any

import torch

from dqnkit.core._checks import check_floating, check_rank, check_unit_interval

__all__ = ["huber_loss", "td_target"]


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


class _Huber(torch.autograd.Function):
    """Huber's loss with its gradient stated, not derived: ``clamp(x, -delta, delta)``.

    Autograd through any closed form of the loss rounds or masks its way to a different
    gradient somewhere: ``delta * (|x| - min(|x|, delta))`` cancels to 0 for ``|x|`` far below
    ``delta`` (x = 2e-8 gets 0, not 2e-8), and a ``torch.where`` over the two branches sends
    ``0 * inf = NaN`` from the unused one at ``x = inf`` and 0 rather than NaN at ``x = NaN``.
    """

    @staticmethod
    def forward(x: torch.Tensor, delta: float) -> torch.Tensor:
        abs_x = x.abs()
        quadratic = abs_x.clamp(max=delta)
        # 0.5 * x**2 where |x| <= delta, delta * (|x| - 0.5 * delta) elsewhere, as one
        # expression: 0.5 * q**2 + delta * (|x| - q) with q = min(|x|, delta). NaN stays NaN.
        return 0.5 * quadratic.square() + delta * (abs_x - quadratic)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
        x, delta = inputs
        ctx.save_for_backward(x)
        ctx.delta = delta

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
