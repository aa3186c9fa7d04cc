"""dqnkit.adapters: environments, the training loop, checkpoints, logs and the CLI.

Python API::

    from dqnkit.adapters import TrainConfig, config_for, evaluate, train

    result = train(config_for("CartPole-v1", seed=1))
    print(result.run_dir, result.evaluation.mean_return)
    print(evaluate(result.run_dir, episodes=100).mean_return)
"""

from pathlib import Path

from dqnkit.adapters.config import PRESETS, TrainConfig, config_for
from dqnkit.adapters.errors import CommandError
from dqnkit.adapters.evaluation import EvalResult, evaluate_policy
from dqnkit.adapters.rundir import resolve_policy
from dqnkit.adapters.train import EVAL_SEED_OFFSET, Progress, TrainResult, train

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


def evaluate(
    run_dir_or_weights: str | Path, *, episodes: int = 100, seed: int = EVAL_SEED_OFFSET
) -> EvalResult:
    """The greedy return of a run's final weights (or a weights file) over ``episodes``."""
    from dqnkit.export.weights import load_weights

    network, spec = load_weights(resolve_policy(run_dir_or_weights))
    return evaluate_policy(
        network, spec.env_id, episodes=episodes, seed=seed, preprocessing=spec.preprocessing
    )
