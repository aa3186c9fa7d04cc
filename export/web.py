"""The policy in a web page: a static folder that runs an ONNX policy with ONNX Runtime Web.

    from dqnkit.export.web import export_web

    site = export_web("runs/CartPole-v1-0-<time>/export/policy.onnx", "site/")
    # python -m dqnkit.export.web serve site/   -> http://127.0.0.1:8000/

The folder holds ``index.html``, ``policy.onnx`` (the file given, byte for byte),
``contract.json`` (the JSON in its metadata), the page's scripts (``app.js``, ``cartpole.js``,
``worker.js``, ``style.css``), ``ort/`` (ONNX Runtime Web's wasm build and loader, copied from
the npm package, with a note of its version and license) and ``dqnkit-web.json`` (what was
written, with checksums). It loads nothing from the network. Browsers refuse workers and
``fetch`` to a page opened from a file, so serve the folder (any static server; :func:`serve`
binds loopback and sets the wasm and module MIME types).

The page runs inference in a Web Worker on one wasm thread (no cross-origin isolation needed).
For CartPole-v1 it plays Gymnasium's CartPole-v1, written out in JavaScript (``cartpole.js``);
for every policy it has a form built from the contract for typing observations. This module
imports neither torch nor onnx: the contract is read through ONNX Runtime.
"""

import argparse
import functools
import hashlib
import http.server
import json
import os
import shutil
import sys
import tempfile
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dqnkit.export.runtime import Policy

__all__ = [
    "ASSETS",
    "MANIFEST",
    "ORT_FILES",
    "export_web",
    "find_onnxruntime_web",
    "main",
    "serve",
]

# The page itself, shipped as package data beside this module.
ASSETS = Path(__file__).resolve().parent / "web_assets"
_PAGE_FILES = ("index.html", "app.js", "cartpole.js", "worker.js", "style.css")
# From the onnxruntime-web npm package: the wasm-only build (no WebGL/WebGPU), its loader and the
# wasm binary. One binary serves one thread and many; the page asks for one.
ORT_FILES = ("dist/ort.wasm.min.js", "dist/ort-wasm-simd-threaded.mjs",
             "dist/ort-wasm-simd-threaded.wasm")  # fmt: skip
MANIFEST = "dqnkit-web.json"
_MANIFEST_VERSION = 1
# Where scripts/setup-web.sh installs onnxruntime-web in a source checkout.
_CHECKOUT_ORT = Path(__file__).resolve().parent.parent / "web" / "node_modules" / "onnxruntime-web"
_ENV_ORT = "DQNKIT_ONNXRUNTIME_WEB"


def find_onnxruntime_web(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The onnxruntime-web package folder whose files the page vendors.

    Looks at ``explicit``, then ``$DQNKIT_ONNXRUNTIME_WEB``, then ``web/node_modules`` of this
    source checkout (``scripts/setup-web.sh`` installs it there), then ``./web/node_modules``.

    Raises:
      ValueError: none of them holds the files the page needs.
    """
    candidates: list[Path] = []
    if explicit is not None:
        candidates.append(Path(explicit))
    elif os.environ.get(_ENV_ORT):
        candidates.append(Path(os.environ[_ENV_ORT]))
    else:
        candidates += [_CHECKOUT_ORT, Path.cwd() / "web" / "node_modules" / "onnxruntime-web"]
    for folder in candidates:
        if folder.name == "dist":  # node_modules/onnxruntime-web/dist given: its package
            folder = folder.parent
        if all((folder / name).is_file() for name in (*ORT_FILES, "package.json")):
            return folder
    where = ", ".join(str(c) for c in candidates)
    raise ValueError(
        f"onnxruntime-web not found (looked in {where}): run scripts/setup-web.sh (npm ci in "
        f"web/), or pass the folder node_modules/onnxruntime-web (onnxruntime_web= or ${_ENV_ORT})"
    )


def export_web(
    source: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    onnxruntime_web: str | os.PathLike[str] | None = None,
) -> Path:
    """Writes the static page folder for an ONNX policy; returns the folder.

    Args:
      source: a dqnkit ``.onnx`` file, or a folder holding ``policy.onnx`` (an export folder).
      out_dir: the folder to write (created when missing). An existing folder must be empty or
        an earlier page export (it has ``dqnkit-web.json``): its files are replaced.
      onnxruntime_web: the onnxruntime-web package folder; see :func:`find_onnxruntime_web`.

    Raises:
      ValueError: ``source`` is not a loadable dqnkit ONNX policy, onnxruntime-web is missing, or
        ``out_dir`` holds other files. Nothing in ``out_dir`` changes then.
    """
    model = Path(source)
    if model.is_dir():
        model = model / "policy.onnx"
    if model.suffix != ".onnx":
        raise ValueError(f"{model}: the web page runs ONNX policies; give a .onnx file")
    policy = Policy.load(model)  # checks it is a dqnkit policy: metadata, input type, outputs
    contract = policy.metadata.raw
    ort_package = find_onnxruntime_web(onnxruntime_web)
    ort_version = str(json.loads((ort_package / "package.json").read_text())["version"])
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} is a file, not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / MANIFEST).is_file():
        raise ValueError(
            f"{out} is not empty and not a dqnkit web export ({MANIFEST} missing): "
            f"give an empty or new folder"
        )
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".dqnkit-web-", dir=out))
    try:
        for name in _PAGE_FILES:
            text = (ASSETS / name).read_text()
            if name == "index.html":
                text = text.replace("{{ORT_VERSION}}", ort_version)
            (staging / name).write_text(text)
        shutil.copyfile(model, staging / "policy.onnx")
        (staging / "contract.json").write_text(json.dumps(contract, indent=2) + "\n")
        (staging / "ort").mkdir()
        for name in ORT_FILES:
            shutil.copyfile(ort_package / name, staging / "ort" / Path(name).name)
        package = json.loads((ort_package / "package.json").read_text())
        (staging / "ort" / "README.txt").write_text(
            f"{package['name']} {ort_version} (license: {package.get('license', 'see package')})"
            f", from the npm registry: the files the page needs, copied by dqnkit's export_web.\n"
        )
        files = sorted(p for p in staging.rglob("*") if p.is_file())
        manifest = {
            "dqnkit_web_version": _MANIFEST_VERSION,
            "env_id": contract.get("env_id"),
            "onnxruntime_web": ort_version,
            "files": {str(p.relative_to(staging)): _sha256(p) for p in files},
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        # Into place: the files one by one, ort/ as a whole, the manifest last.
        for name in (*_PAGE_FILES, "policy.onnx", "contract.json"):
            os.replace(staging / name, out / name)
        if (out / "ort").is_dir():
            shutil.rmtree(out / "ort")
        os.replace(staging / "ort", out / "ort")
        os.replace(staging / MANIFEST, out / MANIFEST)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if created:
            shutil.rmtree(out, ignore_errors=True)
        raise
    shutil.rmtree(staging, ignore_errors=True)
    return out


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class _Handler(http.server.SimpleHTTPRequestHandler):
    # Module scripts need a JavaScript type and wasm streams only as application/wasm, whatever
    # the system's mime.types says.
    extensions_map = {  # noqa: RUF012 (the base class declares it a plain dict)
        **http.server.SimpleHTTPRequestHandler.extensions_map,
        ".js": "text/javascript",
        ".mjs": "text/javascript",
        ".wasm": "application/wasm",
        ".json": "application/json",
        ".onnx": "application/octet-stream",
    }

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def serve(folder: str | os.PathLike[str], *, port: int = 0) -> Iterator[str]:
    """Serves ``folder`` on 127.0.0.1 in a background thread while the block runs.

    Args:
      folder: the folder (an :func:`export_web` output).
      port: the port; 0 picks a free one.

    Yields:
      the page's address, ``http://127.0.0.1:PORT/``.
    """
    root = Path(folder)
    if not (root / "index.html").is_file():
        raise ValueError(f"{root}: no index.html to serve")
    handler = functools.partial(_Handler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m dqnkit.export.web``: ``export POLICY.onnx OUT`` or ``serve FOLDER``."""
    parser = argparse.ArgumentParser(prog="python -m dqnkit.export.web", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    export = commands.add_parser("export", help="write the page folder for an ONNX policy")
    export.add_argument("policy", help="a dqnkit .onnx file, or an export folder")
    export.add_argument("out", help="the folder to write")
    export.add_argument("--onnxruntime-web", help="the onnxruntime-web package folder")
    served = commands.add_parser("serve", help="serve a page folder on 127.0.0.1")
    served.add_argument("folder")
    served.add_argument("--port", type=int, default=8000, help="the port (default: 8000)")
    args = parser.parse_args(argv)
    try:
        if args.command == "export":
            site = export_web(args.policy, args.out, onnxruntime_web=args.onnxruntime_web)
            print(f"wrote {site}/ (serve it: python -m dqnkit.export.web serve {site})")
            return 0
        with serve(args.folder, port=args.port) as url:
            print(f"serving {args.folder} at {url} (Ctrl-C stops)", flush=True)
            threading.Event().wait()
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except OSError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
