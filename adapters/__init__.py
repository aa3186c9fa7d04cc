"""dqnkit.adapters: environments, the training loop, checkpoints, logs and the CLI.

Python API::

    from dqnkit.adapters import TrainConfig, config_for, evaluate, train

    result = train(config_for("CartPole-v1", seed=1))
    print(result.run_dir, result.evaluation.mean_return)
    print(evaluate(result.run_dir, episodes=100).mean_return)

Names are imported on first use, so that ``dqnkit --help`` and ``dqnkit play x.onnx`` (which
import parts of this package) never pay for, or need, torch.
"""

from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dqnkit.adapters.config import PRESETS, TrainConfig, config_for
    from dqnkit.adapters.errors import CommandError
    from dqnkit.adapters.evaluation import EvalResult
    from dqnkit.adapters.train import Progress, TrainResult, train

__all__ = [
    "PRESETS",
    "CommandError",
    "EvalResult",
    "Progress",
    "TrainConfig",
    "TrainResult",
    "config_for",
    "evaluate",
    "train",
]

_HOMES = {
    "PRESETS": "config",
    "TrainConfig": "config",
    "config_for": "config",
    "CommandError": "errors",
    "EvalResult": "evaluation",
    "Progress": "train",
    "TrainResult": "train",
    "train": "train",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'dqnkit.adapters' has no attribute {name!r}")
    return getattr(import_module(f"dqnkit.adapters.{home}"), name)


def evaluate(
    run_dir_or_weights: str | Path,
    *,
    episodes: int = 100,
    seed: int | None = None,
    env_id: str | None = None,
) -> "EvalResult":
    """The greedy return of a run's final weights (or a weights file) over ``episodes``.

    ``seed`` defaults to the evaluation seed ``dqnkit evaluate`` uses. The environment is the
    one the weights name, unless ``env_id`` is given: only an id you pass here may name a
    module to import (``"pkg:Env-v0"``); one read from the file never does.
    """
    from dqnkit.adapters.evaluation import EVAL_SEED, evaluate_policy
    from dqnkit.adapters.rundir import resolve_policy
    from dqnkit.export.weights import load_weights

    network, spec = load_weights(resolve_policy(run_dir_or_weights))
    return evaluate_policy(
        network,
        env_id or spec.env_id,
        episodes=episodes,
        seed=EVAL_SEED if seed is None else seed,
        preprocessing=spec.preprocessing,
        allow_import=env_id is not None,
    )
