"""dqnkit's Adam is torch's single-tensor Adam, bit for bit, and does not import torch._dynamo."""

import subprocess
import sys

import pytest
import torch

from dqnkit.adapters.optim import Adam, clip_grad_norm
from dqnkit.core import QNetwork


@pytest.mark.parametrize("lr", [1e-4, 2.3e-3, 0.5])
def test_adam_matches_torch_adam_bit_for_bit(lr: float) -> None:
    torch.manual_seed(0)
    ours, theirs = QNetwork(4, 3, (16, 16)), QNetwork(4, 3, (16, 16))
    theirs.load_state_dict(ours.state_dict())
    mine = Adam(ours.parameters(), lr=lr)
    reference = torch.optim.Adam(theirs.parameters(), lr=lr, foreach=False)
    data = torch.Generator().manual_seed(1)
    for _ in range(25):
        x = torch.randn(8, 4, generator=data)
        for net, opt in ((ours, mine), (theirs, reference)):
            opt.zero_grad()
            (net(x) ** 2).mean().backward()
            opt.step()
    for a, b in zip(ours.parameters(), theirs.parameters(), strict=True):
        assert torch.equal(a, b)
    exp_avg = [reference.state[p]["exp_avg"] for p in theirs.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(mine.exp_avg, exp_avg, strict=True))


# Clipping hard, a little, not at all; and gradients so small that the 1e-6 matters.
@pytest.mark.parametrize(("scale", "max_norm"), [(30, 1e-3), (30, 10.0), (30, 1e6), (1e-4, 1e-7)])
def test_clip_grad_norm_matches_torch_bit_for_bit(scale: float, max_norm: float) -> None:
    torch.manual_seed(0)
    ours, theirs = QNetwork(4, 3, (16, 16)), QNetwork(4, 3, (16, 16))
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(8, 4, generator=torch.Generator().manual_seed(2))
    for net in (ours, theirs):
        (net(x) * scale).mean().backward()
    before = [p.grad.clone() for p in ours.parameters() if p.grad is not None]
    clip_grad_norm(list(ours.parameters()), max_norm)
    torch.nn.utils.clip_grad_norm_(theirs.parameters(), max_norm)
    after = [p.grad for p in ours.parameters() if p.grad is not None]
    reference = [p.grad for p in theirs.parameters() if p.grad is not None]
    assert len(after) == len(reference) == len(before) == 6
    for a, b in zip(after, reference, strict=True):
        assert torch.equal(a, b)
    changed = any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))
    assert changed == (max_norm < 1e6)


def test_training_parts_do_not_import_dynamo() -> None:
    code = (
        "import sys, torch\n"
        "from dqnkit.adapters.optim import Adam\n"
        "from dqnkit.core import QNetwork\n"
        "net = QNetwork(4, 2)\n"
        "opt = Adam(net.parameters(), lr=0.1)\n"
        "net(torch.ones(2, 4)).sum().backward(); opt.step()\n"
        "print('torch._dynamo' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
