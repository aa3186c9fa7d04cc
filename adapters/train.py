"""The training loop: the tutorial's DQN, every piece of maths a call into dqnkit.core.

Read :func:`train` top to bottom: act epsilon-greedily, step, store, sample, target, loss,
optimise, update the target network. Everything else (checkpoints, logs, evaluation) happens
at step boundaries where the loop's state is consistent, so a run can stop and resume there.
"""

import contextlib
import json
import math
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode, SyncVectorEnv
from torch import nn
from tqdm import tqdm

from dqnkit.adapters import rundir
from dqnkit.adapters.checkpoint import (
    Checkpoint,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from dqnkit.adapters.config import TrainConfig
from dqnkit.adapters.envs import action_meanings, env_factory
from dqnkit.adapters.errors import CommandError
from dqnkit.adapters.evaluation import EvalResult, evaluate_policy
from dqnkit.adapters.experience import Experience, example_row
from dqnkit.adapters.metrics import MetricsLog
from dqnkit.adapters.vector import step_rows
from dqnkit.core import (
    ConvQNetwork,
    QNetwork,
    Transition,
    epsilon_greedy,
    exponential_epsilon,
    huber_loss,
    linear_epsilon,
    soft_update,
    td_target,
)
from dqnkit.export.weights import PolicySpec, bounds_to_json, network_config, save_weights

__all__ = ["Progress", "TrainResult", "train"]

# Seeds of the evaluation environments are offset from the training seed so that evaluation
# never replays the training episodes' initial states.
EVAL_SEED_OFFSET = 1_000_000


@dataclass(frozen=True)
class TrainResult:
    """What a finished (or interrupted) run produced."""

    run_dir: Path
    steps: int
    evaluation: EvalResult | None
    wall_seconds: float
    interrupted: bool = False


@dataclass(frozen=True)
class Progress:
    """What ``on_checkpoint`` is told right after each checkpoint is written."""

    run_dir: Path
    step: int  # environment steps so far
    checkpoint: Path  # the checkpoint file just written
    episodes: int
    recent_return: float | None  # mean return of the last 100 training episodes
    eval_return: float | None  # mean of the latest periodic greedy evaluation
    wall_seconds: float
    final: bool  # True for the checkpoint written when the loop ends


def train(
    config: TrainConfig,
    *,
    resume: str | Path | None = None,
    quiet: bool = False,
    on_checkpoint: Callable[[Progress], None] | None = None,
) -> TrainResult:
    """Trains a DQN as ``config`` says, or continues the run in ``resume`` exactly.

    Returns:
      The run directory (config.json, metrics.csv, returns.png, policy.safetensors,
      checkpoints/) and the final greedy evaluation.
    """
    run_dir: Path | None = None
    if resume is not None:
        run_dir = Path(resume)
        config_file = run_dir / rundir.CONFIG_FILE
        if not config_file.is_file():
            raise CommandError(f"{run_dir}: not a run directory (no {rundir.CONFIG_FILE})")
        config = TrainConfig.from_json_file(config_file).validate()
        checkpoint = latest_checkpoint(run_dir / rundir.CHECKPOINT_DIR)
        if checkpoint is None:
            raise CommandError(f"{run_dir}: no checkpoint to resume from")
    else:
        config.validate()
        checkpoint = None
    device = torch.device(config.device)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        return _train(config, checkpoint, run_dir, device, quiet, on_checkpoint)
    finally:
        torch.set_num_threads(previous_threads)


def _train(
    config: TrainConfig,
    checkpoint: Path | None,
    run_dir: Path | None,
    device: torch.device,
    quiet: bool,
    on_checkpoint: Callable[[Progress], None] | None = None,
) -> TrainResult:
    # --- environment ---------------------------------------------------------------------
    preprocessing = config.preprocessing()
    envs = _make_vector_env(config, preprocessing)
    meanings = action_meanings(envs.envs[0])
    obs_space = envs.single_observation_space
    assert isinstance(obs_space, gym.spaces.Box)
    n_actions = int(envs.single_action_space.n)  # type: ignore[attr-defined]

    # --- networks, optimizer, replay, randomness -----------------------------------------
    with torch.random.fork_rng(devices=[]):  # initial weights from the seed, not global state
        torch.manual_seed(config.seed)
        online = _build_network(obs_space.shape, n_actions, config).to(device)
    target = _build_network(obs_space.shape, n_actions, config).to(device)
    soft_update(target, online, tau=1.0)
    # The target is never trained: batch norm (ConvQNetwork) uses the running statistics that
    # soft_update copies from the online network, and acting uses them too.
    target.eval()
    act_in_eval_mode = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in online.modules())
    optimizer = torch.optim.Adam(online.parameters(), lr=config.learning_rate, fused=True)
    generators = {
        "act": torch.Generator().manual_seed(config.seed),
        "sample": torch.Generator().manual_seed(config.seed + 1),
    }
    example = example_row(obs_space.shape, _torch_dtype(obs_space.dtype))
    memory = Experience.create(config.buffer_size, example, config.num_envs, device)
    loop = _fresh_loop(config.num_envs)

    if checkpoint is not None:
        assert run_dir is not None
        restored = load_checkpoint(
            checkpoint,
            online=online,
            target=target,
            optimizer=optimizer,
            example=example,
            generators=generators,
            device=device,
        )
        memory, loop = Experience(restored.replay), restored.loop
        obs = _restore_envs(envs, config.seed, loop["envs"])
    else:
        run_dir = _new_run_dir(config)
        obs, _ = envs.reset(seed=config.seed)
        envs.action_space.seed(config.seed)
        memory.start(np.arange(config.num_envs), obs)
    (run_dir / rundir.CHECKPOINT_DIR).mkdir(parents=True, exist_ok=True)

    metrics = MetricsLog(run_dir, loop["metrics"], resume_step=loop["step"])
    start_time, start_step = time.perf_counter(), loop["step"]
    last_loss: float | str = loop["last_loss"]
    synced_at: int | None = None  # loop["updates"] at the last hard target copy
    bar = tqdm(
        total=config.total_steps,
        initial=loop["step"],
        disable=quiet,
        unit="step",
        dynamic_ncols=True,
        desc=config.env_id,
    )

    def evaluate(episodes: int) -> EvalResult:
        return evaluate_policy(
            online,
            config.env_id,
            episodes=episodes,
            seed=config.seed + EVAL_SEED_OFFSET,
            preprocessing=preprocessing,
        )

    def write_checkpoint(final: bool = False) -> None:
        memory.flush()
        loop["last_loss"] = last_loss
        path = save_checkpoint(
            run_dir / rundir.CHECKPOINT_DIR,
            loop["step"],
            online=online,
            target=target,
            optimizer=optimizer,
            state=Checkpoint(memory.state, generators, loop),
        )
        metrics.write_csv(run_dir / rundir.METRICS_FILE)
        if on_checkpoint is not None:
            recent = [r["episode_return"] for r in metrics.rows[-100:]]
            evals = loop["evaluations"]
            on_checkpoint(
                Progress(
                    run_dir,
                    loop["step"],
                    path,
                    loop["episodes"],
                    sum(recent) / len(recent) if recent else None,
                    evals[-1][1] if evals else None,
                    time.perf_counter() - start_time,
                    final,
                )
            )

    with _stop_on_sigint() as interrupted:
        while loop["step"] < config.total_steps and not loop["stopped"] and not interrupted():
            step_before = loop["step"]
            epsilon = _epsilon(config, step_before)

            # Act epsilon-greedily.
            with torch.inference_mode():
                q = _act_q(online, torch.as_tensor(obs, device=device), act_in_eval_mode)
            actions = epsilon_greedy(q, epsilon, generators["act"]).cpu().numpy()

            # Step every environment; keep only real transitions (see adapters/vector.py).
            next_obs, reward, terminated, truncated, infos = envs.step(actions)
            rows = step_rows(
                mode=AutoresetMode.DISABLED,
                next_obs=next_obs,
                terminated=terminated,
                truncated=truncated,
                infos=infos,
                previous_done=np.zeros_like(terminated),
            )
            assert rows.valid.all()  # DISABLED autoreset never returns a fake transition
            memory.step(obs, actions, reward, rows.next_obs, terminated)
            loop["step"] += config.num_envs
            sps = (loop["step"] - start_step) / max(time.perf_counter() - start_time, 1e-9)
            for i, env_state in enumerate(loop["envs"]):
                env_state["actions"].append(int(actions[i]))
                env_state["return"] += float(reward[i])
            obs = next_obs
            if rows.done.any():
                for done_index in np.flatnonzero(rows.done):
                    env_state = loop["envs"][done_index]
                    loop["episodes"] += 1
                    metrics.episode(
                        {
                            "step": loop["step"],
                            "episode": loop["episodes"],
                            "episode_return": env_state["return"],
                            "episode_length": len(env_state["actions"]),
                            "epsilon": round(epsilon, 6),
                            "td_loss": last_loss,
                            "sps": round(sps, 1),
                        }
                    )
                obs = _reset_done(envs, rows.done, loop["envs"], obs)
                memory.start(np.flatnonzero(rows.done), obs[rows.done])

            # Update the target network every target_update_every steps. A hard copy (tau = 1)
            # of an online network that has not changed since the last copy is skipped: the
            # result is the same, and the zoo's CartPole settings ask for one every 10 steps.
            for _ in range(_crossings(step_before, loop["step"], config.target_update_every)):
                if config.tau < 1.0 or synced_at != loop["updates"]:
                    soft_update(target, online, config.tau)
                    synced_at = loop["updates"]

            # Train every train_every steps once learning has started.
            phases = _crossings(step_before, loop["step"], config.train_every)
            if phases and loop["step"] >= config.learning_starts:
                memory.flush()
                for _ in range(phases * config.gradient_steps):
                    batch = memory.sample(config.batch_size, generators["sample"])
                    loss = _optimize(config, online, target, optimizer, batch)
                last_loss = round(float(loss), 6)
                loop["updates"] += phases * config.gradient_steps

            # Evaluate greedily; stop once solved when a stop_return is set.
            if (
                config.eval_every
                and _crossings(step_before, loop["step"], config.eval_every)
                and _passes_gate(config.eval_gate, metrics.rows)
            ):
                result = evaluate(config.eval_episodes)
                loop["evaluations"].append([loop["step"], result.mean_return, result.std_return])
                metrics.scalar("eval/mean_return", result.mean_return, loop["step"])
                if config.stop_return is not None and result.mean_return >= config.stop_return:
                    loop["stopped"] = True

            if config.checkpoint_every and _crossings(
                step_before, loop["step"], config.checkpoint_every
            ):
                write_checkpoint()

            bar.update(loop["step"] - step_before)
            if not quiet and loop["episodes"] and _crossings(step_before, loop["step"], 1000):
                recent = [r["episode_return"] for r in metrics.rows[-100:]]
                bar.set_postfix(
                    sps=f"{sps:.0f}",
                    ret100=f"{sum(recent) / len(recent):.1f}",
                    eps=f"{epsilon:.3f}",
                    refresh=False,
                )
        was_interrupted = interrupted()
    bar.close()
    envs.close()

    write_checkpoint(final=True)
    pixels = ", from pixels" if config.pixels else ""
    metrics.write_plot(run_dir / rundir.PLOT_FILE, f"{config.env_id} (seed {config.seed}{pixels})")
    metrics.close()
    wall = time.perf_counter() - start_time
    if was_interrupted:
        return TrainResult(run_dir, loop["step"], None, wall, interrupted=True)

    evaluation = evaluate(config.final_eval_episodes)
    _save_policy(
        run_dir, online, config, obs_space, loop["step"], evaluation, preprocessing, meanings
    )
    report = {**evaluation.to_dict(), "periodic": loop["evaluations"]}
    (run_dir / "evaluation.json").write_text(json.dumps(report, indent=2) + "\n")
    return TrainResult(run_dir, loop["step"], evaluation, time.perf_counter() - start_time)


def _act_q(network: nn.Module, obs: torch.Tensor, eval_mode: bool) -> torch.Tensor:
    """Q-values for acting; in eval mode when batch norm would otherwise use one frame's stats."""
    if not eval_mode:
        return network(obs)  # type: ignore[no-any-return]
    network.eval()
    try:
        return network(obs)  # type: ignore[no-any-return]
    finally:
        network.train()


def _optimize(
    config: TrainConfig,
    online: torch.nn.Module,
    target: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    batch: Transition,
) -> torch.Tensor:
    """One gradient step on the Huber loss of the TD error; returns the loss."""
    q = online(batch.obs).gather(1, batch.action[:, None]).squeeze(1)
    with torch.no_grad():  # targets are constants: no gradient into either network here
        next_q = target(batch.next_obs)
        next_q_online = online(batch.next_obs) if config.double_dqn else None
        y = td_target(batch.reward, batch.terminated, next_q, config.gamma, next_q_online)
    loss = huber_loss(q - y, config.huber_delta).mean()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()  # type: ignore[no-untyped-call]
    if config.max_grad_norm:
        torch.nn.utils.clip_grad_norm_(online.parameters(), config.max_grad_norm)
    optimizer.step()
    return loss.detach()


def _epsilon(config: TrainConfig, step: int) -> float:
    schedule = linear_epsilon if config.epsilon_schedule == "linear" else exponential_epsilon
    return schedule(step, config.epsilon_start, config.epsilon_end, config.epsilon_steps)


def _passes_gate(gate: float | None, rows: list[dict[str, Any]]) -> bool:
    """True when no gate is set or the last 10 training episodes average at least ``gate``."""
    if gate is None:
        return True
    recent = [row["episode_return"] for row in rows[-10:]]
    return len(recent) == 10 and sum(recent) / 10 >= gate


def _crossings(before: int, after: int, every: int) -> int:
    """How many multiples of ``every`` lie in ``(before, after]``."""
    return after // every - before // every


def _build_network(obs_shape: tuple[int, ...], n_actions: int, config: TrainConfig) -> nn.Module:
    """The tutorial's CNN for frames ``[C, H, W]``, its MLP for everything else."""
    if len(obs_shape) == 3:
        return ConvQNetwork(obs_shape, n_actions)
    return QNetwork(math.prod(obs_shape), n_actions, config.hidden)


def _make_vector_env(config: TrainConfig, preprocessing: dict[str, Any] | None) -> SyncVectorEnv:
    make = env_factory(config.env_id, preprocessing)
    envs = SyncVectorEnv([make] * config.num_envs, autoreset_mode=AutoresetMode.DISABLED)
    # The loop resets finished sub-environments itself (so it can snapshot them for exact
    # resume) and relies on no autoreset happening behind its back.
    if envs.metadata["autoreset_mode"] != AutoresetMode.DISABLED:
        raise RuntimeError(f"expected autoreset DISABLED, got {envs.metadata['autoreset_mode']}")
    return envs


def _torch_dtype(dtype: Any) -> torch.dtype:
    return torch.from_numpy(np.zeros(0, dtype=dtype)).dtype


# --- environment snapshots for exact resume ------------------------------------------------
#
# A sub-environment's state is rebuilt on resume by replaying its current episode: the state of
# its random generator just before that episode's reset, then the episode's actions. For the
# first episode the generator state is the seed itself (None below).


def _fresh_loop(num_envs: int) -> dict[str, Any]:
    return {
        "step": 0,
        "episodes": 0,
        "updates": 0,
        "stopped": False,
        "last_loss": "",
        "metrics": [],
        "evaluations": [],
        "envs": [{"rng": None, "actions": [], "return": 0.0} for _ in range(num_envs)],
    }


def _reset_done(
    envs: SyncVectorEnv,
    done: np.ndarray[Any, Any],
    env_states: list[dict[str, Any]],
    obs: np.ndarray[Any, Any],
) -> np.ndarray[Any, Any]:
    for i in np.flatnonzero(done):
        env_states[i].update(
            {
                "rng": envs.envs[i].unwrapped.np_random.bit_generator.state,
                "actions": [],
                "return": 0.0,
            }
        )
    reset_obs, _ = envs.reset(options={"reset_mask": done.astype(np.bool_)})
    obs = obs.copy()
    obs[done] = reset_obs[done]
    return obs


def _restore_envs(
    envs: SyncVectorEnv, seed: int, env_states: list[dict[str, Any]]
) -> np.ndarray[Any, Any]:
    obs, _ = envs.reset(seed=seed)
    envs.action_space.seed(seed)
    obs = obs.copy()
    for i, state in enumerate(env_states):
        env = envs.envs[i]
        if state["rng"] is not None:
            env.unwrapped.np_random.bit_generator.state = state["rng"]
            obs[i], _ = env.reset()
        for action in state["actions"]:
            obs[i], *_ = env.step(action)
    return np.asarray(obs)


@contextlib.contextmanager
def _stop_on_sigint() -> Iterator[Any]:
    """Turns Ctrl-C into a flag the loop checks between steps (main thread only)."""
    flag = {"set": False}

    def handler(signum: int, frame: FrameType | None) -> None:
        flag["set"] = True

    try:
        previous = signal.signal(signal.SIGINT, handler)
    except ValueError:  # not the main thread: leave Ctrl-C alone
        yield lambda: False
        return
    try:
        yield lambda: flag["set"]
    finally:
        signal.signal(signal.SIGINT, previous)


def _new_run_dir(config: TrainConfig) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    base = Path(config.out) / f"{config.env_id}-{config.seed}-{stamp}"
    run_dir, n = base, 1
    while run_dir.exists():
        n += 1
        run_dir = base.with_name(f"{base.name}-{n}")
    run_dir.mkdir(parents=True)
    (run_dir / rundir.CONFIG_FILE).write_text(config.to_json() + "\n")
    return run_dir


def _save_policy(
    run_dir: Path,
    network: torch.nn.Module,
    config: TrainConfig,
    space: gym.spaces.Box,
    steps: int,
    evaluation: EvalResult,
    preprocessing: dict[str, Any] | None,
    meanings: list[str] | None,
) -> None:
    spec = PolicySpec(
        env_id=config.env_id,
        obs_shape=tuple(int(d) for d in space.shape),
        obs_dtype=str(np.dtype(space.dtype)),
        n_actions=int(network.n_actions),  # type: ignore[arg-type]
        network=network_config(network),
        obs_low=bounds_to_json(space.low),
        obs_high=bounds_to_json(space.high),
        action_meanings=meanings,
        train_steps=steps,
        eval_return=evaluation.mean_return,
        preprocessing=preprocessing,
    )
    save_weights(run_dir / rundir.POLICY_FILE, network, spec)
