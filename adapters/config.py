"""The training configuration: one dataclass, and presets per environment with their sources."""

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from dqnkit.adapters.errors import CommandError

__all__ = ["PIXEL_PRESETS", "PRESETS", "TrainConfig", "config_for"]

EpsilonSchedule = Literal["linear", "exponential"]
FrameMode = Literal["difference", "stack"]


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

    Defaults are the PyTorch DQN tutorial's where it has one (gamma, the Huber loss, AdamW,
    128-128 MLP); presets in :data:`PRESETS` override them per environment.
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
            "Skip a periodic evaluation while the last 10 training episodes average below this "
            "(evaluations of a policy that is visibly not there yet are wasted time)."
        ),
    )
    stop_return: float | None = field(
        default=None,
        metadata=_doc("Stop early once a periodic evaluation's mean return reaches this."),
    )
    final_eval_episodes: int = field(
        default=20, metadata=_doc("Episodes of the greedy evaluation at the end of training.")
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
    threads: int = field(
        default=1,
        metadata=_doc("torch intra-op threads; 1 is fastest for small networks on a shared CPU."),
    )

    def validate(self) -> "TrainConfig":
        """Checks values up front, so a bad option fails before any work is done."""
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
        )
        for name in positive:
            value = getattr(self, name)
            if value <= 0:
                raise CommandError(f"{flag(name)} must be positive, got {value}")
        for name in ("learning_starts", "eval_every", "checkpoint_every", "max_grad_norm"):
            if getattr(self, name) < 0:
                raise CommandError(f"{flag(name)} must be non-negative, got {getattr(self, name)}")
        for name in ("gamma", "tau", "epsilon_start", "epsilon_end"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise CommandError(f"{flag(name)} must be in [0, 1], got {getattr(self, name)}")
        if self.tau == 0.0:
            raise CommandError("--tau must be positive: 0 would never update the target network")
        if self.learning_rate <= 0 or self.huber_delta <= 0:
            raise CommandError("--learning-rate and --huber-delta must be positive")
        if self.frame_mode not in ("difference", "stack"):
            raise CommandError(
                f"--frame-mode must be 'difference' or 'stack', got {self.frame_mode!r}"
            )
        if self.epsilon_schedule not in ("linear", "exponential"):
            raise CommandError(
                "--epsilon-schedule must be 'linear' or 'exponential', "
                f"got {self.epsilon_schedule!r}"
            )
        if not self.hidden or any(w <= 0 for w in self.hidden):
            raise CommandError(f"--hidden needs positive widths, got {self.hidden}")
        if self.pixels and self.buffer_size <= self.num_envs:
            raise CommandError(
                f"--buffer-size must exceed --num-envs ({self.num_envs}) with --pixels: a frame's "
                f"successor is written {self.num_envs} slots after it, got {self.buffer_size}"
            )
        return self

    def preprocessing(self) -> dict[str, Any] | None:
        """How observations are made from the environment's: None, or the pixel pipeline."""
        if not self.pixels:
            return None
        from dqnkit.adapters import pixels

        return pixels.describe(self.env_id, frame_mode=self.frame_mode, frames=self.frames)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json_file(cls, path: Path) -> "TrainConfig":
        data = json.loads(path.read_text())
        data["hidden"] = tuple(data["hidden"])
        return cls(**data)


# Presets: overrides of TrainConfig per environment, with where each value comes from.
PRESETS: dict[str, dict[str, Any]] = {
    # Our own tuning, measured by benchmarks/bench_learning.py (tables in benchmarks/README.md):
    # solves CartPole-v1 (100-episode greedy mean >= 475) in 10 of 10 seeds within 50k steps.
    # Start: rl-baselines3-zoo hyperparams/dqn.yml CartPole-v1 (lr 2.3e-3, batch 64, hard target
    # copy every 10 steps, epsilon 1 -> 0.04 over 16% of 50k; train_freq 256, gradient_steps 128,
    # net 256-256), which solved 8 of 10 with early stopping. Changed: the tutorial's 128-128 net
    # (4x cheaper updates) and half the updates in phases of 32 every 128 steps (10 of 10, fewer
    # steps to solve). Phases of 16 every 64 steps solved only 5 of 10: the target network then
    # trails the online one by too few updates. Training stops once a greedy evaluation returns
    # 500 in 20 of 20 episodes, checked every 1000 steps when training returns average >= 400.
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
    # rl-baselines3-zoo hyperparams/dqn.yml, MountainCar-v0 (exploration_fraction 0.2 of 1.2e5).
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
    },
}


# rl-baselines3-zoo hyperparams/dqn.yml gives LunarLander-v2 the same values as Acrobot-v1
# (v3 is the same task in Gymnasium 1.x; it needs the box2d extra).
PRESETS["LunarLander-v3"] = dict(PRESETS["Acrobot-v1"])


# Presets for learning from pixels (--pixels), used instead of PRESETS when pixels is set. Our
# own choice for the tutorial's CNN on 40x80 frames, measured by the pixel learning benchmark
# in benchmarks/README.md (a 100-episode greedy mean of 500 after 90k steps, with a stack of
# 4 frames): one gradient step of 32 every 4 steps keeps the CNN's cost near the render's.
PIXEL_PRESETS: dict[str, dict[str, Any]] = {
    "CartPole-v1": {
        "total_steps": 250_000,
        "learning_rate": 1e-4,
        "buffer_size": 50_000,
        "batch_size": 32,
        "learning_starts": 10_000,
        "train_every": 4,
        "gradient_steps": 1,
        "target_update_every": 2_000,
        "tau": 1.0,
        "epsilon_schedule": "linear",
        "epsilon_start": 1.0,
        "epsilon_end": 0.05,
        "epsilon_steps": 50_000,
        "gamma": 0.99,
        "eval_every": 10_000,
        "eval_episodes": 10,
        "eval_gate": 100.0,
        "stop_return": 300.0,
        "checkpoint_every": 50_000,
        "final_eval_episodes": 100,
    },
}


def config_for(env_id: str, **overrides: Any) -> TrainConfig:
    """The preset for ``env_id`` (the tutorial's defaults when there is none), with overrides.

    With ``pixels=True`` the pixel preset for ``env_id`` is used instead.
    """
    presets = PIXEL_PRESETS if overrides.get("pixels") else PRESETS
    values = {**presets.get(env_id, {}), **overrides, "env_id": env_id}
    return TrainConfig(**values).validate()
