#!/usr/bin/env bash
# Server RSS per idle joined connection, line dialect or IRC (issue 10).
#
#   benches/idle_rss.sh SERVER_BINARY line|irc [CLIENTS [CONNECTS_PER_S [HOLD_S]]]
#
# Starts SERVER_BINARY on 127.0.0.1:0 (--max-clients 20000 --max-per-ip 0
# --max-rate 0 --log-level warn), reads VmRSS of the empty server from
# /proc/PID/status, joins CLIENTS (default 10000) idle users at
# CONNECTS_PER_S (default 500) and holds them HOLD_S seconds (default 5;
# longer than the server's one quiet second before it trims its heap), then
# prints one JSON object with the RSS at the end of the hold, the threads
# and (end - empty) / held in bytes, and stops the server.
#
# line: `loopchat-bench idle` (target/release/loopchat-bench; build it with
#       `cargo build --release --bin loopchat-bench`), which joins each user
#       in the default room (#lobby).
# irc:  benches/irc_idle.py (NICK/USER, 001 or 422, JOIN #lobby, 366).
#
# Each side (server, load) needs CLIENTS + a few descriptors: run it in a
# shell whose `ulimit -n` allows that (the load raises its soft limit to the
# hard one; the server is started from this shell).
set -euo pipefail
server=${1:?server binary}
kind=${2:?line or irc}
clients=${3:-10000}
rate=${4:-500}
hold=${5:-5}
here=$(cd "$(dirname "$0")/.." && pwd)

out=$(mktemp)
"$server" --listen 127.0.0.1:0 --max-clients 20000 --max-per-ip 0 --max-rate 0 \
    --log-level warn >"$out" 2>/dev/null &
pid=$!
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -f "$out"' EXIT
for _ in $(seq 50); do grep -q listening "$out" && break; sleep 0.1; done
addr=$(sed -n 's/^listening on //p' "$out" | head -1)
port=${addr##*:}
sleep 0.5
empty=$(awk '/^VmRSS:/{print $2}' /proc/$pid/status)

case $kind in
irc)
    python3 "$here/benches/irc_idle.py" --port "$port" --clients "$clients" \
        --rate "$rate" --hold "$hold" --server-pid "$pid" --join-timeout 120 \
        | python3 -c '
import json, sys
r = json.load(sys.stdin); s = r["server"]
print(json.dumps({"dialect": "irc", "clients": r["requested"], "held": r["held"],
    "join_s": r["join_s"], "failures": r["failures"], "rss_empty_kib": s["rss_empty_kib"],
    "rss_end_kib": s["rss_end_kib"], "rss_peak_kib": s["rss_peak_kib"],
    "threads": s["threads"], "rss_per_conn_b": s["rss_per_conn_b"]}))'
    ;;
line)
    "$here/target/release/loopchat-bench" idle "$addr" --clients "$clients" \
        --connect-rate "$rate" --duration "$hold" --join-timeout 120 \
        --server-pid "$pid" --json --quiet --allow-loss \
        | EMPTY=$empty python3 -c '
import json, os, sys
r = json.load(sys.stdin); s = r["server"]; c = r["connections"]
empty = int(os.environ["EMPTY"]); held = c["held"]
print(json.dumps({"dialect": "line", "clients": c["requested"], "held": held,
    "join_s": round(c["join_s"], 2), "failures": c["failures"], "rss_empty_kib": empty,
    "rss_end_kib": s["rss_end_kib"], "rss_peak_kib": s["rss_peak_kib"],
    "threads": s["threads"],
    "rss_per_conn_b": round((s["rss_end_kib"] - empty) * 1024 / held, 1) if held else None}))'
    ;;
*)
    echo "idle_rss.sh: line or irc, not $kind" >&2
    exit 2
    ;;
esac
