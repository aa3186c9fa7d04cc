"""dqnkit.core: the pure maths of DQN over tensors.

No environments, files or global random state in the functions: each takes its state and its
``torch.Generator`` explicitly. What does mutate, and is documented where it happens:

- :func:`replay.add` and :func:`frame_replay.add` write in place into the storage the caller
  allocated with their ``init`` (that pre-allocation is the point);
- :func:`sum_tree.update`, :func:`prioritized.add` and :func:`prioritized.update_priorities`
  write in place into the sum tree's tensor (and the ring's storage) allocated by their ``init``;
- :func:`soft_update` writes the target network's parameters and buffers in place;
- a network with batch norm (:class:`ConvQNetwork`) updates its running statistics on every
  forward pass in training mode, as any ``nn.BatchNorm2d`` does;
- the network constructors draw their initial weights from the global random state unless
  they are given a ``generator=``; with one, the global state is left as it was.
"""

from dqnkit.core import frame_replay, prioritized, replay, sum_tree
from dqnkit.core.exploration import epsilon_greedy, exponential_epsilon, linear_epsilon
from dqnkit.core.frame_replay import FrameReplayState
from dqnkit.core.networks import (
    ConvQNetwork,
    NatureQNetwork,
    QNetwork,
    dueling_q,
    soft_update,
)
from dqnkit.core.prioritized import PrioritizedState, importance_weights
from dqnkit.core.replay import ReplayState
from dqnkit.core.transition import Transition
from dqnkit.core.value_learning import huber_loss, n_step_return, td_target

__all__ = [
    "ConvQNetwork",
    "FrameReplayState",
    "NatureQNetwork",
    "PrioritizedState",
    "QNetwork",
    "ReplayState",
    "Transition",
    "dueling_q",
    "epsilon_greedy",
    "exponential_epsilon",
    "frame_replay",
    "huber_loss",
    "importance_weights",
    "linear_epsilon",
    "n_step_return",
    "prioritized",
    "replay",
    "soft_update",
    "sum_tree",
    "td_target",
]
