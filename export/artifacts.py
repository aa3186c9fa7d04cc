"""Writing and reading back each artifact format, with the contract JSON inside.

=============  ===========  =================================================================
format         file         how it is made / read
=============  ===========  =================================================================
``onnx``       policy.onnx  ``torch.onnx.export`` (dynamo), one self-contained file, the
                            contract in ``metadata_props["dqnkit"]``; read by ONNX Runtime.
``torchscript`` policy.pt   ``torch.jit.script``, the contract in the extra file
                            ``dqnkit.json``; read by ``torch.jit.load`` / LibTorch C++.
``pt2``        policy.pt2   ``torch.export.save``, the contract in the extra file
                            ``dqnkit.json``. Loading a .pt2 can unpickle: trusted input only.
=============  ===========  =================================================================
"""

import logging
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnx
import torch

from dqnkit.export.contract import EXTRA_FILE, ONNX_METADATA_KEY
from dqnkit.export.graph import INPUT_NAME, OUTPUT_NAMES, PolicyGraph

__all__ = [
    "FORMATS",
    "SUFFIXES",
    "Format",
    "Runner",
    "read_contract",
    "rewrite_contract",
    "runner",
    "write_artifact",
]

Format = Literal["onnx", "torchscript", "pt2"]
FORMATS: tuple[Format, ...] = ("onnx", "torchscript", "pt2")
SUFFIXES: dict[Format, str] = {"onnx": ".onnx", "torchscript": ".pt", "pt2": ".pt2"}

# A batch of observations [B, *obs_shape] -> (q_values [B, A] float32, action [B] int64).
Runner = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


def _batch_dim() -> dict[str, dict[int, torch.export.Dim]]:
    return {INPUT_NAME: {0: torch.export.Dim("batch")}}


def write_artifact(
    fmt: Format, graph: PolicyGraph, example: torch.Tensor, path: Path, contract: str
) -> None:
    """Writes ``graph`` as ``fmt`` to ``path`` with ``contract`` (JSON) inside.

    Args:
      fmt: the format.
      graph: the module to export, in eval mode.
      example: an example batch ``[B, *obs_shape]`` with ``B >= 2`` (a batch of 1 would let
        the tracer specialise the batch dimension).
      path: the file to write (overwritten).
      contract: the JSON the artifact carries.
    """
    if fmt == "onnx":
        _write_onnx(graph, example, path, contract)
    elif fmt == "torchscript":
        with _jit_deprecation_silenced():
            scripted = torch.jit.script(graph)
            torch.jit.save(scripted, str(path), _extra_files={EXTRA_FILE: contract})
    elif fmt == "pt2":
        program = torch.export.export(graph, (example,), dynamic_shapes=_batch_dim())
        torch.export.save(program, str(path), extra_files={EXTRA_FILE: contract})
    else:
        raise ValueError(f"unknown format {fmt!r}; choose from {FORMATS}")


def _write_onnx(graph: PolicyGraph, example: torch.Tensor, path: Path, contract: str) -> None:
    # The exporter logs one warning per torchvision operator it cannot register; not ours.
    registration_log = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registration_log.level
    registration_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            # torch's own pytree deprecation, raised inside the exporter; nothing a caller can fix.
            warnings.filterwarnings(
                "ignore", category=FutureWarning, message=r"`isinstance\(treespec, LeafSpec\)`"
            )
            program = torch.onnx.export(
                graph,
                (example,),
                input_names=[INPUT_NAME],
                output_names=list(OUTPUT_NAMES),
                dynamic_shapes=_batch_dim(),
                external_data=False,
                verbose=False,
            )
    finally:
        registration_log.setLevel(level)
    if program is None:  # only the legacy exporter returns None
        raise RuntimeError("torch.onnx.export returned no program")
    model = program.model_proto
    del model.metadata_props[:]
    entry = model.metadata_props.add()
    entry.key, entry.value = ONNX_METADATA_KEY, contract
    onnx.checker.check_model(model, full_check=True)
    # One self-contained file: a small Q-network is far below protobuf's 2 GB limit.
    onnx.save_model(model, str(path), save_as_external_data=False)


def read_contract(fmt: Format, path: Path) -> str:
    """The contract JSON inside an artifact file (torch is needed for .pt and .pt2)."""
    if fmt == "onnx":
        model = onnx.load_model(str(path), load_external_data=False)
        for entry in model.metadata_props:
            if entry.key == ONNX_METADATA_KEY:
                return str(entry.value)
        raise ValueError(f"{path}: an ONNX model without dqnkit metadata")
    extra = {EXTRA_FILE: ""}
    if fmt == "torchscript":
        _jit_load(path, extra)
    else:
        torch.export.load(str(path), extra_files=extra)
    if not extra[EXTRA_FILE]:
        raise ValueError(f"{path}: a {fmt} file without {EXTRA_FILE}")
    text: Any = extra[EXTRA_FILE]  # torch hands extra files back as bytes
    return text.decode() if isinstance(text, bytes) else str(text)


def runner(fmt: Format, path: Path) -> Runner:
    """Loads an artifact file and returns a function that runs a batch through it.

    ONNX runs through :class:`dqnkit.export.runtime.Policy` (so the export checks the runtime
    apps use); TorchScript through ``torch.jit.load``; .pt2 through ``torch.export.load``.
    """
    if fmt == "onnx":
        from dqnkit.export.runtime import Policy

        policy = Policy.load(path)
        session, name = policy.session, policy.session.get_inputs()[0].name

        def run_onnx(obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            q, action = session.run(list(OUTPUT_NAMES), {name: obs})
            return q, action

        return run_onnx
    if fmt == "torchscript":
        module: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]] = _jit_load(path)
    else:
        module = torch.export.load(str(path)).module()

    def run_torch(obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with torch.inference_mode():
            q, action = module(torch.from_numpy(obs))
        return q.numpy(), action.numpy()

    return run_torch


def rewrite_contract(fmt: Format, source: Path, target: Path, contract: str) -> None:
    """Copies an artifact to ``target`` with ``contract`` as its JSON; the graph is untouched.

    ONNX keeps its graph bytes as they were; TorchScript and .pt2 are loaded and saved again.
    """
    if fmt == "onnx":
        model = onnx.load_model(str(source), load_external_data=False)
        del model.metadata_props[:]
        entry = model.metadata_props.add()
        entry.key, entry.value = ONNX_METADATA_KEY, contract
        onnx.checker.check_model(model, full_check=True)
        onnx.save_model(model, str(target), save_as_external_data=False)
    elif fmt == "torchscript":
        module = _jit_load(source)
        with _jit_deprecation_silenced():
            torch.jit.save(module, str(target), _extra_files={EXTRA_FILE: contract})
    else:
        torch.export.save(
            torch.export.load(str(source)), str(target), extra_files={EXTRA_FILE: contract}
        )


def _jit_load(path: Path, extra_files: dict[str, str] | None = None) -> Any:
    """``torch.jit.load`` on the CPU (untyped in torch's stubs)."""
    with _jit_deprecation_silenced():
        return torch.jit.load(  # type: ignore[no-untyped-call]
            str(path), map_location="cpu", _extra_files=extra_files
        )


@contextmanager
def _jit_deprecation_silenced() -> Iterator[None]:
    # torch.jit is deprecated in torch 2.13, yet TorchScript is the format LibTorch C++ loads:
    # silence exactly that warning, here only.
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", category=DeprecationWarning, message=r"`torch\.jit\.\w+` is deprecated"
        )
        yield
