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

# Installed, on a disposable machine only (root, CI set): dpkg -i, then the
# installed server started the way the units start it. With systemd as PID
# 1, systemctl does it (the sandbox included). In a container without it
# (this project's CI), systemd-socket-activate passes the listening socket
# as LISTEN_FDS like loopchat.socket, and the server runs as an unprivileged
# user with the unit's arguments from /etc/default/loopchat and a state
# folder only it may enter (what DynamicUser= and StateDirectory= give);
# the sandbox itself cannot be checked there.
if [ -n "${CI:-}" ] && [ "$(id -u)" = 0 ]; then
  echo "== dpkg -i $deb"
  dpkg -i "$deb"
  /usr/bin/loopchat-server --version
  man -w loopchat-server >/dev/null && man -w loopchat >/dev/null
  hello() { # PORT: a line user gets the greeting
    python3 - "$1" <<'PY'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
s.sendall(b"debcheck\n")
line = s.makefile("rb").readline().decode().rstrip("\n")
want = "* Welcome to loopchat! What shall I call you?"
sys.exit(0 if line == want else f"port {sys.argv[1]}: got {line!r}")
PY
  }
  if [ "$(ps -p 1 -o comm=)" = systemd ]; then
    systemctl daemon-reload
    systemctl start loopchat.socket loopchat.service
    systemctl is-active loopchat.service
    hello 7878
    systemctl stop loopchat.service loopchat.socket
  else
    ( . /etc/default/loopchat
      install -d -m 0700 -o nobody -g nogroup /var/lib/loopchat
      port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
      # shellcheck disable=SC2086 # LOOPCHAT_ARGS is split, as systemd splits $VAR
      systemd-socket-activate -l "127.0.0.1:$port" --fdname=main \
        setpriv --reuid=nobody --regid=nogroup --clear-groups --no-new-privs \
        /usr/bin/loopchat-server $LOOPCHAT_ARGS >/dev/null 2>&1 &
      activator=$!
      ok=0
      for _ in $(seq 1 50); do
        if hello "$port" 2>/dev/null; then
          pgrep -u nobody -x loopchat-server >/dev/null && ok=1
          break
        fi
        sleep 0.2
      done
      kill "$activator" 2>/dev/null || true
      pkill -u nobody -f /usr/bin/loopchat-server 2>/dev/null || true
      wait 2>/dev/null || true
      rm -rf /var/lib/loopchat
      [ "$ok" = 1 ] || { echo "the installed server did not greet on the activated socket"; exit 1; }
      echo "installed server: greeted on a socket passed as LISTEN_FDS, running as nobody" )
  fi
  dpkg --purge loopchat
fi
