#!/usr/bin/env bash
# Sets up .venv and runs everything CI runs: ruff, mypy, then the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/setup-web.sh  # npm packages in web/ and Chromium for tests/test_web.py
export PATH="$PWD/.venv/bin:$PATH" SDL_VIDEODRIVER=dummy
ruff check .
ruff format --check .
mypy -p dqnkit.core -p dqnkit.adapters -p dqnkit.export
mypy tests benchmarks examples
pytest "$@"
