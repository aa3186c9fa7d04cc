"""QNetwork, ConvQNetwork and soft_update."""

import pytest
import torch
from torch import nn

from dqnkit.core import ConvQNetwork, QNetwork, soft_update


def test_qnetwork_shapes_and_layers() -> None:
    net = QNetwork(4, 2)
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(4, 128), (128, 128), (128, 2)]
    assert net(torch.zeros(7, 4)).shape == (7, 2)
    assert net(torch.zeros(7, 4, dtype=torch.float64)).dtype == torch.float32


def test_qnetwork_golden_forward() -> None:
    net = QNetwork(2, 1, hidden=(2,))
    first, last = (m for m in net.modules() if isinstance(m, nn.Linear))
    with torch.no_grad():
        first.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, -1.0]]))
        first.bias.zero_()
        last.weight.copy_(torch.tensor([[2.0, 3.0]]))
        last.bias.fill_(1.0)
    # relu([1, -(-2)]) = [1, 2]; 2*1 + 3*2 + 1 = 9
    assert net(torch.tensor([[1.0, -2.0]])).item() == 9.0


def test_conv_qnetwork_head_matches_the_tutorial() -> None:
    # 40x80 -> 18x38 -> 7x17 -> 2x7 with 32 channels: 448, the tutorial's nn.Linear(448, 2).
    net = ConvQNetwork((3, 40, 80), 2)
    assert net.head.in_features == 448
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.kernel_size, c.stride) for c in convs] == [((5, 5), (2, 2))] * 3
    assert sum(isinstance(m, nn.BatchNorm2d) for m in net.modules()) == 3
    assert net.eval()(torch.zeros(5, 3, 40, 80)).shape == (5, 2)


def test_conv_qnetwork_scales_uint8_frames() -> None:
    net = ConvQNetwork((1, 30, 30), 3).eval()
    frames = torch.randint(0, 256, (2, 1, 30, 30), dtype=torch.uint8)
    torch.testing.assert_close(net(frames), net(frames.float() / 255.0))


def test_conv_qnetwork_rejects_small_inputs() -> None:
    with pytest.raises(ValueError, match="too small"):
        ConvQNetwork((3, 12, 80), 2)


def test_soft_update_golden_and_hard_copy() -> None:
    target, online = nn.Linear(1, 1), nn.Linear(1, 1)
    with torch.no_grad():
        target.weight.fill_(0.0)
        target.bias.fill_(10.0)
        online.weight.fill_(1.0)
        online.bias.fill_(20.0)
    soft_update(target, online, 0.25)
    assert target.weight.item() == 0.25
    assert target.bias.item() == 12.5
    soft_update(target, online, 1.0)
    assert target.weight.item() == 1.0
    assert target.bias.item() == 20.0


def test_soft_update_copies_batch_norm_buffers() -> None:
    target, online = nn.BatchNorm1d(3), nn.BatchNorm1d(3)
    online.train()(torch.randn(8, 3) * 5 + 2)
    soft_update(target, online, 0.1)
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        assert torch.equal(getattr(target, name), getattr(online, name))
    assert target.state_dict()["num_batches_tracked"].item() == 1


def test_soft_update_rejects_different_architectures() -> None:
    with pytest.raises(ValueError, match="shape"):
        soft_update(QNetwork(4, 2), QNetwork(4, 3), 0.5)
    with pytest.raises(ValueError, match="tau"):
        soft_update(QNetwork(4, 2), QNetwork(4, 2), 1.5)
