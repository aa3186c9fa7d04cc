"""Atari with the Nature DQN pipeline, through Gymnasium's own wrappers.

See "Human-level control through deep reinforcement learning" by Mnih et al. (2015),
"Methods: preprocessing", as Gymnasium implements it after Machado et al. (2018):

1. ``gymnasium.make("ALE/<Game>-v5", frameskip=1)``: the ALE env itself skips no frames; v5's
   sticky actions are kept (``repeat_action_probability=0.25``: the previous action is repeated
   with that probability at every emulator frame, Machado et al.'s recommended stochasticity;
   the Nature paper had none and relied on up to 30 no-ops), applied as described below;
2. :class:`gymnasium.wrappers.AtariPreprocessing`: up to ``noop_max`` no-op actions at reset, each
   action repeated ``frame_skip`` times with the rewards summed, the observation the pixel-wise
   maximum of the last two frames (Atari sprites flicker), grey, resized to 84x84 by OpenCV's
   area interpolation, uint8;
3. :class:`gymnasium.wrappers.FrameStackObservation`: the last 4 such frames, oldest first; at
   reset the first frame fills every slot (``padding_type="reset"``).

The policy's observations are therefore ``[4, 84, 84]`` uint8 stacks. The replay ring stores
only each stack's newest frame (``frame_replay.init(..., stack=4)``) and rebuilds the stacks at
sample time with the same padding at an episode's start, so the stacks the loss sees are the
ones the policy saw, at a quarter of the memory.

Two choices of ours:

- **Sticky actions outside the emulator.** The ALE draws its sticky actions from a generator of
  its own, which only a ROM reload (~0.5 s) can reseed, so a checkpoint could not rebuild an
  episode exactly. Here the ALE's own ``repeat_action_probability`` is 0 and Gymnasium's
  :class:`~gymnasium.wrappers.StickyAction` applies the same 0.25 at every emulator frame (below
  the frame skip, as the ALE does), drawing from the env's ``np_random``, which a checkpoint
  records. One difference from the ALE's: the first frame after a reset is never sticky.
- **No life-loss terminals in the env.** Gymnasium's ``terminal_on_life_loss`` ends the whole
  game at a life lost (its reset restarts the game); this pipeline always plays whole games,
  which is what evaluation and ``dqnkit play`` must see, so ``terminal_on_life_loss`` is stored
  as ``False`` here. Training's ``--terminal-on-life-loss`` instead marks the replay's
  transition where ``info["lives"]`` falls as terminal, and the game goes on.

The description :func:`describe` returns is stored as ``PolicySpec.preprocessing``; it is
received data when a policy is loaded: :meth:`AtariSpec.from_dict` checks every field's type
and range and nothing named in it is imported.
"""

import dataclasses
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import numpy.typing as npt

from dqnkit.adapters.envs import gym_make
from dqnkit.adapters.errors import CommandError

__all__ = [
    "KIND",
    "AtariSpec",
    "describe",
    "is_atari",
    "make_atari_env",
    "register_ale",
]

KIND = "atari-nature"
VERSION = 1
NAMESPACE = "ALE/"
# v5's own episode limit: 108,000 emulator frames (30 minutes at 60 Hz; Machado et al. 2018).
MAX_EPISODE_FRAMES = 108_000

Frame = npt.NDArray[np.uint8]


def is_atari(env_id: str) -> bool:
    """True for an id of the ALE's Gymnasium namespace (``"ALE/Pong-v5"``)."""
    return env_id.startswith(NAMESPACE)


@dataclass(frozen=True)
class AtariSpec:
    """The Atari pipeline's parameters: the JSON stored as ``PolicySpec.preprocessing``.

    Attributes:
      kind: ``"atari-nature"``.
      version: this layout's version.
      frameskip: the ALE env's own frame skip (1: AtariPreprocessing skips).
      repeat_action_probability: sticky actions (v5's 0.25), per emulator frame.
      sticky: how they are applied.
      full_action_space: all 18 actions instead of the game's minimal set.
      max_episode_frames: emulator frames after which an episode is truncated.
      noop_max: at most this many no-ops at reset (a uniform draw in ``[1, noop_max]``).
      frame_skip: emulator frames per action, rewards summed.
      max_pool: how the observation is made from the skipped frames.
      screen_size: the side of the square resized frame.
      grayscale_obs: grey frames (the ALE's own luminance).
      resize: the interpolation.
      terminal_on_life_loss: always False (see the module docstring).
      scale_obs: False: frames are uint8, scaled by 1/255 inside the network.
      frame_stack: frames per observation.
      padding: what fills the stack at an episode's start.
      dtype: ``"uint8"``.
    """

    kind: str = KIND
    version: int = VERSION
    frameskip: int = 1
    repeat_action_probability: float = 0.25
    sticky: str = "gymnasium StickyAction per emulator frame; the ALE's own is 0"
    full_action_space: bool = False
    max_episode_frames: int = MAX_EPISODE_FRAMES
    noop_max: int = 30
    frame_skip: int = 4
    max_pool: str = "max of the last two frames"
    screen_size: int = 84
    grayscale_obs: bool = True
    resize: str = "cv2.INTER_AREA"
    terminal_on_life_loss: bool = False
    scale_obs: bool = False
    frame_stack: int = 4
    padding: str = "reset"
    dtype: str = "uint8"

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one observation."""
        return (self.frame_stack, self.screen_size, self.screen_size)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> "AtariSpec":
        """Reads and checks a description; CommandError when this dqnkit cannot rebuild it.

        Every field must be present with its type; numbers must lie in the ranges this pipeline
        supports; descriptive fields must be exactly this dqnkit's.
        """
        if not isinstance(data, dict) or data.get("kind") != KIND:
            kind = data.get("kind") if isinstance(data, dict) else type(data).__name__
            raise CommandError(f"unknown Atari preprocessing kind {kind!r} (expected {KIND!r})")
        names = [f.name for f in dataclasses.fields(cls)]
        wrong = sorted(set(data) ^ set(names), key=str)
        if wrong:
            raise CommandError(f"Atari preprocessing: fields {wrong[:5]} missing or unknown")
        default = cls()
        for name in names:
            value, like = data[name], getattr(default, name)
            if isinstance(like, bool):
                ok = isinstance(value, bool)
            elif isinstance(like, int):
                ok = isinstance(value, int) and not isinstance(value, bool)
            elif isinstance(like, float):
                ok = isinstance(value, int | float) and not isinstance(value, bool)
            else:
                ok = isinstance(value, str)
            if not ok:
                raise CommandError(f"Atari preprocessing: {name} has the wrong type: {value!r}")
        values = {**data, "repeat_action_probability": float(data["repeat_action_probability"])}
        spec = cls(**values)
        ranges = {
            "version": (VERSION, VERSION),
            "frameskip": (1, 1),
            "repeat_action_probability": (0.0, 0.999),
            "max_episode_frames": (1, 10 * MAX_EPISODE_FRAMES),
            "noop_max": (0, 100),
            "frame_skip": (1, 8),
            "screen_size": (36, 256),  # the Nature convolutions need 36x36 at least
            "frame_stack": (1, 16),
        }
        for name, (low, high) in ranges.items():
            value = getattr(spec, name)
            if not low <= value <= high:  # also refuses NaN
                raise CommandError(f"Atari preprocessing: {name} {value!r} outside [{low}, {high}]")
        fixed = ("max_pool", "grayscale_obs", "resize", "terminal_on_life_loss", "scale_obs")
        for name in (*fixed, "sticky", "padding", "dtype"):
            if getattr(spec, name) != getattr(default, name):
                raise CommandError(
                    f"Atari preprocessing: {name} {getattr(spec, name)!r} is not supported "
                    f"(this dqnkit makes {getattr(default, name)!r})"
                )
        return spec


def describe(env_id: str, *, allow_import: bool = False) -> dict[str, Any]:
    """The JSON description of the Nature pipeline for ``env_id``, an ``ALE/`` id.

    The env is made once to check that it is an ALE game whose first action is NOOP.
    """
    description = AtariSpec(max_episode_frames=MAX_EPISODE_FRAMES).to_dict()
    make_atari_env(env_id, description, allow_import=allow_import, render_mode=None).close()
    return description


def register_ale() -> None:
    """Registers the ALE's envs with Gymnasium (idempotent): ale-py is a dependency of the
    ``atari`` extra, never a module named by an id."""
    try:
        import ale_py
    except ImportError as error:
        raise CommandError("Atari environments need ale-py: pip install 'dqnkit[atari]'") from error
    try:  # AtariPreprocessing's resize; Gymnasium's own message names another extra
        import cv2  # noqa: F401
    except ImportError as error:
        message = "Atari preprocessing needs OpenCV: pip install 'dqnkit[atari]'"
        raise CommandError(message) from error
    gym.register_envs(ale_py)


def make_atari_env(
    env_id: str,
    preprocessing: dict[str, Any],
    *,
    allow_import: bool = False,
    render_mode: str | None = "rgb_array",
) -> gym.Env[Frame, Any]:
    """``env_id`` through the Nature pipeline that ``preprocessing`` describes.

    Args:
      env_id: an ``ALE/`` id, e.g. ``"ALE/Pong-v5"``.
      preprocessing: :func:`describe`'s dict (``PolicySpec.preprocessing``), checked here.
      allow_import: as in :func:`dqnkit.adapters.envs.check_env_id`.
      render_mode: the ALE's (``"rgb_array"`` for videos, ``"human"`` for a window).

    Returns:
      an env whose observation space is ``Box(0, 255, (frame_stack, 84, 84), uint8)``.
    """
    spec = AtariSpec.from_dict(preprocessing)
    if not is_atari(env_id):
        raise CommandError(f"{env_id!r} is not an Atari id (they start with {NAMESPACE!r})")
    register_ale()
    from ale_py.env import AtariEnv

    env = gym_make(
        env_id,
        allow_import=allow_import,
        disable_env_checker=True,
        frameskip=spec.frameskip,
        repeat_action_probability=0.0,  # applied by StickyAction below
        full_action_space=spec.full_action_space,
        max_num_frames_per_episode=spec.max_episode_frames,
        render_mode=render_mode,
    )
    try:
        if not isinstance(env.unwrapped, AtariEnv):
            raise CommandError(f"{env_id} is not an ALE environment")
        meanings = env.unwrapped.get_action_meanings()
        if spec.noop_max > 0 and (not meanings or meanings[0] != "NOOP"):
            raise CommandError(f"{env_id}'s first action is not NOOP: no-op starts need it")
        wrapped: gym.Env[Any, Any] = gym.wrappers.AtariPreprocessing(
            gym.wrappers.StickyAction(env, spec.repeat_action_probability),
            noop_max=spec.noop_max,
            frame_skip=spec.frame_skip,
            screen_size=spec.screen_size,
            terminal_on_life_loss=False,
            grayscale_obs=True,
            grayscale_newaxis=False,
            scale_obs=False,
        )
        return gym.wrappers.FrameStackObservation(
            wrapped, stack_size=spec.frame_stack, padding_type="reset"
        )
    except (CommandError, gym.error.Error, ValueError) as error:
        env.close()
        if isinstance(error, CommandError):
            raise
        raise CommandError(f"cannot preprocess {env_id}: {error}") from error
