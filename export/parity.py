"""Checking an artifact against the PyTorch network it was made from.

An artifact passes when, on every observation set and every batch size, the largest
``|q_artifact - q_torch|`` is within ``atol + rtol * |q_torch|`` elementwise and every greedy
action is identical. The figures are kept either way; :class:`ParityError` carries them.
"""

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch

from dqnkit.export.artifacts import Format, Runner
from dqnkit.export.contract import decode_bounds
from dqnkit.export.graph import PolicyGraph
from dqnkit.export.weights import PolicySpec

__all__ = [
    "SAMPLE_LIMIT",
    "Check",
    "ParityError",
    "check_runner",
    "sample_observations",
]

# Observation bounds beyond +-SAMPLE_LIMIT (CartPole's velocities are +-inf, many envs use
# +-3.4e38) are clipped to it for sampling: values of 1e38 make every Q-value overflow, and
# +-10 covers the range a vector observation normally takes (CartPole's velocities stay
# within +-4 in practice). Real-episode observations cover the states the policy visits.
SAMPLE_LIMIT = 10.0


@dataclass(frozen=True)
class Check:
    """One comparison: an observation set at one batch size.

    Attributes:
      observations: the set's name (``"sampled"``, ``"episodes"``...).
      batch_size: the batch size the set was run at (the last batch wraps round to fill it).
      count: the number of observations compared.
      max_abs_dq: the largest ``|q_artifact - q_torch|``.
      max_allowed_excess: the largest ``|dq| - (atol + rtol * |q_torch|)`` (> 0 fails).
      action_mismatches: observations whose greedy actions differ.
      non_finite: observations on which either side gave a NaN or infinite Q-value (all
        observations compared are finite, so any is a broken policy or a broken artifact).
      ok: every Q-value finite, within tolerance, and no mismatch.
    """

    observations: str
    batch_size: int
    count: int
    max_abs_dq: float
    max_allowed_excess: float
    action_mismatches: int
    non_finite: int
    ok: bool


class ParityError(ValueError):
    """An artifact disagrees with PyTorch; ``checks`` holds every format's figures."""

    def __init__(self, message: str, checks: Mapping[Format, Sequence[Check]]) -> None:
        super().__init__(message)
        self.checks = {fmt: [asdict(c) for c in cs] for fmt, cs in checks.items()}


def sample_observations(spec: PolicySpec, count: int, *, seed: int) -> np.ndarray:
    """Observations drawn uniformly within the spec's bounds, clipped to ``+-SAMPLE_LIMIT``.

    Integer dtypes (uint8 frames) draw integers in ``[low, high]``; missing bounds mean the
    dtype's range for integers and ``+-SAMPLE_LIMIT`` for floats.

    Args:
      spec: the policy's contract.
      count: how many observations.
      seed: the seed of the numpy generator used.

    Returns:
      ``[count, *obs_shape]`` in ``spec.obs_dtype``.
    """
    rng = np.random.default_rng(seed)
    dtype = np.dtype(spec.obs_dtype)
    shape = (count, *spec.obs_shape)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        low = decode_bounds(spec.obs_low, spec.obs_shape)
        high = decode_bounds(spec.obs_high, spec.obs_shape)
        lo = np.full(spec.obs_shape, info.min) if low is None else np.clip(low, info.min, None)
        hi = np.full(spec.obs_shape, info.max) if high is None else np.clip(high, None, info.max)
        return rng.integers(
            lo.astype(np.int64), hi.astype(np.int64), size=shape, endpoint=True
        ).astype(dtype)
    low = decode_bounds(spec.obs_low, spec.obs_shape)
    high = decode_bounds(spec.obs_high, spec.obs_shape)
    lo = (
        np.full(spec.obs_shape, -SAMPLE_LIMIT)
        if low is None
        else np.clip(low, -SAMPLE_LIMIT, SAMPLE_LIMIT)
    )
    hi = (
        np.full(spec.obs_shape, SAMPLE_LIMIT)
        if high is None
        else np.clip(high, -SAMPLE_LIMIT, SAMPLE_LIMIT)
    )
    return rng.uniform(lo, hi, size=shape).astype(dtype)


def check_runner(
    run: Runner,
    graph: PolicyGraph,
    observation_sets: Mapping[str, np.ndarray],
    *,
    batch_sizes: Sequence[int],
    atol: float,
    rtol: float,
) -> list[Check]:
    """Compares ``run`` with ``graph`` (eager PyTorch) batch by batch.

    Args:
      run: the artifact, as :func:`dqnkit.export.artifacts.runner` loads it.
      graph: the reference.
      observation_sets: name -> ``[N, *obs_shape]`` observations in the policy's dtype.
      batch_sizes: each set is cut into batches of each of these sizes.
      atol: absolute tolerance on the Q-values.
      rtol: relative tolerance on the Q-values (relative to PyTorch's).

    Returns:
      one :class:`Check` per (set, batch size), in that order.
    """
    checks = []
    for name, observations in observation_sets.items():
        n = len(observations)
        for batch_size in batch_sizes:
            max_dq, max_excess, mismatches, non_finite, count = 0.0, -np.inf, 0, 0, 0
            for start in range(0, n, batch_size):
                rows = np.arange(start, start + batch_size) % n  # the last batch wraps round
                batch = np.ascontiguousarray(observations[rows])
                with torch.inference_mode():
                    q_ref, a_ref = (t.numpy() for t in graph(torch.from_numpy(batch)))
                q, action = run(batch)
                if q.shape != q_ref.shape or action.shape != a_ref.shape:
                    raise ParityError(
                        f"artifact returned shapes {q.shape}, {action.shape} for a batch of "
                        f"{batch_size}; PyTorch returns {q_ref.shape}, {a_ref.shape}",
                        {},
                    )
                # NaN hides from max() and from comparisons (NaN > tol is False): count the
                # non-finite rows first, and make every non-finite figure +inf, never NaN.
                finite = np.isfinite(q).all(axis=1) & np.isfinite(q_ref).all(axis=1)
                non_finite += int(np.count_nonzero(~finite))
                dq = np.abs(q.astype(np.float64) - q_ref.astype(np.float64))
                dq = np.where(np.isfinite(dq), dq, np.inf)
                max_dq = max(max_dq, float(dq.max(initial=0.0)))
                excess = dq - (atol + rtol * np.abs(q_ref.astype(np.float64)))
                excess = np.where(np.isfinite(excess), excess, np.inf)
                max_excess = max(max_excess, float(excess.max(initial=-np.inf)))
                mismatches += int(np.count_nonzero(action != a_ref))
                count += len(batch)
            checks.append(
                Check(
                    observations=name,
                    batch_size=batch_size,
                    count=count,
                    max_abs_dq=max_dq,
                    max_allowed_excess=max_excess,
                    action_mismatches=mismatches,
                    non_finite=non_finite,
                    ok=non_finite == 0 and max_excess <= 0.0 and mismatches == 0,
                )
            )
    return checks
