"""The C++ example: built against the torch wheel's LibTorch, it runs policy.pt like Python."""

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from dqnkit.export import export_policy
from dqnkit.export.artifacts import read_contract, runner
from tests.test_export import cartpole_policy

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "cpp"


def build_example() -> Path:
    """Builds examples/cpp once per source/torch version, under examples/cpp/build/<key>/."""
    missing = [tool for tool in ("g++", "cmake") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"C++ toolchain missing: {', '.join(missing)} not on PATH")
    digest = hashlib.sha256(torch.__version__.encode())
    for name in ("CMakeLists.txt", "policy_infer.cpp"):
        digest.update((EXAMPLE / name).read_bytes())
    build = EXAMPLE / "build" / digest.hexdigest()[:16]
    binary = build / "policy_infer"
    if binary.is_file():
        return binary
    # About 25-60 s on 2 cores (one translation unit that includes torch/script.h).
    subprocess.run(
        [
            "cmake",
            "-S",
            str(EXAMPLE),
            "-B",
            str(build),
            "-DCMAKE_PREFIX_PATH=" + torch.utils.cmake_prefix_path,
        ],
        check=True,
        capture_output=True,
    )
    subprocess.run(["cmake", "--build", str(build), "-j", "2"], check=True, capture_output=True)
    return binary


def parse_output(stdout: str) -> tuple[dict[str, object], np.ndarray, np.ndarray]:
    lines = stdout.splitlines()
    prefix = "# dqnkit metadata: "
    assert lines[0].startswith(prefix)
    rows = [line.split() for line in lines[1:]]
    actions = np.array([int(r[0]) for r in rows])
    q = np.array([[float(v) for v in r[1:]] for r in rows], dtype=np.float32)
    return json.loads(lines[0][len(prefix) :]), actions, q


@pytest.mark.slow
def test_cpp_program_prints_the_actions_q_values_and_metadata_of_python(tmp_path: Path) -> None:
    binary = build_example()
    net, spec = cartpole_policy(seed=11)
    result = export_policy(
        net, spec, tmp_path, formats=("torchscript",), n_sampled=16, batch_sizes=(1, 16)
    )
    model = result.files["torchscript"]
    obs = np.random.default_rng(2).normal(0.0, 1.0, size=(12, 4)).astype(np.float32)
    obs_file = tmp_path / "obs.txt"
    obs_file.write_text("\n".join(" ".join(repr(float(v)) for v in row) for row in obs) + "\n")
    expected_q, expected_actions = runner("torchscript", model)(obs)

    from_file = subprocess.run(
        [str(binary), str(model), str(obs_file)], capture_output=True, text=True, check=True
    )
    from_stdin = subprocess.run(
        [str(binary), str(model)],
        input=obs_file.read_text(),
        capture_output=True,
        text=True,
        check=True,
    )
    assert from_file.stdout == from_stdin.stdout
    metadata, actions, q = parse_output(from_file.stdout)
    assert metadata == json.loads(read_contract("torchscript", model))
    assert metadata["env_id"] == "CartPole-v1"
    np.testing.assert_array_equal(actions, expected_actions)
    # %.9g prints a float32 exactly; the only difference allowed is LibTorch vs torch batching.
    np.testing.assert_allclose(q, expected_q, rtol=1e-6, atol=1e-6)


@pytest.mark.slow
def test_cpp_program_refuses_a_wrong_observation_length(tmp_path: Path) -> None:
    binary = build_example()
    net, spec = cartpole_policy(seed=11)
    result = export_policy(
        net, spec, tmp_path, formats=("torchscript",), n_sampled=8, batch_sizes=(8,)
    )
    done = subprocess.run(
        [str(binary), str(result.files["torchscript"])],
        input="1 2 3\n",
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1
    assert done.stderr == "policy_infer: error: an observation has 3 numbers, the policy takes 4\n"
