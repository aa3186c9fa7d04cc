"""dqnkit.export: TorchScript, ONNX and torch.export artifacts, and a torch-free runtime.

``from dqnkit.export import export_policy`` works, yet nothing here imports torch until such
a name is used, so that ``import dqnkit.export.runtime`` (numpy + onnxruntime) stays torch-free.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dqnkit.export.contract import PolicyMetadata
    from dqnkit.export.exporter import ExportResult, export_policy, export_weights
    from dqnkit.export.parity import Check, ParityError
    from dqnkit.export.weights import PolicySpec, load_weights, save_weights

__all__ = [
    "Check",
    "ExportResult",
    "ParityError",
    "PolicyMetadata",
    "PolicySpec",
    "export_policy",
    "export_weights",
    "load_weights",
    "save_weights",
]

_HOMES = {
    "Check": "parity",
    "ExportResult": "exporter",
    "ParityError": "parity",
    "PolicyMetadata": "contract",
    "PolicySpec": "weights",
    "export_policy": "exporter",
    "export_weights": "exporter",
    "load_weights": "weights",
    "save_weights": "weights",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'dqnkit.export' has no attribute {name!r}")
    return getattr(import_module(f"dqnkit.export.{home}"), name)
