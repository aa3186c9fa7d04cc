"""The module every exported format is made from: observations in, (q_values, action) out."""

import torch
from torch import nn

__all__ = ["INPUT_NAME", "OUTPUT_NAMES", "PolicyGraph"]

INPUT_NAME = "obs"
OUTPUT_NAMES = ("q_values", "action")


class PolicyGraph(nn.Module):
    """A Q-network with its greedy action computed inside the graph.

    The network's own ``forward`` holds the preprocessing (the cast to float32, and for
    :class:`~dqnkit.core.ConvQNetwork` the scaling of uint8 frames), so the exported graph takes
    the raw observation batch exactly as the environment gives it.

    Args:
      network: a Q-network mapping ``[B, *obs_shape]`` to ``[B, n_actions]``; set to eval mode.
    """

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network
        self.eval()  # batch norm uses its running statistics, dropout is off

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Q-values and greedy actions for a batch.

        Args:
          obs: ``[B, *obs_shape]`` observations in the policy's dtype.

        Returns:
          ``q_values [B, n_actions]`` float32 and ``action [B]`` int64, the first argmax on ties.
        """
        q_values = self.network(obs)
        return q_values, torch.argmax(q_values, dim=1)
