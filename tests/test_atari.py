"""Atari with the Nature DQN pipeline (issue 12): preprocessing, frame stacks in the loop's
replay, a tiny training run that resumes exactly and exports, and check_env on pixel CartPole."""

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

pytest.importorskip("ale_py")
pytest.importorskip("cv2")

from dqnkit.adapters import atari, envs
from dqnkit.adapters.config import ATARI_PRESET, config_for
from dqnkit.adapters.errors import CommandError
from dqnkit.adapters.experience import FrameMemory, create_memory, example_row
from dqnkit.adapters.training import train
from dqnkit.core import NatureQNetwork
from tests.runs import rewind_to_first_checkpoint

PONG = "ALE/Pong-v5"


def raw_pong(seed: int) -> Any:
    """The bare ALE env, no skip and no stickiness: what the pipeline wraps."""
    atari.register_ale()
    env = gym.make(PONG, frameskip=1, repeat_action_probability=0.0, disable_env_checker=True)
    env.reset(seed=seed)
    return env


def area_resize(grey: np.ndarray, size: int) -> np.ndarray:
    """Area interpolation from 210x160 to size x size computed independently of OpenCV: each
    output pixel is the mean of the source pixels its box covers, weighted by the covered
    fraction of each (what INTER_AREA does for a downscale), rounded to nearest."""

    def weights(n_in: int, n_out: int) -> np.ndarray:
        scale = n_in / n_out
        w = np.zeros((n_out, n_in))
        for o in range(n_out):
            lo, hi = o * scale, (o + 1) * scale
            for i in range(int(np.floor(lo)), min(int(np.ceil(hi)), n_in)):
                w[o, i] = max(0.0, min(hi, i + 1) - max(lo, i))
        return w / scale

    rows, cols = weights(grey.shape[0], size), weights(grey.shape[1], size)
    resized: np.ndarray = rows @ grey.astype(np.float64) @ cols.T
    return resized


def test_preprocessing_chain_against_a_hand_computed_max_pool_and_resize() -> None:
    """Raw ALE frames recorded with a fixed seed and action sequence; the pipeline (no no-ops,
    no stickiness) must give, at each step, the area-resized max of the last two of the 4
    skipped grey frames; at reset the first frame fills the stack."""
    spec = dataclasses.replace(atari.AtariSpec(), noop_max=0, repeat_action_probability=0.0)
    env = atari.make_atari_env(PONG, spec.to_dict(), render_mode=None)
    raw = raw_pong(seed=7)
    obs, _ = env.reset(seed=7)
    first = raw.unwrapped.ale.getScreenGrayscale()
    expected = area_resize(first, 84)
    assert obs.shape == (4, 84, 84)
    assert obs.dtype == np.uint8
    assert all(np.array_equal(obs[i], obs[0]) for i in range(4))  # padded with the reset frame
    assert np.abs(obs[0].astype(np.float64) - expected).max() <= 1.0
    history = [expected] * 4
    actions = [0, 2, 2, 3, 3, 1, 0, 2, 5, 4, 4, 2]
    for action in actions:
        frames = []
        for _ in range(4):
            raw.step(action)
            frames.append(raw.unwrapped.ale.getScreenGrayscale())
        pooled = np.maximum(frames[-1], frames[-2])
        history = [*history[1:], area_resize(pooled, 84)]
        obs, *_ = env.step(action)
        for i in range(4):
            assert np.abs(obs[i].astype(np.float64) - history[i]).max() <= 1.0
    # The recorded frames moved: the test compared changing screens, not a constant one.
    assert not np.array_equal(obs[0], obs[3])
    env.close()
    raw.close()


def test_sticky_actions_and_no_ops_come_from_the_envs_generator() -> None:
    """Restoring np_random before a reset replays the episode's no-ops and sticky actions
    exactly (what resume relies on), and 0.25 stickiness changes the episode."""
    env = envs.env_factory(PONG, atari.describe(PONG))()
    env.reset(seed=3)

    def episode_start() -> list[bytes]:
        obs, _ = env.reset()
        seen = [obs.tobytes()]
        for action in [2, 3] * 40:
            obs, *_ = env.step(action)
            seen.append(obs.tobytes())
        return seen

    state = env.unwrapped.np_random.bit_generator.state
    a = episode_start()
    episode_start()  # the ALE's emulator moves on; its own generator is not used
    env.unwrapped.np_random.bit_generator.state = state
    assert episode_start() == a
    plain = atari.make_atari_env(
        PONG, {**atari.describe(PONG), "repeat_action_probability": 0.0}, render_mode=None
    )
    plain.reset(seed=3)
    plain.unwrapped.np_random.bit_generator.state = state
    obs, _ = plain.reset()
    seen = [obs.tobytes()]
    for action in [2, 3] * 40:
        obs, *_ = plain.step(action)
        seen.append(obs.tobytes())
    assert seen != a
    env.close()
    plain.close()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("kind", "cartpole-screen"),
        ("frame_skip", 0),
        ("frame_skip", True),
        ("screen_size", 10),
        ("repeat_action_probability", float("nan")),
        ("repeat_action_probability", 1.0),
        ("terminal_on_life_loss", True),
        ("resize", "__import__('os')"),
        ("frameskip", 4),
        ("version", 2),
        ("extra", 1),
    ],
)
def test_a_received_description_is_checked_field_by_field(field: str, value: Any) -> None:
    description = {**atari.AtariSpec().to_dict(), field: value}
    with pytest.raises(CommandError, match="Atari preprocessing"):
        atari.AtariSpec.from_dict(description)
    with pytest.raises(CommandError):
        envs.env_factory(PONG, description)()


def test_the_loops_ring_stores_one_frame_per_step_and_stacks_as_the_wrapper_did() -> None:
    """The loop's memory with stack=4, fed by the real wrapper: every sampled obs/next_obs
    stack equals a stack the wrapper returned, including at episode starts (the first frame
    repeated, never frames of the previous episode) and after the ring wrapped around."""
    spec = {**atari.describe(PONG), "max_episode_frames": 160}  # 40-step episodes
    env = atari.make_atari_env(PONG, spec, render_mode=None)
    example = example_row((4, 84, 84), torch.uint8)
    memory = create_memory(70, example, 1, torch.device("cpu"), stack=4)
    assert isinstance(memory, FrameMemory)
    assert memory.state.obs.shape == (70, 84, 84)  # one frame per slot, not four
    obs, _ = env.reset(seed=0)
    memory.start(np.array([0]), obs[None])
    seen: set[tuple[bytes, bytes]] = set()
    rng = np.random.default_rng(0)
    episodes = 0
    for _ in range(130):  # three episodes and more in a 70-slot ring
        action = int(rng.integers(6))
        next_obs, reward, terminated, truncated, _ = env.step(action)
        memory.add(obs[None], np.array([action]), np.array([reward]), next_obs[None],
                   np.array([terminated]))  # fmt: skip
        seen.add((obs.tobytes(), next_obs.tobytes()))
        obs = next_obs
        if terminated or truncated:
            episodes += 1
            obs, _ = env.reset()
            memory.start(np.array([0]), obs[None])
    assert episodes >= 3
    assert memory.written() > 70
    batch = memory.sample(256, torch.Generator().manual_seed(0)).batch
    starts = 0
    for o, n in zip(batch.obs.numpy(), batch.next_obs.numpy(), strict=True):
        assert (o.tobytes(), n.tobytes()) in seen
        starts += int(np.array_equal(o[0], o[3]))
    assert starts > 0  # some draws were at an episode's start, padded
    env.close()


def smoke_config(out: Path, **overrides: Any) -> Any:
    values: dict[str, Any] = {
        "total_steps": 240,
        "buffer_size": 150,
        "learning_starts": 40,
        "batch_size": 8,
        "target_update_every": 50,
        "epsilon_steps": 200,
        "checkpoint_every": 80,
        "eval_every": 0,
        "final_eval_episodes": 1,
        "out": str(out),
    }
    values.update(overrides)
    return config_for(PONG, **values)


def test_atari_run_trains_checkpoints_resumes_exactly_and_exports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 100-step episodes (400 emulator frames), so the ring wraps and the evaluation is short.
    monkeypatch.setattr(atari, "MAX_EPISODE_FRAMES", 400)
    config = smoke_config(tmp_path / "straight")
    assert config.clip_rewards
    assert config.atari
    straight = train(config, quiet=True).run_dir
    weights = load_file(straight / "policy.safetensors")
    assert "features.0.weight" in weights
    assert weights["features.0.weight"].shape == (32, 4, 8, 8)
    first = sorted((straight / "checkpoints").iterdir())[0]
    with safe_open(str(first), framework="pt") as f:
        replay = json.loads(f.metadata()["dqnkit.checkpoint"])["replay"]
        frames = f.get_slice("replay/obs").get_shape()
    assert replay["stack"] == 4
    assert frames[1:] == [84, 84]  # the checkpointed ring holds frames, not stacks
    copy = rewind_to_first_checkpoint(straight, tmp_path / "copy")
    train(config, resume=copy, quiet=True)
    again = load_file(copy / "policy.safetensors")
    assert {k: v.numpy().tobytes() for k, v in again.items()} == {
        k: v.numpy().tobytes() for k, v in weights.items()
    }
    # The policy carries its preprocessing; its network is the Nature CNN.
    from dqnkit.export.exporter import export_weights
    from dqnkit.export.weights import load_weights

    network, spec = load_weights(straight / "policy.safetensors")
    assert isinstance(network, NatureQNetwork)
    assert spec.obs_shape == (4, 84, 84)
    assert spec.obs_dtype == "uint8"
    assert spec.preprocessing == {**atari.AtariSpec().to_dict(), "max_episode_frames": 400}
    result = export_weights(straight / "policy.safetensors", tmp_path / "export",
                            formats=("onnx",), n_sampled=16, batch_sizes=(1, 3))  # fmt: skip
    assert all(check.ok for check in result.checks["onnx"])
    # The exported graph takes the raw uint8 stacks and scales them itself.
    from dqnkit.export.runtime import Policy

    policy = Policy.load(result.files["onnx"])
    assert policy.metadata.preprocessing == spec.preprocessing
    env = envs.env_factory(PONG, spec.preprocessing)()
    obs = np.stack([env.reset(seed=s)[0] for s in (1, 2)])
    env.close()
    with torch.no_grad():
        expected = network(torch.from_numpy(obs)).numpy()
    np.testing.assert_allclose(policy.q_values(obs), expected, rtol=1e-4, atol=1e-5)
    report = json.loads(result.report.read_text())
    assert report
    # Episode returns are Pong's unclipped scores (-21..21 points, here a 100-step slice).
    rows = (straight / "metrics.csv").read_text().splitlines()[1:]
    assert rows
    assert all(-21 <= float(r.split(",")[2]) <= 21 for r in rows)


def test_reward_clipping_is_for_the_loss_only() -> None:
    """clip_rewards gives the TD target of sign(r), and nothing else changes."""
    from dqnkit.adapters.experience import Sample
    from dqnkit.adapters.learner import Learner
    from dqnkit.core import Transition

    obs = torch.zeros((2, 4, 84, 84), dtype=torch.uint8)
    batch = Transition(obs, torch.tensor([0, 1]), torch.tensor([5.0, -0.5]), obs,
                       torch.tensor([True, True]))  # fmt: skip
    errors = {}
    for clip in (True, False):
        config = dataclasses.replace(config_for(PONG, total_steps=200, learning_starts=10),
                                     clip_rewards=clip)  # fmt: skip
        learner = Learner(config, (4, 84, 84), 6, torch.device("cpu"))
        q = learner.q_values(obs).gather(1, batch.action[:, None]).squeeze(1)
        errors[clip] = (learner.update(Sample(batch)).td_error, q)
    clipped, q = errors[True]
    assert torch.allclose(clipped, q - torch.tensor([1.0, -1.0]))  # terminal: y = sign(r)
    plain, q = errors[False]
    assert torch.allclose(plain, q - torch.tensor([5.0, -0.5]))


@pytest.mark.parametrize(("module", "names"), [("ale_py", "ale-py"), ("cv2", "OpenCV")])
def test_a_missing_atari_dependency_names_the_extra(
    module: str, names: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # import now raises ImportError
    with pytest.raises(CommandError, match=rf"need\w* {names}: pip install 'dqnkit\[atari\]'"):
        atari.register_ale()


def test_atari_preset_and_refusals() -> None:
    config = config_for("ALE/Breakout-v5", total_steps=200, learning_starts=10)
    assert config.batch_size == ATARI_PRESET["batch_size"] == 32
    assert config_for("ALE/Asterix-v5", total_steps=200, learning_starts=10).clip_rewards
    with pytest.raises(CommandError, match="--pixels"):
        config_for(PONG, pixels=True, total_steps=200, learning_starts=10)


def test_check_env_passes_on_the_cartpole_pixel_environment() -> None:
    from gymnasium.utils.env_checker import check_env

    from dqnkit.adapters import pixels

    for mode in ("difference", "stack"):
        env = pixels.make_pixel_env("CartPole-v1", pixels.describe("CartPole-v1", frame_mode=mode))
        check_env(env)  # default settings: warnings are not failures, errors are
        env.close()


def test_terminal_on_life_loss_marks_replay_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Breakout's five lives: with the option, each lost life is a terminal transition in
    replay, while the logged episodes are still whole games (ended only by game over or the
    time limit)."""
    monkeypatch.setattr(atari, "MAX_EPISODE_FRAMES", 2_000)
    terminals, games = {}, {}
    for option in (False, True):
        config = dataclasses.replace(
            config_for("ALE/Breakout-v5", total_steps=400, learning_starts=400, buffer_size=500,
                       epsilon_start=1.0, epsilon_end=1.0, checkpoint_every=0,
                       final_eval_episodes=1, out=str(tmp_path / str(option))),
            terminal_on_life_loss=option,
        )  # fmt: skip
        run_dir = train(config, quiet=True).run_dir
        replay = load_file(sorted((run_dir / "checkpoints").iterdir())[-1])
        terminals[option] = int(replay["replay/terminated"].sum())
        rows = (run_dir / "metrics.csv").read_text().splitlines()[1:]
        games[option] = [row.split(",")[:4] for row in rows]  # step, episode, return, length
    assert games[True]
    assert games[True] == games[False]  # the same games, step for step (same seed, no learning)
    assert terminals[True] >= terminals[False] + 2  # lives lost mid-game are terminal now
    with pytest.raises(CommandError, match="ALE/"):
        config_for("CartPole-v1", terminal_on_life_loss=True)
