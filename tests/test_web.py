"""The policy in a web page: export_web's folder, its JavaScript CartPole, and the page itself in
headless Chromium (Debian's chromium driven by playwright-core; scripts/setup-web.sh installs both).
"""

import hashlib
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import onnx
import pytest
import torch

from dqnkit.core import ConvQNetwork, QNetwork
from dqnkit.export import PolicySpec, export_policy, export_weights
from dqnkit.export.exporter import DEFAULT_ATOL, DEFAULT_RTOL
from dqnkit.export.runtime import Policy
from dqnkit.export.web import ASSETS, MANIFEST, ORT_FILES, export_web, find_onnxruntime_web
from dqnkit.export.web import main as web_main
from dqnkit.export.weights import network_config
from tests.test_export import cartpole_policy
from tests.web_page import ARTIFACTS, WEB, drive, install_npm_packages, missing_tools

CARTPOLE_JS = ASSETS / "cartpole.js"
PAGE_FILES = [
    "app.js",
    "cartpole.js",
    "contract.json",
    MANIFEST,
    "index.html",
    "ort/README.txt",
    "ort/ort-wasm-simd-threaded.mjs",
    "ort/ort-wasm-simd-threaded.wasm",
    "ort/ort.wasm.min.js",
    "policy.onnx",
    "style.css",
    "worker.js",
]
# The export's tolerance (README, "Export and deploy"): |dq| <= atol + rtol * |q|.
ATOL, RTOL = DEFAULT_ATOL, DEFAULT_RTOL
STATE_TOL = 1e-5


def node_or_skip() -> None:
    if shutil.which("node") is None:
        pytest.skip("Node.js is not on PATH (Debian: apt-get install nodejs)")


def npm_packages_or_skip() -> None:
    node_or_skip()
    reason = install_npm_packages()
    if reason:
        pytest.skip(reason)


def browser_or_skip() -> None:
    reason = missing_tools()
    if reason:
        pytest.skip(reason)
    npm_packages_or_skip()


def run_cartpole_js(program: str, payload: Any) -> Any:
    """Runs ``program`` in Node with ``C`` = cartpole.js's exports and ``input`` = ``payload``;
    the program's ``output`` comes back through JSON."""
    script = (
        f"const C = require({json.dumps(str(CARTPOLE_JS))});"
        "const input = JSON.parse(require('fs').readFileSync(0, 'utf8'));"
        f"let output; {program};"
        "process.stdout.write(JSON.stringify(output));"
    )
    done = subprocess.run(
        ["node", "-e", script], input=json.dumps(payload), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


# ---- the JavaScript CartPole against Gymnasium's (Node only) ---------------------------------


def test_cartpole_js_draws_the_initial_states_of_gymnasium_reset_seed_exactly() -> None:
    node_or_skip()
    seeds = [0, 1, 3, 123, 2**32 - 1, 2**32 + 7, 2**40 + 5, 2**53 - 1]
    js = run_cartpole_js(
        "output = input.map((seed) => { const env = new C.CartPole();"
        " env.reset(seed); const a = env.state; env.reset(); const b = env.state;"
        " env.reset(); return [a, b, env.state]; })",
        seeds,
    )
    env: Any = gym.make("CartPole-v1")  # Any: CartPoleEnv's attributes are read below
    for seed, episodes in zip(seeds, js, strict=True):
        env.reset(seed=seed)
        expected = [env.unwrapped.state.tolist()]
        for _ in range(2):
            env.reset()  # no seed: the same generator goes on
            expected.append(env.unwrapped.state.tolist())
        assert episodes == expected, f"seed {seed}"  # the same float64 draws, bit for bit


def test_cartpole_js_constants_are_gymnasiums() -> None:
    node_or_skip()
    c = run_cartpole_js("output = C.constants", None)
    env: Any = gym.make("CartPole-v1")  # Any: CartPoleEnv's attributes are read below
    u = env.unwrapped
    assert c == {
        "GRAVITY": u.gravity,
        "MASSCART": u.masscart,
        "MASSPOLE": u.masspole,
        "LENGTH": u.length,
        "FORCE_MAG": u.force_mag,
        "TAU": u.tau,
        "THETA_THRESHOLD_RADIANS": u.theta_threshold_radians,
        "X_THRESHOLD": u.x_threshold,
        "MAX_EPISODE_STEPS": env.spec.max_episode_steps,
    }
    assert u.kinematics_integrator == "euler"


def test_cartpole_js_steps_like_gymnasium_from_any_state() -> None:
    node_or_skip()
    rng = np.random.default_rng(5)
    n = 400
    high = np.array([2.6, 3.0, 0.25, 3.5])  # a little past both termination bounds
    states = rng.uniform(-high, high, size=(n, 4))
    actions = rng.integers(0, 2, size=n)
    js = run_cartpole_js(
        "output = input.states.map((s, i) => C.physicsStep(s, input.actions[i]))",
        {"states": states.tolist(), "actions": actions.tolist()},
    )
    env: Any = gym.make("CartPole-v1").unwrapped
    for state, action, got in zip(states, actions, js, strict=True):
        env.state = state.copy()
        env.steps_beyond_terminated = None
        _, _, terminated, _, _ = env.step(int(action))
        np.testing.assert_allclose(got["state"], env.state, rtol=0, atol=1e-12)
        assert got["terminated"] == terminated, state
    assert 0 < sum(g["terminated"] for g in js) < n  # both kinds of step were checked


def test_cartpole_js_episodes_end_like_gymnasium_including_the_time_limit() -> None:
    node_or_skip()
    # Hand-made linear controllers: some keep the pole up for the whole 500 steps, one pushes
    # the wrong way and drops it.
    gains = [[0.0, 0.0, 1.0, 0.5], [0.05, 0.2, 1.0, 0.5], [0.0, 0.0, -1.0, 0.0]]
    js = run_cartpole_js(
        "output = input.map(([seed, k]) => {"
        " const env = new C.CartPole(); let obs = env.reset(seed); let out;"
        " do { const s = obs;"
        " const a = k[0] * s[0] + k[1] * s[1] + k[2] * s[2] + k[3] * s[3] > 0 ? 1 : 0;"
        " out = env.step(a); obs = out.observation; } while (!out.terminated && !out.truncated);"
        " return [env.elapsedSteps, out.terminated, out.truncated, Array.from(obs)]; })",
        [[seed, k] for seed in (0, 7) for k in gains],
    )
    env: Any = gym.make("CartPole-v1")  # Any: CartPoleEnv's attributes are read below
    outcomes = []
    for (seed, k), (steps, terminated, truncated, last_obs) in zip(
        [(seed, k) for seed in (0, 7) for k in gains], js, strict=True
    ):
        obs, _ = env.reset(seed=seed)
        count, term, trunc = 0, False, False
        while not (term or trunc):
            # summed left to right in float64, as the JavaScript does
            push = k[0] * float(obs[0]) + k[1] * float(obs[1]) + k[2] * float(obs[2])
            obs, _, term, trunc, _ = env.step(int(push + k[3] * float(obs[3]) > 0))
            count += 1
        assert (steps, terminated, truncated) == (count, term, trunc), (seed, k)
        np.testing.assert_array_equal(np.float32(last_obs), obs)  # float32 observations
        outcomes.append((count, term, trunc))
    assert (500, False, True) in outcomes  # the time limit was reached at least once
    assert any(term for _, term, _ in outcomes)  # and a termination seen


# ---- export_web's folder ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def random_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    net, spec = cartpole_policy(seed=12)
    out = tmp_path_factory.mktemp("onnx")
    return export_policy(net, spec, out, formats=("onnx",), n_sampled=16).files["onnx"]


def tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_export_web_writes_a_self_contained_folder(random_onnx: Path, tmp_path: Path) -> None:
    npm_packages_or_skip()
    site = export_web(random_onnx, tmp_path / "site")
    assert site == tmp_path / "site"
    assert tree(site) == PAGE_FILES
    assert (site / "policy.onnx").read_bytes() == random_onnx.read_bytes()
    assert json.loads((site / "contract.json").read_text()) == Policy.load(random_onnx).metadata.raw
    package = find_onnxruntime_web()
    for name in ORT_FILES:
        assert (site / "ort" / Path(name).name).read_bytes() == (package / name).read_bytes()
    manifest = json.loads((site / MANIFEST).read_text())
    version = json.loads((package / "package.json").read_text())["version"]
    assert manifest["onnxruntime_web"] == version
    assert f'data-ort-version="{version}"' in (site / "index.html").read_text()
    assert sorted(manifest["files"]) == [f for f in PAGE_FILES if f != MANIFEST]
    for name, digest in manifest["files"].items():
        assert hashlib.sha256((site / name).read_bytes()).hexdigest() == digest, name
    # Offline: no page file names an address beyond loopback.
    for name in ("index.html", "app.js", "worker.js", "cartpole.js", "style.css"):
        text = (site / name).read_text()
        assert not re.search(r"(https?:)?//(?!127\.0\.0\.1[:/])[\w-]+\.[\w.-]+", text), name


def test_export_web_takes_an_export_folder_and_replaces_an_earlier_page(
    random_onnx: Path, tmp_path: Path
) -> None:
    npm_packages_or_skip()
    site = export_web(random_onnx, tmp_path / "site")
    net, spec = cartpole_policy(seed=13)
    other = export_policy(net, spec, tmp_path / "other", formats=("onnx",), n_sampled=16)
    assert export_web(tmp_path / "other", site) == site  # a folder holding policy.onnx
    assert (site / "policy.onnx").read_bytes() == other.files["onnx"].read_bytes()
    assert tree(site) == PAGE_FILES  # no staging folder or stale file left


def test_export_web_refuses_bad_input_and_changes_nothing(
    random_onnx: Path, tmp_path: Path
) -> None:
    npm_packages_or_skip()
    not_onnx = tmp_path / "policy.pt"
    not_onnx.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="ONNX"):
        export_web(not_onnx, tmp_path / "a")
    plain = tmp_path / "plain.onnx"
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", ["obs"], ["q_values"])],
        "plain",
        [onnx.helper.make_tensor_value_info("obs", onnx.TensorProto.FLOAT, [1, 2])],
        [onnx.helper.make_tensor_value_info("q_values", onnx.TensorProto.FLOAT, [1, 2])],
    )
    onnx.save_model(onnx.helper.make_model(graph), str(plain))
    with pytest.raises(ValueError, match="without dqnkit metadata"):
        export_web(plain, tmp_path / "b")
    with pytest.raises(ValueError, match=r"setup-web\.sh"):
        export_web(random_onnx, tmp_path / "c", onnxruntime_web=tmp_path / "nowhere")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not a dqnkit web export"):
        export_web(random_onnx, foreign)
    assert tree(foreign) == ["notes.txt"]
    assert (foreign / "notes.txt").read_text() == "mine"
    assert not any((tmp_path / name).exists() for name in "abc")


# ---- the page in Chromium ----------------------------------------------------------------------

SEED = 3  # the page's seed field: Gymnasium's env.reset(seed=3)
START_STATE = [0.02, -0.1, 0.03, 0.2]  # an episode from a given float64 state


def observations_to_try() -> np.ndarray:
    """CartPole observations (float32) from far and near; each one's argmax is not a tie."""
    rng = np.random.default_rng(11)
    spread = rng.normal(0.0, 1.0, size=(48, 4)) * np.array([1.0, 1.0, 0.1, 1.0])
    edges = np.array([[2.3, 0.0, 0.2, 0.0], [-2.3, 0.0, -0.2, 0.0], [0.0, 3.0, 0.0, -3.0]])
    return np.concatenate([spread, edges]).astype(np.float32)


@pytest.fixture(scope="module")
def trained_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The CartPole-v1 preset trained (it stops once solved: ~30 s of CPU), exported to ONNX."""
    browser_or_skip()
    from dqnkit.adapters import config_for, train

    out = tmp_path_factory.mktemp("trained")
    result = train(config_for("CartPole-v1", seed=0, out=str(out / "runs")), quiet=True)
    assert result.evaluation is not None
    assert result.evaluation.mean_return == 500.0, "the preset did not solve CartPole-v1"
    weights = result.run_dir / "policy.safetensors"
    return export_weights(weights, out / "export", formats=("onnx",)).files["onnx"]


@pytest.fixture(scope="module")
def cartpole_page(trained_onnx: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    site = export_web(trained_onnx, tmp_path_factory.mktemp("web") / "site")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    screenshot = ARTIFACTS / "cartpole-page.png"
    screenshot.unlink(missing_ok=True)
    obs = observations_to_try()
    steps = [
        {"do": "layout"},
        {"do": "observations", "observations": obs.tolist()},
        {"do": "form", "values": obs[0].tolist()},
        {"do": "episode", "seed": SEED},
        {"do": "screenshot", "path": str(screenshot)},
        {"do": "episode", "state": START_STATE},
        {"do": "play_for", "seed": 1, "ms": 1500, "speed": "realtime"},
    ]
    result = drive(site, steps)
    return {"onnx": trained_onnx, "site": site, "obs": obs, "screenshot": screenshot, **result}


def assert_within_export_tolerance(page: dict[str, Any], policy: Policy, obs: np.ndarray) -> None:
    q_page = np.asarray(page["q_values"], dtype=np.float64)
    q_python = policy.q_values(obs).astype(np.float64)
    assert q_page.shape == q_python.shape
    assert np.isfinite(q_page).all()
    excess = np.abs(q_page - q_python) - (ATOL + RTOL * np.abs(q_python))
    assert (excess <= 0).all(), f"max |dq| {np.abs(q_page - q_python).max():.3g}"
    np.testing.assert_array_equal(page["actions"], policy.act(obs))


@pytest.mark.slow
def test_page_gives_the_q_values_and_actions_of_the_python_runtime(
    cartpole_page: dict[str, Any],
) -> None:
    policy = Policy.load(cartpole_page["onnx"])
    layout, batch, form = cartpole_page["results"][:3]
    assert layout == {
        "simulation": True,
        "no_simulation_note": False,
        "fields": ["obs[0]", "obs[1]", "obs[2]", "obs[3]"],  # from the contract's obs_shape
        "title": "CartPole-v1",
    }
    obs = cartpole_page["obs"]
    assert batch["count"] == len(obs)
    assert_within_export_tolerance(batch, policy, obs)
    assert_within_export_tolerance(form, policy, obs[:1])
    assert len(set(batch["actions"])) == 2  # both actions among the answers


def follow_in_gymnasium(
    episode: dict[str, Any], policy: Policy, start: list[float] | None
) -> tuple[int, int]:
    """Replays the page's actions in Gymnasium's CartPole-v1 from the episode's start.

    Returns:
      how many steps in a row the page's state (float64) stays within STATE_TOL of Gymnasium's,
      and how many of those steps the Python runtime, on Gymnasium's float32 observation,
      chose a different action from the page's.
    """
    env: Any = gym.make("CartPole-v1")  # Any: CartPoleEnv's attributes are read below
    obs, _ = env.reset(seed=episode["seed"] if start is None else 0)
    if start is not None:
        env.unwrapped.state = np.array(start, dtype=np.float64)
        obs = np.array(start, dtype=np.float32)
    assert episode["initial_state"] == env.unwrapped.state.tolist()  # exactly the same start
    followed = disagreements = 0
    for action, page_state in zip(episode["actions"], episode["states"][1:], strict=True):
        disagreements += int(policy.act(obs) != action)
        obs, _, terminated, truncated, _ = env.step(action)
        if np.abs(np.asarray(page_state) - env.unwrapped.state).max() > STATE_TOL:
            break
        followed += 1
    if followed == len(episode["actions"]):
        assert (terminated, truncated) == (episode["terminated"], episode["truncated"])
    return followed, disagreements


@pytest.mark.slow
@pytest.mark.parametrize(("which", "start"), [(3, None), (5, START_STATE)])
def test_page_cartpole_follows_gymnasium_and_the_policy_keeps_the_pole_up(
    cartpole_page: dict[str, Any], which: int, start: list[float] | None
) -> None:
    episode = cartpole_page["results"][which]
    assert episode["seed"] == (SEED if start is None else None)
    followed, disagreements = follow_in_gymnasium(
        episode, Policy.load(cartpole_page["onnx"]), start
    )
    steps = len(episode["actions"])
    assert followed >= 200, f"the page followed Gymnasium for {followed} of its {steps} steps"
    assert disagreements == 0
    # The trained policy keeps the pole up: the time limit ends the episode, not a fall.
    assert (episode["steps"], episode["terminated"], episode["truncated"]) == (500, False, True)
    assert episode["shown"]["steps"] == "500"
    # Inference runs in the worker: the main thread stays free even flat out (Chromium reports
    # every task over 50 ms; a loaded machine may stretch one, never to a frozen page).
    assert max(episode["long_tasks_ms"], default=0.0) < 200.0, episode["long_tasks_ms"]
    assert "truncated at step 500" in episode["shown"]["episode"]


@pytest.mark.slow
def test_page_plays_in_real_time_and_pauses(cartpole_page: dict[str, Any]) -> None:
    played = cartpole_page["results"][6]
    # At most one step per 20 ms (CartPole's tau): the page is throttled, not flat out.
    assert 10 <= played["steps"] <= played["wall_ms"] / 20 + 2, played
    assert played["steps_after_pause"] == played["steps"]  # Pause stops it
    assert played["button"] == "Play"


@pytest.mark.slow
def test_page_shows_no_console_errors_asks_for_nothing_outside_and_is_screenshotted(
    cartpole_page: dict[str, Any],
) -> None:
    assert [m for m in cartpole_page["console"] if m["type"] == "error"] == []
    assert cartpole_page["page_errors"] == []
    assert cartpole_page["blocked"] == []  # nothing asked of any other origin: offline
    assert "wasm, one thread, in a worker" in cartpole_page["status"]
    png = cartpole_page["screenshot"].read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(png) > 10_000


@pytest.mark.slow
def test_page_for_another_environment_is_a_form_driven_by_the_contract(tmp_path: Path) -> None:
    browser_or_skip()
    torch.manual_seed(4)
    net = QNetwork(6, 3, hidden=(32, 32))
    high = [1.0, 1.0, 1.0, 1.0, 12.566371, 28.274334]
    spec = PolicySpec(
        env_id="Acrobot-v1",
        obs_shape=(6,),
        obs_dtype="float32",
        n_actions=3,
        network=network_config(net),
        obs_low=list[float | str](-h for h in high),
        obs_high=list[float | str](high),
        action_meanings=["torque -1", "torque 0", "torque +1"],
    )
    onnx_file = export_policy(net, spec, tmp_path / "export", formats=("onnx",)).files["onnx"]
    site = export_web(onnx_file, tmp_path / "site")
    rng = np.random.default_rng(2)
    obs = (rng.uniform(-1, 1, size=(20, 6)) * np.array(high)).astype(np.float32)
    result = drive(
        site,
        [
            {"do": "layout"},
            {"do": "form", "values": obs[0].tolist()},
            {"do": "observations", "observations": obs.tolist()},
            {"do": "observations", "text": "[[1, 2]]"},
            {"do": "observations", "text": "not json"},
        ],
    )
    layout, form, batch, short, garbled = result["results"]
    assert layout == {
        "simulation": False,
        "no_simulation_note": True,
        "fields": [f"obs[{i}]" for i in range(6)],
        "title": "Acrobot-v1",
    }
    policy = Policy.load(onnx_file)
    assert_within_export_tolerance(form, policy, obs[:1])
    assert_within_export_tolerance(batch, policy, obs)
    assert short == {"error": "observation 0 has 2 numbers, the policy takes 6"}
    assert garbled["error"].startswith("not JSON")
    assert [m for m in result["console"] if m["type"] == "error"] == []
    assert result["page_errors"] == []
    assert result["blocked"] == []


@pytest.mark.slow
def test_page_for_a_pixel_policy_takes_frames_as_json(tmp_path: Path) -> None:
    browser_or_skip()
    torch.manual_seed(0)
    net = ConvQNetwork((2, 30, 30), 3).eval()
    spec = PolicySpec(
        env_id="CartPole-v1",  # a pixel policy of CartPole: the page cannot make its frames
        obs_shape=(2, 30, 30),
        obs_dtype="uint8",
        n_actions=3,
        network=network_config(net),
        obs_low=0.0,
        obs_high=255.0,
        preprocessing={"frames": 2, "size": [30, 30]},
    )
    onnx_file = export_policy(net, spec, tmp_path / "export", formats=("onnx",), n_sampled=8)
    site = export_web(onnx_file.files["onnx"], tmp_path / "site")
    frames = np.random.default_rng(1).integers(0, 256, size=(3, 2, 30, 30), dtype=np.uint8)
    result = drive(
        site,
        [
            {"do": "layout"},
            {"do": "observations", "observations": frames.tolist()},  # nested [3][2][30][30]
            {"do": "observations", "text": json.dumps([[0.5] * 1800])},
        ],
    )
    layout, batch, fractional = result["results"]
    assert layout["simulation"] is False
    assert layout["fields"] == []  # 1,800 numbers: JSON only, no form
    assert_within_export_tolerance(batch, Policy.load(onnx_file.files["onnx"]), frames)
    assert fractional == {"error": "observation 0: obs[0, 0, 0] = 0.5 is not an integer 0..255"}
    assert [m for m in result["console"] if m["type"] == "error"] == []


def test_module_command_exports_and_refuses_in_one_line(
    random_onnx: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    npm_packages_or_skip()
    assert web_main(["export", str(random_onnx), str(tmp_path / "site")]) == 0
    assert tree(tmp_path / "site") == PAGE_FILES
    assert (
        f"serve it: python -m dqnkit.export.web serve {tmp_path / 'site'}"
        in capsys.readouterr().out
    )
    assert web_main(["export", str(tmp_path / "missing.onnx"), str(tmp_path / "other")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: "), err
    assert err.count("\n") == 1, err
    assert not (tmp_path / "other").exists()


@pytest.mark.slow
def test_page_opened_as_a_file_says_how_to_serve_it(random_onnx: Path, tmp_path: Path) -> None:
    browser_or_skip()
    site = export_web(random_onnx, tmp_path / "site")
    result = drive(site, [], as_file=True, expect_start=False)
    assert result["ready"] == "error"
    assert "serve this folder" in result["status"]
    assert "http.server" in result["status"]
    assert [m for m in result["console"] if m["type"] == "error"] == []
    assert result["blocked"] == []


def test_export_command_writes_the_page(tmp_path: Path) -> None:
    from tests.test_export import save_cartpole_weights
    from tests.test_play import run_cli

    npm_packages_or_skip()
    save_cartpole_weights(tmp_path / "run" / "policy.safetensors", seed=5)
    out = tmp_path / "site"
    done = run_cli("export", str(tmp_path / "run"), "--format", "web", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert tree(out) == PAGE_FILES
    assert Policy.load(out / "policy.onnx").metadata.env_id == "CartPole-v1"


def test_web_folder_pins_its_npm_packages() -> None:
    package = json.loads((WEB / "package.json").read_text())
    lock = json.loads((WEB / "package-lock.json").read_text())
    pinned = {**package["dependencies"], **package["devDependencies"]}
    assert set(pinned) == {"onnxruntime-web", "playwright-core"}
    for name, version in pinned.items():
        assert version[0].isdigit(), f"{name} {version}: pin an exact version"
        assert lock["packages"][f"node_modules/{name}"]["version"] == version
