"""The ``dqnkit`` command line."""

import argparse
import sys
from collections.abc import Sequence
from importlib.metadata import version


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dqnkit", description="Deep Q-Networks for PyTorch: train, evaluate, export, play."
    )
    parser.add_argument("--version", action="version", version=f"dqnkit {version('dqnkit')}")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    build_parser().parse_args(argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
