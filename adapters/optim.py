"""Adam, written out: the same arithmetic as ``torch.optim.Adam(foreach=False)``, and no more.

See "Adam: A Method for Stochastic Optimization" by Kingma and Ba (https://arxiv.org/abs/1412.6980).

Why not ``torch.optim.Adam``: in torch 2.13 constructing any ``torch.optim`` optimizer imports
``torch._dynamo`` (``add_param_group`` is wrapped in ``torch._disable_dynamo``), about 1.6 s of
a short run's start-up, and each ``step`` carries hooks and profiler bookkeeping that cost more
than the arithmetic for the small networks DQN trains. tests/test_train.py checks that this class
and ``torch.optim.Adam(foreach=False)`` produce bit-identical parameters.
"""

import math
from collections.abc import Iterable

import torch

__all__ = ["Adam", "clip_grad_norm"]


class Adam:
    """Adam without weight decay or amsgrad, on a fixed list of parameters.

    Args:
      params: the parameters to train.
      lr: the learning rate.
      betas: decay rates of the first and second moment estimates.
      eps: added to the denominator for numerical stability.
    """

    def __init__(
        self,
        params: Iterable[torch.nn.Parameter],
        *,
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        self.params = list(params)
        self.lr, self.betas, self.eps = lr, betas, eps
        self.steps = 0
        self.exp_avg = [
            torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params
        ]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        """One update from the parameters' ``.grad`` (parameters without one are skipped)."""
        beta1, beta2 = self.betas
        self.steps += 1
        bias_correction1 = 1 - beta1**self.steps
        bias_correction2_sqrt = math.sqrt(1 - beta2**self.steps)
        step_size = self.lr / bias_correction1
        trained = [i for i, p in enumerate(self.params) if p.grad is not None]
        if not trained:
            return
        params: list[torch.Tensor] = [self.params[i] for i in trained]
        grads = [p.grad for p in params if p.grad is not None]
        m = [self.exp_avg[i] for i in trained]
        v = [self.exp_avg_sq[i] for i in trained]
        # Each torch._foreach_* op applies the same per-tensor kernel as the single-tensor
        # method named beside it, to every tensor at once (one dispatch, not one per tensor).
        torch._foreach_lerp_(m, grads, 1 - beta1)  # m.lerp_(g, 1 - beta1)
        torch._foreach_mul_(v, beta2)  # v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
        torch._foreach_addcmul_(v, grads, grads, value=1 - beta2)
        # p -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
        denom = torch._foreach_sqrt(v)
        torch._foreach_div_(denom, bias_correction2_sqrt)
        torch._foreach_add_(denom, self.eps)
        torch._foreach_addcdiv_(params, m, denom, value=-step_size)

    def tensors(self) -> dict[str, torch.Tensor]:
        """The moments as named tensors (``exp_avg/i``, ``exp_avg_sq/i``) for a checkpoint."""
        named = {f"exp_avg/{i}": m for i, m in enumerate(self.exp_avg)}
        named.update({f"exp_avg_sq/{i}": v for i, v in enumerate(self.exp_avg_sq)})
        return named

    def load(self, tensors: dict[str, torch.Tensor], steps: int) -> None:
        """Restores :meth:`tensors`' output and the step count.

        Raises:
          ValueError: a moment is missing, extra, of the wrong shape or dtype, or not finite.
        """
        expected = set(self.tensors())
        if set(tensors) != expected:
            raise ValueError(
                f"optimizer tensors {sorted(set(tensors) ^ expected)} missing or unexpected"
            )
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
            raise ValueError(f"optimizer steps must be a non-negative int, got {steps!r}")
        for name, stored in self.tensors().items():
            value = tensors[name]
            if value.shape != stored.shape or value.dtype != stored.dtype:
                raise ValueError(
                    f"optimizer {name} is {tuple(value.shape)} {value.dtype}, expected "
                    f"{tuple(stored.shape)} {stored.dtype}"
                )
            if not bool(torch.isfinite(value).all()):
                raise ValueError(f"optimizer {name} holds non-finite values")
        for name, stored in self.tensors().items():
            stored.copy_(tensors[name])
        self.steps = steps


@torch.no_grad()
def clip_grad_norm(params: list[torch.nn.Parameter], max_norm: float) -> None:
    """Scales the gradients so that their global 2-norm is at most ``max_norm``.

    The arithmetic of ``torch.nn.utils.clip_grad_norm_(params, max_norm)`` (per-tensor norms,
    the norm of those, ``max_norm / (norm + 1e-6)`` clamped at 1, one multiply), bit for bit
    (tests/test_optim.py), without its grouping of tensors by device and dtype on every call.
    """
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    total = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads, 2.0)), 2.0)
    scale = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    torch._foreach_mul_(grads, scale)
