"""Greedy evaluation of a Q-network in fresh environments."""

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from dqnkit.adapters.envs import env_factory

__all__ = ["EvalResult", "evaluate_policy", "greedy_act", "run_episodes"]


@dataclass(frozen=True)
class EvalResult:
    """Returns of complete greedy episodes."""

    returns: list[float]
    lengths: list[int]

    @property
    def episodes(self) -> int:
        return len(self.returns)

    @property
    def mean_return(self) -> float:
        return float(np.mean(self.returns))

    @property
    def std_return(self) -> float:
        return float(np.std(self.returns))

    def to_dict(self) -> dict[str, Any]:
        return {
            "mean_return": self.mean_return,
            "std_return": self.std_return,
            "episodes": self.episodes,
            **asdict(self),
        }


def run_episodes(
    act: Callable[[np.ndarray[Any, Any]], np.ndarray[Any, Any]],
    make: Callable[[], gym.Env[Any, Any]],
    *,
    episodes: int,
    seed: int,
    max_parallel: int = 16,
) -> EvalResult:
    """Runs ``episodes`` whole episodes with ``act`` (a batch of observations -> actions).

    Episodes are spread over up to ``max_parallel`` environments, seeded ``seed + i`` once, so
    ``act`` sees batches. Each environment runs a fixed quota of episodes, so the result does not
    favour short episodes and depends only on ``seed``.
    """
    if episodes <= 0:
        raise ValueError(f"episodes must be positive, got {episodes}")
    n = min(episodes, max_parallel)
    quotas = [episodes // n + (i < episodes % n) for i in range(n)]
    envs = [make() for _ in range(n)]
    try:
        obs = [env.reset(seed=seed + i)[0] for i, env in enumerate(envs)]
        totals = [0.0] * n
        steps = [0] * n
        returns: list[list[float]] = [[] for _ in range(n)]
        lengths: list[list[int]] = [[] for _ in range(n)]
        active = list(range(n))
        while active:
            actions = act(np.stack([obs[i] for i in active]))
            still_active = []
            for i, action in zip(active, actions.tolist(), strict=True):
                obs[i], reward, terminated, truncated, _ = envs[i].step(action)
                totals[i] += float(reward)
                steps[i] += 1
                if terminated or truncated:
                    returns[i].append(totals[i])
                    lengths[i].append(steps[i])
                    totals[i], steps[i] = 0.0, 0
                    if len(returns[i]) == quotas[i]:
                        continue
                    obs[i] = envs[i].reset()[0]
                still_active.append(i)
            active = still_active
    finally:
        for env in envs:
            env.close()
    return EvalResult(
        returns=[r for per_env in returns for r in per_env],
        lengths=[n for per_env in lengths for n in per_env],
    )


def evaluate_policy(
    network: torch.nn.Module,
    env_id: str,
    *,
    episodes: int,
    seed: int,
    preprocessing: dict[str, Any] | None = None,
) -> EvalResult:
    """The greedy policy of ``network`` over ``episodes`` episodes of ``env_id``.

    ``preprocessing`` (a ``PolicySpec.preprocessing``) makes the observations pixels.
    """
    was_training = network.training
    network.eval()
    try:
        make = env_factory(env_id, preprocessing)
        return run_episodes(greedy_act(network), make, episodes=episodes, seed=seed)
    finally:
        network.train(was_training)


def greedy_act(
    network: torch.nn.Module,
) -> Callable[[np.ndarray[Any, Any]], np.ndarray[Any, Any]]:
    """A batch of observations -> the network's greedy actions, as numpy (for run_episodes)."""
    device = next(network.parameters()).device

    def act(obs: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        with torch.inference_mode():
            q = network(torch.as_tensor(obs, device=device))
        return q.argmax(dim=1).cpu().numpy()  # type: ignore[no-any-return]

    return act


def format_result(result: EvalResult) -> str:
    """``mean ± std over N episodes``, as the CLI prints it."""
    sem = result.std_return / math.sqrt(result.episodes)
    return (
        f"{result.mean_return:.2f} ± {result.std_return:.2f} over {result.episodes} episodes "
        f"(standard error {sem:.2f})"
    )
