#!/usr/bin/env bash
# WebSocket conformance: Autobahn|Testsuite's fuzzingclient against
# examples/ws_echo.rs (the server's WsFramer and SendQueue in a loop of their
# own), with the spec in .ci/autobahn/fuzzingclient.json: every case but
# 12.* and 13.* (permessage-deflate, which loopchat does not offer) must end
# OK, NON-STRICT or INFORMATIONAL. wstest always exits 0, so its index.json
# is read (.ci/autobahn/check.py). The report: target/autobahn/reports/
# (index.html). About 50 s for the 301 cases; the echo server is the
# debug build, which .ci/run builds anyway (wstest is the slow side).
#
# wstest is installed if missing (.ci/install-wstest.sh, about 25 s, Debian
# and PyPI packages): into $WSTEST_PREFIX if set, else /opt/wstest if it
# holds one already, else target/wstest (under $CARGO_TARGET_DIR if set).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

target=${CARGO_TARGET_DIR:-$root/target}
work=$target/autobahn
rm -rf "$work"
mkdir -p "$work"

prefix=${WSTEST_PREFIX:-}
if [ -z "$prefix" ]; then
  if [ -x /opt/wstest/wstest ]; then prefix=/opt/wstest; else prefix=$target/wstest; fi
fi
if ! [ -x "$prefix/wstest" ]; then
  echo "== installing wstest into $prefix"
  # Its output (Python 2 deprecation notices) only if it fails.
  if ! PREFIX="$prefix" sh .ci/install-wstest.sh >"$work/install.log" 2>&1; then
    cat "$work/install.log"
    echo "autobahn: could not install wstest"
    exit 1
  fi
fi
command -v python3 >/dev/null || { echo "autobahn: python3 is needed to read the report"; exit 1; }

echo "== cargo build --example ws_echo"
cargo build --example ws_echo

# Port 0: the echo server picks a free port and prints it.
"$target/debug/examples/ws_echo" 0 >"$work/ws_echo.out" 2>"$work/ws_echo.err" &
echo_pid=$!
trap 'kill "$echo_pid" 2>/dev/null || true' EXIT
addr=
for _ in $(seq 100); do
  addr=$(sed -n 's/^listening on //p' "$work/ws_echo.out")
  [ -n "$addr" ] && break
  sleep 0.1
done
if [ -z "$addr" ]; then
  echo "autobahn: ws_echo did not start"
  cat "$work/ws_echo.err"
  exit 1
fi
sed "s/@ADDR@/$addr/" .ci/autobahn/fuzzingclient.json >"$work/fuzzingclient.json"

echo "== wstest -m fuzzingclient against ws_echo on $addr"
start=$(date +%s)
if ! (cd "$work" && timeout 1800 "$prefix/wstest" -m fuzzingclient -s fuzzingclient.json >wstest.log 2>&1); then
  echo "autobahn: wstest failed or timed out"
  tail -n 20 "$work/wstest.log"
  exit 1
fi
echo "autobahn: wstest took $(($(date +%s) - start)) s"
if ! kill -0 "$echo_pid" 2>/dev/null; then
  echo "autobahn: ws_echo died during the run"
  cat "$work/ws_echo.err"
  exit 1
fi
python3 .ci/autobahn/check.py "$work/reports/index.json"
