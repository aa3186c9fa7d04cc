"""Learning benchmark: train a preset over several seeds, then a 100-episode greedy evaluation.

Run: .venv/bin/python -m benchmarks.bench_learning --env CartPole-v1 --seeds 0-9 --jobs 2
Override hyperparameters with --set name=value (repeatable). Prints a markdown table per seed:
steps trained (runs stop early once a periodic evaluation reaches the preset's stop_return),
training wall-clock, and the 100-episode greedy mean of the final weights.
"""

import argparse
import dataclasses
import json
import multiprocessing
import statistics
import tempfile
import time
from typing import Any

import gymnasium as gym

from dqnkit.adapters import TrainConfig, config_for, evaluate, train
from dqnkit.adapters.sweep import parse_seeds


def parse_value(field: dataclasses.Field[Any], text: str) -> Any:
    if field.name == "hidden":
        return tuple(int(x) for x in text.split(","))
    if field.type is bool:
        return text.lower() in ("1", "true", "yes")
    if text.lower() == "none":
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def run_seed(job: tuple[str, int, dict[str, Any], int]) -> dict[str, Any]:
    env_id, seed, overrides, eval_episodes = job
    with tempfile.TemporaryDirectory() as out:
        config = config_for(env_id, seed=seed, out=out, checkpoint_every=0, **overrides)
        start = time.perf_counter()
        result = train(config, quiet=True)
        wall = time.perf_counter() - start
        final = evaluate(result.run_dir, episodes=eval_episodes)
    return {
        "seed": seed,
        "steps": result.steps,
        "train_seconds": round(wall, 2),
        "solved_seconds": None
        if result.solved_seconds is None
        else round(result.solved_seconds, 2),
        "eval_mean": final.mean_return,
        "eval_std": final.std_return,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("--seeds", default="0-9")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--eval-episodes", type=int, default=100)
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args()

    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    overrides = {}
    for item in args.set:
        name, _, value = item.partition("=")
        overrides[name] = parse_value(fields[name], value)
    jobs = [(args.env, s, overrides, args.eval_episodes) for s in parse_seeds(args.seeds)]
    threshold = gym.spec(args.env).reward_threshold  # Gymnasium's solved level, if any
    print(f"{args.env} overrides={overrides} jobs={args.jobs}")
    print("| seed | steps | s to the early stop | train() s | 100-ep greedy mean ± std | solved |")
    print("|---:|---:|---:|---:|---:|:---:|", flush=True)
    rows = []
    with multiprocessing.get_context("spawn").Pool(args.jobs) as pool:
        for r in pool.imap(run_seed, jobs, chunksize=1):  # in seed order, each as it is known
            rows.append(r)
            solved = "" if threshold is None else ("yes" if r["eval_mean"] >= threshold else "no")
            stop = "-" if r["solved_seconds"] is None else f"{r['solved_seconds']:.2f}"
            print(
                f"| {r['seed']} | {r['steps']} | {stop} | {r['train_seconds']:.2f} | "
                f"{r['eval_mean']:.2f} ± {r['eval_std']:.2f} | {solved} |",
                flush=True,
            )
    walls = [r["train_seconds"] for r in rows]
    stops = [r["solved_seconds"] for r in rows if r["solved_seconds"] is not None]
    print(
        f"median train() s: {statistics.median(walls):.2f}; median s to the early stop: "
        f"{statistics.median(stops) if stops else float('nan'):.2f} ({len(stops)} stopped); "
        f"median steps: {statistics.median(r['steps'] for r in rows):.0f}"
    )
    if threshold is not None:
        print(f"solved: {sum(r['eval_mean'] >= threshold for r in rows)} of {len(rows)}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"env": args.env, "overrides": overrides, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
