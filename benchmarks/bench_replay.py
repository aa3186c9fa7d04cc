"""Replay-buffer micro-benchmark for issue 2: dqnkit vs the PyTorch DQN tutorial vs SB3.

Run from the repository root::

    .venv/bin/python -m benchmarks.bench_replay            # full run (about a minute)
    .venv/bin/python -m benchmarks.bench_replay --quick    # smoke run (a few seconds)
    .venv/bin/python -m benchmarks.bench_replay --json benchmarks/out/replay.json

Everything is measured in one process, so the ratios compare like with like:

- ``dqnkit``: :func:`dqnkit.core.replay.add` of CartPole-shaped rows (obs ``float32 [4]``,
  action ``int64 []``, reward ``float32 []``, next_obs ``float32 [4]``, terminated ``bool []``)
  in chunks of several sizes, and :func:`dqnkit.core.replay.sample` from a full buffer.
- ``tutorial``: a re-implementation of the memory in PyTorch's "Reinforcement Learning (DQN)
  Tutorial": a ``deque(maxlen=capacity)`` of ``Transition(state, action, next_state, reward)``
  tuples of per-step tensors (``[1, 4]``, ``[1, 1]``, ``[1, 4]`` or None, ``[1]``), one ``push``
  per step, and ``random.sample`` followed by the ``torch.cat`` batching of ``optimize_model``.
- ``sb3``: ``stable_baselines3.common.buffers.ReplayBuffer`` (Box(4) observations, Discrete(2)
  actions, ``device="cpu"``), one ``add`` per step and ``sample``; skipped if SB3 is missing.

Inputs are built before timing: each implementation is handed what its training loop would
already hold (tensors for dqnkit and the tutorial, numpy arrays for SB3). All buffers hold
``CAPACITY`` rows before anything is timed, so adds overwrite (the steady state) and samples
draw from a full buffer. Each figure is the median of several ``timeit.repeat`` runs, taken in
interleaved rounds so that a slow spell on a shared machine hits every implementation alike.
"""

import argparse
import collections
import itertools
import json
import os
import platform
import random
import resource
import statistics
import sys
import timeit
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from dqnkit.core import Transition, replay

CAPACITY = 100_000
OBS_DIM = 4
N_ACTIONS = 2
ADD_CHUNKS = (1, 8, 64, 256)
SAMPLE_BATCHES = (32, 128)
# About one step in 25 ends an episode, as with a random CartPole policy.
TERMINAL_RATE = 0.04
# Distinct per-step inputs cycled through by SB3's one-row-per-call adds.
STEP_POOL = 1024
SEED = 0

DQNKIT = "dqnkit"
TUTORIAL = "tutorial"
SB3 = "sb3"
ADD = "add"
SAMPLE = "sample"

# The aims.
AIM_SAMPLE_128_US = 10.0
AIM_SB3_RATIO = 3.0
AIM_TUTORIAL_RATIO = 50.0
AIM_ADD_PER_ROW_US = 1.0


@dataclass(frozen=True)
class Settings:
    """How long to measure: ``rounds`` x ``repeat`` timings of ``number`` calls each."""

    rounds: int
    repeat: int
    target_s: float  # the calibrated duration of one timing
    warmup: int  # untimed calls before calibrating


FULL = Settings(rounds=5, repeat=3, target_s=0.1, warmup=200)
QUICK = Settings(rounds=1, repeat=3, target_s=0.005, warmup=20)


@dataclass
class Case:
    """One timed operation: ``run`` adds ``size`` rows or samples a batch of ``size``."""

    implementation: str
    operation: str
    size: int  # rows per add call, or the batch size of a sample
    run: Callable[[], object]
    number: int = 0  # calls per timing
    # Untimed, before each timing of ``number`` calls (after ``number`` is set).
    setup: Callable[[], object] = lambda: None
    times_us: list[float] = field(default_factory=list)
    faults: int = 0  # minor page faults during the timed calls
    calls: int = 0  # timed calls

    @property
    def unit(self) -> str:
        return "us/row" if self.operation == ADD else "us/batch"

    @property
    def divisor(self) -> int:
        """Calls are reported per row for adds and per batch for samples."""
        return self.size if self.operation == ADD else 1

    def quartiles(self) -> tuple[float, float, float]:
        if len(self.times_us) == 1:
            return self.times_us[0], self.times_us[0], self.times_us[0]
        q1, q2, q3 = statistics.quantiles(self.times_us, n=4, method="inclusive")
        return q1, q2, q3

    @property
    def median_us(self) -> float:
        return statistics.median(self.times_us)

    @property
    def faults_per_call(self) -> float:
        return self.faults / self.calls if self.calls else 0.0


# --- data -------------------------------------------------------------------------------------


class Steps(NamedTuple):
    """CartPole-shaped steps as numpy arrays, one row per step."""

    obs: np.ndarray
    action: np.ndarray
    reward: np.ndarray
    next_obs: np.ndarray
    terminated: np.ndarray


def make_steps(count: int, seed: int) -> Steps:
    rng = np.random.default_rng(seed)
    return Steps(
        obs=rng.standard_normal((count, OBS_DIM), dtype=np.float32),
        action=rng.integers(0, N_ACTIONS, size=count, dtype=np.int64),
        reward=np.ones(count, dtype=np.float32),
        next_obs=rng.standard_normal((count, OBS_DIM), dtype=np.float32),
        terminated=rng.random(count) < TERMINAL_RATE,
    )


# --- dqnkit -----------------------------------------------------------------------------------


def dqnkit_cases(steps: Steps) -> list[Case]:
    rows = Transition(*(torch.from_numpy(column) for column in steps))
    example = Transition(*(column[0] for column in rows))
    state = replay.add(replay.init(CAPACITY, example), rows)
    assert state.size == CAPACITY
    cases = [
        Case(DQNKIT, ADD, chunk, _dqnkit_adder(state, Transition(*(c[:chunk] for c in rows))))
        for chunk in ADD_CHUNKS
    ]
    generator = torch.Generator().manual_seed(SEED)
    for batch in SAMPLE_BATCHES:
        cases.append(Case(DQNKIT, SAMPLE, batch, _dqnkit_sampler(state, batch, generator)))
    return cases


def _dqnkit_adder(state: replay.ReplayState, chunk: Transition) -> Callable[[], object]:
    # add returns the advanced state; keep it, as a training loop would.
    current = [state]

    def run() -> None:
        current[0] = replay.add(current[0], chunk)

    return run


def _dqnkit_sampler(
    state: replay.ReplayState, batch: int, generator: torch.Generator
) -> Callable[[], object]:
    def run() -> Transition:
        return replay.sample(state, batch, generator)

    return run


# --- the PyTorch DQN tutorial -----------------------------------------------------------------
# https://pytorch.org/tutorials/intermediate/reinforcement_q_learning.html, re-implemented:
# ReplayMemory as written there, and the batching at the top of its optimize_model().


class TutorialTransition(NamedTuple):
    state: torch.Tensor
    action: torch.Tensor
    next_state: torch.Tensor | None
    reward: torch.Tensor


class TutorialBatch(NamedTuple):
    """The tutorial reuses its Transition for this; a class of its own keeps the types honest."""

    state: tuple[torch.Tensor, ...]
    action: tuple[torch.Tensor, ...]
    next_state: tuple[torch.Tensor | None, ...]
    reward: tuple[torch.Tensor, ...]


class TutorialReplayMemory:
    def __init__(self, capacity: int) -> None:
        self.memory: collections.deque[TutorialTransition] = collections.deque(maxlen=capacity)

    def push(
        self,
        state: torch.Tensor,
        action: torch.Tensor,
        next_state: torch.Tensor | None,
        reward: torch.Tensor,
    ) -> None:
        """Save a transition."""
        self.memory.append(TutorialTransition(state, action, next_state, reward))

    def sample(self, batch_size: int) -> list[TutorialTransition]:
        return random.sample(self.memory, batch_size)

    def __len__(self) -> int:
        return len(self.memory)


def tutorial_stream(steps: Steps, device: torch.device) -> Iterator[TutorialTransition]:
    """The steps, endlessly, as the tutorial's training loop turns them into tensors.

    As there, one step's ``next_state`` tensor is the next step's ``state`` (``state =
    next_state``), and a new ``state`` tensor is made only after a terminal step (a reset).
    """
    state: torch.Tensor | None = None
    for i in itertools.cycle(range(len(steps.obs))):
        if state is None:
            state = torch.tensor(steps.obs[i], dtype=torch.float32, device=device).unsqueeze(0)
        action = torch.tensor([[int(steps.action[i])]], device=device, dtype=torch.long)
        reward = torch.tensor([float(steps.reward[i])], device=device)
        next_state = (
            None
            if steps.terminated[i]
            else torch.tensor(steps.next_obs[i], dtype=torch.float32, device=device).unsqueeze(0)
        )
        yield TutorialTransition(state, action, next_state, reward)
        state = next_state


def tutorial_batch(
    memory: TutorialReplayMemory, batch_size: int, device: torch.device
) -> tuple[torch.Tensor, ...]:
    """The tutorial's optimize_model() up to the forward pass."""
    transitions = memory.sample(batch_size)
    # Transpose the batch: a Transition of batch-arrays from a batch-array of Transitions.
    batch = TutorialBatch(*zip(*transitions, strict=True))
    non_final_mask = torch.tensor(
        tuple(s is not None for s in batch.next_state), device=device, dtype=torch.bool
    )
    non_final_next_states = torch.cat([s for s in batch.next_state if s is not None])
    state_batch = torch.cat(batch.state)
    action_batch = torch.cat(batch.action)
    reward_batch = torch.cat(batch.reward)
    return state_batch, action_batch, reward_batch, non_final_mask, non_final_next_states


def tutorial_cases(steps: Steps) -> list[Case]:
    device = torch.device("cpu")
    stream = tutorial_stream(steps, device)
    memory = TutorialReplayMemory(CAPACITY)
    for transition in itertools.islice(stream, CAPACITY):
        memory.push(*transition)
    assert len(memory) == CAPACITY
    random.seed(SEED)

    # Each timed push gets new tensors, built before the timing: in the tutorial the memory
    # holds the only reference to most of a step's tensors, so a push frees the transition it
    # evicts, and that is part of its cost. Building them is not (the training loop does it
    # whatever the memory).
    fresh: collections.deque[TutorialTransition] = collections.deque()

    def push() -> None:
        memory.push(*fresh.popleft())

    push_case = Case(TUTORIAL, ADD, 1, push)

    def refill() -> None:
        fresh.extend(itertools.islice(stream, push_case.number - len(fresh)))

    push_case.setup = refill
    cases = [push_case]
    for batch in SAMPLE_BATCHES:
        cases.append(Case(TUTORIAL, SAMPLE, batch, _tutorial_sampler(memory, batch, device)))
    return cases


def _tutorial_sampler(
    memory: TutorialReplayMemory, batch: int, device: torch.device
) -> Callable[[], object]:
    def run() -> tuple[torch.Tensor, ...]:
        return tutorial_batch(memory, batch, device)

    return run


# --- Stable-Baselines3 ------------------------------------------------------------------------


def sb3_version() -> str | None:
    try:
        import stable_baselines3
    except ImportError:
        return None
    return str(stable_baselines3.__version__)


def sb3_cases(steps: Steps) -> list[Case]:
    from gymnasium import spaces
    from stable_baselines3.common.buffers import ReplayBuffer

    buffer = ReplayBuffer(
        CAPACITY,
        spaces.Box(-np.inf, np.inf, shape=(OBS_DIM,), dtype=np.float32),
        spaces.Discrete(N_ACTIONS),
        device="cpu",
    )

    def step(i: int) -> tuple[Any, ...]:
        # What a one-env VecEnv loop holds: a leading env dimension of 1, an info dict per env.
        return (
            steps.obs[i : i + 1].copy(),
            steps.next_obs[i : i + 1].copy(),
            steps.action[i : i + 1].copy(),
            steps.reward[i : i + 1].copy(),
            steps.terminated[i : i + 1].copy(),
            [{}],
        )

    for i in range(CAPACITY):
        buffer.add(*step(i))
    assert buffer.full
    pool = itertools.cycle([step(i) for i in range(STEP_POOL)])

    def add() -> None:
        buffer.add(*next(pool))

    cases = [Case(SB3, ADD, 1, add)]
    for batch in SAMPLE_BATCHES:
        cases.append(Case(SB3, SAMPLE, batch, _sb3_sampler(buffer, batch)))
    return cases


def _sb3_sampler(buffer: Any, batch: int) -> Callable[[], object]:
    def run() -> object:
        return buffer.sample(batch)

    return run


# --- timing -----------------------------------------------------------------------------------


def calibrate(case: Case, timer: timeit.Timer, target_s: float) -> None:
    """Sets ``case.number`` to the calls (a power of two) one timing needs to last ``target_s``."""
    case.number = 1
    while timer.timeit(case.number) < target_s:
        case.number *= 2


def minor_faults() -> int:
    """Minor page faults of this process so far (first touches of freshly mapped memory)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def measure(
    cases: Sequence[Case], settings: Settings, clock: Callable[[], float] = timeit.default_timer
) -> None:
    """Fills each case's ``times_us`` (and fault counts), interleaving the cases round by round.

    ``clock`` is the timer: wall-clock by default; ``time.process_time`` counts only this
    process's CPU time, which other jobs on a shared machine disturb less.
    """
    timers = [timeit.Timer(case.run, setup=case.setup, timer=clock) for case in cases]
    for case, timer in zip(cases, timers, strict=True):
        case.number = settings.warmup
        timer.timeit(case.number)
        calibrate(case, timer, settings.target_s)
    for _ in range(settings.rounds):
        for case, timer in zip(cases, timers, strict=True):
            faults = minor_faults()
            times = timer.repeat(repeat=settings.repeat, number=case.number)
            case.faults += minor_faults() - faults
            case.calls += settings.repeat * case.number
            case.times_us.extend(t / case.number / case.divisor * 1e6 for t in times)


# --- report -----------------------------------------------------------------------------------


def find(cases: Sequence[Case], implementation: str, operation: str, size: int) -> Case | None:
    for case in cases:
        if (case.implementation, case.operation, case.size) == (implementation, operation, size):
            return case
    return None


def ratio(cases: Sequence[Case], implementation: str, operation: str, size: int) -> float | None:
    """The median time of ``implementation`` over dqnkit's, for the same call."""
    other = find(cases, implementation, operation, size)
    ours = find(cases, DQNKIT, operation, size)
    if other is None or ours is None:
        return None
    return other.median_us / ours.median_us


def fmt_us(value: float) -> str:
    """A time in µs to about four significant figures."""
    return f"{value:.3f}" if value < 10 else f"{value:.2f}" if value < 100 else f"{value:.1f}"


def _fmt_ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def results_table(cases: Sequence[Case]) -> str:
    lines = [
        "| implementation | operation | batch/chunk | µs (median) | µs (p25–p75) | time / dqnkit |",
        "|---|---|--:|--:|--:|--:|",
    ]
    for case in cases:
        q1, q2, q3 = case.quartiles()
        label = f"{case.operation} ({'per row' if case.operation == ADD else 'per batch'})"
        rel = "" if case.implementation == DQNKIT else _fmt_ratio(ratio(cases, *_key(case)))
        lines.append(
            f"| {case.implementation} | {label} | {case.size} | {fmt_us(q2)} "
            f"| {fmt_us(q1)}–{fmt_us(q3)} | {rel} |"
        )
    return "\n".join(lines)


def _key(case: Case) -> tuple[str, str, int]:
    return case.implementation, case.operation, case.size


def ratios_table(cases: Sequence[Case]) -> str:
    lines = [
        "| sample batch | dqnkit µs | SB3 µs | SB3 / dqnkit | tutorial µs | tutorial / dqnkit |",
        "|--:|--:|--:|--:|--:|--:|",
    ]
    for batch in SAMPLE_BATCHES:
        cells = [str(batch)]
        for implementation in (DQNKIT, SB3, TUTORIAL):
            case = find(cases, implementation, SAMPLE, batch)
            cells.append("n/a" if case is None else fmt_us(case.median_us))
            if implementation != DQNKIT:
                cells.append(_fmt_ratio(ratio(cases, implementation, SAMPLE, batch)))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def aims(cases: Sequence[Case]) -> list[str]:
    """The issue's aims, each with the measured figure and whether it was met.

    The sample aims are stated for a batch of 128; the add aim for every chunk size.
    """

    def verdict(met: bool) -> str:
        return "MET" if met else "NOT MET"

    lines = []
    sample_128 = find(cases, DQNKIT, SAMPLE, 128)
    assert sample_128 is not None
    lines.append(
        f"sample 128 in <= {AIM_SAMPLE_128_US:g} µs: {fmt_us(sample_128.median_us)} µs"
        f" -> {verdict(sample_128.median_us <= AIM_SAMPLE_128_US)}"
    )
    for implementation, aim in ((SB3, AIM_SB3_RATIO), (TUTORIAL, AIM_TUTORIAL_RATIO)):
        value = ratio(cases, implementation, SAMPLE, 128)
        outcome = "not measured" if value is None else verdict(value >= aim)
        lines.append(
            f"sample 128 >= {aim:g}x faster than {implementation}: {_fmt_ratio(value)} -> {outcome}"
        )
    for chunk in ADD_CHUNKS:
        add = find(cases, DQNKIT, ADD, chunk)
        assert add is not None
        lines.append(
            f"add in chunks of {chunk} at <= {AIM_ADD_PER_ROW_US:g} µs/row: "
            f"{fmt_us(add.median_us)} µs/row -> {verdict(add.median_us <= AIM_ADD_PER_ROW_US)}"
        )
    return lines


def to_json(cases: Sequence[Case], settings: Settings, sb3: str | None) -> dict[str, Any]:
    return {
        "benchmark": "replay",
        "timestamp_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "numpy": np.__version__,
        "stable_baselines3": sb3,
        "platform": platform.platform(),
        "processor": platform.processor(),
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "load_average_after": os.getloadavg(),
        "capacity": CAPACITY,
        "settings": {
            "rounds": settings.rounds,
            "repeat": settings.repeat,
            "target_s": settings.target_s,
            "warmup": settings.warmup,
        },
        "results": [
            {
                "implementation": case.implementation,
                "operation": case.operation,
                "size": case.size,
                "unit": case.unit,
                "number": case.number,
                "median_us": case.median_us,
                "times_us": case.times_us,
            }
            for case in cases
        ],
        "ratios": {
            f"{implementation}/{DQNKIT} {SAMPLE} {batch}": ratio(
                cases, implementation, SAMPLE, batch
            )
            for implementation in (SB3, TUTORIAL)
            for batch in SAMPLE_BATCHES
        },
    }


# --- main -------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_replay",
        description="Times dqnkit's replay buffer against the PyTorch DQN tutorial's and SB3's.",
    )
    parser.add_argument(
        "--quick", action="store_true", help="a few short timings: a smoke run, not a measurement"
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the raw figures here")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    settings = QUICK if args.quick else FULL
    torch.set_num_threads(1)
    sb3 = sb3_version()

    steps = make_steps(CAPACITY, SEED)
    cases = dqnkit_cases(steps) + tutorial_cases(steps)
    if sb3 is not None:
        cases += sb3_cases(steps)
    measure(cases, settings)

    print(
        f"# Replay buffer, capacity {CAPACITY:,}, CartPole-shaped rows"
        f"{' (--quick: NOT a measurement)' if args.quick else ''}"
    )
    print(
        f"python {sys.version.split()[0]}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} thread(s), stable-baselines3 {sb3 or 'not installed'}; "
        f"median of {settings.rounds * settings.repeat} timings per row"
    )
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    print(f"{os.cpu_count()} CPUs; load average after timing (1, 5, 15 min): {load}")
    if sb3 is None:
        print("stable_baselines3 does not import: its rows are skipped.")
    print()
    print(results_table(cases))
    print()
    print(ratios_table(cases))
    print()
    for line in aims(cases):
        print(f"- {line}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(to_json(cases, settings, sb3), indent=2) + "\n")
        print(f"\nraw figures written to {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
