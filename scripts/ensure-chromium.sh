#!/bin/sh
# Make sure Debian's chromium is present for the browser test (tests/api/test_page.py).
# Idempotent: does nothing when /usr/bin/chromium already exists. Needs root (or sudo) and
# access to the Debian mirrors on a fresh machine; never downloads a browser any other way.
set -eu
CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
if [ -x "$CHROMIUM" ]; then
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; else
        echo "ensure-chromium: $CHROMIUM is missing and we are not root; install it with: apt-get install chromium" >&2
        exit 1
    fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null
test -x "$CHROMIUM"
echo "ensure-chromium: installed $($CHROMIUM --version 2>/dev/null || echo chromium)"
