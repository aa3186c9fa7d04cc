"""The training configuration: one dataclass, and presets per environment with their sources."""

import dataclasses
import itertools
import json
import math
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from dqnkit.adapters.errors import CommandError

__all__ = ["ATARI_PRESET", "PIXEL_PRESETS", "PRESETS", "TrainConfig", "config_for"]

EpsilonSchedule = Literal["linear", "exponential"]
FrameMode = Literal["difference", "stack"]
CnnKind = Literal["auto", "tutorial", "nature"]
# The fields that take one of a few words; validate() reads the words from these types.
CHOICES: dict[str, Any] = {
    "frame_mode": FrameMode,
    "cnn": CnnKind,
    "epsilon_schedule": EpsilonSchedule,
}


def one_of(kind: Any) -> str:
    """A Literal's words for a message: ``'auto', 'tutorial' or 'nature'``."""
    quoted = [repr(word) for word in typing.get_args(kind)]
    return " or ".join([", ".join(quoted[:-1]), quoted[-1]])


# Command-line options named differently from their TrainConfig field.
FLAG_NAMES = {"total_steps": "steps"}


def flag(name: str) -> str:
    """The command-line option of a TrainConfig field: ``total_steps`` -> ``--steps``."""
    return "--" + FLAG_NAMES.get(name, name).replace("_", "-")


def _doc(text: str) -> Any:
    """Field metadata carrying the field's documentation (shown by ``dqnkit train --help``)."""
    return {"help": text}


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run. Steps count environment steps over all envs.

    Defaults are the PyTorch DQN tutorial's where it has one (gamma, the Huber loss, its
    128-128 MLP; the tutorial's AdamW is Adam here, with no weight decay); presets in
    :data:`PRESETS` override them per environment.
    """

    env_id: str = field(
        metadata=_doc("Gymnasium environment id (Box observations, Discrete actions).")
    )
    seed: int = field(
        default=0, metadata=_doc("Seed for the environments and every torch Generator.")
    )
    total_steps: int = field(default=50_000, metadata=_doc("Environment steps to train for."))
    num_envs: int = field(
        default=1, metadata=_doc("Environments stepped together (a SyncVectorEnv).")
    )
    learning_rate: float = field(
        default=1e-4, metadata=_doc("Adam learning rate (tutorial: 1e-4).")
    )
    late_learning_rate: float | None = field(
        default=None,
        metadata=_doc(
            "The learning rate of every update after --late-after steps (a lower one steadies a "
            "late policy); none keeps --learning-rate throughout."
        ),
    )
    late_after: int = field(
        default=0,
        metadata=_doc("Steps after which --late-learning-rate applies (ignored without one)."),
    )
    buffer_size: int = field(
        default=100_000,
        metadata=_doc(
            "Replay capacity in transitions; for image observations in frames, each stored "
            "once, an episode taking one more than its steps."
        ),
    )
    batch_size: int = field(
        default=128, metadata=_doc("Transitions per gradient step (tutorial: 128).")
    )
    gamma: float = field(default=0.99, metadata=_doc("Discount factor (tutorial: 0.99)."))
    learning_starts: int = field(
        default=1_000, metadata=_doc("Steps of experience before the first gradient step.")
    )
    train_every: int = field(
        default=1, metadata=_doc("Environment steps between training phases (SB3's train_freq).")
    )
    gradient_steps: int = field(default=1, metadata=_doc("Gradient steps per training phase."))
    target_update_every: int = field(
        default=1, metadata=_doc("Environment steps between target-network updates.")
    )
    tau: float = field(
        default=0.005,
        metadata=_doc(
            "Target update weight: 1 is a hard copy, <1 Polyak averaging (tutorial: 0.005)."
        ),
    )
    epsilon_schedule: EpsilonSchedule = field(
        default="exponential",
        metadata=_doc("'linear' (Mnih et al.) or 'exponential' (the tutorial)."),
    )
    epsilon_start: float = field(
        default=0.9, metadata=_doc("Exploration rate at step 0 (tutorial: 0.9).")
    )
    epsilon_end: float = field(
        default=0.05, metadata=_doc("Final exploration rate (tutorial: 0.05).")
    )
    epsilon_steps: int = field(
        default=1_000,
        metadata=_doc(
            "Linear: steps to reach the end; exponential: decay constant (tutorial: 1000)."
        ),
    )
    hidden: tuple[int, ...] = field(
        default=(128, 128), metadata=_doc("Hidden layer widths of the MLP, comma-separated.")
    )
    double_dqn: bool = field(
        default=False, metadata=_doc("Use the double-DQN target (van Hasselt et al. 2015).")
    )
    n_step: int = field(
        default=1,
        metadata=_doc(
            "Learn from n-step returns: n rewards, then the bootstrap discounted by gamma^n "
            "(Sutton & Barto 7.1; Rainbow used 3). 1 is one-step DQN."
        ),
    )
    dueling: bool = field(
        default=False,
        metadata=_doc("Dueling network heads: a state value plus advantages (Wang et al. 2016)."),
    )
    prioritized: bool = field(
        default=False,
        metadata=_doc(
            "Prioritized replay, proportional (Schaul et al. 2016): draw by |TD error|, weight "
            "the loss by importance weights."
        ),
    )
    priority_alpha: float = field(
        default=0.6, metadata=_doc("Prioritized replay: priority exponent (Schaul et al.: 0.6).")
    )
    priority_beta: float = field(
        default=0.4,
        metadata=_doc(
            "Prioritized replay: importance-weight exponent at step 0, annealed linearly to 1 at "
            "the run's last step (Schaul et al.: 0.4)."
        ),
    )
    priority_eps: float = field(
        default=1e-6,
        metadata=_doc("Prioritized replay: added to |TD error| so no priority is 0."),
    )
    max_grad_norm: float = field(
        default=100.0,
        metadata=_doc(
            "Clip the gradient's global norm to this; 0 disables (tutorial clips values at 100)."
        ),
    )
    huber_delta: float = field(default=1.0, metadata=_doc("Huber loss threshold."))
    eval_every: int = field(
        default=0, metadata=_doc("Evaluate the greedy policy every N steps; 0 disables.")
    )
    eval_episodes: int = field(default=10, metadata=_doc("Episodes per periodic evaluation."))
    eval_gate: float | None = field(
        default=None,
        metadata=_doc(
            "Run a periodic evaluation only when one greedy probe episode (the evaluation's "
            "first) returns at least this: evaluations of a policy not there yet are wasted."
        ),
    )
    stop_return: float | None = field(
        default=None,
        metadata=_doc("Stop early once a periodic evaluation's mean return reaches this."),
    )
    final_eval_episodes: int = field(
        default=20, metadata=_doc("Episodes of the greedy evaluation at the end of training.")
    )
    keep_best: bool = field(
        default=False,
        metadata=_doc(
            "The run's policy is the network of its best periodic evaluation (the highest mean, "
            "the earliest of ties) instead of the last one; the final evaluation measures it. "
            "With no periodic evaluation (--eval-every 0, or a gate never open): the last."
        ),
    )
    checkpoint_every: int = field(
        default=10_000, metadata=_doc("Write a resumable checkpoint every N steps; 0 disables.")
    )
    out: str = field(
        default="runs", metadata=_doc("Folder in which the run directory ENV-SEED-TIME is created.")
    )
    device: str = field(default="cpu", metadata=_doc("torch device for the networks and replay."))
    pixels: bool = field(
        default=False,
        metadata=_doc("Learn from rendered screens with ConvQNetwork, as the original tutorial."),
    )
    frame_mode: FrameMode = field(
        default="difference",
        metadata=_doc("Pixels: 'difference' of the last two screens (the tutorial) or 'stack'."),
    )
    frames: int = field(default=4, metadata=_doc("Pixels: screens stacked with 'stack'."))
    frame_skip: int = field(
        default=1,
        metadata=_doc(
            "Pixels: CartPole steps per agent step, the action held and the rewards summed "
            "(1: the tutorial's; Atari's pipeline always skips 4). Steps count agent steps."
        ),
    )
    cnn: CnnKind = field(
        default="auto",
        metadata=_doc(
            "The network for screens: 'tutorial' (the pixel tutorial's 3 convolutions with batch "
            "norm and a linear head), 'nature' (Mnih et al. 2015: 3 convolutions, a 512-unit "
            "layer, no batch norm), 'auto' (nature for ALE/ ids, else tutorial)."
        ),
    )
    clip_rewards: bool = field(
        default=False,
        metadata=_doc(
            "Clip rewards to their sign in the TD loss only (Mnih et al. 2015), each one before "
            "an n-step sum; logged and evaluated returns stay unclipped. Atari's preset sets it."
        ),
    )
    terminal_on_life_loss: bool = field(
        default=False,
        metadata=_doc(
            "Atari: a step that loses a life is terminal in replay (no bootstrap past it, as "
            "DeepMind's DQN trained); the game plays on, and logged returns, evaluation and "
            "play see whole games."
        ),
    )
    threads: int = field(
        default=1,
        metadata=_doc("torch intra-op threads; 1 is fastest for small networks on a shared CPU."),
    )

    def validate(self) -> "TrainConfig":
        """Checks values up front, so a bad option fails before any work is done.

        Raises:
          CommandError: one line naming the option, for a value of the wrong type, out of
            range, not finite, or a combination that cannot work.
        """
        for f in dataclasses.fields(self):
            _check_type(f.name, getattr(self, f.name), f.type)
        positive = (
            "total_steps",
            "num_envs",
            "buffer_size",
            "batch_size",
            "train_every",
            "gradient_steps",
            "target_update_every",
            "epsilon_steps",
            "eval_episodes",
            "threads",
            "final_eval_episodes",
            "n_step",
        )
        for name in positive:
            value = getattr(self, name)
            if value <= 0:
                raise CommandError(f"{flag(name)} must be positive, got {value}")
        for name in (
            "learning_starts",
            "eval_every",
            "checkpoint_every",
            "max_grad_norm",
            "late_after",
        ):
            if getattr(self, name) < 0:
                raise CommandError(f"{flag(name)} must be non-negative, got {getattr(self, name)}")
        for name in (
            "gamma",
            "tau",
            "epsilon_start",
            "epsilon_end",
            "priority_alpha",
            "priority_beta",
        ):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise CommandError(f"{flag(name)} must be in [0, 1], got {getattr(self, name)}")
        if self.tau == 0.0:
            raise CommandError("--tau must be positive: 0 would never update the target network")
        for name in ("learning_rate", "late_learning_rate", "huber_delta", "priority_eps"):
            value = getattr(self, name)
            if value is not None and not value > 0:  # late_learning_rate may be unset
                raise CommandError(f"{flag(name)} must be positive, got {value}")
        if not 0 <= self.seed <= MAX_SEED:
            raise CommandError(f"--seed must be in [0, 2**32 - 1], got {self.seed}")
        for name, kind in CHOICES.items():
            value = getattr(self, name)
            if value not in typing.get_args(kind):
                raise CommandError(f"{flag(name)} must be {one_of(kind)}, got {value!r}")
        if self.cnn != "auto" and not (self.pixels or self.atari):
            raise CommandError("--cnn applies only to screens (--pixels or an ALE/ id)")
        if not self.hidden or any(w <= 0 for w in self.hidden):
            raise CommandError(f"--hidden needs positive widths, got {self.hidden}")
        if not self.pixels and (self.frame_mode != "difference" or self.frames != 4):
            raise CommandError("--frames and --frame-mode apply only with --pixels")
        if not 1 <= self.frame_skip <= MAX_FRAME_SKIP:
            raise CommandError(
                f"--frame-skip must be in [1, {MAX_FRAME_SKIP}], got {self.frame_skip}"
            )
        if not self.pixels and self.frame_skip != 1:
            raise CommandError(
                "--frame-skip applies only with --pixels (ALE/ ids always skip 4 frames)"
            )
        if self.pixels and self.atari:
            raise CommandError(
                "--pixels renders CartPole; ALE/ ids always get the Atari (Nature DQN) pipeline"
            )
        if self.n_step > MAX_N_STEP:
            raise CommandError(f"--n-step must be at most {MAX_N_STEP}, got {self.n_step}")
        if self.terminal_on_life_loss and not self.atari:
            raise CommandError("--terminal-on-life-loss applies to ALE/ (Atari) ids only")
        if self.pixels and self.buffer_size <= self.num_envs:
            raise CommandError(
                f"--buffer-size must exceed --num-envs ({self.num_envs}) with --pixels: a frame's "
                f"successor is written {self.num_envs} slots after it, got {self.buffer_size}"
            )
        if self.pixels and self.total_steps <= self.learning_starts:
            raise CommandError(
                f"--steps {self.total_steps} with --pixels is not past --learning-starts "
                f"{self.learning_starts}: the run would never learn"
            )
        self._check_memory()
        _check_device(self.device)
        return self

    def _check_memory(self) -> None:
        """Refuses sizes whose tensors could not fit in this machine's memory at all."""
        total = _physical_memory()
        if total is None:
            return
        widths = [4096, *self.hidden, 64]  # generous input and output sizes
        weights = sum(a * b + b for a, b in itertools.pairwise(widths))
        # online + target + gradient + two Adam moments, float32
        if 5 * 4 * weights > total:
            raise CommandError(
                f"--hidden {','.join(map(str, self.hidden))} needs more memory than this "
                f"machine has ({total / 2**30:.0f} GiB)"
            )
        for name in ("buffer_size", "batch_size"):
            if getattr(self, name) * _MIN_ROW_BYTES > total:
                raise CommandError(
                    f"{flag(name)} {getattr(self, name)} cannot fit in this machine's "
                    f"{total / 2**30:.0f} GiB of memory"
                )

    @property
    def cnn_kind(self) -> Literal["tutorial", "nature"]:
        """The CNN screens get: ``cnn``, with 'auto' resolved (nature for Atari)."""
        if self.cnn == "auto":
            return "nature" if self.atari else "tutorial"
        return self.cnn

    @property
    def atari(self) -> bool:
        """An ``ALE/`` id: observations come from the Nature DQN pipeline (adapters/atari.py)."""
        return self.env_id.startswith("ALE/")

    def preprocessing(self) -> dict[str, Any] | None:
        """How observations are made from the environment's: None, or the pixel pipeline."""
        if self.atari:
            from dqnkit.adapters import atari

            return atari.describe(self.env_id)
        if not self.pixels:
            return None
        from dqnkit.adapters import pixels

        return pixels.describe(
            self.env_id,
            frame_mode=self.frame_mode,
            frames=self.frames,
            frame_skip=self.frame_skip,
        )

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "config") -> "TrainConfig":
        """A config from :meth:`to_json`'s data (not yet validated).

        Raises:
          CommandError: not an object, or fields missing or unknown.
        """
        if not isinstance(data, dict):
            raise CommandError(f"{source}: expected a JSON object, got {type(data).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise CommandError(f"{source}: unknown settings {unknown}")
        if "env_id" not in data:
            raise CommandError(f"{source}: no env_id")
        values = dict(data)
        if isinstance(values.get("hidden"), list):
            values["hidden"] = tuple(values["hidden"])
        return cls(**values)

    @classmethod
    def from_json_file(cls, path: Path) -> "TrainConfig":
        try:
            data = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
            raise CommandError(f"{path} is empty or corrupt ({error})") from error
        return cls.from_dict(data, source=str(path))


MAX_SEED = 2**32 - 1
MAX_N_STEP = 100  # windows wait in memory per environment; longer ones make little sense
MAX_FRAME_SKIP = 8  # a pushed pole falls within ~10 CartPole steps: longer holds cannot balance
# The smallest row the loop can store: a 1-element float32 obs twice, action, reward, flag.
_MIN_ROW_BYTES = 4 + 4 + 8 + 4 + 1


def _check_type(name: str, value: Any, annotation: Any) -> None:
    """Type checks for values that came from a file or the Python API, not argparse."""
    option = flag(name) if name != "env_id" else "the environment id"
    optional = annotation in (float | None, int | None)
    if value is None:
        if not optional:
            raise CommandError(f"{option} must be set")
        return
    if annotation is bool:
        ok = isinstance(value, bool)
    elif annotation in (int, int | None):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif annotation in (float, float | None):
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if ok and not math.isfinite(value):
            raise CommandError(f"{option} must be a finite number, got {value}")
    elif annotation is str:
        ok = isinstance(value, str)
    elif annotation == tuple[int, ...]:
        ok = isinstance(value, tuple) and all(
            isinstance(v, int) and not isinstance(v, bool) for v in value
        )
    else:  # Literal aliases: checked by value in validate
        ok = isinstance(value, str)
    if not ok:
        raise CommandError(f"{option} has the wrong type: {value!r}")


def _check_device(device: str) -> None:
    import torch

    try:
        where = torch.device(device)
    except (RuntimeError, ValueError, TypeError) as error:
        raise CommandError(f"--device {device!r} is not a torch device ({error})") from error
    if where.type == "cpu":
        return
    if where.type == "cuda":
        if not torch.cuda.is_available():
            raise CommandError(f"--device {device}: this torch has no usable CUDA device")
        if where.index is not None and where.index >= torch.cuda.device_count():
            raise CommandError(
                f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) here"
            )
        return
    if where.type == "mps" and not torch.backends.mps.is_available():
        raise CommandError(f"--device {device}: MPS is not available here")
    if where.type not in ("cuda", "mps"):
        raise CommandError(f"--device {device}: dqnkit trains on cpu, cuda or mps")


def _physical_memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


# Presets: overrides of TrainConfig per environment, with where each value comes from.
PRESETS: dict[str, dict[str, Any]] = {
    # Our own tuning, measured by benchmarks/bench_learning.py (tables in benchmarks/README.md):
    # solved CartPole-v1 (100-episode greedy mean >= 475) in 10 of 10 seeds within 50k steps (20
    # of 20 through the sweep) with per-step exploration draws, 19 of 20 with session 4's block
    # draws (seed 8 plateaus near 100 and ends at 127.45); with double DQN (session 6) 20 of 20,
    # seed 8 at 479.53, the same median of 25,000 steps to the early stop, and 495,000 steps in
    # all against 538,000, for about 6% more per update (one more forward pass).
    # Start: rl-baselines3-zoo hyperparams/dqn.yml CartPole-v1 (lr 2.3e-3, batch 64, hard target
    # copy every 10 steps, epsilon 1 -> 0.04 over 16% of 50k; train_freq 256, gradient_steps 128,
    # net 256-256), which solved 8 of 10 with early stopping. Changed: the tutorial's 128-128 net
    # (4x cheaper updates) and half the updates in phases of 32 every 128 steps (10 of 10, fewer
    # steps to solve). Phases of 16 every 64 steps solved only 5 of 10: the target network then
    # trails the online one by too few updates. Training stops once a greedy evaluation returns
    # 500 in 20 of 20 episodes, checked every 1000 steps once a greedy probe episode returns >= 400.
    "CartPole-v1": {
        "total_steps": 50_000,
        "learning_rate": 2.3e-3,
        "batch_size": 64,
        "buffer_size": 100_000,
        "learning_starts": 1_000,
        "gamma": 0.99,
        "train_every": 128,
        "gradient_steps": 32,
        "target_update_every": 10,
        "tau": 1.0,
        "epsilon_schedule": "linear",
        "epsilon_start": 1.0,
        "epsilon_end": 0.04,
        "epsilon_steps": 8_000,
        "hidden": (128, 128),
        "max_grad_norm": 10.0,
        "double_dqn": True,
        "eval_every": 1_000,
        "eval_episodes": 20,
        "eval_gate": 400.0,
        "stop_return": 500.0,
    },
    # rl-baselines3-zoo hyperparams/dqn.yml, Acrobot-v1 (gradient_steps -1 there means one per
    # environment step; exploration_fraction 0.12 of 1e5 steps).
    "Acrobot-v1": {
        "total_steps": 100_000,
        "learning_rate": 6.3e-4,
        "batch_size": 128,
        "buffer_size": 50_000,
        "learning_starts": 0,
        "gamma": 0.99,
        "train_every": 4,
        "gradient_steps": 4,
        "target_update_every": 250,
        "tau": 1.0,
        "epsilon_schedule": "linear",
        "epsilon_start": 1.0,
        "epsilon_end": 0.1,
        "epsilon_steps": 12_000,
        "hidden": (256, 256),
        "max_grad_norm": 10.0,
    },
    # rl-baselines3-zoo hyperparams/dqn.yml, MountainCar-v0 (exploration_fraction 0.2 of 1.2e5),
    # plus n-step 3, prioritized replay, dueling and double DQN: in issue 11's benchmark
    # (benchmarks/README.md, 5 seeds each) they reached the zoo's -100.849 in a periodic greedy
    # evaluation on 5 of 5 seeds (median 45,000 steps) against 2 of 5 for the zoo's values
    # alone, with a final 100-episode greedy mean of -108.94 [95% CI -118.40, -99.64] against
    # -132.18 [-169.62, -104.01]. --no-prioritized --no-dueling --no-double-dqn --n-step 1
    # gives the zoo's DQN back.
    "MountainCar-v0": {
        "total_steps": 120_000,
        "learning_rate": 4e-3,
        "batch_size": 128,
        "buffer_size": 10_000,
        "learning_starts": 1_000,
        "gamma": 0.98,
        "train_every": 16,
        "gradient_steps": 8,
        "target_update_every": 600,
        "tau": 1.0,
        "epsilon_schedule": "linear",
        "epsilon_start": 1.0,
        "epsilon_end": 0.07,
        "epsilon_steps": 24_000,
        "hidden": (256, 256),
        "max_grad_norm": 10.0,
        "n_step": 3,
        "prioritized": True,
        "dueling": True,
        "double_dqn": True,
    },
}


# rl-baselines3-zoo hyperparams/dqn.yml gives LunarLander-v2 the same values as Acrobot-v1
# (v3 is the same task in Gymnasium 1.x; it needs the box2d extra), here plus n-step 3,
# prioritized replay, dueling and double DQN: in issue 11's benchmark (benchmarks/README.md,
# 5 seeds each) their final 100-episode greedy mean was 217.31 [95% CI 203.85, 229.79], every
# seed above the zoo's 154.382, against 95.18 [14.31, 153.04] for the zoo's values alone (one
# seed above it; seed 4 ended at -56.48); both reached the zoo's level on 5 of 5 seeds (median
# 35,000 steps against 40,000). --no-prioritized --no-dueling --no-double-dqn --n-step 1 gives
# the zoo's DQN back.
PRESETS["LunarLander-v3"] = {
    **PRESETS["Acrobot-v1"],
    "n_step": 3,
    "prioritized": True,
    "dueling": True,
    "double_dqn": True,
}


# Presets for learning from pixels (--pixels), used instead of PRESETS when pixels is set. Our
# own choice for the tutorial's CNN on 40x80 frames, measured by the pixel learning benchmark
# in benchmarks/README.md: one gradient step of 32 every 4 agent steps keeps the CNN's cost near
# the render's. Session 7 added each action held for 2 CartPole steps (one step moves the cart
# less than a pixel often enough that 19% of differences were blank), double DQN, dueling heads,
# 3-step returns, epsilon down to 0.01 and an early stop at 475: with them the tutorial's
# difference input reached a 100-episode greedy mean of 449.28 on seed 0 (10.17 before; 28.25
# with all but the frame skip), the stack 499.97. A run that never reaches 475 keeps the network
# of its best periodic evaluation (keep_best; seed 1 of the difference input: 433.46 against
# 197.74 for its last network). Session 8 lowered the learning rate to 3e-5 after 150,000 steps:
# seed 4 of the difference input then reached 464.90 (355.55 without), and every seed 0-4 of
# both inputs ends at 400 or more. --late-learning-rate none gives session 7's preset back;
# with --frame-skip 1 --no-double-dqn --no-dueling --n-step 1 --epsilon-end 0.05
# --stop-return 300 --no-keep-best, the one before.
PIXEL_PRESETS: dict[str, dict[str, Any]] = {
    "CartPole-v1": {
        "total_steps": 250_000,
        "learning_rate": 1e-4,
        "late_learning_rate": 3e-5,  # from 150k on: seed 4 of the difference input (session 8)
        "late_after": 150_000,
        "buffer_size": 50_000,
        "batch_size": 32,
        "learning_starts": 10_000,
        "train_every": 4,
        "gradient_steps": 1,
        "target_update_every": 2_000,
        "tau": 1.0,
        "epsilon_schedule": "linear",
        "epsilon_start": 1.0,
        "epsilon_end": 0.01,
        "epsilon_steps": 50_000,
        "gamma": 0.99,
        "eval_every": 10_000,
        "eval_episodes": 10,
        "eval_gate": 100.0,
        "stop_return": 475.0,
        "checkpoint_every": 50_000,
        "final_eval_episodes": 100,
        "frame_skip": 2,
        "double_dqn": True,
        "dueling": True,
        "n_step": 3,
        "keep_best": True,
    },
}


# Atari (issue 12): every ALE/ id. rl-baselines3-zoo hyperparams/dqn.yml "atari" (Adam lr 1e-4,
# batch 32, buffer 100k, learning_starts 100k, hard target copy every 1000 steps, train_freq 4,
# gradient_steps 1, epsilon 1 -> 0.01 over 10% of 1e7 steps, SB3's max_grad_norm 10), which
# scales down the Nature DQN's (Mnih et al. 2015, extended data table 1: RMSProp lr 2.5e-4,
# replay 1M, start 50k frames, target every 10k updates, epsilon 1 -> 0.1 over 1M frames,
# rewards clipped to [-1, 1]). Steps are agent steps (4 emulator frames each).
ATARI_PRESET: dict[str, Any] = {
    "total_steps": 10_000_000,
    "learning_rate": 1e-4,
    "buffer_size": 100_000,
    "batch_size": 32,
    "learning_starts": 100_000,
    "gamma": 0.99,
    "train_every": 4,
    "gradient_steps": 1,
    "target_update_every": 1_000,
    "tau": 1.0,
    "epsilon_schedule": "linear",
    "epsilon_start": 1.0,
    "epsilon_end": 0.01,
    "epsilon_steps": 1_000_000,
    "max_grad_norm": 10.0,
    "clip_rewards": True,
    "eval_every": 250_000,
    "eval_episodes": 10,
    "checkpoint_every": 100_000,
    "final_eval_episodes": 10,
}
for _game in ("Pong", "Breakout", "SpaceInvaders", "Seaquest", "Qbert", "BeamRider", "Enduro"):
    PRESETS[f"ALE/{_game}-v5"] = dict(ATARI_PRESET)


def config_for(env_id: str, **overrides: Any) -> TrainConfig:
    """The preset for ``env_id`` (the tutorial's defaults when there is none), with overrides.

    With ``pixels=True`` the pixel preset for ``env_id`` is used instead; any ``ALE/`` id without
    its own preset gets :data:`ATARI_PRESET`.
    """
    presets = PIXEL_PRESETS if overrides.get("pixels") else PRESETS
    fallback = ATARI_PRESET if env_id.startswith("ALE/") else {}
    values = {**presets.get(env_id, fallback), **overrides, "env_id": env_id}
    return TrainConfig(**values).validate()
