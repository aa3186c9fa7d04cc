"""Files that a crash leaves either old or new, never half written, and safetensors with JSON.

- :func:`atomic_write`: a temporary file beside the target, fsynced, renamed over it, and the
  folder fsynced; :func:`fsync_dir` is that last step alone, for callers that rename files
  themselves (a staging folder moved into place).
- :func:`remove_stale_temporaries`: the ``.NAME.*.tmp`` files a killed writer left behind.
- :func:`write_safetensors` / :func:`read_safetensors`: tensors plus one JSON document under a
  named metadata key. Nothing is pickled either way, so reading a received file runs no code.

Importing this module imports no torch (the torch-free runtime may use the helpers above).
"""

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported where used: this module is torch-free until a tensor is written
    import torch

__all__ = [
    "atomic_write",
    "fsync_dir",
    "read_safetensors",
    "remove_stale_temporaries",
    "write_safetensors",
]

_TMP_SUFFIX = ".tmp"


def atomic_write(path: str | os.PathLike[str], write: Callable[[Path], object]) -> None:
    """Calls ``write(tmp)`` on a temporary file beside ``path``, fsyncs it, then renames it over
    ``path``. If ``write`` raises, the temporary file is removed and ``path`` is untouched.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=_TMP_SUFFIX, dir=target.parent
    )
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        tmp.chmod(0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(target.parent)


def fsync_dir(folder: str | os.PathLike[str]) -> None:
    """Makes the renames done in ``folder`` durable: its entries are on disk once this returns."""
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def remove_stale_temporaries(folder: str | os.PathLike[str]) -> list[Path]:
    """Deletes the temporary files :func:`atomic_write` leaves when killed (``.NAME.*.tmp``)
    directly in ``folder``; returns what it deleted. Call it only where no other process is
    writing (a run directory this process has locked)."""
    removed = []
    for tmp in Path(folder).glob(f".*{_TMP_SUFFIX}"):
        if tmp.is_file() and not tmp.is_symlink():
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def write_safetensors(
    path: str | os.PathLike[str], tensors: "dict[str, torch.Tensor]", key: str, document: Any
) -> None:
    """Writes ``tensors`` and ``document`` (JSON, stored under metadata ``key``) atomically.

    Raises:
      ValueError: ``document`` holds NaN or infinity (JSON has neither).
    """
    from safetensors.torch import save_file

    text = json.dumps(document, allow_nan=False, sort_keys=True)
    plain = {name: value.detach().cpu().contiguous() for name, value in tensors.items()}
    atomic_write(path, lambda tmp: save_file(plain, str(tmp), metadata={key: text}))


def read_safetensors(
    path: str | os.PathLike[str], key: str
) -> "tuple[dict[str, torch.Tensor], Any]":
    """Reads a file :func:`write_safetensors` wrote: its tensors and the JSON under ``key``.

    Raises:
      ValueError: the file cannot be read, is not safetensors, or lacks valid JSON at ``key``.
    """
    from safetensors import SafetensorError, safe_open

    file = Path(path)
    try:
        with safe_open(str(file), framework="pt") as f:
            text = (f.metadata() or {}).get(key)
            tensors = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118
    except (SafetensorError, OSError) as error:
        raise ValueError(f"{file}: not a readable safetensors file ({error})") from error
    if text is None:
        raise ValueError(f"{file}: a safetensors file without {key!r} metadata")
    try:
        document = json.loads(text, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as error:
        raise ValueError(f"{file}: the {key!r} metadata is not valid JSON ({error})") from error
    return tensors, document


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"non-finite number {name} in JSON")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
