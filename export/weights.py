"""A trained Q-network as one safetensors file that carries its own contract.

The file holds the network's tensors and, in the safetensors metadata, a :class:`PolicySpec`
as JSON: the environment, the observation's shape/dtype/bounds, the actions, the network's
architecture and how it was trained. Loading never unpickles anything.
"""

import json
import math
import os
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from dqnkit.core import ConvQNetwork, QNetwork
from dqnkit.export.contract import load_versioned_json
from dqnkit.export.files import atomic_write

__all__ = [
    "FORMAT_VERSION",
    "PolicySpec",
    "bounds_to_json",
    "load_weights",
    "network_config",
    "save_weights",
]

FORMAT_VERSION = 1
_METADATA_KEY = "dqnkit.policy"


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
      format_version: this file layout's version.
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
        data = load_versioned_json(text, key="format_version", version=FORMAT_VERSION)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        missing = sorted(
            f.name
            for f in fields(cls)
            if f.name not in data and f.default is MISSING and f.default_factory is MISSING
        )
        if unknown or missing:
            raise ValueError(f"policy metadata has unknown keys {unknown} / lacks {missing}")
        data["obs_shape"] = tuple(data["obs_shape"])
        return cls(**data)

    def build_network(self) -> nn.Module:
        """A freshly initialised network of this spec's architecture."""
        kind = self.network.get("kind")
        if kind == "mlp":
            return QNetwork(
                math.prod(self.obs_shape), self.n_actions, hidden=tuple(self.network["hidden"])
            )
        if kind == "conv":
            return ConvQNetwork(self.obs_shape, self.n_actions)
        raise ValueError(f"unknown network kind {kind!r} in policy metadata")


def bounds_to_json(values: Any) -> float | str | list[float | str]:
    """A space bound (scalar or array) as JSON: one number when uniform, non-finite as strings."""
    flat = [float(v) for v in torch.as_tensor(values, dtype=torch.float64).flatten().tolist()]

    def encode(v: float) -> float | str:
        return v if math.isfinite(v) else ("inf" if v > 0 else "-inf")

    if flat and all(v == flat[0] for v in flat):
        return encode(flat[0])
    return [encode(v) for v in flat]


def network_config(network: nn.Module) -> dict[str, Any]:
    """The ``PolicySpec.network`` entry that rebuilds ``network``."""
    if isinstance(network, QNetwork):
        return {"kind": "mlp", "hidden": list(network.hidden)}
    if isinstance(network, ConvQNetwork):
        return {"kind": "conv"}
    raise ValueError(f"cannot describe a {type(network).__name__}; use QNetwork or ConvQNetwork")


def save_weights(path: str | os.PathLike[str], network: nn.Module, spec: PolicySpec) -> None:
    """Writes ``network``'s state and ``spec`` to ``path`` atomically (safetensors)."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in network.state_dict().items()}
    metadata = {_METADATA_KEY: spec.to_json()}
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))


def load_weights(path: str | os.PathLike[str]) -> tuple[nn.Module, PolicySpec]:
    """Reads a file written by :func:`save_weights`: the network in eval mode, and its spec.

    Raises:
      ValueError: the file is missing, not a safetensors file, or not a dqnkit policy.
    """
    file = Path(path)
    if not file.is_file():
        raise ValueError(f"{file}: no such weights file")
    try:
        with safe_open(str(file), framework="pt") as f:
            text = (f.metadata() or {}).get(_METADATA_KEY)
            tensors = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118
    except (SafetensorError, OSError) as error:
        raise ValueError(f"{file}: not a readable safetensors file ({error})") from error
    if text is None:
        raise ValueError(f"{file}: a safetensors file without dqnkit policy metadata")
    spec = PolicySpec.from_json(text)
    network = spec.build_network()
    try:
        network.load_state_dict(tensors)
    except RuntimeError as error:
        raise ValueError(f"{file}: tensors do not match {spec.network}: {error}") from error
    return network.eval(), spec
