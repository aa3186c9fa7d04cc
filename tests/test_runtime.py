"""The torch-free runtime: no torch import, single vs batch, refusals, session options."""

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from dqnkit.export import export_policy
from dqnkit.export.runtime import Policy, default_session_options
from tests.test_export import cartpole_policy


@pytest.fixture(scope="module")
def float_policy(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    net, spec = cartpole_policy(seed=3)
    out = tmp_path_factory.mktemp("float")
    export_policy(net, spec, out, formats=("onnx",), n_sampled=32, batch_sizes=(1, 32))
    return net, out / "policy.onnx"


@pytest.fixture(scope="module")
def uint8_policy(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    net, spec = cartpole_policy(seed=4, obs_dtype="uint8")
    out = tmp_path_factory.mktemp("uint8")
    export_policy(net, spec, out, formats=("onnx",), n_sampled=32, batch_sizes=(1, 32))
    return net, out / "policy.onnx"


def test_importing_the_runtime_imports_no_torch() -> None:
    code = (
        "import sys, dqnkit.export.runtime, dqnkit.export;"
        "print('torch' in sys.modules, 'dqnkit.export.runtime' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "True"]


def test_one_observation_and_a_batch_match_pytorch(float_policy: Any) -> None:
    net, path = float_policy
    policy = Policy.load(path)
    obs = np.random.default_rng(0).normal(size=(9, 4)).astype(np.float32)
    with torch.no_grad():
        expected = net.eval()(torch.from_numpy(obs)).numpy()
    q = policy.q_values(obs)
    assert q.shape == (9, 2)
    np.testing.assert_allclose(q, expected, rtol=1e-5, atol=1e-5)
    actions = policy.act(obs)
    assert actions.shape == (9,)
    assert actions.dtype == np.int64
    np.testing.assert_array_equal(actions, expected.argmax(axis=1))
    for i in range(9):
        action = policy.act(obs[i])
        assert type(action) is int
        assert action == expected[i].argmax()
        assert policy.q_values(obs[i]).shape == (2,)
        np.testing.assert_allclose(policy.q_values(obs[i]), expected[i], rtol=1e-5, atol=1e-5)
    # Lists, float64 and non-contiguous arrays are converted; the answer does not change.
    assert policy.act(obs[0].tolist()) == expected[0].argmax()
    np.testing.assert_array_equal(policy.act(obs.astype(np.float64)), actions)
    wide = np.repeat(obs, 2, axis=1)[:, ::2]
    assert not wide.flags.c_contiguous
    np.testing.assert_array_equal(policy.act(wide), actions)


def test_metadata_is_the_contract(float_policy: Any) -> None:
    _, path = float_policy
    meta = Policy.load(path).metadata
    assert meta.env_id == "CartPole-v1"
    assert meta.obs_shape == (4,)
    assert meta.obs_dtype == "float32"
    assert meta.n_actions == 2
    assert meta.action_meanings == ["push left", "push right"]
    assert meta.train_steps == 1234
    assert meta.eval_return == 21.5
    assert meta.obs_high is not None
    np.testing.assert_array_equal(meta.obs_high, [4.8, np.inf, 0.41887903, np.inf])
    assert meta.parity is not None
    assert [c["batch_size"] for c in meta.parity["checks"]] == [1, 32]


@pytest.mark.parametrize(
    ("obs", "message"),
    [
        (np.zeros(5, np.float32), r"shape \(5,\) is neither \(4,\) nor \[B, \*\(4,\)\]"),
        (np.zeros((2, 2, 4), np.float32), r"shape \(2, 2, 4\)"),
        (np.array([0.0, np.nan, 0.0, 0.0], np.float32), "non-finite"),
        (np.array([[0.0, 0.0, np.inf, 0.0]]), "non-finite"),
        (np.array(["a", "b", "c", "d"]), "dtype <U1 is not numeric"),
        (np.array([object(), 1, 2, 3], dtype=object), "dtype object is not numeric"),
    ],
)
def test_float_policy_refuses_bad_observations(float_policy: Any, obs: Any, message: str) -> None:
    policy = Policy.load(float_policy[1])
    with pytest.raises(ValueError, match=message):
        policy.act(obs)
    with pytest.raises(ValueError, match=message):
        policy.q_values(obs)


def test_uint8_policy_takes_integers_and_refuses_floats(uint8_policy: Any) -> None:
    net, path = uint8_policy
    policy = Policy.load(path)
    frames = np.array([[0, 17, 255, 128], [3, 4, 5, 6]], dtype=np.uint8)
    with torch.no_grad():
        expected = net.eval()(torch.from_numpy(frames)).numpy()
    np.testing.assert_array_equal(policy.act(frames), expected.argmax(axis=1))
    np.testing.assert_array_equal(policy.act(frames.astype(np.int64)), expected.argmax(axis=1))
    with pytest.raises(ValueError, match="float32 given to a uint8 policy"):
        policy.act(frames.astype(np.float32))
    with pytest.raises(ValueError, match="outside the uint8 range"):
        policy.act(np.array([0, 1, 2, 256]))


def test_session_defaults_to_one_thread_and_can_be_overridden(float_policy: Any) -> None:
    defaults = default_session_options()
    assert defaults.intra_op_num_threads == 1
    assert defaults.inter_op_num_threads == 1
    assert defaults.execution_mode == ort.ExecutionMode.ORT_SEQUENTIAL
    assert defaults.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options = default_session_options()
    options.intra_op_num_threads = 2
    policy = Policy.load(
        float_policy[1], session_options=options, providers=["CPUExecutionProvider"]
    )
    assert policy.session.get_session_options().intra_op_num_threads == 2
    assert policy.session.get_providers() == ["CPUExecutionProvider"]
    assert Policy.load(float_policy[1]).session.get_session_options().intra_op_num_threads == 1


def test_load_refuses_missing_foreign_and_non_dqnkit_files(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no such ONNX file"):
        Policy.load(tmp_path / "missing.onnx")
    (tmp_path / "garbage.onnx").write_bytes(b"not a model")
    with pytest.raises(ValueError, match="not a loadable ONNX model"):
        Policy.load(tmp_path / "garbage.onnx")
    node = onnx.helper.make_node("Identity", ["obs"], ["q_values"])
    value = onnx.helper.make_tensor_value_info("obs", onnx.TensorProto.FLOAT, [1, 4])
    out = onnx.helper.make_tensor_value_info("q_values", onnx.TensorProto.FLOAT, [1, 4])
    graph = onnx.helper.make_graph([node], "g", [value], [out])
    onnx.save_model(
        onnx.helper.make_model(
            graph, ir_version=10, opset_imports=[onnx.helper.make_opsetid("", 20)]
        ),
        str(tmp_path / "plain.onnx"),
    )
    with pytest.raises(ValueError, match="without dqnkit metadata"):
        Policy.load(tmp_path / "plain.onnx")
