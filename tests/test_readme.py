"""The README's core example runs as written."""

import re
from pathlib import Path
from typing import Any

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
