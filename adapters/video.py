"""Watching a policy: a window (``--render``), an MP4 (``--video``) or a GIF (``--gif``).

Only the first environment of an evaluation is rendered, so the other episodes run at full
speed; rendering changes nothing in the episodes themselves (the same returns with and
without it). Frames come from the environment's ``rgb_array`` render and are streamed to
imageio (the ``video`` extra: ``pip install -e .[video]``) as they come, so a long episode
never sits in memory.
"""

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dqnkit.adapters.errors import CommandError

if TYPE_CHECKING:  # the parsers import this module: gymnasium only when recording
    import gymnasium as gym

__all__ = ["Watch", "add_watch_options", "watch_from_args"]


class Watch:
    """Where the first environment's episodes go: a window, or video/GIF files, or nowhere."""

    def __init__(
        self, *, render: bool, video: Path | None, gif: Path | None, episodes: int
    ) -> None:
        self.render = render
        self.video = video
        self.gif = gif
        self.episodes = episodes

    @property
    def active(self) -> bool:
        return self.render or self.video is not None or self.gif is not None

    def render_mode(self) -> str:
        return "human" if self.render and not (self.video or self.gif) else "rgb_array"

    def check(self, *, pixels: bool) -> None:
        """One-line errors before any episode: no display, no imageio, unwritable paths."""
        if self.render and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            raise CommandError(
                "--render needs a display (DISPLAY is not set); write --gif FILE or "
                "--video FILE instead"
            )
        if self.render and (pixels or self.video or self.gif):
            raise CommandError("--render shows a window: use it alone, and not for a pixel policy")
        for flag, path, suffix in (("--video", self.video, ".mp4"), ("--gif", self.gif, ".gif")):
            if path is None:
                continue
            if path.suffix.lower() != suffix:
                raise CommandError(f"{flag} {path}: the file name must end in {suffix}")
            if not path.parent.is_dir():
                raise CommandError(f"{flag} {path}: no such folder {path.parent}")
        if self.video or self.gif:
            try:
                import imageio  # noqa: F401
            except ImportError:
                raise CommandError(
                    "--video and --gif need imageio: pip install -e '.[video]' (the video extra)"
                ) from None

    def wrap(self, make: Callable[[], "gym.Env[Any, Any]"]) -> Callable[[], "gym.Env[Any, Any]"]:
        """``make`` for the first environment, recording its first ``episodes`` episodes."""
        if self.video is None and self.gif is None:
            return make
        from dqnkit.adapters.recorder import Recorder

        return lambda: Recorder(make(), self)


def add_watch_options(parser: Any) -> None:
    """``--render``, ``--video FILE``, ``--gif FILE`` and ``--record-episodes N``."""
    from dqnkit.adapters import cli_args

    group = parser.add_argument_group("watching (the first environment's episodes)")
    group.add_argument(
        "--render", action="store_true", help="show the episodes in a window (default: off)"
    )
    group.add_argument(
        "--video", type=Path, metavar="FILE.mp4", help="write them as an MP4 (default: none)"
    )
    group.add_argument(
        "--gif",
        type=Path,
        metavar="FILE.gif",
        help="write them as a GIF, half size, every other frame (default: none)",
    )
    group.add_argument(
        "--record-episodes",
        type=cli_args.positive_int,
        default=1,
        metavar="N",
        help="how many of them to show or record (default: 1)",
    )


def watch_from_args(args: Any) -> Watch:
    return Watch(
        render=bool(args.render), video=args.video, gif=args.gif, episodes=args.record_episodes
    )
