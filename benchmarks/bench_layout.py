"""The CNN update and act in the default (contiguous) and channels-last weight layouts.

Run: .venv/bin/python -m benchmarks.bench_layout [--updates 60] [--repeats 3]

For the pixel preset's network on the difference input (1x40x80) and on a stack of 4
(4x40x80), and the Nature CNN on Atari's 4x84x84 stacks: two Learners built from the same seed,
one per layout, take turns (contiguous update, channels-last update, contiguous act, ...) on
the same random uint8 batch of 32, one torch thread, so a drifting machine load falls on both
alike. ``Learner`` lays a CNN's weights out channels-last on the CPU by default (session 6).
"""

import argparse
import statistics
import time
from collections.abc import Callable
from functools import partial

import torch

from dqnkit.adapters.config import config_for
from dqnkit.adapters.experience import Sample
from dqnkit.adapters.learner import Learner
from dqnkit.core import Transition

CASES = {  # name: (env_id, observation shape, overrides)
    "pixel preset, difference 1x40x80": ("CartPole-v1", (1, 40, 80), {"pixels": True}),
    "pixel preset, stack 4x40x80": ("CartPole-v1", (4, 40, 80), {"pixels": True}),
    "Atari preset, Nature CNN 4x84x84": ("ALE/Pong-v5", (4, 84, 84), {}),
}


def random_sample(shape: tuple[int, ...], n_actions: int, batch: int) -> Sample:
    generator = torch.Generator().manual_seed(0)

    def frames() -> torch.Tensor:
        return torch.randint(0, 256, (batch, *shape), dtype=torch.uint8, generator=generator)

    return Sample(
        Transition(
            obs=frames(),
            action=torch.randint(0, n_actions, (batch,), generator=generator),
            reward=torch.randn(batch, generator=generator),
            next_obs=frames(),
            terminated=torch.zeros(batch, dtype=torch.bool),
        )
    )


def alternate(calls: dict[str, Callable[[], object]], n: int) -> dict[str, float]:
    """Median seconds of each call, the calls taking turns ``n`` times (the first 3 dropped)."""
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(n + 3):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t[3:]) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--updates", type=int, default=60, help="per layout and repeat")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    cpu = torch.device("cpu")
    print("| network | call | contiguous ms | channels-last ms | ratio | repeats |")
    print("|---|---|--:|--:|--:|---|")
    for name, (env_id, shape, overrides) in CASES.items():
        n_actions = 6 if env_id.startswith("ALE/") else 2
        config = config_for(env_id, **overrides)
        sample = random_sample(shape, n_actions, config.batch_size)
        one = sample.batch.obs[:1].clone()
        rows: dict[str, list[tuple[float, float]]] = {"update": [], "act": []}
        for _ in range(args.repeats):
            plain = Learner(config, shape, n_actions, cpu, channels_last=False)
            last = Learner(config, shape, n_actions, cpu, channels_last=True)
            medians = alternate(
                {
                    "update plain": partial(plain.update, sample),
                    "update last": partial(last.update, sample),
                    "act plain": partial(plain.q_values, one),
                    "act last": partial(last.q_values, one),
                },
                args.updates,
            )
            for call in rows:
                rows[call].append((medians[f"{call} plain"], medians[f"{call} last"]))
        for call, pairs in rows.items():
            a = statistics.median(p for p, _ in pairs) * 1e3
            b = statistics.median(q for _, q in pairs) * 1e3
            each = ", ".join(f"{p / q:.2f}x" for p, q in pairs)
            print(f"| {name} | {call} | {a:.3f} | {b:.3f} | {a / b:.2f}x | {each} |", flush=True)


if __name__ == "__main__":
    main()
