"""Sweeps of seeds and hyperparameters on Ray Tune: every trial is one dqnkit run.

A sweep is a list of configurations (a grid of :class:`TrainConfig` values, or random draws from
it) times a list of seeds. Each (configuration, seed) is one Tune trial that runs dqnkit's own
:func:`dqnkit.adapters.training.train`; the trial's Tune checkpoints are dqnkit's checkpoints
(a run directory's ``config.json`` and ``checkpoints/step-N.safetensors``), reported with the
trial's metrics, so a trial that Tune restarts after a failure resumes exactly and ends as it
would have uninterrupted. Tune schedules; nothing here does.

Python API::

    from dqnkit.adapters.sweep import SweepSpec, run_sweep

    spec = SweepSpec("CartPole-v1", seeds=(0, 1, 2), grid={"learning_rate": (2.3e-3, 1e-3)})
    result = run_sweep(spec, out="sweeps")
    print(result.sweep_dir, [row["iqm"] for row in result.configurations])

Ray is imported lazily, by :func:`run_sweep` and :func:`resume_sweep` only: the core and the
training loop never import it, and neither does ``dqnkit --help``.
"""

import csv
import dataclasses
import importlib
import importlib.util
import io
import itertools
import json
import math
import os
import random
import shutil
import socket
import tempfile
import time
import types
import typing
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np

from dqnkit.adapters import rundir
from dqnkit.adapters.config import TrainConfig, config_for
from dqnkit.adapters.errors import CommandError

__all__ = [
    "METRICS",
    "Range",
    "SweepResult",
    "SweepSpec",
    "bootstrap_interval",
    "interquartile_mean",
    "parse_grid",
    "parse_seeds",
    "resume_sweep",
    "run_sweep",
    "sweepable_fields",
]

# Files of a sweep directory (Tune's own files sit beside them).
SWEEP_FILE = "sweep.json"
RESULTS_CSV = "results.csv"
TRIALS_CSV = "trials.csv"
RESULTS_JSON = "results.json"
CURVES_PNG = "curves.png"
RUNS_DIR = "runs"
# Written into each Tune checkpoint beside the run directory's files.
TRIAL_FILE = "dqnkit-trial.json"

# What a trial reports at each checkpoint, and what --asha may compare.
METRICS = ("eval/mean_return", "train/mean_return")
Metric = Literal["eval/mean_return", "train/mean_return"]
Search = Literal["grid", "random"]

# Fields a grid may not set: the seed comes from --seeds, out and device from the sweep.
_NOT_SWEPT = frozenset({"env_id", "seed", "out"})
# The greedy evaluation of the table uses `dqnkit evaluate`'s default seed.
_TABLE_SEED = 1_000_000
_BOOTSTRAP_RESAMPLES = 10_000


@dataclass(frozen=True)
class Range:
    """A range to draw from with ``search="random"``: uniform, or log-uniform with ``log``.

    Integer fields draw integers in ``[low, high]``; float fields draw floats.
    """

    low: float
    high: float
    log: bool = False


GridValue = tuple[Any, ...] | Range


@dataclass(frozen=True)
class SweepSpec:
    """What to sweep: an environment, seeds, and hyperparameters (TrainConfig field names).

    Every configuration starts from the environment's preset (as ``dqnkit train`` does); a
    grid entry with one value is a fixed override (``total_steps=(20_000,)``).
    """

    env_id: str
    seeds: tuple[int, ...]
    grid: Mapping[str, GridValue] = field(default_factory=dict)
    search: Search = "grid"
    samples: int | None = None  # with search="random": how many configurations to draw
    search_seed: int = 0  # the draws of search="random"
    asha: bool = False  # stop trials early with Tune's ASHA scheduler
    metric: Metric = "eval/mean_return"  # what ASHA compares (higher is better)
    grace_steps: int | None = None  # ASHA's first rung; default: the first checkpoint
    reduction_factor: int = 2  # ASHA keeps the best 1/reduction_factor at each rung
    cpus_per_trial: float = 1.0
    max_failures: int = 3  # restarts of a failed trial from its last checkpoint
    table_episodes: int = 100  # greedy episodes per trial for the result table


@dataclass(frozen=True)
class SweepResult:
    """A finished (or partly failed) sweep: its folder, and the table rows."""

    sweep_dir: Path
    configurations: list[dict[str, Any]]  # one row per configuration (results.csv)
    trials: list[dict[str, Any]]  # one row per trial (trials.csv)
    wall_seconds: float

    def table(self) -> str:
        return format_table(self.configurations)


# --- parsing the command line's strings ------------------------------------------------------


def parse_seeds(text: str) -> tuple[int, ...]:
    """``"0-9"``, ``"0,3,7"`` or ``"0-4,10-14"`` -> the seeds, in order, each once."""
    seeds: list[int] = []
    for part in text.split(","):
        bounds = part.strip().split("-")
        try:
            if len(bounds) == 1:
                chunk = [int(bounds[0])]
            elif len(bounds) == 2:
                low, high = int(bounds[0]), int(bounds[1])
                if high < low:
                    raise CommandError(f"--seeds: the range {part.strip()!r} runs backwards")
                chunk = list(range(low, high + 1))
            else:
                raise ValueError
        except ValueError:
            raise CommandError(
                f"--seeds: cannot read {text!r}: use non-negative integers like 0-9 or 0,3,7"
            ) from None
        seeds.extend(chunk)
    if len(set(seeds)) != len(seeds):
        raise CommandError(f"--seeds: {text!r} names a seed twice")
    return tuple(seeds)


def sweepable_fields() -> dict[str, Any]:
    """TrainConfig's field names a grid may set, with their types (read from the dataclass)."""
    hints = typing.get_type_hints(TrainConfig)
    return {
        f.name: hints[f.name] for f in dataclasses.fields(TrainConfig) if f.name not in _NOT_SWEPT
    }


def parse_grid(entries: Sequence[str]) -> dict[str, GridValue]:
    """``["learning_rate=1e-3,3e-4", "hidden=64x64,128x128", "learning_rate=1e-4..1e-2:log"]``.

    Values are converted to the field's type: ints, floats, ``true``/``false``, a choice of a
    Literal, ``none`` for an optional field, and ``AxBxC`` for a tuple of widths. ``LOW..HIGH``
    (``:log`` for log-uniform) is a range for ``--search random``.
    """
    fields = sweepable_fields()
    grid: dict[str, GridValue] = {}
    for entry in entries:
        name, sep, values = entry.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or not name or not values.strip():
            raise CommandError(f"--grid {entry!r}: expected NAME=V1,V2 (e.g. learning_rate=1e-3)")
        _check_name(name, fields)
        if name in grid:
            raise CommandError(f"--grid {name} is given twice: put all its values in one --grid")
        if ".." in values:
            grid[name] = _parse_range(name, fields[name], values.strip())
        else:
            grid[name] = tuple(
                _parse_value(name, fields[name], v.strip()) for v in values.split(",")
            )
    return grid


def _check_name(name: str, fields: Mapping[str, Any]) -> None:
    if name == "seed":
        raise CommandError("--grid seed: seeds are given with --seeds (e.g. --seeds 0-9)")
    if name not in fields:
        raise CommandError(
            f"--grid: unknown hyperparameter {name!r}; known: {', '.join(sorted(fields))}"
        )


def _parse_value(name: str, kind: Any, text: str) -> Any:
    """One grid value from text, as the field's type, or a one-line error naming both."""
    options = typing.get_args(kind)
    if typing.get_origin(kind) in (typing.Union, types.UnionType):  # e.g. float | None
        if text.lower() == "none":
            return None
        (kind,) = [a for a in options if a is not type(None)]
        options = typing.get_args(kind)
    try:
        if kind is bool:
            lowered = text.lower()
            if lowered not in ("true", "false", "1", "0"):
                raise ValueError
            return lowered in ("true", "1")
        if kind is int:
            return int(text)
        if kind is float:
            value = float(text)
            if not math.isfinite(value):
                raise ValueError
            return value
        if kind is str:
            return text
        if typing.get_origin(kind) is Literal:
            if text not in options:
                raise CommandError(
                    f"--grid {name}: {text!r} is not one of {', '.join(map(str, options))}"
                )
            return text
        if typing.get_origin(kind) is tuple:
            return tuple(int(part) for part in text.split("x"))
    except ValueError:
        raise CommandError(
            f"--grid {name}: {text!r} is not {_type_name(kind)}"
            + (" (widths like 64x64)" if typing.get_origin(kind) is tuple else "")
        ) from None
    raise CommandError(f"--grid {name}: this field cannot be swept from the command line")


def _parse_range(name: str, kind: Any, text: str) -> Range:
    span, _, suffix = text.partition(":")
    low_text, _, high_text = span.partition("..")
    if kind not in (int, float) or suffix not in ("", "log"):
        raise CommandError(
            f"--grid {name}={text}: ranges LOW..HIGH[:log] are for int and float fields only"
        )
    low, high = (_parse_value(name, kind, t.strip()) for t in (low_text, high_text))
    return _check_range(name, Range(low, high, suffix == "log"))


def _check_range(name: str, r: Range) -> Range:
    if not r.low < r.high:
        raise CommandError(f"--grid {name}: the range {r.low}..{r.high} is empty")
    if r.log and r.low <= 0:
        raise CommandError(f"--grid {name}: a log range needs positive bounds, got {r.low}")
    return r


def _type_name(kind: Any) -> str:
    if typing.get_origin(kind) is tuple:
        return "a tuple of ints"
    return {int: "an int", float: "a float", bool: "true or false", str: "a string"}.get(
        kind, str(kind)
    )


# --- the plan: configurations x seeds, all validated before anything starts ------------------


def plan_configurations(spec: SweepSpec) -> list[dict[str, Any]]:
    """The configurations of a sweep (field overrides), each checked by TrainConfig.validate.

    Raises:
      CommandError: a bad name, value, range or option, before anything has started.
    """
    if not spec.seeds:
        raise CommandError("--seeds: at least one seed is needed")
    if any(not isinstance(s, int) or isinstance(s, bool) or s < 0 for s in spec.seeds):
        raise CommandError(f"--seeds must be non-negative integers, got {spec.seeds}")
    fields = sweepable_fields()
    grid: dict[str, GridValue] = {}
    for name, given in spec.grid.items():
        _check_name(name, fields)
        values: Any = given  # from Python callers: anything; checked here
        if isinstance(values, Range):
            if fields[name] not in (int, float):
                raise CommandError(f"--grid {name}: ranges are for int and float fields only")
            grid[name] = _check_range(name, values)
            continue
        if isinstance(values, str | bytes) or not isinstance(values, Sequence) or not values:
            raise CommandError(f"--grid {name}: give a tuple of values, got {values!r}")
        grid[name] = tuple(_check_value(name, fields[name], v) for v in values)
    for name, values in grid.items():
        if not isinstance(values, Range) and len(set(map(repr, values))) != len(values):
            raise CommandError(f"--grid {name}: a value is given twice")

    if spec.search not in ("grid", "random"):
        raise CommandError(f"--search must be 'grid' or 'random', got {spec.search!r}")
    if spec.search == "grid":
        if spec.samples is not None:
            raise CommandError("--samples draws configurations: use it with --search random")
        ranged = [n for n, v in grid.items() if isinstance(v, Range)]
        if ranged:
            raise CommandError(f"--grid {ranged[0]}: a LOW..HIGH range needs --search random")
        names = list(grid)
        choices = [typing.cast(tuple[Any, ...], grid[n]) for n in names]
        configurations = [
            dict(zip(names, combo, strict=True)) for combo in itertools.product(*choices)
        ]
    else:
        if spec.samples is None or spec.samples <= 0:
            raise CommandError("--search random needs --samples N (N configurations to draw)")
        configurations = _draw(grid, fields, spec.samples, spec.search_seed)

    if spec.metric not in METRICS:
        raise CommandError(f"--metric must be one of {', '.join(METRICS)}, got {spec.metric!r}")
    if spec.cpus_per_trial <= 0:
        raise CommandError(f"--cpus-per-trial must be positive, got {spec.cpus_per_trial}")
    if spec.max_failures < 0:
        raise CommandError(f"--max-failures must be non-negative, got {spec.max_failures}")
    if spec.table_episodes <= 0:
        raise CommandError(f"--table-episodes must be positive, got {spec.table_episodes}")
    if spec.reduction_factor < 2:
        raise CommandError(f"the ASHA reduction factor must be >= 2, got {spec.reduction_factor}")
    if spec.grace_steps is not None and spec.grace_steps <= 0:
        raise CommandError(f"--grace-steps must be positive, got {spec.grace_steps}")
    for overrides in configurations:
        config = config_for(spec.env_id, **overrides, seed=spec.seeds[0])
        if config.checkpoint_every == 0:
            raise CommandError(
                "a sweep reports at dqnkit's checkpoints: checkpoint_every must be positive"
            )
        if spec.asha and spec.metric == "eval/mean_return":
            if config.eval_every == 0:
                raise CommandError(
                    "--asha --metric eval/mean_return compares periodic evaluations: "
                    "add --grid eval_every=N (or use --metric train/mean_return)"
                )
            if config.eval_gate is not None:
                raise CommandError(
                    f"--asha --metric eval/mean_return: the eval_gate {config.eval_gate} skips "
                    "the evaluations ASHA compares; add --grid eval_gate=none "
                    "(or use --metric train/mean_return)"
                )
    return configurations


def _check_value(name: str, kind: Any, value: Any) -> Any:
    """A Python API value checked against the field's type (ints accepted for floats)."""
    text = value if isinstance(value, str) else None
    optional = typing.get_origin(kind) in (typing.Union, types.UnionType)
    if optional:
        if value is None:
            return None
        (kind,) = [a for a in typing.get_args(kind) if a is not type(None)]
    ok: bool
    if kind is bool:
        ok = isinstance(value, bool)
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif kind is str:
        ok = isinstance(value, str)
    elif typing.get_origin(kind) is Literal:
        ok = value in typing.get_args(kind)
    elif typing.get_origin(kind) is tuple:
        ok = isinstance(value, tuple | list) and all(
            isinstance(v, int) and not isinstance(v, bool) for v in value
        )
        value = tuple(value) if ok else value
    else:
        ok = False
    if not ok:
        shown = text if text is not None else repr(value)
        raise CommandError(f"--grid {name}: {shown} is not {_type_name(kind)}")
    return value


def _draw(
    grid: Mapping[str, GridValue], fields: Mapping[str, Any], samples: int, seed: int
) -> list[dict[str, Any]]:
    """``samples`` distinct configurations drawn at random (seeded): the same seeds run each."""
    discrete = all(not isinstance(v, Range) for v in grid.values())
    if discrete:
        size = math.prod(len(typing.cast(tuple[Any, ...], v)) for v in grid.values())
        if size < samples:
            raise CommandError(
                f"--samples {samples}: the grid has only {size} distinct configurations"
            )
    rng = random.Random(seed)
    drawn: list[dict[str, Any]] = []
    seen: set[str] = set()
    for _ in range(1000 * samples):
        candidate: dict[str, Any] = {}
        for name, values in grid.items():
            if isinstance(values, Range):
                candidate[name] = _draw_range(values, fields[name], rng)
            else:
                candidate[name] = rng.choice(values)
        key = repr(sorted(candidate.items()))
        if key not in seen:
            seen.add(key)
            drawn.append(candidate)
            if len(drawn) == samples:
                return drawn
    raise CommandError(f"--samples {samples}: could not draw that many distinct configurations")


def _draw_range(r: Range, kind: Any, rng: random.Random) -> float | int:
    if kind is int:
        if r.log:
            return round(math.exp(rng.uniform(math.log(r.low), math.log(r.high))))
        return rng.randint(int(r.low), int(r.high))
    if r.log:
        return math.exp(rng.uniform(math.log(r.low), math.log(r.high)))
    return rng.uniform(r.low, r.high)


def _trials(configurations: list[dict[str, Any]], seeds: Sequence[int]) -> list[dict[str, Any]]:
    """Configuration-major: all seeds of the first configuration, then the next."""
    return [
        {"config": index, "seed": seed, "hp": overrides}
        for index, overrides in enumerate(configurations)
        for seed in seeds
    ]


def trial_label(trial: Mapping[str, Any]) -> str:
    return f"c{trial['config']}-s{trial['seed']}"


# --- Ray: imported here only ---------------------------------------------------------------


def _import_ray() -> tuple[Any, Any]:
    """``(ray, ray.tune)``, or a one-line error naming the extra."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no network calls home
    # Tune's own console output: the legacy reporter, which verbose=0 silences (the table and
    # one line per trial are ours), and no warning about frequent experiment snapshots.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    # `ray start` turns on token authentication (the token in ~/.ray/auth_token), as a local
    # ray.init does, but a driver attaching to a cluster sends its token only when
    # RAY_AUTH_MODE=token, read when ray is imported: set it when a token is there and the user
    # chose no mode.
    if "RAY_AUTH_TOKEN" in os.environ or (Path.home() / ".ray" / "auth_token").is_file():
        os.environ.setdefault("RAY_AUTH_MODE", "token")
    try:
        ray = importlib.import_module("ray")
        tune = importlib.import_module("ray.tune")
    except ImportError as error:
        raise CommandError(
            f"dqnkit sweep needs Ray Tune, which is not installed ({error}): "
            "pip install 'dqnkit[sweep]'"
        ) from None
    return ray, tune


def check_address(address: str) -> None:
    """A one-line error, before anything starts, when nothing answers at a Ray address."""
    if address == "auto":
        return  # Ray finds the local cluster itself (and says when there is none)
    if "://" in address:
        raise CommandError(
            f"--address {address}: Ray Client addresses are not supported; run dqnkit sweep on "
            "a machine of the cluster with --address HEAD_IP:6379 (or auto)"
        )
    host, sep, port_text = address.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise CommandError(
            f"--address {address!r}: expected HOST:PORT (the address `ray start --head` prints)"
        )
    try:
        with socket.create_connection((host.strip("[]"), int(port_text)), timeout=5):
            pass
    except OSError as error:
        raise CommandError(f"--address {address}: no Ray cluster answers there ({error})") from None


def _usable_cpus() -> int:
    """The CPUs this process may run on (its affinity where the OS has one)."""
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity is not None else os.cpu_count() or 1


@contextmanager
def _ray_running(ray: Any, address: str | None) -> Iterator[None]:
    """Attaches to ``address``, or starts a local Ray sized to this machine; stops what it
    started. An already initialised Ray (a test's, a notebook's) is used as it is."""
    if ray.is_initialized():
        yield
        return
    try:
        if address is not None:
            ray.init(address=address, logging_level="WARNING", log_to_driver=False)
        else:
            # address="local": without it ray.init attaches to a cluster that `ray start` left
            # running on this machine (or RAY_ADDRESS), and then refuses num_cpus.
            ray.init(
                address="local",
                num_cpus=_usable_cpus(),
                include_dashboard=False,
                logging_level="WARNING",
                log_to_driver=False,
            )
    except ConnectionError as error:
        raise CommandError(
            f"--address {address}: {error} (a cluster with token authentication needs its "
            "token here too: ~/.ray/auth_token or RAY_AUTH_TOKEN)"
        ) from None
    try:
        yield
    finally:
        ray.shutdown()


# --- a trial (runs in a Ray worker) ----------------------------------------------------------


def _nan_if_none(value: float | None) -> float:
    return float("nan") if value is None else float(value)


def _pack(run_dir: Path, files: Sequence[Path], dest: Path, info: dict[str, Any]) -> None:
    """A Tune checkpoint folder that is itself a run directory: ``files`` hard-linked (they are
    never rewritten in place: dqnkit writes by rename) or copied, and ``info``."""
    for file in files:
        target = dest / file.relative_to(run_dir)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(file, target)
        except OSError:
            shutil.copy2(file, target)
    (dest / TRIAL_FILE).write_text(json.dumps({"run_name": run_dir.name, **info}) + "\n")


def _restore_run_dir(checkpoint_dir: Path, root: Path) -> Path:
    """Rebuilds a trial's run directory from its Tune checkpoint (Tune's copy wins over
    whatever the lost worker left behind); returns the run directory to resume."""
    info = json.loads((checkpoint_dir / TRIAL_FILE).read_text())
    run_dir = root / str(info["run_name"])
    if run_dir.exists():
        shutil.rmtree(run_dir / rundir.CHECKPOINT_DIR, ignore_errors=True)
        for stale in (rundir.POLICY_FILE, "evaluation.json"):
            (run_dir / stale).unlink(missing_ok=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    for file in checkpoint_dir.rglob("*"):
        if file.is_file() and file.name != TRIAL_FILE:
            target = run_dir / file.relative_to(checkpoint_dir)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(file, target)
    return run_dir


def _run_trial(params: dict[str, Any]) -> None:
    """One trial: dqnkit's train for one configuration and seed, reporting at its checkpoints."""
    # Through the package, not its modules: the loop's module is named differently on main.
    from dqnkit.adapters import Progress, evaluate, train

    _, tune = _import_ray()
    sweep, trial = params["sweep"], params["trial"]
    root = Path(sweep["runs"]) / trial_label(trial)
    config = config_for(sweep["env_id"], **trial["hp"], seed=trial["seed"], out=str(root))
    started = time.perf_counter()
    previous = tune.get_checkpoint()
    prior_wall = 0.0

    def report(progress: Progress, *, extra: dict[str, Any] | None = None) -> None:
        if progress.final and extra is None:
            return  # reported once, below, with the final weights and the table's evaluation
        metrics = {
            "step": progress.step,
            "episodes": progress.episodes,
            "train/mean_return": _nan_if_none(progress.recent_return),
            "eval/mean_return": _nan_if_none(progress.eval_return),
            "trial_wall_seconds": prior_wall + time.perf_counter() - started,
            **(extra or {}),
        }
        run_dir = progress.run_dir
        files = [run_dir / rundir.CONFIG_FILE, progress.checkpoint]
        if extra is not None:
            names = (rundir.METRICS_FILE, rundir.POLICY_FILE, rundir.PLOT_FILE, "evaluation.json")
            files += [run_dir / n for n in names if (run_dir / n).is_file()]
        else:
            files.append(run_dir / rundir.METRICS_FILE)
        with tempfile.TemporaryDirectory(dir=root, prefix=".tune-") as tmp:
            _pack(run_dir, files, Path(tmp), {"wall_seconds": metrics["trial_wall_seconds"]})
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(tmp))

    last: list[Progress] = []

    def on_checkpoint(progress: Progress) -> None:
        last[:] = [progress]
        report(progress)

    if previous is None:
        shutil.rmtree(root, ignore_errors=True)  # what an attempt before any checkpoint left
        root.mkdir(parents=True)
        result = train(config, quiet=True, on_checkpoint=on_checkpoint)
    else:
        with previous.as_directory() as folder:
            prior_wall = float(json.loads((Path(folder) / TRIAL_FILE).read_text())["wall_seconds"])
            run_dir = _restore_run_dir(Path(folder), root)
        result = train(config, resume=run_dir, quiet=True, on_checkpoint=on_checkpoint)
    if result.interrupted:  # a signal in the worker: Tune restarts it from the last checkpoint
        raise RuntimeError(f"training was interrupted at step {result.steps}")
    greedy = evaluate(result.run_dir, episodes=sweep["table_episodes"], seed=_TABLE_SEED)
    report(
        last[-1],
        extra={
            "greedy/mean_return": greedy.mean_return,
            "greedy/std_return": greedy.std_return,
            "greedy/episodes": sweep["table_episodes"],
        },
    )


def _trial_dirname(trial: Any) -> str:
    return f"{trial_label(trial.config['trial'])}-{trial.trial_id}"


# --- driver ----------------------------------------------------------------------------------


def run_sweep(
    spec: SweepSpec,
    *,
    out: str | Path = "sweeps",
    address: str | None = None,
    quiet: bool = False,
    callbacks: Sequence[Any] = (),
) -> SweepResult:
    """Runs ``spec`` on Ray Tune and writes the result table and learning curves.

    Args:
      spec: what to sweep; checked entirely before anything starts.
      out: the sweep directory ``OUT/ENV-TIME`` is created here (Tune's storage path: on a
        cluster, a folder every node mounts at the same path).
      address: a Ray cluster to attach to; None starts (and stops) a local Ray.
      quiet: no line per finished trial.
      callbacks: extra ``ray.tune.Callback`` objects (called in this process).

    Raises:
      CommandError: bad input, Ray missing, or no cluster at ``address``; nothing started.
    """
    configurations = plan_configurations(spec)
    ray, tune = _import_ray()
    if address is not None:
        check_address(address)
    storage = Path(out).resolve()
    started = time.perf_counter()
    with _ray_running(ray, address):
        sweep_dir = _new_sweep_dir(storage, spec.env_id)  # once Ray is there, not before
        plan = {
            "spec": _spec_to_json(spec),
            "configurations": configurations,
            "runs": str(sweep_dir / RUNS_DIR),
        }
        (sweep_dir / SWEEP_FILE).write_text(json.dumps(plan, indent=2) + "\n")
        trainable = tune.with_resources(_run_trial, {"cpu": spec.cpus_per_trial})
        sweep_params = {
            "env_id": spec.env_id,
            "runs": plan["runs"],
            "table_episodes": spec.table_episodes,
        }
        param_space = {
            "sweep": sweep_params,
            "trial": tune.grid_search(_trials(configurations, spec.seeds)),
        }
        tuner = tune.Tuner(
            trainable,
            param_space=param_space,
            tune_config=tune.TuneConfig(
                scheduler=_scheduler(tune, spec, configurations),
                trial_name_creator=_trial_dirname,
                trial_dirname_creator=_trial_dirname,
                # A finished trial's worker runs the next one: no new process importing torch
                # (each run is a pure function of its config and seed, so nothing carries over).
                reuse_actors=True,
            ),
            run_config=_run_config(tune, spec, sweep_dir, quiet, callbacks),
        )
        grid = tuner.fit()
    return _summarise(sweep_dir, plan, grid, time.perf_counter() - started)


def resume_sweep(
    sweep_dir: str | Path,
    *,
    address: str | None = None,
    quiet: bool = False,
    callbacks: Sequence[Any] = (),
) -> SweepResult:
    """Continues a stopped sweep (``Tuner.restore``): finished trials are kept, unfinished and
    failed ones continue from their last checkpoint.

    Tune's state files are pickles: resume only sweep directories you made.
    """
    folder = Path(sweep_dir).resolve()
    plan_file = folder / SWEEP_FILE
    if not plan_file.is_file():
        raise CommandError(f"{folder}: not a sweep directory (no {SWEEP_FILE})")
    plan = json.loads(plan_file.read_text())
    spec = _spec_from_json(plan["spec"])
    ray, tune = _import_ray()
    if address is not None:
        check_address(address)
    started = time.perf_counter()
    with _ray_running(ray, address):
        if not tune.Tuner.can_restore(str(folder)):
            raise CommandError(f"{folder}: Tune has no state to restore there")
        trainable = tune.with_resources(_run_trial, {"cpu": spec.cpus_per_trial})
        tuner = tune.Tuner.restore(
            str(folder),
            trainable=trainable,
            resume_unfinished=True,
            resume_errored=True,
            restart_errored=False,
        )
        _ = quiet, callbacks  # Tune restores the run configuration it saved, callbacks included
        grid = tuner.fit()
    return _summarise(folder, plan, grid, time.perf_counter() - started)


def _scheduler(tune: Any, spec: SweepSpec, configurations: list[dict[str, Any]]) -> Any:
    if not spec.asha:
        return None
    configs = [config_for(spec.env_id, **c, seed=spec.seeds[0]) for c in configurations]
    max_steps = max(c.total_steps for c in configs)
    grace = spec.grace_steps or min(c.checkpoint_every for c in configs)
    schedulers = importlib.import_module("ray.tune.schedulers")
    # max_t one step past the longest run: ASHA stops a trial that reaches max_t, and a trial's
    # last periodic checkpoint can fall on its last step, before its final weights are written.
    return schedulers.ASHAScheduler(
        time_attr="step",
        metric=spec.metric,
        mode="max",
        max_t=max_steps + 1,
        grace_period=grace,
        reduction_factor=spec.reduction_factor,
    )


def _run_config(
    tune: Any, spec: SweepSpec, sweep_dir: Path, quiet: bool, callbacks: Sequence[Any]
) -> Any:
    return tune.RunConfig(
        name=sweep_dir.name,
        storage_path=str(sweep_dir.parent),
        failure_config=tune.FailureConfig(max_failures=spec.max_failures),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
        callbacks=[*([] if quiet else [_progress_printer(tune)]), *callbacks],
        verbose=0,
    )


def _progress_printer(tune: Any) -> Any:
    """A Tune callback printing one line when a trial finishes, stops early, fails or restarts."""

    class Printer(tune.Callback):  # type: ignore[misc]
        def on_trial_complete(
            self, iteration: int, trials: list[Any], trial: Any, **_: Any
        ) -> None:
            result = trial.last_result or {}
            label = trial_label(trial.config["trial"])
            if "greedy/mean_return" in result:
                print(
                    f"{label}: finished at step {result['step']}, greedy "
                    f"{result['greedy/episodes']}-episode mean {result['greedy/mean_return']:.2f}",
                    flush=True,
                )
            else:
                print(f"{label}: stopped early at step {result.get('step')}", flush=True)

        def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **_: Any) -> None:
            print(f"{trial_label(trial.config['trial'])}: failed ({trial.error_file})", flush=True)

        def on_trial_recover(self, iteration: int, trials: list[Any], trial: Any, **_: Any) -> None:
            print(
                f"{trial_label(trial.config['trial'])}: worker lost; restarting from its last "
                "checkpoint",
                flush=True,
            )

    return Printer()


def _new_sweep_dir(storage: Path, env_id: str) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    base = storage / f"{env_id.replace(':', '_').replace('/', '_')}-sweep-{stamp}"
    folder, n = base, 1
    while folder.exists():
        n += 1
        folder = base.with_name(f"{base.name}-{n}")
    folder.mkdir(parents=True)
    return folder


def _spec_to_json(spec: SweepSpec) -> dict[str, Any]:
    data = dataclasses.asdict(spec)
    data["grid"] = {
        name: {"range": [v.low, v.high], "log": v.log} if isinstance(v, Range) else list(v)
        for name, v in spec.grid.items()
    }
    return data


def _spec_from_json(data: dict[str, Any]) -> SweepSpec:
    grid: dict[str, GridValue] = {}
    for name, v in data["grid"].items():
        grid[name] = (
            Range(v["range"][0], v["range"][1], v["log"]) if isinstance(v, dict) else tuple(v)
        )
    return SweepSpec(**{**data, "grid": grid, "seeds": tuple(data["seeds"])})


# --- the result: table, CSV/JSON, learning curves ------------------------------------------


def interquartile_mean(values: Sequence[float] | np.ndarray[Any, Any]) -> float:
    """The mean of the middle half: ``floor(n/4)`` values cut from each end (scipy's
    ``trim_mean(x, 0.25)``, rliable's IQM). See Agarwal et al. 2021, "Deep RL at the edge of
    the statistical precipice" (https://arxiv.org/abs/2108.13264)."""
    x = np.sort(np.asarray(values, dtype=np.float64))
    if x.size == 0:
        raise ValueError("interquartile_mean of no values")
    cut = x.size // 4
    return float(x[cut : x.size - cut].mean())


def _iqm_rows(samples: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """IQM of each row of ``[R, n]``."""
    x = np.sort(samples, axis=1)
    cut = x.shape[1] // 4
    return x[:, cut : x.shape[1] - cut].mean(axis=1)  # type: ignore[no-any-return]


def bootstrap_interval(
    values: Sequence[float] | np.ndarray[Any, Any],
    statistic: Literal["iqm", "mean"] = "iqm",
    *,
    confidence: float = 0.95,
    resamples: int = _BOOTSTRAP_RESAMPLES,
    seed: int = 0,
) -> tuple[float, float]:
    """A percentile bootstrap interval of the statistic over seeds (seeded, so repeatable).

    scipy is not among dqnkit's or Ray Tune's dependencies, so this is our own: resample the
    n values with replacement ``resamples`` times, take the statistic of each, and return the
    ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` quantiles. With few seeds the
    interval is narrow and covers less often than it says (as every percentile bootstrap).
    """
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"bootstrap_interval needs a non-empty 1-d sample, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("bootstrap_interval: the sample has NaN or infinite values")
    rng = np.random.default_rng(seed)
    draws = x[rng.integers(0, x.size, size=(resamples, x.size))]
    stats = _iqm_rows(draws) if statistic == "iqm" else draws.mean(axis=1)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(stats, [alpha, 1.0 - alpha])
    return float(low), float(high)


def _summarise(
    sweep_dir: Path, plan: dict[str, Any], grid: Any, wall_seconds: float
) -> SweepResult:
    configurations: list[dict[str, Any]] = plan["configurations"]
    varying = _varying_names(configurations)
    trials: list[dict[str, Any]] = []
    curves: dict[int, list[tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]]] = {}
    for result in grid:
        if not result.config:  # a trial that never started (the sweep was stopped first)
            continue
        trial = result.config["trial"]
        metrics = result.metrics or {}
        checkpoint = result.checkpoint.path if result.checkpoint is not None else None
        if result.error is not None:
            status = "failed"
        elif "greedy/mean_return" in metrics:
            status = "finished"
        else:
            status = "stopped"
        trials.append(
            {
                "trial": trial_label(trial),
                "config": trial["config"],
                "label": _label(trial["hp"], varying),
                "seed": trial["seed"],
                "status": status,
                "steps": metrics.get("step"),
                "greedy_mean": metrics.get("greedy/mean_return"),
                "greedy_std": metrics.get("greedy/std_return"),
                "last_eval": _finite_or_none(metrics.get("eval/mean_return")),
                "last_train_mean": _finite_or_none(metrics.get("train/mean_return")),
                "wall_seconds": metrics.get("trial_wall_seconds"),
                "run_dir": checkpoint,
                "hp": trial["hp"],
            }
        )
        if checkpoint is not None and (Path(checkpoint) / rundir.METRICS_FILE).is_file():
            curve = _training_curve(Path(checkpoint) / rundir.METRICS_FILE)
            if curve is not None:
                curves.setdefault(trial["config"], []).append(curve)
    seen = {(t["config"], t["seed"]) for t in trials}
    for planned in _trials(configurations, plan["spec"]["seeds"]):
        if (planned["config"], planned["seed"]) not in seen:
            trials.append(
                {
                    **{column: None for column in TRIAL_COLUMNS},
                    "trial": trial_label(planned),
                    "config": planned["config"],
                    "label": _label(planned["hp"], varying),
                    "seed": planned["seed"],
                    "status": "not started",
                    "hp": planned["hp"],
                }
            )
    trials.sort(key=lambda t: (t["config"], t["seed"]))
    rows = [_configuration_row(i, c, varying, trials) for i, c in enumerate(configurations)]
    result = SweepResult(sweep_dir, rows, trials, wall_seconds)
    _write_outputs(result, plan, curves)
    return result


def _finite_or_none(value: Any) -> float | None:
    if value is None or not math.isfinite(float(value)):
        return None
    return float(value)


def _varying_names(configurations: list[dict[str, Any]]) -> list[str]:
    """The names that tell configurations apart (all of them when there is one)."""
    names = list(dict.fromkeys(n for c in configurations for n in c))
    if len(configurations) == 1:
        return names
    return [n for n in names if len({repr(c.get(n)) for c in configurations}) > 1]


def _label(hp: Mapping[str, Any], varying: Sequence[str]) -> str:
    shown = [f"{n}={_show(hp[n])}" for n in varying if n in hp]
    return " ".join(shown) or "preset"


def _show(value: Any) -> str:
    if isinstance(value, tuple | list):
        return "x".join(str(v) for v in value)
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _configuration_row(
    index: int, hp: dict[str, Any], varying: Sequence[str], trials: list[dict[str, Any]]
) -> dict[str, Any]:
    mine = [t for t in trials if t["config"] == index]
    done = [t for t in mine if t["status"] == "finished"]
    means = np.array([t["greedy_mean"] for t in done], dtype=np.float64)
    row: dict[str, Any] = {
        "config": index,
        "label": _label(hp, varying),
        "seeds": _seed_text([t["seed"] for t in mine]),
        "trials": len(mine),
        "finished": len(done),
        "stopped": sum(t["status"] == "stopped" for t in mine),
        "failed": sum(t["status"] == "failed" for t in mine),
        "not_started": sum(t["status"] == "not started" for t in mine),
        "greedy_episodes": None,
        "mean": None,
        "median": None,
        "iqm": None,
        "iqm_ci_low": None,
        "iqm_ci_high": None,
        "mean_steps": None,
        "mean_wall_seconds": None,
        "hp": hp,
    }
    if done:
        low, high = bootstrap_interval(means, "iqm")
        row.update(
            mean=float(means.mean()),
            median=float(np.median(means)),
            iqm=interquartile_mean(means),
            iqm_ci_low=low,
            iqm_ci_high=high,
            mean_steps=float(np.mean([t["steps"] for t in done])),
            mean_wall_seconds=float(np.mean([t["wall_seconds"] for t in done])),
        )
    return row


def _seed_text(seeds: Sequence[int]) -> str:
    """``[0, 1, 2, 5]`` -> ``"0-2,5"``."""
    ordered, parts, i = sorted(seeds), [], 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        parts.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(parts)


TABLE_COLUMNS = (
    "config",
    "label",
    "seeds",
    "trials",
    "finished",
    "stopped",
    "failed",
    "not_started",
    "mean",
    "median",
    "iqm",
    "iqm_ci_low",
    "iqm_ci_high",
    "mean_steps",
    "mean_wall_seconds",
)
TRIAL_COLUMNS = (
    "trial",
    "config",
    "label",
    "seed",
    "status",
    "steps",
    "greedy_mean",
    "greedy_std",
    "last_eval",
    "last_train_mean",
    "wall_seconds",
    "run_dir",
)


def format_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """The per-configuration table as text (the figures are greedy means over seeds)."""
    header = ("configuration", "seeds", "done", "mean", "median", "IQM [95% CI]", "steps", "wall s")
    lines = [header]
    for r in rows:
        done = f"{r['finished']}/{r['trials']}"
        if r["stopped"]:
            done += f" ({r['stopped']} stopped)"
        if r["failed"]:
            done += f" ({r['failed']} failed)"
        if r["not_started"]:
            done += f" ({r['not_started']} not started)"
        if r["iqm"] is None:
            figures = ("-", "-", "-", "-", "-")
        else:
            figures = (
                f"{r['mean']:.2f}",
                f"{r['median']:.2f}",
                f"{r['iqm']:.2f} [{r['iqm_ci_low']:.2f}, {r['iqm_ci_high']:.2f}]",
                f"{r['mean_steps']:.0f}",
                f"{r['mean_wall_seconds']:.1f}",
            )
        lines.append((r["label"], r["seeds"], done, *figures))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines
    )


def _write_outputs(
    result: SweepResult,
    plan: dict[str, Any],
    curves: dict[int, list[tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]]],
) -> None:
    folder = result.sweep_dir
    _write_csv(folder / RESULTS_CSV, TABLE_COLUMNS, result.configurations)
    _write_csv(folder / TRIALS_CSV, TRIAL_COLUMNS, result.trials)
    report = {
        "env_id": plan["spec"]["env_id"],
        "greedy_episodes_per_trial": plan["spec"]["table_episodes"],
        "interval": (
            "95% percentile bootstrap of the IQM over seeds "
            f"({_BOOTSTRAP_RESAMPLES} resamples, numpy seed 0; dqnkit's own, scipy not installed)"
        ),
        "wall_seconds": result.wall_seconds,
        "configurations": result.configurations,
        "trials": result.trials,
    }
    (folder / RESULTS_JSON).write_text(json.dumps(report, indent=2) + "\n")
    labels = {row["config"]: row["label"] for row in result.configurations}
    _plot_curves(folder / CURVES_PNG, plan["spec"]["env_id"], labels, curves)


def _write_csv(path: Path, columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    path.write_text(buffer.getvalue())


def _training_curve(
    metrics_csv: Path,
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]] | None:
    """A run's (steps, mean return of the last 100 training episodes) from its metrics.csv."""
    with open(metrics_csv) as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return None
    steps = np.array([float(r["step"]) for r in rows])
    returns = np.array([float(r["episode_return"]) for r in rows])
    cumulative = np.concatenate([[0.0], np.cumsum(returns)])
    index = np.arange(1, returns.size + 1)
    start = np.maximum(index - 100, 0)
    return steps, (cumulative[index] - cumulative[start]) / (index - start)


def _plot_curves(
    path: Path,
    env_id: str,
    labels: Mapping[int, str],
    curves: Mapping[int, list[tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]]],
    points: int = 100,
) -> None:
    """Per configuration: the mean over seeds of the 100-episode training return, with a 95%
    bootstrap interval of that mean, on a common step grid. A seed counts at a step until its
    run ended (solved runs stop early), so late points may average fewer seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    for config, runs in sorted(curves.items()):
        end = max(float(s[-1]) for s, _ in runs)
        grid = np.linspace(0.0, end, points)
        values = np.full((len(runs), points), np.nan)
        for i, (steps, means) in enumerate(runs):
            inside = (grid >= steps[0]) & (grid <= steps[-1])
            values[i, inside] = np.interp(grid[inside], steps, means)
        mean, low, high = (np.full(points, np.nan) for _ in range(3))
        for j in range(points):
            column = values[:, j][np.isfinite(values[:, j])]
            if column.size:
                mean[j] = column.mean()
                low[j], high[j] = bootstrap_interval(column, "mean", resamples=2000)
        (line,) = ax.plot(grid, mean, linewidth=2.0, label=f"{labels[config]} ({len(runs)} seeds)")
        ax.fill_between(grid, low, high, color=line.get_color(), alpha=0.2)
    ax.set_xlabel("environment steps")
    ax.set_ylabel("mean return of the last 100 training episodes")
    ax.set_title(f"{env_id}: mean over seeds, 95% bootstrap interval")
    ax.grid(alpha=0.3)
    if curves:
        ax.legend(loc="best", fontsize="small")
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
