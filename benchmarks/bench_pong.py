"""Pong learning curves (issue 12): a session-length `dqnkit train ALE/Pong-v5` run, reported.

Run (each arm for as long as a session allows; checkpoints every 25k steps, so a killed run
resumes with `dqnkit train --resume RUN_DIR`):

    .venv/bin/python -m benchmarks.bench_pong run --arm per-dueling-double --out runs/pong
    .venv/bin/python -m benchmarks.bench_pong run --arm n3 --out runs/pong
    .venv/bin/python -m benchmarks.bench_pong report runs/pong/ALE_Pong-v5-0-* [--plot FILE]

The arms change the Atari preset (Nature DQN: 10M steps, 100k warm-up, epsilon over 1M steps)
to fit a session on a 2-core CPU, where an update of the Nature CNN costs ~0.1 s: 400k agent
steps (1.6M frames), learning from 10k steps, epsilon 1 -> 0.01 over 100k, a hard target copy
every 1,000 steps (CleanRL's), one update every 4 steps (the preset's), with double DQN, a
dueling head and prioritized replay (alpha 0.5, Rainbow's); `n3` adds 3-step returns (Rainbow's
n) from the frame ring. Each periodic evaluation is 10 greedy episodes (sticky actions on, as
in every ALE v5 game); the random policy scores about -20.7.

`report` reads `metrics.csv` (training episodes, epsilon-greedy) and the periodic evaluations
from the newest checkpoint's loop state (or `evaluation.json` once the run has ended), without
loading any tensor.
"""

import argparse
import csv
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

GAME = "ALE/Pong-v5"
RANDOM_RETURN = -20.7  # the figure for the random policy
AIM = -15.0
COMMON = [
    "--steps", "400000", "--learning-starts", "10000", "--epsilon-steps", "100000",
    "--epsilon-end", "0.01", "--target-update-every", "1000", "--double-dqn", "--dueling",
    "--prioritized", "--priority-alpha", "0.5", "--eval-every", "25000", "--eval-episodes", "10",
    "--checkpoint-every", "25000", "--threads", "1",
]  # fmt: skip
ARMS = {"per-dueling-double": COMMON, "n3": [*COMMON, "--n-step", "3"]}


def command(arm: str, seed: int, out: str) -> list[str]:
    dqnkit = str(Path(sys.executable).with_name("dqnkit"))
    return [dqnkit, "train", GAME, "--seed", str(seed), "--out", out, *ARMS[arm]]


def evaluations(run: Path) -> list[tuple[int, float, float]]:
    """The periodic greedy evaluations ``(step, mean, std)`` of a run, ended or not."""
    ended = run / "evaluation.json"
    if ended.exists():
        periodic = json.loads(ended.read_text())["periodic"]
        return [(int(s), float(m), float(d)) for s, m, d in periodic]
    from safetensors import safe_open

    checkpoints = sorted((run / "checkpoints").glob("step-*.safetensors"))
    if not checkpoints:
        return []
    with safe_open(str(checkpoints[-1]), framework="pt") as f:
        loop = json.loads((f.metadata() or {})["dqnkit.checkpoint"])["loop"]
    return [(int(s), float(m), float(d)) for s, m, d in loop["evaluations"]]


def episodes(run: Path) -> list[tuple[int, float]]:
    """Training episodes ``(step at their end, unclipped return)``."""
    with (run / "metrics.csv").open() as f:
        return [(int(r["step"]), float(r["episode_return"])) for r in csv.DictReader(f)]


def report(runs: list[Path], plot: Path | None) -> None:
    curves: dict[str, Any] = {}
    for run in runs:
        config = json.loads((run / "config.json").read_text())
        arm = "n3" if config.get("n_step", 1) == 3 else "per-dueling-double"
        label = f"{arm}, seed {config['seed']}"
        evals, eps = evaluations(run), episodes(run)
        curves[label] = (evals, eps)
        print(f"## {label} ({run})")
        print(f"steps so far: {eps[-1][0] if eps else 0:,}, training episodes: {len(eps)}")
        print("| step | frames | greedy mean of 10 | std |")
        print("|--:|--:|--:|--:|")
        for step, mean, std in evals:
            print(f"| {step:,} | {4 * step:,} | {mean:.1f} | {std:.1f} |")
        better = [s for s, m, _ in evals if m > AIM]
        best = max(evals, key=lambda e: e[1]) if evals else None
        print(f"best periodic evaluation: {best[1]:.1f} at step {best[0]:,}" if best else "")
        print(f"first evaluation above {AIM}: step {better[0]:,}" if better else
              f"no evaluation above {AIM}")  # fmt: skip
        last = [r for _, r in eps[-10:]]
        if last:
            print(f"last 10 training episodes (epsilon-greedy): mean {sum(last) / len(last):.1f}")
        print()
    if plot is not None:
        draw(curves, plot)


def draw(curves: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for label, (evals, eps) in curves.items():
        if eps:
            steps, returns = zip(*eps, strict=True)
            window = [sum(returns[max(0, i - 9) : i + 1]) / len(returns[max(0, i - 9) : i + 1])
                      for i in range(len(returns))]  # fmt: skip
            ax.plot(steps, window, alpha=0.5, label=f"{label}: training, mean of last 10")
        if evals:
            s, m, d = zip(*evals, strict=True)
            ax.errorbar(s, m, yerr=d, marker="o", capsize=3, label=f"{label}: greedy, 10 episodes")
    ax.axhline(RANDOM_RETURN, color="grey", linestyle=":", label="random policy (-20.7)")
    ax.axhline(AIM, color="red", linestyle="--", label="issue's aim (-15)")
    ax.set_xlabel("agent steps (4 frames each)")
    ax.set_ylabel("episode return (unclipped)")
    ax.set_title("ALE/Pong-v5 on a 2-core CPU")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    print(f"plot: {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    run = sub.add_parser("run", help="train one arm (blocks for hours; resumable)")
    run.add_argument("--arm", choices=sorted(ARMS), required=True)
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--out", default="runs/pong")
    rep = sub.add_parser("report", help="tables (and a plot) from run directories")
    rep.add_argument("runs", nargs="+", type=Path)
    rep.add_argument("--plot", type=Path, default=None)
    args = parser.parse_args()
    if args.what == "run":
        argv = command(args.arm, args.seed, args.out)
        print(" ".join(argv), flush=True)
        env = {**os.environ, "SDL_VIDEODRIVER": "dummy", "PYTHONUNBUFFERED": "1"}
        raise SystemExit(subprocess.call(argv, env=env))
    report(args.runs, args.plot)


if __name__ == "__main__":
    main()
