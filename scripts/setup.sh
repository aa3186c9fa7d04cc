#!/usr/bin/env bash
# Creates .venv (if needed) and installs dqnkit into it, editable, with its test,
# tensorboard, video, atari and sweep extras. torch is installed first, pinned by
# constraints.txt, so nothing can resolve a newer torch with CUDA packages. Re-runs only when the inputs change.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=.venv
EXTRAS=${DQNKIT_EXTRAS:-test,tensorboard,video,atari,sweep}

if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi

# The editable install is a link tree (editable_mode=strict, so mypy can follow dqnkit.*):
# adding or removing a module needs a reinstall, so the stamp covers the file list too.
stamp=$( { cat pyproject.toml constraints.txt; echo "$EXTRAS"; \
           find core adapters export -name '*.py' -o -name 'py.typed' | sort; } | sha256sum | cut -c1-16)
if [ "$(cat "$VENV/.dqnkit-stamp" 2>/dev/null)" != "$stamp" ]; then
    pip=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
    "${pip[@]}" install -c constraints.txt "torch==2.13.0"
    "${pip[@]}" install -c constraints.txt --config-settings editable_mode=strict -e ".[$EXTRAS]"
    echo "$stamp" > "$VENV/.dqnkit-stamp"
fi
