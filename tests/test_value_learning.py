"""td_target and huber_loss: golden values by hand, and properties."""

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from dqnkit.core import huber_loss, td_target

floats = st.floats(-100, 100, allow_nan=False, width=32)


# --- td_target -----------------------------------------------------------------------------


def test_td_target_golden() -> None:
    reward = torch.tensor([1.0, 0.5, -1.0])
    terminated = torch.tensor([False, True, False])
    next_q = torch.tensor([[2.0, 3.0], [10.0, 20.0], [-4.0, -2.0]])
    # 1 + 0.9 * 3 = 3.7; terminal -> 0.5; -1 + 0.9 * -2 = -2.8
    expected = torch.tensor([3.7, 0.5, -2.8])
    torch.testing.assert_close(td_target(reward, terminated, next_q, 0.9), expected)


def test_double_dqn_target_golden() -> None:
    reward = torch.tensor([1.0, 0.0])
    terminated = torch.tensor([False, False])
    next_q = torch.tensor([[2.0, 3.0], [5.0, 1.0]])
    next_q_online = torch.tensor([[9.0, 0.0], [0.0, 9.0]])
    # online picks action 0 then 1: 1 + 0.5 * 2 = 2.0; 0 + 0.5 * 1 = 0.5
    expected = torch.tensor([2.0, 0.5])
    torch.testing.assert_close(
        td_target(reward, terminated, next_q, 0.5, next_q_online=next_q_online), expected
    )


def test_td_target_with_per_row_gamma_golden() -> None:
    reward = torch.tensor([1.0, 1.0])
    terminated = torch.tensor([False, False])
    next_q = torch.tensor([[1.0, 2.0], [1.0, 2.0]])
    gamma = torch.tensor([0.5, 0.25])
    torch.testing.assert_close(
        td_target(reward, terminated, next_q, gamma), torch.tensor([2.0, 1.5])
    )


def test_terminated_rows_ignore_inf_and_nan() -> None:
    reward = torch.tensor([2.0, 3.0, 4.0])
    terminated = torch.tensor([True, True, True])
    next_q = torch.tensor([[math.inf, 0.0], [math.nan, math.nan], [-math.inf, 1.0]])
    out = td_target(reward, terminated, next_q, 0.99)
    assert out.tolist() == [2.0, 3.0, 4.0]
    out = td_target(reward, terminated, next_q, 0.99, next_q_online=next_q)
    assert out.tolist() == [2.0, 3.0, 4.0]


def test_td_target_carries_no_gradient() -> None:
    next_q = torch.tensor([[1.0, 2.0]], requires_grad=True)
    out = td_target(torch.tensor([0.0]), torch.tensor([False]), next_q, 0.9)
    assert not out.requires_grad
    assert out.grad_fn is None


def test_td_target_rejects_mismatched_shapes_naming_both() -> None:
    with pytest.raises(ValueError, match=r"reward must have shape.*\(3, 2\).*\(2,\)"):
        td_target(torch.zeros(2), torch.zeros(3, dtype=torch.bool), torch.zeros(3, 2), 0.9)
    with pytest.raises(ValueError, match="terminated must be a bool"):
        td_target(torch.zeros(3), torch.zeros(3), torch.zeros(3, 2), 0.9)
    with pytest.raises(ValueError, match="gamma"):
        td_target(torch.zeros(3), torch.zeros(3, dtype=torch.bool), torch.zeros(3, 2), 1.5)


@st.composite
def td_inputs(draw):
    batch = draw(st.integers(1, 8))
    n_actions = draw(st.integers(1, 5))
    reward = torch.tensor(draw(st.lists(floats, min_size=batch, max_size=batch)))
    terminated = torch.tensor(draw(st.lists(st.booleans(), min_size=batch, max_size=batch)))
    q_row = st.lists(floats, min_size=n_actions, max_size=n_actions)
    next_q = torch.tensor(draw(st.lists(q_row, min_size=batch, max_size=batch)))
    online = torch.tensor(draw(st.lists(q_row, min_size=batch, max_size=batch)))
    gamma = draw(st.floats(0.0, 1.0))
    return reward, terminated, next_q, online, gamma


@given(td_inputs(), st.sampled_from([math.nan, math.inf, -math.inf, 1e30]))
def test_td_target_never_bootstraps_through_termination(inputs, poison):
    reward, terminated, next_q, online, gamma = inputs
    poisoned = torch.where(terminated[:, None], torch.full_like(next_q, poison), next_q)
    for out in (
        td_target(reward, terminated, poisoned, gamma),
        td_target(reward, terminated, poisoned, gamma, next_q_online=online),
    ):
        assert torch.equal(out[terminated], reward[terminated])
        assert torch.isfinite(out[~terminated]).all()


@given(td_inputs())
def test_td_target_equals_the_formula_row_by_row(inputs):
    reward, terminated, next_q, online, gamma = inputs
    out = td_target(reward, terminated, next_q, gamma)
    double = td_target(reward, terminated, next_q, gamma, next_q_online=online)
    for i in range(len(reward)):
        r = reward[i].item()
        q = next_q[i].tolist()
        row = online[i].tolist()
        a_online = row.index(max(row))  # the first maximum, as torch.argmax
        if terminated[i]:
            assert out[i].item() == r
            assert double[i].item() == r
        else:
            assert out[i].item() == pytest.approx(r + gamma * max(q), rel=1e-5, abs=1e-4)
            assert double[i].item() == pytest.approx(r + gamma * q[a_online], rel=1e-5, abs=1e-4)


@given(td_inputs())
def test_double_dqn_target_never_exceeds_the_vanilla_target(inputs):
    reward, terminated, next_q, online, gamma = inputs
    vanilla = td_target(reward, terminated, next_q, gamma)
    double = td_target(reward, terminated, next_q, gamma, next_q_online=online)
    assert (double <= vanilla).all()


# --- huber_loss ----------------------------------------------------------------------------


def test_huber_loss_golden() -> None:
    x = torch.tensor([-3.0, -1.0, -0.5, 0.0, 0.5, 1.0, 3.0])
    # delta = 1: 0.5 x^2 inside, |x| - 0.5 outside
    expected = torch.tensor([2.5, 0.5, 0.125, 0.0, 0.125, 0.5, 2.5])
    torch.testing.assert_close(huber_loss(x), expected)
    # delta = 2: 0.5 x^2 inside, 2 (|x| - 1) outside
    torch.testing.assert_close(
        huber_loss(torch.tensor([-3.0, 1.0, 2.0]), 2.0), torch.tensor([4.0, 0.5, 2.0])
    )


def test_huber_loss_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="delta"):
        huber_loss(torch.zeros(2), 0.0)
    with pytest.raises(ValueError, match="floating"):
        huber_loss(torch.zeros(2, dtype=torch.int64))


deltas = st.floats(0.01, 10.0)


@given(st.lists(floats, min_size=1, max_size=16), deltas)
def test_huber_loss_is_its_piecewise_definition(values, delta):
    x = torch.tensor(values, dtype=torch.float64)
    out = huber_loss(x, delta)
    for xi, li in zip(values, out.tolist(), strict=True):
        expected = 0.5 * xi**2 if abs(xi) <= delta else delta * (abs(xi) - 0.5 * delta)
        assert li == pytest.approx(expected, rel=1e-9, abs=1e-12)
    torch.testing.assert_close(out, F.huber_loss(x, torch.zeros_like(x), "none", delta))


@given(st.lists(floats, min_size=1, max_size=16), deltas)
def test_huber_loss_gradient_is_the_clipped_error(values, delta):
    x = torch.tensor(values, dtype=torch.float64, requires_grad=True)
    huber_loss(x, delta).sum().backward()
    assert x.grad is not None
    torch.testing.assert_close(x.grad, x.detach().clamp(-delta, delta))


@given(deltas)
def test_huber_loss_is_continuous_at_plus_minus_delta(delta):
    eps = 1e-7 * delta
    for edge in (delta, -delta):
        x = torch.tensor([edge - eps, edge, edge + eps], dtype=torch.float64)
        left, at, right = huber_loss(x, delta).tolist()
        assert at == pytest.approx(0.5 * delta**2, rel=1e-12)
        assert left == pytest.approx(at, rel=1e-6)
        assert right == pytest.approx(at, rel=1e-6)


@given(st.lists(st.floats(allow_nan=False, width=32), min_size=1, max_size=16), deltas)
def test_huber_loss_gradient_is_exactly_the_clamp_in_float32(values, delta):
    x = torch.tensor(values, dtype=torch.float32, requires_grad=True)
    huber_loss(x, delta).sum().backward()
    assert x.grad is not None
    assert torch.equal(x.grad, x.detach().clamp(-delta, delta))


def test_huber_loss_gradient_of_a_tiny_error_is_the_error_in_float32() -> None:
    # delta + (min(|x|, delta) - delta) cancels to 0 in float32 for |x| << delta: not here.
    x = torch.tensor([2e-8, -2e-8, 1e-30], dtype=torch.float32, requires_grad=True)
    huber_loss(x).sum().backward()
    assert x.grad is not None
    assert torch.equal(x.grad, x.detach())
    assert x.grad[0].item() == torch.tensor(2e-8, dtype=torch.float32).item()


def test_huber_loss_gradient_is_nan_at_nan_and_delta_at_inf() -> None:
    x = torch.tensor([math.nan, math.inf, -math.inf], dtype=torch.float32, requires_grad=True)
    loss = huber_loss(x, 2.0)
    assert math.isnan(loss[0].item())
    assert loss[1:].tolist() == [math.inf, math.inf]
    loss.sum().backward()
    assert x.grad is not None
    assert math.isnan(x.grad[0].item())
    assert x.grad[1:].tolist() == [2.0, -2.0]


def test_huber_loss_gradient_scales_with_the_upstream_gradient() -> None:
    x = torch.tensor([0.5, -3.0], requires_grad=True)
    (huber_loss(x) * torch.tensor([2.0, 3.0])).sum().backward()
    assert x.grad is not None
    assert x.grad.tolist() == [1.0, -3.0]
