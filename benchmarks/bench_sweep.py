"""What Ray Tune costs: a sweep of 4 trials on 2 CPUs against the same 4 trainings run two at a
time without Ray (a process pool of 2), interleaved in one run.

    .venv/bin/python -m benchmarks.bench_sweep --seeds 0-3 --json benchmarks/out/sweep.json

Both arms do the same work per seed: ``train`` with the environment's preset (plus the
overrides given), then the greedy evaluation of the final weights that the sweep's table uses
(``--table-episodes`` episodes). The sweep arm's wall-clock includes starting and stopping the
local Ray, Tune's bookkeeping, the checkpoint copies it keeps, and the table and plot; the pool
arm's includes starting its two processes. Each arm's runs are checked to end with the same
weights (the sweep changes how runs are scheduled, never what they compute).
"""

import argparse
import json
import multiprocessing
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from dqnkit.adapters import evaluate, train
from dqnkit.adapters.config import config_for
from dqnkit.adapters.sweep import SweepSpec, parse_grid, parse_seeds, run_sweep


def _one_thread() -> None:
    # What Ray gives a 1-CPU worker (OMP_NUM_THREADS=1): train() sets its own threads, but the
    # greedy evaluation after it would otherwise use torch's default (every core) in each of
    # the two processes.
    torch.set_num_threads(1)


def _one_training(job: tuple[str, dict[str, Any], int, str, int]) -> str:
    env_id, overrides, seed, out, episodes = job
    result = train(config_for(env_id, **overrides, seed=seed, out=out), quiet=True)
    evaluate(result.run_dir, episodes=episodes)
    return str(result.run_dir)


def pool_arm(
    env_id: str, grid: dict[str, Any], seeds: tuple[int, ...], episodes: int
) -> dict[str, Any]:
    overrides = {name: values[0] for name, values in grid.items()}
    with tempfile.TemporaryDirectory() as out:
        jobs = [(env_id, overrides, s, out, episodes) for s in seeds]
        start = time.perf_counter()
        with multiprocessing.get_context("spawn").Pool(2, initializer=_one_thread) as pool:
            run_dirs = pool.map(_one_training, jobs, chunksize=1)
        wall = time.perf_counter() - start
        weights = {
            s: load_file(Path(d) / "policy.safetensors")
            for s, d in zip(seeds, run_dirs, strict=True)
        }
    return {"wall_seconds": wall, "weights": weights}


def sweep_arm(
    env_id: str, grid: dict[str, Any], seeds: tuple[int, ...], episodes: int
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as out:
        spec = SweepSpec(env_id, seeds, grid, table_episodes=episodes)
        start = time.perf_counter()
        result = run_sweep(spec, out=out, quiet=True)
        wall = time.perf_counter() - start
        weights = {
            t["seed"]: load_file(Path(t["run_dir"]) / "policy.safetensors") for t in result.trials
        }
        trial_walls = [t["wall_seconds"] for t in result.trials]
    return {"wall_seconds": wall, "weights": weights, "trial_walls": trial_walls}


def same_weights(a: dict[int, Any], b: dict[int, Any]) -> bool:
    return a.keys() == b.keys() and all(
        a[s].keys() == b[s].keys() and all(a[s][k].equal(b[s][k]) for k in a[s]) for s in a
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("--seeds", default="0-3")
    parser.add_argument("--grid", action="append", default=[], help="fixed overrides, NAME=VALUE")
    parser.add_argument("--table-episodes", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    seeds = parse_seeds(args.seeds)
    grid = parse_grid(args.grid)
    if any(not isinstance(v, tuple) or len(v) != 1 for v in grid.values()):
        parser.error("--grid here takes one value per name (the same 4 trainings in both arms)")

    rows: list[dict[str, Any]] = []
    for repeat in range(args.repeats):
        # Alternate which arm goes first, so a change in the machine's load hits both.
        order = ("sweep", "pool") if repeat % 2 == 0 else ("pool", "sweep")
        got: dict[str, dict[str, Any]] = {}
        for arm in order:
            run = sweep_arm if arm == "sweep" else pool_arm
            got[arm] = run(args.env, grid, seeds, args.table_episodes)
            print(f"repeat {repeat}: {arm} {got[arm]['wall_seconds']:.1f} s", flush=True)
        if not same_weights(got["sweep"]["weights"], got["pool"]["weights"]):
            raise SystemExit("the sweep's final weights differ from the pool's")
        rows.append(
            {
                "repeat": repeat,
                "order": list(order),
                "sweep_seconds": got["sweep"]["wall_seconds"],
                "pool_seconds": got["pool"]["wall_seconds"],
                "ratio": got["sweep"]["wall_seconds"] / got["pool"]["wall_seconds"],
                "trial_walls": got["sweep"]["trial_walls"],
                "load_after": os.getloadavg()[0],
            }
        )
    sweep_median = statistics.median(r["sweep_seconds"] for r in rows)
    pool_median = statistics.median(r["pool_seconds"] for r in rows)
    summary = {
        "env_id": args.env,
        "seeds": list(seeds),
        "overrides": {k: v[0] for k, v in grid.items()},  # type: ignore[index]
        "table_episodes": args.table_episodes,
        "rows": rows,
        "sweep_median_seconds": sweep_median,
        "pool_median_seconds": pool_median,
        "ratio_of_medians": sweep_median / pool_median,
        "ratios": [r["ratio"] for r in rows],
        "cpus": len(os.sched_getaffinity(0)),
        "python": platform.python_version(),
        "ray": __import__("ray").__version__,
    }
    print(json.dumps({k: v for k, v in summary.items() if k != "rows"}, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
