"""``dqnkit train`` and ``dqnkit evaluate``."""

import argparse
import dataclasses
import json
import types
import typing
from typing import Any

from dqnkit.adapters import cli_args, deploy_cli, rundir
from dqnkit.adapters.config import PIXEL_PRESETS, PRESETS, TrainConfig, config_for, flag
from dqnkit.adapters.envs import policy_env_factory
from dqnkit.adapters.errors import CommandError
from dqnkit.adapters.evaluation import format_result, greedy_act, run_episodes
from dqnkit.adapters.train import EVAL_SEED_OFFSET, train
from dqnkit.export.weights import load_weights

__all__ = ["add_evaluate_parser", "add_train_parser"]


def add_train_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a DQN on a Gymnasium environment",
        description=(
            "Train a DQN on any Gymnasium environment with a Box observation space and a "
            "Discrete action space. Defaults are the environment's preset where it has one "
            f"({', '.join(PRESETS)}; with --pixels: {', '.join(PIXEL_PRESETS)}), else the "
            "PyTorch tutorial's."
        ),
    )
    parser.add_argument(
        "env_id", nargs="?", metavar="ENV_ID", help="Gymnasium environment id, e.g. CartPole-v1"
    )
    parser.add_argument(
        "--resume", metavar="RUN_DIR", help="continue this killed run exactly (no other options)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar (default: show one)")
    group = parser.add_argument_group("hyperparameters (the preset's value when not given)")
    for f in dataclasses.fields(TrainConfig):
        if f.name == "env_id":
            continue
        kind, choices = _option_type(f.type)
        help_text = f"{f.metadata['help']} [default: {_show(f.default)}, or the preset's]"
        if kind is bool:
            group.add_argument(
                flag(f.name),
                dest=f.name,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=help_text,
            )
        else:
            group.add_argument(
                flag(f.name),
                dest=f.name,
                type=kind,
                choices=choices,
                default=None,
                metavar=f.name.upper() if choices is None else None,
                help=help_text,
            )
    parser.set_defaults(handler=_train_command)


def _train_command(args: argparse.Namespace) -> int:
    overrides = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(TrainConfig)
        if f.name != "env_id" and getattr(args, f.name) is not None
    }
    if args.resume:
        if overrides:
            raise CommandError(
                f"--resume continues a run with its own config.json; drop {sorted(overrides)}"
            )
        result = train(TrainConfig(env_id=args.env_id or ""), resume=args.resume, quiet=args.quiet)
    else:
        if not args.env_id:
            raise CommandError("train needs an ENV_ID (e.g. CartPole-v1) or --resume RUN_DIR")
        result = train(config_for(args.env_id, **overrides), quiet=args.quiet)
    if result.interrupted:
        print(
            f"interrupted at step {result.steps}; checkpoint written. Resume with:\n"
            f"  dqnkit train --resume {result.run_dir}"
        )
        return 130
    assert result.evaluation is not None
    print(f"run directory: {result.run_dir}")
    print(f"trained {result.steps} steps in {result.wall_seconds:.1f} s")
    print(f"greedy evaluation: {format_result(result.evaluation)}")
    print(f"weights: {result.run_dir / rundir.POLICY_FILE}")
    print(f"returns plot: {result.run_dir / rundir.PLOT_FILE}")
    return 0


def add_evaluate_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="run the greedy policy of a run or weights file",
        description="Run a trained policy greedily and print its mean ± std return.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "path", metavar="RUN_DIR_OR_WEIGHTS", help="a run directory or a policy.safetensors file"
    )
    parser.add_argument(
        "--episodes", type=cli_args.positive_int, default=100, help="episodes to run"
    )
    parser.add_argument(
        "--seed",
        type=cli_args.seed,
        default=EVAL_SEED_OFFSET,
        help="seed of the first evaluation environment",
    )
    deploy_cli.add_env_option(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(handler=_evaluate_command)


def _evaluate_command(args: argparse.Namespace) -> int:
    deploy_cli.refuse_artifact(args.path, "evaluate")
    path = rundir.resolve_policy(args.path)
    try:
        network, spec = load_weights(path)
    except ValueError as error:
        raise CommandError(str(error)) from error
    env_id = args.env or spec.env_id
    make = policy_env_factory(
        env_id,
        spec.preprocessing,
        obs_shape=spec.obs_shape,
        n_actions=spec.n_actions,
        allow_import=args.env is not None,
    )
    result = run_episodes(greedy_act(network), make, episodes=args.episodes, seed=args.seed)
    if args.json:
        print(
            json.dumps(
                {"env_id": env_id, "weights": str(path), "seed": args.seed, **result.to_dict()}
            )
        )
    else:
        print(f"{env_id}: {format_result(result)}")
    return 0


def _option_type(annotation: Any) -> tuple[Any, list[str] | None]:
    """The argparse type (and choices) for a TrainConfig field's annotation."""
    if annotation in (int, float, str, bool):
        return annotation, None
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return str, list(typing.get_args(annotation))
    if origin is tuple:
        return _int_list, None
    if origin in (typing.Union, types.UnionType):  # float | None
        (inner,) = [a for a in typing.get_args(annotation) if a is not type(None)]
        return inner, None
    if isinstance(annotation, str):  # postponed annotations are not used here
        raise TypeError(f"unexpected string annotation {annotation!r}")
    # Literal aliases like EpsilonSchedule resolve through get_origin above.
    raise TypeError(f"no command-line type for {annotation!r}")


def _int_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated ints, got {text!r}") from None


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return str(value)
