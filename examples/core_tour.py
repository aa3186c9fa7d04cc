"""A tour of dqnkit.core: one DQN update written out with the pure functions.

Run: .venv/bin/python examples/core_tour.py
"""

import torch

from dqnkit.core import (
    QNetwork,
    Transition,
    epsilon_greedy,
    huber_loss,
    linear_epsilon,
    replay,
    soft_update,
    td_target,
)


def main() -> None:
    generator = torch.Generator().manual_seed(0)
    online, target = QNetwork(4, 2), QNetwork(4, 2)
    soft_update(target, online, tau=1.0)  # start the target as a copy
    optimizer = torch.optim.AdamW(online.parameters(), lr=1e-3)

    example = Transition(
        obs=torch.zeros(4),
        action=torch.tensor(0),
        reward=torch.tensor(0.0),
        next_obs=torch.zeros(4),
        terminated=torch.tensor(False),
    )
    buffer = replay.init(capacity=1_000, example=example)

    # Fake experience: 64 random transitions, every 10th one terminal.
    obs = torch.randn(64, 4, generator=generator)
    epsilon = linear_epsilon(step=0, start=1.0, end=0.05, duration=1_000)
    with torch.no_grad():
        actions = epsilon_greedy(online(obs), epsilon, generator)
    rows = Transition(
        obs=obs,
        action=actions,
        reward=torch.ones(64),
        next_obs=obs + 0.01 * torch.randn(64, 4, generator=generator),
        terminated=torch.arange(64) % 10 == 9,
    )
    buffer = replay.add(buffer, rows)
    print(f"buffer: size {buffer.size} of {buffer.capacity}, cursor {buffer.cursor}")

    for step in range(3):
        batch = replay.sample(buffer, batch_size=32, generator=generator)
        q = online(batch.obs).gather(1, batch.action[:, None]).squeeze(1)
        with torch.no_grad():
            target_q = td_target(batch.reward, batch.terminated, target(batch.next_obs), 0.99)
        loss = huber_loss(q - target_q).mean()
        optimizer.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
        soft_update(target, online, tau=0.005)
        print(f"update {step}: huber loss {loss.item():.4f}, epsilon {epsilon:.2f}")


if __name__ == "__main__":
    main()
