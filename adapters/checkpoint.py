"""Resumable checkpoints: every piece of state a run needs to continue bit for bit.

One safetensors file per checkpoint holds the tensors (online and target networks, the
optimizer's moments, the written replay rows, the generators' states); its metadata holds the
rest as JSON (counters, replay cursor, environment snapshots, metrics so far). Nothing is
pickled, so loading a checkpoint someone sent you cannot run code.
"""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from dqnkit.adapters.errors import CommandError
from dqnkit.core import FrameReplayState, ReplayState, Transition, frame_replay, replay
from dqnkit.export.files import atomic_write

__all__ = ["Checkpoint", "latest_checkpoint", "load_checkpoint", "save_checkpoint"]

_KEY = "dqnkit.checkpoint"
_KEEP = 3


@dataclass
class Checkpoint:
    """What :func:`save_checkpoint` writes besides the modules it is given."""

    replay: ReplayState | FrameReplayState
    generators: dict[str, torch.Generator]
    loop: dict[str, Any]  # JSON-serialisable loop state: counters, env snapshots, metrics


def checkpoint_path(folder: Path, step: int) -> Path:
    return folder / f"step-{step:010d}.safetensors"


def latest_checkpoint(folder: Path) -> Path | None:
    files = sorted(folder.glob("step-*.safetensors"))
    return files[-1] if files else None


def save_checkpoint(
    folder: Path,
    step: int,
    *,
    online: nn.Module,
    target: nn.Module,
    optimizer: torch.optim.Optimizer,
    state: Checkpoint,
) -> Path:
    """Writes ``folder/step-N.safetensors`` atomically and keeps the newest few."""
    tensors: dict[str, torch.Tensor] = {}
    for prefix, module in (("online", online), ("target", target)):
        for name, value in module.state_dict().items():
            tensors[f"{prefix}/{name}"] = value
    optim_state = optimizer.state_dict()
    for index, param_state in optim_state["state"].items():
        for name, value in param_state.items():
            tensors[f"optim/{index}/{name}"] = torch.as_tensor(value)
    replay_tensors, replay_meta = _replay_to_tensors(state.replay)
    tensors.update(replay_tensors)
    for name, generator in state.generators.items():
        tensors[f"rng/{name}"] = generator.get_state()
    meta = {
        "loop": state.loop,
        "optim_param_groups": optim_state["param_groups"],
        "replay": replay_meta,
    }
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    path = checkpoint_path(folder, step)
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata={_KEY: json.dumps(meta)}))
    for old in sorted(folder.glob("step-*.safetensors"))[:-_KEEP]:
        old.unlink()
    return path


def load_checkpoint(
    path: Path,
    *,
    online: nn.Module,
    target: nn.Module,
    optimizer: torch.optim.Optimizer,
    example: Transition,
    generators: dict[str, torch.Generator],
    device: torch.device,
) -> Checkpoint:
    """Restores the modules, optimizer and generators in place; returns the replay and loop.

    Raises:
      CommandError: the file is truncated, corrupted, or not a dqnkit checkpoint.
    """
    try:
        with safe_open(str(path), framework="pt") as f:
            text = (f.metadata() or {}).get(_KEY)
            tensors = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118
        if text is None:
            raise ValueError("no dqnkit checkpoint metadata")
        meta = json.loads(text)
        for prefix, module in (("online", online), ("target", target)):
            module.load_state_dict(_with_prefix(tensors, prefix))
        optim_tensors = _with_prefix(tensors, "optim")
        optim_state: dict[int, dict[str, torch.Tensor]] = {}
        for key, value in optim_tensors.items():
            index, name = key.split("/", 1)
            optim_state.setdefault(int(index), {})[name] = value
        optimizer.load_state_dict(
            {"state": optim_state, "param_groups": meta["optim_param_groups"]}
        )
        for name, generator in generators.items():
            generator.set_state(tensors[f"rng/{name}"])
        buffer = _replay_from_tensors(
            meta["replay"], _with_prefix(tensors, "replay"), example, device
        )
    except (SafetensorError, OSError, ValueError, KeyError, RuntimeError) as error:
        raise CommandError(
            f"cannot resume from {path}: the checkpoint is truncated or corrupted ({error}); "
            "delete it to resume from the one before"
        ) from error
    return Checkpoint(replay=buffer, generators=generators, loop=meta["loop"])


# The frame-sharing buffer's fields saved besides ``latest``; all are [capacity, ...].
_FRAME_FIELDS = ("obs", "action", "reward", "terminated", "source")


def _replay_to_tensors(
    state: ReplayState | FrameReplayState,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The written part of a replay buffer as named tensors, and its counters as JSON."""
    if isinstance(state, FrameReplayState):
        tensors = {f"replay/{name}": getattr(state, name)[: state.size] for name in _FRAME_FIELDS}
        tensors["replay/latest"] = state.latest
        return tensors, {"kind": "frames", "capacity": state.capacity, "written": state.written}
    tensors = {
        f"replay/{name}": field[: state.size]
        for name, field in zip(Transition._fields, state.storage, strict=True)
    }
    meta = {"cursor": state.cursor, "size": state.size, "capacity": state.capacity}
    return tensors, {"kind": "transitions", **meta}


def _replay_from_tensors(
    info: dict[str, Any],
    tensors: dict[str, torch.Tensor],
    example: Transition,
    device: torch.device,
) -> ReplayState | FrameReplayState:
    """Rebuilds the buffer :func:`_replay_to_tensors` saved (KeyError/RuntimeError if broken)."""
    if info.get("kind") == "frames":
        latest = tensors["latest"]
        frames = frame_replay.init(info["capacity"], example, streams=len(latest), device=device)
        size = min(info["written"], info["capacity"])
        for name in _FRAME_FIELDS:
            getattr(frames, name)[:size].copy_(tensors[name])
        return frames._replace(latest=latest.to(device), written=info["written"])
    buffer = replay.init(info["capacity"], example, device=device)
    buffer = replay.add(buffer, Transition(*(tensors[name] for name in Transition._fields)))
    return buffer._replace(cursor=info["cursor"], size=info["size"])


def _with_prefix(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    start = len(prefix) + 1
    return {k[start:]: v for k, v in tensors.items() if k.startswith(prefix + "/")}
