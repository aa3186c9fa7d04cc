"""Export: the three formats, their contract, parity at export time and all-or-nothing files."""

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch

from dqnkit.core import ConvQNetwork, QNetwork
from dqnkit.export import ParityError, PolicySpec, artifacts, export_policy, save_weights
from dqnkit.export.artifacts import FORMATS, read_contract, runner
from dqnkit.export.parity import SAMPLE_LIMIT, sample_observations
from dqnkit.export.weights import network_config

CARTPOLE_LOW: list[float | str] = [-4.8, "-inf", -0.41887903, "-inf"]
CARTPOLE_HIGH: list[float | str] = [4.8, "inf", 0.41887903, "inf"]


def cartpole_policy(*, seed: int = 0, obs_dtype: str = "float32") -> tuple[QNetwork, PolicySpec]:
    """A small random-init CartPole MLP and its spec (fixtures for export/runtime/play tests)."""
    torch.manual_seed(seed)
    net = QNetwork(4, 2, hidden=(16, 16))
    uint8 = obs_dtype == "uint8"
    spec = PolicySpec(
        env_id="CartPole-v1",
        obs_shape=(4,),
        obs_dtype=obs_dtype,
        n_actions=2,
        network=network_config(net),
        obs_low=0.0 if uint8 else CARTPOLE_LOW,
        obs_high=255.0 if uint8 else CARTPOLE_HIGH,
        action_meanings=["push left", "push right"],
        train_steps=1234,
        eval_return=21.5,
    )
    return net, spec


def save_cartpole_weights(path: Path, *, seed: int = 0) -> tuple[QNetwork, PolicySpec]:
    net, spec = cartpole_policy(seed=seed)
    save_weights(path, net, spec)
    return net, spec


def reject_constants(name: str) -> Any:
    raise ValueError(f"JSON holds {name}, which JavaScript cannot parse")


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[QNetwork, PolicySpec, Path]:
    net, spec = cartpole_policy()
    out = tmp_path_factory.mktemp("export")
    episodes = np.random.default_rng(1).normal(0.0, 0.5, size=(40, 4)).astype(np.float32)
    export_policy(net, spec, out, observations=episodes)
    return net, spec, out


def test_writes_each_format_and_a_report_and_nothing_else(exported: Any) -> None:
    _, _, out = exported
    assert sorted(p.name for p in out.iterdir()) == [
        "policy.export.json",
        "policy.onnx",
        "policy.pt",
        "policy.pt2",
    ]
    report = json.loads((out / "policy.export.json").read_text(), parse_constant=reject_constants)
    assert report["env_id"] == "CartPole-v1"
    assert report["tolerance"]["atol"] == 1e-4
    assert set(report["formats"]) == {"onnx", "torchscript", "pt2"}
    for entry in report["formats"].values():
        seen = {(c["observations"], c["batch_size"]) for c in entry["checks"]}
        assert seen == {(s, b) for s in ("sampled", "episodes") for b in (1, 7, 256)}
        for check in entry["checks"]:
            assert check["ok"] is True
            assert check["action_mismatches"] == 0
            assert 0.0 <= check["max_abs_dq"] <= 1e-4
    # Batch 7 over 256 sampled observations wraps round to 37 full batches.
    sampled_7 = next(c for c in report["formats"]["onnx"]["checks"] if c["batch_size"] == 7)
    assert sampled_7["count"] == 259


@pytest.mark.parametrize("fmt", FORMATS)
def test_artifact_returns_q_values_and_greedy_action_for_any_batch(exported: Any, fmt: str) -> None:
    net, _, out = exported
    path = out / {"onnx": "policy.onnx", "torchscript": "policy.pt", "pt2": "policy.pt2"}[fmt]
    run = runner(fmt, path, trust_pickle=True)  # type: ignore[arg-type]  # our own file
    for batch in (1, 3, 300):
        obs = np.random.default_rng(batch).normal(size=(batch, 4)).astype(np.float32)
        q, action = run(obs)
        with torch.no_grad():
            expected = net.eval()(torch.from_numpy(obs)).numpy()
        assert q.shape == (batch, 2)
        assert q.dtype == np.float32
        assert action.shape == (batch,)
        assert action.dtype == np.int64
        np.testing.assert_allclose(q, expected, rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(action, expected.argmax(axis=1))


@pytest.mark.parametrize("fmt", FORMATS)
def test_artifact_carries_the_contract_and_its_own_parity(exported: Any, fmt: str) -> None:
    _, spec, out = exported
    path = out / {"onnx": "policy.onnx", "torchscript": "policy.pt", "pt2": "policy.pt2"}[fmt]
    contract = json.loads(read_contract(fmt, path), parse_constant=reject_constants)  # type: ignore[arg-type]
    assert contract["artifact_version"] == 1
    assert contract["dqnkit_version"] == "0.1.0"
    assert contract["env_id"] == "CartPole-v1"
    assert contract["obs_shape"] == [4]
    assert contract["obs_dtype"] == "float32"
    assert contract["obs_low"] == CARTPOLE_LOW
    assert contract["obs_high"] == CARTPOLE_HIGH
    assert contract["n_actions"] == 2
    assert contract["action_meanings"] == ["push left", "push right"]
    assert contract["train_steps"] == 1234
    assert contract["eval_return"] == 21.5
    assert contract["input"] == "obs"
    assert contract["outputs"] == ["q_values", "action"]
    report = json.loads((out / "policy.export.json").read_text())
    assert contract["parity"]["checks"] == report["formats"][fmt]["checks"]
    assert spec.env_id == contract["env_id"]


def test_onnx_is_checker_clean_self_contained_with_a_dynamic_batch(exported: Any) -> None:
    _, _, out = exported
    model = onnx.load_model(str(out / "policy.onnx"))
    onnx.checker.check_model(model, full_check=True)
    for tensor in model.graph.initializer:
        assert tensor.data_location != onnx.TensorProto.EXTERNAL
    (obs,) = model.graph.input
    dims = obs.type.tensor_type.shape.dim
    assert obs.name == "obs"
    assert dims[0].dim_param == "batch"
    assert dims[1].dim_value == 4
    assert [o.name for o in model.graph.output] == ["q_values", "action"]
    assert [p.key for p in model.metadata_props] == ["dqnkit"]


def _perturb_onnx(original: Any) -> Any:
    def write(fmt: str, graph: Any, example: Any, path: Path, contract: str) -> None:
        original(fmt, graph, example, path, contract)
        if fmt == "onnx":  # a deliberate corruption after export: one weight moves by 0.5
            model = onnx.load_model(str(path))
            weight = model.graph.initializer[0]
            values = onnx.numpy_helper.to_array(weight).copy()
            values.flat[0] += 0.5
            weight.CopyFrom(onnx.numpy_helper.from_array(values, weight.name))
            onnx.save_model(model, str(path))

    return write


def test_parity_failure_raises_with_figures_and_leaves_files_untouched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    net, spec = cartpole_policy()
    monkeypatch.setattr(artifacts, "write_artifact", _perturb_onnx(artifacts.write_artifact))
    out = tmp_path / "existing"
    out.mkdir()
    (out / "policy.onnx").write_bytes(b"an older export")
    with pytest.raises(ParityError, match=r"onnx: sampled at batch 1: max \|dq\| [0-9.e-]+, ") as e:
        export_policy(net, spec, out, formats=("onnx", "torchscript"), batch_sizes=(1, 7))
    assert "no file was written" in str(e.value)
    assert "torchscript" not in str(e.value).split("failed parity")[1]  # it passed
    onnx_checks = e.value.checks["onnx"]
    assert not any(c["ok"] for c in onnx_checks)
    assert all(c["max_abs_dq"] > 1e-3 for c in onnx_checks)
    assert all(c["ok"] for c in e.value.checks["torchscript"])
    assert [p.name for p in out.iterdir()] == ["policy.onnx"]
    assert (out / "policy.onnx").read_bytes() == b"an older export"
    fresh = tmp_path / "fresh"
    with pytest.raises(ParityError):
        export_policy(net, spec, fresh, formats=("onnx",), batch_sizes=(7,))
    assert not fresh.exists()


def test_uint8_conv_policy_scales_frames_inside_the_graph(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = ConvQNetwork((2, 30, 30), 3)
    net.train()(torch.rand(8, 2, 30, 30))  # move the batch-norm statistics off their defaults
    spec = PolicySpec(
        env_id="PixelCartPole",
        obs_shape=(2, 30, 30),
        obs_dtype="uint8",
        n_actions=3,
        network=network_config(net),
        obs_low=0.0,
        obs_high=255.0,
        preprocessing={"frames": 2, "size": [30, 30]},
    )
    result = export_policy(
        net, spec, tmp_path, formats=("onnx",), n_sampled=16, batch_sizes=(1, 16)
    )
    model = onnx.load_model(str(result.files["onnx"]))
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    frames = np.random.default_rng(0).integers(0, 256, size=(5, 2, 30, 30), dtype=np.uint8)
    q, action = runner("onnx", result.files["onnx"])(frames)
    with torch.no_grad():
        expected = net.eval()(torch.from_numpy(frames)).numpy()
    np.testing.assert_allclose(q, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(action, expected.argmax(axis=1))
    assert all(c.ok for c in result.checks["onnx"])


def test_sampling_stays_within_bounds_and_clips_infinite_ones() -> None:
    _, spec = cartpole_policy()
    obs = sample_observations(spec, 2000, seed=0)
    assert obs.shape == (2000, 4)
    assert obs.dtype == np.float32
    assert np.isfinite(obs).all()
    assert np.abs(obs[:, 0]).max() <= 4.8
    assert np.abs(obs[:, 2]).max() <= 0.41887903
    # The infinite velocity bounds are clipped to +-SAMPLE_LIMIT, and that range is used.
    assert np.abs(obs[:, [1, 3]]).max() <= SAMPLE_LIMIT
    assert np.abs(obs[:, [1, 3]]).max() > 0.9 * SAMPLE_LIMIT
    np.testing.assert_array_equal(obs, sample_observations(spec, 2000, seed=0))
    _, bytes_spec = cartpole_policy(obs_dtype="uint8")
    frames = sample_observations(bytes_spec, 2000, seed=0)
    assert frames.dtype == np.uint8
    assert frames.min() == 0
    assert frames.max() == 255


def test_bad_arguments_are_refused_before_anything_is_written(tmp_path: Path) -> None:
    net, spec = cartpole_policy()
    with pytest.raises(ValueError, match="unknown format 'tflite'"):
        export_policy(net, spec, tmp_path / "a", formats=("tflite",))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"expected \[N, \*\(4,\)\]"):
        export_policy(net, spec, tmp_path / "b", observations=np.zeros((3, 5), np.float32))
    with pytest.raises(ValueError, match="non-finite"):
        export_policy(net, spec, tmp_path / "c", observations=np.full((3, 4), np.nan))
    assert list(tmp_path.iterdir()) == []
