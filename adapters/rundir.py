"""The run directory's layout (one place that names its files), its lock, and its config."""

import json
import os
from pathlib import Path
from typing import IO, TYPE_CHECKING

from dqnkit.adapters.errors import CommandError

if TYPE_CHECKING:
    from dqnkit.adapters.config import TrainConfig

__all__ = [
    "BEST_FILE",
    "CHECKPOINT_DIR",
    "CONFIG_FILE",
    "METRICS_FILE",
    "PLOT_FILE",
    "POLICY_FILE",
    "lock",
    "read_config",
    "resolve_policy",
]

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.csv"
PLOT_FILE = "returns.png"
POLICY_FILE = "policy.safetensors"
BEST_FILE = "best.safetensors"  # --keep-best: the online weights of the best evaluation so far
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


def read_config(run_dir: Path) -> "TrainConfig":
    """The validated :class:`TrainConfig` of a run directory.

    Raises:
      CommandError: no config.json, or one that is empty, corrupt or invalid.
    """
    from dqnkit.adapters.config import TrainConfig

    path = run_dir / CONFIG_FILE
    if not path.is_file():
        raise CommandError(f"{run_dir}: not a run directory (no {CONFIG_FILE})")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise CommandError(f"{path} is empty or corrupt ({error}): cannot resume") from error
    return TrainConfig.from_dict(data, source=str(path)).validate()


def lock(run_dir: Path) -> IO[bytes]:
    """Takes the run directory's lock (an exclusive ``flock`` on its config.json) and returns
    the open file that holds it: the lock lasts until that file is closed or the process ends,
    kill -9 included.

    Raises:
      CommandError: another process holds it (it is training in ``run_dir``).
    """
    handle = open(run_dir / CONFIG_FILE, "rb")  # noqa: SIM115 - held open as the lock
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        return handle
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        handle.close()
        raise CommandError(
            f"{run_dir} is locked: another process is training in it; wait for "
            "it to finish or stop it first"
        ) from error
    os.set_inheritable(handle.fileno(), False)
    return handle
