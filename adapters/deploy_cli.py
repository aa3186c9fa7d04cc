"""The ``export`` and ``play`` commands: a trained run to verified artifacts, and back to play.

``dqnkit export RUN_DIR_OR_WEIGHTS`` writes ``policy.onnx``, ``policy.pt`` (TorchScript),
``policy.pt2`` (torch.export) and ``policy.export.json`` (the parity figures), each checked
against the PyTorch network on sampled and real-episode observations. ``dqnkit play ARTIFACT``
runs one artifact alone in its environment: proof that the file is the policy.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dqnkit.adapters import cli_args
from dqnkit.adapters.errors import CommandError
from dqnkit.adapters.video import add_watch_options, watch_from_args

# Parsers are built without numpy, gymnasium or torch (dqnkit --help answers at once); each
# command imports what it needs when it runs. `play x.onnx` never imports torch.
if TYPE_CHECKING:
    import gymnasium as gym
    import numpy as np

    from dqnkit.export.contract import PolicySpec

__all__ = [
    "add_export_parser",
    "add_play_parser",
    "collect_observations",
    "export_command",
    "load_artifact",
    "play_command",
    "refuse_artifact",
    "run_and_report",
]

_SUFFIX_FORMATS = {".onnx": "onnx", ".pt": "torchscript", ".pt2": "pt2"}

# An observation batch [B, *obs_shape] -> greedy actions [B].
ActFn = Callable[["np.ndarray"], "np.ndarray"]  # a string: numpy is imported lazily


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
        help=(
            "comma-separated formats among onnx, torchscript, pt2 (default: all three), or web "
            "alone: a static page running the ONNX policy in a browser (default --out RUN/web)"
        ),
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output folder (default: RUN_DIR/export, or export/ beside a weights file)",
    )
    parser.add_argument(
        "--episodes",
        type=cli_args.episode_count_or_zero,
        default=3,
        help="episodes run to collect real observations for the parity check (default: 3)",
    )
    parser.add_argument(
        "--seed", type=cli_args.seed, default=0, help="seed of those episodes (default: 0)"
    )
    add_env_option(parser)
    parser.add_argument(
        "--quiet", action="store_true", help="no progress bar (default: one on a terminal)"
    )
    parser.add_argument(
        "--atol",
        type=cli_args.finite_nonnegative,
        default=1e-4,
        help="absolute Q-value tolerance (default: 1e-4)",
    )
    parser.add_argument(
        "--rtol",
        type=cli_args.finite_nonnegative,
        default=1e-4,  # exporter.DEFAULT_RTOL, written out: importing it would import torch
        help="relative Q-value tolerance (default: 1e-4)",
    )
    parser.set_defaults(handler=export_command)


def add_eval_seed_option(parser: argparse.ArgumentParser) -> None:
    """``--seed`` of ``evaluate`` and ``play``: one default, so both run the same episodes."""
    parser.add_argument(
        "--seed",
        type=cli_args.seed,
        default=cli_args.EVAL_SEED,
        help=f"seed of the first evaluation environment (default: {cli_args.EVAL_SEED})",
    )


def add_env_option(parser: argparse.ArgumentParser) -> None:
    """``--env``: an environment id the user types, which may name a module to import."""
    parser.add_argument(
        "--env",
        default=None,
        metavar="ENV_ID",
        help=(
            "environment id (default: the one in the file's metadata). An id read from a file "
            "never imports a module; one given here may ('pkg:Env-v0' imports pkg)"
        ),
    )


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
    add_env_option(parser)
    parser.add_argument(
        "--episodes", type=cli_args.episode_count, default=10, help="episodes (default: 10)"
    )
    add_eval_seed_option(parser)
    parser.add_argument(
        "--quiet", action="store_true", help="no progress bar (default: one on a terminal)"
    )
    add_watch_options(parser)
    parser.add_argument(
        "--trust-pickle",
        action="store_true",
        help=(
            "allow a .pt2 file: torch.export.load can unpickle, which runs code from the file; "
            "only for files you made or trust (default: refuse .pt2)"
        ),
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object instead of text (default: text)",
    )
    parser.set_defaults(handler=play_command)


def export_command(args: argparse.Namespace) -> int:
    """``dqnkit export``: writes verified artifacts and prints where and how close they are."""
    from dqnkit.adapters.envs import policy_env_factory
    from dqnkit.adapters.evaluation import greedy_act
    from dqnkit.adapters.progress import progress
    from dqnkit.adapters.rundir import resolve_policy
    from dqnkit.export.exporter import export_policy
    from dqnkit.export.weights import load_weights

    formats = [f.strip() for f in str(args.format).split(",") if f.strip()]
    unknown = [f for f in formats if f not in ("onnx", "torchscript", "pt2", "web")]
    if unknown or not formats:
        raise CommandError(f"--format {args.format!r}: choose from onnx, torchscript, pt2, web")
    web = "web" in formats
    if web and formats != ["web"]:
        raise CommandError("--format web writes a page folder of its own: give it alone")
    refuse_artifact(args.policy, "export")
    weights = resolve_policy(args.policy)
    try:
        network, spec = load_weights(weights)
    except ValueError as error:
        raise CommandError(str(error)) from error
    out = args.out if args.out is not None else weights.parent / ("web" if web else "export")
    try:
        if out.exists() and not out.is_dir():
            raise CommandError(f"--out {out}: exists and is not a folder")
    except OSError as error:  # a name too long, a folder we may not look into...
        raise CommandError(f"cannot write the export to {out}: {error.strerror}") from error
    env_id = args.env or spec.env_id
    observations = None
    if args.episodes > 0:
        make = policy_env_factory(
            env_id,
            spec.preprocessing,
            obs_shape=spec.obs_shape,
            n_actions=spec.n_actions,
            allow_import=args.env is not None,
        )
        env = make()
        try:
            with progress(args.episodes, "episodes for the parity check", quiet=args.quiet) as bar:
                observations = collect_observations(
                    env,
                    greedy_act(network),
                    episodes=args.episodes,
                    seed=args.seed,
                    on_episode=bar.update,
                )
        finally:
            env.close()
    if not args.quiet and sys.stderr.isatty():
        print(f"exporting and verifying {', '.join(formats)}...", file=sys.stderr)
    try:
        # The page gets a verified ONNX file of its own, exported to a scratch folder first.
        scratch = tempfile.TemporaryDirectory(prefix=".dqnkit-web-") if web else nullcontext(out)
        with scratch as target:
            result = export_policy(
                network,
                spec,
                target,
                formats=["onnx"] if web else formats,  # type: ignore[arg-type]
                observations=observations,
                seed=args.seed,
                atol=args.atol,
                rtol=args.rtol,
            )
            if web:
                from dqnkit.export.web import export_web

                site = export_web(result.files["onnx"], out)
    except ValueError as error:  # ParityError included: the figures are in the message
        raise CommandError(str(error)) from error
    except OSError as error:  # a full disk, a read-only or too long --out...
        raise CommandError(f"cannot write the export to {out}: {error}") from error
    episodes = 0 if observations is None else len(observations)
    if web:
        worst = max(c.max_abs_dq for c in result.checks["onnx"])
        print(f"exported {spec.env_id} policy as a web page ({episodes} episode observations):")
        print(f"  {site}/  (ONNX verified: max |dq| {worst:.3g}, actions identical)")
        print(f"  serve it: python -m dqnkit.export.web serve {site}")
        return 0
    print(f"exported {spec.env_id} policy ({episodes} episode observations checked):")
    for fmt, path in result.files.items():
        worst = max(c.max_abs_dq for c in result.checks[fmt])
        print(f"  {path}  ({fmt}, max |dq| {worst:.3g}, actions identical)")
    print(f"  {result.report}  (parity report)")
    return 0


def play_command(args: argparse.Namespace) -> int:
    """``dqnkit play``: runs an artifact for some episodes and prints the returns."""
    path = Path(args.artifact)
    act, metadata = load_artifact(path, trust_pickle=args.trust_pickle)
    # The same episodes as `dqnkit evaluate --seed` runs for the weights the artifact came from.
    return run_and_report(act, args, spec=metadata.spec, policy=path)


def run_and_report(act: ActFn, args: argparse.Namespace, *, spec: PolicySpec, policy: Path) -> int:
    """What ``evaluate`` and ``play`` share: the environments, checked against the policy's
    contract ``spec``, the episodes (watched or recorded as asked, with a progress bar), and
    one report format."""
    from dqnkit.adapters.envs import policy_env_factory
    from dqnkit.adapters.evaluation import report_result, run_episodes
    from dqnkit.adapters.progress import progress

    env_id = args.env or spec.env_id
    watch = watch_from_args(args)
    watch.check(pixels=spec.preprocessing is not None)

    def factory(render_mode: str | None = None) -> Any:
        return policy_env_factory(
            env_id,
            spec.preprocessing,
            obs_shape=spec.obs_shape,
            n_actions=spec.n_actions,
            allow_import=args.env is not None,  # only an id the user typed may import
            render_mode=render_mode,
        )

    watched = watch.wrap(factory(watch.render_mode())) if watch.active else None
    with progress(args.episodes, f"{env_id} episodes", quiet=args.quiet) as bar:
        result = run_episodes(
            act,
            factory(),
            episodes=args.episodes,
            seed=args.seed,
            make_first=watched,
            on_episode=bar.update,
        )
    print(
        report_result(result, env_id=env_id, policy=str(policy), seed=args.seed, as_json=args.json)
    )
    for written in (watch.video, watch.gif):
        if written is not None and not args.json:
            print(f"recorded: {written}")
    return 0


def refuse_artifact(path: str | Path, command: str) -> None:
    """``evaluate`` and ``export`` take weights; an exported artifact gets a pointer to play."""
    p = Path(path)
    if p.suffix in _SUFFIX_FORMATS and p.is_file():
        raise CommandError(
            f"{p} is an exported {_SUFFIX_FORMATS[p.suffix]} artifact; {command} takes a run "
            f"directory or its policy.safetensors (run the artifact with: dqnkit play {p})"
        )


def load_artifact(path: Path, *, trust_pickle: bool = False) -> tuple[ActFn, Any]:
    """An artifact's batch act function and its :class:`PolicyMetadata`; CommandError if bad.

    The contract is read as data first; a .pt2 (which can unpickle when loaded) is refused
    unless ``trust_pickle``, and even then its archive is checked before torch loads it.
    """
    import numpy as np

    from dqnkit.export.contract import PolicyMetadata

    fmt = _SUFFIX_FORMATS.get(path.suffix)
    if fmt is None:
        raise CommandError(f"{path}: unknown artifact type {path.suffix!r} (use .onnx, .pt, .pt2)")
    if not path.is_file():
        raise CommandError(f"{path}: no such file")
    if fmt == "pt2" and not trust_pickle:
        raise CommandError(
            f"{path}: loading a .pt2 file can unpickle, which runs code from the file; play the "
            ".onnx or .pt export instead, or pass --trust-pickle if you made or trust this file"
        )
    try:
        if fmt == "onnx":
            from dqnkit.export.runtime import Policy

            policy = Policy.load(path)
            return _refusals_as_errors(policy.act), policy.metadata
        from dqnkit.export.artifacts import inspect_pt2, read_contract, runner

        metadata = PolicyMetadata.from_json(read_contract(fmt, path))  # type: ignore[arg-type]
        if fmt == "pt2":
            pickled = inspect_pt2(path)
            if pickled:
                print(
                    f"dqnkit: warning: {path} holds pickled entries dqnkit never writes "
                    f"({', '.join(pickled[:3])}); loading them as you asked (--trust-pickle)",
                    file=sys.stderr,
                )
        run = runner(fmt, path, trust_pickle=trust_pickle)  # type: ignore[arg-type]
    except (ValueError, RuntimeError) as error:
        raise CommandError(f"{path}: not a dqnkit {fmt} policy ({_first_line(error)})") from error
    except Exception as error:  # torch's loaders raise many types on a damaged archive
        raise CommandError(
            f"{path}: not a loadable {fmt} file ({type(error).__name__}: {_first_line(error)})"
        ) from error

    def act(obs: np.ndarray) -> np.ndarray:
        q, action = run(np.ascontiguousarray(obs, dtype=metadata.obs_dtype))
        if not np.isfinite(q).all():
            raise CommandError(f"{path}: the policy's Q-values are not finite on an observation")
        return action

    return act, metadata


def _refusals_as_errors(act: ActFn) -> ActFn:
    """The runtime's ValueError (a refused observation, non-finite Q-values) as one line."""

    def checked(obs: np.ndarray) -> np.ndarray:
        try:
            return act(obs)
        except ValueError as error:
            raise CommandError(f"the policy refused an observation: {error}") from error

    return checked


def collect_observations(
    env: gym.Env[Any, Any],
    act: ActFn,
    *,
    episodes: int,
    seed: int,
    epsilon: float = 0.2,
    max_steps: int = 2000,
    on_episode: Callable[[], object] | None = None,
) -> np.ndarray:
    """Observations from ``episodes`` epsilon-greedy episodes (all of them, ``max_steps`` at most).

    Args:
      env: the environment (reset with ``seed`` once, then without).
      act: greedy actions for a batch.
      episodes: how many episodes.
      seed: seeds the reset, the action space and the epsilon draws.
      epsilon: the probability of a random action, so states off the greedy path are seen too.
      max_steps: a cap on the observations kept.
      on_episode: called as each episode ends (a progress bar).

    Returns:
      ``[N, *obs_shape]`` observations as the environment returned them.
    """
    import numpy as np

    from dqnkit.adapters.envs import env_errors, env_name, finite_observation

    rng = np.random.default_rng(seed)
    env.action_space.seed(seed)
    seen: list[np.ndarray] = []
    env_id = env_name(env)
    for episode in range(episodes):
        with env_errors(env_id, "reset"):
            obs, _ = env.reset(seed=seed) if episode == 0 else env.reset()
        obs = finite_observation(obs, env_id)
        done = False
        while not done and len(seen) < max_steps:
            seen.append(np.asarray(obs))
            if rng.random() < epsilon:
                action = int(env.action_space.sample())
            else:
                action = int(act(np.asarray(obs)[None])[0])
            with env_errors(env_id, "step"):
                obs, _, terminated, truncated, _ = env.step(action)
            obs = finite_observation(obs, env_id)
            done = bool(terminated or truncated)
        if on_episode is not None:
            on_episode()
        if len(seen) >= max_steps:
            break
    return np.stack(seen)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
