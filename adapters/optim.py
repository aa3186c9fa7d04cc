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

__all__ = ["Adam"]


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
        for p, m, v in zip(self.params, self.exp_avg, self.exp_avg_sq, strict=True):
            if p.grad is None:
                continue
            grad = p.grad
            m.lerp_(grad, 1 - beta1)  # m = beta1 m + (1 - beta1) g
            v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)  # v = beta2 v + (1 - beta2) g^2
            # p -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
            denom = (v.sqrt() / bias_correction2_sqrt).add_(self.eps)
            p.addcdiv_(m, denom, value=-step_size)

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
