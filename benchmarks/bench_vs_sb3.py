"""Wall-clock of dqnkit and Stable-Baselines3 training CartPole-v1 with the same hyperparameters.

Run: .venv/bin/python -m benchmarks.bench_vs_sb3 [--steps 50000] [--repeats 3]
Needs the bench extra (stable-baselines3). Both use rl-baselines3-zoo's CartPole-v1 DQN
hyperparameters, train for the same number of steps with no early stopping, run in fresh
processes one after the other, and use one torch thread. --sb3-default-threads also times SB3
once with torch's default thread count, which is what its users get (slow on a shared CPU).
"""

import argparse
import json
import multiprocessing
import statistics
import tempfile
import time
from typing import Any

import numpy as np

# rl-baselines3-zoo hyperparams/dqn.yml, CartPole-v1.
ZOO: dict[str, Any] = {
    "learning_rate": 2.3e-3,
    "batch_size": 64,
    "buffer_size": 100_000,
    "learning_starts": 1_000,
    "gamma": 0.99,
    "target_update_interval": 10,
    "train_freq": 256,
    "gradient_steps": 128,
    "exploration_fraction": 0.16,
    "exploration_final_eps": 0.04,
    "net_arch": [256, 256],
}


def time_sb3(job: tuple[int, int, int]) -> dict[str, float]:
    steps, seed, threads = job
    import gymnasium as gym
    import torch
    from stable_baselines3 import DQN
    from stable_baselines3.common.evaluation import evaluate_policy

    if threads:
        torch.set_num_threads(threads)
    env = gym.make("CartPole-v1")
    params = {k: v for k, v in ZOO.items() if k != "net_arch"}
    model = DQN(
        "MlpPolicy",
        env,
        seed=seed,
        verbose=0,
        device="cpu",
        policy_kwargs={"net_arch": ZOO["net_arch"]},
        **params,
    )
    start = time.perf_counter()
    model.learn(total_timesteps=steps)
    wall = time.perf_counter() - start
    returns = evaluate_policy(model, gym.make("CartPole-v1"), n_eval_episodes=20)[0]
    # np.mean: a float, or a list of returns, depending on evaluate_policy's arguments.
    return {"seconds": wall, "eval_mean": float(np.mean(returns))}


def time_dqnkit(job: tuple[int, int, int]) -> dict[str, float]:
    steps, seed, threads = job
    from dqnkit.adapters import TrainConfig, train

    with tempfile.TemporaryDirectory() as out:
        config = TrainConfig(
            env_id="CartPole-v1",
            seed=seed,
            total_steps=steps,
            out=out,
            threads=threads,
            learning_rate=ZOO["learning_rate"],
            batch_size=ZOO["batch_size"],
            buffer_size=ZOO["buffer_size"],
            learning_starts=ZOO["learning_starts"],
            gamma=ZOO["gamma"],
            target_update_every=ZOO["target_update_interval"],
            tau=1.0,
            train_every=ZOO["train_freq"],
            gradient_steps=ZOO["gradient_steps"],
            epsilon_schedule="linear",
            epsilon_start=1.0,
            epsilon_end=ZOO["exploration_final_eps"],
            epsilon_steps=int(ZOO["exploration_fraction"] * steps),
            hidden=tuple(ZOO["net_arch"]),
            max_grad_norm=10.0,  # SB3's DQN default
            eval_every=0,
            checkpoint_every=0,
            final_eval_episodes=20,
        )
        start = time.perf_counter()
        result = train(config, quiet=True)
        wall = time.perf_counter() - start  # includes the final 20-episode evaluation
    assert result.evaluation is not None
    return {"seconds": wall, "eval_mean": result.evaluation.mean_return}


def in_fresh_process(fn: Any, job: tuple[int, int, int]) -> dict[str, float]:
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(fn, (job,))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", metavar="PATH")
    parser.add_argument("--sb3-default-threads", action="store_true")
    args = parser.parse_args()
    try:
        import stable_baselines3  # noqa: F401
    except ImportError:
        raise SystemExit("stable-baselines3 is not installed: pip install -e .[bench]") from None

    rows: dict[str, list[dict[str, float]]] = {"dqnkit": [], "sb3": []}
    for seed in range(args.repeats):  # interleaved, so drifting machine load hits both
        rows["dqnkit"].append(in_fresh_process(time_dqnkit, (args.steps, seed, 1)))
        rows["sb3"].append(in_fresh_process(time_sb3, (args.steps, seed, 1)))
    sb3_default = (
        in_fresh_process(time_sb3, (args.steps, 0, 0)) if args.sb3_default_threads else None
    )

    print(f"CartPole-v1, zoo hyperparameters, {args.steps} steps, {args.repeats} seeds each")
    print("| implementation | seconds per seed | median s | 20-episode greedy mean per seed |")
    print("|---|---|---:|---|")
    for name, label in (("dqnkit", "dqnkit (1 thread)"), ("sb3", "SB3 DQN (1 thread)")):
        secs = [r["seconds"] for r in rows[name]]
        evals = [r["eval_mean"] for r in rows[name]]
        print(
            f"| {label} | {', '.join(f'{s:.1f}' for s in secs)} | "
            f"{statistics.median(secs):.1f} | {', '.join(f'{e:.0f}' for e in evals)} |"
        )
    if sb3_default is not None:
        print(
            f"| SB3 DQN (torch default threads) | {sb3_default['seconds']:.1f} | "
            f"{sb3_default['seconds']:.1f} | {sb3_default['eval_mean']:.0f} |"
        )
    ratio = statistics.median(r["seconds"] for r in rows["dqnkit"]) / statistics.median(
        r["seconds"] for r in rows["sb3"]
    )
    print(f"dqnkit / SB3 wall-clock (median, both 1 thread): {ratio:.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "sb3_default_threads": sb3_default, "ratio": ratio}, f)


if __name__ == "__main__":
    main()
