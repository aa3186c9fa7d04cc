"""argparse types shared by the commands: a bad value is a one-line usage error, exit 2."""

import argparse
import math

__all__ = [
    "EVAL_SEED",
    "MAX_EPISODES",
    "MAX_SEED",
    "episode_count",
    "episode_count_or_zero",
    "finite_nonnegative",
    "nonnegative_int",
    "positive_int",
    "seed",
]

# Seeds are 32-bit: every generator dqnkit seeds (numpy's, Gymnasium's, torch's) takes them,
# with room for the offsets added to them (the evaluation seed is the training seed + 1e6).
MAX_SEED = 2**32 - 1
# The seed of the first evaluation environment by default (``dqnkit evaluate`` and ``play``):
# offset from the small seeds training uses, so evaluation never replays training episodes.
EVAL_SEED = 1_000_000


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


# More episodes than anyone evaluates: a larger number is a typo, not a request to run forever.
MAX_EPISODES = 1_000_000


def episode_count(text: str, *, minimum: int = 1) -> int:
    """An episode count in ``[minimum, MAX_EPISODES]``."""
    value = _int(text)
    if not minimum <= value <= MAX_EPISODES:
        raise argparse.ArgumentTypeError(
            f"expected a number of episodes in [{minimum}, {MAX_EPISODES:,}], got {text}"
        )
    return value


def episode_count_or_zero(text: str) -> int:
    """An episode count in ``[0, MAX_EPISODES]``."""
    return episode_count(text, minimum=0)


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
