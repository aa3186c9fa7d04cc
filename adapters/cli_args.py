"""argparse types shared by the commands: a bad value is a one-line usage error, exit 2."""

import argparse
import math

__all__ = ["MAX_SEED", "finite_nonnegative", "nonnegative_int", "positive_int", "seed"]

# Seeds are 32-bit: every generator dqnkit seeds (numpy's, Gymnasium's, torch's) takes them,
# with room for the offsets added to them (the evaluation seed is the training seed + 1e6).
MAX_SEED = 2**32 - 1


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def seed(text: str) -> int:
    """An integer in ``[0, MAX_SEED]``."""
    value = _int(text)
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"a seed is an integer in [0, 2^32 - 1], got {text}")
    return value


def positive_int(text: str) -> int:
    """An integer >= 1."""
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text}")
    return value


def nonnegative_int(text: str) -> int:
    """An integer >= 0."""
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text}")
    return value


def finite_nonnegative(text: str) -> float:
    """A finite float >= 0 (no NaN, no infinity)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text}")
    return value
