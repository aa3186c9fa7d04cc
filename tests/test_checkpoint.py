"""Checkpoint files: the newest three are kept, a round trip restores every piece, and a
damaged file is refused whole before anything is restored."""

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from dqnkit.adapters.checkpoint import list_checkpoints, load_checkpoint, save_checkpoint
from dqnkit.adapters.experience import FrameMemory, TransitionMemory, create_memory, example_row
from dqnkit.adapters.loop_state import EnvSnapshot, EpisodeRow, Evaluation, LoopState
from dqnkit.adapters.optim import Adam
from dqnkit.core import QNetwork, frame_replay

CPU = torch.device("cpu")


def parts() -> tuple[QNetwork, QNetwork, Adam]:
    online, target = QNetwork(4, 2, (8,)), QNetwork(4, 2, (8,))
    optimizer = Adam(online.parameters(), lr=0.1)
    online(torch.ones(3, 4)).sum().backward()
    optimizer.step()  # gives Adam moments to save
    return online, target, optimizer


def memory_of(steps: int) -> TransitionMemory:
    memory = create_memory(5, example_row((4,), torch.float32), 1, CPU)
    assert isinstance(memory, TransitionMemory)
    for t in range(steps):
        obs = np.full((1, 4), t, dtype=np.float32)
        memory.add(obs, np.array([t % 2]), np.array([float(t)]), obs + 1, np.array([t % 3 == 0]))
    return memory


def loop_at(step: int) -> LoopState:
    return LoopState(
        step=step,
        episodes=1,
        updates=1,
        synced_at=1,
        last_loss=0.5,
        envs=[EnvSnapshot(None, [1, 0], 2.0)],
        metrics=[EpisodeRow(step, 1, 9.0, 9, 0.1, None, 100.0)],
        evaluations=[Evaluation(step, 9.5, 0.5)],
    )


def save(folder: Path, step: int, **kw: Any) -> Path:
    online, target, optimizer = parts()
    return save_checkpoint(
        folder,
        online=kw.get("online", online),
        target=target,
        optimizer=kw.get("optimizer", optimizer),
        memory=kw.get("memory", memory_of(step)),
        generators=kw.get("generators", {"g": torch.Generator().manual_seed(4)}),
        loop=kw.get("loop", loop_at(step)),
    )


def load(path: Path, **kw: Any) -> Any:
    online, target, optimizer = QNetwork(4, 2, (8,)), QNetwork(4, 2, (8,)), None
    optimizer = Adam(online.parameters(), lr=0.1)
    return load_checkpoint(
        path,
        online=kw.get("online", online),
        target=target,
        optimizer=optimizer,
        example=kw.get("example", example_row((4,), torch.float32)),
        generators=kw.get("generators", {"g": torch.Generator()}),
        num_envs=1,
        device=CPU,
    )


def test_keeps_the_newest_three_and_round_trips(tmp_path: Path) -> None:
    online, _target, optimizer = parts()
    generator = torch.Generator().manual_seed(4)
    for step in (10, 20, 30, 40, 7):  # 7 (the resume of an older one) is never removed
        path = save(tmp_path, step, online=online, optimizer=optimizer, generators={"g": generator})
    names = [p.name for p in list_checkpoints(tmp_path)]
    # The newest three by step, and the one just written although it is older.
    assert names == [f"step-00000000{s:02d}.safetensors" for s in (7, 20, 30, 40)]
    assert path == tmp_path / "step-0000000007.safetensors"

    path = save(tmp_path, 50, online=online, optimizer=optimizer, generators={"g": generator})
    assert next(p.name for p in list_checkpoints(tmp_path)) == "step-0000000030.safetensors"
    online2 = QNetwork(4, 2, (8,))
    generator2 = torch.Generator().manual_seed(99)
    optimizer2 = Adam(online2.parameters(), lr=0.1)
    restored = load_checkpoint(
        path,
        online=online2,
        target=QNetwork(4, 2, (8,)),
        optimizer=optimizer2,
        example=example_row((4,), torch.float32),
        generators={"g": generator2},
        num_envs=1,
        device=CPU,
    )
    assert restored.loop == loop_at(50)
    assert isinstance(restored.memory, TransitionMemory)
    assert (restored.memory.state.cursor, restored.memory.state.size) == (0, 5)
    for a, b in zip(online.state_dict().values(), online2.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert optimizer2.steps == optimizer.steps == 1
    assert all(
        torch.equal(a, b) for a, b in zip(optimizer.exp_avg, optimizer2.exp_avg, strict=True)
    )
    assert torch.equal(torch.rand(3, generator=generator), torch.rand(3, generator=generator2))


def rewrite(path: Path, edit_meta: Any = None, edit_tensors: Any = None) -> None:
    with safe_open(str(path), framework="pt") as f:
        meta = json.loads(f.metadata()["dqnkit.checkpoint"])
    tensors = load_file(path)
    if edit_meta:
        edit_meta(meta)
    if edit_tensors:
        edit_tensors(tensors)
    save_file(tensors, str(path), metadata={"dqnkit.checkpoint": json.dumps(meta)})


@pytest.mark.parametrize(
    ("edit_meta", "edit_tensors", "message"),
    [
        (lambda m: m["loop"].update(episoda=1), None, "unknown fields"),
        (lambda m: m["loop"].pop("updates"), None, "lacks"),
        (lambda m: m["loop"].update(step=-3), None, "non-negative"),
        (lambda m: m["loop"].update(episodes=2), None, "2 episodes but 1"),
        (lambda m: m["loop"]["metrics"][0].pop(), None, "metrics row"),
        (lambda m: m["loop"].update(envs=[]), None, "snapshots"),
        (lambda m: m.update(optim_steps=5), None, "optimizer steps"),
        (lambda m: m["loop"].update(step=6), None, "rows written"),
        (lambda m: m["replay"].update(written=3), None, "counters disagree"),
        (lambda m: m.update(format_version=1), None, "checkpoint format"),
        (None, lambda t: t.pop("online/layers.0.bias"), "online tensors"),
        (None, lambda t: t.update({"online/layers.0.weight": torch.zeros(8, 5)}), "expected"),
        (None, lambda t: t["target/layers.1.bias"].fill_(float("nan")), "non-finite"),
        (None, lambda t: t.update({"optim/exp_avg/0": torch.zeros(1)}), "optimizer"),
        (None, lambda t: t.pop("rng/g"), "generator states"),
        (None, lambda t: t.update({"evil/x": torch.zeros(1)}), "unexpected tensors"),
    ],
)
def test_a_damaged_checkpoint_is_refused_and_restores_nothing(
    tmp_path: Path, edit_meta: Any, edit_tensors: Any, message: str
) -> None:
    path = save(tmp_path, 5)
    rewrite(path, edit_meta, edit_tensors)
    online = QNetwork(4, 2, (8,))
    before = {k: v.clone() for k, v in online.state_dict().items()}
    with pytest.raises(ValueError, match=message):
        load(path, online=online)
    assert all(torch.equal(before[k], v) for k, v in online.state_dict().items())


def test_a_truncated_file_is_refused(tmp_path: Path) -> None:
    path = save(tmp_path, 5)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        load(path)


def frame_example() -> Any:
    return example_row((1, 2, 2), torch.uint8)


@pytest.mark.parametrize("steps", [2, 5])  # 6 slots (not full), 15 slots (wrapped twice)
def test_a_frame_sharing_replay_round_trips(tmp_path: Path, steps: int) -> None:
    memory = create_memory(7, frame_example(), 2, CPU)
    assert isinstance(memory, FrameMemory)
    frame, episodes = 0, 0

    def frames(n: int) -> np.ndarray:
        nonlocal frame
        ids = np.arange(frame, frame + n, dtype=np.uint8)
        frame += n
        return np.broadcast_to(ids[:, None, None, None], (n, 1, 2, 2)).copy()

    memory.start(np.arange(2), frames(2))
    for step in range(steps):
        obs = frames(2)
        memory.add(
            obs, np.array([0, 1]), np.array([1.0, 2.0]), obs, np.array([False, step % 2 == 1])
        )
        if step % 2:  # stream 1's episode ends every other step
            memory.start(np.array([1]), frames(1))
            episodes += 1
    loop = LoopState(2 * steps, episodes, updates=1, envs=[EnvSnapshot(), EnvSnapshot()])
    loop.metrics = [EpisodeRow(2, i + 1, 1.0, 1, 0.1, None, 1.0) for i in range(episodes)]
    online, target, optimizer = parts()
    path = save_checkpoint(
        tmp_path, online=online, target=target, optimizer=optimizer, memory=memory,
        generators={}, loop=loop,
    )  # fmt: skip
    restored = load_checkpoint(
        path, online=online, target=target, optimizer=optimizer, example=frame_example(),
        generators={}, num_envs=2, device=CPU,
    ).memory  # fmt: skip
    assert isinstance(restored, FrameMemory)
    buffer = memory.state
    assert (restored.state.written, restored.state.capacity) == (buffer.written, 7)
    assert torch.equal(restored.state.latest, buffer.latest)
    index = frame_replay.sampleable(buffer)
    assert torch.equal(frame_replay.sampleable(restored.state), index)
    saved, loaded = frame_replay.gather(buffer, index), frame_replay.gather(restored.state, index)
    assert all(torch.equal(x, y) for x, y in zip(saved, loaded, strict=True))
    a = memory.sample(16, torch.Generator().manual_seed(3)).batch
    b = restored.sample(16, torch.Generator().manual_seed(3)).batch
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
