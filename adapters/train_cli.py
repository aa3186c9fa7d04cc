"""``dqnkit train`` and ``dqnkit evaluate``.

The parsers are built from :class:`TrainConfig` alone (no torch, no gymnasium), so ``--help``
and usage errors answer at once; the commands import the training loop when they run.
"""

import argparse
import dataclasses
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dqnkit.adapters import cli_args, deploy_cli, rundir
from dqnkit.adapters.config import PIXEL_PRESETS, PRESETS, TrainConfig, config_for, flag
from dqnkit.adapters.errors import CommandError
from dqnkit.adapters.video import add_watch_options

__all__ = ["add_evaluate_parser", "add_train_parser"]


def add_train_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a DQN on a Gymnasium environment",
        add_help=False,
        description=(
            "Train a DQN on any Gymnasium environment with a Box observation space and a "
            "Discrete action space. Defaults are the environment's preset where it has one "
            f"({', '.join(PRESETS)}; with --pixels: {', '.join(PIXEL_PRESETS)}), else the "
            "PyTorch tutorial's; then a --config file; then the options given. "
            "`dqnkit train ENV_ID --help` shows the values for that environment."
        ),
    )
    parser.add_argument(
        "-h", "--help", action=_PresetHelp, help="show this help (with ENV_ID first: its values)"
    )
    parser.add_argument(
        "env_id", nargs="?", metavar="ENV_ID", help="Gymnasium environment id, e.g. CartPole-v1"
    )
    parser.add_argument(
        "--resume", metavar="RUN_DIR", help="continue this killed run exactly (no other options)"
    )
    parser.add_argument(
        "--config",
        type=Path,
        metavar="FILE.toml",
        help="hyperparameters from a TOML file, one key per option (default: none)",
    )
    parser.add_argument(
        "--show-config",
        action="store_true",
        help="print the resolved configuration as a --config file and exit (default: train)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar (default: show one)")
    group = parser.add_argument_group("hyperparameters (the preset's value when not given)")
    for f in dataclasses.fields(TrainConfig):
        if f.name == "env_id":
            continue
        kind, choices = _option_type(f.type)
        help_text = f"{f.metadata['help']} [default: %(preset)s]"
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


class _PresetHelp(argparse.Action):
    """``--help`` that shows each option's value for the ENV_ID given before it."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        env_id = getattr(namespace, "env_id", None)
        pixels = bool(getattr(namespace, "pixels", None))
        presets = PIXEL_PRESETS if pixels else PRESETS
        preset = presets.get(env_id or "", {})
        for action in parser._actions:
            if action.help and "%(preset)s" in action.help:
                name = action.dest
                default = next(f.default for f in dataclasses.fields(TrainConfig) if f.name == name)
                if name in preset:
                    shown = f"{_show(preset[name])} ({env_id}'s preset)"
                elif env_id:
                    shown = _show(default)
                else:
                    shown = f"{_show(default)}, or the preset's"
                action.help = action.help.replace("%(preset)s", shown.replace("%", "%%"))
        parser.print_help()
        parser.exit()


def _train_command(args: argparse.Namespace) -> int:
    overrides = {
        f.name: None if getattr(args, f.name) is NONE_GIVEN else getattr(args, f.name)
        for f in dataclasses.fields(TrainConfig)
        if f.name != "env_id" and getattr(args, f.name) is not None
    }
    if args.resume:
        if overrides or args.config:
            given = sorted(overrides) + (["config"] if args.config else [])
            raise CommandError(f"--resume continues a run with its own config.json; drop {given}")
        if args.show_config:
            print(_resume_config(Path(args.resume)), end="")
            return 0
        from dqnkit.adapters.training import train

        result = train(TrainConfig(env_id=args.env_id or ""), resume=args.resume, quiet=args.quiet)
    else:
        config = _resolve(args, overrides)
        if args.show_config:
            from dqnkit.adapters.config_file import to_toml

            print(to_toml(config), end="")
            return 0
        from dqnkit.adapters.training import train

        result = train(config, quiet=args.quiet)
    return _report_training(result)


def _resolve(args: argparse.Namespace, overrides: dict[str, Any]) -> TrainConfig:
    """preset < --config file < command-line options."""
    from_file: dict[str, Any] = {}
    if args.config is not None:
        from dqnkit.adapters.config_file import load_config_file

        from_file = load_config_file(args.config)
    env_id = args.env_id or from_file.pop("env_id", None)
    from_file.pop("env_id", None)
    if not env_id:
        raise CommandError(
            "train needs an ENV_ID (e.g. CartPole-v1), an env_id in --config, or --resume RUN_DIR"
        )
    return config_for(env_id, **{**from_file, **overrides})


def _resume_config(run_dir: Path) -> str:
    from dqnkit.adapters.config_file import to_toml

    config_file = run_dir / rundir.CONFIG_FILE
    if not config_file.is_file():
        raise CommandError(f"{run_dir}: not a run directory (no {rundir.CONFIG_FILE})")
    return to_toml(TrainConfig.from_json_file(config_file))


def _report_training(result: Any) -> int:
    from dqnkit.adapters.evaluation import format_result

    if result.interrupted:
        print(
            f"interrupted at step {result.steps}; checkpoint written. Resume with:\n"
            f"  dqnkit train --resume {result.run_dir}"
        )
        return 130
    assert result.evaluation is not None
    print(f"run directory: {result.run_dir}")
    resumed = f" (from step {result.started_at}, resumed)" if result.started_at else ""
    print(f"trained {result.steps} steps{resumed} in {result.wall_seconds:.1f} s")
    print(f"greedy evaluation: {format_result(result.evaluation)}")
    print(f"weights: {result.run_dir / rundir.POLICY_FILE}")
    print(f"returns plot: {result.run_dir / rundir.PLOT_FILE}")
    return 0


def add_evaluate_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="run the greedy policy of a run or weights file",
        description="Run a trained policy greedily and print its mean ± std return.",
    )
    parser.add_argument(
        "path", metavar="RUN_DIR_OR_WEIGHTS", help="a run directory or a policy.safetensors file"
    )
    parser.add_argument(
        "--episodes", type=cli_args.episode_count, default=100, help="episodes (default: 100)"
    )
    deploy_cli.add_eval_seed_option(parser)
    deploy_cli.add_env_option(parser)
    parser.add_argument(
        "--quiet", action="store_true", help="no progress bar (default: one on a terminal)"
    )
    add_watch_options(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object (default: text)")
    parser.set_defaults(handler=_evaluate_command)


def _evaluate_command(args: argparse.Namespace) -> int:
    from dqnkit.adapters.evaluation import greedy_act
    from dqnkit.export.weights import load_weights

    deploy_cli.refuse_artifact(args.path, "evaluate")
    path = rundir.resolve_policy(args.path)
    try:
        network, spec = load_weights(path)
    except ValueError as error:
        raise CommandError(str(error)) from error
    return deploy_cli.run_and_report(greedy_act(network), args, spec=spec, policy=path)


def _option_type(annotation: Any) -> tuple[Any, list[str] | None]:
    """The argparse type (and choices) for a TrainConfig field's annotation."""
    if annotation in (int, float, str, bool):
        return annotation, None
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return str, list(typing.get_args(annotation))
    if origin is tuple:
        return _int_list, None
    if origin in (typing.Union, types.UnionType):  # float | None: "none" turns it off
        (inner,) = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _or_none(inner), None
    if isinstance(annotation, str):  # postponed annotations are not used here
        raise TypeError(f"unexpected string annotation {annotation!r}")
    # Literal aliases like EpsilonSchedule resolve through get_origin above.
    raise TypeError(f"no command-line type for {annotation!r}")


# What "none" parses to: an option given as none (None itself means "not given").
NONE_GIVEN = type("NoneGiven", (), {"__repr__": lambda self: "none"})()


def _or_none(inner: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        return NONE_GIVEN if text.strip().lower() == "none" else inner(text)

    parse.__name__ = getattr(inner, "__name__", "value")  # argparse's "invalid float value"
    return parse


def _int_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated ints, got {text!r}") from None


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return str(value)
