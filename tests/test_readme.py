"""The README's core example runs as written."""

import re
from pathlib import Path
from typing import Any

import pytest

from dqnkit.export.web import find_onnxruntime_web

README = Path(__file__).resolve().parent.parent / "README.md"


def test_the_core_example_runs() -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)
    (core,) = [b for b in blocks if "from dqnkit.core import QNetwork" in b]
    namespace: dict[str, object] = {}
    exec(compile(core, "README.md", "exec"), namespace)
    assert namespace["buffer"].size == 256  # type: ignore[attr-defined]
    assert namespace["loss"].ndim == 0  # type: ignore[attr-defined]


def test_the_frame_replay_example_runs() -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)
    (example,) = [b for b in blocks if "frame_replay.init" in b]
    namespace: dict[str, Any] = {}
    exec(compile(example, "README.md", "exec"), namespace)
    batch = namespace["batch"]
    assert namespace["frames"].written == 4
    # Environment 0 stepped from its blank first frame to all-1s, environment 1 to all-2s.
    assert (batch.obs == 0).all()
    assert sorted(set(batch.next_obs.flatten(1).amax(1).tolist())) == [1, 2]
    assert ((batch.next_obs.flatten(1).amax(1) == 1) == (batch.action == 1)).all()


@pytest.mark.slow
def test_the_readmes_python_snippets_run_in_order_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every python block, top to bottom, in one namespace: no placeholder, no undefined name
    (the training one trains the CartPole preset, the export one exports that run)."""
    monkeypatch.chdir(tmp_path)
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)
    try:
        find_onnxruntime_web()
    except ValueError as missing:
        pytest.skip(f"the web block needs onnxruntime-web: {missing}")
    namespace: dict[str, Any] = {}
    for block in blocks:
        exec(compile(block, "README.md", "exec"), namespace)
    assert namespace["result"].evaluation.mean_return > 0
    assert len(namespace["sweep"].trials) == 4
    assert namespace["action"] in (0, 1)
    assert (tmp_path / "site" / "index.html").is_file()
