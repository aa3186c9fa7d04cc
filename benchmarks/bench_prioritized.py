"""Prioritized replay micro-benchmark for issue 11: prioritized sample against uniform sample.

Run from the repository root::

    .venv/bin/python -m benchmarks.bench_prioritized            # full run (a few minutes)
    .venv/bin/python -m benchmarks.bench_prioritized --quick    # smoke run (seconds)
    .venv/bin/python -m benchmarks.bench_prioritized --json benchmarks/out/prioritized.json

Everything is measured in one process, interleaved round by round (the harness of
``bench_replay``), so the ratios compare like with like:

- ``uniform``: :func:`dqnkit.core.replay.sample` from a full ring of CartPole-shaped rows;
- ``prioritized``: :func:`dqnkit.core.prioritized.sample` (stratified draw from the sum tree,
  the rows, and the importance weights at beta = 0.4) over the same rows, every slot holding
  its own priority ``(|delta| + 1e-6)^0.6`` from random TD errors;
- ``sum_tree``: :func:`dqnkit.core.sum_tree.sample` alone, the part that is new;
- ``write-back``: :func:`dqnkit.core.prioritized.update_priorities` of a batch, the other
  per-update cost of prioritized replay.

TorchRL's ``PrioritizedReplayBuffer`` is not measured: see benchmarks/README.md.
"""

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from benchmarks.bench_replay import FULL, QUICK, Case, Settings, fmt_us, make_steps, measure
from dqnkit.core import Transition, prioritized, replay, sum_tree

CAPACITIES = (100_000, 1_000_000)
BATCHES = (64, 256)
BETA = 0.4
ALPHA = 0.6
EPS = 1e-6
SEED = 0

UNIFORM = "uniform"
PRIORITIZED = "prioritized"
TREE = "sum_tree"
WRITE_BACK = "write-back"
SAMPLE = "sample"

AIM_RATIO = 2.5  # prioritized sample within 2.5x of uniform sample


def build(capacity: int) -> tuple[replay.ReplayState, prioritized.PrioritizedState]:
    steps = make_steps(capacity, SEED)
    rows = Transition(*(torch.from_numpy(column) for column in steps))
    example = Transition(*(column[0] for column in rows))
    uniform = replay.add(replay.init(capacity, example), rows)
    state = prioritized.add(prioritized.init(replay.init(capacity, example)), rows)
    td = torch.randn(capacity, generator=torch.Generator().manual_seed(SEED)) * 2
    state = prioritized.update_priorities(state, torch.arange(capacity), td, ALPHA, EPS)
    assert uniform.size == state.buffer.size == capacity
    return uniform, state


def cases_for(capacity: int) -> list[Case]:
    uniform, state = build(capacity)
    generator = torch.Generator().manual_seed(SEED)
    cases = []
    for batch in BATCHES:
        cases.append(
            Case(f"{UNIFORM} {capacity}", SAMPLE, batch, _uniform(uniform, batch, generator))
        )
        cases.append(
            Case(f"{PRIORITIZED} {capacity}", SAMPLE, batch, _prioritized(state, batch, generator))
        )
        cases.append(Case(f"{TREE} {capacity}", SAMPLE, batch, _tree(state, batch, generator)))
        cases.append(Case(f"{WRITE_BACK} {capacity}", SAMPLE, batch, _write_back(state, batch)))
    return cases


def _uniform(state: replay.ReplayState, batch: int, g: torch.Generator) -> Callable[[], object]:
    return lambda: replay.sample(state, batch, g)


def _prioritized(
    state: prioritized.PrioritizedState, batch: int, g: torch.Generator
) -> Callable[[], object]:
    return lambda: prioritized.sample(state, batch, g, BETA)


def _tree(
    state: prioritized.PrioritizedState, batch: int, g: torch.Generator
) -> Callable[[], object]:
    return lambda: sum_tree.sample(state.tree, batch, g)


def _write_back(state: prioritized.PrioritizedState, batch: int) -> Callable[[], object]:
    g = torch.Generator().manual_seed(SEED + 1)
    indices = sum_tree.sample(state.tree, batch, g)
    td = torch.randn(batch, generator=g)
    return lambda: prioritized.update_priorities(state, indices, td, ALPHA, EPS)


def find(cases: Sequence[Case], kind: str, capacity: int, batch: int) -> Case:
    for case in cases:
        if case.implementation == f"{kind} {capacity}" and case.size == batch:
            return case
    raise KeyError((kind, capacity, batch))


def table(cases: Sequence[Case]) -> str:
    lines = [
        "| capacity | batch | uniform µs | prioritized µs | prioritized / uniform "
        "| of which sum_tree.sample µs | update_priorities µs |",
        "|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for capacity in CAPACITIES:
        for batch in BATCHES:
            u, p, t, w = (
                find(cases, k, capacity, batch) for k in (UNIFORM, PRIORITIZED, TREE, WRITE_BACK)
            )
            lines.append(
                f"| {capacity:,} | {batch} | {fmt_us(u.median_us)} | {fmt_us(p.median_us)} "
                f"| {p.median_us / u.median_us:.2f}x | {fmt_us(t.median_us)} "
                f"| {fmt_us(w.median_us)} |"
            )
    return "\n".join(lines)


def aims(cases: Sequence[Case]) -> list[str]:
    lines = []
    for capacity in CAPACITIES:
        for batch in BATCHES:
            u, p = find(cases, UNIFORM, capacity, batch), find(cases, PRIORITIZED, capacity, batch)
            ratio = p.median_us / u.median_us
            verdict = "MET" if ratio <= AIM_RATIO else "NOT MET"
            lines.append(
                f"capacity {capacity:,}, batch {batch}: prioritized within {AIM_RATIO:g}x of "
                f"uniform: {ratio:.2f}x -> {verdict}"
            )
    lines.append("faster than TorchRL's PrioritizedReplayBuffer: not measured (see README)")
    return lines


def to_json(cases: Sequence[Case], settings: Settings, clock: str) -> dict[str, Any]:
    return {
        "benchmark": "prioritized",
        "timestamp_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "platform": platform.platform(),
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "load_average_after": os.getloadavg(),
        "branching": {c: sum_tree.default_branching(c) for c in CAPACITIES},
        "settings": settings.__dict__,
        "clock": clock,
        "results": [
            {
                "case": case.implementation,
                "batch": case.size,
                "number": case.number,
                "median_us": case.median_us,
                "times_us": case.times_us,
            }
            for case in cases
        ],
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_prioritized",
        description="Times dqnkit's prioritized replay sample against its uniform sample.",
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run, not a measurement")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the raw figures here")
    parser.add_argument(
        "--wall",
        action="store_true",
        help="time wall-clock instead of this process's CPU time (time.process_time)",
    )
    args = parser.parse_args(argv)
    settings = QUICK if args.quick else FULL
    torch.set_num_threads(1)
    cases = [case for capacity in CAPACITIES for case in cases_for(capacity)]
    measure(cases, settings, time.perf_counter if args.wall else time.process_time)
    print(
        "# Prioritized replay against uniform replay, CartPole-shaped rows"
        f"{' (--quick: NOT a measurement)' if args.quick else ''}"
    )
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    print(
        f"python {sys.version.split()[0]}, torch {torch.__version__}, 1 thread, "
        f"{'wall-clock' if args.wall else 'CPU'} time, sum tree "
        f"branching {[sum_tree.default_branching(c) for c in CAPACITIES]}; median of "
        f"{settings.rounds * settings.repeat} timings per cell; "
        f"load average after (1, 5, 15 min): {load}"
    )
    print()
    print(table(cases))
    print()
    for line in aims(cases):
        print(f"- {line}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(to_json(cases, settings, "wall" if args.wall else "process_time"), indent=2)
            + "\n"
        )
        print(f"\nraw figures written to {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
