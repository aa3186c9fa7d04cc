"""The README as written: its Python examples run, its commands parse, its modules exist."""

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


def readme_commands(program: str) -> list[str]:
    """Every ``program ...`` line of the README's shell blocks, continuations joined and
    comments dropped."""
    blocks = re.findall(r"```(?:bash|sh)\n(.*?)```", README.read_text(), flags=re.DOTALL)
    lines = []
    for block in blocks:
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0].strip()
            if line.startswith(program + " "):
                lines.append(line)
    return lines


def test_every_dqnkit_command_in_the_readme_parses() -> None:
    """A pasted README command is never refused for a flag that does not exist (nothing runs:
    only the command line is parsed). Shell variables stand for a run directory."""
    import shlex

    from dqnkit.adapters.cli import build_parser

    commands = readme_commands("dqnkit")
    assert len(commands) > 20
    for line in commands:
        words = []
        for word in shlex.split(line)[1:]:
            if word in (">", ">>", "<", "|", "&&", ";", "2>", "&"):
                break  # the shell's, not dqnkit's
            words.append("runs/example" if "$" in word else word)
        if "--help" in words or "--version" in words:
            with pytest.raises(SystemExit) as printed:  # they print, then exit 0
                build_parser().parse_args(words)
            assert printed.value.code == 0, f"README command does not parse: {line}"
            continue
        try:
            args = build_parser().parse_args(words)
        except SystemExit as error:
            raise AssertionError(f"README command does not parse: {line}") from error
        assert getattr(args, "handler", None) is not None, line


def test_every_python_module_the_readme_runs_exists() -> None:
    import importlib.util

    lines = readme_commands("python") + readme_commands(".venv/bin/python")
    modules = [line.split()[2] for line in lines if line.split()[1:2] == ["-m"]]
    assert modules
    for module in modules:
        assert importlib.util.find_spec(module) is not None, module
