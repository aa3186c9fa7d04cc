"""A file someone sends you never runs code, and a broken policy never passes as good.

Each test builds the hostile file the way an attacker would (an env id naming a module that
writes a marker file when imported, a .pt2 whose sample inputs unpickle into code, metadata
that lies) and runs the real command on it in-process, asserting the one-line refusal and
that the marker was never written.
"""

import dataclasses
import io
import json
import math
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import tests.hostile_envs  # noqa: F401  (registers the dqnkit-test/ environments)
from dqnkit.adapters.cli import main
from dqnkit.adapters.envs import check_env_id
from dqnkit.adapters.errors import CommandError
from dqnkit.adapters.evaluation import DEFAULT_MAX_EPISODE_STEPS, run_episodes
from dqnkit.core import QNetwork
from dqnkit.export import export_policy
from dqnkit.export.artifacts import inspect_pt2, read_contract
from dqnkit.export.contract import PolicyMetadata
from dqnkit.export.parity import ParityError
from dqnkit.export.runtime import Policy
from dqnkit.export.weights import load_weights, save_weights
from tests.test_export import cartpole_policy

PROBE = "dqnkit_evil_probe"


def run(capsys: Any, *argv: str) -> tuple[int, str, str]:
    """``dqnkit ARGV`` in this process: (exit status, stdout, stderr). A traceback fails."""
    try:
        code = main(list(argv))
    except SystemExit as exit_:  # argparse's usage errors
        code = int(exit_.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 2, err
    assert err.startswith("dqnkit: error: ") or ": error: " in err.splitlines()[0], err
    assert err.count("\n") == 1, err
    for needle in needles:
        assert needle in err, err


@pytest.fixture
def probe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A module in the working directory (and on sys.path, as with PYTHONPATH=.) that writes
    a marker file when imported; returns the marker's path."""
    marker = tmp_path / "imported.txt"
    (tmp_path / f"{PROBE}.py").write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).write_text('code ran')\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield marker
    sys.modules.pop(PROBE, None)


def evil_spec_files(folder: Path, env_id: str) -> dict[str, Path]:
    """A weights file and ONNX/TorchScript exports whose metadata name ``env_id``."""
    net, spec = cartpole_policy(seed=1)
    spec = dataclasses.replace(spec, env_id=env_id)
    save_weights(folder / "policy.safetensors", net, spec)
    export_policy(
        net, spec, folder / "export", formats=("onnx", "torchscript"), n_sampled=8, batch_sizes=(4,)
    )
    return {
        "weights": folder / "policy.safetensors",
        "onnx": folder / "export" / "policy.onnx",
        "torchscript": folder / "export" / "policy.pt",
    }


def test_an_env_id_from_a_file_never_imports_its_module(
    probe: Path, tmp_path: Path, capsys: Any
) -> None:
    files = evil_spec_files(tmp_path / "evil", f"{PROBE}:CartPole-v1")
    commands = [
        ("evaluate", str(files["weights"]), "--episodes", "1"),
        ("export", str(files["weights"]), "--out", str(tmp_path / "out")),
        ("play", str(files["onnx"]), "--episodes", "1"),
        ("play", str(files["torchscript"]), "--episodes", "1"),
    ]
    for argv in commands:
        code, _, err = run(capsys, *argv)
        assert_one_line_error(code, err, f"names the Python module {PROBE!r}", "--env")
        assert not probe.exists(), argv
        assert PROBE not in sys.modules
    assert not (tmp_path / "out").exists()  # the refused export wrote nothing
    # The Python API refuses the same way.
    from dqnkit.adapters import evaluate

    with pytest.raises(CommandError, match="names the Python module"):
        evaluate(files["weights"], episodes=1)
    assert not probe.exists()


def test_the_stdlib_module_this_is_not_imported_either(tmp_path: Path, capsys: Any) -> None:
    files = evil_spec_files(tmp_path, "this:CartPole-v1")
    was_imported = "this" in sys.modules
    code, out, err = run(capsys, "evaluate", str(files["weights"]), "--episodes", "1")
    assert_one_line_error(code, err, "names the Python module 'this'")
    assert "Beautiful is better than ugly" not in out
    assert ("this" in sys.modules) == was_imported


def test_a_module_the_user_types_is_imported_as_gymnasium_does(
    probe: Path, tmp_path: Path, capsys: Any
) -> None:
    files = evil_spec_files(tmp_path / "evil", f"{PROBE}:CartPole-v1")
    typed = f"{PROBE}:CartPole-v1"
    argv = ("evaluate", str(files["weights"]), "--episodes", "2", "--env", typed)
    code, out, err = run(capsys, *argv)
    assert code == 0, err
    assert out.startswith(f"{typed}: ")
    assert probe.read_text() == "code ran"  # the user's own choice, and it really imports


def test_check_env_id_refuses_module_parts_and_non_strings() -> None:
    assert check_env_id("ALE/Pong-v5") == "ALE/Pong-v5"
    assert check_env_id("pkg:Env-v0", allow_import=True) == "pkg:Env-v0"
    with pytest.raises(CommandError, match="names the Python module 'pkg'"):
        check_env_id("pkg:Env-v0")
    for bad in ("", "  ", 3, None, ["CartPole-v1"]):
        with pytest.raises(CommandError, match="is not a non-empty string"):
            check_env_id(bad)


def _pt2_with_pickled_sample_inputs(tmp_path: Path, marker: Path) -> Path:
    """Our own .pt2, with its sample inputs replaced by a pickle that writes ``marker``."""
    net, spec = cartpole_policy(seed=2)
    export_policy(net, spec, tmp_path / "ok", formats=("pt2",), n_sampled=8, batch_sizes=(4,))

    class Payload:
        def __reduce__(self) -> tuple[Any, ...]:
            return (exec, (f"open({str(marker)!r}, 'w').write('unpickled')",))

    payload = io.BytesIO()
    torch.save(Payload(), payload)
    evil = tmp_path / "evil.pt2"
    with (
        zipfile.ZipFile(tmp_path / "ok" / "policy.pt2") as source,
        zipfile.ZipFile(evil, "w", zipfile.ZIP_STORED) as target,
    ):
        for info in source.infolist():
            data = source.read(info)
            if "/data/sample_inputs/" in info.filename:
                data = payload.getvalue()
            target.writestr(info.filename, data)
    return evil


def test_play_refuses_a_pt2_unless_trusted_and_flags_pickled_entries(
    tmp_path: Path, capsys: Any
) -> None:
    marker = tmp_path / "unpickled.txt"
    evil = _pt2_with_pickled_sample_inputs(tmp_path, marker)
    code, _, err = run(capsys, "play", str(evil), "--episodes", "1")
    assert_one_line_error(code, err, "can unpickle", "--trust-pickle")
    assert not marker.exists()
    # Reading its contract and inspecting it is data only.
    assert json.loads(read_contract("pt2", evil))["env_id"] == "CartPole-v1"
    assert inspect_pt2(evil) == [n for n in zipfile.ZipFile(evil).namelist() if "sample_in" in n]
    assert not marker.exists()
    assert inspect_pt2(tmp_path / "ok" / "policy.pt2") == []  # what dqnkit writes is clean
    # With the opt-in, the user is warned, and the payload is real: it runs.
    code, _, err = run(capsys, "play", str(evil), "--episodes", "1", "--trust-pickle")
    assert "warning: " in err
    assert "pickled entries" in err
    assert marker.read_text() == "unpickled"


def test_a_truncated_pt2_or_pt_is_a_one_line_error(tmp_path: Path, capsys: Any) -> None:
    net, spec = cartpole_policy(seed=2)
    export_policy(
        net, spec, tmp_path, formats=("pt2", "torchscript"), n_sampled=8, batch_sizes=(4,)
    )
    for name in ("policy.pt2", "policy.pt"):
        data = (tmp_path / name).read_bytes()
        (tmp_path / f"cut-{name}").write_bytes(data[: len(data) // 2])
        code, _, err = run(capsys, "play", str(tmp_path / f"cut-{name}"), "--trust-pickle")
        assert_one_line_error(code, err, f"cut-{name}")


def _weights_with_metadata(path: Path, metadata: str, tensors: dict[str, torch.Tensor]) -> Path:
    save_file(tensors, str(path), metadata={"dqnkit.policy": metadata})
    return path


def _cartpole_metadata(**overrides: Any) -> str:
    _, spec = cartpole_policy()
    data = json.loads(spec.to_json())
    data.update(overrides)
    return json.dumps(data)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"obs_shape": "abcd"}, "obs_shape 'abcd' is not a list of positive integers"),
        ({"obs_shape": [100000, 100000]}, "at most 16777216 elements"),
        ({"obs_shape": [4, True]}, "obs_shape"),
        ({"n_actions": 1e9}, "n_actions"),
        ({"n_actions": -2}, "n_actions"),
        ({"obs_low": [1, 2, 3]}, "a bound has 3 numbers"),
        ({"obs_low": [[1, 2], 3, 4, 5]}, "is not a number"),
        ({"env_id": 7}, "env_id"),
        ({"eval_return": "high"}, "eval_return"),
        ({"network": {"kind": "mlp", "hidden": [10**9]}}, "not those of the network"),
        ({"network": {"kind": "mlp", "hidden": "wide"}}, "is not widths"),
        ({"network": {"kind": "transformer"}}, "unknown network kind"),
        ({"action_meanings": ["left"]}, "is not a list of 2 names"),
    ],
)
def test_lying_weights_metadata_is_refused_before_anything_is_built(
    tmp_path: Path, capsys: Any, overrides: dict[str, Any], message: str
) -> None:
    net, _ = cartpole_policy()
    path = _weights_with_metadata(
        tmp_path / "w.safetensors", _cartpole_metadata(**overrides), net.state_dict()
    )
    with pytest.raises(ValueError, match=message):
        load_weights(path)
    code, _, err = run(capsys, "evaluate", str(path), "--episodes", "1")
    assert_one_line_error(code, err, str(path))


def test_deeply_nested_metadata_is_a_value_error_not_a_recursion_error(tmp_path: Path) -> None:
    nested = '{"format_version": 1, "network": ' + "[" * 100_000 + "]" * 100_000 + "}"
    net, _ = cartpole_policy()
    path = _weights_with_metadata(tmp_path / "w.safetensors", nested, net.state_dict())
    with pytest.raises(ValueError, match="nested too deeply"):
        load_weights(path)
    with pytest.raises(ValueError, match="nested too deeply"):
        PolicyMetadata.from_json(nested)


def test_an_onnx_whose_graph_differs_from_its_metadata_is_refused(tmp_path: Path) -> None:
    net, spec = cartpole_policy(seed=3)
    export_policy(net, spec, tmp_path, formats=("onnx",), n_sampled=8, batch_sizes=(4,))
    import onnx

    model = onnx.load(str(tmp_path / "policy.onnx"))
    contract = json.loads(model.metadata_props[0].value)
    for key, value, message in [
        ("obs_shape", [5], r"the graph takes \[.*, 4\] but its metadata says \[B, \*\(5,\)\]"),
        ("obs_shape", [4, 1], "the graph takes"),
        ("obs_dtype", "float64", "the graph takes tensor.float. but its metadata says float64"),
        ("obs_shape", [100000, 100000], "at most 16777216 elements"),
    ]:
        lie = {**contract, key: value, "obs_low": None, "obs_high": None}
        model.metadata_props[0].value = json.dumps(lie)
        onnx.save(model, str(tmp_path / "lying.onnx"))
        with pytest.raises(ValueError, match=message):
            Policy.load(tmp_path / "lying.onnx")


def test_the_runtime_refuses_q_values_that_overflow_on_a_finite_input(tmp_path: Path) -> None:
    net, spec = cartpole_policy(seed=3)
    with torch.no_grad():  # each first-layer unit sums 4 x float32 max: +inf, then inf - inf
        first = net.layers[0]
        assert isinstance(first, torch.nn.Linear)
        first.weight.fill_(1.0)
    export_policy(net, spec, tmp_path, formats=("onnx",), n_sampled=8, batch_sizes=(4,))
    policy = Policy.load(tmp_path / "policy.onnx")
    huge = np.full(4, np.finfo(np.float32).max, np.float32)
    assert np.isfinite(huge).all()
    with pytest.raises(ValueError, match="Q-values are not finite"):
        policy.act(huge)
    with pytest.raises(ValueError, match="Q-values are not finite"):
        policy.q_values(np.stack([np.zeros(4, np.float32), huge]))
    assert policy.act(np.zeros(4, np.float32)) in (0, 1)  # an ordinary input still acts


def _nan_policy() -> tuple[QNetwork, Any]:
    net, spec = cartpole_policy(seed=4)
    with torch.no_grad():
        last = net.layers[-1]
        assert isinstance(last, torch.nn.Linear)
        last.bias.fill_(math.nan)
    return net, spec


def test_export_fails_a_policy_whose_q_values_are_nan(tmp_path: Path, capsys: Any) -> None:
    net, spec = _nan_policy()
    with pytest.raises(ParityError, match="with non-finite Q-values") as caught:
        export_policy(net, spec, tmp_path / "api", n_sampled=8, batch_sizes=(4,))
    assert not (tmp_path / "api").exists()
    assert all(c["non_finite"] == c["count"] for cs in caught.value.checks.values() for c in cs)
    save_weights(tmp_path / "nan.safetensors", net, spec)
    for episodes in ("0", "2"):  # the parity check alone, and the episode collection first
        code, out, err = run(
            capsys, "export", str(tmp_path / "nan.safetensors"), "--episodes", episodes
        )
        assert_one_line_error(code, err, "not finite" if episodes == "2" else "non-finite")
        assert "actions identical" not in out
    assert not (tmp_path / "export").exists()


def test_evaluate_says_when_q_values_are_not_finite(tmp_path: Path, capsys: Any) -> None:
    net, spec = _nan_policy()
    save_weights(tmp_path / "nan.safetensors", net, spec)
    code, _, err = run(capsys, "evaluate", str(tmp_path / "nan.safetensors"), "--episodes", "1")
    assert_one_line_error(code, err, "Q-values are not finite")


def test_evaluate_checks_the_environment_against_the_policy(tmp_path: Path, capsys: Any) -> None:
    net, spec = cartpole_policy()
    save_weights(tmp_path / "w.safetensors", net, spec)
    code, _, err = run(capsys, "evaluate", str(tmp_path / "w.safetensors"), "--env", "Acrobot-v1")
    assert_one_line_error(code, err, "Acrobot-v1 observations have shape (6,)")


@pytest.mark.parametrize(
    ("env_id", "message", "commands"),
    [
        ("dqnkit-test/RaiseOnStep-v0", "raised RuntimeError in step(): the simulator lost", 3),
        ("dqnkit-test/RaiseOnReset-v0", "raised OSError in reset(): no such level file", 3),
        ("dqnkit-test/NaNObservation-v0", "returned a non-finite observation", 3),
        # export only collects observations: the rewards do not matter to it.
        ("dqnkit-test/NaNReward-v0", "returned a reward of nan", 2),
        ("dqnkit-test/MatrixObservation-v0", "observations have shape (2, 2); dqnkit takes", 3),
        ("dqnkit-test/ScalarObservation-v0", "observations have shape (); dqnkit takes", 3),
        ("dqnkit-test/ShiftedActions-v0", "starting at 5", 3),
    ],
)
def test_hostile_environments_get_one_line_errors(
    tmp_path: Path, capsys: Any, env_id: str, message: str, commands: int
) -> None:
    net, spec = cartpole_policy()
    save_weights(tmp_path / "w.safetensors", net, spec)
    export_policy(net, spec, tmp_path / "x", formats=("onnx",), n_sampled=8, batch_sizes=(4,))
    out = str(tmp_path / "o")
    for argv in (
        ("evaluate", str(tmp_path / "w.safetensors"), "--episodes", "2", "--env", env_id),
        ("play", str(tmp_path / "x" / "policy.onnx"), "--episodes", "2", "--env", env_id),
        ("export", str(tmp_path / "w.safetensors"), "--out", out, "--env", env_id),
    )[:commands]:
        code, _, err = run(capsys, *argv)
        assert_one_line_error(code, err, message)
    assert not (tmp_path / "o").exists()


def test_episodes_of_an_environment_without_a_time_limit_are_bounded() -> None:
    import gymnasium as gym

    result = run_episodes(
        lambda obs: np.zeros(len(obs), np.int64),
        lambda: gym.make("dqnkit-test/NeverEnds-v0"),
        episodes=3,
        seed=0,
    )
    assert result.lengths == [DEFAULT_MAX_EPISODE_STEPS] * 3
    short = run_episodes(
        lambda obs: np.zeros(len(obs), np.int64),
        lambda: gym.make("dqnkit-test/NeverEnds-v0"),
        episodes=2,
        seed=0,
        max_episode_steps=7,
    )
    assert short.lengths == [7, 7]
    assert short.returns == [7.0, 7.0]


@pytest.mark.parametrize(
    "argv",
    [
        ("evaluate", "RUN", "--seed", "-1"),
        ("evaluate", "RUN", "--seed", str(2**64)),
        ("evaluate", "RUN", "--episodes", "0"),
        ("export", "RUN", "--atol", "nan"),
        ("export", "RUN", "--rtol", "inf"),
        ("export", "RUN", "--atol", "-1"),
        ("export", "RUN", "--seed", "-1"),
        ("export", "RUN", "--episodes", "-3"),
        ("play", "RUN/export/policy.onnx", "--seed", "1e3"),
        ("play", "RUN/export/policy.onnx", "--episodes", "0"),
    ],
)
def test_bad_option_values_are_one_line_usage_errors(
    tmp_path: Path, capsys: Any, argv: tuple[str, ...]
) -> None:
    code, _, err = run(capsys, *(a.replace("RUN", str(tmp_path)) for a in argv))
    assert code == 2
    assert err.count("\n") == 1, err
    assert "error: argument --" in err, err


def test_evaluate_and_export_point_an_artifact_to_play(tmp_path: Path, capsys: Any) -> None:
    net, spec = cartpole_policy()
    export_policy(net, spec, tmp_path, formats=("onnx",), n_sampled=8, batch_sizes=(4,))
    for command in ("evaluate", "export"):
        code, _, err = run(capsys, command, str(tmp_path / "policy.onnx"))
        assert_one_line_error(code, err, f"dqnkit play {tmp_path / 'policy.onnx'}")


def test_export_to_a_file_or_an_impossible_folder_is_a_one_line_error(
    tmp_path: Path, capsys: Any
) -> None:
    net, spec = cartpole_policy()
    save_weights(tmp_path / "w.safetensors", net, spec)
    (tmp_path / "a-file").write_text("keep me")
    code, _, err = run(
        capsys, "export", str(tmp_path / "w.safetensors"), "--out", str(tmp_path / "a-file")
    )
    assert_one_line_error(code, err, "exists and is not a folder")
    assert (tmp_path / "a-file").read_text() == "keep me"
    too_long = tmp_path / ("x" * 300)
    code, _, err = run(
        capsys, "export", str(tmp_path / "w.safetensors"), "--out", str(too_long), "--episodes", "0"
    )
    assert_one_line_error(code, err, "cannot write the export")


def test_an_abandoned_staging_folder_is_removed_by_the_next_export(tmp_path: Path) -> None:
    net, spec = cartpole_policy()
    dead = tmp_path / ".dqnkit-export-999999999-abc"  # no such process
    dead.mkdir()
    (dead / "policy.onnx").write_bytes(b"half")
    export_policy(net, spec, tmp_path, formats=("onnx",), n_sampled=8, batch_sizes=(4,))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["policy.export.json", "policy.onnx"]
