"""TrainConfig, presets, and the loop's small pure helpers."""

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from dqnkit.adapters import PRESETS, CommandError, TrainConfig, config_for
from dqnkit.adapters.evaluation import EvalResult
from dqnkit.adapters.loop_state import LoopState
from dqnkit.adapters.training import _crossings, _periodic_evaluation


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
        ({"learning_rate": float("inf")}, "--learning-rate must be a finite number"),
        ({"learning_rate": float("nan")}, "--learning-rate must be a finite number"),
        ({"max_grad_norm": float("nan")}, "--max-grad-norm must be a finite number"),
        ({"huber_delta": float("inf")}, "--huber-delta must be a finite number"),
        ({"gamma": float("nan")}, "--gamma must be a finite number"),
        ({"stop_return": float("inf")}, "--stop-return must be a finite number"),
        ({"seed": -1}, "--seed must be in"),
        ({"seed": 2**64}, "--seed must be in"),
        ({"device": "bogus"}, "--device 'bogus' is not a torch device"),
        ({"device": "cuda:7"}, "--device cuda:7"),
        ({"device": "meta"}, "dqnkit trains on cpu, cuda or mps"),
        ({"frames": 2}, "--frames and --frame-mode apply only with --pixels"),
        ({"frame_mode": "stack"}, "--frames and --frame-mode apply only with --pixels"),
        ({"pixels": True, "total_steps": 5_000}, "would never learn"),
        ({"hidden": (10**9, 10**9)}, "needs more memory than this machine has"),
        ({"buffer_size": 10**15}, "--buffer-size 1000000000000000 cannot fit"),
        ({"batch_size": 10**15}, "--batch-size 1000000000000000 cannot fit"),
        ({"learning_rate": "0.1"}, "--learning-rate has the wrong type"),
        ({"num_envs": True}, "--num-envs has the wrong type"),
        ({"n_step": 0}, "--n-step must be positive"),
        ({"n_step": 101}, "--n-step must be at most 100"),
        ({"cnn": "nature"}, "--cnn applies only to screens"),
        ({"frame_skip": 2}, "--frame-skip applies only with --pixels"),
        ({"pixels": True, "frame_skip": 0}, r"--frame-skip must be in \[1, 8\]"),
        ({"pixels": True, "frame_skip": 9}, r"--frame-skip must be in \[1, 8\]"),
        ({"pixels": True, "cnn": "resnet"}, "--cnn must be 'auto', 'tutorial' or 'nature'"),
        ({"pixels": True, "frame_mode": "sum"}, "--frame-mode must be 'difference' or 'stack'"),
        ({"epsilon_schedule": "cosine"}, "--epsilon-schedule must be 'linear' or 'exponential'"),
        ({"late_learning_rate": 0.0}, "--late-learning-rate must be positive"),
        ({"late_learning_rate": 1e-5, "late_after": -1}, "--late-after must be non-negative"),
    ],
)
def test_bad_values_fail_up_front(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(CommandError, match=message):
        config_for("CartPole-v1", **overrides)


def test_n_step_combines_with_pixels_atari_and_clipped_rewards() -> None:
    # The frame ring builds n-step windows at sample time; clipping is per reward (issue 12).
    assert config_for("CartPole-v1", pixels=True, n_step=3).n_step == 3
    assert config_for("ALE/Pong-v5", n_step=3).clip_rewards
    assert config_for("CartPole-v1", n_step=3, clip_rewards=True).n_step == 3


def test_cnn_auto_is_the_tutorials_for_cartpole_screens_and_natures_for_atari() -> None:
    from dqnkit.adapters.learner import build_network
    from dqnkit.core import ConvQNetwork, NatureQNetwork

    screens = (1, 40, 80)
    pixels = config_for("CartPole-v1", pixels=True)
    assert (pixels.cnn, pixels.cnn_kind) == ("auto", "tutorial")
    assert type(build_network(screens, 2, pixels)) is ConvQNetwork
    nature = config_for("CartPole-v1", pixels=True, cnn="nature")
    assert type(build_network(screens, 2, nature)) is NatureQNetwork
    assert config_for("ALE/Pong-v5").cnn_kind == "nature"
    tutorial_atari = config_for("ALE/Pong-v5", cnn="tutorial")
    assert type(build_network((4, 84, 84), 6, tutorial_atari)) is ConvQNetwork
    # A config.json written before --cnn existed reads as 'auto': what those runs trained.
    data = json.loads(pixels.to_json())
    del data["cnn"]
    assert TrainConfig.from_dict(data) == pixels


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


def test_the_evaluation_gate_is_a_greedy_probe() -> None:
    """The gate looks at one greedy episode, so a solved agent is noticed however low epsilon
    keeps the training returns; a full evaluation that reaches stop_return marks the step."""
    asked: list[int] = []

    def evaluate(returns: list[float]) -> Callable[[int], EvalResult]:
        def run(episodes: int) -> EvalResult:
            asked.append(episodes)
            return EvalResult(returns[:episodes], [1] * episodes)

        return run

    config = config_for("CartPole-v1", eval_gate=400.0, stop_return=500.0, eval_episodes=3)
    state = LoopState(step=7_000)
    assert not _periodic_evaluation(config, state, evaluate([399.0, 500, 500]))
    assert asked == [1]
    assert state.evaluations == []
    assert not _periodic_evaluation(config, state, evaluate([400.0, 500, 480]))
    assert asked == [1, 1, 3]
    assert state.evaluations[-1].mean_return == pytest.approx(460.0)
    assert _periodic_evaluation(config, state, evaluate([500.0, 500, 500]))
    assert state.solved_at == 7_000
    ungated = config_for("CartPole-v1", eval_gate=None, eval_episodes=2)
    asked.clear()
    _periodic_evaluation(ungated, LoopState(), evaluate([1.0, 2.0]))
    assert asked == [2]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "is empty or corrupt"),
        ('{"env_id": "CartPole-v1", ', "is empty or corrupt"),
        ("[1, 2]", "expected a JSON object"),
        ('{"env_id": "CartPole-v1", "episoda": 3}', "unknown settings"),
        ('{"env_id": "CartPole-v1", "gamma": "high"}', "--gamma has the wrong type"),
    ],
)
def test_a_damaged_config_file_is_one_line(tmp_path: Path, text: str, message: str) -> None:
    from dqnkit.adapters.rundir import read_config

    (tmp_path / "config.json").write_text(text)
    with pytest.raises(CommandError, match=message) as error:
        read_config(tmp_path)
    assert "\n" not in str(error.value)
