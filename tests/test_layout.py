"""The import directions of DESIGN.md: core imports only torch and the standard library;
export never imports adapters; core never imports export or adapters."""

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def imported_modules(folder: str) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / folder).glob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
        found[path.name] = names
    return found


def test_core_imports_only_torch_and_the_standard_library() -> None:
    for file, names in imported_modules("core").items():
        for name in names:
            top = name.split(".")[0]
            allowed = top == "torch" or top in sys.stdlib_module_names
            assert allowed or name.startswith("dqnkit.core"), f"core/{file} imports {name}"


@pytest.mark.parametrize(
    ("folder", "forbidden"),
    [("core", "dqnkit.export"), ("core", "dqnkit.adapters"), ("export", "dqnkit.adapters")],
)
def test_imports_point_one_way(folder: str, forbidden: str) -> None:
    for file, names in imported_modules(folder).items():
        assert not any(n.startswith(forbidden) for n in names), f"{folder}/{file} -> {forbidden}"
