#!/usr/bin/env bash
# CI: build the Debian package with cargo-deb (installed from crates.io,
# pinned, if missing) and check with dpkg-deb that every file is where
# dist/loopchat.service expects it.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never

CARGO_DEB_VERSION=3.8.0
if ! cargo deb --version 2>/dev/null | grep -q "$CARGO_DEB_VERSION"; then
  echo "== cargo install cargo-deb $CARGO_DEB_VERSION"
  cargo install cargo-deb --locked --version "$CARGO_DEB_VERSION"
fi
if ! command -v dpkg-deb >/dev/null 2>&1; then
  apt-get update -qq >/dev/null 2>&1 || true
  apt-get install -y -qq --no-install-recommends dpkg >/dev/null
fi

echo "== cargo deb"
# Not `tee /dev/stderr`: when CI's output is a file, reopening it through
# /dev/stderr truncates it.
built=$(mktemp)
cargo deb 2>&1 | tee "$built"
deb=$(tail -1 "$built")
rm -f "$built"
[ -f "$deb" ] || { echo "no package built"; exit 1; }

echo "== dpkg-deb --info $deb"
info=$(dpkg-deb --info "$deb")
echo "$info"
contents=$(dpkg-deb --contents "$deb")
echo "== dpkg-deb --contents"
echo "$contents"

fail=0
need() { # PATH [MODE-PREFIX]: the package holds PATH (with that mode)
  local line
  line=$(echo "$contents" | awk -v p="./$1" '$6 == p { print; exit }')
  if [ -z "$line" ]; then
    echo "missing from the package: /$1"; fail=1
  elif [ -n "${2:-}" ] && [[ "$line" != "$2"* ]]; then
    echo "wrong mode for /$1: $line"; fail=1
  fi
}
# The unit runs /usr/bin/loopchat-server, reads /etc/default/loopchat.
need usr/bin/loopchat-server -rwxr-xr-x
need usr/bin/loopchat -rwxr-xr-x
need usr/bin/loopchat-bench -rwxr-xr-x
# cargo-deb 3 puts units in /usr/lib/systemd/system (merged /usr: on
# Debian 12 and later /lib is /usr/lib); older ones in /lib/systemd/system.
for unit in loopchat.service loopchat.socket; do
  if ! echo "$contents" | grep -qE "^-rw-r--r-- .* \./(usr/)?lib/systemd/system/$unit\$"; then
    echo "missing from the package: /usr/lib/systemd/system/$unit"; fail=1
  fi
done
need etc/default/loopchat -rw-r--r--
need usr/share/doc/loopchat/README.md
need usr/share/doc/loopchat/copyright
for man in usr/share/man/man8/loopchat-server.8 usr/share/man/man1/loopchat.1; do
  if ! echo "$contents" | grep -qE " \./$man(\.gz)?\$"; then
    echo "missing from the package: /$man"; fail=1
  fi
done
# What the unit names must match what the package installs.
grep -q '^ExecStart=/usr/bin/loopchat-server ' dist/loopchat.service || { echo "ExecStart path changed"; fail=1; }
grep -q '^EnvironmentFile=-/etc/default/loopchat$' dist/loopchat.service || { echo "EnvironmentFile changed"; fail=1; }
# /etc/default/loopchat is a conffile (an admin's edits survive upgrades).
dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./conffiles | grep -qx /etc/default/loopchat \
  || { echo "/etc/default/loopchat is not a conffile"; fail=1; }
echo "$info" | grep -q '^ Package: loopchat$' || { echo "bad Package field"; fail=1; }
[ "$fail" = 0 ] || exit 1
echo "debian package: ok ($deb, $(stat -c %s "$deb") bytes)"
