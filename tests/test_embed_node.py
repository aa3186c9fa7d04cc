"""The Node.js example: onnxruntime-node runs policy.onnx like Python and reads its metadata."""

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from dqnkit.export import export_policy
from dqnkit.export.runtime import Policy
from tests.test_embed_cpp import parse_output
from tests.test_export import cartpole_policy

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "node"


def install_example() -> None:
    """``npm ci`` when node_modules is missing; skips when node/npm or the registry is not there."""
    missing = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"Node toolchain missing: {', '.join(missing)} not on PATH")
    if (EXAMPLE / "node_modules" / "onnxruntime-node").is_dir():
        return
    done = subprocess.run(
        ["npm", "ci", "--no-audit", "--no-fund"],
        cwd=EXAMPLE,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        if any(s in done.stderr for s in ("ENOTFOUND", "EAI_AGAIN", "ECONNREFUSED", "ETIMEDOUT")):
            pytest.skip(f"npm registry unreachable: {tail}")
        raise AssertionError(f"npm ci failed: {done.stderr}")


@pytest.mark.slow
def test_node_program_prints_the_actions_q_values_and_metadata_of_python(tmp_path: Path) -> None:
    install_example()
    net, spec = cartpole_policy(seed=12)
    result = export_policy(
        net, spec, tmp_path, formats=("onnx",), n_sampled=16, batch_sizes=(1, 16)
    )
    model = result.files["onnx"]
    obs = np.random.default_rng(3).normal(0.0, 1.0, size=(12, 4)).astype(np.float32)
    obs_file = tmp_path / "obs.txt"
    obs_file.write_text("\n".join(" ".join(repr(float(v)) for v in row) for row in obs) + "\n")
    done = subprocess.run(
        ["node", str(EXAMPLE / "policy_infer.js"), str(model), str(obs_file)],
        capture_output=True,
        text=True,
        check=True,
    )
    metadata, actions, q = parse_output(done.stdout)
    policy = Policy.load(model)
    assert metadata == policy.metadata.raw
    assert json.dumps(metadata)  # plain JSON: JavaScript parsed it
    np.testing.assert_array_equal(actions, policy.act(obs))
    np.testing.assert_allclose(q, policy.q_values(obs), rtol=1e-6, atol=1e-6)
