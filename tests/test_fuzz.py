"""A fuzz suite of our own: damaged and lying files, hostile option values and environments.

Every case runs a real command in-process and must end in an exit status with, when it is
not 0, one line on stderr: no exception escapes ``main``, no traceback is printed. Cases that
are certainly bad input (lying metadata, bad option values, hostile environments) must exit
non-zero. Across all cases: no file outside the case's output folder changes, the module an
env id names is never imported, and the pickle hidden in a .pt2 is never loaded.

The default run is a fixed, seeded set of about 150 cases (well under a minute here);
``DQNKIT_FUZZ_CASES=2000`` runs more (a different mix from the same generator).
"""

import json
import math
import os
import random
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

import tests.hostile_envs  # noqa: F401  (registers the dqnkit-test/ environments)
from dqnkit.adapters.cli import main
from dqnkit.export import export_policy
from dqnkit.export.weights import save_weights
from tests.hostile_envs import HOSTILE_ENVS
from tests.test_export import cartpole_policy

CASES = int(os.environ.get("DQNKIT_FUZZ_CASES", "150"))
PROBE = "dqnkit_fuzz_probe"
_KEY = "dqnkit.policy"

# Values that are wrong for every field of the contract they replace, JSON-encodable.
HOSTILE_VALUES: list[Any] = [
    None,
    -1,
    0,
    10**30,
    1e308,
    -1e308,
    "x",
    "",
    "inf",
    [],
    {},
    [[[[[]]]]],
    True,
    [1e9, 1e9, 1e9],
    {"kind": "mlp", "hidden": [10**9]},
    "evil:CartPole-v1",
]
# Fields whose every value above is invalid (env_id takes strings, so only non-strings).
STRICT_FIELDS = ("obs_shape", "obs_dtype", "n_actions", "network")
BAD_OPTION_VALUES = ("-1", "nan", "inf", "-inf", "1e999", "", "abc", str(2**64), "0x10", "1.5")
OPTIONS: dict[str, tuple[str, ...]] = {
    "evaluate": ("--episodes", "--seed"),
    "export": ("--episodes", "--seed", "--atol", "--rtol"),
    "play": ("--episodes", "--seed"),
}


@dataclass(frozen=True)
class Case:
    name: str
    argv: tuple[str, ...]
    must_fail: bool


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Valid files of every kind, a probe module, and a .pt2 carrying a pickle payload."""
    root = tmp_path_factory.mktemp("fuzz")
    net, spec = cartpole_policy(seed=11)
    save_weights(root / "policy.safetensors", net, spec)
    export_policy(net, spec, root, n_sampled=8, batch_sizes=(4,))
    marker = root / "code-ran.txt"
    (root / f"{PROBE}.py").write_text(f"open({str(marker)!r}, 'w').write('imported')\n")
    evil = root / "evil.pt2"
    with (
        zipfile.ZipFile(root / "policy.pt2") as source,
        zipfile.ZipFile(evil, "w") as target,
    ):
        for info in source.infolist():
            data = source.read(info)
            if "/data/sample_inputs/" in info.filename:
                data = _pickle_payload(marker)
            target.writestr(info.filename, data)
    return {
        "root": root,
        "marker": marker,
        "weights": root / "policy.safetensors",
        "onnx": root / "policy.onnx",
        "pt": root / "policy.pt",
        "pt2": root / "policy.pt2",
        "evil_pt2": evil,
    }


def _pickle_payload(marker: Path) -> bytes:
    import io

    class Payload:
        def __reduce__(self) -> tuple[Any, ...]:
            return (exec, (f"open({str(marker)!r}, 'w').write('unpickled')",))

    buffer = io.BytesIO()
    torch.save(Payload(), buffer)
    return buffer.getvalue()


def _damaged(data: bytes, rng: random.Random) -> bytes:
    kind = rng.choice(("truncate", "flip", "insert", "zero"))
    if kind == "truncate":
        return data[: rng.randrange(len(data))]
    out = bytearray(data)
    at = rng.randrange(len(out))
    if kind == "flip":
        for _ in range(rng.randint(1, 8)):
            out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
    elif kind == "insert":
        out[at:at] = rng.randbytes(rng.randint(1, 64))
    else:
        out[at : at + rng.randint(1, 256)] = bytes(min(256, len(out) - at))
    return bytes(out)


def _lying_weights(source: Path, target: Path, rng: random.Random) -> bool:
    """Writes ``source`` with one contract field replaced; True when it is certainly invalid."""
    with safe_open(str(source), framework="pt") as f:
        data = json.loads((f.metadata() or {})[_KEY])
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    field = rng.choice(sorted(data))
    value = rng.choice(HOSTILE_VALUES)
    data[field] = value
    invalid = field in STRICT_FIELDS or (field == "env_id" and not isinstance(value, str))
    if field == "env_id" and value == "evil:CartPole-v1":
        data[field], invalid = f"{PROBE}:CartPole-v1", True
    save_file(tensors, str(target), metadata={_KEY: json.dumps(data)})
    return invalid


def generate(corpus: dict[str, Path], folder: Path, count: int, seed: int) -> Iterator[Case]:
    """``count`` cases, drawn in turn from each class, files written under ``folder``."""
    rng = random.Random(seed)
    classes = ("damaged", "lying", "option", "env", "received")
    for i in range(count):
        kind = classes[i % len(classes)]
        case_dir = folder / f"case-{i:04d}"
        case_dir.mkdir()
        out = str(case_dir / "out")
        if kind == "damaged":
            fmt = rng.choice(("weights", "onnx", "pt", "pt2"))
            name = corpus[fmt].name
            (case_dir / name).write_bytes(_damaged(corpus[fmt].read_bytes(), rng))
            damaged = str(case_dir / name)
            if fmt == "weights":
                command = rng.choice(("evaluate", "export"))
                argv: tuple[str, ...] = (command, damaged, "--episodes", "1")
                if command == "export":
                    argv += ("--format", "torchscript", "--out", out)
            else:
                argv = ("play", damaged, "--episodes", "1")
            yield Case(f"{i} damaged {fmt}", argv, must_fail=False)
        elif kind == "lying":
            path = case_dir / "policy.safetensors"
            invalid = _lying_weights(corpus["weights"], path, rng)
            command = rng.choice(("evaluate", "export"))
            argv = (command, str(path), "--episodes", "1")
            if command == "export":
                argv += ("--format", "torchscript", "--out", out)
            yield Case(f"{i} lying weights", argv, must_fail=invalid)
        elif kind == "option":
            command = rng.choice(sorted(OPTIONS))
            option = rng.choice(OPTIONS[command])
            target = str(corpus["onnx"] if command == "play" else corpus["weights"])
            value = rng.choice(BAD_OPTION_VALUES)
            argv = (command, target, option, value)
            if command == "export":  # the fastest format, for the cases that are valid
                argv += ("--format", "torchscript", "--out", out)
            valid = _valid_option(command, option, value)
            yield Case(f"{i} option {command} {option}={value!r}", argv, must_fail=not valid)
        elif kind == "env":
            # NeverEnds is a valid environment (its episodes are bounded): not fuzzed here.
            env_id = rng.choice(sorted(e for e in HOSTILE_ENVS if "NeverEnds" not in e))
            command = rng.choice(("evaluate", "play"))
            target = str(corpus["onnx"] if command == "play" else corpus["weights"])
            yield Case(
                f"{i} env {env_id}", (command, target, "--episodes", "2", "--env", env_id), True
            )
        else:  # a received file that must never run code
            argv = rng.choice(
                [
                    ("play", str(corpus["evil_pt2"]), "--episodes", "1"),
                    ("play", str(corpus["pt2"]), "--episodes", "1"),
                ]
            )
            yield Case(f"{i} received pt2", argv, must_fail=True)


def _valid_option(command: str, option: str, value: str) -> bool:
    """Whether ``value`` is a valid value of ``option`` (a few of BAD_OPTION_VALUES are)."""
    if option in ("--atol", "--rtol"):
        try:
            return math.isfinite(float(value)) and float(value) >= 0
        except ValueError:
            return False
    if option == "--episodes":  # BAD_OPTION_VALUES has no count in [1, 1e6]
        return value == "0" and command == "export"
    return value == "0"  # --seed: 2^64 is beyond 2^32 - 1


def _snapshot(root: Path, skip: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in root.rglob("*")
        if p.is_file() and skip not in p.parents
    }


def test_fuzz_cases_end_in_one_line_errors_and_touch_nothing(
    corpus: dict[str, Path],
    tmp_path: Path,
    capsys: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(corpus["root"])
    monkeypatch.syspath_prepend(str(corpus["root"]))
    failures: list[str] = []
    for case in generate(corpus, tmp_path, CASES, seed=20261201):
        out_dir = Path(case.argv[case.argv.index("--out") + 1]) if "--out" in case.argv else None
        skip = out_dir if out_dir is not None else tmp_path / "nothing"
        before = _snapshot(corpus["root"], skip) | _snapshot(tmp_path, skip)
        try:
            code = main(list(case.argv))
        except SystemExit as exit_:
            code = int(exit_.code or 0)
        except BaseException as error:  # a traceback: the one thing that must never happen
            failures.append(f"{case.name}: {type(error).__name__}: {error}"[:300])
            capsys.readouterr()
            continue
        _, err = capsys.readouterr()
        lines = [line for line in err.splitlines() if not line.startswith("dqnkit: warning:")]
        if "Traceback" in err:
            failures.append(f"{case.name}: traceback on stderr")
        elif code != 0 and len(lines) != 1:
            failures.append(f"{case.name}: exit {code} with {len(lines)} lines: {err[:200]!r}")
        elif case.must_fail and code == 0:
            failures.append(f"{case.name}: bad input accepted")
        after = _snapshot(corpus["root"], skip) | _snapshot(tmp_path, skip)
        changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
        if changed:  # created, changed or deleted outside the case's --out folder
            failures.append(f"{case.name}: touched {changed[:3]}")
    assert not corpus["marker"].exists(), corpus["marker"].read_text()
    assert PROBE not in sys.modules
    assert not failures, "\n".join(failures[:30])
