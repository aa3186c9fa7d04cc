"""dqnkit.core: the pure maths of DQN over tensors.

No environments, files or global random state: every function takes its state and its
``torch.Generator`` explicitly. The one mutation is :func:`replay.add`'s documented in-place
write into storage the caller allocated with :func:`replay.init`.
"""

from dqnkit.core import replay
from dqnkit.core.exploration import epsilon_greedy, exponential_epsilon, linear_epsilon
from dqnkit.core.networks import ConvQNetwork, QNetwork, soft_update
from dqnkit.core.replay import ReplayState
from dqnkit.core.transition import Transition
from dqnkit.core.value_learning import huber_loss, td_target

__all__ = [
    "ConvQNetwork",
    "QNetwork",
    "ReplayState",
    "Transition",
    "epsilon_greedy",
    "exponential_epsilon",
    "huber_loss",
    "linear_epsilon",
    "replay",
    "soft_update",
    "td_target",
]
