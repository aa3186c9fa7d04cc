"""Watching the agent, config files, presets in --help, and a command line that answers at once."""

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dqnkit.adapters.cli import main
from dqnkit.adapters.config import PRESETS, TrainConfig, config_for
from dqnkit.adapters.config_file import load_config_file, to_toml
from dqnkit.adapters.errors import CommandError
from dqnkit.export import export_policy
from dqnkit.export.weights import save_weights
from tests.test_export import cartpole_policy


def run(capsys: Any, *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def policy_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("policy")
    net, spec = cartpole_policy(seed=8)
    save_weights(folder / "policy.safetensors", net, spec)
    export_policy(net, spec, folder / "export", formats=("onnx",), n_sampled=8, batch_sizes=(4,))
    return {"weights": folder / "policy.safetensors", "onnx": folder / "export" / "policy.onnx"}


def _frames(path: Path) -> np.ndarray:
    import imageio.v3 as iio

    return np.asarray(iio.imread(path, index=None))


def _gif_milliseconds(path: Path) -> int:
    from PIL import Image, ImageSequence

    with Image.open(path) as image:
        return sum(int(frame.info["duration"]) for frame in ImageSequence.Iterator(image))


def test_gif_and_video_record_the_first_episode_and_change_no_return(
    policy_files: dict[str, Path], tmp_path: Path, capsys: Any
) -> None:
    onnx_file = str(policy_files["onnx"])
    code, plain, err = run(capsys, "play", onnx_file, "--episodes", "3", "--json")
    assert code == 0, err
    gif, mp4 = tmp_path / "a.gif", tmp_path / "a.mp4"
    code, out, err = run(
        capsys,
        "play",
        onnx_file,
        "--episodes",
        "3",
        "--json",
        "--gif",
        str(gif),
        "--video",
        str(mp4),
    )
    assert code == 0, err
    recorded = json.loads(out)
    assert recorded["returns"] == json.loads(plain)["returns"]  # rendering changes nothing
    length = recorded["lengths"][0]  # environment 0 plays the first episode
    video = _frames(mp4)
    assert video.shape == (length + 1, 400, 600, 3)  # the reset frame and one per step
    animation = _frames(gif)
    assert animation.shape[1:3] == (200, 300)  # half size
    # Every other frame at 50 fps, 40 ms each (Pillow merges identical neighbours, keeping the
    # total duration).
    assert _gif_milliseconds(gif) == 40 * len(range(0, length + 1, 2))
    assert video.std() > 0  # a picture, not a blank
    code, out, err = run(
        capsys, "evaluate", str(policy_files["weights"]), "--episodes", "2", "--gif", str(gif)
    )
    assert code == 0, err
    assert out.splitlines()[-1] == f"recorded: {gif}"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("--render",), "--render needs a display"),
        (("--gif", "x.mp4"), "--gif x.mp4: the file name must end in .gif"),
        (("--video", "no/such/folder/x.mp4"), "no such folder"),
    ],
)
def test_watching_refuses_what_cannot_work(
    policy_files: dict[str, Path],
    capsys: Any,
    monkeypatch: pytest.MonkeyPatch,
    argv: tuple[str, ...],
    message: str,
) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    code, _, err = run(capsys, "play", str(policy_files["onnx"]), *argv)
    assert code == 2
    assert message in err
    assert err.count("\n") == 1


def test_show_config_writes_a_file_that_config_reads_back(tmp_path: Path, capsys: Any) -> None:
    code, out, err = run(capsys, "train", "CartPole-v1", "--show-config", "--seed", "4")
    assert code == 0, err
    (tmp_path / "run.toml").write_text(out)
    expected = config_for("CartPole-v1", seed=4)
    loaded = load_config_file(tmp_path / "run.toml")
    assert TrainConfig(**loaded) == expected
    assert to_toml(expected) == out


def test_none_on_the_command_line_unsets_a_presets_optional_value(
    tmp_path: Path, capsys: Any
) -> None:
    code, out, err = run(capsys, "train", "CartPole-v1", "--pixels", "--eval-gate", "none",
                         "--stop-return", "None", "--show-config")  # fmt: skip
    assert code == 0, err
    (tmp_path / "run.toml").write_text(out)
    resolved = TrainConfig(**load_config_file(tmp_path / "run.toml"))
    assert config_for("CartPole-v1", pixels=True).eval_gate == 100.0  # the preset sets both
    assert resolved.eval_gate is None
    assert resolved.stop_return is None
    code, out, err = run(capsys, "train", "CartPole-v1", "--pixels", "--late-learning-rate",
                         "none", "--show-config")  # fmt: skip
    assert code == 0, err  # the preset's late_after stays, unused: session 7's preset
    (tmp_path / "session7.toml").write_text(out)
    assert TrainConfig(**load_config_file(tmp_path / "session7.toml")).late_learning_rate is None
    code, out, err = run(capsys, "train", "CartPole-v1", "--eval-gate", "nothing")
    assert code == 2
    assert "--eval-gate: invalid float value: 'nothing'" in err


def test_the_options_override_the_file_which_overrides_the_preset(
    tmp_path: Path, capsys: Any
) -> None:
    (tmp_path / "run.toml").write_text(
        'env_id = "CartPole-v1"\nlearning_rate = 1e-3\nbatch_size = 32\nhidden = [64, 64]\n'
        'eval_gate = "none"\n'
    )
    code, out, err = run(
        capsys,
        "train",
        "--config",
        str(tmp_path / "run.toml"),
        "--batch-size",
        "16",
        "--show-config",
    )
    assert code == 0, err
    (tmp_path / "resolved.toml").write_text(out)
    resolved = TrainConfig(**load_config_file(tmp_path / "resolved.toml"))
    assert resolved.learning_rate == 1e-3  # from the file
    assert resolved.batch_size == 16  # the option wins
    assert resolved.hidden == (64, 64)
    assert resolved.eval_gate is None  # "none" unsets the preset's 400
    assert resolved.epsilon_steps == PRESETS["CartPole-v1"]["epsilon_steps"]  # the preset


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("learning_rat = 1e-3\n", "unknown keys ['learning_rat']"),
        ('batch_size = "64"\n', "batch_size = '64' is not an integer"),
        ("batch_size = 6.5\n", "is not an integer"),
        ("double_dqn = 1\n", "is not true or false"),
        ('epsilon_schedule = "cosine"\n', "is not one of ['linear', 'exponential']"),
        ("hidden = [64, 1.5]\n", "is not a list of integers"),
        ("learning_rate = \n", "not valid TOML"),
    ],
)
def test_a_bad_config_file_is_a_one_line_error(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "bad.toml").write_text(text)
    with pytest.raises(CommandError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_config_file(tmp_path / "bad.toml")


def test_a_missing_config_file_is_a_one_line_error(tmp_path: Path, capsys: Any) -> None:
    code, _, err = run(capsys, "train", "CartPole-v1", "--config", str(tmp_path / "none.toml"))
    assert code == 2
    assert err == f"dqnkit: error: --config {tmp_path / 'none.toml'}: no such file\n"


def test_help_shows_the_values_of_the_given_environments_preset(capsys: Any) -> None:
    code, out, _ = run(capsys, "train", "Acrobot-v1", "--help")
    assert code == 0
    flat = " ".join(out.split())
    assert "[default: 0.00063 (Acrobot-v1's preset)]" in flat
    assert "[default: 256,256 (Acrobot-v1's preset)]" in flat
    code, out, _ = run(capsys, "train", "--help")
    assert "[default: 0.0001, or the preset's]" in " ".join(out.split())


def _python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "SDL_VIDEODRIVER": "dummy", **env},
        timeout=300,
    )


def test_help_and_usage_errors_import_neither_torch_nor_gymnasium() -> None:
    code = (
        "import sys\n"
        "from dqnkit.adapters.cli import main\n"
        "for argv in (['--help'], ['train', '--help'], ['play', '--help'], ['evaluate', 'x',"
        " '--seed', '-1']):\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print(sorted(m for m in ('torch', 'gymnasium', 'numpy') if m in sys.modules))\n"
    )
    done = _python(code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "[]"


def test_play_of_an_onnx_file_needs_no_torch(policy_files: dict[str, Path]) -> None:
    code = (
        "import sys\n"
        "sys.modules['torch'] = None  # import torch now raises ImportError\n"
        "from dqnkit.adapters.cli import main\n"
        f"sys.exit(main(['play', {str(policy_files['onnx'])!r}, '--episodes', '2', '--json']))\n"
    )
    done = _python(code)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["episodes"] == 2
