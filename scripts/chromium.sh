#!/usr/bin/env bash
# Debian's chromium for the browser tests (tests/serve/test_browser.py drive it through Playwright's
# executable_path, so Playwright downloads no browser), and a small CJK font so the screenshots they save
# show the Chinese text. Idempotent: does nothing when both are installed. KTUNE_SKIP_BROWSER=1 skips it
# (the browser tests then skip, except under CI=true where they fail).
set -euo pipefail
CHROMIUM=${KTUNE_CHROMIUM:-/usr/bin/chromium}
FONT=/usr/share/fonts/truetype/wqy/wqy-microhei.ttc
if [ -n "${KTUNE_SKIP_BROWSER:-}" ] || { [ -x "$CHROMIUM" ] && [ -e "$FONT" ]; }; then
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
$SUDO apt-get install -y -qq --no-install-recommends chromium fonts-wqy-microhei >/dev/null
test -x "$CHROMIUM"
