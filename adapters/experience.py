"""A run's replay memory: steps staged as numpy rows, written to the core buffer in chunks.

Two core buffers sit behind one interface:

- :mod:`dqnkit.core.replay` for vector observations: a row is a whole transition (a CartPole
  state is 16 bytes; sharing it would save nothing and cost an indirection);
- :mod:`dqnkit.core.frame_replay` for image observations ``[C, H, W]``: every frame is stored
  once, next_obs shared with the following obs, episode boundaries kept exact.

Staging keeps the per-step cost to appending references; :meth:`Experience.flush` concatenates
the staged steps and makes one write per field.
"""

from typing import Any

import numpy as np
import torch

from dqnkit.core import FrameReplayState, ReplayState, Transition, frame_replay, replay

__all__ = ["Experience", "example_row", "shares_frames"]

Array = np.ndarray[Any, Any]


def example_row(obs_shape: tuple[int, ...], obs_dtype: torch.dtype) -> Transition:
    """One zero transition as the loop stores them: int64 action, float32 reward, bool flag."""
    obs = torch.zeros(obs_shape, dtype=obs_dtype)
    return Transition(
        obs=obs,
        action=torch.zeros((), dtype=torch.int64),
        reward=torch.zeros((), dtype=torch.float32),
        next_obs=obs.clone(),
        terminated=torch.zeros((), dtype=torch.bool),
    )


def shares_frames(obs_shape: tuple[int, ...]) -> bool:
    """True for image observations ``[C, H, W]``: they go into a frame-sharing buffer."""
    return len(obs_shape) == 3


class Experience:
    """The replay buffer of a run of ``streams`` environments, and the steps not yet in it."""

    def __init__(self, state: ReplayState | FrameReplayState) -> None:
        self.state = state
        self._staged: list[tuple[Array, ...]] = []

    @classmethod
    def create(
        cls, capacity: int, example: Transition, streams: int, device: torch.device
    ) -> "Experience":
        """An empty buffer; frame-sharing when ``example.obs`` is an image."""
        if shares_frames(tuple(example.obs.shape)):
            return cls(frame_replay.init(capacity, example, streams=streams, device=device))
        return cls(replay.init(capacity, example, device=device))

    def start(self, streams: Array, obs: Array) -> None:
        """Records the first observation of a new episode for each of ``streams``."""
        if isinstance(self.state, FrameReplayState) and len(streams):
            n = len(streams)
            self._staged.append(
                (
                    streams,
                    obs,
                    np.ones(n, dtype=np.bool_),
                    np.zeros(n, dtype=np.int64),
                    np.zeros(n, dtype=np.float32),
                    np.zeros(n, dtype=np.bool_),
                )
            )

    def step(
        self,
        obs: Array,
        action: Array,
        reward: Array,
        next_obs: Array,
        terminated: Array,
    ) -> None:
        """Records one step of every environment: ``obs[i]`` to ``next_obs[i]`` (the real final
        observation when the episode ended)."""
        reward = reward.astype(np.float32)
        if isinstance(self.state, FrameReplayState):
            streams = np.arange(len(action), dtype=np.int64)
            first = np.zeros(len(action), dtype=np.bool_)
            self._staged.append((streams, next_obs, first, action, reward, terminated))
        else:
            self._staged.append((obs, action, reward, next_obs, terminated))

    def flush(self) -> None:
        """Writes the staged steps into the buffer (one copy per field, not one per row)."""
        if not self._staged:
            return
        device = (
            self.state.obs.device
            if isinstance(self.state, FrameReplayState)
            else self.state.storage.obs.device
        )
        columns = [
            torch.from_numpy(np.concatenate(column)).to(device)
            for column in zip(*self._staged, strict=True)
        ]
        self._staged.clear()
        if isinstance(self.state, FrameReplayState):
            self.state = frame_replay.add(self.state, frame_replay.Entry(*columns))
        else:
            self.state = replay.add(self.state, Transition(*columns))

    def sample(self, batch_size: int, generator: torch.Generator) -> Transition:
        """A uniform batch of the stored transitions (call :meth:`flush` first)."""
        if isinstance(self.state, FrameReplayState):
            return frame_replay.sample(self.state, batch_size, generator)
        return replay.sample(self.state, batch_size, generator)
