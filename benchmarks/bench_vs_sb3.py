"""Wall-clock of dqnkit, Stable-Baselines3 and a CleanRL-style DQN on CartPole-v1, same work.

Run: .venv/bin/python -m benchmarks.bench_vs_sb3 [--steps 50000] [--repeats 3]
  or, for the final policies over more seeds: ... --seeds 0-19 --only dqnkit,sb3
Needs the bench extra (stable-baselines3). All three use rl-baselines3-zoo's CartPole-v1 DQN
hyperparameters (256-256 MLP, Adam at 2.3e-3, batch 64, hard target copy every 10 steps,
epsilon 1 -> 0.04 over 16% of the steps), train for the same number of steps with no early
stopping, each run in a fresh process, interleaved (dqnkit, SB3, CleanRL, dqnkit, ...), one
torch thread each. dqnkit and SB3 do 128 gradient steps every 256 steps; the CleanRL-style
loop (:func:`time_cleanrl`, written here from CleanRL's dqn.py algorithm) does one every 2
steps: about the same number of updates. --sb3-default-threads also times SB3 once with
torch's default thread count, which is what its users get (slow on a shared CPU).

What is timed: dqnkit's whole ``train()`` call (run directory, loop, final checkpoint, plot and
its own 20-episode evaluation), SB3's ``learn()``, the CleanRL loop from its first step to its
last. The 20-episode greedy evaluation reported for SB3 and CleanRL runs after the clock stops.
"""

import argparse
import json
import multiprocessing
import random
import statistics
import tempfile
import time
from typing import Any, cast

import gymnasium as gym
import numpy as np

from dqnkit.adapters.sweep import parse_seeds

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
# The CleanRL-style loop's update rate: one gradient step every 2 environment steps, as many
# updates as the zoo's 128 every 256.
CLEANRL_TRAIN_EVERY = 2
EVAL_EPISODES = 20
SOLVED = cast(float, gym.spec("CartPole-v1").reward_threshold)  # 475.0, Gymnasium's solved level

Job = tuple[int, int, int]  # steps, seed, torch threads (0: torch's default)


def time_sb3(job: Job) -> dict[str, float]:
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
    returns = evaluate_policy(model, gym.make("CartPole-v1"), n_eval_episodes=EVAL_EPISODES)[0]
    # np.mean: a float, or a list of returns, depending on evaluate_policy's arguments.
    return {
        "seconds": wall,
        "eval_mean": float(np.mean(returns)),
        "updates": float(model._n_updates),
    }


def time_dqnkit(job: Job) -> dict[str, float]:
    steps, seed, threads = job
    from dqnkit.adapters import TrainConfig, train
    from dqnkit.adapters.learner import Learner

    updates = 0
    original = Learner.update

    def counted(self: Learner, sample: Any) -> Any:
        nonlocal updates
        updates += 1
        return original(self, sample)

    Learner.update = counted  # type: ignore[method-assign]  # counts the gradient steps
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
            stop_return=None,
            checkpoint_every=0,
            final_eval_episodes=EVAL_EPISODES,
        )
        start = time.perf_counter()
        result = train(config, quiet=True)
        wall = time.perf_counter() - start  # includes the final 20-episode evaluation
    assert result.evaluation is not None
    return {
        "seconds": wall,
        "eval_mean": result.evaluation.mean_return,
        "updates": float(updates),
    }


def time_cleanrl(job: Job) -> dict[str, float]:
    """CleanRL's DQN (dqn.py) as its published algorithm describes it, at the zoo's values.

    One Gymnasium env (reset by hand when an episode ends, so no vector-env overhead), a plain
    numpy ring buffer, epsilon linear from 1 to 0.04 over 16% of the steps, after
    ``learning_starts`` one Adam step on a batch of 64 every 2 steps with CleanRL's MSE loss
    (``F.mse_loss``, no gradient clipping), the target network copied every 10 steps. Terminal
    (not truncated) transitions cut the bootstrap, as CleanRL's ``dones = terminations``.
    """
    steps, seed, threads = job
    import gymnasium as gym
    import torch
    import torch.nn.functional as F
    from torch import nn

    if threads:
        torch.set_num_threads(threads)
    random.seed(seed)
    torch.manual_seed(seed)
    env = gym.make("CartPole-v1")
    env.action_space.seed(seed)
    assert isinstance(env.action_space, gym.spaces.Discrete)
    obs_dim = int(np.prod(env.observation_space.shape or ()))
    n_actions = int(env.action_space.n)

    def mlp() -> nn.Module:
        h1, h2 = ZOO["net_arch"]
        return nn.Sequential(
            nn.Linear(obs_dim, h1),
            nn.ReLU(),
            nn.Linear(h1, h2),
            nn.ReLU(),
            nn.Linear(h2, n_actions),
        )

    q_network, target_network = mlp(), mlp()
    target_network.load_state_dict(q_network.state_dict())
    optimizer = torch.optim.Adam(q_network.parameters(), lr=ZOO["learning_rate"])
    gamma, batch_size = ZOO["gamma"], ZOO["batch_size"]
    learning_starts, target_every = ZOO["learning_starts"], ZOO["target_update_interval"]
    eps_end, eps_duration = ZOO["exploration_final_eps"], ZOO["exploration_fraction"] * steps

    capacity = ZOO["buffer_size"]
    b_obs = np.zeros((capacity, obs_dim), np.float32)
    b_next = np.zeros((capacity, obs_dim), np.float32)
    b_action = np.zeros((capacity, 1), np.int64)
    b_reward = np.zeros(capacity, np.float32)
    b_done = np.zeros(capacity, np.float32)
    size = position = 0
    rng = np.random.default_rng(seed)
    updates = 0

    start = time.perf_counter()
    obs, _ = env.reset(seed=seed)
    for global_step in range(steps):
        epsilon = max(1.0 + (eps_end - 1.0) * global_step / eps_duration, eps_end)
        if random.random() < epsilon:
            action = int(env.action_space.sample())
        else:
            with torch.no_grad():
                q_values = q_network(torch.as_tensor(obs, dtype=torch.float32).unsqueeze(0))
            action = int(q_values.argmax(dim=1).item())
        next_obs, reward, terminated, truncated, _ = env.step(action)
        b_obs[position], b_next[position], b_action[position] = obs, next_obs, action
        b_reward[position], b_done[position] = reward, terminated
        position, size = (position + 1) % capacity, min(size + 1, capacity)
        obs = next_obs
        if terminated or truncated:
            obs, _ = env.reset()

        if global_step > learning_starts:
            if global_step % CLEANRL_TRAIN_EVERY == 0:
                idx = rng.integers(0, size, batch_size)
                observations = torch.from_numpy(b_obs[idx])
                next_observations = torch.from_numpy(b_next[idx])
                actions = torch.from_numpy(b_action[idx])
                rewards = torch.from_numpy(b_reward[idx])
                dones = torch.from_numpy(b_done[idx])
                with torch.no_grad():
                    target_max, _ = target_network(next_observations).max(dim=1)
                    td_target = rewards + gamma * target_max * (1.0 - dones)
                old_val = q_network(observations).gather(1, actions).squeeze(1)
                loss = F.mse_loss(td_target, old_val)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                updates += 1
            if global_step % target_every == 0:
                target_network.load_state_dict(q_network.state_dict())
    wall = time.perf_counter() - start

    returns = []
    eval_env = gym.make("CartPole-v1")
    for episode in range(EVAL_EPISODES):
        obs, _ = eval_env.reset(seed=seed + 10_000 + episode)
        total, done = 0.0, False
        while not done:
            with torch.no_grad():
                q_values = q_network(torch.as_tensor(obs, dtype=torch.float32).unsqueeze(0))
            obs, reward, terminated, truncated, _ = eval_env.step(int(q_values.argmax().item()))
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    return {"seconds": wall, "eval_mean": float(np.mean(returns)), "updates": float(updates)}


def in_fresh_process(fn: Any, job: Job) -> dict[str, float]:
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        result: dict[str, float] = pool.apply(fn, (job,))
        return result


LIBRARIES = (
    ("dqnkit", "dqnkit (1 thread)", time_dqnkit),
    ("sb3", "SB3 DQN (1 thread)", time_sb3),
    ("cleanrl", "CleanRL-style loop (1 thread)", time_cleanrl),
)


def _join(values: list[float], spec: str) -> str:
    return ", ".join(format(v, spec) for v in values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=3, help="seeds 0 .. N-1")
    parser.add_argument("--seeds", default=None, help="instead of --repeats: e.g. 0-19 or 3,7")
    parser.add_argument("--only", default=None, help="comma-separated: dqnkit,sb3,cleanrl")
    parser.add_argument("--json", metavar="PATH")
    parser.add_argument("--sb3-default-threads", action="store_true")
    args = parser.parse_args()
    try:
        import stable_baselines3  # noqa: F401
    except ImportError:
        raise SystemExit("stable-baselines3 is not installed: pip install -e .[bench]") from None

    seeds = parse_seeds(args.seeds) if args.seeds else tuple(range(args.repeats))
    names = args.only.split(",") if args.only else [name for name, _, _ in LIBRARIES]
    libraries = [library for library in LIBRARIES if library[0] in names]
    if len(libraries) != len(names):
        raise SystemExit(f"--only: choose from {', '.join(name for name, _, _ in LIBRARIES)}")
    rows: dict[str, list[dict[str, float]]] = {name: [] for name, _, _ in libraries}
    for seed in seeds:  # interleaved, so drifting machine load hits all of them
        for name, _, fn in libraries:
            rows[name].append(in_fresh_process(fn, (args.steps, seed, 1)))
            print(f"seed {seed} {name}: {rows[name][-1]}", flush=True)
    sb3_default = (
        in_fresh_process(time_sb3, (args.steps, 0, 0)) if args.sb3_default_threads else None
    )

    print(f"CartPole-v1, zoo hyperparameters, {args.steps} steps, seeds {seeds}")
    print(
        "| implementation | seconds per seed | median s | gradient updates per seed | "
        "20-episode greedy mean per seed |"
    )
    print("|---|---|---:|---|---|")
    medians = {}
    for name, label, _ in libraries:
        secs = [r["seconds"] for r in rows[name]]
        medians[name] = statistics.median(secs)
        cells = (
            label,
            _join(secs, ".2f"),
            f"{medians[name]:.2f}",
            _join([r["updates"] for r in rows[name]], ".0f"),
            _join([r["eval_mean"] for r in rows[name]], ".1f"),
        )
        print("| " + " | ".join(cells) + " |")
    if sb3_default is not None:
        print(
            f"| SB3 DQN (torch default threads) | {sb3_default['seconds']:.2f} | "
            f"{sb3_default['seconds']:.2f} | {sb3_default['updates']:.0f} | "
            f"{sb3_default['eval_mean']:.1f} |"
        )
    for name, label, _ in libraries:
        solved = sum(r["eval_mean"] >= SOLVED for r in rows[name])
        print(f"{label}: final 20-episode greedy mean >= {SOLVED:g} on {solved} of {len(seeds)}")
    ratios: dict[str, float] = {}
    if "dqnkit" in medians:
        ratios = {
            other: medians["dqnkit"] / medians[other] for other in medians if other != "dqnkit"
        }
        for other, ratio in ratios.items():
            print(f"dqnkit / {other} wall-clock (medians, 1 thread): {ratio:.3f} (aim: <= 0.7)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "sb3_default_threads": sb3_default, "ratios": ratios}, f)


if __name__ == "__main__":
    main()
