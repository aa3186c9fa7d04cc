"""Helpers for tests and benchmarks that open an exported page in headless Chromium.

The browser is Debian's ``chromium`` driven by playwright-core (``web/drive.mjs``); both are
installed by ``scripts/setup-web.sh``, which ``scripts/test.sh`` runs.
"""

import json
import os
import shutil
import subprocess
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from dqnkit.export.web import serve

ROOT = Path(__file__).resolve().parent.parent
WEB = ROOT / "web"
DRIVER = WEB / "drive.mjs"
CHROMIUM = Path(os.environ.get("DQNKIT_CHROMIUM", "/usr/bin/chromium"))
# Screenshots the browser tests take: a build artifact, gitignored.
ARTIFACTS = ROOT / "build" / "test-artifacts" / "web"
_UNREACHABLE = ("ENOTFOUND", "EAI_AGAIN", "ECONNREFUSED", "ETIMEDOUT")


def missing_tools() -> str | None:
    """Why the browser tests cannot run here, naming the command that fixes it; None if they can."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        return "Node.js and npm are not on PATH (Debian: apt-get install nodejs npm)"
    if not CHROMIUM.is_file():
        return (
            f"no Chromium at {CHROMIUM}: run scripts/setup-web.sh (as root it runs "
            f"'apt-get install chromium'; otherwise 'sudo apt-get install chromium')"
        )
    return None


def install_npm_packages() -> str | None:
    """``npm ci`` in web/ when its packages are missing; the reason to skip if npm cannot."""
    if all((WEB / "node_modules" / p).is_dir() for p in ("onnxruntime-web", "playwright-core")):
        return None
    done = subprocess.run(
        ["npm", "ci", "--no-audit", "--no-fund"],
        cwd=WEB,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode == 0:
        return None
    if any(s in done.stderr for s in _UNREACHABLE):
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return f"npm registry unreachable for scripts/setup-web.sh's npm ci: {tail}"
    raise AssertionError(f"npm ci in web/ failed: {done.stderr}")


def drive(
    site: Path,
    steps: list[dict[str, Any]],
    *,
    timeout_s: float = 240,
    as_file: bool = False,
    expect_start: bool = True,
) -> dict[str, Any]:
    """Serves ``site`` on loopback (or opens it as a file) and runs ``steps`` in Chromium.

    Args:
      site: an ``export_web`` folder.
      steps: what to do, in order (see web/drive.mjs).
      timeout_s: for the whole browser session.
      as_file: open ``index.html`` as a ``file:`` URL instead of serving the folder.
      expect_start: False for a page that must refuse to start.

    Returns:
      drive.mjs's result: ``results`` (one per step), ``console``, ``page_errors``, ``requests``,
      ``blocked``, ``status``, ``ready``, ``load_ms``, ``browser``.

    Raises:
      AssertionError: the driver failed (the page did not start, a step timed out).
    """
    with tempfile.TemporaryDirectory(prefix="dqnkit-drive-") as tmp, ExitStack() as stack:
        url = (
            (site / "index.html").resolve().as_uri()
            if as_file
            else stack.enter_context(serve(site))
        )
        plan, result = Path(tmp) / "plan.json", Path(tmp) / "result.json"
        plan.write_text(
            json.dumps(
                {
                    "url": url,
                    "chromium": str(CHROMIUM),
                    "timeout_ms": int(timeout_s * 1000 / 2),
                    "expect_start": expect_start,
                    "steps": steps,
                }
            )
        )
        done = subprocess.run(
            ["node", str(DRIVER), str(plan), str(result)],
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
        if not result.is_file():
            raise AssertionError(f"drive.mjs wrote nothing: {done.stderr}")
        out: dict[str, Any] = json.loads(result.read_text())
    if done.returncode != 0 or "error" in out:
        raise AssertionError(
            f"the page failed: {out.get('error')}; status {out.get('status')!r}; console "
            f"{out.get('console')}; page errors {out.get('page_errors')}; {done.stderr}"
        )
    return out
