"""The dqnkit console script."""

import subprocess
import sys
from importlib.metadata import version


def test_version_and_help() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "dqnkit.adapters.cli", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == f"dqnkit {version('dqnkit')}"
