"""QNetwork, ConvQNetwork and soft_update."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from dqnkit.core import ConvQNetwork, NatureQNetwork, QNetwork, dueling_q, soft_update


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


# --- initial weights from a generator ------------------------------------------------------

NETWORKS = [
    ("mlp", lambda **kw: QNetwork(4, 2, (8, 8), **kw)),
    ("mlp-dueling", lambda **kw: QNetwork(4, 2, (8,), dueling=True, **kw)),
    ("conv", lambda **kw: ConvQNetwork((1, 30, 30), 3, **kw)),
    ("nature", lambda **kw: NatureQNetwork((2, 36, 36), 3, **kw)),
    ("nature-dueling", lambda **kw: NatureQNetwork((2, 36, 36), 3, dueling=True, **kw)),
]


def _weights(net: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in net.state_dict().values()]


@pytest.mark.parametrize(("name", "build"), NETWORKS)
def test_a_generator_fixes_the_initial_weights_and_spares_the_global_rng(name, build):
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    a = build(generator=torch.Generator().manual_seed(5))
    assert torch.equal(torch.random.get_rng_state(), before), name
    torch.manual_seed(999)  # the global state plays no part
    b = build(generator=torch.Generator().manual_seed(5))
    c = build(generator=torch.Generator().manual_seed(6))
    for x, y in zip(_weights(a), _weights(b), strict=True):
        assert torch.equal(x, y)
    layers = [(m, n) for m, n in zip(a.modules(), c.modules(), strict=True) if _drawn(m)]
    assert layers
    for m, n in layers:
        assert not torch.equal(m.weight, n.weight)
        assert not torch.equal(m.bias, n.bias)


def _drawn(module: nn.Module) -> bool:
    return isinstance(module, nn.Linear | nn.Conv2d)


@pytest.mark.parametrize(("name", "build"), NETWORKS)
def test_generator_weights_follow_pytorchs_default_bounds(name, build):
    net = build(generator=torch.Generator().manual_seed(0))
    for layer in net.modules():
        if isinstance(layer, nn.Linear | nn.Conv2d):
            bound = 1 / layer.weight[0].numel() ** 0.5
            assert layer.weight.abs().max().item() <= bound, name
            assert layer.bias is not None
            assert layer.bias.abs().max().item() <= bound, name
            # Spread over the interval, not a constant: at least a third of the bound.
            assert layer.weight.abs().max().item() > bound / 3, name


def test_no_generator_draws_from_the_global_rng_as_before() -> None:
    torch.manual_seed(7)
    net = _weights(QNetwork(4, 2, (8,)))
    torch.manual_seed(7)
    first, second = nn.Linear(4, 8), nn.Linear(8, 2)
    assert [x.tolist() for x in net] == [
        first.weight.tolist(),
        first.bias.tolist(),
        second.weight.tolist(),
        second.bias.tolist(),
    ]
    torch.manual_seed(7)
    conv = _weights(ConvQNetwork((1, 30, 30), 3))
    torch.manual_seed(7)
    reference = nn.Conv2d(1, 16, kernel_size=5, stride=2)
    assert torch.equal(conv[0], reference.weight.detach())


# --- dueling -------------------------------------------------------------------------------


def test_dueling_q_golden() -> None:
    value = torch.tensor([[1.0], [-2.0]])
    advantage = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 6.0]])
    # row 0: mean 2 -> 1 + [-1, 0, 1]; row 1: mean 2 -> -2 + [-2, -2, 4]
    expected = torch.tensor([[0.0, 1.0, 2.0], [-4.0, -4.0, 2.0]])
    assert torch.equal(dueling_q(value, advantage), expected)
    assert torch.equal(dueling_q(value.squeeze(1), advantage), expected)


def test_dueling_q_rejects_mismatched_shapes_naming_both() -> None:
    with pytest.raises(ValueError, match=r"value must have shape.*\(2, 3\).*\(3, 1\)"):
        dueling_q(torch.zeros(3, 1), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="rank 2"):
        dueling_q(torch.zeros(2), torch.zeros(2))


small = st.floats(-1e3, 1e3, allow_nan=False, width=32)


@st.composite
def dueling_inputs(draw):
    batch, n_actions = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    value = torch.tensor(draw(st.lists(small, min_size=batch, max_size=batch)))
    rows = st.lists(st.lists(small, min_size=n_actions, max_size=n_actions), min_size=batch)
    advantage = torch.tensor(draw(rows.filter(lambda r: len(r) == batch)))
    return value.double(), advantage.double(), draw(small)


@given(dueling_inputs())
def test_dueling_q_ignores_a_constant_added_to_the_advantages(inputs):
    value, advantage, constant = inputs
    torch.testing.assert_close(
        dueling_q(value, advantage + constant), dueling_q(value, advantage), rtol=0, atol=1e-9
    )


@given(dueling_inputs())
def test_dueling_q_mean_over_actions_is_the_value(inputs):
    value, advantage, _ = inputs
    q = dueling_q(value, advantage)
    for i in range(len(value)):
        row = q[i].tolist()
        assert sum(row) / len(row) == pytest.approx(value[i].item(), rel=1e-9, abs=1e-9)


def test_dueling_qnetwork_combines_its_two_heads() -> None:
    net = QNetwork(3, 4, (5,), dueling=True, generator=torch.Generator().manual_seed(0))
    assert net.value is not None
    obs = torch.randn(6, 3, generator=torch.Generator().manual_seed(1))
    trunk = torch.relu(net.layers[0](obs))
    expected = dueling_q(net.value(trunk), net.layers[1](trunk))
    torch.testing.assert_close(net(obs), expected)
    assert QNetwork(3, 4, (5,)).value is None
    assert net.dueling
    assert not QNetwork(3, 4).dueling


def test_dueling_conv_qnetwork_combines_its_two_heads() -> None:
    net = ConvQNetwork((1, 30, 30), 3, dueling=True).eval()
    assert net.value is not None
    frames = torch.randint(0, 256, (2, 1, 30, 30), dtype=torch.uint8)
    features = net.features(frames.float() / 255.0)
    torch.testing.assert_close(net(frames), dueling_q(net.value(features), net.head(features)))


# --- the Nature network --------------------------------------------------------------------


def test_nature_qnetwork_layers_and_shapes() -> None:
    net = NatureQNetwork(n_actions=6)
    convs = [m for m in net.features if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.stride) for c in convs] == [
        (4, 32, (8, 8), (4, 4)),
        (32, 64, (4, 4), (2, 2)),
        (64, 64, (3, 3), (1, 1)),
    ]
    linears = [m for m in net.head if isinstance(m, nn.Linear)]
    # 84 -> 20 -> 9 -> 7: 7 * 7 * 64 = 3136 features.
    assert [(m.in_features, m.out_features) for m in linears] == [(3136, 512), (512, 6)]
    assert net.value is None
    assert net(torch.zeros(3, 4, 84, 84, dtype=torch.uint8)).shape == (3, 6)
    dueling = NatureQNetwork((4, 84, 84), 6, dueling=True)
    assert dueling.value is not None
    value_linears = [m for m in dueling.value if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in value_linears] == [(3136, 512), (512, 1)]
    assert dueling(torch.zeros(2, 4, 84, 84)).shape == (2, 6)


def test_nature_qnetwork_scales_uint8_frames() -> None:
    net = NatureQNetwork((4, 84, 84), 3, generator=torch.Generator().manual_seed(0))
    frames = torch.randint(
        0, 256, (2, 4, 84, 84), dtype=torch.uint8, generator=torch.Generator().manual_seed(1)
    )
    out = net(frames)
    torch.testing.assert_close(out, net(frames.float() / 255.0), rtol=0, atol=0)
    # Not the unscaled bytes: those give other values.
    assert not torch.allclose(out, net(frames.float()))


def test_nature_qnetwork_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="n_actions"):
        NatureQNetwork((4, 84, 84))
    with pytest.raises(ValueError, match="too small"):
        NatureQNetwork((4, 30, 30), 2)
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        NatureQNetwork((84, 84), 2)


@pytest.mark.parametrize(("name", "build"), NETWORKS)
def test_every_network_scripts_and_exports_with_the_same_values(name, build):
    # The export layer compiles networks with torch.jit.script and torch.export.
    import warnings

    net = build(generator=torch.Generator().manual_seed(0)).eval()
    shape = (2, 4) if name.startswith("mlp") else (2, *net.in_shape)
    x = torch.rand(shape, generator=torch.Generator().manual_seed(1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        scripted = torch.jit.script(net)
    torch.testing.assert_close(scripted(x), net(x))
    exported = torch.export.export(net, (x,))
    torch.testing.assert_close(exported.module()(x), net(x))
