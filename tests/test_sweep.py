"""Sweeps on Ray Tune: parsing, the plan, the statistics, bad input, and tiny CartPole sweeps
on a local Ray (num_cpus=2) checked against the same runs outside Ray."""

import csv
import dataclasses
import importlib
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from safetensors.torch import load_file

from dqnkit.adapters import TrainConfig, evaluate, train
from dqnkit.adapters.cli import main
from dqnkit.adapters.config import config_for
from dqnkit.adapters.errors import CommandError
from dqnkit.adapters.sweep import (
    Range,
    SweepSpec,
    _seed_text,
    bootstrap_interval,
    interquartile_mean,
    parse_grid,
    parse_seeds,
    plan_configurations,
    resume_sweep,
    run_sweep,
    sweepable_fields,
)

# Tiny CartPole runs: a few seconds each, four checkpoints.
TINY: dict[str, tuple[Any, ...]] = {
    "total_steps": (2_000,),
    "checkpoint_every": (500,),
    "learning_starts": (500,),
    "train_every": (64,),
    "epsilon_steps": (1_500,),
    "eval_every": (0,),
    "final_eval_episodes": (5,),
}
TABLE_EPISODES = 10
GOOD_LR, OTHER_LR, BAD_LR = 2.3e-3, 1e-3, 1e-7


def tiny_hp(**overrides: Any) -> dict[str, Any]:
    return {**{k: v[0] for k, v in TINY.items()}, **overrides}


# --- parsing ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seeds"),
    [
        ("0-9", tuple(range(10))),
        ("0,3,7", (0, 3, 7)),
        ("0-2,10-11", (0, 1, 2, 10, 11)),
        ("4", (4,)),
    ],
)
def test_parse_seeds(text, seeds):
    assert parse_seeds(text) == seeds


@pytest.mark.parametrize("text", ["", "a", "5-2", "0-1-2", "1,1", "-1", "0-3,2", "1.5"])
def test_parse_seeds_rejects(text):
    with pytest.raises(CommandError, match="--seeds"):
        parse_seeds(text)


@given(st.lists(st.integers(0, 60), min_size=1, max_size=20, unique=True))
def test_seed_text_reads_back(seeds):
    assert sorted(parse_seeds(_seed_text(seeds))) == sorted(seeds)


def test_seed_text_golden():
    assert _seed_text([5, 0, 1, 2, 9, 10]) == "0-2,5,9-10"


def test_sweepable_fields_are_read_from_the_dataclass():
    names = {f.name for f in dataclasses.fields(TrainConfig)} - {"env_id", "seed", "out"}
    assert set(sweepable_fields()) == names


def test_parse_grid_converts_to_the_field_types():
    grid = parse_grid(
        [
            "learning_rate=1e-3,3e-4",
            "hidden=64x64,128",
            "double_dqn=true,false",
            "eval_gate=none,400",
            "epsilon_schedule=linear",
            "batch-size=32,64",
            "gamma=0.9..0.999",
            "tau=1e-3..1:log",
        ]
    )
    assert grid["learning_rate"] == (1e-3, 3e-4)
    assert grid["hidden"] == ((64, 64), (128,))
    assert grid["double_dqn"] == (True, False)
    assert grid["eval_gate"] == (None, 400.0)
    assert grid["epsilon_schedule"] == ("linear",)
    assert grid["batch_size"] == (32, 64)
    assert grid["gamma"] == Range(0.9, 0.999, log=False)
    assert grid["tau"] == Range(1e-3, 1.0, log=True)
    assert all(isinstance(v, int) for v in grid["batch_size"])


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("learnig_rate=1e-3", "unknown hyperparameter 'learnig_rate'; known: batch_size"),
        ("learning_rate=fast", "learning_rate: 'fast' is not a float"),
        ("batch_size=1.5", "batch_size: '1.5' is not an int"),
        ("double_dqn=maybe", "double_dqn: 'maybe' is not true or false"),
        ("epsilon_schedule=cubic", "'cubic' is not one of linear, exponential"),
        ("hidden=64,a", "hidden: 'a' is not a tuple of ints"),
        ("seed=1,2", "seeds are given with --seeds"),
        ("learning_rate", "expected NAME=V1,V2"),
        ("learning_rate=nan", "is not a float"),
        ("double_dqn=0..1", "ranges LOW..HIGH"),
        ("tau=0..1:log", "a log range needs positive bounds"),
    ],
)
def test_parse_grid_rejects(entry, message):
    with pytest.raises(CommandError, match="--grid") as caught:
        parse_grid([entry])
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_parse_grid_rejects_a_name_twice():
    with pytest.raises(CommandError, match="given twice"):
        parse_grid(["tau=1", "tau=0.5"])


# --- the plan --------------------------------------------------------------------------------


def test_grid_is_the_product_in_order():
    spec = SweepSpec("CartPole-v1", (0, 1), {"learning_rate": (1e-3, 3e-4), "gamma": (0.9, 0.99)})
    assert plan_configurations(spec) == [
        {"learning_rate": 1e-3, "gamma": 0.9},
        {"learning_rate": 1e-3, "gamma": 0.99},
        {"learning_rate": 3e-4, "gamma": 0.9},
        {"learning_rate": 3e-4, "gamma": 0.99},
    ]


def test_random_search_draws_distinct_configurations_in_range_repeatably():
    grid: dict[str, Any] = {
        "learning_rate": Range(1e-4, 1e-2, log=True),
        "batch_size": (32, 64, 128),
    }
    spec = SweepSpec("CartPole-v1", (0,), grid, search="random", samples=6, search_seed=3)
    first, again = plan_configurations(spec), plan_configurations(spec)
    assert first == again
    assert len(first) == 6
    assert len({repr(sorted(c.items())) for c in first}) == 6
    assert all(
        1e-4 <= c["learning_rate"] <= 1e-2 and c["batch_size"] in (32, 64, 128) for c in first
    )
    other = plan_configurations(dataclasses.replace(spec, search_seed=4))
    assert other != first


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (SweepSpec("CartPole-v1", (0,), {"gamma": Range(0.9, 0.99)}), "needs --search random"),
        (SweepSpec("CartPole-v1", (0,), samples=3), "use it with --search random"),
        (SweepSpec("CartPole-v1", (0,), search="random"), "needs --samples N"),
        (
            SweepSpec("CartPole-v1", (0,), {"tau": (1.0, 0.5)}, search="random", samples=3),
            "only 2 distinct configurations",
        ),
        (SweepSpec("CartPole-v1", ()), "at least one seed"),
        (SweepSpec("CartPole-v1", (0,), {"learning_rate": ("1e-3",)}), "is not a float"),
        (SweepSpec("CartPole-v1", (0,), {"batch_size": (0,)}), "--batch-size must be positive"),
        (SweepSpec("CartPole-v1", (0,), {"checkpoint_every": (0,)}), "checkpoint_every"),
        (
            SweepSpec("CartPole-v1", (0,), asha=True),  # the preset's eval_gate skips evaluations
            "add --grid eval_gate=none",
        ),
        (
            SweepSpec("CartPole-v1", (0,), {"eval_every": (0,)}, asha=True),
            "add --grid eval_every=N",
        ),
    ],
)
def test_plan_rejects(spec, message):
    with pytest.raises(CommandError) as caught:
        plan_configurations(spec)
    assert message in str(caught.value)


# --- statistics ------------------------------------------------------------------------------


def test_interquartile_mean_golden():
    assert interquartile_mean([8, 1, 7, 2, 6, 3, 5, 4]) == 4.5  # mean of 3, 4, 5, 6
    assert interquartile_mean([1, 2, 3, 4, 100]) == 3.0  # one cut from each end of five
    assert interquartile_mean([1, 3, 500]) == pytest.approx(504 / 3)  # nothing cut below four
    assert interquartile_mean([7]) == 7.0


def test_bootstrap_interval_matches_a_plain_resampling():
    values = np.array([10.0, 200.0, 35.0, 500.0, 480.0, 90.0, 12.0])
    low, high = bootstrap_interval(values, "iqm", resamples=500, seed=11)
    rng = np.random.default_rng(11)
    picks = rng.integers(0, values.size, size=(500, values.size))
    stats = sorted(interquartile_mean([values[i] for i in row]) for row in picks)
    assert (low, high) == pytest.approx(tuple(np.quantile(stats, [0.025, 0.975])))
    assert low <= interquartile_mean(values) <= high
    assert bootstrap_interval([3.0, 3.0, 3.0]) == (3.0, 3.0)
    with pytest.raises(ValueError, match="NaN"):
        bootstrap_interval([1.0, float("nan")])


# --- bad input at the command line: one line, nothing started -------------------------------


def run_cli(capsys, *args: str) -> tuple[int, str]:
    code = main(["sweep", *args])
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["CartPole-v1", "--seeds", "0-x"], "--seeds: cannot read '0-x'"),
        (["CartPole-v1"], "sweep needs --seeds"),
        (["--seeds", "0"], "sweep needs an ENV_ID"),
        (["CartPole-v1", "--seeds", "0", "--grid", "lr=1e-3"], "unknown hyperparameter 'lr'"),
        (["CartPole-v1", "--seeds", "0", "--grid", "gamma=high"], "'high' is not a float"),
        (["CartPole-v1", "--seeds", "0", "--metric", "train/mean_return"], "add --asha"),
        (["--resume", "somewhere", "--seeds", "0"], "drop --seeds"),
        (["--resume", "nowhere"], "not a sweep directory"),
        (
            ["CartPole-v1", "--seeds", "0", "--address", "ray://head:10001"],
            "Ray Client addresses are not supported",
        ),
        (["CartPole-v1", "--seeds", "0", "--address", "head"], "expected HOST:PORT"),
    ],
)
def test_cli_rejects(capsys, tmp_path, args, message):
    out = [] if "--resume" in args else ["--out", str(tmp_path / "out")]
    code, err = run_cli(capsys, *args, *out)
    assert code == 2
    assert message in err
    assert err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_ray_missing_names_the_extra(capsys, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    monkeypatch.setitem(sys.modules, "ray.tune", None)
    code, err = run_cli(capsys, "CartPole-v1", "--seeds", "0", "--out", str(tmp_path / "out"))
    assert code == 2
    assert "pip install 'dqnkit[sweep]'" in err
    assert err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_an_address_that_does_not_answer(capsys, tmp_path):
    with socket.socket() as s:  # a port nothing listens on once this socket is closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code, err = run_cli(
        capsys,
        *("CartPole-v1", "--seeds", "0", "--address", f"127.0.0.1:{port}"),
        *("--out", str(tmp_path / "out")),
    )
    assert code == 2
    assert f"--address 127.0.0.1:{port}: no Ray cluster answers there" in err
    assert err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_help_does_not_import_ray():
    code = (
        "import sys\n"
        "from dqnkit.adapters.cli import build_parser\n"
        "build_parser().parse_args(['sweep', '--help'])\n"
    )
    check = subprocess.run(
        [sys.executable, "-c", code + ""], capture_output=True, text=True, check=False
    )
    assert check.returncode == 0
    assert "--grid NAME=V1,V2" in check.stdout
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys\nfrom dqnkit.adapters.cli import build_parser\n"
            "build_parser().format_help()\nprint(sorted(m for m in sys.modules if m == 'ray'))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stdout.strip() == "[]"


# --- sweeps on a local Ray -------------------------------------------------------------------


@pytest.fixture(scope="module")
def local_ray():
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray: Any = importlib.import_module("ray")  # the sweep extra is part of the test set-up
    # address="local", as the sweep's own: never a `ray start` cluster running on this machine.
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="WARNING",
             log_to_driver=False)  # fmt: skip
    try:
        yield ray
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def references(tmp_path_factory):
    """The same tiny runs outside Ray, made when first asked for: (lr, seed) -> run dir."""
    out = tmp_path_factory.mktemp("outside-ray")
    runs: dict[tuple[float, int], Path] = {}

    def get(lr: float, seed: int) -> Path:
        if (lr, seed) not in runs:
            config = config_for("CartPole-v1", **tiny_hp(learning_rate=lr), seed=seed, out=str(out))
            runs[lr, seed] = train(config, quiet=True).run_dir
        return runs[lr, seed]

    return get


def comparable_metrics(metrics_csv: Path) -> list[dict[str, str]]:
    with open(metrics_csv) as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        del row["sps"]  # wall-clock dependent
    return rows


def assert_same_run(trial_dir: Path, reference: Path) -> None:
    ours = load_file(trial_dir / "policy.safetensors")
    theirs = load_file(reference / "policy.safetensors")
    assert ours.keys() == theirs.keys()
    for name in ours:
        assert ours[name].isfinite().all(), name
        assert ours[name].equal(theirs[name]), name
    assert comparable_metrics(trial_dir / "metrics.csv") == comparable_metrics(
        reference / "metrics.csv"
    )


@pytest.mark.slow
def test_sweep_of_two_configurations_and_two_seeds(local_ray, references, tmp_path):
    grid = {**TINY, "learning_rate": (GOOD_LR, OTHER_LR)}
    spec = SweepSpec("CartPole-v1", (0, 1), grid, table_episodes=TABLE_EPISODES)
    result = run_sweep(spec, out=tmp_path, quiet=True)

    got = sorted((t["config"], t["hp"]["learning_rate"], t["seed"]) for t in result.trials)
    assert got == [(0, GOOD_LR, 0), (0, GOOD_LR, 1), (1, OTHER_LR, 0), (1, OTHER_LR, 1)]
    greedy: dict[float, list[float]] = {GOOD_LR: [], OTHER_LR: []}
    for t in result.trials:
        assert t["status"] == "finished"
        assert t["steps"] == 2_000
        reference = references(t["hp"]["learning_rate"], t["seed"])
        assert_same_run(Path(t["run_dir"]), reference)
        outside = evaluate(reference, episodes=TABLE_EPISODES).mean_return
        assert t["greedy_mean"] == outside
        greedy[t["hp"]["learning_rate"]].append(outside)

    rows = {r["label"]: r for r in result.configurations}
    assert set(rows) == {"learning_rate=0.0023", "learning_rate=0.001"}
    for lr, label in ((GOOD_LR, "learning_rate=0.0023"), (OTHER_LR, "learning_rate=0.001")):
        row = rows[label]
        assert (row["seeds"], row["finished"], row["failed"]) == ("0-1", 2, 0)
        assert row["mean"] == pytest.approx(np.mean(greedy[lr]))
        assert row["median"] == pytest.approx(np.median(greedy[lr]))
        assert row["iqm"] == pytest.approx(np.mean(greedy[lr]))  # nothing cut from two seeds
        assert row["iqm_ci_low"] == min(greedy[lr])
        assert row["iqm_ci_high"] == max(greedy[lr])
    written = json.loads((result.sweep_dir / "results.json").read_text())
    assert [r["label"] for r in written["configurations"]] == [
        r["label"] for r in result.configurations
    ]
    with open(result.sweep_dir / "results.csv") as f:
        assert len(list(csv.DictReader(f))) == 2
    assert (result.sweep_dir / "curves.png").read_bytes()[:4] == b"\x89PNG"

    # Resuming a finished sweep keeps every trial and gives the same table.
    again = resume_sweep(result.sweep_dir, quiet=True)
    assert again.configurations == result.configurations


def kill_after_first_checkpoint(tune: Any, marker: Path) -> Any:
    """A Tune callback (run in this process) that SIGKILLs a trial's worker right after Tune has
    registered the trial's first checkpoint, when the worker is blocked in ``tune.report``.
    It kills once: ``marker`` records that it did (Tune pickles callbacks with the sweep, so a
    resumed sweep gets a fresh copy of this object)."""

    class Killer(tune.Callback):  # type: ignore[misc]
        def __init__(self) -> None:
            self.killed: list[int] = []
            self.recovered = 0

        def on_trial_save(self, iteration: int, trials: Any, trial: Any, **info: Any) -> None:
            if not marker.exists():
                marker.touch()
                pid = int(trial.last_result["pid"])
                self.killed.append(pid)
                os.kill(pid, signal.SIGKILL)

        def on_trial_recover(self, iteration: int, trials: Any, trial: Any, **info: Any) -> None:
            self.recovered += 1

    return Killer()


def reported(sweep_dir: Path, label: str) -> list[dict[str, str]]:
    """Tune's record of what a trial reported (progress.csv), in order."""
    (progress,) = sweep_dir.glob(f"{label}-*/progress.csv")
    with open(progress) as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_a_killed_trial_resumes_exactly(local_ray, references, tmp_path):
    tune: Any = importlib.import_module("ray.tune")
    killer = kill_after_first_checkpoint(tune, tmp_path / "killed")
    grid = {**TINY, "learning_rate": (GOOD_LR,)}
    spec = SweepSpec("CartPole-v1", (1,), grid, table_episodes=TABLE_EPISODES)
    result = run_sweep(spec, out=tmp_path, quiet=True, callbacks=[killer])

    assert len(killer.killed) == 1
    assert killer.recovered == 1
    (trial,) = result.trials
    assert trial["status"] == "finished"
    assert trial["steps"] == 2_000
    reference = references(GOOD_LR, 1)
    assert_same_run(Path(trial["run_dir"]), reference)
    assert trial["greedy_mean"] == evaluate(reference, episodes=TABLE_EPISODES).mean_return
    rows = reported(result.sweep_dir, "c0-s1")
    assert int(rows[0]["pid"]) == killer.killed[0]
    assert {int(r["pid"]) for r in rows[1:]} != {killer.killed[0]}  # the rest: a new worker
    # Continued from the step-500 checkpoint, not started again: no second report at 500.
    assert [int(r["step"]) for r in rows] == [500, 1_000, 1_500, 2_000, 2_000]


@pytest.mark.slow
def test_resume_continues_a_failed_trial_exactly(local_ray, references, tmp_path, capsys):
    tune: Any = importlib.import_module("ray.tune")
    grid = {**TINY, "learning_rate": (GOOD_LR,)}
    spec = SweepSpec("CartPole-v1", (0,), grid, max_failures=0, table_episodes=TABLE_EPISODES)
    killer = kill_after_first_checkpoint(tune, tmp_path / "killed")
    first = run_sweep(spec, out=tmp_path, quiet=True, callbacks=[killer])
    assert [t["status"] for t in first.trials] == ["failed"]
    assert first.configurations[0]["failed"] == 1

    assert main(["sweep", "--resume", str(first.sweep_dir), "--quiet"]) == 0
    assert "1/1" in capsys.readouterr().out  # the table: one of one trials finished
    again = json.loads((first.sweep_dir / "results.json").read_text())
    (trial,) = again["trials"]
    assert trial["status"] == "finished"
    assert_same_run(Path(trial["run_dir"]), references(GOOD_LR, 0))
    assert [int(r["step"]) for r in reported(first.sweep_dir, "c0-s0")] == [
        500,
        1_000,
        1_500,
        2_000,
        2_000,
    ]


@pytest.mark.slow
def test_asha_stops_the_clearly_worse_configuration(local_ray, tmp_path):
    hp = {**TINY, "eval_every": (500,), "eval_episodes": (5,), "eval_gate": (None,)}
    # Seeds 2 and 3: at step 1000 their 5-episode greedy means are 78.2 and 41.6 with the good
    # learning rate and 8.8 (the untrained policy's) with 1e-7. The good configuration comes
    # first, so both CPUs run its trials and one of them records the 1000-step rung before
    # any 1e-7 trial starts; ASHA (keep the best half) then stops each 1e-7 trial there.
    spec = SweepSpec(
        "CartPole-v1",
        (2, 3),
        {**hp, "learning_rate": (GOOD_LR, BAD_LR)},
        asha=True,
        metric="eval/mean_return",
        grace_steps=1_000,
        table_episodes=TABLE_EPISODES,
    )
    result = run_sweep(spec, out=tmp_path, quiet=True)
    by_lr: dict[float, list[dict[str, Any]]] = {GOOD_LR: [], BAD_LR: []}
    for t in result.trials:
        by_lr[t["hp"]["learning_rate"]].append(t)
    assert [t["steps"] for t in by_lr[BAD_LR]] == [1_000, 1_000]
    assert [t["status"] for t in by_lr[BAD_LR]] == ["stopped", "stopped"]
    # ASHA stops trials, not configurations: the good one's weaker seed may stop too.
    assert "finished" in [t["status"] for t in by_lr[GOOD_LR]]
    bad = next(r for r in result.configurations if r["hp"]["learning_rate"] == BAD_LR)
    assert (bad["finished"], bad["stopped"], bad["iqm"]) == (0, 2, None)


@dataclasses.dataclass
class FakeResult:
    """What _summarise reads of a ray.tune.Result."""

    config: dict[str, Any] | None
    metrics: dict[str, Any] | None = None
    checkpoint: Any = None
    error: Exception | None = None


def test_summary_counts_trials_that_never_started(tmp_path):
    from dqnkit.adapters.sweep import _summarise

    hp = {"learning_rate": 1e-3}
    plan = {
        "spec": {"env_id": "CartPole-v1", "seeds": [0, 1, 2], "table_episodes": 10},
        "configurations": [hp],
    }
    done = {
        "step": 300,
        "greedy/mean_return": 40.0,
        "greedy/std_return": 1.0,
        "eval/mean_return": float("nan"),
        "train/mean_return": 20.0,
        "trial_wall_seconds": 2.0,
    }
    grid = [
        FakeResult({"trial": {"config": 0, "seed": 0, "hp": hp}}, done),
        FakeResult({"trial": {"config": 0, "seed": 1, "hp": hp}}, {"step": 100}, error=OSError()),
        FakeResult(None),  # Tune lists a trial it never started without its config
    ]
    result = _summarise(tmp_path, plan, grid, 1.0)
    assert [(t["seed"], t["status"]) for t in result.trials] == [
        (0, "finished"),
        (1, "failed"),
        (2, "not started"),
    ]
    (row,) = result.configurations
    assert (row["trials"], row["finished"], row["failed"], row["not_started"]) == (3, 1, 1, 1)
    assert (row["mean"], row["iqm"], row["mean_steps"]) == (40.0, 40.0, 300.0)
    assert "1/3 (1 failed) (1 not started)" in result.table()
    assert result.trials[0]["last_eval"] is None  # NaN (no evaluation yet) is written as empty


def test_without_an_address_the_sweep_starts_its_own_local_ray() -> None:
    """Not a cluster that `ray start` left running here: that one would refuse num_cpus."""
    from dqnkit.adapters import sweep

    calls: list[dict[str, Any]] = []

    class Ray:
        def is_initialized(self) -> bool:
            return False

        def init(self, **kwargs: Any) -> None:
            calls.append(kwargs)

        def shutdown(self) -> None:
            calls.append({"shutdown": True})

    with sweep._ray_running(Ray(), None):
        pass
    with sweep._ray_running(Ray(), "10.0.0.1:6379"):
        pass
    assert calls[0]["address"] == "local"
    assert calls[0]["num_cpus"] >= 1
    assert calls[2]["address"] == "10.0.0.1:6379"
    assert "num_cpus" not in calls[2]
