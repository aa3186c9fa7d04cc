"""epsilon_greedy and the epsilon schedules."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from dqnkit.core import epsilon_greedy, exponential_epsilon, linear_epsilon


def test_linear_epsilon_golden() -> None:
    assert linear_epsilon(0, 1.0, 0.1, 100) == 1.0
    assert linear_epsilon(50, 1.0, 0.1, 100) == pytest.approx(0.55)
    assert linear_epsilon(100, 1.0, 0.1, 100) == pytest.approx(0.1)
    assert linear_epsilon(10_000, 1.0, 0.1, 100) == pytest.approx(0.1)


def test_exponential_epsilon_golden() -> None:
    # The tutorial's EPS_START=0.9, EPS_END=0.05, EPS_DECAY=1000: 0.05 + 0.85 * e^-1 at step 1000.
    assert exponential_epsilon(0, 0.9, 0.05, 1000) == pytest.approx(0.9)
    assert exponential_epsilon(1000, 0.9, 0.05, 1000) == pytest.approx(0.05 + 0.85 / math.e)


@pytest.mark.parametrize(
    ("args", "match"),
    [((-1, 1.0, 0.1, 10), "step"), ((0, 1.5, 0.1, 10), "start"), ((0, 1.0, 0.1, 0), "duration")],
)
def test_linear_epsilon_rejects_bad_arguments(args, match):
    with pytest.raises(ValueError, match=match):
        linear_epsilon(*args)


unit = st.floats(0.0, 1.0)


@given(st.integers(0, 10_000), st.integers(0, 10_000), unit, unit, st.integers(1, 5_000))
def test_linear_epsilon_is_monotone_and_bounded(t1, t2, start, end, duration):
    a, b = sorted((t1, t2))
    ea, eb = linear_epsilon(a, start, end, duration), linear_epsilon(b, start, end, duration)
    lo, hi = min(start, end), max(start, end)
    assert lo - 1e-12 <= ea <= hi + 1e-12
    assert lo - 1e-12 <= eb <= hi + 1e-12
    assert (eb <= ea + 1e-12) if start >= end else (eb >= ea - 1e-12)


@given(st.integers(0, 100_000), st.integers(0, 100_000), unit, unit, st.floats(1.0, 1e4))
def test_exponential_epsilon_is_monotone_and_bounded(t1, t2, start, end, decay):
    a, b = sorted((t1, t2))
    ea, eb = exponential_epsilon(a, start, end, decay), exponential_epsilon(b, start, end, decay)
    lo, hi = min(start, end), max(start, end)
    assert lo - 1e-12 <= ea <= hi + 1e-12
    assert lo - 1e-12 <= eb <= hi + 1e-12
    assert (eb <= ea + 1e-12) if start >= end else (eb >= ea - 1e-12)


q_rows = st.lists(
    st.lists(st.floats(-10, 10, allow_nan=False, width=32), min_size=3, max_size=3),
    min_size=1,
    max_size=10,
)


@given(q_rows, st.integers(0, 2**32 - 1))
def test_epsilon_zero_is_the_argmax(rows, seed):
    q = torch.tensor(rows)
    actions = epsilon_greedy(q, 0.0, torch.Generator().manual_seed(seed))
    assert actions.dtype == torch.int64
    assert torch.equal(actions, q.argmax(dim=1))


@given(st.integers(1, 6), st.integers(0, 2**32 - 1))
def test_epsilon_one_covers_every_action(n_actions, seed):
    q = torch.zeros(500, n_actions)
    q[:, 0] = 1.0  # the greedy action would always be 0
    actions = epsilon_greedy(q, 1.0, torch.Generator().manual_seed(seed))
    assert set(actions.tolist()) == set(range(n_actions))


def test_epsilon_greedy_explores_at_the_given_rate() -> None:
    q = torch.zeros(20_000, 4)
    q[:, 2] = 1.0
    actions = epsilon_greedy(q, 0.4, torch.Generator().manual_seed(3))
    # P(non-greedy) = 0.4 * 3/4 = 0.3; 5 standard deviations of the mean is about 0.016.
    assert abs((actions != 2).float().mean().item() - 0.3) < 0.016


def test_epsilon_greedy_is_reproducible_and_uses_only_the_generator() -> None:
    q = torch.randn(64, 3, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(123)
    a = epsilon_greedy(q, 0.5, torch.Generator().manual_seed(9))
    torch.manual_seed(456)
    b = epsilon_greedy(q, 0.5, torch.Generator().manual_seed(9))
    assert torch.equal(a, b)


def test_epsilon_greedy_rejects_bad_input() -> None:
    g = torch.Generator()
    with pytest.raises(ValueError, match="rank 2"):
        epsilon_greedy(torch.zeros(3), 0.1, g)
    with pytest.raises(ValueError, match="epsilon"):
        epsilon_greedy(torch.zeros(1, 3), 1.5, g)


def test_epsilon_greedy_rejects_q_values_without_actions() -> None:
    with pytest.raises(ValueError, match="at least one action"):
        epsilon_greedy(torch.zeros(3, 0), 0.5, torch.Generator().manual_seed(0))


@pytest.mark.parametrize("decay", [0.0, -1.0, -1e-9])
def test_exponential_epsilon_rejects_a_non_positive_decay(decay):
    with pytest.raises(ValueError, match="decay must be positive"):
        exponential_epsilon(10, 1.0, 0.1, decay)
