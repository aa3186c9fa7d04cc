"""n_step_return: golden values by hand, and properties against a plain loop."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from dqnkit.core import n_step_return, td_target


def test_n_step_return_golden() -> None:
    reward = torch.tensor([[1.0, 2.0, 4.0], [1.0, 2.0, 4.0], [1.0, 2.0, 4.0], [3.0, 5.0, 7.0]])
    terminated = torch.tensor(
        [[False, False, False], [False, True, False], [False, False, False], [True, True, True]]
    )
    mask = torch.tensor(
        [[True, True, True], [True, True, True], [True, True, False], [True, True, True]]
    )
    returns, discount = n_step_return(reward, terminated, 0.5, mask)
    # full window: 1 + 0.5*2 + 0.25*4 = 3, bootstrap 0.5^3
    # terminated at step 1: 1 + 0.5*2 = 2 (the 4 after the end is not summed), no bootstrap
    # cut short after 2 steps (truncation): 1 + 0.5*2 = 2, bootstrap 0.5^2
    # terminated at step 0: 3, no bootstrap
    assert returns.tolist() == [3.0, 2.0, 2.0, 3.0]
    assert discount.tolist() == [0.125, 0.0, 0.25, 0.0]


def test_n_step_return_with_one_step_is_td_targets_pieces() -> None:
    reward = torch.tensor([[1.5], [-2.0]])
    terminated = torch.tensor([[False], [True]])
    returns, discount = n_step_return(reward, terminated, 0.9)
    assert returns.tolist() == [1.5, -2.0]
    assert discount.tolist() == [pytest.approx(0.9), 0.0]
    next_q = torch.tensor([[1.0, 3.0], [5.0, 7.0]])
    one_step = td_target(reward[:, 0], terminated[:, 0], next_q, 0.9)
    via_n_step = td_target(returns, discount == 0, next_q, gamma=discount)
    torch.testing.assert_close(via_n_step, one_step)


def test_n_step_return_never_sums_nan_past_the_end() -> None:
    reward = torch.tensor([[1.0, 1.0, math.nan], [1.0, math.nan, math.nan]])
    terminated = torch.tensor([[False, True, False], [False, False, False]])
    mask = torch.tensor([[True, True, True], [True, False, False]])
    returns, discount = n_step_return(reward, terminated, 0.5, mask)
    assert returns.tolist() == [1.5, 1.0]
    assert discount.tolist() == [0.0, 0.5]


def test_n_step_return_rejects_bad_input() -> None:
    r, t = torch.zeros(2, 3), torch.zeros(2, 3, dtype=torch.bool)
    with pytest.raises(ValueError, match="rank 2"):
        n_step_return(torch.zeros(3), t, 0.9)
    with pytest.raises(ValueError, match=r"terminated must be a bool.*\(2, 3\).*\(2, 2\)"):
        n_step_return(r, torch.zeros(2, 2, dtype=torch.bool), 0.9)
    with pytest.raises(ValueError, match="gamma"):
        n_step_return(r, t, 1.5)
    with pytest.raises(ValueError, match="prefix"):
        n_step_return(r, t, 0.9, torch.tensor([[True, False, True], [True, True, True]]))
    with pytest.raises(ValueError, match="prefix"):
        n_step_return(r, t, 0.9, torch.tensor([[False, False, False], [True, True, True]]))
    with pytest.raises(ValueError, match="mask must be a bool"):
        n_step_return(r, t, 0.9, torch.ones(2, 3))
    with pytest.raises(ValueError, match="at least one step"):
        n_step_return(torch.zeros(2, 0), torch.zeros(2, 0, dtype=torch.bool), 0.9)


def reference(rewards, terminals, length, gamma):
    """A plain loop over one window: its return, discount and real length m."""
    total, m = 0.0, 0
    for k in range(length):
        total += gamma**k * rewards[k]
        m = k + 1
        if terminals[k]:
            return total, 0.0, m
    return total, gamma**m, m


@st.composite
def windows(draw):
    batch, n = draw(st.integers(1, 6)), draw(st.integers(1, 8))
    reward_value = st.floats(-100, 100, allow_nan=False, width=32)
    rows = []
    for _ in range(batch):
        length = draw(st.integers(1, n))
        rewards = draw(st.lists(reward_value, min_size=n, max_size=n))
        # A termination at any position, or none; sometimes more than one.
        terminals = draw(st.lists(st.booleans(), min_size=n, max_size=n))
        if draw(st.booleans()):
            terminals = [False] * n
        rows.append((rewards, terminals, length))
    return rows, n, draw(st.floats(0.0, 1.0))


@given(windows())
def test_n_step_return_equals_a_plain_loop(case):
    rows, n, gamma = case
    reward = torch.tensor([r for r, _, _ in rows], dtype=torch.float64)
    terminated = torch.tensor([t for _, t, _ in rows])
    mask = torch.tensor([[k < length for k in range(n)] for _, _, length in rows])
    returns, discount = n_step_return(reward, terminated, gamma, mask)
    for b, (rewards, terminals, length) in enumerate(rows):
        total, bootstrap, _ = reference(rewards, terminals, length, gamma)
        assert returns[b].item() == pytest.approx(total, rel=1e-9, abs=1e-9)
        assert discount[b].item() == pytest.approx(bootstrap, rel=1e-12, abs=0)


@given(windows(), st.sampled_from([math.nan, math.inf, 1e30]))
def test_n_step_return_never_sums_past_a_terminated_step(case, poison):
    rows, n, gamma = case
    reward = torch.tensor([r for r, _, _ in rows], dtype=torch.float64)
    terminated = torch.tensor([t for _, t, _ in rows])
    mask = torch.tensor([[k < length for k in range(n)] for _, _, length in rows])
    # Poison every reward after the first terminated step and after the window's end.
    dead = mask.logical_not() | ((terminated & mask).cumsum(1) - (terminated & mask).int() > 0)
    poisoned = torch.where(dead, torch.full_like(reward, poison), reward)
    returns, discount = n_step_return(poisoned, terminated, gamma, mask)
    clean, clean_discount = n_step_return(reward, terminated, gamma, mask)
    assert torch.equal(returns, clean)
    assert torch.equal(discount, clean_discount)
    assert torch.isfinite(returns).all()


@given(windows())
def test_a_truncated_window_bootstraps_with_gamma_to_its_real_length(case):
    rows, n, gamma = case
    # No termination anywhere: every window bootstraps, with gamma ** (its length).
    reward = torch.tensor([r for r, _, _ in rows], dtype=torch.float64)
    terminated = torch.zeros(reward.shape, dtype=torch.bool)
    lengths = [length for _, _, length in rows]
    mask = torch.tensor([[k < length for k in range(n)] for length in lengths])
    _, discount = n_step_return(reward, terminated, gamma, mask)
    assert discount.tolist() == [pytest.approx(gamma**length, rel=1e-12) for length in lengths]
