"""The ``export`` and ``play`` commands: a trained run to verified artifacts, and back to play.

``dqnkit export RUN_DIR_OR_WEIGHTS`` writes ``policy.onnx``, ``policy.pt`` (TorchScript),
``policy.pt2`` (torch.export) and ``policy.export.json`` (the parity figures), each checked
against the PyTorch network on sampled and real-episode observations. ``dqnkit play ARTIFACT``
runs one artifact alone in its environment: proof that the file is the policy.
"""

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from dqnkit.adapters.envs import env_factory
from dqnkit.adapters.errors import CommandError
from dqnkit.adapters.evaluation import greedy_act, run_episodes
from dqnkit.adapters.rundir import resolve_policy

__all__ = [
    "add_export_parser",
    "add_play_parser",
    "collect_observations",
    "export_command",
    "play_command",
]

_SUFFIX_FORMATS = {".onnx": "onnx", ".pt": "torchscript", ".pt2": "pt2"}

# An observation batch [B, *obs_shape] -> greedy actions [B].
ActFn = Callable[[np.ndarray], np.ndarray]


def add_export_parser(subparsers: Any) -> None:
    """Registers ``export`` on the ``dqnkit`` command's subparsers."""
    parser = subparsers.add_parser(
        "export",
        help="export a trained policy to ONNX, TorchScript and .pt2, verified against PyTorch",
        description=(
            "Export a trained policy as ONNX (policy.onnx), TorchScript (policy.pt) and "
            "torch.export (policy.pt2) files that map an observation batch [B, *obs_shape] to "
            "q_values [B, n_actions] and action [B]. Each file is reloaded and compared with "
            "the PyTorch network on observations sampled within the observation bounds and "
            "from real episodes, at batch sizes 1, 7 and 256; if any differs beyond the "
            "tolerance or picks another action, nothing is written. The figures go to "
            "policy.export.json. A .pt2 file can unpickle when loaded: trusted input only."
        ),
    )
    parser.add_argument(
        "policy",
        metavar="RUN_DIR_OR_WEIGHTS",
        help="a training run directory (its policy.safetensors) or a weights file",
    )
    parser.add_argument(
        "--format",
        default="onnx,torchscript,pt2",
        help="comma-separated formats among onnx, torchscript, pt2 (default: all three)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output folder (default: RUN_DIR/export, or export/ beside a weights file)",
    )
    parser.add_argument(
        "--episodes",
        type=int,
        default=3,
        help="episodes run to collect real observations for the parity check (default: 3)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of those episodes (default: 0)")
    parser.add_argument(
        "--atol", type=float, default=1e-4, help="absolute Q-value tolerance (default: 1e-4)"
    )
    parser.add_argument(
        "--rtol", type=float, default=1e-5, help="relative Q-value tolerance (default: 1e-5)"
    )
    parser.set_defaults(handler=export_command)


def add_play_parser(subparsers: Any) -> None:
    """Registers ``play`` on the ``dqnkit`` command's subparsers."""
    parser = subparsers.add_parser(
        "play",
        help="run an exported artifact (.onnx, .pt or .pt2) greedily in its environment",
        description=(
            "Run an exported policy file alone in its environment and print the episode "
            "returns. .onnx runs through dqnkit.export.runtime (onnxruntime, no torch); .pt "
            "(TorchScript) and .pt2 (torch.export, trusted files only) run through torch."
        ),
    )
    parser.add_argument("artifact", metavar="ARTIFACT", help="a .onnx, .pt or .pt2 file")
    parser.add_argument(
        "--env",
        default=None,
        help="environment id (default: the env_id in the artifact's metadata)",
    )
    parser.add_argument("--episodes", type=int, default=10, help="episodes (default: 10)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first reset (default: 0)")
    parser.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object instead of text (default: text)",
    )
    parser.set_defaults(handler=play_command)


def export_command(args: argparse.Namespace) -> int:
    """``dqnkit export``: writes verified artifacts and prints where and how close they are."""
    from dqnkit.export.exporter import export_policy
    from dqnkit.export.parity import ParityError
    from dqnkit.export.weights import load_weights

    formats = [f.strip() for f in str(args.format).split(",") if f.strip()]
    unknown = [f for f in formats if f not in ("onnx", "torchscript", "pt2")]
    if unknown or not formats:
        raise CommandError(f"--format {args.format!r}: choose from onnx, torchscript, pt2")
    if args.episodes < 0:
        raise CommandError(f"--episodes must be >= 0, got {args.episodes}")
    weights = resolve_policy(args.policy)
    try:
        network, spec = load_weights(weights)
    except ValueError as error:
        raise CommandError(str(error)) from error
    out = args.out if args.out is not None else weights.parent / "export"
    observations = None
    if args.episodes > 0:
        env = env_factory(spec.env_id, spec.preprocessing)()
        try:
            check_env_matches(env, spec.obs_shape, spec.n_actions, spec.env_id)
            observations = collect_observations(
                env, greedy_act(network), episodes=args.episodes, seed=args.seed
            )
        finally:
            env.close()
    try:
        result = export_policy(
            network,
            spec,
            out,
            formats=formats,  # type: ignore[arg-type]
            observations=observations,
            seed=args.seed,
            atol=args.atol,
            rtol=args.rtol,
        )
    except ParityError as error:
        raise CommandError(str(error)) from error
    episodes = 0 if observations is None else len(observations)
    print(f"exported {spec.env_id} policy ({episodes} episode observations checked):")
    for fmt, path in result.files.items():
        worst = max(c.max_abs_dq for c in result.checks[fmt])
        print(f"  {path}  ({fmt}, max |dq| {worst:.3g}, actions identical)")
    print(f"  {result.report}  (parity report)")
    return 0


def play_command(args: argparse.Namespace) -> int:
    """``dqnkit play``: runs an artifact for some episodes and prints the returns."""
    if args.episodes < 1:
        raise CommandError(f"--episodes must be >= 1, got {args.episodes}")
    path = Path(args.artifact)
    act, metadata = load_artifact(path)
    env_id = args.env or metadata.env_id
    make = env_factory(env_id, metadata.preprocessing)
    env = make()
    try:
        check_env_matches(env, metadata.obs_shape, metadata.n_actions, env_id)
    finally:
        env.close()
    # The same episodes as `dqnkit evaluate --seed` runs for the weights the artifact came from.
    result = run_episodes(act, make, episodes=args.episodes, seed=args.seed)
    returns, mean, std = result.returns, result.mean_return, result.std_return
    if args.json:
        print(
            json.dumps(
                {
                    "artifact": str(path),
                    "env_id": env_id,
                    "episodes": len(returns),
                    "seed": args.seed,
                    "mean_return": mean,
                    "std_return": std,
                    "returns": returns,
                }
            )
        )
    else:
        print(f"{env_id}: {len(returns)} episodes of {path.name} (seed {args.seed})")
        print(f"return {mean:.2f} ± {std:.2f}")
        print("returns: " + " ".join(f"{r:g}" for r in returns))
    return 0


def load_artifact(path: Path) -> tuple[ActFn, Any]:
    """An artifact's batch act function and its :class:`PolicyMetadata`; CommandError if bad."""
    from dqnkit.export.contract import PolicyMetadata

    fmt = _SUFFIX_FORMATS.get(path.suffix)
    if fmt is None:
        raise CommandError(f"{path}: unknown artifact type {path.suffix!r} (use .onnx, .pt, .pt2)")
    if not path.is_file():
        raise CommandError(f"{path}: no such file")
    try:
        if fmt == "onnx":
            from dqnkit.export.runtime import Policy

            policy = Policy.load(path)
            return policy.act, policy.metadata
        from dqnkit.export.artifacts import read_contract, runner

        metadata = PolicyMetadata.from_json(read_contract(fmt, path))  # type: ignore[arg-type]
        run = runner(fmt, path)  # type: ignore[arg-type]
    except (ValueError, RuntimeError) as error:
        raise CommandError(f"{path}: not a dqnkit {fmt} policy ({_first_line(error)})") from error

    def act(obs: np.ndarray) -> np.ndarray:
        return run(np.ascontiguousarray(obs, dtype=metadata.obs_dtype))[1]

    return act, metadata


def check_env_matches(
    env: gym.Env[Any, Any], obs_shape: tuple[int, ...], n_actions: int, env_id: str
) -> None:
    """The environment's spaces must be the ones the policy was made for."""
    space = env.observation_space
    if tuple(space.shape or ()) != tuple(obs_shape):
        raise CommandError(
            f"{env_id} observations have shape {space.shape}; the policy takes {tuple(obs_shape)}"
        )
    actions = env.action_space
    if not isinstance(actions, gym.spaces.Discrete) or int(actions.n) != n_actions:
        raise CommandError(
            f"{env_id} has action space {actions}; the policy has {n_actions} actions"
        )


def collect_observations(
    env: gym.Env[Any, Any],
    act: ActFn,
    *,
    episodes: int,
    seed: int,
    epsilon: float = 0.2,
    max_steps: int = 2000,
) -> np.ndarray:
    """Observations from ``episodes`` epsilon-greedy episodes (all of them, ``max_steps`` at most).

    Args:
      env: the environment (reset with ``seed`` once, then without).
      act: greedy actions for a batch.
      episodes: how many episodes.
      seed: seeds the reset, the action space and the epsilon draws.
      epsilon: the probability of a random action, so states off the greedy path are seen too.
      max_steps: a cap on the observations kept.

    Returns:
      ``[N, *obs_shape]`` observations as the environment returned them.
    """
    rng = np.random.default_rng(seed)
    env.action_space.seed(seed)
    seen: list[np.ndarray] = []
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed) if episode == 0 else env.reset()
        done = False
        while not done and len(seen) < max_steps:
            seen.append(np.asarray(obs))
            if rng.random() < epsilon:
                action = int(env.action_space.sample())
            else:
                action = int(act(np.asarray(obs)[None])[0])
            obs, _, terminated, truncated, _ = env.step(action)
            done = bool(terminated or truncated)
    return np.stack(seen)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
