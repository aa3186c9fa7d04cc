"""The training loop: the tutorial's DQN, composed from small parts.

Read :func:`_train` top to bottom: act epsilon-greedily (:mod:`~dqnkit.adapters.vector`),
store (:mod:`~dqnkit.adapters.experience`), update the target network, learn from a batch
(:mod:`~dqnkit.adapters.learner`), evaluate, checkpoint. The loop's whole state is one
:class:`~dqnkit.adapters.loop_state.LoopState`; checkpoints happen between steps, where that
state is consistent, so a run can stop and resume there bit for bit.
"""

import contextlib
import json
import math
import re
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from dqnkit.adapters import rundir
from dqnkit.adapters.checkpoint import (
    CheckpointVersionError,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
)
from dqnkit.adapters.cli_args import EVAL_SEED
from dqnkit.adapters.config import TrainConfig
from dqnkit.adapters.envs import action_meanings, env_factory
from dqnkit.adapters.errors import CommandError
from dqnkit.adapters.evaluation import EvalResult, evaluate_policy
from dqnkit.adapters.experience import create_memory, example_row, stored_stack
from dqnkit.adapters.learner import Learner, TrainingDiverged
from dqnkit.adapters.loop_state import EpisodeRow, Evaluation, LoopState
from dqnkit.adapters.metrics import MetricsLog
from dqnkit.adapters.vector import Exploration, Step, VectorActor
from dqnkit.core import exponential_epsilon, linear_epsilon
from dqnkit.export.files import (
    atomic_write,
    read_safetensors,
    remove_stale_temporaries,
    write_safetensors,
)
from dqnkit.export.weights import PolicySpec, bounds_to_json, network_config, save_weights

__all__ = ["EVAL_SEED_OFFSET", "Progress", "TrainResult", "train"]

# Seeds of the evaluation environments are offset from the training seed so that evaluation
# never replays the training episodes' initial states.
EVAL_SEED_OFFSET = EVAL_SEED  # seed 0's evaluations are `dqnkit evaluate`'s default episodes


@dataclass(frozen=True)
class TrainResult:
    """What a finished (or interrupted) run produced.

    Attributes:
      run_dir: the run directory.
      steps: environment steps trained.
      evaluation: the final greedy evaluation (None when interrupted).
      wall_seconds: seconds this process spent on the run.
      interrupted: stopped by Ctrl-C or SIGTERM (a checkpoint was written).
      solved_at: the step at which a periodic evaluation reached ``stop_return``, or None.
      solved_return: that evaluation's mean return, or None.
      solved_seconds: seconds into this process's part of the run when that evaluation ended
        (the clock of ``wall_seconds``), or None.
      started_at: the step this process began from (0, or the resumed checkpoint's step).
    """

    run_dir: Path
    steps: int
    evaluation: EvalResult | None
    wall_seconds: float
    interrupted: bool = False
    solved_at: int | None = None
    solved_return: float | None = None
    solved_seconds: float | None = None
    started_at: int = 0


@dataclass(frozen=True)
class Progress:
    """What ``train``'s ``on_checkpoint`` hook is told right after each checkpoint is written.

    Attributes:
      run_dir: the run directory.
      step: environment steps so far (over all environments).
      checkpoint: the checkpoint file just written.
      episodes: training episodes finished so far.
      recent_return: mean return of the last 100 training episodes (None before the first).
      eval_return: mean return of the latest periodic greedy evaluation (None before one).
      wall_seconds: seconds since this process started (or resumed) the run.
      final: True for the checkpoint written when the loop ends (done, stopped or interrupted).
    """

    run_dir: Path
    step: int
    checkpoint: Path
    episodes: int
    recent_return: float | None
    eval_return: float | None
    wall_seconds: float
    final: bool


def train(
    config: TrainConfig,
    *,
    resume: str | Path | None = None,
    quiet: bool = False,
    on_checkpoint: Callable[[Progress], None] | None = None,
) -> TrainResult:
    """Trains a DQN as ``config`` says, or continues the run in ``resume`` exactly.

    Args:
      config: the run's settings; with ``resume``, only its ``env_id`` is read (and must be
        empty or the run's).
      resume: a run directory (continue from its newest checkpoint) or one checkpoint file in
        its ``checkpoints/`` folder.
      quiet: no progress bar and no messages.
      on_checkpoint: called with a :class:`Progress` right after each checkpoint is written,
        periodic and final (a sweep's reporter, say).

    Returns:
      The run directory (config.json, metrics.csv, returns.png, policy.safetensors,
      checkpoints/) and the final greedy evaluation.

    Raises:
      CommandError: bad settings, a damaged run directory, a run locked by another process,
        an environment that fails, or training that diverged (the last good checkpoint stays).
    """
    with _stop_on_signals() as stop:  # Ctrl-C and SIGTERM end the loop at a step boundary
        run = _open_run(config, resume)
        with run, _torch_threads(run.config.threads):
            return _train(run, stop, quiet, on_checkpoint)


def _train(
    run: "_Run",
    stop: "_StopFlag",
    quiet: bool,
    on_checkpoint: Callable[[Progress], None] | None,
) -> TrainResult:
    config = run.config
    try:
        parts = _Parts(run, on_checkpoint)  # envs, networks, replay, generators, loop state
    except CommandError:
        if run.checkpoint is None:  # a fresh run that never began leaves no empty directory
            run.discard()
        raise
    state = parts.state
    _say(quiet, f"run directory: {run.run_dir}\nconfig: {run.run_dir / rundir.CONFIG_FILE}")
    # No bar in a redirected log: its redraws would be noise there (the messages still print).
    bar = tqdm(total=config.total_steps, initial=state.step, unit="step", dynamic_ncols=True,
               disable=quiet or not sys.stderr.isatty(), desc=config.env_id)  # fmt: skip
    try:
        while state.step < config.total_steps and state.solved_at is None and not stop():
            before = state.step
            epsilon = _epsilon(config, before)
            step = parts.act(epsilon)  # epsilon-greedy in every environment
            parts.store(step, epsilon)  # real transitions into replay, finished episodes
            parts.update_target(before)
            parts.learn(before)
            evaluation_due = _due(before, state.step, config.eval_every)
            if evaluation_due and parts.evaluate_periodically():
                parts.solved_seconds = parts.clock.seconds()
                mean = state.evaluations[-1].mean_return
                _say(quiet, f"solved at step {state.step} (greedy mean {mean:.2f})", bar)
            if _due(before, state.step, config.checkpoint_every):
                parts.checkpoint(final=False)  # writes the logs too
            elif evaluation_due:  # metrics.csv and TensorBoard follow between checkpoints
                parts.log.write(state)
            if not quiet and _due(before, state.step, 1000):
                _show_progress(bar, state, parts.clock, epsilon)
        interrupted = stop()
    finally:
        bar.close()
        parts.actor.close()
    parts.checkpoint(final=True)
    parts.write_plot()
    if interrupted:
        return parts.result(None)
    best = parts.use_best()  # --keep-best: the best evaluation's weights, or None (the last)
    if best is not None:
        _say(quiet, f"policy: the weights of step {best.step} (greedy mean {best.mean_return:.2f})")
    try:
        with stop.raising():  # from here Ctrl-C abandons the final evaluation at once
            evaluation = parts.evaluate(config.final_eval_episodes)
    except KeyboardInterrupt:
        return parts.result(None)
    parts.save_policy(evaluation, parts.state.step if best is None else best.step)
    return parts.result(evaluation)


class _Parts:
    """The parts ``_train`` composes, built fresh or restored from ``run.checkpoint``."""

    def __init__(self, run: "_Run", on_checkpoint: Callable[[Progress], None] | None) -> None:
        config = self.config = run.config
        self.run_dir, self.on_checkpoint = run.run_dir, on_checkpoint
        self.device = device = torch.device(config.device)
        self.preprocessing = config.preprocessing()
        self.allow_import = run.allow_import
        make = env_factory(config.env_id, self.preprocessing, allow_import=run.allow_import)
        self.actor = actor = VectorActor(make, config.num_envs, config.env_id)
        obs_shape, n = tuple(actor.observation_space.shape), config.num_envs
        self.learner = Learner(config, obs_shape, actor.n_actions, device)
        self.exploration = Exploration(config.seed, n, actor.n_actions)
        self.generators = {"sample": torch.Generator().manual_seed(config.seed + 1)}
        example = example_row(obs_shape, _torch_dtype(actor.observation_space.dtype))
        if run.checkpoint is None:
            self.memory = create_memory(
                config.buffer_size, example, n, device, priorities=_priorities(config),
                stack=_frame_stack(config, obs_shape), n_step=_n_step(config),
                clip_rewards=config.clip_rewards,
            )  # fmt: skip
            self.state = LoopState.fresh(n)
            self.memory.start(np.arange(n), actor.start(config.seed, self.state.envs))
        else:
            restored = _restore(run, self.learner, example, self.generators, device)
            self.memory, self.state = restored.memory, restored.loop
            if stored_stack(self.memory) != _frame_stack(config, obs_shape):
                raise CommandError(f"cannot resume from {run.checkpoint}: its replay's frame "
                                   "stacking does not match the run's observations")  # fmt: skip
            actor.start(config.seed, self.state.envs)
        self.log = MetricsLog(run.run_dir, resume_step=self.state.step)
        if run.checkpoint is not None:
            self.log.write(self.state)  # TensorBoard: the checkpoint's rows, once
        self.life_loss = config.terminal_on_life_loss
        self.clock = _Clock(self.state.step)
        self.solved_seconds: float | None = None
        self.last_good = run.checkpoint

    def act(self, epsilon: float) -> Step:
        """One epsilon-greedy action per environment, and the step it makes."""
        actor, learner, device = self.actor, self.learner, self.device
        actions = self.exploration.actions(
            self.state.step // actor.num_envs,
            epsilon,
            lambda: learner.q_values(_on(device, torch.as_tensor(actor.obs))),
        )
        return actor.step(actions, self.state.envs)

    def store(self, step: Step, epsilon: float) -> None:
        """The step's transitions into replay; a metrics row for each episode that ended."""
        state = self.state
        # A lost life ends the bootstrap in replay only (the game, and its episode, go on).
        terminal = step.terminated | step.lost_life if self.life_loss else step.terminated
        self.memory.add(step.obs, step.action, step.reward, step.next_obs, terminal)
        state.step += self.actor.num_envs
        if step.ended:
            restarted = np.array([end.env for end in step.ended])
            self.memory.start(restarted, self.actor.obs[restarted])
            sps = round(self.clock.sps(state.step), 1)
            for end in step.ended:
                state.episodes += 1
                state.metrics.append(
                    EpisodeRow(state.step, state.episodes, end.episode_return, end.length,
                               round(epsilon, 6), state.last_loss, sps)
                )  # fmt: skip

    def update_target(self, before: int) -> None:
        """Every target_update_every steps. A hard copy of an online network unchanged since
        the last copy is skipped: the result would be the same."""
        config, state = self.config, self.state
        for _ in range(_crossings(before, state.step, config.target_update_every)):
            if config.tau < 1.0 or state.synced_at != state.updates:
                self.learner.sync_target()
                state.synced_at = state.updates

    def learn(self, before: int) -> None:
        """gradient_steps updates every train_every steps, once learning has started."""
        config, state = self.config, self.state
        phases = _crossings(before, state.step, config.train_every)
        if not phases or state.step < config.learning_starts:
            return
        progress = state.step / config.total_steps
        late = config.late_learning_rate  # the rate of the updates after late_after steps
        self.learner.optimizer.lr = (
            late if late is not None and before >= config.late_after else config.learning_rate
        )
        for _ in range(phases * config.gradient_steps):
            sample = self.memory.sample(config.batch_size, self.generators["sample"], progress)
            update = self.learner.update(sample)
            try:
                self.memory.update_priorities(sample.indices, update.td_error)
            except ValueError:  # a non-finite TD error: reported as the loss below
                break
        loss = float(update.loss)
        if not math.isfinite(loss):
            raise _diverged(state.step, f"the TD loss is {loss}", self.last_good)
        state.last_loss = round(loss, 6)
        state.updates += phases * config.gradient_steps

    def evaluate(self, episodes: int) -> EvalResult:
        return evaluate_policy(
            self.learner.online,
            self.config.env_id,
            episodes=episodes,
            seed=self.config.seed + EVAL_SEED_OFFSET,
            preprocessing=self.preprocessing,
            allow_import=self.allow_import,
        )

    def evaluate_periodically(self) -> bool:
        """The gated greedy evaluation; True when it solved the task (the loop then stops).
        With ``keep_best``, an evaluation above every earlier one writes the weights it saw."""
        evaluations = self.state.evaluations
        before = _best(evaluations)
        solved = _periodic_evaluation(self.config, self.state, self.evaluate)
        if self.config.keep_best and _best(evaluations) is not before:
            self._write_best(evaluations[-1])
        return solved

    def _write_best(self, evaluation: Evaluation) -> None:
        # Written before the step's checkpoint. A run killed in between rewrites the same
        # file when its resume redoes the evaluation (resumes are exact), so the file always
        # holds the weights of the best evaluation of the run's latest checkpoint or later.
        path = self.run_dir / rundir.BEST_FILE
        try:
            document = {"step": evaluation.step, "mean_return": evaluation.mean_return}
            write_safetensors(path, self.learner.online.state_dict(), _BEST_KEY, document)
        except OSError as error:
            raise CommandError(f"cannot write {path}: {error.strerror}") from error

    def use_best(self) -> Evaluation | None:
        """With ``keep_best``: the online network takes the weights of the best periodic
        evaluation, which is returned; None (the last weights stay) without it or without any
        evaluation (the gate never opened).

        Raises:
          CommandError: the run directory's best.safetensors is missing or is another step's.
        """
        best = _best(self.state.evaluations)
        if not self.config.keep_best or best is None:
            return None
        path = self.run_dir / rundir.BEST_FILE
        try:
            tensors, document = read_safetensors(path, _BEST_KEY)
        except ValueError as error:
            raise CommandError(f"--keep-best: {error}") from error
        step = document.get("step") if isinstance(document, dict) else None
        if step != best.step:
            raise CommandError(
                f"--keep-best: {path} holds the weights of step {step!r}, not of step "
                f"{best.step} (the best evaluation)"
            )
        try:
            self.learner.online.load_state_dict(tensors)
        except RuntimeError as error:  # another network's tensors
            raise CommandError(f"--keep-best: {path} does not fit this run's network") from error
        return best

    def checkpoint(self, final: bool) -> None:
        """Writes a checkpoint (refusing non-finite weights), the logs, and tells the hook."""
        state = self.state
        if not self.learner.weights_finite():
            raise _diverged(state.step, "the weights are no longer finite", self.last_good)
        self.last_good = path = save_checkpoint(
            self.run_dir / rundir.CHECKPOINT_DIR,
            online=self.learner.online,
            target=self.learner.target,
            optimizer=self.learner.optimizer,
            memory=self.memory,
            generators=self.generators,
            loop=state,
        )
        self.log.write(state)
        if self.on_checkpoint is not None:
            latest = state.evaluations[-1].mean_return if state.evaluations else None
            self.on_checkpoint(
                Progress(self.run_dir, state.step, path, state.episodes, state.recent_return(),
                         latest, self.clock.seconds(), final)
            )  # fmt: skip

    def write_plot(self) -> None:
        pixels = ", from pixels" if self.config.pixels else ""
        title = f"{self.config.env_id} (seed {self.config.seed}{pixels})"
        self.log.write_plot(self.run_dir / rundir.PLOT_FILE, title, self.state)
        self.log.close()

    def save_policy(self, evaluation: EvalResult, weights_step: int) -> None:
        """policy.safetensors with its contract, and evaluation.json; ``weights_step`` is the
        step whose weights the online network holds (earlier than the last with keep_best)."""
        config, state, space = self.config, self.state, self.actor.observation_space
        network = self.learner.online
        spec = PolicySpec(
            env_id=config.env_id,
            obs_shape=tuple(int(d) for d in space.shape),
            obs_dtype=str(np.dtype(space.dtype)),
            n_actions=self.actor.n_actions,
            # {"kind": "mlp", "hidden": [...]} or {"kind": "conv"}, plus "dueling": true for a
            # dueling network (export/weights.py rebuilds from these keys).
            network={**network_config(network), **({"dueling": True} if config.dueling else {})},
            obs_low=bounds_to_json(space.low),
            obs_high=bounds_to_json(space.high),
            action_meanings=action_meanings(self.actor.envs[0]),
            train_steps=weights_step,
            eval_return=evaluation.mean_return,
            preprocessing=self.preprocessing,
        )
        report = {
            **evaluation.to_dict(),
            "periodic": [[e.step, e.mean_return, e.std_return] for e in state.evaluations],
            "solved_at": state.solved_at,
            "weights_step": weights_step,
        }
        text = json.dumps(report, indent=2) + "\n"
        try:
            save_weights(self.run_dir / rundir.POLICY_FILE, network, spec)
            atomic_write(self.run_dir / "evaluation.json", lambda tmp: tmp.write_text(text))
        except OSError as error:
            raise CommandError(f"cannot write to {self.run_dir}: {error.strerror}") from error

    def result(self, evaluation: EvalResult | None) -> TrainResult:
        state = self.state
        solved = state.evaluations[-1].mean_return if state.solved_at is not None else None
        return TrainResult(self.run_dir, state.step, evaluation, self.clock.seconds(),
                           evaluation is None, state.solved_at, solved,
                           self.solved_seconds, self.clock.start_step)  # fmt: skip


# --- the loop's small helpers ---------------------------------------------------------------


def _epsilon(config: TrainConfig, step: int) -> float:
    schedule = linear_epsilon if config.epsilon_schedule == "linear" else exponential_epsilon
    return schedule(step, config.epsilon_start, config.epsilon_end, config.epsilon_steps)


def _crossings(before: int, after: int, every: int) -> int:
    """How many multiples of ``every`` lie in ``(before, after]``."""
    return after // every - before // every


def _frame_stack(config: TrainConfig, obs_shape: tuple[int, ...]) -> int:
    """Atari's stacks ``[k, 84, 84]`` are stored one new frame per slot (issue 12); else 1."""
    return obs_shape[0] if config.atari else 1


def _priorities(config: TrainConfig) -> dict[str, float] | None:
    """The prioritized memory's options, or None for uniform replay."""
    if not config.prioritized:
        return None
    return {
        "alpha": config.priority_alpha,
        "beta": config.priority_beta,
        "eps": config.priority_eps,
    }


def _n_step(config: TrainConfig) -> tuple[int, float] | None:
    """The n-step memory's ``(n, gamma)``, or None for one-step transitions."""
    return (config.n_step, config.gamma) if config.n_step > 1 else None


_BEST_KEY = "dqnkit.best"  # best.safetensors' metadata: the evaluation's step and mean


def _best(evaluations: list[Evaluation]) -> Evaluation | None:
    """The evaluation with the highest mean return, the earliest of ties; None if none."""
    return max(evaluations, key=lambda e: e.mean_return, default=None)


def _due(before: int, after: int, every: int) -> bool:
    """True when ``every`` is set (non-zero) and a multiple of it lies in ``(before, after]``."""
    return every > 0 and after // every > before // every


def _periodic_evaluation(
    config: TrainConfig, state: LoopState, evaluate: Callable[[int], EvalResult]
) -> bool:
    """Runs the periodic greedy evaluation unless its gate keeps it closed; records it in
    ``state`` and sets ``state.solved_at`` when it reaches ``stop_return``. True if solved.

    The gate is a probe of the *greedy* policy: one episode (the evaluation's first, same seed)
    must return at least ``eval_gate`` before the ``eval_episodes`` run. Gating on training
    returns instead never opens while epsilon keeps those returns low, and a solved agent goes
    unnoticed until the run's end.
    """
    if config.eval_gate is not None and evaluate(1).mean_return < config.eval_gate:
        return False
    result = evaluate(config.eval_episodes)
    state.evaluations.append(Evaluation(state.step, result.mean_return, result.std_return))
    if config.stop_return is not None and result.mean_return >= config.stop_return:
        state.solved_at = state.step
        return True
    return False


def _diverged(step: int, what: str, last_good: Path | None) -> TrainingDiverged:
    keep = (
        f"the last good checkpoint is {last_good} (resume: dqnkit train --resume {last_good})"
        if last_good is not None
        else "no checkpoint was written"
    )
    return TrainingDiverged(
        f"training diverged at step {step}: {what}; stopped without saving it, {keep}; try a "
        "lower --learning-rate or --max-grad-norm, or check the environment's rewards"
    )


class _Clock:
    """Wall-clock seconds and steps per second of this process's part of the run."""

    def __init__(self, step: int) -> None:
        self.start, self.start_step = time.perf_counter(), step
        self.logged_at = 0.0  # seconds() when the last plain progress line was printed

    def seconds(self) -> float:
        return time.perf_counter() - self.start

    def sps(self, step: int) -> float:
        return (step - self.start_step) / max(self.seconds(), 1e-9)


# Without a terminal (a log file, a batch job) the bar is off; a plain line at most this often
# says how the run goes instead.
LOG_EVERY_SECONDS = 60.0


def _show_progress(bar: Any, state: LoopState, clock: _Clock, epsilon: float) -> None:
    recent = state.recent_return()
    if bar.disable:
        if clock.seconds() - clock.logged_at >= LOG_EVERY_SECONDS:
            clock.logged_at = clock.seconds()
            print(_progress_line(bar.total, state, clock, epsilon, recent), flush=True)
        return
    bar.update(state.step - bar.n)
    if recent is not None:
        bar.set_postfix(
            sps=f"{clock.sps(state.step):.0f}",
            ret100=f"{recent:.1f}",
            eps=f"{epsilon:.3f}",
            refresh=False,
        )


def _progress_line(
    total: int, state: LoopState, clock: _Clock, epsilon: float, recent: float | None
) -> str:
    """``step 25,000/400,000: 31 episodes, 100-episode mean -20.4, greedy -21.0 at 25,000, ...``"""
    parts = [f"step {state.step:,}/{total:,}: {state.episodes} episodes"]
    if recent is not None:
        parts[0] += f", 100-episode mean {recent:.1f}"
    if state.evaluations:
        last = state.evaluations[-1]
        parts.append(f"greedy {last.mean_return:.1f} at {last.step:,}")
    parts += [f"epsilon {epsilon:.3f}", f"{clock.sps(state.step):.0f} steps/s"]
    return ", ".join(parts)


def _say(quiet: bool, message: str, bar: Any = None) -> None:
    if not quiet:
        if bar is not None:
            bar.write(message)
        else:
            print(message, flush=True)


def _on(device: torch.device, tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` on ``device``, without a call when it is there already (every acting step)."""
    return tensor if tensor.device == device else tensor.to(device)


def _torch_dtype(dtype: Any) -> torch.dtype:
    return torch.from_numpy(np.zeros(0, dtype=dtype)).dtype


# --- signals --------------------------------------------------------------------------------


class _StopFlag:
    """Set by Ctrl-C or SIGTERM; the loop checks it between steps."""

    def __init__(self) -> None:
        self.set = False
        self.raise_now = False

    def __call__(self) -> bool:
        return self.set

    def handler(self, signum: int, frame: FrameType | None) -> None:
        self.set = True
        if self.raise_now:
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def raising(self) -> Iterator[None]:
        """Within this block a signal raises KeyboardInterrupt (also one already received)."""
        if self.set:
            raise KeyboardInterrupt
        self.raise_now = True
        try:
            yield
        finally:
            self.raise_now = False


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[_StopFlag]:
    """Turns Ctrl-C and SIGTERM into a flag (main thread only: elsewhere they are left alone)."""
    flag = _StopFlag()
    previous: dict[signal.Signals, Any] = {}
    try:
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, flag.handler)
    except ValueError:  # not the main thread
        pass
    try:
        yield flag
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextlib.contextmanager
def _torch_threads(threads: int) -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


# --- the run directory ----------------------------------------------------------------------


class _Run:
    """An open run directory: its config, the checkpoint to resume from, and its lock."""

    def __init__(
        self, config: TrainConfig, run_dir: Path, checkpoint: Path | None, *, allow_import: bool
    ) -> None:
        self.config, self.run_dir, self.checkpoint = config, run_dir, checkpoint
        # An env id naming a module ('pkg:Env-v0') may import it only when the caller typed
        # it: a fresh run's config, or a resume given the id; never config.json's alone.
        self.allow_import = allow_import
        self._lock = rundir.lock(run_dir)

    def __enter__(self) -> "_Run":
        return self

    def __exit__(self, *exc: object) -> None:
        self._lock.close()

    def discard(self) -> None:
        """Removes what :func:`_new_run_dir` created (config.json, an empty checkpoints/ and
        the run directory), leaving anything else in place."""
        for remove in (
            (self.run_dir / rundir.CHECKPOINT_DIR).rmdir,
            (self.run_dir / rundir.CONFIG_FILE).unlink,
            self.run_dir.rmdir,
        ):
            with contextlib.suppress(OSError):
                remove()


def _open_run(config: TrainConfig, resume: str | Path | None) -> _Run:
    """Validates, creates or opens the run directory, locks it and clears stale temporaries."""
    if resume is None:
        config.validate()
        run_dir = _new_run_dir(config)
        return _Run(config, run_dir, None, allow_import=True)
    path = Path(resume)
    chosen = path if path.is_file() and path.parent.name == rundir.CHECKPOINT_DIR else None
    run_dir = path.parent.parent if chosen is not None else path
    run_config = rundir.read_config(run_dir)
    if config.env_id and config.env_id != run_config.env_id:
        raise CommandError(
            f"{run_dir} trains {run_config.env_id}, not {config.env_id}: resume takes the "
            "run's own settings (drop the environment id)"
        )
    run = _Run(run_config, run_dir, None, allow_import=bool(config.env_id))
    for folder in (run_dir, run_dir / rundir.CHECKPOINT_DIR):
        if folder.is_dir():
            remove_stale_temporaries(folder)
    checkpoints = list_checkpoints(run_dir / rundir.CHECKPOINT_DIR)
    run.checkpoint = chosen or (checkpoints[-1] if checkpoints else None)
    if run.checkpoint is None:
        run.__exit__()
        raise CommandError(f"{run_dir}: no checkpoint to resume from")
    return run


def _restore(
    run: _Run,
    learner: Learner,
    example: Any,
    generators: dict[str, torch.Generator],
    device: torch.device,
) -> Any:
    """Loads ``run.checkpoint``; for a damaged one, names the newest earlier one that loads."""

    def load(path: Path) -> Any:
        return load_checkpoint(
            path,
            online=learner.online,
            target=learner.target,
            optimizer=learner.optimizer,
            example=example,
            generators=generators,
            num_envs=run.config.num_envs,
            device=device,
            priorities=_priorities(run.config),
            n_step=_n_step(run.config),
            clip_rewards=run.config.clip_rewards,
        )

    assert run.checkpoint is not None
    try:
        return load(run.checkpoint)
    except CheckpointVersionError as error:
        raise CommandError(f"cannot resume from {run.checkpoint}: {error}") from error
    except ValueError as error:
        reason = " ".join(str(error).split())[:300]
        message = (
            f"cannot resume from {run.checkpoint}: the checkpoint is truncated or corrupted "
            f"({reason})"
        )
        earlier = [p for p in list_checkpoints(run.checkpoint.parent) if p < run.checkpoint]
        for candidate in reversed(earlier):
            try:
                load(candidate)
            except ValueError:
                continue
            raise CommandError(
                f"{message}; the previous checkpoint loads cleanly: resume from it with "
                f"dqnkit train --resume {candidate}"
            ) from error
        raise CommandError(f"{message}; no earlier checkpoint loads either") from error


def _new_run_dir(config: TrainConfig) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    # A namespaced id ("ns/Env-v0") or one naming a module ("pkg:Env-v0") is one folder name.
    name = re.sub(r"[^A-Za-z0-9._-]", "_", config.env_id)
    base = Path(config.out) / f"{name}-{config.seed}-{stamp}"
    run_dir, n = base, 1
    try:
        while run_dir.exists():
            n += 1
            run_dir = base.with_name(f"{base.name}-{n}")
        run_dir.mkdir(parents=True)
        atomic_write(
            run_dir / rundir.CONFIG_FILE, lambda tmp: tmp.write_text(config.to_json() + "\n")
        )
        (run_dir / rundir.CHECKPOINT_DIR).mkdir()
    except OSError as error:
        raise CommandError(
            f"cannot create the run directory {run_dir} (--out {config.out}): "
            f"{error.strerror or error}"
        ) from error
    return run_dir
