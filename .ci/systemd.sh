#!/usr/bin/env bash
# CI: `systemd-analyze verify` on dist/loopchat.service, dist/loopchat.socket
# and the template dist/loopchat@.service (as instance loopchat@1).
# Works on a fresh Debian machine without systemd running (containers):
# installs the `systemd` package if systemd-analyze is missing, and points
# ExecStart= at the freshly built binary (verify checks that it exists and
# is executable). Man pages are not looked up (--man=no): verify would run
# man(1), which a CI image may not have.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v systemd-analyze >/dev/null 2>&1; then
  echo "== installing systemd (for systemd-analyze)"
  apt-get update -qq >/dev/null 2>&1 || true
  apt-get install -y -qq --no-install-recommends systemd >/dev/null
fi

cargo build -q --bin loopchat-server
bin="$PWD/target/debug/loopchat-server"
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cp dist/loopchat.socket "$dir/"
sed "s|/usr/bin/loopchat-server|$bin|" dist/loopchat.service > "$dir/loopchat.service"
sed "s|/usr/bin/loopchat-server|$bin|" dist/loopchat@.service > "$dir/loopchat@.service"

echo "== systemd-analyze verify dist/loopchat.service dist/loopchat.socket dist/loopchat@.service"
out=$(systemd-analyze verify --man=no "$dir/loopchat.socket" "$dir/loopchat.service" "$dir/loopchat@1.service" 2>&1) || {
  echo "$out"; exit 1; }
# verify exits 0 on some warnings: fail on any line about our units.
if echo "$out" | grep -E 'loopchat(@1)?\.(service|socket)'; then
  exit 1
fi
# And the sandbox's score, for the log (lower is better; informational).
systemd-analyze security --offline=yes "$dir/loopchat.service" 2>/dev/null | tail -1 || true
echo "systemd units: ok"
