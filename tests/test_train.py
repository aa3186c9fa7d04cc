"""Training end to end: files, determinism, kill-and-resume, Ctrl-C, and bad input."""

import csv
import dataclasses
import hashlib
import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from dqnkit.adapters import Progress, TrainConfig, evaluate, train, training
from dqnkit.adapters.cli import main
from dqnkit.adapters.config import config_for
from dqnkit.adapters.envs import make_env
from dqnkit.adapters.errors import CommandError
from dqnkit.adapters.evaluation import EvalResult, run_episodes
from dqnkit.export.files import write_safetensors
from dqnkit.export.weights import load_weights
from tests.runs import rewind_to_first_checkpoint

STEPS = 3_000


def short_config(out: Path, **overrides: Any) -> TrainConfig:
    """CartPole's preset, shortened to a few seconds."""
    values: dict[str, Any] = {
        "total_steps": STEPS,
        "learning_starts": 500,
        "train_every": 64,
        "gradient_steps": 32,
        "epsilon_steps": 1_500,
        "checkpoint_every": 1_000,
        "eval_every": 0,
        "final_eval_episodes": 10,
        "out": str(out),
    }
    values.update(overrides)
    return config_for("CartPole-v1", **values)


def cli_args(out: Path, *extra: str) -> list[str]:
    cfg = short_config(out)
    return [
        "train",
        "CartPole-v1",
        "--quiet",
        "--out",
        str(out),
        "--steps",
        str(cfg.total_steps),
        "--learning-starts",
        "500",
        "--train-every",
        "64",
        "--gradient-steps",
        "32",
        "--epsilon-steps",
        "1500",
        "--checkpoint-every",
        "1000",
        "--eval-every",
        "0",
        "--final-eval-episodes",
        "10",
        *extra,
    ]


def comparable_metrics(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        del row["sps"]  # wall-clock dependent
    return rows


def weights_of(run_dir: Path) -> dict[str, bytes]:
    return {k: v.numpy().tobytes() for k, v in load_file(run_dir / "policy.safetensors").items()}


def tree_digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    result = train(short_config(tmp_path_factory.mktemp("ref")), quiet=True)
    return result.run_dir


def test_training_writes_its_files_and_beats_random(reference_run: Path) -> None:
    run = reference_run
    config = json.loads((run / "config.json").read_text())
    assert config["env_id"] == "CartPole-v1"
    assert config["total_steps"] == STEPS
    rows = comparable_metrics(run)
    assert list(rows[0]) == [
        "step",
        "episode",
        "episode_return",
        "episode_length",
        "epsilon",
        "td_loss",
    ]
    assert [int(r["episode"]) for r in rows] == list(range(1, len(rows) + 1))
    assert sum(int(r["episode_length"]) for r in rows) <= STEPS
    assert (run / "returns.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Every 1,000 steps (the final write lands on step 3,000 again); at most 3 are kept.
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "step-0000001000.safetensors",
        "step-0000002000.safetensors",
        "step-0000003000.safetensors",
    ]
    _, spec = load_weights(run / "policy.safetensors")
    assert (spec.env_id, spec.obs_shape, spec.obs_dtype, spec.n_actions) == (
        "CartPole-v1",
        (4,),
        "float32",
        2,
    )
    assert spec.action_meanings == ["push left", "push right"]
    assert spec.train_steps == STEPS

    evaluation = json.loads((run / "evaluation.json").read_text())
    rng = np.random.default_rng(0)
    random_policy = run_episodes(
        lambda obs: rng.integers(0, 2, size=len(obs)),
        lambda: make_env("CartPole-v1"),
        episodes=50,
        seed=123,
    )
    # A uniformly random policy balances CartPole for about 22 steps.
    assert random_policy.mean_return < 30
    assert evaluation["mean_return"] > 2 * random_policy.mean_return


def test_same_seed_same_run_bit_for_bit(reference_run: Path, tmp_path: Path) -> None:
    again = train(short_config(tmp_path), quiet=True).run_dir
    assert comparable_metrics(again) == comparable_metrics(reference_run)
    assert weights_of(again) == weights_of(reference_run)
    other_seed = train(short_config(tmp_path, seed=1, total_steps=1_000), quiet=True).run_dir
    assert (
        comparable_metrics(other_seed)
        != comparable_metrics(reference_run)[: len(comparable_metrics(other_seed))]
    )


def run_cli(*args: str, **kwargs: Any) -> subprocess.Popen[str]:
    env = {**os.environ, "SDL_VIDEODRIVER": "dummy"}
    return subprocess.Popen(
        [sys.executable, "-m", "dqnkit.adapters.cli", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def wait_for(path_glob: str, folder: Path, proc: subprocess.Popen[str]) -> Path:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        found = sorted(folder.glob(path_glob))
        if found:
            return found[0]
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    raise AssertionError(f"{path_glob} never appeared")


@pytest.mark.slow
def test_sigkill_then_resume_ends_exactly_like_an_uninterrupted_run(
    reference_run: Path, tmp_path: Path
) -> None:
    proc = run_cli(*cli_args(tmp_path))
    wait_for("*/checkpoints/step-0000001000.safetensors", tmp_path, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    (run_dir,) = tmp_path.iterdir()
    assert not (run_dir / "policy.safetensors").exists(), "killed too late to test resume"

    resumed = run_cli("train", "--resume", str(run_dir), "--quiet")
    _, err = resumed.communicate()
    assert resumed.returncode == 0, err
    assert comparable_metrics(run_dir) == comparable_metrics(reference_run)
    assert weights_of(run_dir) == weights_of(reference_run)
    # TensorBoard holds each episode once, even in the raw event files (no purge applied).
    accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    events = accumulator.EventAccumulator(str(run_dir), purge_orphaned_data=False)
    for events_file in sorted(run_dir.glob("events.out.tfevents.*")):
        single = accumulator.EventAccumulator(str(events_file), purge_orphaned_data=False)
        single.Reload()
        steps = [e.step for e in single.Scalars("charts/episodic_return")]
        assert steps == sorted(steps)
    events.Reload()
    logged = [e.step for e in events.Scalars("charts/episodic_return")]
    assert logged == [int(r["step"]) for r in comparable_metrics(run_dir)]


@pytest.mark.slow
def test_ctrl_c_writes_a_checkpoint_and_exits_cleanly(tmp_path: Path) -> None:
    proc = run_cli(*cli_args(tmp_path))
    wait_for("*/checkpoints/step-0000001000.safetensors", tmp_path, proc)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert "dqnkit train --resume" in out


def test_corrupted_checkpoint_is_refused_and_nothing_is_overwritten(
    reference_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(reference_run, run_dir)
    latest = sorted((run_dir / "checkpoints").iterdir())[-1]
    latest.write_bytes(latest.read_bytes()[: latest.stat().st_size // 2])
    before = tree_digest(run_dir)
    assert main(["train", "--resume", str(run_dir), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "truncated or corrupted" in err
    previous = run_dir / "checkpoints" / "step-0000002000.safetensors"
    assert (
        f"previous checkpoint loads cleanly: resume from it with dqnkit train --resume {previous}"
        in err
    )
    assert tree_digest(run_dir) == before
    # Following the advice redoes the last 1,000 steps exactly.
    (run_dir / "policy.safetensors").unlink()
    assert main(["train", "--resume", str(previous), "--quiet"]) == 0
    assert comparable_metrics(run_dir) == comparable_metrics(reference_run)
    assert weights_of(run_dir) == weights_of(reference_run)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "NoSuchEnv-v9"], "cannot make environment 'NoSuchEnv-v9'"),
        (["train", "Pendulum-v1"], "Discrete action spaces only"),
        (["train", "CartPole-v1", "--steps", "0"], "--steps must be positive"),
        (["train", "CartPole-v1", "--no-such-option"], "unrecognized arguments"),
        (["train"], "needs an ENV_ID"),
        (["train", "--resume", "/nonexistent/run"], "not a run directory"),
        (["evaluate", "/nonexistent/run"], "no such run directory or weights file"),
    ],
)
def test_bad_input_is_one_line_and_a_nonzero_exit(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse's own errors
        code = int(exit_.code or 0)
    err = capsys.readouterr().err
    assert code == 2
    assert message in err
    assert err.count("\n") == 1, err


def test_a_run_that_cannot_start_leaves_no_run_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("kept")
    assert main(["train", "NoSuchEnv-v9", "--out", str(out), "--quiet"]) == 2
    assert "cannot make environment 'NoSuchEnv-v9'" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["mine.txt"]


def test_run_dir_without_checkpoint_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text(short_config(tmp_path).to_json())
    assert main(["train", "--resume", str(run_dir)]) == 2
    assert "no checkpoint to resume from" in capsys.readouterr().err


def test_evaluate_prints_json(reference_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", str(reference_run), "--episodes", "3", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["episodes"] == 3
    assert len(result["returns"]) == 3
    assert result["mean_return"] == pytest.approx(np.mean(result["returns"]))
    python_api = evaluate(reference_run, episodes=3, seed=result["seed"])
    assert python_api.returns == result["returns"]


def test_resume_with_several_envs_from_an_earlier_checkpoint_is_exact(tmp_path: Path) -> None:
    """Each sub-environment is rebuilt mid-episode from its snapshot, so resuming from any
    checkpoint ends exactly like the run that went straight through."""
    config = short_config(
        tmp_path, num_envs=3, total_steps=1_800, checkpoint_every=600, learning_starts=300
    )
    straight = train(config, quiet=True).run_dir
    copy = rewind_to_first_checkpoint(straight, tmp_path / "copy")
    # Only step 600 is left: mid-episode for every sub-environment.
    assert [p.name for p in (copy / "checkpoints").iterdir()] == ["step-0000000600.safetensors"]

    train(config, resume=copy, quiet=True)
    assert comparable_metrics(copy) == comparable_metrics(straight)
    assert weights_of(copy) == weights_of(straight)


def test_on_checkpoint_reports_each_checkpoint_as_it_is_written(tmp_path: Path) -> None:
    seen: list[Progress] = []

    def hook(progress: Progress) -> None:
        assert progress.checkpoint.is_file()  # called after the write, not before
        seen.append(progress)

    result = train(short_config(tmp_path, total_steps=2_000), quiet=True, on_checkpoint=hook)
    assert [(p.step, p.final) for p in seen] == [(1_000, False), (2_000, False), (2_000, True)]
    assert all(p.run_dir == result.run_dir for p in seen)
    assert [p.checkpoint.name for p in seen][-1] == "step-0000002000.safetensors"
    rows = comparable_metrics(result.run_dir)
    assert seen[-1].episodes == len(rows)
    recent = [float(r["episode_return"]) for r in rows[-100:]]
    assert seen[-1].recent_return == pytest.approx(sum(recent) / len(recent))
    assert seen[-1].eval_return is None  # no periodic evaluation in this config


@pytest.mark.slow
def test_sigterm_is_handled_like_ctrl_c(tmp_path: Path) -> None:
    proc = run_cli(*cli_args(tmp_path))
    wait_for("*/checkpoints/step-0000001000.safetensors", tmp_path, proc)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert "dqnkit train --resume" in out


class _Scripted(gym.Env[np.ndarray, int]):
    """CartPole-shaped episodes of 20 steps; subclasses break one thing."""

    observation_space = gym.spaces.Box(-10, 10, (4,), np.float32)
    action_space = gym.spaces.Discrete(2)  # type: ignore[assignment]

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Any:
        super().reset(seed=seed)
        self.t = 0
        return self.np_random.uniform(-1, 1, 4).astype(np.float32), {}

    def step(self, action: int) -> Any:
        self.t += 1
        obs = self.np_random.uniform(-1, 1, 4).astype(np.float32)
        return obs, self.reward(), self.t == 20, False, {}

    def reward(self) -> float:
        return 1.0


class _NanRewardAfterAWhile(_Scripted):
    steps = 0

    def reward(self) -> float:
        _NanRewardAfterAWhile.steps += 1
        return float("nan") if _NanRewardAfterAWhile.steps > 1_500 else 1.0


class _RaisesInStep(_Scripted):
    def step(self, action: int) -> Any:
        raise RuntimeError("the physics engine exploded")


class _InterruptsAtStartUp(_Scripted):
    def __init__(self) -> None:
        signal.raise_signal(signal.SIGINT)


for _name, _cls in [
    ("NanReward", _NanRewardAfterAWhile),
    ("RaisesInStep", _RaisesInStep),
    ("InterruptsAtStartUp", _InterruptsAtStartUp),
    ("Scripted", _Scripted),
]:
    if f"dqnkit-test/{_name}-v0" not in gym.registry:
        gym.register(f"dqnkit-test/{_name}-v0", entry_point=_cls)  # type: ignore[arg-type]


def test_a_loss_going_non_finite_stops_the_run_and_keeps_the_last_good_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _NanRewardAfterAWhile.steps = 0
    argv = cli_args(tmp_path)
    argv[1] = "dqnkit-test/NanReward-v0"
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert "training diverged at step" in err
    assert "the TD loss is nan" in err
    (run_dir,) = tmp_path.iterdir()
    kept = run_dir / "checkpoints" / "step-0000001000.safetensors"
    assert f"the last good checkpoint is {kept}" in err
    assert [p.name for p in (run_dir / "checkpoints").iterdir()] == [kept.name]
    assert not (run_dir / "policy.safetensors").exists()


def test_an_environment_that_raises_is_a_one_line_error_naming_it(tmp_path: Path) -> None:
    config = dataclasses.replace(short_config(tmp_path), env_id="dqnkit-test/RaisesInStep-v0")
    with pytest.raises(
        CommandError, match="environment dqnkit-test/RaisesInStep-v0 raised in step"
    ):
        train(config, quiet=True)


def test_ctrl_c_during_start_up_or_the_final_evaluation_is_an_interrupt_not_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = dataclasses.replace(
        short_config(tmp_path), env_id="dqnkit-test/InterruptsAtStartUp-v0"
    )
    result = train(config, quiet=True)
    assert result.interrupted
    assert result.steps == 0
    assert (result.run_dir / "checkpoints" / "step-0000000000.safetensors").is_file()

    train_module = importlib.import_module("dqnkit.adapters.training")
    real = train_module.evaluate_policy

    def interrupted_final(*args: Any, **kwargs: Any) -> Any:
        signal.raise_signal(signal.SIGINT)
        return real(*args, **kwargs)

    monkeypatch.setattr(train_module, "evaluate_policy", interrupted_final)
    result = train(short_config(tmp_path, total_steps=600), quiet=True)
    assert result.interrupted
    assert result.steps == 600
    assert not (result.run_dir / "policy.safetensors").exists()


def test_a_run_directory_is_locked_while_a_process_trains_in_it(
    reference_run: Path, tmp_path: Path
) -> None:
    from dqnkit.adapters import rundir

    run_dir = tmp_path / "run"
    shutil.copytree(reference_run, run_dir)
    held = rundir.lock(run_dir)
    try:
        with pytest.raises(CommandError, match="is locked: another process is training in it"):
            train(TrainConfig(env_id=""), resume=run_dir, quiet=True)
    finally:
        held.close()


def test_resume_cleans_stale_temporaries_and_refuses_another_env(
    reference_run: Path, tmp_path: Path
) -> None:
    run_dir = rewind_to_first_checkpoint(reference_run, tmp_path / "run")
    stale = [run_dir / ".metrics.csv.abc123.tmp", run_dir / "checkpoints" / ".step-x.tmp"]
    for path in stale:
        path.write_bytes(b"half a file")
    with pytest.raises(CommandError, match="trains CartPole-v1, not Acrobot-v1"):
        train(TrainConfig(env_id="Acrobot-v1"), resume=run_dir, quiet=True)
    train(TrainConfig(env_id="CartPole-v1"), resume=run_dir, quiet=True)
    assert not any(path.exists() for path in stale)
    assert comparable_metrics(run_dir) == comparable_metrics(reference_run)


@pytest.mark.parametrize("out", ["file", "x" * 300])
def test_an_unusable_out_folder_is_one_line(tmp_path: Path, out: str) -> None:
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(CommandError, match="cannot create the run directory"):
        train(short_config(tmp_path / out), quiet=True)


def test_the_run_announces_itself_and_its_solve(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    printed_before_first_checkpoint: list[str] = []
    config = short_config(
        tmp_path, eval_every=500, eval_episodes=2, eval_gate=None, stop_return=5.0
    )
    result = train(
        config,
        on_checkpoint=lambda p: printed_before_first_checkpoint.append(capsys.readouterr().out),
    )
    assert result.solved_at == 500  # any policy balances CartPole 5 steps
    assert result.solved_return is not None
    assert result.solved_return >= 5.0
    # Its clock stopped at the solve: before the final evaluation and the plot.
    assert result.solved_seconds is not None
    assert 0 < result.solved_seconds < result.wall_seconds
    first = printed_before_first_checkpoint[0]
    assert f"run directory: {result.run_dir}\nconfig: {result.run_dir / 'config.json'}" in first
    assert f"solved at step 500 (greedy mean {result.solved_return:.2f})" in first
    assert json.loads((result.run_dir / "evaluation.json").read_text())["solved_at"] == 500


def test_without_a_terminal_the_run_prints_plain_progress_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Under pytest stderr is not a terminal, so the bar is off, as in a log file.
    monkeypatch.setattr(training, "LOG_EVERY_SECONDS", 0.0)
    train(short_config(tmp_path, eval_every=1_000, eval_episodes=2, eval_gate=None))
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("step ")]
    # Checked every 1,000 steps; with no interval, every check prints.
    assert [line.split(":")[0] for line in lines] == ["step 1,000/3,000", "step 2,000/3,000",
                                                       "step 3,000/3,000"]  # fmt: skip
    assert ", greedy " in lines[1]
    assert " at 2,000, epsilon " in lines[1]
    assert ", 100-episode mean " in lines[0]
    assert lines[0].endswith(" steps/s")

    monkeypatch.setattr(training, "LOG_EVERY_SECONDS", 3600.0)
    train(short_config(tmp_path / "again"))
    assert not any(line.startswith("step ") for line in capsys.readouterr().out.splitlines())


def test_resume_with_n_step_prioritized_replay_dueling_and_double_dqn_is_exact(
    tmp_path: Path,
) -> None:
    """Every option of the second wave on: the sum tree, its largest priority, the annealed
    beta and the open n-step windows come back from the checkpoint, so resuming ends exactly
    like the straight run."""
    config = short_config(
        tmp_path,
        num_envs=2,
        total_steps=1_800,
        checkpoint_every=600,
        learning_starts=300,
        prioritized=True,
        dueling=True,
        double_dqn=True,
        n_step=3,
    )
    straight = train(config, quiet=True).run_dir
    with safe_open(str(sorted((straight / "checkpoints").iterdir())[0]), framework="pt") as f:
        replay_meta = json.loads(f.metadata()["dqnkit.checkpoint"])["replay"]
    assert replay_meta["kind"] == "n_step"
    assert any(replay_meta["open"])  # windows were open at the checkpoint
    assert replay_meta["inner"]["kind"] == "prioritized"
    assert replay_meta["inner"]["max_priority"] > 1.0  # priorities written back from TD errors
    copy = rewind_to_first_checkpoint(straight, tmp_path / "copy")
    train(config, resume=copy, quiet=True)
    assert comparable_metrics(copy) == comparable_metrics(straight)
    assert weights_of(copy) == weights_of(straight)
    assert "value.weight" in weights_of(straight)  # the dueling head was trained and saved
    uniform = train(dataclasses.replace(config, prioritized=False), quiet=True).run_dir
    assert weights_of(uniform) != weights_of(straight)
    one_step = train(dataclasses.replace(config, n_step=1), quiet=True).run_dir
    assert weights_of(one_step) != weights_of(straight)


def test_a_checkpoint_of_another_format_is_named_as_such_not_as_corrupted(tmp_path: Path) -> None:
    from dqnkit.adapters.checkpoint import FORMAT_VERSION
    from dqnkit.export.files import read_safetensors, write_safetensors

    run_dir = train(short_config(tmp_path, total_steps=1_000), quiet=True).run_dir
    for path in (run_dir / "checkpoints").iterdir():
        tensors, document = read_safetensors(path, "dqnkit.checkpoint")
        write_safetensors(path, tensors, "dqnkit.checkpoint", {**document, "format_version": 2})
    with pytest.raises(CommandError) as caught:
        train(TrainConfig(env_id=""), resume=run_dir, quiet=True)
    message = str(caught.value)
    assert f"checkpoint format 2, this dqnkit reads {FORMAT_VERSION}" in message
    assert "corrupted" not in message


def test_keep_best_makes_the_best_evaluations_weights_the_policy_and_resumes_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Scripted periodic evaluations peak at step 1,500 (tied at 2,000: the earliest wins):
    the policy is then the online network of step 1,500's checkpoint, not the last step's; a
    run resumed from step 1,000 (step 1,500's best.safetensors already on disk) ends the same;
    one whose best.safetensors is gone says so instead of keeping other weights."""
    means = {500: 10.0, 1_000: 20.0, 1_500: 30.0, 2_000: 30.0}
    real = training._Parts.evaluate

    def scripted(self: training._Parts, episodes: int) -> EvalResult:
        if episodes == 2:  # the periodic evaluations; the final one (3 episodes) is real
            return EvalResult([means[self.state.step]] * 2, [1, 1])
        return real(self, episodes)

    monkeypatch.setattr(training._Parts, "evaluate", scripted)
    config = short_config(tmp_path, total_steps=2_000, eval_every=500, eval_episodes=2,
                          eval_gate=None, stop_return=None, checkpoint_every=500,
                          final_eval_episodes=3, keep_best=True)  # fmt: skip
    straight = train(config, quiet=True).run_dir
    kept = [p.name for p in sorted((straight / "checkpoints").iterdir())]
    assert kept == [f"step-{s:010d}.safetensors" for s in (1_000, 1_500, 2_000)]

    def online_at(step: int) -> dict[str, bytes]:
        saved = load_file(straight / "checkpoints" / f"step-{step:010d}.safetensors")
        return {k.removeprefix("online/"): v.numpy().tobytes()
                for k, v in saved.items() if k.startswith("online/")}  # fmt: skip

    assert weights_of(straight) == online_at(1_500)
    assert weights_of(straight) != online_at(2_000)  # training went on after the best
    report = json.loads((straight / "evaluation.json").read_text())
    assert report["weights_step"] == 1_500
    assert report["episodes"] == 3
    assert load_weights(straight / "policy.safetensors")[1].train_steps == 1_500

    copy = rewind_to_first_checkpoint(straight, tmp_path / "copy")  # step 1,000
    train(config, resume=copy, quiet=True)
    assert weights_of(copy) == weights_of(straight)

    damaged = tmp_path / "damaged"  # as it stood at step 1,500, best.safetensors lost
    shutil.copytree(straight, damaged)
    for name in ("policy.safetensors", "best.safetensors", "checkpoints/" + kept[-1]):
        (damaged / name).unlink()
    with pytest.raises(CommandError, match=r"--keep-best: .*best\.safetensors"):
        train(config, resume=damaged, quiet=True)
    other = {"head.weight": torch.zeros(3, 3)}  # the right step, another network's tensors
    write_safetensors(damaged / "best.safetensors", other, "dqnkit.best", {"step": 1_500})
    with pytest.raises(CommandError, match="does not fit this run's network"):
        train(config, resume=damaged, quiet=True)


def test_keep_best_without_an_evaluation_keeps_the_last_network(tmp_path: Path) -> None:
    run_dir = train(short_config(tmp_path, keep_best=True), quiet=True).run_dir  # eval_every 0
    last = load_file(sorted((run_dir / "checkpoints").iterdir())[-1])
    online = {k.removeprefix("online/"): v.numpy().tobytes()
              for k, v in last.items() if k.startswith("online/")}  # fmt: skip
    assert weights_of(run_dir) == online
    assert json.loads((run_dir / "evaluation.json").read_text())["weights_step"] == STEPS
    assert not (run_dir / "best.safetensors").exists()


def test_metrics_follow_the_run_at_each_periodic_evaluation_between_checkpoints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no checkpoint before the end, metrics.csv still holds, at each periodic
    evaluation, every episode the run finished by the previous one: the same rows the
    finished run's file has up to that step."""
    seen: dict[int, list[dict[str, str]]] = {}
    real = training._Parts.evaluate

    def reading(self: training._Parts, episodes: int) -> EvalResult:
        if episodes == 1 and (self.run_dir / "metrics.csv").exists():  # periodic ones
            seen[self.state.step] = comparable_metrics(self.run_dir)
        return real(self, episodes)

    monkeypatch.setattr(training._Parts, "evaluate", reading)
    config = short_config(tmp_path, total_steps=2_000, eval_every=500, eval_episodes=1,
                          eval_gate=None, stop_return=None, checkpoint_every=0)  # fmt: skip
    run_dir = train(config, quiet=True).run_dir
    final = comparable_metrics(run_dir)
    assert sorted(seen) == [1_000, 1_500, 2_000]  # step 500's came before any file
    for step, rows in seen.items():
        previous = step - 500
        assert rows == [row for row in final if int(row["step"]) <= previous], step
        assert rows
        assert int(rows[-1]["step"]) > previous - 500  # written at the last evaluation


def test_a_late_learning_rate_is_a_resume_from_late_after_with_that_rate(tmp_path: Path) -> None:
    """Every update after --late-after steps uses --late-learning-rate: the run ends
    bit-identical to one trained at --learning-rate up to its step-1,000 checkpoint, then
    resumed from it with the late rate written into its config.json."""
    plain = short_config(tmp_path / "plain")
    late_rate = plain.learning_rate / 10
    late = short_config(tmp_path / "late", late_learning_rate=late_rate, late_after=1_000)
    straight = train(late, quiet=True).run_dir
    reference = train(plain, quiet=True).run_dir
    assert weights_of(straight) != weights_of(reference)  # the late rate changed training

    copy = rewind_to_first_checkpoint(reference, tmp_path / "copy")  # step 1,000
    document = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps({**document, "learning_rate": late_rate}))
    train(TrainConfig(env_id=""), resume=copy, quiet=True)
    assert weights_of(copy) == weights_of(straight)

    rewound = rewind_to_first_checkpoint(straight, tmp_path / "rewound")  # resumes stay exact
    train(TrainConfig(env_id=""), resume=rewound, quiet=True)
    assert weights_of(rewound) == weights_of(straight)


def test_a_resumed_run_says_which_step_its_time_counts_from(
    reference_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copy = rewind_to_first_checkpoint(reference_run, tmp_path / "copy")  # step 1,000
    capsys.readouterr()
    assert main(["train", "--resume", str(copy)]) == 0
    out = capsys.readouterr().out
    assert f"trained {STEPS} steps (from step 1000, resumed) in " in out
    fresh = ["train", "CartPole-v1", "--steps", "600", "--learning-starts", "100", "--out",
             str(tmp_path / "fresh")]  # fmt: skip
    assert main(fresh) == 0
    assert "trained 600 steps in " in capsys.readouterr().out
