"""Checkpoint files: the newest three are kept, and a round trip restores every piece."""

from pathlib import Path

import pytest
import torch

from dqnkit.adapters.checkpoint import (
    Checkpoint,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from dqnkit.core import QNetwork, Transition, frame_replay, replay


def example() -> Transition:
    return Transition(
        torch.zeros(4), torch.tensor(0), torch.tensor(0.0), torch.zeros(4), torch.tensor(False)
    )


def test_keeps_the_newest_three_and_round_trips(tmp_path: Path) -> None:
    online, target = QNetwork(4, 2, (8,)), QNetwork(4, 2, (8,))
    optimizer = torch.optim.Adam(online.parameters(), lr=0.1)
    online(torch.ones(3, 4)).sum().backward()
    optimizer.step()  # gives Adam moments to save
    buffer = replay.init(5, example())
    rows = Transition(
        torch.arange(28.0).reshape(7, 4),
        torch.arange(7) % 2,
        torch.arange(7.0),
        torch.ones(7, 4),
        torch.arange(7) % 3 == 0,
    )
    buffer = replay.add(buffer, rows)  # wrapped: cursor 2, size 5
    generator = torch.Generator().manual_seed(4)
    for step in (10, 20, 30, 40, 50):
        save_checkpoint(
            tmp_path,
            step,
            online=online,
            target=target,
            optimizer=optimizer,
            state=Checkpoint(buffer, {"g": generator}, {"step": step}),
        )
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [f"step-00000000{s}.safetensors" for s in (30, 40, 50)]
    assert latest_checkpoint(tmp_path) == tmp_path / "step-0000000050.safetensors"

    online2, target2 = QNetwork(4, 2, (8,)), QNetwork(4, 2, (8,))
    optimizer2 = torch.optim.Adam(online2.parameters(), lr=0.1)
    generator2 = torch.Generator().manual_seed(99)
    restored = load_checkpoint(
        tmp_path / names[-1],
        online=online2,
        target=target2,
        optimizer=optimizer2,
        example=example(),
        generators={"g": generator2},
        device=torch.device("cpu"),
    )
    assert restored.loop == {"step": 50}
    assert isinstance(restored.replay, replay.ReplayState)
    assert (restored.replay.cursor, restored.replay.size) == (2, 5)
    for stored, again in zip(buffer.storage, restored.replay.storage, strict=True):
        assert torch.equal(stored, again)
    for a, b in zip(online.state_dict().values(), online2.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    exp_avg = [optimizer.state[p]["exp_avg"] for p in online.parameters()]
    exp_avg2 = [optimizer2.state[p]["exp_avg"] for p in online2.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(exp_avg, exp_avg2, strict=True))
    assert torch.equal(torch.rand(3, generator=generator), torch.rand(3, generator=generator2))


def frame_example() -> Transition:
    frame = torch.zeros((1, 2, 2), dtype=torch.uint8)
    return Transition(frame, torch.tensor(0), torch.tensor(0.0), frame, torch.tensor(False))


@pytest.mark.parametrize("steps", [2, 5])  # 6 slots (not full), 15 slots (wrapped twice)
def test_a_frame_sharing_replay_round_trips(tmp_path: Path, steps: int) -> None:
    online, target = QNetwork(4, 2, (8,)), QNetwork(4, 2, (8,))
    optimizer = torch.optim.Adam(online.parameters(), lr=0.1)
    buffer = frame_replay.init(7, frame_example(), streams=2)
    frame = 0  # every observation a distinct frame

    def entry(streams: list[int], first: bool) -> frame_replay.Entry:
        nonlocal frame
        n = len(streams)
        ids = torch.arange(frame, frame + n, dtype=torch.uint8)
        frame += n
        return frame_replay.Entry(
            torch.tensor(streams),
            ids[:, None, None, None].expand(n, 1, 2, 2),
            torch.full((n,), first),
            ids.long() % 2,
            ids.float(),
            ids % 3 == 0,
        )

    buffer = frame_replay.add(buffer, entry([0, 1], first=True))
    for step in range(steps):
        buffer = frame_replay.add(buffer, entry([0, 1], first=False))
        if step % 2:  # stream 1's episode ends every other step
            buffer = frame_replay.add(buffer, entry([1], first=True))
    save_checkpoint(
        tmp_path,
        1,
        online=online,
        target=target,
        optimizer=optimizer,
        state=Checkpoint(buffer, {}, {}),
    )
    restored = load_checkpoint(
        tmp_path / "step-0000000001.safetensors",
        online=online,
        target=target,
        optimizer=optimizer,
        example=frame_example(),
        generators={},
        device=torch.device("cpu"),
    ).replay
    assert isinstance(restored, frame_replay.FrameReplayState)
    assert (restored.written, restored.capacity) == (buffer.written, 7)
    assert torch.equal(restored.latest, buffer.latest)
    index = frame_replay.sampleable(buffer)
    assert torch.equal(frame_replay.sampleable(restored), index)
    saved, loaded = frame_replay.gather(buffer, index), frame_replay.gather(restored, index)
    assert all(torch.equal(x, y) for x, y in zip(saved, loaded, strict=True))
    # The restored ring keeps going exactly like the original.
    more = entry([0, 1], first=False)
    original, again = frame_replay.add(buffer, more), frame_replay.add(restored, more)
    assert torch.equal(frame_replay.sampleable(original), frame_replay.sampleable(again))
    batch = frame_replay.sample(original, 16, torch.Generator().manual_seed(3))
    batch_again = frame_replay.sample(again, 16, torch.Generator().manual_seed(3))
    assert all(torch.equal(x, y) for x, y in zip(batch, batch_again, strict=True))
