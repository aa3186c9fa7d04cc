"""``dqnkit export`` and ``dqnkit play`` end to end, and their one-line refusals."""

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dqnkit.adapters import deploy_cli
from dqnkit.adapters.cli_args import EVAL_SEED
from dqnkit.adapters.errors import CommandError
from tests.test_export import save_cartpole_weights


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SDL_VIDEODRIVER": "dummy"}
    return subprocess.run(
        [sys.executable, "-m", "dqnkit.adapters.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def parse(*args: str) -> argparse.Namespace:
    """The two commands on a parser of their own, as adapters/cli.py registers them."""
    parser = argparse.ArgumentParser(prog="dqnkit")
    commands = parser.add_subparsers()
    deploy_cli.add_export_parser(commands)
    deploy_cli.add_play_parser(commands)
    return parser.parse_args(args)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("run")
    save_cartpole_weights(run / "policy.safetensors", seed=5)
    return run


@pytest.fixture(scope="module")
def exported(run_dir: Path) -> Path:
    done = run_cli("export", str(run_dir), "--episodes", "2", "--seed", "3")
    assert done.returncode == 0, done.stderr
    assert "policy.onnx  (onnx, max |dq|" in done.stdout
    return run_dir / "export"


def greedy_returns(run_dir: Path, *, episodes: int, seed: int) -> list[float]:
    """The returns of the PyTorch network itself: `dqnkit evaluate` with the same seed."""
    from dqnkit.adapters import evaluate

    return evaluate(run_dir, episodes=episodes, seed=seed).returns


@pytest.mark.slow
def test_export_command_writes_verified_artifacts_with_episode_observations(exported: Path) -> None:
    assert sorted(p.name for p in exported.iterdir()) == [
        "policy.export.json",
        "policy.onnx",
        "policy.pt",
        "policy.pt2",
    ]
    report = json.loads((exported / "policy.export.json").read_text())
    assert report["observations"]["episodes"]["count"] > 10
    for entry in report["formats"].values():
        assert {c["observations"] for c in entry["checks"]} == {"sampled", "episodes"}
        assert all(c["ok"] for c in entry["checks"])


@pytest.mark.slow
@pytest.mark.parametrize("name", ["policy.onnx", "policy.pt", "policy.pt2"])
def test_play_gives_the_returns_of_the_pytorch_network(
    exported: Path, run_dir: Path, name: str
) -> None:
    trust = ["--trust-pickle"] if name.endswith(".pt2") else []  # our own export
    done = run_cli("play", str(exported / name), "--episodes", "3", "--seed", "7", "--json", *trust)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    expected = greedy_returns(run_dir, episodes=3, seed=7)
    assert result["returns"] == expected
    assert result["episodes"] == 3
    assert result["env_id"] == "CartPole-v1"
    assert result["mean_return"] == pytest.approx(np.mean(expected))
    assert result["std_return"] == pytest.approx(np.std(expected))


@pytest.mark.slow
def test_play_text_output_and_cli_refusals(exported: Path, tmp_path: Path) -> None:
    done = run_cli("play", str(exported / "policy.onnx"), "--episodes", "2")
    assert done.returncode == 0, done.stderr
    first, second = done.stdout.splitlines()
    number = r"-?[0-9]+\.[0-9]{2}"
    assert re.fullmatch(
        rf"CartPole-v1: {number} ± {number} over 2 episodes \(standard error {number}\), "
        rf"seed {EVAL_SEED}, {re.escape(str(exported / 'policy.onnx'))}",
        first,
    ), first
    assert second.startswith("returns: ")
    done = run_cli("play", str(tmp_path / "missing.onnx"))
    assert done.returncode == 2
    assert done.stderr == f"dqnkit: error: {tmp_path / 'missing.onnx'}: no such file\n"


def test_play_refuses_unknown_extension_missing_file_and_mismatched_env(
    exported_in_process: Path, tmp_path: Path
) -> None:
    (tmp_path / "policy.tflite").write_bytes(b"x")
    with pytest.raises(CommandError, match=r"unknown artifact type '\.tflite'"):
        deploy_cli.play_command(parse("play", str(tmp_path / "policy.tflite")))
    with pytest.raises(CommandError, match="no such file"):
        deploy_cli.play_command(parse("play", str(tmp_path / "gone.pt")))
    (tmp_path / "fake.pt").write_bytes(b"not torchscript")
    with pytest.raises(CommandError, match="not a dqnkit torchscript policy"):
        deploy_cli.play_command(parse("play", str(tmp_path / "fake.pt")))
    onnx_file = str(exported_in_process / "policy.onnx")
    with pytest.raises(CommandError, match=r"Acrobot-v1 observations have shape \(6,\)"):
        deploy_cli.play_command(parse("play", onnx_file, "--env", "Acrobot-v1"))
    with pytest.raises(CommandError, match="cannot make environment 'NoSuchEnv-v0'"):
        deploy_cli.play_command(parse("play", onnx_file, "--env", "NoSuchEnv-v0"))


@pytest.fixture(scope="module")
def exported_in_process(run_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("inprocess")
    args = parse("export", str(run_dir), "--format", "onnx", "--out", str(out), "--episodes", "1")
    assert deploy_cli.export_command(args) == 0
    return out


def test_play_in_process_matches_pytorch(
    exported_in_process: Path, run_dir: Path, capsys: Any
) -> None:
    args = parse("play", str(exported_in_process / "policy.onnx"), "--episodes", "2", "--json")
    assert deploy_cli.play_command(args) == 0
    result = json.loads(capsys.readouterr().out)
    # One default seed for play and evaluate: the same episodes.
    assert result["seed"] == EVAL_SEED
    assert result["returns"] == greedy_returns(run_dir, episodes=2, seed=EVAL_SEED)


def test_evaluate_and_play_report_alike(
    exported_in_process: Path, run_dir: Path, capsys: Any
) -> None:
    from dqnkit.adapters.cli import main

    onnx_file = str(exported_in_process / "policy.onnx")
    assert main(["play", onnx_file, "--episodes", "3", "--json"]) == 0
    played = json.loads(capsys.readouterr().out)
    assert main(["evaluate", str(run_dir), "--episodes", "3", "--json"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert played.pop("policy") == onnx_file
    assert evaluated.pop("policy") == str(run_dir / "policy.safetensors")
    assert played == evaluated
    assert main(["play", onnx_file, "--episodes", "3"]) == 0
    play_text = capsys.readouterr().out
    assert main(["evaluate", str(run_dir), "--episodes", "3"]) == 0
    evaluate_text = capsys.readouterr().out
    assert play_text.replace(onnx_file, "P") == evaluate_text.replace(
        str(run_dir / "policy.safetensors"), "P"
    )


def test_export_refuses_bad_formats_and_missing_runs(run_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="--format 'onnx,tflite'"):
        deploy_cli.export_command(parse("export", str(run_dir), "--format", "onnx,tflite"))
    with pytest.raises(CommandError, match="no such run directory or weights file"):
        deploy_cli.export_command(parse("export", str(tmp_path / "nothing")))
    with pytest.raises(CommandError, match=r"without policy\.safetensors"):
        deploy_cli.export_command(parse("export", str(tmp_path)))


def test_every_option_states_its_default() -> None:
    parser = argparse.ArgumentParser(prog="dqnkit")
    commands = parser.add_subparsers()
    deploy_cli.add_export_parser(commands)
    deploy_cli.add_play_parser(commands)
    for name, sub in commands.choices.items():
        for action in sub._actions:
            if action.option_strings and action.dest != "help":
                assert "default" in (action.help or ""), (name, action.dest)
