#!/usr/bin/env python3
"""Idle IRC connections: server RSS per joined IRC user (issue 10).

loopchat-bench speaks only the line dialect, so this script measures the
IRC side of the idle figure in docs/benchmarks.md. It opens N connections
to a running loopchat-server, paced at --rate connects/s, registers each
one as an IRC client (`NICK iN`, `USER iN 0 * :x`), waits for 001 or 422
(end of registration), sends `JOIN #lobby`, counts the user as joined on
366 (end of NAMES for #lobby), and then holds every connection open while
reading (and discarding) what the server sends: every join is announced
to every member, N*(N-1)/2 JOIN lines in all, and a client that stops
reading would fill its send queue and be dropped as a slow reader.

With --server-pid it reads VmRSS and Threads from /proc/PID/status before
the first connect (the empty server) and at the end of the hold, and
reports (end - empty) / joined in bytes. The hold should be longer than a
second: the server returns freed memory to the OS (malloc_trim) only
after a second without events.

Usage, from the repository root (one shell, so the fd limit covers both):

    ulimit -n 20500
    target/release/loopchat-server --listen 127.0.0.1:0 --max-clients 20000 \\
        --max-per-ip 0 --log-level warn &     # prints `listening on ADDR:PORT`
    python3 benches/irc_idle.py --port PORT --clients 10000 --rate 500 \\
        --hold 5 --server-pid $!

Bounded: at most --clients connections, --join-timeout seconds to join
them, then --hold seconds; exit status 1 if not everyone joined. Prints
progress on stderr and one JSON object on stdout. Needs only the Python 3
standard library (Linux: /proc, epoll through `selectors`).
"""

import argparse
import errno
import json
import resource
import selectors
import socket
import sys
import time


def proc_status(pid):
    """VmRSS (KiB) and Threads of PID."""
    rss = threads = None
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("Threads:"):
                threads = int(line.split()[1])
    return rss, threads


CONNECTING, REGISTERING, JOINING, JOINED = range(4)


class Conn:
    __slots__ = ("sock", "n", "state", "buf", "out", "t0")

    def __init__(self, sock, n):
        self.sock = sock
        self.n = n
        self.state = CONNECTING
        self.buf = b""
        self.out = b""
        self.t0 = time.monotonic()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--clients", type=int, default=10000)
    ap.add_argument("--rate", type=float, default=500.0, help="connects per second")
    ap.add_argument("--hold", type=float, default=5.0, help="seconds to hold after the last join")
    ap.add_argument("--join-timeout", type=float, default=120.0)
    ap.add_argument("--server-pid", type=int)
    ap.add_argument("--channel", default="#lobby")
    args = ap.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < args.clients + 100:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    if soft < args.clients + 100:
        sys.exit(f"irc_idle: fd limit {soft} is too low for {args.clients} clients")

    empty = proc_status(args.server_pid) if args.server_pid else (None, None)
    sel = selectors.DefaultSelector()
    conns = {}
    failures = {}
    joined = 0
    started = 0
    scratch = bytearray(1 << 16)
    chan = args.channel.encode()

    def fail(c, kind):
        failures[kind] = failures.get(kind, 0) + 1
        conns.pop(c.sock.fileno(), None)
        try:
            sel.unregister(c.sock)
        except (KeyError, ValueError):
            pass
        c.sock.close()

    def send(c, data):
        c.out += data
        try:
            k = c.sock.send(c.out)
            c.out = c.out[k:]
        except BlockingIOError:
            pass
        if c.out:
            sel.modify(c.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, c)

    def on_lines(c):
        nonlocal joined
        *lines, c.buf = c.buf.split(b"\n")
        for raw in lines:
            line = raw.rstrip(b"\r")
            parts = line.split(b" ")
            if parts[0] == b"PING":
                send(c, b"PONG " + b" ".join(parts[1:]) + b"\r\n")
                continue
            if parts[0] == b"ERROR":
                return fail(c, "error:" + line.decode(errors="replace")[:60])
            cmd = parts[1] if len(parts) > 1 else b""
            if c.state == REGISTERING and cmd in (b"001", b"422"):
                c.state = JOINING
                send(c, b"JOIN " + chan + b"\r\n")
            elif c.state == REGISTERING and cmd in (b"432", b"433"):
                return fail(c, "nick_" + cmd.decode())
            elif c.state == JOINING and cmd == b"366" and len(parts) > 3 and parts[3] == chan:
                c.state = JOINED
                c.buf = b""
                joined += 1
                return
            elif c.state == JOINING and cmd in (b"403", b"405", b"471", b"473", b"474", b"475"):
                return fail(c, "join_" + cmd.decode())

    def on_event(c, mask):
        if c.state == CONNECTING:
            err = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                return fail(c, "connect_" + errno.errorcode.get(err, str(err)))
            c.state = REGISTERING
            sel.modify(c.sock, selectors.EVENT_READ, c)
            send(c, b"NICK i%d\r\nUSER i%d 0 * :x\r\n" % (c.n, c.n))
            return
        if mask & selectors.EVENT_WRITE and c.out:
            try:
                k = c.sock.send(c.out)
                c.out = c.out[k:]
            except BlockingIOError:
                pass
            if not c.out:
                sel.modify(c.sock, selectors.EVENT_READ, c)
        if mask & selectors.EVENT_READ:
            # Drain the socket; after joining, the bytes are discarded unread.
            while True:
                try:
                    k = c.sock.recv_into(scratch)
                except BlockingIOError:
                    break
                except ConnectionError as e:
                    return fail(c, "closed_" + type(e).__name__)
                if k == 0:
                    return fail(c, "closed_by_server" if c.state != JOINED else "closed_after_join")
                if c.state != JOINED:
                    c.buf += bytes(scratch[:k])
                    on_lines(c)
                    if c.sock.fileno() < 0:
                        return
                if k < len(scratch):
                    break

    def pump(timeout):
        for key, mask in sel.select(timeout):
            on_event(key.data, mask)

    t0 = time.monotonic()
    next_progress = t0 + 1
    deadline = t0 + args.join_timeout
    peak_rss = empty[0] or 0
    while True:
        now = time.monotonic()
        due = min(args.clients, int((now - t0) * args.rate) + 1)
        while started < due:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            e = s.connect_ex((args.host, args.port))
            c = Conn(s, started)
            started += 1
            if e not in (0, errno.EINPROGRESS):
                failures["connect_" + errno.errorcode.get(e, str(e))] = failures.get("connect_" + errno.errorcode.get(e, str(e)), 0) + 1
                s.close()
                continue
            conns[s.fileno()] = c
            sel.register(s, selectors.EVENT_WRITE, c)
        done = joined + sum(failures.values())
        if started >= args.clients and done >= args.clients:
            break
        if now >= deadline:
            failures["join_timeout"] = args.clients - done
            break
        if now >= next_progress:
            next_progress += 1
            if args.server_pid:
                peak_rss = max(peak_rss, proc_status(args.server_pid)[0])
            print(f"irc_idle: {now - t0:5.1f} s  started {started}  joined {joined}  failures {sum(failures.values())}",
                  file=sys.stderr)
        pump(0.002 if started < args.clients else 0.1)
    join_s = time.monotonic() - t0

    # Hold: keep reading (the tail of the join notices) for --hold seconds.
    hold_end = time.monotonic() + args.hold
    while time.monotonic() < hold_end:
        pump(max(0.0, min(0.2, hold_end - time.monotonic())))
        if args.server_pid:
            peak_rss = max(peak_rss, proc_status(args.server_pid)[0])
    held = sum(1 for c in conns.values() if c.state == JOINED and c.sock.fileno() >= 0)
    end = proc_status(args.server_pid) if args.server_pid else (None, None)
    result = {
        "workload": "irc_idle",
        "params": vars(args),
        "requested": args.clients,
        "joined": joined,
        "held": held,
        "join_s": round(join_s, 2),
        "failures": failures,
        "server": None if not args.server_pid else {
            "rss_empty_kib": empty[0],
            "rss_end_kib": end[0],
            "rss_peak_kib": peak_rss,
            "threads": end[1],
            "rss_per_conn_b": round((end[0] - empty[0]) * 1024 / held, 1) if held else None,
        },
    }
    print(json.dumps(result))
    for c in list(conns.values()):
        c.sock.close()
    sys.exit(0 if held == args.clients else 1)


if __name__ == "__main__":
    main()
