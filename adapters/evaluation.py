"""Greedy evaluation of a Q-network in fresh environments."""

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np

from dqnkit.adapters.cli_args import EVAL_SEED
from dqnkit.adapters.envs import env_errors, env_factory, env_name, finite_observation
from dqnkit.adapters.errors import CommandError

if TYPE_CHECKING:
    import torch

__all__ = [
    "DEFAULT_MAX_EPISODE_STEPS",
    "EVAL_SEED",
    "EvalResult",
    "evaluate_policy",
    "greedy_act",
    "report_result",
    "run_episodes",
]


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


# Episodes of an environment with no time limit of its own end after this many steps, as
# truncated: 27,000 agent steps is Atari's customary 108,000 frames at a frame skip of 4.
DEFAULT_MAX_EPISODE_STEPS = 27_000


def run_episodes(
    act: Callable[[np.ndarray[Any, Any]], np.ndarray[Any, Any]],
    make: Callable[[], gym.Env[Any, Any]],
    *,
    episodes: int,
    seed: int,
    max_parallel: int = 16,
    max_episode_steps: int = DEFAULT_MAX_EPISODE_STEPS,
    make_first: Callable[[], gym.Env[Any, Any]] | None = None,
    on_episode: Callable[[], object] | None = None,
) -> EvalResult:
    """Runs ``episodes`` whole episodes with ``act`` (a batch of observations -> actions).

    Episodes are spread over up to ``max_parallel`` environments, seeded ``seed + i`` once, so
    ``act`` sees batches. Each environment runs a fixed quota of episodes, so the result does not
    favour short episodes and depends only on ``seed``. An environment without a time limit of
    its own (``spec.max_episode_steps``) has its episodes truncated at ``max_episode_steps``.
    ``make_first`` makes environment 0 instead of ``make`` (to watch or record it: it must be
    the same environment); ``on_episode`` is called as each episode ends (a progress bar).

    Raises:
      CommandError: the environment raised, or gave a non-finite observation or reward.
    """
    if episodes <= 0:
        raise ValueError(f"episodes must be positive, got {episodes}")
    n = min(episodes, max_parallel)
    quotas = [episodes // n + (i < episodes % n) for i in range(n)]
    envs = [(make_first or make)() if i == 0 else make() for i in range(n)]
    try:
        env_id = env_name(envs[0])
        limits = [_step_limit(env, max_episode_steps) for env in envs]
        obs = []
        for i, env in enumerate(envs):
            with env_errors(env_id, "reset"):
                obs.append(finite_observation(env.reset(seed=seed + i)[0], env_id))
        totals = [0.0] * n
        steps = [0] * n
        returns: list[list[float]] = [[] for _ in range(n)]
        lengths: list[list[int]] = [[] for _ in range(n)]
        active = list(range(n))
        while active:
            actions = act(np.stack([obs[i] for i in active]))
            still_active = []
            for i, action in zip(active, actions.tolist(), strict=True):
                with env_errors(env_id, "step"):
                    obs[i], reward, terminated, truncated, _ = envs[i].step(action)
                obs[i] = finite_observation(obs[i], env_id)
                reward = float(reward)
                if not math.isfinite(reward):
                    raise CommandError(f"environment {env_id!r} returned a reward of {reward}")
                totals[i] += reward
                steps[i] += 1
                if terminated or truncated or steps[i] >= limits[i]:
                    returns[i].append(totals[i])
                    lengths[i].append(steps[i])
                    if on_episode is not None:
                        on_episode()
                    totals[i], steps[i] = 0.0, 0
                    if len(returns[i]) == quotas[i]:
                        continue
                    with env_errors(env_id, "reset"):
                        obs[i] = finite_observation(envs[i].reset()[0], env_id)
                still_active.append(i)
            active = still_active
    finally:
        for env in envs:
            env.close()
    return EvalResult(
        returns=[r for per_env in returns for r in per_env],
        lengths=[n for per_env in lengths for n in per_env],
    )


def _step_limit(env: gym.Env[Any, Any], default: int) -> int:
    own = env.spec.max_episode_steps if env.spec is not None else None
    return int(own) if own else default


def evaluate_policy(
    network: "torch.nn.Module",
    env_id: str,
    *,
    episodes: int,
    seed: int,
    preprocessing: dict[str, Any] | None = None,
    allow_import: bool = False,
) -> EvalResult:
    """The greedy policy of ``network`` over ``episodes`` episodes of ``env_id``.

    ``preprocessing`` (a ``PolicySpec.preprocessing``) makes the observations pixels;
    ``allow_import`` as in :func:`dqnkit.adapters.envs.check_env_id`.

    Raises:
      CommandError: the environment does not fit the network, misbehaves, or the network's
        Q-values are not finite.
    """
    was_training = network.training
    network.eval()
    try:
        make = env_factory(env_id, preprocessing, allow_import=allow_import)
        return run_episodes(greedy_act(network), make, episodes=episodes, seed=seed)
    finally:
        network.train(was_training)


def greedy_act(
    network: "torch.nn.Module",
) -> Callable[[np.ndarray[Any, Any]], np.ndarray[Any, Any]]:
    """A batch of observations -> the network's greedy actions, as numpy (for run_episodes).

    Raises CommandError when the Q-values are not finite: an argmax over NaN is meaningless.
    """
    import torch

    device = next(network.parameters()).device

    def act(obs: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        with torch.inference_mode():
            q = network(torch.as_tensor(obs, device=device))
            if not bool(torch.isfinite(q).all()):
                raise CommandError(
                    "the policy's Q-values are not finite (NaN or infinity) on a finite "
                    "observation: its weights are broken"
                )
        return q.argmax(dim=1).cpu().numpy()  # type: ignore[no-any-return]

    return act


def format_result(result: EvalResult) -> str:
    """``mean ± std over N episodes``, as the CLI prints it."""
    sem = result.std_return / math.sqrt(result.episodes)
    return (
        f"{result.mean_return:.2f} ± {result.std_return:.2f} over {result.episodes} episodes "
        f"(standard error {sem:.2f})"
    )


def report_result(result: EvalResult, *, env_id: str, policy: str, seed: int, as_json: bool) -> str:
    """What ``dqnkit evaluate`` and ``dqnkit play`` print: the same text, or the same JSON.

    Args:
      result: the episodes.
      env_id: the environment they ran in.
      policy: the weights file or artifact that acted.
      seed: the seed of the first evaluation environment.
      as_json: one JSON object instead of two lines of text.
    """
    if as_json:
        return json.dumps(
            {"env_id": env_id, "policy": policy, "seed": seed, **result.to_dict()},
            allow_nan=False,
        )
    returns = " ".join(f"{r:g}" for r in result.returns)
    return f"{env_id}: {format_result(result)}, seed {seed}, {policy}\nreturns: {returns}"
