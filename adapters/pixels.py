"""CartPole from pixels: rendered screens cropped around the cart, downsampled, as uint8 frames.

Follows ``get_cart_location`` / ``get_screen`` of the original PyTorch DQN tutorial (Paszke,
"Reinforcement Learning (DQN) Tutorial", https://pytorch.org/tutorials/intermediate/
reinforcement_q_learning.html, the pixel version): keep the rows 40%..80% of the screen's
height, a 320-pixel-wide window centred on the cart (clamped at both screen edges), shrink it
to 40 pixels high, and feed the network the difference of the last two screens.

Choices of ours, each stated in :func:`describe`'s description and in ``benchmarks/README.md``:

- **Grey from the green channel.** CartPole draws a white background, a black cart and track, a
  tan pole (green 152) and a blue-grey axle (green 132): the green channel tells them all apart,
  costs nothing to extract and makes frames 1 channel instead of 3 (3x less replay memory).
- **Area downsampling by 4 in numpy** (pairwise sums in uint16, rounded mean): 160x600 -> 40x150
  in ~0.05 ms, where torchvision's cubic resize is a dependency and ``interpolate`` ~0.4 ms.
- **The whole band is downsampled, then the window is cut at the current cart position from
  every screen in the history**, so the previous screen is seen through the *same* window as the
  current one. The tutorial crops each screen around the cart at its own time, which makes the
  cart stand still in its difference away from the edges; here the cart's motion shows.
- **Difference encoding**: ``(cur - prev + 256) // 2`` as uint8, so 128 is "no motion", 0 is
  -255 and 255 is +255 (one bit of precision lost). An episode's first observation is all 128.
- **Stack mode**: the last ``frames`` screens, oldest first; at reset the first screen fills
  every slot.
- **Frame skip** (``frame_skip``, 1 by default as in the tutorial): each action is held for
  that many CartPole steps, their rewards summed, and only the screen after the last is taken,
  as Atari's pipeline does with 4. CartPole moves less than a screen pixel in one step often
  enough that one difference in five is blank (all 128) under random play; two steps apart,
  one in seventeen (measured in benchmarks/README.md).

The crop needs the cart's position, so only CartPole environments are supported; others get a
:class:`CommandError` (a full-frame fallback would silently give a different input contract).
"""

import os
import typing
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
import numpy.typing as npt
from gymnasium.envs.classic_control.cartpole import CartPoleEnv

from dqnkit.adapters.config import MAX_FRAME_SKIP, FrameMode, one_of
from dqnkit.adapters.envs import gym_make
from dqnkit.adapters.errors import CommandError

__all__ = [
    "KIND",
    "PixelObservation",
    "PixelSpec",
    "describe",
    "difference_frame",
    "downsample_band",
    "downsample_grey",
    "make_pixel_env",
    "view_start",
]

KIND = "cartpole-screen"
VERSION = 1

# The tutorial's crop: rows 40%..80% of the screen's height, a 320-pixel window, 40 pixels high.
CROP_TOP, CROP_BOTTOM = 0.4, 0.8
VIEW_WIDTH = 320
FACTOR = 4
GREY_CHANNEL = 1  # green; see the module docstring
NO_MOTION = 128
_DRAW_ONLY = "dqnkit-draw-only"  # a render mode CartPole draws for and returns nothing in

Frame = npt.NDArray[np.uint8]


@dataclass(frozen=True)
class PixelSpec:
    """The pixel pipeline's parameters: the JSON stored as ``PolicySpec.preprocessing``.

    Attributes:
      kind: ``"cartpole-screen"``.
      version: this layout's version.
      frame_mode: ``"difference"`` (1 channel) or ``"stack"`` (``frames`` channels).
      frames: screens each observation is made from (2 for a difference).
      screen_height: the rendered screen's height in pixels.
      screen_width: its width.
      crop_rows: ``[top, bottom)`` rows of the screen kept.
      view_width: the width in screen pixels of the window centred on the cart.
      factor: the area-downsampling factor along both axes.
      channels: C of the observation.
      height: H of the observation (``(bottom - top) / factor``).
      width: W of the observation (``view_width / factor``).
      dtype: ``"uint8"``.
      grey: how a screen becomes one channel.
      resize: the resize method.
      difference_encoding: how a signed difference is stored in a uint8.
      first_step: what an episode's first observation is.
      frame_skip: environment steps per observation, the action repeated (1: every step).
    """

    kind: str
    version: int
    frame_mode: FrameMode
    frames: int
    screen_height: int
    screen_width: int
    crop_rows: tuple[int, int]
    view_width: int
    factor: int
    channels: int
    height: int
    width: int
    dtype: str = "uint8"
    grey: str = "green channel of the rgb_array render"
    resize: str = "area: mean of each factor x factor block, rounded half up (numpy)"
    difference_encoding: str = "(cur - prev + 256) // 2; 128 = no motion"
    first_step: str = "difference: all 128; stack: the first screen repeated"
    frame_skip: int = 1

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one observation."""
        return (self.channels, self.height, self.width)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["crop_rows"] = list(self.crop_rows)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PixelSpec":
        """Reads and checks a description; CommandError when this dqnkit cannot rebuild it."""
        if not isinstance(data, dict) or data.get("kind") != KIND:
            kind = data.get("kind") if isinstance(data, dict) else data
            raise CommandError(f"unknown pixel preprocessing kind {kind!r} (expected {KIND!r})")
        if data.get("version") != VERSION:
            raise CommandError(
                f"pixel preprocessing version {data.get('version')!r} is not supported "
                f"(this dqnkit makes version {VERSION})"
            )
        if data.get("frame_mode") not in typing.get_args(FrameMode):
            raise CommandError(f"unknown pixel frame mode {data.get('frame_mode')!r}")
        try:
            spec = cls(**{**data, "crop_rows": tuple(data["crop_rows"])})
        except (TypeError, KeyError, ValueError) as error:
            raise CommandError(f"bad pixel preprocessing description: {error}") from error
        expected = _spec(
            spec.frame_mode,
            spec.frames,
            spec.screen_height,
            spec.screen_width,
            spec.crop_rows,
            spec.frame_skip,
        )
        if spec != expected:
            raise CommandError(
                f"pixel preprocessing {spec.to_dict()} is inconsistent; "
                f"this dqnkit would make {expected.to_dict()}"
            )
        return spec


def describe(
    env_id: str,
    *,
    frame_mode: str = "difference",
    frames: int = 4,
    frame_skip: int = 1,
    allow_import: bool = False,
) -> dict[str, Any]:
    """The JSON description of the pixel observations of ``env_id`` (a CartPole).

    Args:
      env_id: a Gymnasium id whose unwrapped env is CartPole and renders ``rgb_array``.
      frame_mode: ``"difference"`` of the last two screens or ``"stack"`` of the last ``frames``.
      frames: screens stacked in ``"stack"`` mode (ignored for ``"difference"``).
      frame_skip: environment steps per observation, in ``[1, MAX_FRAME_SKIP]``.
      allow_import: as in :func:`dqnkit.adapters.envs.check_env_id`.

    Returns:
      :class:`PixelSpec` as a dict: kind, frame mode, frames, crop, view width, output C/H/W...
    """
    if frame_mode not in typing.get_args(FrameMode):
        raise CommandError(f"--frame-mode must be {one_of(FrameMode)}, got {frame_mode!r}")
    if frame_mode == "stack" and not 1 <= frames <= 16:
        raise CommandError(f"--frames must be in [1, 16] with --frame-mode stack, got {frames}")
    if not 1 <= frame_skip <= MAX_FRAME_SKIP:
        raise CommandError(f"--frame-skip must be in [1, {MAX_FRAME_SKIP}], got {frame_skip}")
    env = gym_make(env_id, allow_import=allow_import, disable_env_checker=True)
    try:
        width, height = _check_cartpole(env_id, env)
    finally:
        env.close()
    mode: FrameMode = "difference" if frame_mode == "difference" else "stack"
    top, bottom = int(height * CROP_TOP), int(height * CROP_BOTTOM)
    frames = 2 if mode == "difference" else frames
    return _spec(mode, frames, height, width, (top, bottom), frame_skip).to_dict()


def _spec(
    frame_mode: FrameMode,
    frames: int,
    screen_height: int,
    screen_width: int,
    crop_rows: tuple[int, int],
    frame_skip: int,
) -> PixelSpec:
    top, bottom = crop_rows
    view_width = min(VIEW_WIDTH, screen_width)
    if (bottom - top) % FACTOR or view_width % FACTOR or screen_width % FACTOR:
        raise CommandError(
            f"a {screen_width}x{screen_height} screen does not downsample by {FACTOR} "
            f"(crop rows {top}..{bottom}, view width {view_width})"
        )
    return PixelSpec(
        kind=KIND,
        version=VERSION,
        frame_mode=frame_mode,
        frames=frames,
        screen_height=screen_height,
        screen_width=screen_width,
        crop_rows=(top, bottom),
        view_width=view_width,
        factor=FACTOR,
        channels=1 if frame_mode == "difference" else frames,
        height=(bottom - top) // FACTOR,
        width=view_width // FACTOR,
        frame_skip=frame_skip,
    )


def _check_cartpole(env_id: str, env: gym.Env[Any, Any]) -> tuple[int, int]:
    """``(screen_width, screen_height)`` of a CartPole env that renders rgb_array."""
    from gymnasium.envs.classic_control.cartpole import CartPoleEnv

    if not isinstance(env.unwrapped, CartPoleEnv):
        raise CommandError(
            f"--pixels supports CartPole environments only: its crop follows the cart, whose "
            f"position {env_id} does not have"
        )
    if "rgb_array" not in env.metadata.get("render_modes", ()):
        raise CommandError(f"--pixels needs rgb_array rendering, which {env_id} does not offer")
    return int(env.unwrapped.screen_width), int(env.unwrapped.screen_height)


# --- pure preprocessing functions (numpy only, no rendering) ----------------------------------


def view_start(
    cart_x: float, *, x_threshold: float, screen_width: int, view_width: int, factor: int
) -> int:
    """The first column, in downsampled pixels, of the view window centred on the cart.

    The tutorial's ``get_cart_location`` and its slice: the cart's screen column is
    ``int(x * screen_width / (2 * x_threshold) + screen_width / 2)``; the window starts
    ``view_width // 2`` left of it, clamped to ``[0, screen_width - view_width]``.

    Args:
      cart_x: the cart position, ``env.unwrapped.state[0]``.
      x_threshold: the position at which the episode ends (2.4), half the world's width.
      screen_width: the rendered width in pixels.
      view_width: the window's width in screen pixels.
      factor: the downsampling factor; the start is rounded to the nearest downsampled column.

    Returns:
      the start column ``s``: the view is ``band[:, s : s + view_width // factor]``.
    """
    scale = screen_width / (2 * x_threshold)
    cart_column = int(cart_x * scale + screen_width / 2.0)  # middle of the cart
    start = min(max(cart_column - view_width // 2, 0), screen_width - view_width)
    return (start + factor // 2) // factor


def downsample_band(screen: Frame, *, rows: tuple[int, int], factor: int) -> Frame:
    """The grey, area-downsampled band of a rendered screen.

    Args:
      screen: ``[screen_height, screen_width, 3]`` uint8, an ``rgb_array`` render.
      rows: ``[top, bottom)`` rows kept; ``bottom - top`` and the width divisible by ``factor``.
      factor: a power of two; each ``factor x factor`` block becomes its rounded mean.

    Returns:
      ``[(bottom - top) // factor, screen_width // factor]`` uint8.
    """
    if screen.ndim != 3 or screen.shape[2] != 3 or screen.dtype != np.uint8:
        raise ValueError(f"screen must be [H, W, 3] uint8, got {screen.shape} {screen.dtype}")
    top, bottom = rows
    band = screen[top:bottom, :, GREY_CHANNEL]
    if band.shape[0] != bottom - top:
        raise ValueError(
            f"rows {rows} of a {screen.shape[:2]} screen do not downsample by {factor}"
        )
    return downsample_grey(band, factor)


def downsample_grey(band: Frame, factor: int) -> Frame:
    """``[h, w]`` uint8 -> ``[h // factor, w // factor]``: each ``factor x factor`` block's
    rounded mean (``factor`` a power of two dividing both sides)."""
    if factor < 1 or factor & (factor - 1):
        raise ValueError(f"factor must be a power of two, got {factor}")
    if band.ndim != 2 or band.shape[0] % factor or band.shape[1] % factor:
        raise ValueError(f"a {band.shape} band does not downsample by {factor}")
    # Pairwise sums in uint16 (at most 255 * factor**2 = 4080 for 4): ~7x faster than
    # reshape(...).sum(axis=(1, 3)) on this shape.
    acc = band.astype(np.uint16)
    step = 1
    while step < factor:
        acc = acc[0::2] + acc[1::2]
        acc = acc[:, 0::2] + acc[:, 1::2]
        step *= 2
    area = factor * factor
    return ((acc + area // 2) // area).astype(np.uint8)


def difference_frame(current: Frame, previous: Frame) -> Frame:
    """``current - previous`` encoded as uint8: ``(d + 256) // 2``, 128 meaning no change.

    The tutorial's ``current_screen - last_screen``, stored in a byte. ``d = -255 -> 0``,
    ``0 -> 128``, ``255 -> 255``.

    Args:
      current: ``[H, W]`` uint8.
      previous: ``[H, W]`` uint8.

    Returns:
      ``[H, W]`` uint8.
    """
    if current.shape != previous.shape:
        raise ValueError(f"current {current.shape} and previous {previous.shape} differ")
    d = current.astype(np.int16) - previous.astype(np.int16)
    return ((d + 256) // 2).astype(np.uint8)


def observation(history: list[Frame], start: int, spec: PixelSpec) -> Frame:
    """One observation from the downsampled bands of the last screens, oldest first.

    Args:
      history: ``spec.frames`` bands, each ``[H, screen_width // factor]`` uint8.
      start: the view's first column (:func:`view_start`) at the newest screen.
      spec: the pipeline.

    Returns:
      ``[C, H, W]`` uint8: every band is seen through the newest screen's window.
    """
    views = [band[:, start : start + spec.width] for band in history]
    if spec.frame_mode == "difference":
        return difference_frame(views[-1], views[-2])[None]
    return np.stack(views)


# --- the environment wrapper --------------------------------------------------------------------


class PixelObservation(gym.Wrapper[Frame, Any, Any, Any], gym.utils.RecordConstructorArgs):
    """A CartPole whose observations are preprocessed screens ``[C, H, W]`` uint8.

    ``reset`` and ``step`` keep the wrapped env's rewards, ``terminated``, ``truncated`` and
    ``info``; only the observation changes. The frame history is rebuilt by ``reset`` and the
    steps since, so replaying an episode's actions restores it exactly.

    Args:
      env: a CartPole made with ``render_mode="rgb_array"``.
      spec: the pipeline.
    """

    def __init__(self, env: gym.Env[Any, Any], spec: PixelSpec) -> None:
        # Recorded so that gymnasium.make(env.spec) re-creates the wrapper (check_env does).
        gym.utils.RecordConstructorArgs.__init__(self, spec=spec)
        gym.Wrapper.__init__(self, env)
        # Only rgb_array: the wrapper needs the render for its frames, so never a window.
        self.metadata = {**env.metadata, "render_modes": ["rgb_array"]}
        self.pixel_spec = spec
        self.observation_space = gym.spaces.Box(0, 255, spec.shape, np.uint8)
        self._history: deque[Frame] = deque(maxlen=spec.frames)
        self._draws_on_screen = type(env.unwrapped) is CartPoleEnv

    def _band(self) -> Frame:
        """The downsampled band of the screen CartPole draws now.

        ``render()`` copies the whole 600x400 RGB screen out of pygame (about two thirds of
        its time, measured in benchmarks/bench_pixels.py); Gymnasium's CartPole draws onto
        ``screen``, a pygame Surface, before that copy, so where it has one the band's green
        channel is read from it directly: the same pixels (tests/test_pixels.py compares
        both paths), a third of the cost. Any other env takes the plain ``render()``.
        """
        spec, base = self.pixel_spec, self.env.unwrapped
        if self._draws_on_screen:
            mode = base.render_mode
            base.render_mode = _DRAW_ONLY  # CartPole draws, then returns nothing
            try:
                base.render()
            finally:
                base.render_mode = mode
            screen = getattr(base, "screen", None)
            if screen is not None and screen.get_size() == (spec.screen_width, spec.screen_height):
                import pygame

                top, bottom = spec.crop_rows
                channels = pygame.surfarray
                read = (channels.pixels_red, channels.pixels_green, channels.pixels_blue)
                grey = read[GREY_CHANNEL](screen)  # [W, H], a view that locks the surface
                try:
                    return downsample_grey(grey[:, top:bottom].T, spec.factor)
                finally:
                    del grey  # unlocks it for the next draw
            self._draws_on_screen = False  # not the CartPole we know: the plain render
        screen = self.env.render()
        if not isinstance(screen, np.ndarray):
            raise RuntimeError("the environment did not render an rgb_array")
        return downsample_band(screen, rows=spec.crop_rows, factor=spec.factor)

    def _screen(self) -> tuple[Frame, int]:
        spec = self.pixel_spec
        band = self._band()
        base = self.env.unwrapped
        start = view_start(
            float(base.state[0]),  # type: ignore[attr-defined]
            x_threshold=float(base.x_threshold),  # type: ignore[attr-defined]
            screen_width=spec.screen_width,
            view_width=spec.view_width,
            factor=spec.factor,
        )
        return band, start

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Frame, dict[str, Any]]:
        _, info = self.env.reset(seed=seed, options=options)
        band, start = self._screen()
        self._history.clear()
        self._history.extend([band] * self.pixel_spec.frames)  # no motion / the first screen
        return observation(list(self._history), start, self.pixel_spec), info

    def step(self, action: Any) -> tuple[Frame, SupportsFloat, bool, bool, dict[str, Any]]:
        total = 0.0
        for _ in range(self.pixel_spec.frame_skip):  # the screen only after the last
            _, reward, terminated, truncated, info = self.env.step(action)
            total += float(reward)
            if terminated or truncated:
                break
        band, start = self._screen()
        self._history.append(band)
        obs = observation(list(self._history), start, self.pixel_spec)
        return obs, total, terminated, truncated, info


def make_pixel_env(
    env_id: str, preprocessing: dict[str, Any], *, allow_import: bool = False
) -> gym.Env[Frame, Any]:
    """``env_id`` rendered headless and preprocessed as ``preprocessing`` describes.

    Args:
      env_id: a CartPole id.
      preprocessing: :func:`describe`'s dict (``PolicySpec.preprocessing``).
      allow_import: as in :func:`dqnkit.adapters.envs.check_env_id`.

    Returns:
      an env whose observation space is ``Box(0, 255, (C, H, W), uint8)``.
    """
    spec = PixelSpec.from_dict(preprocessing)
    if not os.environ.get("DISPLAY"):
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # before pygame is imported
    # SDL's init takes SIGTERM (and SIGINT where Python left it at the default) and turns it
    # into a quit event nobody reads: without this, `kill PID` no longer stops a pixel run.
    os.environ.setdefault("SDL_NO_SIGNAL_HANDLERS", "1")
    env = gym_make(
        env_id, allow_import=allow_import, render_mode="rgb_array", disable_env_checker=True
    )
    try:
        size = _check_cartpole(env_id, env)
        if size != (spec.screen_width, spec.screen_height):
            raise CommandError(
                f"{env_id} renders {size[0]}x{size[1]}; the preprocessing expects "
                f"{spec.screen_width}x{spec.screen_height}"
            )
    except CommandError:
        env.close()
        raise
    return PixelObservation(env, spec)
