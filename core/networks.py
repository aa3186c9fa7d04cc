"""The tutorial's Q-networks and the target-network update."""

from collections.abc import Sequence
from itertools import pairwise

import torch
import torch.nn.functional as F
from torch import nn

from dqnkit.core._checks import check_unit_interval

__all__ = ["ConvQNetwork", "QNetwork", "conv_output_size", "soft_update"]


class QNetwork(nn.Module):
    """An MLP from a flat observation to one Q-value per action (the tutorial's ``DQN``).

    Args:
      obs_dim: the observation's length.
      n_actions: the number of discrete actions.
      hidden: the width of each hidden layer, each followed by a ReLU.
    """

    def __init__(self, obs_dim: int, n_actions: int, hidden: Sequence[int] = (128, 128)) -> None:
        super().__init__()
        _check_positive("obs_dim", obs_dim)
        _check_positive("n_actions", n_actions)
        for width in hidden:
            _check_positive("each hidden width", width)
        self.obs_dim = obs_dim
        self.n_actions = n_actions
        self.hidden = tuple(hidden)
        widths = [obs_dim, *hidden, n_actions]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in pairwise(widths))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """``[B, obs_dim]`` observations (any real dtype) to ``[B, n_actions]`` Q-values."""
        # F.linear on each layer's tensors rather than calling the Linear and ReLU modules:
        # the same maths without per-module call overhead, about a third of an acting step's
        # cost for the tutorial's small MLP.
        x = obs.to(torch.float32)
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = F.linear(x, layer.weight, layer.bias)  # type: ignore[arg-type]
            if i < last:
                x = torch.relu(x)
        return x


def conv_output_size(size: int, kernel: int = 5, stride: int = 2) -> int:
    """The length of one spatial dimension after an unpadded convolution."""
    return (size - kernel) // stride + 1


class ConvQNetwork(nn.Module):
    """The pixel tutorial's CNN: three 5x5 stride-2 convolutions with batch norm, a linear head.

    Input is ``[B, C, H, W]``. uint8 frames are scaled to ``[0, 1]`` inside the network, so a
    replay buffer can hold frames as bytes and an exported graph takes them as they are.

    Args:
      in_shape: ``(C, H, W)`` of one observation (the tutorial's 3x40x80 strip gives a head of 448).
      n_actions: the number of discrete actions.
    """

    def __init__(self, in_shape: Sequence[int], n_actions: int) -> None:
        super().__init__()
        if len(in_shape) != 3:
            raise ValueError(f"in_shape must be (C, H, W), got {tuple(in_shape)}")
        channels, height, width = (int(d) for d in in_shape)
        _check_positive("channels", channels)
        _check_positive("n_actions", n_actions)
        for _ in range(3):
            if height < 5 or width < 5:
                raise ValueError(
                    f"in_shape {tuple(in_shape)} is too small for three 5x5 stride-2 "
                    "convolutions (each needs at least 5x5 input)"
                )
            height, width = conv_output_size(height), conv_output_size(width)
        self.in_shape = (channels, int(in_shape[1]), int(in_shape[2]))
        self.n_actions = n_actions
        self.features = nn.Sequential(
            nn.Conv2d(channels, 16, kernel_size=5, stride=2),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.Conv2d(16, 32, kernel_size=5, stride=2),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.Conv2d(32, 32, kernel_size=5, stride=2),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.Flatten(),
        )
        self.head = nn.Linear(32 * height * width, n_actions)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W]`` frames (uint8 in ``[0, 255]`` or float) to ``[B, n_actions]``."""
        x = obs.to(torch.float32) / 255.0 if obs.dtype == torch.uint8 else obs.to(torch.float32)
        return self.head(self.features(x))  # type: ignore[no-any-return]


def soft_update(target: nn.Module, online: nn.Module, tau: float) -> None:
    """Polyak-averages ``online``'s parameters into ``target``'s, in place; copies buffers.

    See "Continuous control with deep reinforcement learning" by Lillicrap et al.
    (https://arxiv.org/abs/1509.02971); ``tau = 1`` is DQN's periodic hard copy (Mnih et al. 2015).

    Args:
      target: the module updated in place.
      online: the module read from; it must have the same parameter and buffer names and shapes.
      tau: the weight of ``online``, in ``[0, 1]``.

    Buffers (batch-norm running statistics, counters) are copied outright: averaging a counter
    or mixing statistics of two networks has no meaning.
    """
    check_unit_interval("tau", tau)
    target_params = dict(target.named_parameters())
    online_params = dict(online.named_parameters())
    target_buffers = dict(target.named_buffers())
    online_buffers = dict(online.named_buffers())
    for kind, t_named, o_named in (
        ("parameters", target_params, online_params),
        ("buffers", target_buffers, online_buffers),
    ):
        if t_named.keys() != o_named.keys():
            raise ValueError(
                f"target and online have different {kind}: "
                f"{sorted(t_named.keys() ^ o_named.keys())}"
            )
        for name, t in t_named.items():
            if t.shape != o_named[name].shape:
                raise ValueError(
                    f"{kind[:-1]} {name!r} has shape {tuple(t.shape)} in target and "
                    f"{tuple(o_named[name].shape)} in online"
                )
    with torch.no_grad():
        for name, t in target_params.items():
            if tau == 1.0:
                t.copy_(online_params[name])
            else:
                # theta_target <- tau * theta_online + (1 - tau) * theta_target
                t.lerp_(online_params[name], tau)
        for name, b in target_buffers.items():
            b.copy_(online_buffers[name])


def _check_positive(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
