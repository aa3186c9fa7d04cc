"""Atari benchmark (issue 12): replay memory for 100k transitions, and where a training step's
time goes (emulator, preprocessing, acting, sampling, updates), against a short real run.

Run: .venv/bin/python -m benchmarks.bench_atari [--steps 1500] [--repeats 3] [--threads 1,2]

Memory: the frame ring (``frame_replay`` with ``stack=4``: one 84x84 frame per slot) is
allocated for 100,000 transitions and its tensors' bytes are summed; Stable-Baselines3's
``ReplayBuffer`` layout (obs and next_obs stacks per row, or obs only with
``optimize_memory_usage``) is measured from SB3 itself when it is installed, else computed from
its layout (numpy arrays ``[buffer_size, n_envs, 4, 84, 84]`` uint8 each).

Profile: each part is timed alone, the median of ``--repeats``; then the training loop runs
``--steps`` steps with learning from the start and one update per 4 steps (the preset's ratio),
at epsilon 0.05 so nearly every step acts greedily, and its steps/s is compared with the sum of
the parts. Timings are of this machine as it is (shared with other work: see the README).
"""

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from dqnkit.adapters import atari
from dqnkit.adapters.config import config_for
from dqnkit.adapters.experience import create_memory, example_row
from dqnkit.adapters.learner import Learner
from dqnkit.adapters.training import train
from dqnkit.core import frame_replay

GAME = "ALE/Pong-v5"
TRANSITIONS = 100_000


def ring_bytes(capacity: int) -> int:
    """Bytes of the frame ring's tensors for ``capacity`` slots (Atari stacks of 4)."""
    example = example_row((4, 84, 84), torch.uint8)
    state = frame_replay.init(capacity, example, streams=1, stack=4)
    tensors = (state.obs, state.action, state.reward, state.terminated, state.source)
    return sum(t.element_size() * t.numel() for t in tensors)


def sb3_bytes(buffer_size: int, optimize: bool) -> tuple[int, str]:
    """Bytes of SB3's ReplayBuffer for Atari stacks, and whether measured or computed."""
    try:
        import gymnasium as gym
        from stable_baselines3.common.buffers import ReplayBuffer
    except ImportError:
        obs = buffer_size * 4 * 84 * 84  # uint8
        rows = buffer_size * (8 + 4 + 4 + 4)  # action int64, reward, done, timeout float32
        return (obs if optimize else 2 * obs) + rows, "computed (SB3 not installed)"
    space = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    buffer = ReplayBuffer(
        buffer_size, space, gym.spaces.Discrete(6), optimize_memory_usage=optimize
    )
    arrays = [buffer.observations, buffer.actions, buffer.rewards, buffer.dones, buffer.timeouts]
    if not optimize:
        arrays.append(buffer.next_observations)
    return sum(a.nbytes for a in arrays), "measured (SB3 arrays' nbytes)"


def median_seconds(fn: Callable[[], object], n: int, repeats: int) -> float:
    """Median over ``repeats`` of the seconds per call of ``fn`` called ``n`` times."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        times.append((time.perf_counter() - start) / n)
    return statistics.median(times)


def profile(threads: int, repeats: int) -> dict[str, float]:
    """Seconds per call of each part of a training step."""
    torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    atari.register_ale()
    import gymnasium as gym

    raw = gym.make(GAME, frameskip=1, repeat_action_probability=0.0, disable_env_checker=True)
    raw.reset(seed=0)
    ale: Any = getattr(raw.unwrapped, "ale")  # noqa: B009  (the ALE interface, untyped)

    def emulate() -> None:  # 4 emulator frames and the two grey screens the pooling reads
        for _ in range(4):
            _, _, te, tr, _ = raw.step(int(rng.integers(6)))
            if te or tr:
                raw.reset()
        ale.getScreenGrayscale()
        ale.getScreenGrayscale()

    env = atari.make_atari_env(GAME, atari.describe(GAME), render_mode=None)
    obs, _ = env.reset(seed=0)

    def env_step() -> None:
        _, _, te, tr, _ = env.step(int(rng.integers(6)))
        if te or tr:
            env.reset()

    config = config_for(GAME, total_steps=1_000, learning_starts=10, threads=threads)
    learner = Learner(config, (4, 84, 84), 6, torch.device("cpu"))  # the loop's layout
    one = torch.from_numpy(obs[None])

    def act() -> None:
        learner.q_values(one).argmax(dim=1)

    example = example_row((4, 84, 84), torch.uint8)
    memory = create_memory(5_000, example, 1, torch.device("cpu"), stack=4)
    memory.start(np.array([0]), obs[None])
    for _ in range(2_000):
        a = int(rng.integers(6))
        nxt, r, te, tr, _ = env.step(a)
        memory.add(obs[None], np.array([a]), np.array([r]), nxt[None], np.array([te]))
        obs = nxt
        if te or tr:
            obs, _ = env.reset()
            memory.start(np.array([0]), obs[None])
    generator = torch.Generator().manual_seed(0)
    sample = memory.sample(32, generator)

    def draw() -> None:
        memory.sample(32, generator)

    def update() -> None:
        learner.update(sample)

    parts = {
        "emulator (4 frames)": median_seconds(emulate, 300, repeats),
        "env step (emulator + preprocessing + stack)": median_seconds(env_step, 300, repeats),
        "act (forward, batch 1)": median_seconds(act, 100, repeats),
        "sample (batch 32 from the ring)": median_seconds(draw, 50, repeats),
        "update (batch 32: forwards, backward, Adam)": median_seconds(update, 10, repeats),
        "update, contiguous weights (session 5)": _contiguous_update(config, sample, repeats),
    }
    raw.close()
    env.close()
    return parts


def _contiguous_update(config: Any, sample: Any, repeats: int) -> float:
    """The update with the weights in the default layout (the loop's is channels-last)."""
    learner = Learner(config, (4, 84, 84), 6, torch.device("cpu"), channels_last=False)
    return median_seconds(lambda: learner.update(sample), 10, repeats)


def loop_sps(steps: int, threads: int) -> float:
    """Steps per second of the real loop: learning from step 200, one update per 4 steps."""
    with tempfile.TemporaryDirectory() as out:
        config = config_for(
            GAME,
            total_steps=steps,
            learning_starts=200,
            buffer_size=5_000,
            epsilon_start=0.05,
            epsilon_end=0.05,
            checkpoint_every=0,
            final_eval_episodes=1,
            threads=threads,
            out=out,
        )
        full = atari.MAX_EPISODE_FRAMES
        atari.MAX_EPISODE_FRAMES = 4 * 400  # 400-step episodes: rows to read, a short evaluation
        try:
            result = train(config, quiet=True)
        finally:
            atari.MAX_EPISODE_FRAMES = full
        rows = (result.run_dir / "metrics.csv").read_text().splitlines()[1:]
    # Each episode row has the step and the run's mean steps/s so far, hence its time; the rate
    # between the first and last rows once learning runs excludes the start and the evaluation.
    points = [(int(r.split(",")[0]), float(r.split(",")[-1])) for r in rows]
    points = [(step, step / sps) for step, sps in points if step > 200]
    if len(points) < 2:
        return float("nan")
    (s0, t0), (s1, t1) = points[0], points[-1]
    return (s1 - s0) / (t1 - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=1_500)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", default="1,2")
    args = parser.parse_args()

    ring = ring_bytes(TRANSITIONS)
    print(f"replay for {TRANSITIONS:,} transitions of [4, 84, 84] uint8 stacks:")
    print(f"  frame ring (stack=4, one frame per slot): {ring / 1e9:.3f} GB")
    for optimize in (False, True):
        size, how = sb3_bytes(TRANSITIONS, optimize)
        name = "optimize_memory_usage" if optimize else "obs + next_obs"
        print(f"  SB3 ReplayBuffer, {name}: {size / 1e9:.3f} GB ({how}), {size / ring:.1f}x")

    for threads in (int(t) for t in args.threads.split(",")):
        parts = profile(threads, args.repeats)
        print(f"\ntorch threads {threads}: milliseconds per call (median of {args.repeats})")
        for name, seconds in parts.items():
            print(f"  {name:48s} {seconds * 1e3:8.2f}")
        env = parts["env step (emulator + preprocessing + stack)"]
        step = env + parts["act (forward, batch 1)"]
        learn = parts["sample (batch 32 from the ring)"]
        learn += parts["update (batch 32: forwards, backward, Adam)"]
        step += learn / 4
        print(
            f"  parts' sum per step (update every 4): {step * 1e3:.2f} ms = {1 / step:.1f} steps/s"
        )
        sps = loop_sps(args.steps, threads)
        print(f"  the loop, {args.steps} steps (learning from step 200): {sps:.1f} steps/s")


if __name__ == "__main__":
    main()
