"""The README's core example runs as written."""

import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_the_core_example_runs() -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)
    (core,) = [b for b in blocks if "from dqnkit.core import" in b]
    namespace: dict[str, object] = {}
    exec(compile(core, "README.md", "exec"), namespace)
    assert namespace["buffer"].size == 256  # type: ignore[attr-defined]
    assert namespace["loss"].ndim == 0  # type: ignore[attr-defined]
