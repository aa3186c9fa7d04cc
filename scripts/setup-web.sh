#!/usr/bin/env bash
# Installs what `dqnkit export --format web` and tests/test_web.py need: the npm packages in
# web/ (onnxruntime-web, vendored into each exported page, and playwright-core, which drives
# the browser) and Debian's Chromium (/usr/bin/chromium). Skips each step already done; never
# fails the caller for a missing tool: the browser test then skips, naming this script.
set -euo pipefail
cd "$(dirname "$0")/.."

if command -v npm >/dev/null 2>&1; then
    # npm ci again only when the lock file changed since the last install.
    stamp=$(sha256sum web/package-lock.json | cut -c1-16)
    if [ "$(cat web/node_modules/.dqnkit-stamp 2>/dev/null)" != "$stamp" ]; then
        if (cd web && npm ci --no-audit --no-fund --loglevel=error); then
            echo "$stamp" > web/node_modules/.dqnkit-stamp
        else
            echo "setup-web: npm ci in web/ failed; the web export and its browser test will skip" >&2
        fi
    fi
else
    echo "setup-web: npm not found; install Node.js >= 18 with npm for the web export" >&2
fi

if [ ! -x /usr/bin/chromium ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium \
            >/dev/null) || echo "setup-web: apt-get install chromium failed" >&2
    else
        echo "setup-web: no /usr/bin/chromium; the browser test skips until you run" \
             "'sudo apt-get install chromium' (Debian/Ubuntu)" >&2
    fi
fi
