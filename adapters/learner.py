"""The learner: the networks, the optimizer, and one update from a batch.

:func:`build_network` is the one place a network head is chosen (the seam for other heads);
:meth:`Learner.update` is CleanRL's update in a screen: Q of the taken actions, the TD target
under ``no_grad``, the Huber loss (weighted when the batch carries importance weights), a
clipped gradient step. It returns the TD error so a prioritized memory can take new priorities.
"""

import math
from typing import NamedTuple

import torch
from torch import nn

from dqnkit.adapters.config import TrainConfig
from dqnkit.adapters.errors import CommandError
from dqnkit.adapters.experience import Sample
from dqnkit.adapters.optim import Adam, clip_grad_norm
from dqnkit.core import (
    ConvQNetwork,
    NatureQNetwork,
    QNetwork,
    huber_loss,
    soft_update,
    td_target,
)

__all__ = ["Learner", "TrainingDiverged", "Update", "build_network"]


class TrainingDiverged(CommandError):
    """The loss or the weights stopped being finite: the run stops, keeping its checkpoints."""


class Update(NamedTuple):
    """What one gradient step produced: the mean loss and the per-row TD error ``[B]``."""

    loss: torch.Tensor
    td_error: torch.Tensor


def build_network(obs_shape: tuple[int, ...], n_actions: int, config: TrainConfig) -> nn.Module:
    """A CNN for frames ``[C, H, W]`` (``config.cnn_kind``: the tutorial's or the Nature
    DQN's), the tutorial's MLP for everything else; with ``config.dueling`` their dueling
    variants.

    Raises:
      CommandError: the network would not fit in memory (a huge ``--hidden``).
    """
    try:
        if len(obs_shape) == 3:  # screens: Atari's [4, 84, 84] stacks or CartPole's bands
            cnn = NatureQNetwork if config.cnn_kind == "nature" else ConvQNetwork
            return cnn(obs_shape, n_actions, dueling=config.dueling)
        return QNetwork(math.prod(obs_shape), n_actions, config.hidden, dueling=config.dueling)
    except (RuntimeError, MemoryError) as error:
        raise CommandError(
            f"cannot allocate the Q-network (--hidden {','.join(map(str, config.hidden))}): "
            f"{str(error).splitlines()[0][:120]}"
        ) from error


class Learner:
    """Online and target networks with their optimizer (Adam, :mod:`dqnkit.adapters.optim`).

    Args:
      config: the run's hyperparameters (gamma, huber_delta, double_dqn, max_grad_norm, lr).
      obs_shape: one observation's shape.
      n_actions: the number of actions.
      device: where the networks live.
      channels_last: convolution weights in the channels-last layout (None: for a CNN on the
        CPU, where oneDNN's convolutions run faster on it; see benchmarks/README.md). The values
        agree with the default layout's to rounding, not bit for bit; a run is the same run
        either way, resumed or not, because every process of it lays its weights out alike.
    """

    def __init__(
        self,
        config: TrainConfig,
        obs_shape: tuple[int, ...],
        n_actions: int,
        device: torch.device,
        *,
        channels_last: bool | None = None,
    ) -> None:
        self.config = config
        if channels_last is None:
            channels_last = len(obs_shape) == 3 and device.type == "cpu"
        layout = torch.channels_last if channels_last else torch.contiguous_format
        with torch.random.fork_rng(devices=[]):  # initial weights from the seed, not global state
            torch.manual_seed(config.seed)
            online = build_network(obs_shape, n_actions, config)
        target = build_network(obs_shape, n_actions, config)
        self.online = online.to(device, memory_format=layout)  # type: ignore[call-overload]
        self.target = target.to(device, memory_format=layout)  # type: ignore[call-overload]
        soft_update(self.target, self.online, tau=1.0)
        # The target is never trained: batch norm (ConvQNetwork) uses the running statistics
        # that soft_update copies from the online network, and acting uses them too.
        self.target.eval()
        self._batch_norm = any(
            isinstance(m, nn.modules.batchnorm._BatchNorm) for m in self.online.modules()
        )
        self.optimizer = Adam(self.online.parameters(), lr=config.learning_rate)

    def q_values(self, obs: torch.Tensor) -> torch.Tensor:
        """Q-values for acting, without gradient; in eval mode where batch norm would otherwise
        normalise by one frame's statistics."""
        with torch.inference_mode():
            if not self._batch_norm:
                return self.online(obs)  # type: ignore[no-any-return]
            self.online.eval()
            try:
                return self.online(obs)  # type: ignore[no-any-return]
            finally:
                self.online.train()

    def update(self, sample: Sample) -> Update:
        """One gradient step on the Huber loss of the TD error."""
        config, batch = self.config, sample.batch
        q = self.online(batch.obs).gather(1, batch.action[:, None]).squeeze(1)
        with torch.no_grad():  # targets are constants: no gradient into either network here
            next_q = self.target(batch.next_obs)
            next_q_online = self.online(batch.next_obs) if config.double_dqn else None
            # Atari: the reward's sign in the loss only (Mnih et al. 2015); returns stay unclipped.
            # n-step rows (a discount per row) are sums the memory clipped reward by reward.
            clip = config.clip_rewards and sample.discount is None
            reward = batch.reward.sign() if clip else batch.reward
            # n-step rows bootstrap with gamma ** m, their own (Sample.discount); others with gamma.
            gamma = config.gamma if sample.discount is None else sample.discount
            y = td_target(reward, batch.terminated, next_q, gamma, next_q_online)
        td_error = q - y
        losses = huber_loss(td_error, config.huber_delta)
        loss = losses.mean() if sample.weights is None else (sample.weights * losses).mean()
        self.optimizer.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        if config.max_grad_norm:
            clip_grad_norm(self.optimizer.params, config.max_grad_norm)
        self.optimizer.step()
        return Update(loss.detach(), td_error.detach())

    def sync_target(self) -> None:
        """Moves the target network towards the online one by ``tau`` (1: a hard copy)."""
        soft_update(self.target, self.online, self.config.tau)

    def weights_finite(self) -> bool:
        return all(bool(torch.isfinite(p).all()) for p in self.online.parameters())
