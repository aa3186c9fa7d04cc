"""dqnkit.core: the pure maths of DQN over tensors.

No environments, files or global random state: every function takes its state and its
``torch.Generator`` explicitly. The one mutation is the documented in-place write of
:func:`replay.add` and :func:`frame_replay.add` into storage the caller allocated with their
``init``.
"""

from dqnkit.core import frame_replay, replay
from dqnkit.core.exploration import epsilon_greedy, exponential_epsilon, linear_epsilon
from dqnkit.core.frame_replay import FrameReplayState
from dqnkit.core.networks import ConvQNetwork, QNetwork, soft_update
from dqnkit.core.replay import ReplayState
from dqnkit.core.transition import Transition
from dqnkit.core.value_learning import huber_loss, td_target

__all__ = [
    "ConvQNetwork",
    "FrameReplayState",
    "QNetwork",
    "ReplayState",
    "Transition",
    "epsilon_greedy",
    "exponential_epsilon",
    "frame_replay",
    "huber_loss",
    "linear_epsilon",
    "replay",
    "soft_update",
    "td_target",
]
