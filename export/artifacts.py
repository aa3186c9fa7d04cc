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

What reading each trusts: the contract of every format is read as data (ONNX protobuf, or the
JSON entry of the zip archive), never by loading the model. ONNX models run in ONNX Runtime;
TorchScript files load through TorchScript's own loader, which rebuilds tensors and
TorchScript classes only and runs no Python pickle. ``torch.export.load`` can unpickle
(weights saved with ``use_pickle``; sample inputs fall back to ``weights_only=False``), so
:func:`runner` refuses a .pt2 unless ``trust_pickle=True``, and :func:`inspect_pt2` checks
the archive first.
"""

import io
import json
import logging
import warnings
import zipfile
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
    "inspect_pt2",
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
    """The contract JSON inside an artifact file, read as data (no model is loaded).

    Raises:
      ValueError: the file is not such an artifact, or has no contract.
    """
    if fmt == "onnx":
        try:
            model = onnx.load_model(str(path), load_external_data=False)
        except Exception as error:  # protobuf's DecodeError and onnx's own errors
            raise ValueError(f"{path}: not an ONNX model ({error})") from error
        for entry in model.metadata_props:
            if entry.key == ONNX_METADATA_KEY:
                return str(entry.value)
        raise ValueError(f"{path}: an ONNX model without dqnkit metadata")
    # TorchScript and .pt2 files are zip archives: the contract is the entry */extra/NAME.
    with _open_archive(path, fmt) as archive:
        names = [n for n in archive.namelist() if n.split("/", 1)[-1] == f"extra/{EXTRA_FILE}"]
        if len(names) != 1:
            raise ValueError(f"{path}: a {fmt} file without {EXTRA_FILE}")
        try:
            return archive.read(names[0]).decode()
        except UnicodeDecodeError as error:
            raise ValueError(f"{path}: its {EXTRA_FILE} is not text") from error


def inspect_pt2(path: Path) -> list[str]:
    """Checks a .pt2 archive without loading it; returns the entries that would unpickle.

    A .pt2 that dqnkit wrote holds its weights as raw tensors (``use_pickle`` false) and sample
    inputs that load with ``weights_only=True``; anything else is listed.

    Raises:
      ValueError: not a zip archive (truncated?), or not a torch.export archive.
    """
    import torch

    pickled: list[str] = []
    with _open_archive(path, "pt2") as archive:
        names = archive.namelist()
        configs = [
            n for n in names if n.endswith(("model_weights_config.json", "_constants_config.json"))
        ]
        if not any(n.split("/", 1)[-1].startswith("models/") for n in names) or not configs:
            raise ValueError(f"{path}: a zip archive, but not a torch.export (.pt2) archive")
        for name in configs:
            try:
                entries = json.loads(archive.read(name)).get("config", {})
            except (ValueError, AttributeError, RecursionError) as error:
                raise ValueError(f"{path}: {name} is not valid JSON ({error})") from error
            if not isinstance(entries, dict):
                raise ValueError(f"{path}: {name} is not a torch.export weights config")
            pickled += [
                f"{name}:{key}"
                for key, entry in entries.items()
                if not isinstance(entry, dict) or entry.get("use_pickle") is not False
            ]
        for name in (n for n in names if "/data/sample_inputs/" in n):
            try:
                torch.load(io.BytesIO(archive.read(name)), weights_only=True)
            except Exception:  # anything weights_only refuses would be unpickled by torch
                pickled.append(name)
    return pickled


def runner(fmt: Format, path: Path, *, trust_pickle: bool = False) -> Runner:
    """Loads an artifact file and returns a function that runs a batch through it.

    ONNX runs through :class:`dqnkit.export.runtime.Policy` (so the export checks the runtime
    apps use); TorchScript through ``torch.jit.load``; .pt2 through ``torch.export.load``,
    which can unpickle: only with ``trust_pickle=True`` (ValueError otherwise).
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
        if not trust_pickle:
            raise ValueError(
                f"{path}: loading a .pt2 file can unpickle (run code); refusing without "
                "trust_pickle=True (the command line's --trust-pickle)"
            )
        module = torch.export.load(str(path)).module()

    def run_torch(obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with torch.inference_mode():
            q, action = module(torch.from_numpy(obs))
        return q.numpy(), action.numpy()

    return run_torch


@contextmanager
def _open_archive(path: Path, fmt: str) -> Iterator[zipfile.ZipFile]:
    try:
        with zipfile.ZipFile(path) as archive:
            yield archive
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as error:
        raise ValueError(f"{path}: not a {fmt} archive, or a truncated one ({error})") from error


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
