#!/usr/bin/env bash
# The README's main job: sets up .venv, then runs dqnkit's main job.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
python examples/core_tour.py
