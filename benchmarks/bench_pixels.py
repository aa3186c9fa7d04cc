"""Frame pipeline benchmark: CartPole's rgb_array render alone, and render + preprocessing.

Run: .venv/bin/python -m benchmarks.bench_pixels [--frames 2000] [--repeats 5]
Headless (SDL_VIDEODRIVER=dummy). Each repeat steps a CartPole with a fixed action pattern,
resetting when an episode ends; the median of the repeats is reported.
"""

import argparse
import contextlib
import csv
import os
import statistics
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")

import gymnasium as gym
import numpy as np

from dqnkit.adapters.pixels import (
    PixelObservation,
    PixelSpec,
    describe,
    downsample_band,
    make_pixel_env,
    observation,
    view_start,
)


def run(env: gym.Env[Any, Any], frames: int, render: bool) -> float:
    """Seconds per frame: ``env.step`` (+ ``env.render()`` when ``render``) for ``frames``."""
    env.reset(seed=0)
    start = time.perf_counter()
    for t in range(frames):
        _, _, terminated, truncated, _ = env.step(t % 2)
        if render:
            env.render()
        if terminated or truncated:
            env.reset()
    return (time.perf_counter() - start) / frames


def preprocessing_only(spec: PixelSpec, screens: list[np.ndarray], xs: list[float]) -> float:
    """Seconds per frame of the pure preprocessing on pre-rendered screens."""
    history = [downsample_band(screens[0], rows=spec.crop_rows, factor=spec.factor)] * 2
    start = time.perf_counter()
    for screen, x in zip(screens, xs, strict=True):
        history = [history[-1], downsample_band(screen, rows=spec.crop_rows, factor=spec.factor)]
        s = view_start(
            x,
            x_threshold=2.4,
            screen_width=spec.screen_width,
            view_width=spec.view_width,
            factor=spec.factor,
        )
        observation(history, s, spec)
    return (time.perf_counter() - start) / len(screens)


def training(steps: int, repeats: int) -> None:
    """Steps/s of the pixel preset's training loop (learning from step 500), interleaved, median
    of ``repeats``: a screen every step with the band read off pygame and channels-last weights
    (session 6), with contiguous weights (before session 6), and through the whole rgb_array
    render (before session 5); then with the preset's ``--frame-skip 2`` (session 7), in agent
    steps and in CartPole steps. Every variant has today's preset's other settings."""
    import tempfile
    from unittest import mock

    from dqnkit.adapters import config_for, pixels, train
    from dqnkit.adapters.learner import Learner

    real_init = Learner.__init__

    def contiguous(self: Learner, *args: Any, **kwargs: Any) -> None:
        real_init(self, *args, **{**kwargs, "channels_last": False})

    skip = "band off pygame, channels-last, --frame-skip 2 (the preset's, now)"
    variants = {  # name: (whole render, contiguous weights, frame skip)
        "band off pygame, channels-last, every step": (False, False, 1),
        "band off pygame, contiguous weights": (False, True, 1),
        "whole render, contiguous weights": (True, True, 1),
        skip: (False, False, 2),
    }
    rates: dict[str, list[float]] = {name: [] for name in variants}
    cartpole_rates: list[float] = []  # the skip variant's CartPole steps/s
    for _ in range(repeats):
        for name, (whole_render, plain_weights, frame_skip) in variants.items():
            with tempfile.TemporaryDirectory() as out, contextlib.ExitStack() as stack:
                config = config_for("CartPole-v1", pixels=True, total_steps=steps,
                                    learning_starts=500, eval_every=0, final_eval_episodes=1,
                                    checkpoint_every=0, frame_skip=frame_skip, out=out)  # fmt: skip
                if whole_render:  # not CartPoleEnv's class: the plain render() path
                    stack.enter_context(
                        mock.patch.object(pixels, "CartPoleEnv", type("Other", (), {}))
                    )
                if plain_weights:
                    stack.enter_context(mock.patch.object(Learner, "__init__", contiguous))
                start = time.perf_counter()
                run_dir = train(config, quiet=True).run_dir
                seconds = time.perf_counter() - start
                rates[name].append(steps / seconds)
                if frame_skip > 1:  # finished episodes' returns: 1 per CartPole step
                    cartpole_rates.append(_cartpole_steps(run_dir) / seconds)
    print(f"pixel preset training, {steps} steps (learning from 500), median of {repeats}")
    medians = {name: statistics.median(values) for name, values in rates.items()}
    baseline = medians["whole render, contiguous weights"]
    for name, values in rates.items():
        print(f"| {name} | {medians[name]:.1f} steps/s | {medians[name] / baseline:.2f}x | "
              f"{', '.join(f'{v:.1f}' for v in values)} |")  # fmt: skip
    median = statistics.median(cartpole_rates)
    print(
        f"| {skip}, CartPole steps (finished episodes) | {median:.1f} steps/s | "
        f"{median / baseline:.2f}x | {', '.join(f'{v:.1f}' for v in cartpole_rates)} |"
    )


def _cartpole_steps(run_dir: Path) -> float:
    """CartPole steps in a run's finished episodes: the sum of their returns (1 per step)."""
    with (run_dir / "metrics.csv").open() as file:
        return sum(float(row["episode_return"]) for row in csv.DictReader(file))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--train-steps",
        type=int,
        default=0,
        help="time `train` of the pixel preset for this many steps instead (four variants)",
    )
    args = parser.parse_args()
    if args.train_steps:
        training(args.train_steps, args.repeats)
        return

    description = describe("CartPole-v1")
    spec = PixelSpec.from_dict(description)
    plain = gym.make("CartPole-v1", render_mode="rgb_array", disable_env_checker=True)
    pixels = make_pixel_env("CartPole-v1", description)
    # The same pipeline through the whole rgb_array render (the path before session 5).
    copied = make_pixel_env("CartPole-v1", description)
    assert isinstance(copied, PixelObservation)
    copied._draws_on_screen = False
    screens, xs = [], []
    plain.reset(seed=0)
    for t in range(500):
        _, _, terminated, truncated, _ = plain.step(t % 2)
        screens.append(np.asarray(plain.render()))
        xs.append(float(plain.unwrapped.state[0]))  # type: ignore[attr-defined]
        if terminated or truncated:
            plain.reset()

    step_only, rendered, pipeline, via_copy, prep = [], [], [], [], []
    for _ in range(args.repeats):  # interleaved, so drifting load hits every variant
        step_only.append(run(plain, args.frames, render=False))
        rendered.append(run(plain, args.frames, render=True))
        pipeline.append(run(pixels, args.frames, render=False))  # its step renders
        via_copy.append(run(copied, args.frames, render=False))
        prep.append(preprocessing_only(spec, screens, xs))
    med = {
        name: statistics.median(v) * 1e3
        for name, v in (
            ("step", step_only),
            ("render", rendered),
            ("pipeline", pipeline),
            ("copy", via_copy),
            ("prep", prep),
        )
    }
    render_cost = med["render"] - med["step"]
    print(
        f"CartPole-v1 {spec.screen_width}x{spec.screen_height} -> {spec.shape} "
        f"({spec.frame_mode}), median of {args.repeats} x {args.frames} frames"
    )
    print("| what | ms per frame | frames/s |")
    print("|---|---:|---:|")
    for name, label in (
        ("step", "env.step alone (no render)"),
        ("render", "env.step + render (rgb_array)"),
        ("pipeline", "env.step + render + preprocessing (the pixel env: band read off pygame)"),
        ("copy", "the same through the whole rgb_array render (before session 5)"),
        ("prep", "preprocessing alone, on rendered screens"),
    ):
        print(f"| {label} | {med[name]:.3f} | {1e3 / med[name]:.0f} |")
    print(
        f"render alone (step + render - step): {render_cost:.3f} ms; preprocessing / render: "
        f"{100 * med['prep'] / render_cost:.1f}%; (pipeline - step - render) / render: "
        f"{100 * (med['pipeline'] - med['render']) / render_cost:.1f}%"
    )
    print(f"pixel env, whole render / band off pygame: {med['copy'] / med['pipeline']:.2f}x")


if __name__ == "__main__":
    main()
