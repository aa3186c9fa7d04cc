"""The tutorial's Q-networks, the Nature DQN network, the dueling head and the target update."""

import contextlib
import math
from collections.abc import Iterator, Sequence
from itertools import pairwise

import torch
import torch.nn.functional as F
from torch import nn

from dqnkit.core._checks import check_positive_int, check_rank, check_unit_interval

__all__ = [
    "ConvQNetwork",
    "NatureQNetwork",
    "QNetwork",
    "conv_output_size",
    "dueling_q",
    "soft_update",
]


def dueling_q(value: torch.Tensor, advantage: torch.Tensor) -> torch.Tensor:
    """Combines a state value and action advantages into Q-values, the dueling way.

    See "Dueling Network Architectures for Deep Reinforcement Learning" by Wang et al. (2016)
    (https://arxiv.org/abs/1511.06581), equation (9).

    Args:
      value: ``[B, 1]`` or ``[B]`` state values ``V(s)``.
      advantage: ``[B, A]`` advantages ``A(s, a)``.

    Returns:
      ``[B, A]`` Q-values ``V(s) + A(s, a) - mean_a' A(s, a')``: adding a constant to every
      advantage of a row leaves them unchanged, and their mean over actions is ``V(s)``.
    """
    check_rank("advantage", advantage, 2)
    batch = advantage.shape[0]
    if value.shape not in ((batch,), (batch, 1)):
        raise ValueError(
            f"value must have shape [B] or [B, 1] = {[batch, 1]} to match advantage "
            f"{tuple(advantage.shape)}, got {tuple(value.shape)}"
        )
    return _combine(value.reshape(batch, 1), advantage)


def _combine(value: torch.Tensor, advantage: torch.Tensor) -> torch.Tensor:
    """:func:`dueling_q` without its checks, for the networks' forward (TorchScript compiles it)."""
    # Q = V + (A - mean_a A): the mean, not the max, of equation (8), which the paper found
    # more stable; V alone is then identifiable as the mean of Q over actions.
    return value + (advantage - advantage.mean(dim=1, keepdim=True))


class QNetwork(nn.Module):
    """An MLP from a flat observation to one Q-value per action (the tutorial's ``DQN``).

    Args:
      obs_dim: the observation's length.
      n_actions: the number of discrete actions.
      hidden: the width of each hidden layer, each followed by a ReLU.
      dueling: when True, the last hidden layer feeds two linear heads, a value ``[B, 1]`` and
        advantages ``[B, n_actions]``, combined by :func:`dueling_q` (Wang et al. 2016).
      generator: when given, the initial weights are drawn from it (with PyTorch's default
        distributions) and the global random state is left untouched; when None they come
        from the global random state, as for any ``nn.Linear``.
    """

    def __init__(
        self,
        obs_dim: int,
        n_actions: int,
        hidden: Sequence[int] = (128, 128),
        *,
        dueling: bool = False,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        check_positive_int("obs_dim", obs_dim)
        check_positive_int("n_actions", n_actions)
        for width in hidden:
            check_positive_int("each hidden width", width)
        self.obs_dim = obs_dim
        self.n_actions = n_actions
        self.hidden = tuple(hidden)
        self.dueling = bool(dueling)
        widths = [obs_dim, *hidden, n_actions]
        with _initial_weights(generator):
            self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in pairwise(widths))
            # The value head of a dueling network; the last of ``layers`` gives the advantages.
            self.value = nn.Linear(widths[-2], 1) if self.dueling else None
        _reset_from(self, generator)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """``[B, obs_dim]`` observations (any real dtype) to ``[B, n_actions]`` Q-values."""
        # F.linear on each layer's tensors rather than calling the Linear and ReLU modules:
        # the same maths without per-module call overhead, about a third of an acting step's
        # cost for the tutorial's small MLP.
        x = obs.to(torch.float32)
        last = len(self.layers) - 1
        features = x  # the last hidden layer's output, which the value head reads too
        for i, layer in enumerate(self.layers):
            if i == last:
                features = x
            x = F.linear(x, layer.weight, layer.bias)  # type: ignore[arg-type]
            if i < last:
                x = torch.relu(x)
        if self.value is not None:
            x = _combine(F.linear(features, self.value.weight, self.value.bias), x)
        return x


def conv_output_size(size: int, kernel: int = 5, stride: int = 2) -> int:
    """The length of one spatial dimension after an unpadded convolution."""
    return (size - kernel) // stride + 1


def _scale_frames(obs: torch.Tensor) -> torch.Tensor:
    """uint8 frames in ``[0, 255]`` to float32 in ``[0, 1]``; any other dtype to float32 as is."""
    return obs.to(torch.float32) / 255.0 if obs.dtype == torch.uint8 else obs.to(torch.float32)


class ConvQNetwork(nn.Module):
    """The pixel tutorial's CNN: three 5x5 stride-2 convolutions with batch norm, a linear head.

    Input is ``[B, C, H, W]``. uint8 frames are scaled to ``[0, 1]`` inside the network, so a
    replay buffer can hold frames as bytes and an exported graph takes them as they are.

    Args:
      in_shape: ``(C, H, W)`` of one observation (the tutorial's 3x40x80 strip gives a head of 448).
      n_actions: the number of discrete actions.
      dueling: when True, the features feed two linear heads, a value (``value``) and the
        advantages (``head``), combined by :func:`dueling_q` (Wang et al. 2016).
      generator: the source of the initial weights, as for :class:`QNetwork`.
    """

    def __init__(
        self,
        in_shape: Sequence[int],
        n_actions: int,
        *,
        dueling: bool = False,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        channels, height, width = _check_in_shape(in_shape)
        check_positive_int("n_actions", n_actions)
        for _ in range(3):
            if height < 5 or width < 5:
                raise ValueError(
                    f"in_shape {tuple(in_shape)} is too small for three 5x5 stride-2 "
                    "convolutions (each needs at least 5x5 input)"
                )
            height, width = conv_output_size(height), conv_output_size(width)
        self.in_shape = (channels, int(in_shape[1]), int(in_shape[2]))
        self.n_actions = n_actions
        self.dueling = bool(dueling)
        with _initial_weights(generator):
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
            self.value = nn.Linear(32 * height * width, 1) if self.dueling else None
        _reset_from(self, generator)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W]`` frames (uint8 in ``[0, 255]`` or float) to ``[B, n_actions]``."""
        features = self.features(_scale_frames(obs))
        out: torch.Tensor = self.head(features)
        if self.value is not None:
            out = _combine(self.value(features), out)
        return out


class NatureQNetwork(nn.Module):
    """The Nature DQN network for Atari: three convolutions and a 512-unit layer.

    See "Human-level control through deep reinforcement learning" by Mnih et al. (2015)
    (https://www.nature.com/articles/nature14236), "Methods: model architecture": 32 8x8
    filters stride 4, 64 4x4 stride 2, 64 3x3 stride 1, each with a ReLU, then a fully
    connected layer of 512 ReLUs and one linear output per action. An 84x84 input gives
    7x7x64 = 3136 features.

    Input is ``[B, C, H, W]``; uint8 frames are scaled by 1/255 inside the network, as in
    :class:`ConvQNetwork`.

    Args:
      in_shape: ``(C, H, W)`` of one observation, the stack of ``C`` frames (default 4x84x84).
      n_actions: the number of discrete actions (required; it follows ``in_shape`` only so
        that ``in_shape`` can keep its default).
      dueling: when True, the convolutional features feed two streams of a 512-unit layer and
        a linear output each, a value and the advantages, combined by :func:`dueling_q`: the
        architecture of Wang et al. 2016 (https://arxiv.org/abs/1511.06581), section 4.2.
      generator: the source of the initial weights, as for :class:`QNetwork`.
    """

    def __init__(
        self,
        in_shape: Sequence[int] = (4, 84, 84),
        n_actions: int | None = None,
        *,
        dueling: bool = False,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if n_actions is None:
            raise ValueError("NatureQNetwork needs n_actions, the number of discrete actions")
        channels, height, width = _check_in_shape(in_shape)
        check_positive_int("n_actions", n_actions)
        for kernel, stride in ((8, 4), (4, 2), (3, 1)):
            if height < kernel or width < kernel:
                raise ValueError(
                    f"in_shape {tuple(in_shape)} is too small for the Nature DQN's "
                    "convolutions (8x8/4, 4x4/2, 3x3/1; 84x84 is the usual input)"
                )
            height = conv_output_size(height, kernel, stride)
            width = conv_output_size(width, kernel, stride)
        self.in_shape = (channels, int(in_shape[1]), int(in_shape[2]))
        self.n_actions = n_actions
        self.dueling = bool(dueling)
        flat = 64 * height * width
        with _initial_weights(generator):
            self.features = nn.Sequential(
                nn.Conv2d(channels, 32, kernel_size=8, stride=4),
                nn.ReLU(),
                nn.Conv2d(32, 64, kernel_size=4, stride=2),
                nn.ReLU(),
                nn.Conv2d(64, 64, kernel_size=3, stride=1),
                nn.ReLU(),
                nn.Flatten(),
            )
            self.head = nn.Sequential(nn.Linear(flat, 512), nn.ReLU(), nn.Linear(512, n_actions))
            self.value = (
                nn.Sequential(nn.Linear(flat, 512), nn.ReLU(), nn.Linear(512, 1))
                if self.dueling
                else None
            )
        _reset_from(self, generator)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W]`` frames (uint8 in ``[0, 255]`` or float) to ``[B, n_actions]``."""
        features = self.features(_scale_frames(obs))
        out: torch.Tensor = self.head(features)
        if self.value is not None:
            out = _combine(self.value(features), out)
        return out


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


def _check_in_shape(in_shape: Sequence[int]) -> tuple[int, int, int]:
    if len(in_shape) != 3:
        raise ValueError(f"in_shape must be (C, H, W), got {tuple(in_shape)}")
    channels, height, width = (int(d) for d in in_shape)
    check_positive_int("channels", channels)
    return channels, height, width


@contextlib.contextmanager
def _initial_weights(generator: torch.Generator | None) -> Iterator[None]:
    """Leaves the global random state as it was when the weights will come from ``generator``.

    The layers still draw their default initialisation from the global state while they are
    built (PyTorch offers no other way), so that draw is undone; :func:`_reset_from` then
    redraws every weight from ``generator``.
    """
    if generator is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        yield


def _reset_from(module: nn.Module, generator: torch.Generator | None) -> None:
    """Redraws each linear and convolution layer's weights from ``generator``, if given.

    The distributions are those of ``nn.Linear.reset_parameters`` and
    ``nn.Conv2d.reset_parameters``: weights Kaiming-uniform with ``a = sqrt(5)``, i.e.
    ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``, and biases from the same interval. Batch-norm
    layers start at ones and zeros whatever the generator.
    """
    if generator is None:
        return
    with torch.no_grad():
        for layer in module.modules():
            if isinstance(layer, nn.Linear | nn.Conv2d):
                nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5), generator=generator)
                if layer.bias is not None:
                    fan_in = layer.weight[0].numel()
                    bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
                    nn.init.uniform_(layer.bias, -bound, bound, generator=generator)
