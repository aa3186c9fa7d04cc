"""The run directory's layout: one place that names its files."""

from pathlib import Path

from dqnkit.adapters.errors import CommandError

__all__ = [
    "CHECKPOINT_DIR",
    "CONFIG_FILE",
    "METRICS_FILE",
    "PLOT_FILE",
    "POLICY_FILE",
    "resolve_policy",
]

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.csv"
PLOT_FILE = "returns.png"
POLICY_FILE = "policy.safetensors"
CHECKPOINT_DIR = "checkpoints"


def resolve_policy(path: str | Path) -> Path:
    """A run directory's final weights, or ``path`` itself when it is a weights file."""
    p = Path(path)
    if p.is_dir():
        weights = p / POLICY_FILE
        if not weights.is_file():
            raise CommandError(f"{p} is a directory without {POLICY_FILE}: not a finished run")
        return weights
    if not p.exists():
        raise CommandError(f"{p}: no such run directory or weights file")
    return p
