#!/usr/bin/env bash
# Installs Debian's chromium for the evidence-report browser test
# (`cargo test -p keyturn-audit --test report_browser`), if it is missing.
# Run the tests with KEYTURN_REQUIRE_BROWSER=1 so that a missing browser
# fails them instead of skipping. Idempotent.
set -euo pipefail

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

if [ ! -x /usr/bin/chromium ]; then
    echo "install-chromium: installing Debian's chromium"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq chromium >/dev/null
fi
echo "chromium: $(/usr/bin/chromium --version 2>/dev/null || echo 'installed, but --version failed')"
