#!/usr/bin/env bash
# Debian's chromium for the browser tests (tests/serve/test_browser.py drive it through Playwright's
# executable_path, so no browser is downloaded by Playwright). Idempotent: does nothing when it is installed.
set -euo pipefail
CHROMIUM=${KTUNE_CHROMIUM:-/usr/bin/chromium}
if [ -x "$CHROMIUM" ]; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "scripts/chromium.sh: $CHROMIUM is missing and there is no apt-get; install chromium by hand" >&2
    exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null
test -x "$CHROMIUM"
