"""Pixel replay: the frame-sharing ring (frame_replay) against the plain ring (replay).

Run from the repository root::

    .venv/bin/python -m benchmarks.bench_frame_replay            # capacity 100,000 (~2 minutes)
    .venv/bin/python -m benchmarks.bench_frame_replay --quick    # smoke run, capacity 10,000
    .venv/bin/python -m benchmarks.bench_frame_replay --capacity 50000 --json out.json

For the uint8 observations dqnkit trains on from pixels, ``[1, 40, 80]`` (difference of two
screens) and ``[4, 40, 80]`` (stack of 4 screens), with action ``int64``, reward ``float32`` and
terminated ``bool`` as the training loop's example row has them:

- **memory**: each buffer is allocated and filled completely in a fresh subprocess, in chunks of
  128 steps (so every page is written), and reports the bytes of its storage (the sum of its
  tensors' ``nbytes``) and the increase of the process's resident set (``/proc/self/statm``) from
  just before :func:`init` to just after the fill. The plain buffer gets ``capacity`` rows
  (``obs`` and ``next_obs`` each a copy of a frame). The frame ring is written as the training
  loop writes one environment: episodes of a fixed length ``L`` (``--episode-lengths``), each a
  first slot (the reset observation) then one slot per step, the last step terminated, until at
  least ``capacity`` slots have been written (the last chunk wraps a little, so the ring is in
  its steady state); it then reports how many transitions are sampleable
  (``len(frame_replay.sampleable(state))``) against the plain buffer's ``capacity``.
- **speed**: in one subprocess per observation shape, holding the full plain buffer and one full
  frame ring per ``L``, ``sample`` of 32 and of 128 (each with its own ``torch.Generator``) and
  ``add`` of pre-built chunks of 128 steps (a :class:`Transition` of 128 rows for the plain
  buffer; an :class:`Entry` of 128 step slots plus the episodes' first slots among them for the
  frame ring), reported per step. Timings are interleaved round by round, ``timeit`` calibrated
  to a fixed duration after a warm-up, with ``torch.set_num_threads(1)``; the tables give medians
  (and quartiles), the minor page faults per call (``ru_minflt``) and the ratio frame / plain
  of medians from the same process. The speed subprocesses run twice: with glibc's malloc as it
  comes, and with ``MALLOC_TRIM_THRESHOLD_`` / ``MALLOC_MMAP_THRESHOLD_`` set so that freed
  memory stays in the process (see :data:`MALLOC_MODES`): a sampled batch of a few MiB is fresh
  memory, and with the defaults it may or may not page-fault on every 4 KiB it writes, which at
  ``[4, 40, 80]`` can cost more than the copy itself and flips from run to run.

Frame contents are random uint8 frames from a pool built before anything is measured; neither
buffer looks at them, so they do not change the figures.
"""

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import torch

from benchmarks.bench_replay import ADD, SAMPLE, Case, Settings, fmt_us, measure
from dqnkit.adapters.experience import example_row
from dqnkit.core import Transition, frame_replay, replay

SHAPES: dict[str, tuple[int, int, int]] = {
    "difference": (1, 40, 80),
    "stack of 4": (4, 40, 80),
}
CAPACITY = 100_000
QUICK_CAPACITY = 10_000
EPISODE_LENGTHS = (200, 20)  # a trained CartPole pixel agent; an early, random-ish one
CHUNK = 128  # steps per add, in the fill and in the timed adds
SAMPLE_BATCHES = (32, 128)
POOL = 1024  # distinct random frames the observations are sliced from
ADD_CYCLE = 16  # pre-built chunks cycled through by the timed adds
N_ACTIONS = 2
SEED = 0

PLAIN = "plain"
FRAME = "frame"
MIB = 1024 * 1024

# The speed subprocesses run twice. With glibc's defaults a freed batch of a few MiB may be given
# back to the system (heap trimming, or its own mmap), and the next batch then pays a page fault
# per 4 KiB page it writes; whether it does depends on the order of allocations, so on the code
# around the copy as much as on the copy. The second run keeps freed memory in the process, which
# leaves the buffers' own work.
MALLOC_MODES: dict[str, dict[str, str]] = {
    "glibc malloc defaults": {},
    "freed memory kept by malloc": {
        "MALLOC_TRIM_THRESHOLD_": str(1 << 34),
        "MALLOC_MMAP_THRESHOLD_": str(1 << 25),
    },
}


FULL = Settings(rounds=7, repeat=3, target_s=0.03, warmup=30)
QUICK = Settings(rounds=1, repeat=3, target_s=0.005, warmup=5)


# --- data -------------------------------------------------------------------------------------


class Feed:
    """One environment's experience, chunk by chunk, as the training loop hands it to a buffer.

    Episodes last ``episode_length`` steps, the last one terminated. Observations are
    consecutive frames of ``pool`` (slices, so building a chunk copies no frame).
    """

    def __init__(self, pool: torch.Tensor, episode_length: int, seed: int) -> None:
        if episode_length < 1:
            raise ValueError(f"episode length must be at least 1, got {episode_length}")
        self.pool = pool
        self.length = episode_length
        self.phase = 0  # steps taken in the current episode; 0: the next step needs a reset
        self.cursor = 0  # the pool frame of the next observation
        self.generator = torch.Generator().manual_seed(seed)

    def _frames(self, count: int) -> torch.Tensor:
        if self.cursor + count > self.pool.shape[0]:
            self.cursor = 0
        frames = self.pool[self.cursor : self.cursor + count]
        self.cursor += count
        return frames

    def _actions(self, count: int) -> torch.Tensor:
        return torch.randint(0, N_ACTIONS, (count,), generator=self.generator)

    def frame_chunk(self, steps: int) -> frame_replay.Entry:
        """The slots of the next ``steps`` steps: each step's, and a first slot per reset."""
        first: list[bool] = []
        terminated: list[bool] = []
        for _ in range(steps):
            if self.phase == 0:
                first.append(True)
                terminated.append(False)
            self.phase += 1
            first.append(False)
            terminated.append(self.phase == self.length)
            if self.phase == self.length:
                self.phase = 0
        count = len(first)
        return frame_replay.Entry(
            stream=torch.zeros(count, dtype=torch.int64),
            obs=self._frames(count),
            first=torch.tensor(first, dtype=torch.bool),
            action=self._actions(count),
            reward=torch.ones(count, dtype=torch.float32),
            terminated=torch.tensor(terminated, dtype=torch.bool),
        )

    def plain_chunk(self, steps: int) -> Transition:
        """The next ``steps`` transitions, ``next_obs`` the following step's ``obs``."""
        frames = self._frames(steps + 1)
        terminated = []
        for _ in range(steps):
            self.phase += 1
            terminated.append(self.phase == self.length)
            if self.phase == self.length:
                self.phase = 0
        return Transition(
            obs=frames[:-1],
            action=self._actions(steps),
            reward=torch.ones(steps, dtype=torch.float32),
            next_obs=frames[1:],
            terminated=torch.tensor(terminated, dtype=torch.bool),
        )


def make_pool(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (POOL, *shape), dtype=torch.uint8, generator=generator)


def fill_plain(capacity: int, feed: Feed) -> replay.ReplayState:
    state = replay.init(capacity, example_row(tuple(feed.pool.shape[1:]), torch.uint8))
    while state.size < capacity:
        state = replay.add(state, feed.plain_chunk(CHUNK))
    return state


def fill_frame(capacity: int, feed: Feed) -> frame_replay.FrameReplayState:
    state = frame_replay.init(
        capacity, example_row(tuple(feed.pool.shape[1:]), torch.uint8), streams=1
    )
    while state.written < capacity:
        state = frame_replay.add(state, feed.frame_chunk(CHUNK))
    return state


def storage_bytes(state: replay.ReplayState | frame_replay.FrameReplayState) -> int:
    tensors = state.storage if isinstance(state, replay.ReplayState) else state[:-1]
    return sum(int(t.nbytes) for t in tensors if isinstance(t, torch.Tensor))


# --- memory (one subprocess per buffer) -------------------------------------------------------


def rss_bytes() -> int:
    """The process's resident set now (``/proc/self/statm``), or its peak where that is missing."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def memory_child(shape_name: str, buffer: str, capacity: int, episode_length: int) -> None:
    """Fills one buffer in this (fresh) process and prints its figures as one JSON line."""
    torch.set_num_threads(1)
    shape = SHAPES[shape_name]
    pool = make_pool(shape, SEED)
    # Warm up the code paths on a small buffer first, so that lazily built state of torch is
    # in the baseline, not in the increase.
    warm = Feed(pool, episode_length, SEED)
    if buffer == PLAIN:
        replay.sample(fill_plain(4 * CHUNK, warm), CHUNK, torch.Generator().manual_seed(SEED))
    else:
        frame_replay.sample(fill_frame(4 * CHUNK, warm), CHUNK, torch.Generator().manual_seed(SEED))
    feed = Feed(pool, episode_length, SEED + 1)
    before = rss_bytes()
    result: dict[str, Any] = {"shape": shape_name, "buffer": buffer, "capacity": capacity}
    if buffer == PLAIN:
        plain = fill_plain(capacity, feed)
        after = rss_bytes()
        result |= {"transitions": plain.size, "storage_bytes": storage_bytes(plain)}
    else:
        frame = fill_frame(capacity, feed)
        after = rss_bytes()
        result |= {
            "episode_length": episode_length,
            "written": frame.written,
            "transitions": int(frame_replay.sampleable(frame).numel()),
            "storage_bytes": storage_bytes(frame),
        }
    result["rss_increase_bytes"] = after - before
    print(json.dumps(result))


# --- speed (one subprocess per shape) ---------------------------------------------------------
# Timed with bench_replay's Case and measure: a case's ``implementation`` is the buffer, PLAIN or
# FRAME with its episode length, and its ``size`` the steps of an add chunk or a sample's batch.

State = TypeVar("State")
Chunk = TypeVar("Chunk")


def _sampler(
    sample: Callable[[Any, int, torch.Generator], Transition], state: object, batch: int
) -> Callable[[], object]:
    generator = torch.Generator().manual_seed(SEED + batch)

    def run() -> Transition:
        return sample(state, batch, generator)

    return run


def _adder(
    add: Callable[[State, Chunk], State], state: State, chunks: Sequence[Chunk]
) -> Callable[[], object]:
    """Adds ``chunks`` in turn, keeping the advanced state as a training loop would."""
    current, turn = [state], [0]

    def run() -> None:
        current[0] = add(current[0], chunks[turn[0] % len(chunks)])
        turn[0] += 1

    return run


def speed_cases(
    shape: tuple[int, int, int], capacity: int, episode_lengths: Sequence[int]
) -> list[Case]:
    pool = make_pool(shape, SEED)
    feed = Feed(pool, episode_lengths[0], SEED + 1)
    plain = fill_plain(capacity, feed)
    plain_chunks = [feed.plain_chunk(CHUNK) for _ in range(ADD_CYCLE)]
    cases = [Case(PLAIN, SAMPLE, b, _sampler(replay.sample, plain, b)) for b in SAMPLE_BATCHES]
    cases.append(Case(PLAIN, ADD, CHUNK, _adder(replay.add, plain, plain_chunks)))
    for length in episode_lengths:
        feed = Feed(pool, length, SEED + 2)
        frame = fill_frame(capacity, feed)
        frame_chunks = [feed.frame_chunk(CHUNK) for _ in range(ADD_CYCLE)]
        name = f"{FRAME} L={length}"
        cases += [
            Case(name, SAMPLE, b, _sampler(frame_replay.sample, frame, b)) for b in SAMPLE_BATCHES
        ]
        cases.append(Case(name, ADD, CHUNK, _adder(frame_replay.add, frame, frame_chunks)))
    return cases


def speed_child(
    shape_name: str, capacity: int, episode_lengths: Sequence[int], quick: bool
) -> None:
    """Times both buffers for one shape in this process and prints the timings as JSON."""
    torch.set_num_threads(1)
    cases = speed_cases(SHAPES[shape_name], capacity, episode_lengths)
    measure(cases, QUICK if quick else FULL)
    print(
        json.dumps(
            [
                {
                    "shape": shape_name,
                    "buffer": case.implementation,
                    "operation": case.operation,
                    "size": case.size,
                    "number": case.number,
                    "times_us": case.times_us,
                    "faults_per_call": case.faults_per_call,
                }
                for case in cases
            ]
        )
    )


# --- parent: run the children, print the tables -----------------------------------------------


def run_child(args: list[str], env: dict[str, str] | None = None) -> Any:
    """Runs this module with ``args`` in a fresh interpreter and returns its JSON line."""
    root = Path(__file__).resolve().parents[1]
    command = [sys.executable, "-m", "benchmarks.bench_frame_replay", *args]
    done = subprocess.run(
        command, cwd=root, env={**os.environ, **(env or {})}, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _mib(value: float) -> str:
    return f"{value / MIB:.1f}"


def memory_table(results: Sequence[dict[str, Any]]) -> str:
    lines = [
        "| observation | buffer | L | storage MiB (nbytes) | RSS increase MiB | RSS / storage "
        "| sampleable transitions | transitions / plain | storage / plain |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for result in results:
        plain = next(r for r in results if r["shape"] == result["shape"] and r["buffer"] == PLAIN)
        is_plain = result["buffer"] == PLAIN
        length = "" if is_plain else str(result["episode_length"])
        kept = "" if is_plain else f"{result['transitions'] / plain['transitions']:.4f}"
        stored = "" if is_plain else f"{result['storage_bytes'] / plain['storage_bytes']:.4f}"
        lines.append(
            f"| {result['shape']} {list(SHAPES[result['shape']])} | {result['buffer']} "
            f"| {length} | {_mib(result['storage_bytes'])} "
            f"| {_mib(result['rss_increase_bytes'])} "
            f"| {result['rss_increase_bytes'] / result['storage_bytes']:.3f} "
            f"| {result['transitions']:,} | {kept} | {stored} |"
        )
    return "\n".join(lines)


def speed_table(results: Sequence[dict[str, Any]], episode_lengths: Sequence[int]) -> str:
    header = "| observation | operation | plain µs (p25–p75) | faults |"
    rule = "|---|---|--:|--:|"
    for length in episode_lengths:
        header += f" frame L={length} µs (p25–p75) | faults | frame / plain |"
        rule += "--:|--:|--:|"
    lines = [header, rule]
    operations = [(SAMPLE, b) for b in SAMPLE_BATCHES] + [(ADD, CHUNK)]
    for shape in SHAPES:
        for operation, size in operations:

            def pick(buffer: str, shape: str = shape, op: str = operation, n: int = size) -> Case:
                row = next(
                    r
                    for r in results
                    if (r["shape"], r["buffer"], r["operation"], r["size"])
                    == (shape, buffer, op, n)
                )
                case = Case(
                    buffer, op, n, lambda: None, number=row["number"], times_us=row["times_us"]
                )
                case.faults, case.calls = round(row["faults_per_call"] * 1000), 1000
                return case

            label = (
                f"sample {size} (per batch)"
                if operation == SAMPLE
                else f"add, chunks of {size} steps (per step)"
            )
            plain = pick(PLAIN)
            q1, q2, q3 = plain.quartiles()
            cells = [
                f"{shape} {list(SHAPES[shape])}",
                label,
                f"{fmt_us(q2)} ({fmt_us(q1)}–{fmt_us(q3)})",
                f"{plain.faults_per_call:.1f}",
            ]
            for length in episode_lengths:
                frame = pick(f"{FRAME} L={length}")
                f1, f2, f3 = frame.quartiles()
                cells += [
                    f"{fmt_us(f2)} ({fmt_us(f1)}–{fmt_us(f3)})",
                    f"{frame.faults_per_call:.1f}",
                    f"{f2 / q2:.2f}x",
                ]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _load() -> str:
    return ", ".join(f"{value:.2f}" for value in os.getloadavg())


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_frame_replay",
        description="Memory and speed of frame_replay against replay for pixel observations.",
    )
    parser.add_argument(
        "--capacity",
        type=int,
        default=None,
        help=f"transitions (plain) / observations (frame) per buffer; default {CAPACITY:,}, "
        f"{QUICK_CAPACITY:,} with --quick",
    )
    parser.add_argument(
        "--episode-lengths",
        type=int,
        nargs="+",
        default=list(EPISODE_LENGTHS),
        metavar="L",
        help="steps per episode when filling the frame ring (default: %(default)s)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="small capacity, short timings: a smoke run"
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the raw figures here")
    # Internal: what one subprocess measures.
    parser.add_argument("--child", choices=("memory", "speed"), help=argparse.SUPPRESS)
    parser.add_argument("--shape", choices=tuple(SHAPES), help=argparse.SUPPRESS)
    parser.add_argument("--buffer", choices=(PLAIN, FRAME), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    capacity = args.capacity or (QUICK_CAPACITY if args.quick else CAPACITY)
    lengths: list[int] = args.episode_lengths
    if args.child == "memory":
        memory_child(args.shape, args.buffer, capacity, lengths[0])
        return 0
    if args.child == "speed":
        speed_child(args.shape, capacity, lengths, args.quick)
        return 0

    load_before = _load()
    common = ["--capacity", str(capacity)] + (["--quick"] if args.quick else [])
    memory: list[dict[str, Any]] = []
    for shape in SHAPES:
        base = ["--child", "memory", "--shape", shape, *common]
        memory.append(run_child([*base, "--buffer", PLAIN]))
        for length in lengths:
            memory.append(run_child([*base, "--buffer", FRAME, "--episode-lengths", str(length)]))
    speed: dict[str, list[dict[str, Any]]] = {}
    for malloc, env in MALLOC_MODES.items():
        speed[malloc] = []
        for shape in SHAPES:
            speed[malloc] += run_child(
                ["--child", "speed", "--shape", shape, *common, "--episode-lengths"]
                + [str(length) for length in lengths],
                env,
            )
    load_after = _load()
    settings = QUICK if args.quick else FULL

    print(
        f"# Pixel replay: frame_replay vs replay, capacity {capacity:,}, uint8 frames"
        f"{' (--quick: NOT a measurement)' if args.quick else ''}"
    )
    print(
        f"python {sys.version.split()[0]}, torch {torch.__version__}, 1 thread; "
        f"{os.cpu_count()} CPUs; load average (1, 5, 15 min) before: {load_before}, "
        f"after: {load_after}"
    )
    print()
    print(
        f"## Memory (each buffer filled in a fresh process, chunks of {CHUNK} steps; "
        "frame ring: one env, episodes of L steps, first slot + L step slots each)"
    )
    print()
    print(memory_table(memory))
    print()
    for malloc, env in MALLOC_MODES.items():
        print(
            f"## Speed, {malloc} (median of {settings.rounds * settings.repeat} timings, each >= "
            f"{settings.target_s} s; both buffers full, same process per observation shape; "
            "faults: minor page faults per call)"
        )
        if env:
            print()
            print("environment: " + " ".join(f"{k}={v}" for k, v in env.items()))
        print()
        print(speed_table(speed[malloc], lengths))
        print()
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {
                    "benchmark": "frame_replay",
                    "timestamp_utc": datetime.now(UTC).isoformat(timespec="seconds"),
                    "python": sys.version.split()[0],
                    "torch": torch.__version__,
                    "platform": platform.platform(),
                    "cpu_count": os.cpu_count(),
                    "load_average_before": load_before,
                    "load_average_after": load_after,
                    "capacity": capacity,
                    "memory": memory,
                    "speed": speed,
                },
                indent=2,
            )
            + "\n"
        )
        print(f"raw figures written to {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
