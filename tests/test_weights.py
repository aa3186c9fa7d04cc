"""The weights file: round trip, contract in the metadata, and refusals."""

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from dqnkit.core import ConvQNetwork, NatureQNetwork, QNetwork
from dqnkit.export.files import atomic_write
from dqnkit.export.weights import (
    PolicySpec,
    bounds_to_json,
    load_weights,
    network_config,
    save_weights,
)


def cartpole_spec(**overrides: object) -> PolicySpec:
    fields: dict[str, object] = {
        "env_id": "CartPole-v1",
        "obs_shape": (4,),
        "obs_dtype": "float32",
        "n_actions": 2,
        "network": {"kind": "mlp", "hidden": [16, 16]},
        "obs_low": [-4.8, "-inf", -0.42, "-inf"],
        "obs_high": [4.8, "inf", 0.42, "inf"],
        "train_steps": 1000,
        "eval_return": 500.0,
    }
    fields.update(overrides)
    return PolicySpec(**fields)  # type: ignore[arg-type]


def test_round_trip_keeps_values_and_spec(tmp_path: Path) -> None:
    net = QNetwork(4, 2, hidden=(16, 16))
    spec = cartpole_spec()
    save_weights(tmp_path / "w.safetensors", net, spec)
    loaded, loaded_spec = load_weights(tmp_path / "w.safetensors")
    assert loaded_spec == spec
    x = torch.randn(5, 4)
    assert torch.equal(loaded(x), net.eval()(x))
    assert not loaded.training


def test_conv_round_trip_includes_batch_norm_statistics(tmp_path: Path) -> None:
    net = ConvQNetwork((2, 30, 30), 3)
    net.train()(torch.rand(4, 2, 30, 30))  # moves the running statistics
    spec = cartpole_spec(
        obs_shape=(2, 30, 30),
        obs_dtype="uint8",
        n_actions=3,
        network={"kind": "conv"},
        obs_low=0.0,
        obs_high=255.0,
    )
    save_weights(tmp_path / "c.safetensors", net, spec)
    loaded, _ = load_weights(tmp_path / "c.safetensors")
    x = torch.randint(0, 256, (3, 2, 30, 30), dtype=torch.uint8)
    torch.testing.assert_close(loaded(x), net.eval()(x), rtol=0, atol=0)


def test_bounds_are_json_with_infinities_as_strings() -> None:
    assert bounds_to_json(np.full((3, 4), 255, dtype=np.uint8)) == 255.0
    assert bounds_to_json(np.array([1.0, np.inf, -np.inf], dtype=np.float32)) == [
        1.0,
        "inf",
        "-inf",
    ]


def test_refuses_missing_garbage_and_foreign_files(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no such weights file"):
        load_weights(tmp_path / "missing.safetensors")
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!")
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        load_weights(garbage)
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(1)}, str(tmp_path / "foreign.safetensors"))
    with pytest.raises(ValueError, match="without dqnkit policy metadata"):
        load_weights(tmp_path / "foreign.safetensors")


def test_truncated_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "w.safetensors"
    save_weights(path, QNetwork(4, 2, hidden=(16, 16)), cartpole_spec())
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        load_weights(path)


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "w.safetensors"
    save_weights(path, QNetwork(4, 2, hidden=(16, 16)), cartpole_spec())
    before = path.read_bytes()

    def write_half_then_fail(tmp: Path) -> None:
        tmp.write_bytes(before[: len(before) // 2])
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, write_half_then_fail)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["w.safetensors"]


def test_written_files_get_the_usual_permissions(tmp_path: Path) -> None:
    import os

    path = tmp_path / "w.safetensors"
    save_weights(path, QNetwork(4, 2, hidden=(16, 16)), cartpole_spec())
    mask = os.umask(0)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ("{not json", "not JSON"),
        ('{"format_version": 99}', "format_version 99 is not supported"),
        ('{"format_version": 1, "surprise": 1}', "unknown keys"),
    ],
)
def test_bad_policy_metadata_is_a_value_error(metadata: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PolicySpec.from_json(metadata)


@pytest.mark.parametrize(
    ("network", "obs_shape", "kind"),
    [
        (lambda: QNetwork(4, 2, hidden=(16, 16), dueling=True), (4,), "mlp"),
        (lambda: ConvQNetwork((2, 30, 30), 2, dueling=True), (2, 30, 30), "conv"),
        (lambda: NatureQNetwork((4, 84, 84), 2), (4, 84, 84), "nature"),
        (lambda: NatureQNetwork((4, 84, 84), 2, dueling=True), (4, 84, 84), "nature"),
    ],
)
def test_dueling_and_nature_networks_round_trip(
    tmp_path: Path, network: Any, obs_shape: tuple[int, ...], kind: str
) -> None:
    torch.manual_seed(0)
    net = network().eval()
    config = network_config(net)
    assert config["kind"] == kind
    assert config.get("dueling", False) == net.dueling
    image = len(obs_shape) == 3
    spec = cartpole_spec(
        obs_shape=obs_shape,
        obs_dtype="uint8" if image else "float32",
        network=config,
        obs_low=0.0 if image else -1.0,
        obs_high=255.0 if image else 1.0,
    )
    save_weights(tmp_path / "w.safetensors", net, spec)
    loaded, loaded_spec = load_weights(tmp_path / "w.safetensors")
    assert type(loaded) is type(net)
    assert loaded_spec.network == config
    obs = torch.randint(0, 256, (3, *obs_shape)).to(torch.uint8 if image else torch.float32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(obs), net(obs), rtol=0, atol=0)


def test_a_dueling_flag_that_is_not_a_bool_is_refused(tmp_path: Path) -> None:
    net = QNetwork(4, 2, hidden=(16, 16))
    spec = cartpole_spec(network={"kind": "mlp", "hidden": [16, 16], "dueling": "yes"})
    save_weights(tmp_path / "w.safetensors", net, spec)
    with pytest.raises(ValueError, match="dueling 'yes' is not true or false"):
        load_weights(tmp_path / "w.safetensors")
