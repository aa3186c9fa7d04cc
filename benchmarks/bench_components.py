"""Issue 11's learning benchmark: vanilla DQN against n-step + prioritized + dueling + double.

Every arm is one ``dqnkit sweep`` (Ray Tune, two trials at a time on this machine) of an
environment's preset with the arm's options; every trial is evaluated greedily every 5,000
steps (10 episodes) for the curves, and its final weights over 100 episodes for the table.

    python -m benchmarks.bench_components run --out benchmarks/out/components
    python -m benchmarks.bench_components run --out benchmarks/out/components --ablations
    python -m benchmarks.bench_components report --out benchmarks/out/components

``run`` runs only the seeds an arm's finished sweeps do not hold (so it can be stopped and
started again, and more seeds added later); ``report`` merges an arm's sweeps, prints the
markdown tables of benchmarks/README.md and draws the curves.
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from dqnkit.adapters.sweep import bootstrap_interval, parse_seeds

# rl-baselines3-zoo benchmark.md, DQN (one trained agent each; LunarLander-v2 there).
ZOO_LEVEL = {
    "CartPole-v1": 500.0,
    "Acrobot-v1": -76.639,
    "MountainCar-v0": -100.849,
    "LunarLander-v3": 154.382,
}
MAIN_ENVS = tuple(ZOO_LEVEL)
ABLATION_ENVS = ("Acrobot-v1", "MountainCar-v0")
# Vanilla sets every component off explicitly: a preset may turn them on (MountainCar-v0's does).
OFF = {"n_step": "1", "prioritized": "false", "dueling": "false", "double_dqn": "false"}
ARMS: dict[str, dict[str, str]] = {
    "vanilla": OFF,
    "combined": {"n_step": "3", "prioritized": "true", "dueling": "true", "double_dqn": "true"},
}
ABLATIONS: dict[str, dict[str, str]] = {
    "n_step=3": {**OFF, "n_step": "3"},
    "prioritized": {**OFF, "prioritized": "true"},
    "dueling": {**OFF, "dueling": "true"},
}
# Greedy curves for the presets that do not evaluate on their own (CartPole's evaluates every
# 1,000 steps and stops once solved).
CURVE = {"eval_every": "5000", "eval_episodes": "10"}


def arm_dir(out: Path, env_id: str, arm: str) -> Path:
    return out / env_id.replace("/", "_") / arm.replace("=", "-")


def finished_sweeps(folder: Path) -> list[Path]:
    """The sweep directories in ``folder`` whose results.json exists, oldest first."""
    done = sorted(folder.glob("*-sweep-*/results.json")) if folder.is_dir() else []
    return [path.parent for path in done]


def run(
    out: Path,
    seeds: str,
    envs: tuple[str, ...],
    arms: dict[str, dict[str, str]],
    address: str | None = None,
) -> None:
    for env_id in envs:
        for arm, options in arms.items():
            folder = arm_dir(out, env_id, arm)
            done = {row["seed"] for row in arm_trials(folder)}
            todo = [seed for seed in parse_seeds(seeds) if seed not in done]
            if not todo:
                print(f"{env_id} {arm}: done already", flush=True)
                continue
            grid = {**({} if env_id == "CartPole-v1" else CURVE), **options}
            command = ["dqnkit", "sweep", env_id, "--seeds", ",".join(map(str, todo)),
                       "--out", str(folder), "--quiet"]  # fmt: skip
            for name, value in grid.items():
                command += ["--grid", f"{name}={value}"]
            if address is not None:  # a running Ray cluster that several sweeps can share
                command += ["--address", address]
            print(" ".join(command), flush=True)
            subprocess.run(command, check=True)


def trials(sweep: Path) -> list[dict[str, Any]]:
    rows = json.loads((sweep / "results.json").read_text())["trials"]
    for row in rows:
        evaluation = Path(row["run_dir"]) / "evaluation.json" if row["run_dir"] else None
        periodic = []
        if evaluation is not None and evaluation.is_file():
            periodic = json.loads(evaluation.read_text())["periodic"]
        row["periodic"] = [(int(s), float(m)) for s, m, _ in periodic]
    return sorted(rows, key=lambda r: r["seed"])


def arm_trials(folder: Path) -> list[dict[str, Any]]:
    """An arm's trials over all its finished sweeps, by seed; a seed run twice: the newer."""
    by_seed = {row["seed"]: row for sweep in finished_sweeps(folder) for row in trials(sweep)}
    return [by_seed[seed] for seed in sorted(by_seed)]


def steps_to(level: float, periodic: list[tuple[int, float]]) -> int | None:
    """The first periodic greedy evaluation at or above ``level``."""
    return next((step for step, mean in periodic if mean >= level), None)


def table(out: Path, envs: tuple[str, ...], arms: tuple[str, ...]) -> str:
    lines = [
        "| environment | arm | seeds | 100-episode greedy mean per seed | mean [95% CI] | "
        "steps to the zoo's level per seed | reached | median trial s |",
        "|---|---|---|---|---|---|---:|---:|",
    ]
    for env_id in envs:
        for arm in arms:
            rows = arm_trials(arm_dir(out, env_id, arm))
            if not rows:
                lines.append(f"| {env_id} | {arm} | not run | | | | | |")
                continue
            done = [r for r in rows if r["status"] == "finished"]
            means = np.array([r["greedy_mean"] for r in done])
            low, high = bootstrap_interval(means, "mean") if len(done) else (np.nan, np.nan)
            reach = [steps_to(ZOO_LEVEL[env_id], r["periodic"]) for r in done]
            per_seed = ", ".join(f"{m:.2f}" for m in means)
            steps = ", ".join("-" if s is None else f"{s:,}" for s in reach)
            failed = len(rows) - len(done)
            seeds = f"{len(done)}" + (f" ({failed} not finished)" if failed else "")
            wall = np.median([r["wall_seconds"] for r in done]) if done else np.nan
            lines.append(
                f"| {env_id} | {arm} | {seeds} | {per_seed} | {means.mean():.2f} "
                f"[{low:.2f}, {high:.2f}] | {steps} | {sum(s is not None for s in reach)}"
                f"/{len(done)} | {wall:.0f} |"
            )
    return "\n".join(lines)


def plot(out: Path, envs: tuple[str, ...], arms: tuple[str, ...], path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(4.2 * len(envs), 3.4), layout="constrained")
    axes = figure.subplots(1, len(envs), squeeze=False)[0]
    for axis, env_id in zip(axes, envs, strict=True):
        for arm in arms:
            curves = [dict(r["periodic"]) for r in arm_trials(arm_dir(out, env_id, arm))
                      if r["periodic"]]  # fmt: skip
            if not curves:
                continue
            steps = sorted({s for c in curves for s in c})
            # A seed that stopped early (CartPole, solved) keeps its last value afterwards.
            filled = [[c.get(s, c[max(k for k in c if k <= s)] if any(k <= s for k in c)
                       else np.nan) for s in steps] for c in curves]  # fmt: skip
            values = np.array(filled, dtype=np.float64)
            mean, low, high = [], [], []
            for column in values.T:
                column = column[np.isfinite(column)]
                mean.append(column.mean())
                lo, hi = bootstrap_interval(column, "mean")
                low.append(lo)
                high.append(hi)
            axis.plot(steps, mean, label=f"{arm} ({len(curves)} seeds)")
            axis.fill_between(steps, low, high, alpha=0.25)
        axis.axhline(ZOO_LEVEL[env_id], color="grey", linestyle="--", linewidth=1, label="zoo")
        axis.set_title(env_id)
        axis.set_xlabel("environment steps")
        axis.legend(fontsize=7)
    axes[0].set_ylabel("periodic greedy evaluation, mean return")
    FigureCanvasAgg(figure).print_png(str(path))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("action", choices=("run", "report"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/components"))
    parser.add_argument("--ablations", action="store_true", help="each component alone")
    parser.add_argument("--envs", default=None, help="comma-separated (default: all of them)")
    parser.add_argument("--arms", default=None, help="comma-separated (default: all of them)")
    parser.add_argument("--seeds", default=None, help="default: 0-4, ablations 0-2")
    parser.add_argument("--address", default=None, help="a Ray cluster to attach the sweeps to")
    parser.add_argument("--plot", type=Path, default=None, help="PNG of the curves")
    args = parser.parse_args()
    envs = tuple(args.envs.split(",")) if args.envs else None
    if args.action == "run":
        arms = ABLATIONS if args.ablations else ARMS
        if args.arms:
            arms = {name: arms[name] for name in args.arms.split(",")}
        seeds = args.seeds or ("0-2" if args.ablations else "0-4")
        default_envs = ABLATION_ENVS if args.ablations else MAIN_ENVS
        run(args.out, seeds, envs or default_envs, arms, args.address)
        return
    main_envs, ablation_envs = envs or MAIN_ENVS, envs or ABLATION_ENVS
    print(table(args.out, main_envs, tuple(ARMS)))
    print()
    print(table(args.out, ablation_envs, ("vanilla", *ABLATIONS, "combined")))
    if args.plot is not None:
        plot(args.out, main_envs, tuple(ARMS), args.plot)
        plot(args.out, ablation_envs, ("vanilla", *ABLATIONS, "combined"),
             args.plot.with_name(args.plot.stem + "_ablations.png"))  # fmt: skip
    sys.stdout.flush()


if __name__ == "__main__":
    main()
