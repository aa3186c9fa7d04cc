"""The dqnkit console script: its version, its help, and what it does with no command."""

import subprocess
import sys
from importlib.metadata import version
from typing import Any

import pytest

from dqnkit.adapters.cli import main

COMMANDS = ("train", "evaluate", "export", "play")


def test_version_is_the_installed_distributions() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "dqnkit.adapters.cli", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == f"dqnkit {version('dqnkit')}"


def test_help_lists_every_command_with_its_summary(capsys: Any) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    lines = capsys.readouterr().out.splitlines()
    for name in COMMANDS:
        (line,) = [line for line in lines if line.split()[:1] == [name]]
        assert len(line.split()) > 3, line  # the command, then a sentence saying what it does


def test_no_command_prints_the_help_and_fails(capsys: Any) -> None:
    assert main([]) == 2
    out = capsys.readouterr().out
    assert out.startswith("usage: dqnkit")
    for name in COMMANDS:
        assert name in out


def test_an_unknown_command_is_a_one_line_usage_error(capsys: Any) -> None:
    with pytest.raises(SystemExit) as done:
        main(["fly"])
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "invalid choice: 'fly'" in err
