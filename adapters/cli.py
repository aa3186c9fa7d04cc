"""The ``dqnkit`` command line: ``train``, ``evaluate``, ``export``, ``play``.

Each command module offers ``add_parser(subparsers)``, which registers the command with a
``handler(args) -> int``. Bad input raises :class:`CommandError`, printed here as one line.
"""

import argparse
import sys
from collections.abc import Sequence
from importlib.metadata import version
from typing import NoReturn

from dqnkit.adapters import deploy_cli, train_cli
from dqnkit.adapters.errors import CommandError


class _Parser(argparse.ArgumentParser):
    """argparse, with its usage errors as one line: ``dqnkit: error: ...``, exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="dqnkit",
        description="Deep Q-Networks for PyTorch: train, evaluate, export and play policies.",
    )
    parser.add_argument("--version", action="version", version=f"dqnkit {version('dqnkit')}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", parser_class=_Parser)
    train_cli.add_train_parser(commands)
    train_cli.add_evaluate_parser(commands)
    deploy_cli.add_export_parser(commands)
    deploy_cli.add_play_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        return int(handler(args))
    except CommandError as error:
        print(f"dqnkit: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C outside the training loop (which checkpoints first)
        print("dqnkit: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
