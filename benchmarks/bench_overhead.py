"""The training loop's overhead per environment step, against a minimal loop written here.

Run: .venv/bin/python -m benchmarks.bench_overhead --steps 20000 --repeats 3

Both loops act greedily through the same 256-256 MLP on CartPole-v1 with no gradient updates
(dqnkit: epsilon 0 and --learning-starts past the end), one environment. The reference does
only what any DQN loop must: env.step, one batch-1 forward, argmax, store the row in
pre-allocated arrays, reset at episode ends. dqnkit's time per step is measured between two of
its first two checkpoints, less the time spent writing them (start-up and the final evaluation
excluded); the two loops alternate within
one process, so a machine loaded by other work slows both alike. Prints a markdown table.
"""

import argparse
import importlib
import statistics
import tempfile
import time
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from dqnkit.adapters import config_for, train
from dqnkit.core import QNetwork

train_module = importlib.import_module("dqnkit.adapters.train")

HIDDEN = (256, 256)


def reference_seconds_per_step(steps: int) -> float:
    torch.set_num_threads(1)
    env = gym.make("CartPole-v1")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = QNetwork(4, 2, HIDDEN)
    obs_rows = np.zeros((steps, 4), np.float32)
    next_rows = np.zeros((steps, 4), np.float32)
    actions = np.zeros(steps, np.int64)
    rewards = np.zeros(steps, np.float32)
    terminals = np.zeros(steps, np.bool_)
    obs, _ = env.reset(seed=0)
    start = time.perf_counter()
    for t in range(steps):
        with torch.inference_mode():
            action = int(net(torch.as_tensor(obs[None])).argmax())
        next_obs, reward, terminated, truncated, _ = env.step(action)
        obs_rows[t], next_rows[t], actions[t] = obs, next_obs, action
        rewards[t], terminals[t] = float(reward), terminated
        obs = env.reset()[0] if terminated or truncated else next_obs
    return (time.perf_counter() - start) / steps


def dqnkit_seconds_per_step(steps: int) -> float:
    """Seconds per step between the end of the first checkpoint and the start of the second:
    the loop alone, without writing checkpoints and logs."""
    marks: list[tuple[str, float]] = []
    real = train_module._Parts.checkpoint

    def timed(self: Any, final: bool) -> None:
        marks.append(("enter", time.perf_counter()))
        real(self, final)
        marks.append(("exit", time.perf_counter()))

    train_module._Parts.checkpoint = timed
    try:
        _train_once(steps)
    finally:
        train_module._Parts.checkpoint = real
    (_, first_done), (_, second_start) = marks[1], marks[2]
    return (second_start - first_done) / steps


def _train_once(steps: int) -> None:
    with tempfile.TemporaryDirectory() as out:
        config = config_for(
            "CartPole-v1",
            total_steps=2 * steps,
            learning_starts=2 * steps + 1,
            hidden=HIDDEN,
            epsilon_start=0.0,
            epsilon_end=0.0,
            eval_every=0,
            checkpoint_every=steps,
            final_eval_episodes=1,
            buffer_size=2 * steps,
            out=out,
        )
        train(config, quiet=True)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    ours, reference = [], []
    for _ in range(args.repeats):
        reference.append(reference_seconds_per_step(args.steps))
        ours.append(dqnkit_seconds_per_step(args.steps))
    r, d = statistics.median(reference), statistics.median(ours)
    print(f"| loop | µs per step (median of {args.repeats}) | all runs |")
    print("| --- | --- | --- |")
    print(f"| reference (env.step, forward, argmax, store) | {r * 1e6:.1f} | "
          + ", ".join(f"{x * 1e6:.1f}" for x in reference) + " |")  # fmt: skip
    print(f"| dqnkit train loop | {d * 1e6:.1f} | "
          + ", ".join(f"{x * 1e6:.1f}" for x in ours) + " |")  # fmt: skip
    print(f"\ndqnkit / reference: {d / r:.2f}x")
    return {"reference_us": r * 1e6, "dqnkit_us": d * 1e6, "ratio": d / r}


if __name__ == "__main__":
    main()
