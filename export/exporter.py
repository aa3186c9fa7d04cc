"""``export_policy``: a Q-network to verified ONNX / TorchScript / .pt2 files, all or nothing."""

import copy
import json
import math
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from dqnkit.export import artifacts
from dqnkit.export.artifacts import FORMATS, SUFFIXES, Format, rewrite_contract, runner
from dqnkit.export.contract import ARTIFACT_VERSION
from dqnkit.export.files import fsync_dir, fsync_file
from dqnkit.export.graph import INPUT_NAME, OUTPUT_NAMES, PolicyGraph
from dqnkit.export.parity import Check, ParityError, check_runner, sample_observations
from dqnkit.export.weights import PolicySpec, load_weights

__all__ = ["DEFAULT_ATOL", "DEFAULT_RTOL", "ExportResult", "export_policy", "export_weights"]

DEFAULT_ATOL = 1e-4
# float32 itself is ~2e-5 relative from float64 on a trained pixel policy (Q near 100), and
# ONNX Runtime rounds differently from torch: 1e-5 refused correct exports (tests/test_pixels).
DEFAULT_RTOL = 1e-4
DEFAULT_BATCH_SIZES = (1, 7, 256)


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_policy` wrote.

    Attributes:
      files: format -> the artifact's path.
      report: the JSON report's path (tolerance, observation sets, every check's figures).
      checks: format -> its parity checks.
    """

    files: dict[Format, Path]
    report: Path
    checks: dict[Format, list[Check]]


def export_policy(
    network: nn.Module,
    spec: PolicySpec,
    out_dir: str | os.PathLike[str],
    *,
    formats: Sequence[Format] = FORMATS,
    observations: np.ndarray | None = None,
    n_sampled: int = 256,
    seed: int = 0,
    batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES,
    atol: float = DEFAULT_ATOL,
    rtol: float = DEFAULT_RTOL,
    stem: str = "policy",
) -> ExportResult:
    """Exports ``network`` in each format, verifies every file, then moves them into place.

    Each artifact maps ``obs [B, *obs_shape]`` (``spec.obs_dtype``, any B) to
    ``q_values [B, n_actions]`` float32 and ``action [B]`` int64, and carries the contract
    (``spec`` + versions + its parity figures, see :mod:`dqnkit.export.contract`). Every file is
    reloaded and compared with ``network`` on ``n_sampled`` observations sampled within the
    spec's bounds and on ``observations`` (e.g. from real episodes), at each batch size. Files
    are written to a temporary folder inside ``out_dir``; only when every check passes are they
    moved to ``out_dir/{stem}{.onnx,.pt,.pt2}`` with ``{stem}.export.json`` (replacing files of
    those names). On failure nothing in ``out_dir`` changes.

    Args:
      network: the Q-network, ``[B, *obs_shape] -> [B, n_actions]``; it is copied, not changed.
      spec: its contract.
      out_dir: the folder for the artifacts (created when missing).
      formats: which of ``"onnx"``, ``"torchscript"``, ``"pt2"``.
      observations: ``[N, *obs_shape]`` observations from real episodes, or None.
      n_sampled: how many observations to sample within the bounds.
      seed: the sampling seed.
      batch_sizes: the batch sizes each observation set is checked at.
      atol: absolute Q-value tolerance.
      rtol: relative Q-value tolerance (|dq| <= atol + rtol * |q_torch| elementwise).
      stem: the artifacts' file name without suffix.

    Returns:
      the files written and the figures.

    Raises:
      ParityError: an artifact disagrees with ``network``; the message holds the figures.
      ValueError: bad arguments (unknown format, observations of the wrong shape).
    """
    chosen = _check_formats(formats)
    for name, tol in (("atol", atol), ("rtol", rtol)):
        if not (math.isfinite(tol) and tol >= 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {tol}")
    if n_sampled < 2:
        raise ValueError(f"n_sampled must be at least 2, got {n_sampled}")
    if not batch_sizes or any(b < 1 for b in batch_sizes):
        raise ValueError(f"batch sizes must be positive, got {tuple(batch_sizes)}")
    sets = {"sampled": sample_observations(spec, n_sampled, seed=seed)}
    if observations is not None:
        sets["episodes"] = _check_observations(observations, spec)
    graph = PolicyGraph(copy.deepcopy(network))
    example = torch.from_numpy(sets["sampled"][:2].copy())  # B = 2: the batch stays dynamic
    base = _contract(spec)
    out = Path(out_dir)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    _remove_abandoned_staging(out)
    staging = Path(tempfile.mkdtemp(prefix=f"{_STAGING_PREFIX}{os.getpid()}-", dir=out))
    try:
        (staging / "unchecked").mkdir()

        def check(fmt: Format, path: Path) -> list[Check]:
            # trust_pickle: this process wrote the file a moment ago, in its own folder.
            run = runner(fmt, path, trust_pickle=True)
            return check_runner(run, graph, sets, batch_sizes=batch_sizes, atol=atol, rtol=rtol)

        checks: dict[Format, list[Check]] = {}
        for fmt in chosen:
            path = staging / "unchecked" / f"{stem}{SUFFIXES[fmt]}"
            artifacts.write_artifact(fmt, graph, example, path, json.dumps(base, allow_nan=False))
            checks[fmt] = check(fmt, path)
        _raise_on_failure(checks, atol=atol, rtol=rtol)
        # The parity figures go inside each artifact; the files that get them are checked again
        # so that the file shipped is a file checked.
        for fmt in chosen:
            parity = {"atol": atol, "rtol": rtol, "checks": _jsonable(checks[fmt])}
            contract = json.dumps({**base, "parity": parity}, allow_nan=False)
            final = staging / f"{stem}{SUFFIXES[fmt]}"
            rewrite_contract(fmt, staging / "unchecked" / final.name, final, contract)
            again = check(fmt, final)
            if again != checks[fmt]:
                raise ParityError(
                    f"{fmt}: the file with metadata gives figures different from the file "
                    f"checked: {_describe(again)}",
                    {fmt: again},
                )
        report = {
            **{k: base[k] for k in ("artifact_version", "dqnkit_version", "env_id")},
            "tolerance": {"atol": atol, "rtol": rtol, "rule": "|dq| <= atol + rtol * |q_torch|"},
            "observations": {
                "sampled": {
                    "count": n_sampled,
                    "seed": seed,
                    "how": "uniform within the spec's bounds, each clipped to +-10",
                },
                **({"episodes": {"count": len(sets["episodes"])}} if "episodes" in sets else {}),
            },
            "batch_sizes": list(batch_sizes),
            "formats": {
                fmt: {"file": f"{stem}{SUFFIXES[fmt]}", "checks": _jsonable(checks[fmt])}
                for fmt in chosen
            },
        }
        report_name = f"{stem}.export.json"
        (staging / report_name).write_text(json.dumps(report, indent=2, allow_nan=False) + "\n")
        for name in [f"{stem}{SUFFIXES[fmt]}" for fmt in chosen] + [report_name]:
            fsync_file(staging / name)
            os.replace(staging / name, out / name)
        fsync_dir(out)
        files = {fmt: out / f"{stem}{SUFFIXES[fmt]}" for fmt in chosen}
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if created:
            shutil.rmtree(out, ignore_errors=True)
        raise
    shutil.rmtree(staging, ignore_errors=True)
    return ExportResult(files=files, report=out / report_name, checks=checks)


def export_weights(
    weights: str | os.PathLike[str], out_dir: str | os.PathLike[str], **kwargs: Any
) -> ExportResult:
    """:func:`export_policy` for a ``save_weights`` file (keyword arguments as there)."""
    network, spec = load_weights(weights)
    return export_policy(network, spec, out_dir, **kwargs)


def _check_formats(formats: Sequence[Format]) -> list[Format]:
    chosen: list[Format] = []
    for fmt in formats:
        if fmt not in FORMATS:
            raise ValueError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
        if fmt not in chosen:
            chosen.append(fmt)
    if not chosen:
        raise ValueError("no export format given")
    return chosen


def _check_observations(observations: np.ndarray, spec: PolicySpec) -> np.ndarray:
    array = np.asarray(observations)
    if array.ndim != len(spec.obs_shape) + 1 or array.shape[1:] != spec.obs_shape:
        raise ValueError(f"observations have shape {array.shape}, expected [N, *{spec.obs_shape}]")
    if len(array) == 0:
        raise ValueError("observations are empty")
    dtype = np.dtype(spec.obs_dtype)
    if dtype.kind in "iu" and array.dtype.kind not in "iu":
        raise ValueError(f"observations are {array.dtype}, the policy takes {dtype}")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise ValueError("observations contain non-finite values")
    return np.ascontiguousarray(array.astype(dtype))


def _contract(spec: PolicySpec) -> dict[str, Any]:
    try:
        dqnkit_version = version("dqnkit")
    except PackageNotFoundError:  # running from a source tree without an install
        dqnkit_version = "unknown"
    return {
        **json.loads(spec.to_json()),
        "artifact_version": ARTIFACT_VERSION,
        "dqnkit_version": dqnkit_version,
        "input": INPUT_NAME,
        "outputs": list(OUTPUT_NAMES),
        "parity": None,
    }


def _jsonable(checks: list[Check]) -> list[dict[str, Any]]:
    # JSON has no infinity: a non-finite figure is written as a string, like PolicySpec's bounds.
    def encode(value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            return str(value)
        return value

    return [{k: encode(v) for k, v in asdict(c).items()} for c in checks]


def _describe(checks: list[Check]) -> str:
    return "; ".join(
        f"{c.observations} at batch {c.batch_size}: "
        + (f"{c.non_finite}/{c.count} with non-finite Q-values, " if c.non_finite else "")
        + f"max |dq| {c.max_abs_dq:.3g}, {c.action_mismatches}/{c.count} actions differ"
        for c in checks
    )


def _raise_on_failure(checks: dict[Format, list[Check]], *, atol: float, rtol: float) -> None:
    failed = {fmt: [c for c in cs if not c.ok] for fmt, cs in checks.items()}
    failed = {fmt: cs for fmt, cs in failed.items() if cs}
    if failed:
        details = " | ".join(f"{fmt}: {_describe(cs)}" for fmt, cs in failed.items())
        raise ParityError(
            f"export failed parity (tolerance |dq| <= {atol:g} + {rtol:g}*|q|, identical "
            f"actions): {details}; no file was written",
            checks,
        )


_STAGING_PREFIX = ".dqnkit-export-"


def _remove_abandoned_staging(out: Path) -> None:
    """Removes staging folders left in ``out`` by exports that died (kill -9, SIGABRT).

    A staging folder is named after its process id; one whose process is gone is abandoned.
    Another export running in the same folder keeps its own.
    """
    for folder in out.glob(f"{_STAGING_PREFIX}*"):
        pid_text = folder.name[len(_STAGING_PREFIX) :].split("-", 1)[0]
        if not pid_text.isdigit() or int(pid_text) == os.getpid():
            continue
        try:
            os.kill(int(pid_text), 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except PermissionError:  # alive, another user's
            continue
