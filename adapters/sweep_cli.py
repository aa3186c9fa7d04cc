"""``dqnkit sweep``: seeds and hyperparameters on Ray Tune (the ``sweep`` extra).

Nothing here imports Ray, or the training loop: :mod:`dqnkit.adapters.sweep` is imported when
the command runs, so ``dqnkit --help`` stays fast.
"""

import argparse
import textwrap
from typing import Any

from dqnkit.adapters import cli_args
from dqnkit.adapters.errors import CommandError

__all__ = ["add_sweep_parser"]

# The options a sweep's --resume may be given with (everything else comes from the sweep).
_RESUME_OPTIONS = ("address", "quiet")


def add_sweep_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "sweep",
        help="train many seeds and hyperparameters on Ray Tune",
        description=textwrap.fill(
            "Train one dqnkit run per (configuration, seed) on Ray Tune and print a table per "
            "configuration: the greedy return over seeds (mean, median, interquartile mean "
            "with a 95% bootstrap interval), steps and wall-clock. Each configuration starts "
            "from the environment's preset; hyperparameters are TrainConfig field names (those "
            "of `dqnkit train --help`, with underscores). Each trial reports at dqnkit's "
            "checkpoints, which are Tune's: a lost trial restarts from its last one and ends "
            "exactly as it would have. Needs the sweep extra: pip install 'dqnkit[sweep]'.",
            width=80,
        ),
        epilog=(
            "examples:\n"
            "  dqnkit sweep CartPole-v1 --seeds 0-9\n"
            "  dqnkit sweep CartPole-v1 --seeds 0-4 --grid learning_rate=2.3e-3,1e-3 "
            "--grid dueling=false,true\n"
            "  dqnkit sweep CartPole-v1 --seeds 0-2 --search random --samples 8 "
            "--grid learning_rate=1e-4..1e-2:log --grid batch_size=32,64,128\n"
            "  dqnkit sweep --resume sweeps/CartPole-v1-sweep-20261201-190000"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "env_id", nargs="?", metavar="ENV_ID", help="Gymnasium environment id, e.g. CartPole-v1"
    )
    parser.add_argument(
        "--seeds", help="seeds of every configuration: 0-9, 0,3,7 or 0-4,10-14 (required)"
    )
    parser.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="NAME=V1,V2",
        help=(
            "values of one hyperparameter (repeat for more; the sweep runs their product); one "
            "value fixes it, e.g. total_steps=20000; widths as 64x64; none for an optional "
            "value; LOW..HIGH[:log] draws from a range with --search random"
        ),
    )
    parser.add_argument(
        "--search",
        choices=("grid", "random"),
        default="grid",
        help="grid: every combination; random: --samples configurations drawn from the grid",
    )
    parser.add_argument(
        "--samples", type=cli_args.positive_int, help="configurations to draw with --search random"
    )
    parser.add_argument(
        "--search-seed",
        type=cli_args.seed,
        default=0,
        help="seed of --search random's draws [default: 0]",
    )
    parser.add_argument(
        "--asha",
        action="store_true",
        help="stop trials that trail the others early (Tune's ASHA scheduler)",
    )
    parser.add_argument(
        "--metric",
        choices=("eval/mean_return", "train/mean_return"),
        help=(
            "what --asha compares at each rung: the latest periodic greedy evaluation, or the "
            "mean of the last 100 training episodes [default: eval/mean_return]"
        ),
    )
    parser.add_argument(
        "--grace-steps",
        type=cli_args.positive_int,
        help="--asha's first rung, in environment steps [default: the first checkpoint]",
    )
    parser.add_argument(
        "--address",
        help=(
            "attach to this Ray cluster (HOST:PORT, as `ray start --head` prints, or auto); "
            "without it a local Ray sized to this machine is started and stopped"
        ),
    )
    parser.add_argument(
        "--cpus-per-trial",
        type=cli_args.finite_nonnegative,
        default=1.0,
        help="CPUs Tune reserves per trial [default: 1] (torch threads stay the config's)",
    )
    parser.add_argument(
        "--max-failures",
        type=cli_args.nonnegative_int,
        default=3,
        help="restarts of a lost trial from its last checkpoint [default: 3]",
    )
    parser.add_argument(
        "--table-episodes",
        type=cli_args.episode_count,
        default=100,
        help="greedy episodes per trial's final weights for the table [default: 100]",
    )
    parser.add_argument(
        "--out",
        default="sweeps",
        help="folder in which the sweep directory ENV-sweep-TIME is made [default: sweeps]",
    )
    parser.add_argument(
        "--resume",
        metavar="SWEEP_DIR",
        help="continue this sweep (only --address and --quiet may be given with it)",
    )
    parser.add_argument("--quiet", action="store_true", help="no line per finished trial")
    parser.set_defaults(handler=_sweep_command)


def _sweep_command(args: argparse.Namespace) -> int:
    if args.resume:
        given = [
            name
            for name, default in _defaults().items()
            if name not in _RESUME_OPTIONS and getattr(args, name) != default
        ]
        if given:
            options = ", ".join("--" + n.replace("_", "-") for n in given)
            raise CommandError(f"--resume continues a sweep with its own settings; drop {options}")
        from dqnkit.adapters import sweep

        result = sweep.resume_sweep(args.resume, address=args.address, quiet=args.quiet)
    else:
        if not args.env_id:
            raise CommandError("sweep needs an ENV_ID (e.g. CartPole-v1) or --resume SWEEP_DIR")
        if args.seeds is None:
            raise CommandError("sweep needs --seeds (e.g. --seeds 0-9)")
        if args.metric is not None and not args.asha:
            raise CommandError("--metric is what --asha compares: add --asha")
        if args.grace_steps is not None and not args.asha:
            raise CommandError("--grace-steps is --asha's first rung: add --asha")
        from dqnkit.adapters import sweep

        spec = sweep.SweepSpec(
            env_id=args.env_id,
            seeds=sweep.parse_seeds(args.seeds),
            grid=sweep.parse_grid(args.grid),
            search=args.search,
            samples=args.samples,
            search_seed=args.search_seed,
            asha=args.asha,
            metric=args.metric or "eval/mean_return",
            grace_steps=args.grace_steps,
            cpus_per_trial=args.cpus_per_trial,
            max_failures=args.max_failures,
            table_episodes=args.table_episodes,
        )
        result = sweep.run_sweep(spec, out=args.out, address=args.address, quiet=args.quiet)
    print(result.table())
    print(f"sweep directory: {result.sweep_dir}")
    for name in (sweep.RESULTS_CSV, sweep.TRIALS_CSV, sweep.RESULTS_JSON, sweep.CURVES_PNG):
        print(f"  {result.sweep_dir / name}")
    failed = sum(row["failed"] for row in result.configurations)
    unfinished = sum(row["not_started"] for row in result.configurations)
    if failed or unfinished:
        print(
            f"{failed} trial(s) failed, {unfinished} not started; continue them with: "
            f"dqnkit sweep --resume {result.sweep_dir}"
        )
        return 1
    return 0


def _defaults() -> dict[str, Any]:
    """The values of the options when not given (to tell which ones were)."""
    return {
        "env_id": None,
        "seeds": None,
        "grid": [],
        "search": "grid",
        "samples": None,
        "search_seed": 0,
        "asha": False,
        "metric": None,
        "grace_steps": None,
        "address": None,
        "cpus_per_trial": 1.0,
        "max_failures": 3,
        "table_episodes": 100,
        "out": "sweeps",
        "quiet": False,
    }
