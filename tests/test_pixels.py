"""Pixels: the preprocessing maths by hand, the wrapper, and a short train-resume-export run."""

import itertools
import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from dqnkit.adapters import CommandError, config_for, experience, train
from dqnkit.adapters.deploy_cli import collect_observations
from dqnkit.adapters.evaluation import greedy_act
from dqnkit.adapters.pixels import (
    NO_MOTION,
    PixelObservation,
    PixelSpec,
    describe,
    difference_frame,
    downsample_band,
    make_pixel_env,
    view_start,
)
from dqnkit.core import Transition, frame_replay
from dqnkit.export import ParityError, export_policy, export_weights, load_weights
from tests.runs import rewind_to_first_checkpoint


@pytest.mark.parametrize(
    ("cart_x", "start"),
    [
        # Column int(x * 600 / 4.8 + 300); window start column - 160, clamped to [0, 280];
        # then in downsampled pixels, rounded: (start + 2) // 4.
        (0.0, 35),  # middle: column 300, start 140
        (1.0, 66),  # column 425, start 265
        (-2.4, 0),  # left edge: column 0, start clamped to 0
        (-1.5, 0),  # column 112, start -48, clamped
        (2.4, 70),  # right edge: column 600, start clamped to 280 -> the last 80 of 150
        (1.9, 70),  # column 537, start 377, clamped to 280
    ],
)
def test_view_follows_the_cart_and_stops_at_both_edges(cart_x: float, start: int) -> None:
    assert view_start(cart_x, x_threshold=2.4, screen_width=600, view_width=320, factor=4) == start


def test_the_view_never_leaves_the_screen_and_moves_with_the_cart() -> None:
    starts = [
        view_start(float(x), x_threshold=2.4, screen_width=600, view_width=320, factor=4)
        for x in np.linspace(-3.0, 3.0, 241)  # past both edges too
    ]
    # The window's 80 downsampled columns lie within the band's 150, whatever the position.
    assert min(starts) == 0
    assert max(starts) == 150 - 80
    assert all(a <= b for a, b in itertools.pairwise(starts))


def test_downsample_band_is_the_rounded_block_mean_of_the_green_channel() -> None:
    screen = np.zeros((8, 8, 3), dtype=np.uint8)
    screen[:, :, 0] = 255  # red and blue are ignored
    screen[:, :, 1] = np.arange(64, dtype=np.uint8).reshape(8, 8)
    out = downsample_band(screen, rows=(0, 8), factor=4)
    # Top-left block: rows 0-3, cols 0-3 -> values 8r + c, mean 13.5 -> 14 (half rounds up).
    # Top-right: mean 17.5 -> 18; bottom-left: 45.5 -> 46; bottom-right: 49.5 -> 50.
    assert out.dtype == np.uint8
    assert out.tolist() == [[14, 18], [46, 50]]
    band = downsample_band(screen, rows=(4, 8), factor=2)
    # rows 4-5, cols 0-1: 32, 33, 40, 41 -> 36.5 -> 37
    assert band.shape == (2, 4)
    assert band[0, 0] == 37


def test_downsample_band_rejects_a_band_that_does_not_divide() -> None:
    with pytest.raises(ValueError, match="not downsample by 4"):
        downsample_band(np.zeros((10, 8, 3), dtype=np.uint8), rows=(0, 6), factor=4)


def test_difference_encoding_golden() -> None:
    cur = np.array([[255, 0, 10, 7]], dtype=np.uint8)
    prev = np.array([[0, 255, 7, 10]], dtype=np.uint8)
    # (d + 256) // 2 for d = 255, -255, 3, -3
    assert difference_frame(cur, prev).tolist() == [[255, 0, 129, 126]]
    assert difference_frame(cur, cur).tolist() == [[NO_MOTION] * 4]


def test_describe_is_complete_and_checked() -> None:
    spec = describe("CartPole-v1")
    assert spec["frame_mode"] == "difference"
    assert (spec["channels"], spec["height"], spec["width"]) == (1, 40, 80)
    assert spec["crop_rows"] == [160, 320]
    stacked = describe("CartPole-v1", frame_mode="stack", frames=3)
    assert (stacked["channels"], stacked["height"], stacked["width"]) == (3, 40, 80)
    with pytest.raises(CommandError, match="inconsistent"):
        PixelSpec.from_dict({**spec, "height": 41})
    with pytest.raises(CommandError, match="CartPole environments only"):
        describe("Acrobot-v1")
    assert spec["frame_skip"] == 1
    assert describe("CartPole-v1", frame_skip=3)["frame_skip"] == 3
    with pytest.raises(CommandError, match=r"--frame-skip must be in \[1, 8\]"):
        describe("CartPole-v1", frame_skip=0)
    # A policy exported before frame skipping existed has no frame_skip: every step, as then.
    old = {k: v for k, v in spec.items() if k != "frame_skip"}
    assert PixelSpec.from_dict(old) == PixelSpec.from_dict(spec)


@pytest.mark.parametrize("action", [0, 1])
def test_frame_skip_holds_the_action_sums_rewards_and_stops_at_the_episodes_end(
    action: int,
) -> None:
    """Skipping 3 is stepping CartPole 3 times with the action held: the same state, rewards
    summed, the newest screen the same, and an episode that ends inside a hold ends there."""
    every = make_pixel_env("CartPole-v1", describe("CartPole-v1", frame_mode="stack", frames=2))
    skip = make_pixel_env(
        "CartPole-v1", describe("CartPole-v1", frame_mode="stack", frames=2, frame_skip=3)
    )
    try:
        every.reset(seed=0)
        skip.reset(seed=0)
        plain_steps = held_return = 0.0
        done = False
        while not done:  # one push held until the pole falls or the cart leaves
            obs, reward, terminated, truncated, _ = skip.step(action)
            held_return += float(reward)
            done = terminated or truncated
            for _ in range(3):
                seen, _, plain_end, plain_cut, _ = every.step(action)
                plain_steps += 1
                if plain_end or plain_cut:
                    break
            assert np.array_equal(skip.unwrapped.state, every.unwrapped.state)  # type: ignore[attr-defined]
            np.testing.assert_array_equal(obs[-1], seen[-1])
            assert (terminated, truncated) == (plain_end, plain_cut)
        assert held_return == plain_steps  # one reward per CartPole step, none lost or extra
        assert plain_steps == {0: 11, 1: 8}[action]  # seed 0: both end inside a hold of 3
    finally:
        every.close()
        skip.close()


def test_the_band_read_from_pygame_is_the_band_of_the_rgb_array_render() -> None:
    """The wrapper reads the band's green channel off CartPole's pygame screen instead of
    copying the whole render: the same pixels, over whole episodes and random actions."""
    spec = describe("CartPole-v1")
    env = make_pixel_env("CartPole-v1", spec)
    assert isinstance(env, PixelObservation)
    rng = np.random.default_rng(0)
    try:
        env.reset(seed=0)
        for _ in range(300):
            _, _, terminated, truncated, _ = env.step(int(rng.integers(2)))
            fast = env._band()
            assert env._draws_on_screen  # the fast path was taken
            full = env.render()
            assert isinstance(full, np.ndarray)
            expected = downsample_band(full, rows=spec["crop_rows"], factor=spec["factor"])
            np.testing.assert_array_equal(fast, expected)
            if terminated or truncated:
                env.reset()
    finally:
        env.close()


@pytest.mark.parametrize(("mode", "channels"), [("difference", 1), ("stack", 4)])
def test_wrapper_observations_match_its_space_and_start_without_motion(
    mode: str, channels: int
) -> None:
    env = make_pixel_env("CartPole-v1", describe("CartPole-v1", frame_mode=mode, frames=4))
    try:
        assert env.observation_space.shape == (channels, 40, 80)
        first, _ = env.reset(seed=3)
        assert env.observation_space.contains(first)
        if mode == "difference":
            assert (first == NO_MOTION).all()  # an episode's first step: no motion yet
        else:
            assert all((first[i] == first[0]).all() for i in range(channels))
        for _ in range(5):  # one step moves the cart by less than a pixel: push for a few
            obs, reward, terminated, truncated, _ = env.step(1)
            assert env.observation_space.contains(obs)
            assert reward == 1.0
            assert not terminated
            assert not truncated
        # The cart moved: something in the view changed, and the background did not.
        moving = obs[0] != NO_MOTION if mode == "difference" else obs[-1] != obs[0]
        assert 0 < moving.sum() < moving.size // 4
    finally:
        env.close()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("num_envs", "buffer_size", "cnn", "frame_skip"),
    # One env with room for the whole run; two envs whose ring has wrapped at the checkpoint,
    # learning with the Nature CNN instead of the tutorial's, two CartPole steps per action.
    [(1, 500, "auto", 1), (2, 120, "nature", 2)],
)
def test_pixel_training_resumes_exactly_and_exports(
    tmp_path: Path, num_envs: int, buffer_size: int, cnn: str, frame_skip: int
) -> None:
    config = config_for(
        "CartPole-v1",
        pixels=True,
        cnn=cnn,
        frame_skip=frame_skip,
        total_steps=300,
        learning_starts=100,
        train_every=4,
        gradient_steps=1,
        batch_size=16,
        num_envs=num_envs,
        buffer_size=buffer_size,
        checkpoint_every=150,
        final_eval_episodes=2,
        eval_every=0,
        out=str(tmp_path),
    )
    straight = train(config, quiet=True).run_dir
    _, spec = load_weights(straight / "policy.safetensors")
    assert spec.obs_shape == (1, 40, 80)
    assert spec.obs_dtype == "uint8"
    assert spec.preprocessing == describe("CartPole-v1", frame_skip=frame_skip)
    assert spec.network["kind"] == ("nature" if cnn == "nature" else "conv")

    # Replay stores every frame once: one slot per step plus one per episode's first frame,
    # which for the difference input is all NO_MOTION.
    saved = load_file(sorted((straight / "checkpoints").iterdir())[-1])
    first = saved["replay/source"] == -1
    assert (saved["replay/obs"][first] == NO_MOTION).all()
    if buffer_size == 500:
        episodes = (straight / "metrics.csv").read_text().count("\n") - 1
        assert saved["replay/obs"].shape[0] == 300 + episodes + num_envs
        assert int(first.sum()) == episodes + num_envs

    copy = rewind_to_first_checkpoint(straight, tmp_path / "copy")
    train(config, resume=copy, quiet=True)
    a = load_file(straight / "policy.safetensors")
    b = load_file(copy / "policy.safetensors")
    assert all(a[k].equal(b[k]) for k in a)
    assert (copy / "metrics.csv").read_text().count("\n") == (
        (straight / "metrics.csv").read_text().count("\n")
    )

    result = export_weights(straight / "policy.safetensors", tmp_path / "export")
    assert set(result.files) == {"onnx", "torchscript", "pt2"}
    assert all(c.ok for checks in result.checks.values() for c in checks)


@pytest.mark.slow
def test_training_on_shared_frames_is_training_on_whole_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same pixel run twice, two envs, with the frame ring and with whole rows. The ring's
    sample is made to draw like the plain buffer's (the i-th oldest transition for the plain
    buffer's row i, the same in a ring that has not wrapped): then every batch, and so every
    weight, must be the same. What remains different in real runs is only which draws pick what.
    """
    config = config_for(
        "CartPole-v1",
        pixels=True,
        frame_mode="stack",  # a difference input starts every episode with the same frame
        frames=2,
        n_step=1,  # whole rows are one-step transitions; the ring's n-step windows differ
        total_steps=600,
        num_envs=2,
        learning_starts=100,
        train_every=4,
        batch_size=16,
        buffer_size=1_000,
        eval_every=0,
        final_eval_episodes=1,
        out=str(tmp_path),
    )

    def like_the_plain_buffer(
        state: frame_replay.FrameReplayState, batch_size: int, generator: torch.Generator
    ) -> Transition:
        in_age_order = frame_replay.sampleable(state)
        row = torch.randint(0, in_age_order.numel(), (batch_size,), generator=generator)
        return frame_replay.gather(state, in_age_order[row])

    monkeypatch.setattr(frame_replay, "sample", like_the_plain_buffer)
    shared = train(config, quiet=True).run_dir
    monkeypatch.setattr(experience, "shares_frames", lambda shape: False)
    rows = train(config, quiet=True).run_dir

    def last_checkpoint(run_dir: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        path = sorted((run_dir / "checkpoints").iterdir())[-1]
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads(f.metadata()["dqnkit.checkpoint"])
        return load_file(path), meta

    (ring, ring_meta), (whole, whole_meta) = last_checkpoint(shared), last_checkpoint(rows)
    assert ring_meta["replay"]["kind"] == "frames"
    assert "replay/next_obs" not in ring
    assert whole_meta["replay"]["kind"] == "transitions"
    assert bool(whole["replay/terminated"].any())  # episodes ended within the run
    # One update at each step 100, 104, ..., 600 (two envs: steps go up by 2).
    assert ring_meta["loop"]["updates"] == whole_meta["loop"]["updates"] == 126
    a, b = load_file(shared / "policy.safetensors"), load_file(rows / "policy.safetensors")
    assert all(a[k].equal(b[k]) for k in a)


def test_sigterm_still_ends_a_process_that_renders() -> None:
    """SDL's own signal handlers would swallow SIGTERM once pygame initialises."""
    code = (
        "from dqnkit.adapters.pixels import describe, make_pixel_env\n"
        "env = make_pixel_env('CartPole-v1', describe('CartPole-v1'))\n"
        "env.reset(seed=0)\n"
        "print('rendering', flush=True)\n"
        "while True:\n"
        "    *_, terminated, truncated, _ = env.step(0)\n"
        "    if terminated or truncated:\n"
        "        env.reset()\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "rendering\n"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == -signal.SIGTERM
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("shape", [(1, 40, 80), (4, 40, 80)])
def test_channels_last_weights_change_the_speed_not_the_update(shape: tuple[int, ...]) -> None:
    from dqnkit.adapters.experience import Sample
    from dqnkit.adapters.learner import Learner

    config = config_for("CartPole-v1", pixels=True, seed=3)
    generator = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 256, (2, 32, *shape), dtype=torch.uint8, generator=generator)
    sample = Sample(Transition(frames[0], torch.randint(0, 2, (32,), generator=generator),
                               torch.randn(32, generator=generator), frames[1],
                               torch.rand(32, generator=generator) < 0.2))  # fmt: skip
    learners = {
        last: Learner(config, shape, 2, torch.device("cpu"), channels_last=last)
        for last in (False, True)
    }
    default = Learner(config, shape, 2, torch.device("cpu"))  # on the CPU: channels-last
    conv = {last: learner.online.features[3].weight for last, learner in learners.items()}
    assert conv[True].is_contiguous(memory_format=torch.channels_last)
    assert not conv[True].is_contiguous()
    assert conv[False].is_contiguous()
    assert default.online.features[3].weight.is_contiguous(memory_format=torch.channels_last)
    # One update from the same weights and batch: the same TD errors and gradients to float32
    # rounding. (Not the weights after several: Adam turns the rounding noise in a gradient
    # that is zero in exact arithmetic, a bias before batch norm, into steps of +-lr.)
    updates = {last: learner.update(sample) for last, learner in learners.items()}
    torch.testing.assert_close(updates[True].td_error, updates[False].td_error)
    for plain, last in zip(*(learners[k].online.parameters() for k in (False, True)), strict=True):
        assert plain.grad is not None
        assert last.grad is not None
        torch.testing.assert_close(last.grad, plain.grad, rtol=1e-4, atol=1e-6)
    # The default is the channels-last learner, bit for bit, update after update.
    for _ in range(2):
        learners[True].update(sample)
    for _ in range(3):
        default.update(sample)
    channels_last = learners[True].online.state_dict()
    for name, value in default.online.state_dict().items():
        assert torch.equal(value, channels_last[name]), name


TRAINED = Path(__file__).parent / "data" / "pixel_difference_seed1.safetensors"


def test_a_trained_pixel_policy_passes_the_default_export_tolerance(tmp_path: Path) -> None:
    """A real policy (the pixel preset, difference input, seed 1, session 8; Q near 100) on the
    episodes ``dqnkit export`` plays by default: float32 torch is up to 0.0022 from float64
    there and ONNX Runtime 0.0026, so the two differ by 0.0048, more than 1e-4 + 1e-5 * |q|
    allows. The default tolerance passes it; the old 1e-5 relative one refuses a correct
    export."""
    network, spec = load_weights(TRAINED)
    assert spec.preprocessing is not None
    env = make_pixel_env("CartPole-v1", spec.preprocessing)
    try:  # the export command's defaults: 3 epsilon-greedy episodes from seed 0
        observations = collect_observations(env, greedy_act(network), episodes=3, seed=0)
    finally:
        env.close()
    result = export_policy(network, spec, tmp_path / "export", formats=("onnx",),
                           observations=observations, n_sampled=16)  # fmt: skip
    assert result.files["onnx"].is_file()
    with pytest.raises(ParityError, match="failed parity"):
        export_policy(network, spec, tmp_path / "strict", formats=("onnx",),
                      observations=observations, n_sampled=16, rtol=1e-5)  # fmt: skip
