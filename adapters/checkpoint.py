"""Resumable checkpoints: every piece of state a run needs to continue bit for bit.

One safetensors file per checkpoint (:func:`dqnkit.export.files.write_safetensors`) holds the
tensors (online and target networks, Adam's moments, the written replay rows, the generators'
states); its JSON metadata holds the rest: the :class:`LoopState` field by field, Adam's step
count, the replay's counters. Nothing is pickled, so loading a checkpoint someone sent you
cannot run code.

Loading checks everything before anything is used (:func:`load_checkpoint`): every tensor
present with its shape and dtype, the loop state's fields, and the replay's size against the
rows the loop says it wrote. Rotation keeps the newest few and never the file just written.
"""

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from dqnkit.adapters.errors import CommandError
from dqnkit.adapters.experience import FrameMemory, Memory, restore_memory, ring_of
from dqnkit.adapters.loop_state import LoopState
from dqnkit.adapters.optim import Adam
from dqnkit.core import Transition
from dqnkit.export.files import read_safetensors, write_safetensors

__all__ = [
    "FORMAT_VERSION",
    "CheckpointVersionError",
    "Restored",
    "checkpoint_path",
    "list_checkpoints",
    "load_checkpoint",
    "save_checkpoint",
]

FORMAT_VERSION = 3  # 3: exploration draws by block from the seed (no "act" generator)
_KEY = "dqnkit.checkpoint"
KEEP = 3


class CheckpointVersionError(ValueError):
    """A dqnkit checkpoint, or something claiming to be one, of a format this one cannot read."""


@dataclass
class Restored:
    """What :func:`load_checkpoint` returns besides what it restores in place."""

    memory: Memory
    loop: LoopState


def checkpoint_path(folder: Path, step: int) -> Path:
    return folder / f"step-{step:010d}.safetensors"


def list_checkpoints(folder: Path) -> list[Path]:
    """The checkpoints in ``folder``, oldest first."""
    return sorted(folder.glob("step-*.safetensors"))


def save_checkpoint(
    folder: Path,
    *,
    online: nn.Module,
    target: nn.Module,
    optimizer: Adam,
    memory: Memory,
    generators: dict[str, torch.Generator],
    loop: LoopState,
) -> Path:
    """Writes ``folder/step-N.safetensors`` atomically and keeps the newest :data:`KEEP`.

    Raises:
      CommandError: the file cannot be written (disk full, read-only folder...).
    """
    tensors: dict[str, torch.Tensor] = {}
    for prefix, module in (("online", online), ("target", target)):
        for name, value in module.state_dict().items():
            tensors[f"{prefix}/{name}"] = value
    tensors.update({f"optim/{k}": v for k, v in optimizer.tensors().items()})
    replay_tensors, replay_meta = memory.checkpoint()
    tensors.update({f"replay/{k}": v for k, v in replay_tensors.items()})
    for name, generator in generators.items():
        tensors[f"rng/{name}"] = generator.get_state()
    document = {
        "format_version": FORMAT_VERSION,
        "loop": loop.to_json(),
        "optim_steps": optimizer.steps,
        "replay": replay_meta,
    }
    path = checkpoint_path(folder, loop.step)
    try:
        write_safetensors(path, tensors, _KEY, document)
    except OSError as error:
        raise CommandError(f"cannot write checkpoint {path}: {error.strerror or error}") from error
    for old in list_checkpoints(folder)[:-KEEP]:
        if old != path:
            old.unlink(missing_ok=True)
    return path


def load_checkpoint(
    path: Path,
    *,
    online: nn.Module,
    target: nn.Module,
    optimizer: Adam,
    example: Transition,
    generators: dict[str, torch.Generator],
    num_envs: int,
    device: torch.device,
    priorities: dict[str, float] | None = None,
    n_step: tuple[int, float] | None = None,
    clip_rewards: bool = False,
) -> Restored:
    """Checks the whole file, then restores the modules, optimizer and generators in place.

    Raises:
      ValueError: the file is truncated, corrupted, inconsistent, or not a dqnkit checkpoint
        (nothing has been restored then).
    """
    tensors, document = read_safetensors(path, _KEY)
    if not isinstance(document, dict) or document.get("format_version") != FORMAT_VERSION:
        version = document.get("format_version") if isinstance(document, dict) else None
        raise CheckpointVersionError(
            f"checkpoint format {version!r}, this dqnkit reads {FORMAT_VERSION} (a checkpoint "
            "of another dqnkit version resumes with that version)"
        )
    expected = {"format_version", "loop", "optim_steps", "replay"}
    if set(document) != expected:
        raise ValueError(f"checkpoint fields {sorted(set(document) ^ expected)} wrong")
    known = ("online/", "target/", "optim/", "replay/", "rng/")
    stray = sorted(k for k in tensors if not k.startswith(known))
    if stray:
        raise ValueError(f"unexpected tensors {stray[:3]}")
    loop = LoopState.from_json(document["loop"], num_envs=num_envs)
    if document["optim_steps"] != loop.updates:
        raise ValueError(f"{document['optim_steps']} optimizer steps for {loop.updates} updates")
    memory = restore_memory(
        document["replay"],
        _with_prefix(tensors, "replay"),
        example,
        num_envs,
        device,
        priorities=priorities,
        n_step=n_step,
        clip_rewards=clip_rewards,
    )
    expected_rows = loop.step
    if isinstance(ring_of(memory), FrameMemory):  # plus one first frame per episode begun
        expected_rows += num_envs + loop.episodes
    if memory.written() != expected_rows:
        raise ValueError(
            f"the replay holds {memory.written()} rows written, the loop state says {expected_rows}"
        )
    networks = {"online": online, "target": target}
    for prefix, module in networks.items():
        _check_state(prefix, module, _with_prefix(tensors, prefix))
    states = _with_prefix(tensors, "rng")
    if set(states) != set(generators):
        raise ValueError(f"generator states {sorted(states)}, expected {sorted(generators)}")
    for name, generator in generators.items():
        like = generator.get_state()
        if states[name].shape != like.shape or states[name].dtype != like.dtype:
            raise ValueError(f"generator state {name} has the wrong shape")
    # Everything checked: restore.
    optimizer.load(_with_prefix(tensors, "optim"), document["optim_steps"])
    for prefix, module in networks.items():
        module.load_state_dict(_with_prefix(tensors, prefix))
    for name, generator in generators.items():
        generator.set_state(states[name])
    return Restored(memory=memory, loop=loop)


def _check_state(prefix: str, module: nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    expected = module.state_dict()
    if set(tensors) != set(expected):
        raise ValueError(f"{prefix} tensors {sorted(set(tensors) ^ set(expected))[:3]} wrong")
    for name, like in expected.items():
        value = tensors[name]
        if value.shape != like.shape or value.dtype != like.dtype:
            raise ValueError(
                f"{prefix}/{name} is {tuple(value.shape)} {value.dtype}, expected "
                f"{tuple(like.shape)} {like.dtype}"
            )
        if value.dtype.is_floating_point and not bool(torch.isfinite(value).all()):
            raise ValueError(f"{prefix}/{name} holds non-finite values")


def _with_prefix(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    start = len(prefix) + 1
    return {k[start:]: v for k, v in tensors.items() if k.startswith(prefix + "/")}
