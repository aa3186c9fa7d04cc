"""The contract a trained policy carries, readable without torch.

:class:`PolicySpec` is the one record of the contract's fields; a weights file holds it as
JSON (:mod:`dqnkit.export.weights`), and every exported artifact holds it too, with a few
artifact keys beside it, as one JSON object (no Infinity/NaN, so JSON.parse in JavaScript
reads it):

- ONNX: ``metadata_props`` key ``"dqnkit"``;
- TorchScript (.pt) and torch.export (.pt2): the extra file ``"dqnkit.json"``.

An artifact's keys are the :class:`PolicySpec` fields (``env_id``, ``obs_shape``,
``obs_dtype``, ``obs_low``, ``obs_high``, ``n_actions``, ``action_meanings``, ``train_steps``,
``eval_return``, ``network``, ``preprocessing``, ``format_version``) at the top level, plus
``artifact_version``, ``dqnkit_version``, ``input`` (the input's name), ``outputs`` (the
outputs' names) and ``parity`` (the export-time check of this artifact, or null).

Reading either is reading a file someone may have sent: every field is type- and
range-checked before anything is allocated from it (an ``obs_shape`` of ``[1e5, 1e5]`` is
refused, not turned into an 80 GB bounds array).
"""

import json
import math
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from torch import nn

__all__ = [
    "ARTIFACT_VERSION",
    "EXTRA_FILE",
    "FORMAT_VERSION",
    "MAX_OBS_ELEMENTS",
    "ONNX_METADATA_KEY",
    "PolicyMetadata",
    "PolicySpec",
    "decode_bounds",
    "load_versioned_json",
]

FORMAT_VERSION = 1
ARTIFACT_VERSION = 1
ONNX_METADATA_KEY = "dqnkit"
EXTRA_FILE = "dqnkit.json"

SUPPORTED_DTYPES = ("float32", "float64", "uint8")
# Limits on what a contract may ask for, far above any real policy (an Atari stack of four
# 84x84 frames is 28,224 numbers) and far below what would exhaust memory.
MAX_OBS_ELEMENTS = 1 << 24
MAX_OBS_RANK = 4
MAX_ACTIONS = 1 << 16


@dataclass(frozen=True)
class PolicySpec:
    """The contract of a trained policy: what it takes, what it returns, how it was made.

    Attributes:
      env_id: the Gymnasium id it was trained on.
      obs_shape: one observation's shape, as the network takes it (after any preprocessing).
      obs_dtype: that observation's numpy dtype name, e.g. ``"float32"`` or ``"uint8"``.
      n_actions: the number of discrete actions; the policy returns an index below it.
      network: the architecture, ``{"kind": "mlp", "hidden": [...]}`` or ``{"kind": "conv"}``.
      obs_low: the observation space's lower bound, one number when uniform, else a flat list;
        non-finite bounds are the strings ``"inf"`` / ``"-inf"`` (JSON has no infinity).
      obs_high: the upper bound, like ``obs_low``.
      action_meanings: a name per action when the environment names them.
      train_steps: environment steps of training.
      eval_return: the mean greedy return of the final evaluation, when there was one.
      preprocessing: how observations are made from the environment's (pixels), or None.
      format_version: this record's layout version.
    """

    env_id: str
    obs_shape: tuple[int, ...]
    obs_dtype: str
    n_actions: int
    network: dict[str, Any]
    obs_low: float | str | list[float | str] | None = None
    obs_high: float | str | list[float | str] | None = None
    action_meanings: list[str] | None = None
    train_steps: int = 0
    eval_return: float | None = None
    preprocessing: dict[str, Any] | None = None
    format_version: int = field(default=FORMAT_VERSION)

    def to_json(self) -> str:
        return json.dumps(asdict(self), allow_nan=False, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "PolicySpec":
        """Parses and checks a weights file's JSON; ValueError naming the first bad field."""
        data = load_versioned_json(text, key="format_version", version=FORMAT_VERSION)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"policy metadata has unknown keys {unknown}")
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PolicySpec":
        """The spec from a JSON object's contract fields (other keys are ignored), checked."""
        missing = sorted(
            f.name
            for f in fields(cls)
            if f.name not in data and f.default is MISSING and f.default_factory is MISSING
        )
        if missing:
            raise ValueError(f"policy metadata lacks {missing}")
        values = {f.name: data[f.name] for f in fields(cls) if f.name in data}
        _check_fields(values)
        values["obs_shape"] = tuple(values["obs_shape"])
        return cls(**values)

    def build_network(self) -> "nn.Module":
        """A freshly initialised network of this spec's architecture (needs torch)."""
        from dqnkit.export.weights import build_network

        return build_network(self)


@dataclass(frozen=True)
class PolicyMetadata:
    """An artifact's contract, read back: its :class:`PolicySpec` and the artifact's own keys.

    Attributes:
      spec: the contract's fields (``env_id``, ``obs_shape``, ... are also properties here).
      obs_low: the lower bound, ``obs_shape`` float64 (``-inf`` where unbounded), or None.
      obs_high: the upper bound, like ``obs_low``.
      parity: the export-time parity figures of this artifact, or None.
      dqnkit_version: the dqnkit that exported it.
      artifact_version: the version of this metadata layout.
      raw: the whole JSON object, for keys not listed here.
    """

    spec: PolicySpec
    obs_low: np.ndarray | None
    obs_high: np.ndarray | None
    parity: dict[str, Any] | None
    dqnkit_version: str
    artifact_version: int
    raw: dict[str, Any]

    @property
    def env_id(self) -> str:
        return self.spec.env_id

    @property
    def obs_shape(self) -> tuple[int, ...]:
        return self.spec.obs_shape

    @property
    def obs_dtype(self) -> str:
        return self.spec.obs_dtype

    @property
    def n_actions(self) -> int:
        return self.spec.n_actions

    @property
    def action_meanings(self) -> list[str] | None:
        return self.spec.action_meanings

    @property
    def train_steps(self) -> int:
        return self.spec.train_steps

    @property
    def eval_return(self) -> float | None:
        return self.spec.eval_return

    @property
    def preprocessing(self) -> dict[str, Any] | None:
        return self.spec.preprocessing

    @classmethod
    def from_json(cls, text: str) -> "PolicyMetadata":
        """Parses and checks the JSON an artifact carries.

        Raises:
          ValueError: not JSON, a version this dqnkit cannot read, or a missing/invalid key.
        """
        data = load_versioned_json(text, key="artifact_version", version=ARTIFACT_VERSION)
        spec = PolicySpec.from_dict(data)
        parity = data.get("parity")
        if parity is not None and not isinstance(parity, dict):
            raise ValueError(f"dqnkit metadata parity is {type(parity).__name__}, not an object")
        outputs = data.get("outputs", ["q_values", "action"])
        if not (
            isinstance(outputs, list)
            and len(outputs) == 2
            and all(isinstance(o, str) for o in outputs)
        ):
            raise ValueError(f"dqnkit metadata outputs {outputs!r} are not two names")
        return cls(
            spec=spec,
            obs_low=decode_bounds(spec.obs_low, spec.obs_shape),
            obs_high=decode_bounds(spec.obs_high, spec.obs_shape),
            parity=parity,
            dqnkit_version=str(data.get("dqnkit_version", "unknown")),
            artifact_version=ARTIFACT_VERSION,
            raw=data,
        )


def _check_fields(values: dict[str, Any]) -> None:
    """Type and range checks of a spec's fields, before anything is built from them."""

    def bad(name: str, why: str) -> ValueError:
        return ValueError(f"policy metadata {name} {values.get(name)!r:.80} {why}")

    def is_int(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    env_id = values["env_id"]
    if not isinstance(env_id, str) or not env_id or len(env_id) > 200:
        raise bad("env_id", "is not an environment id")
    shape = values["obs_shape"]
    if not isinstance(shape, list | tuple) or not all(is_int(d) and d > 0 for d in shape):
        raise bad("obs_shape", "is not a list of positive integers")
    if not 1 <= len(shape) <= MAX_OBS_RANK or math.prod(shape) > MAX_OBS_ELEMENTS:
        raise bad(
            "obs_shape", f"has rank 1 to {MAX_OBS_RANK} and at most {MAX_OBS_ELEMENTS} elements"
        )
    if values["obs_dtype"] not in SUPPORTED_DTYPES:
        raise bad("obs_dtype", f"is not one of {SUPPORTED_DTYPES}")
    n_actions = values["n_actions"]
    if not is_int(n_actions) or not 1 <= n_actions <= MAX_ACTIONS:
        raise bad("n_actions", f"is not an integer in [1, {MAX_ACTIONS}]")
    if not isinstance(values["network"], dict):
        raise bad("network", "is not an object")
    for name in ("obs_low", "obs_high"):
        decode_bounds(values.get(name), tuple(shape))  # raises on a malformed bound
    meanings = values.get("action_meanings")
    if meanings is not None and not (
        isinstance(meanings, list)
        and len(meanings) == n_actions
        and all(isinstance(m, str) for m in meanings)
    ):
        raise bad("action_meanings", f"is not a list of {n_actions} names")
    steps = values.get("train_steps", 0)
    if not is_int(steps) or steps < 0:
        raise bad("train_steps", "is not a non-negative integer")
    eval_return = values.get("eval_return")
    if eval_return is not None and not (
        isinstance(eval_return, int | float)
        and not isinstance(eval_return, bool)
        and math.isfinite(eval_return)
    ):
        raise bad("eval_return", "is not a finite number")
    preprocessing = values.get("preprocessing")
    if preprocessing is not None and not isinstance(preprocessing, dict):
        raise bad("preprocessing", "is not an object")


def load_versioned_json(text: str, *, key: str, version: int) -> dict[str, Any]:
    """A JSON object whose ``key`` must equal ``version``; ValueError otherwise."""
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, TypeError) as error:
        raise ValueError(f"dqnkit metadata is not JSON: {error}") from error
    except RecursionError:  # nesting deeper than the parser's stack
        raise ValueError("dqnkit metadata is not JSON: nested too deeply") from None
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
    items = value if isinstance(value, list) else [value]
    size = math.prod(shape)
    if len(items) not in (1, size):
        raise ValueError(f"a bound has {len(items)} numbers for an observation of shape {shape}")
    flat = [_bound_number(v) for v in items]
    if len(flat) == 1:
        return np.full(shape, flat[0], dtype=np.float64)
    return np.asarray(flat, dtype=np.float64).reshape(shape)


def _bound_number(v: Any) -> float:
    if isinstance(v, int | float) and not isinstance(v, bool):
        number = float(v)
        if not math.isnan(number):
            return number
    elif v in ("inf", "-inf"):
        return float(v)
    raise ValueError(f"a bound value {v!r:.40} is not a number, 'inf' or '-inf'")
