#!/usr/bin/env bash
# The browser tests (issue 12): the chat page in Debian's Chromium, driven
# by playwright-core (pinned in tests/browser/package-lock.json).
#   tests/browser/page.mjs  the page against a fake /ws: needs no server
#   tests/browser/chat.mjs  the page served by the real server, with an nc
#                           user and a restart, and over HTTPS/wss:// with
#                           the tests' self-signed certificate
#                           (LOOPCHAT_SKIP_SERVER_TEST=1 skips it)
# LOOPCHAT_SERVER names the server binary (default target/debug/loopchat-
# server, built here if missing). Screenshots go to target/browser/.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian's Chromium; Playwright's own browser download cannot work here.
if [ ! -x /usr/bin/chromium ]; then
  apt-get update -qq >/dev/null 2>&1 || true
  apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
command -v npm >/dev/null 2>&1 || {
  apt-get update -qq >/dev/null 2>&1 || true
  apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
}
(cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)

export LOOPCHAT_SERVER="${LOOPCHAT_SERVER:-target/debug/loopchat-server}"
if [ -z "${LOOPCHAT_SKIP_SERVER_TEST:-}" ] && [ ! -x "$LOOPCHAT_SERVER" ]; then
  case "$LOOPCHAT_SERVER" in
    target/release/*) cargo build --release --bin loopchat-server ;;
    *) cargo build --bin loopchat-server ;;
  esac
fi

# One file at a time: the machine has two cores, and each file starts a browser.
node --test --test-concurrency=1 tests/browser/page.mjs tests/browser/chat.mjs
