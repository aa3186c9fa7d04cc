"""TrainConfig, presets, and the loop's small pure helpers."""

import dataclasses
from pathlib import Path

import pytest

from dqnkit.adapters import PRESETS, CommandError, TrainConfig, config_for
from dqnkit.adapters.train import _crossings, _passes_gate


def test_every_field_is_documented_for_the_cli() -> None:
    for f in dataclasses.fields(TrainConfig):
        assert f.metadata.get("help"), f"{f.name} has no help text"


@pytest.mark.parametrize("env_id", sorted(PRESETS))
def test_presets_are_valid_configs(env_id: str) -> None:
    config = config_for(env_id)
    assert config.env_id == env_id
    for name, value in PRESETS[env_id].items():
        assert getattr(config, name) == value


def test_pixels_select_the_pixel_preset() -> None:
    from dqnkit.adapters.config import PIXEL_PRESETS

    config = config_for("CartPole-v1", pixels=True)
    assert config.pixels
    assert config.frame_mode == "difference"  # the tutorial's input stays the default
    for name, value in PIXEL_PRESETS["CartPole-v1"].items():
        assert getattr(config, name) == value
    assert config_for("CartPole-v1", pixels=True, batch_size=8).batch_size == 8


def test_overrides_beat_the_preset_and_unknown_envs_get_the_tutorial_defaults() -> None:
    assert config_for("CartPole-v1", learning_rate=0.5).learning_rate == 0.5
    tutorial = config_for("Some-v0")
    assert (tutorial.learning_rate, tutorial.batch_size, tutorial.tau) == (1e-4, 128, 0.005)
    assert (tutorial.epsilon_start, tutorial.epsilon_end, tutorial.epsilon_steps) == (
        0.9,
        0.05,
        1000,
    )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"total_steps": 0}, "--steps must be positive"),
        ({"gamma": 1.5}, "--gamma must be in"),
        ({"tau": 0.0}, "--tau must be positive"),
        ({"hidden": ()}, "--hidden"),
        ({"epsilon_schedule": "cosine"}, "--epsilon-schedule"),
        ({"learning_starts": -1}, "--learning-starts must be non-negative"),
    ],
)
def test_bad_values_fail_up_front(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(CommandError, match=message):
        config_for("CartPole-v1", **overrides)


def test_config_round_trips_through_json(tmp_path: Path) -> None:
    config = config_for("CartPole-v1", seed=7, hidden=(32, 16), stop_return=None)
    (tmp_path / "config.json").write_text(config.to_json())
    assert TrainConfig.from_json_file(tmp_path / "config.json") == config


def test_crossings_counts_multiples_in_the_half_open_interval() -> None:
    assert _crossings(0, 1, 1) == 1
    assert _crossings(9, 10, 10) == 1
    assert _crossings(10, 11, 10) == 0
    assert _crossings(6, 14, 4) == 2  # 8 and 12
    assert _crossings(0, 0, 5) == 0


def test_evaluation_gate() -> None:
    rows = [{"episode_return": 500.0}] * 9
    assert _passes_gate(None, [])
    assert not _passes_gate(400.0, rows)  # fewer than 10 episodes yet
    assert _passes_gate(400.0, [{"episode_return": 300.0}, *rows])  # mean 480
    assert not _passes_gate(490.0, [{"episode_return": 300.0}, *rows])
