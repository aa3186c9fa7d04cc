"""A trained Q-network as one safetensors file that carries its own contract.

The file holds the network's tensors and, in the safetensors metadata, a :class:`PolicySpec`
as JSON: the environment, the observation's shape/dtype/bounds, the actions, the network's
architecture and how it was trained. Loading never unpickles anything, and allocates nothing
the file does not hold: the architecture the metadata names is built on the meta device and
its tensor shapes compared with the file's before a real network is made.
"""

import math
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from dqnkit.core import ConvQNetwork, NatureQNetwork, QNetwork
from dqnkit.export.contract import FORMAT_VERSION, PolicySpec
from dqnkit.export.files import atomic_write

__all__ = [
    "FORMAT_VERSION",
    "PolicySpec",
    "bounds_to_json",
    "build_network",
    "load_weights",
    "network_config",
    "save_weights",
]

_METADATA_KEY = "dqnkit.policy"


def bounds_to_json(values: Any) -> float | str | list[float | str]:
    """A space bound (scalar or array) as JSON: one number when uniform, non-finite as strings."""
    flat = [float(v) for v in torch.as_tensor(values, dtype=torch.float64).flatten().tolist()]

    def encode(v: float) -> float | str:
        return v if math.isfinite(v) else ("inf" if v > 0 else "-inf")

    if flat and all(v == flat[0] for v in flat):
        return encode(flat[0])
    return [encode(v) for v in flat]


def network_config(network: nn.Module) -> dict[str, Any]:
    """The ``PolicySpec.network`` entry that rebuilds ``network``.

    ``{"kind": "mlp", "hidden": [...]}``, ``{"kind": "conv"}`` (the tutorial's CNN) or
    ``{"kind": "nature"}`` (the Nature DQN CNN), each with ``"dueling": true`` for a dueling
    head (a file without the key is a plain head).
    """
    dueling = {"dueling": True} if getattr(network, "dueling", False) else {}
    if isinstance(network, QNetwork):
        return {"kind": "mlp", "hidden": list(network.hidden), **dueling}
    if isinstance(network, ConvQNetwork):
        return {"kind": "conv", **dueling}
    if isinstance(network, NatureQNetwork):
        return {"kind": "nature", **dueling}
    raise ValueError(
        f"cannot describe a {type(network).__name__}; use QNetwork, ConvQNetwork or NatureQNetwork"
    )


def build_network(spec: PolicySpec) -> nn.Module:
    """A freshly initialised network of ``spec``'s architecture; ValueError if it names none.

    Under ``with torch.device("meta")`` nothing is allocated, which :func:`load_weights` uses
    to check a file's tensor shapes before building the real network.
    """
    config = spec.network
    kind = config.get("kind")
    dueling = config.get("dueling", False)
    if not isinstance(dueling, bool):
        raise ValueError(f"policy metadata network dueling {dueling!r:.40} is not true or false")
    if kind == "mlp":
        hidden = config.get("hidden")
        if not (
            isinstance(hidden, list)
            and hidden
            and all(isinstance(w, int) and not isinstance(w, bool) and w > 0 for w in hidden)
        ):
            raise ValueError(f"policy metadata network hidden {hidden!r:.80} is not widths")
        return QNetwork(
            math.prod(spec.obs_shape), spec.n_actions, hidden=tuple(hidden), dueling=dueling
        )
    if kind in ("conv", "nature"):
        if len(spec.obs_shape) != 3:
            raise ValueError(f"a {kind} network needs [C, H, W] observations, not {spec.obs_shape}")
        cls = ConvQNetwork if kind == "conv" else NatureQNetwork
        return cls(spec.obs_shape, spec.n_actions, dueling=dueling)
    raise ValueError(f"unknown network kind {kind!r:.40} in policy metadata")


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
            if text is None:
                raise ValueError(f"{file}: a safetensors file without dqnkit policy metadata")
            spec = _spec_from(file, text)
            shapes = {name: tuple(f.get_slice(name).get_shape()) for name in f.keys()}  # noqa: SIM118
            _check_shapes(file, spec, shapes)
            tensors = {name: f.get_tensor(name) for name in shapes}
    except (SafetensorError, OSError) as error:
        raise ValueError(f"{file}: not a readable safetensors file ({error})") from error
    network = spec.build_network()
    try:
        network.load_state_dict(tensors)
    except RuntimeError as error:
        raise ValueError(f"{file}: tensors do not match {spec.network}: {error}") from error
    return network.eval(), spec


def _spec_from(file: Path, text: str) -> PolicySpec:
    try:
        return PolicySpec.from_json(text)
    except ValueError as error:
        raise ValueError(f"{file}: {error}") from error


def _check_shapes(file: Path, spec: PolicySpec, shapes: dict[str, tuple[int, ...]]) -> None:
    """The file's tensors must be exactly those of the network its metadata names."""
    try:
        with torch.device("meta"):
            skeleton = build_network(spec)
    except ValueError as error:
        raise ValueError(f"{file}: {error}") from error
    expected = {name: tuple(t.shape) for name, t in skeleton.state_dict().items()}
    if expected != shapes:
        missing = sorted(set(expected) - set(shapes))
        extra = sorted(set(shapes) - set(expected))
        differ = sorted(k for k in set(expected) & set(shapes) if expected[k] != shapes[k])
        raise ValueError(
            f"{file}: its tensors are not those of the network {spec.network} for "
            f"{spec.obs_shape} -> {spec.n_actions} actions (missing {missing[:3]}, unexpected "
            f"{extra[:3]}, other shapes {differ[:3]})"
        )
