"""The wrapper that streams an environment's rendered frames to video and GIF files."""

from typing import Any

import gymnasium as gym
import numpy as np

from dqnkit.adapters.video import Watch

__all__ = ["Recorder"]

# A GIF is for a page: half the resolution and every other frame keep it a few MB.
GIF_STRIDE = 2


class Recorder(gym.Wrapper[Any, Any, Any, Any]):
    """Writes the frames of the first ``watch.episodes`` episodes of ``env`` as they come."""

    def __init__(self, env: gym.Env[Any, Any], watch: Watch) -> None:
        super().__init__(env)
        self._watch = watch
        self._episode = 0
        self._step = 0
        self._writers: list[tuple[Any, int]] = []
        if watch.video is not None or watch.gif is not None:
            import imageio.v2 as imageio

            fps = int(env.metadata.get("render_fps") or 30)
            if watch.video is not None:
                self._writers.append(
                    (imageio.get_writer(watch.video, fps=fps, macro_block_size=1), 1)
                )
            if watch.gif is not None:
                stride = GIF_STRIDE
                gif = imageio.get_writer(watch.gif, mode="I", duration=1000 * stride / fps, loop=0)
                self._writers.append((gif, stride))

    def reset(self, **kwargs: Any) -> Any:
        result = self.env.reset(**kwargs)
        self._episode += 1
        self._step = 0
        self._frame()
        return result

    def step(self, action: Any) -> Any:
        result = self.env.step(action)
        self._step += 1
        self._frame()
        return result

    def _frame(self) -> None:
        # A "human" env draws its window itself on every step: only files need frames here.
        if self._episode > self._watch.episodes or not self._writers:
            return
        frame = np.asarray(self.env.render())
        for writer, stride in self._writers:
            if self._step % stride == 0:
                writer.append_data(frame[::stride, ::stride] if stride > 1 else frame)

    def close(self) -> None:
        for writer, _ in self._writers:
            writer.close()
        self._writers = []
        super().close()
