"""The contract an exported artifact carries, readable without torch.

Every artifact holds one JSON object (no Infinity/NaN, so JSON.parse in JavaScript reads it):

- ONNX: ``metadata_props`` key ``"dqnkit"``;
- TorchScript (.pt) and torch.export (.pt2): the extra file ``"dqnkit.json"``.

Its keys are the :class:`~dqnkit.export.weights.PolicySpec` fields (``env_id``, ``obs_shape``,
``obs_dtype``, ``obs_low``, ``obs_high``, ``n_actions``, ``action_meanings``, ``train_steps``,
``eval_return``, ``network``, ``preprocessing``, ``format_version``) at the top level, plus
``artifact_version``, ``dqnkit_version``, ``input`` (the input's name), ``outputs`` (the
outputs' names) and ``parity`` (the export-time check of this artifact, or null).
"""

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "ARTIFACT_VERSION",
    "EXTRA_FILE",
    "ONNX_METADATA_KEY",
    "PolicyMetadata",
    "decode_bounds",
    "load_versioned_json",
]

ARTIFACT_VERSION = 1
ONNX_METADATA_KEY = "dqnkit"
EXTRA_FILE = "dqnkit.json"

_SUPPORTED_DTYPES = ("float32", "float64", "uint8")


@dataclass(frozen=True)
class PolicyMetadata:
    """An artifact's contract, read back.

    Attributes:
      env_id: the Gymnasium id the policy was trained on.
      obs_shape: one observation's shape; the artifact takes ``[B, *obs_shape]``.
      obs_dtype: the numpy dtype name the artifact's input has.
      n_actions: the number of discrete actions.
      obs_low: the lower bound, ``obs_shape`` float64 (``-inf`` where unbounded), or None.
      obs_high: the upper bound, like ``obs_low``.
      action_meanings: a name per action, or None.
      train_steps: environment steps of training.
      eval_return: the mean greedy return of the final evaluation, or None.
      parity: the export-time parity figures of this artifact, or None.
      preprocessing: how observations are made from the environment's (pixels), or None.
      dqnkit_version: the dqnkit that exported it.
      artifact_version: the version of this metadata layout.
      raw: the whole JSON object, for keys not listed here.
    """

    env_id: str
    obs_shape: tuple[int, ...]
    obs_dtype: str
    n_actions: int
    obs_low: np.ndarray | None
    obs_high: np.ndarray | None
    action_meanings: list[str] | None
    train_steps: int
    eval_return: float | None
    parity: dict[str, Any] | None
    preprocessing: dict[str, Any] | None
    dqnkit_version: str
    artifact_version: int
    raw: dict[str, Any]

    @classmethod
    def from_json(cls, text: str) -> "PolicyMetadata":
        """Parses and checks the JSON an artifact carries.

        Raises:
          ValueError: not JSON, a version this dqnkit cannot read, or a missing/invalid key.
        """
        data = load_versioned_json(text, key="artifact_version", version=ARTIFACT_VERSION)
        try:
            shape = tuple(int(d) for d in data["obs_shape"])
            dtype = str(data["obs_dtype"])
            n_actions = int(data["n_actions"])
            env_id = str(data["env_id"])
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"dqnkit metadata lacks a valid {error}") from error
        if dtype not in _SUPPORTED_DTYPES:
            raise ValueError(f"observation dtype {dtype!r} is not one of {_SUPPORTED_DTYPES}")
        meanings = data.get("action_meanings")
        return cls(
            env_id=env_id,
            obs_shape=shape,
            obs_dtype=dtype,
            n_actions=n_actions,
            obs_low=decode_bounds(data.get("obs_low"), shape),
            obs_high=decode_bounds(data.get("obs_high"), shape),
            action_meanings=[str(m) for m in meanings] if meanings is not None else None,
            train_steps=int(data.get("train_steps", 0)),
            eval_return=None if data.get("eval_return") is None else float(data["eval_return"]),
            parity=data.get("parity"),
            preprocessing=data.get("preprocessing"),
            dqnkit_version=str(data.get("dqnkit_version", "unknown")),
            artifact_version=ARTIFACT_VERSION,
            raw=data,
        )


def load_versioned_json(text: str, *, key: str, version: int) -> dict[str, Any]:
    """A JSON object whose ``key`` must equal ``version``; ValueError otherwise."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"dqnkit metadata is not JSON: {error}") from error
    if not isinstance(data, dict):
        raise ValueError("dqnkit metadata is not a JSON object")
    if data.get(key) != version:
        raise ValueError(
            f"dqnkit metadata {key} {data.get(key)!r} is not supported (this dqnkit reads "
            f"{version})"
        )
    return data


def decode_bounds(value: Any, shape: tuple[int, ...]) -> np.ndarray | None:
    """A JSON bound (one number, or a flat list; ``"inf"``/``"-inf"`` strings) as an array.

    Args:
      value: the bound as :func:`~dqnkit.export.weights.bounds_to_json` wrote it, or None.
      shape: one observation's shape.

    Returns:
      ``shape`` float64, or None when ``value`` is None.
    """
    if value is None:
        return None
    flat = [float(v) for v in (value if isinstance(value, list) else [value])]
    size = math.prod(shape)
    if len(flat) == 1:
        return np.full(shape, flat[0], dtype=np.float64)
    if len(flat) != size:
        raise ValueError(f"a bound has {len(flat)} numbers for an observation of shape {shape}")
    return np.asarray(flat, dtype=np.float64).reshape(shape)
