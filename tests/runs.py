"""Helpers for tests that take run directories apart."""

import shutil
from pathlib import Path


def rewind_to_first_checkpoint(run_dir: Path, dest: Path) -> Path:
    """A copy of a finished run as it stood at its first checkpoint: the later checkpoints and
    the final weights removed, so that ``train(resume=dest)`` redoes the rest."""
    shutil.copytree(run_dir, dest)
    (dest / "policy.safetensors").unlink()
    for late in sorted((dest / "checkpoints").iterdir())[1:]:
        late.unlink()
    return dest
