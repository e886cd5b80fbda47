"""Server memory per idle connection, plain vs TLS (docs/benchmarks.md).

    idle_memory.py SERVER_BINARY N [N ...]

For each N, starts SERVER_BINARY with a fresh self-signed certificate,
opens N connections that join (a nick each) and then stay idle, and
prints the server's VmRSS before and after, per connection: once over
plain TCP, once over TLS (handshake done, then the same join). Joins are
quiet (--quiet-joins-above 10) so that no join notice traffic is queued.
"""
import os
import resource
import socket
import ssl
import subprocess
import sys
import tempfile
import time


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def start(binary, n, cert, key):
    args = [
        binary, "--listen", "127.0.0.1:0", "--tls-cert", cert, "--tls-key", key,
        "--tls-listen", "127.0.0.1:0", "--max-clients", str(n + 100),
        "--quiet-joins-above", "10", "--log-level", "warn",
    ]
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                         preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (n + 200, n + 200)))
    plain = int(p.stdout.readline().split(b":")[-1])
    tls = int(p.stdout.readline().split(b":")[-1])
    return p, plain, tls


def measure(binary, n, cert, key, use_tls):
    p, plain_port, tls_port = start(binary, n, cert, key)
    time.sleep(0.3)
    before = rss_kib(p.pid)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    socks = []
    for i in range(n):
        s = socket.create_connection(("127.0.0.1", tls_port if use_tls else plain_port))
        if use_tls:
            s = ctx.wrap_socket(s, server_hostname="localhost")
        s.sendall(f"u{i}\n".encode())
        socks.append(s)
    # Read each one's greeting, so that nothing is left queued server-side.
    for s in socks:
        s.settimeout(5)
        got = b""
        while b"Welcome, u" not in got:
            data = s.recv(4096)
            if not data:
                break
            got += data
    time.sleep(1.5)
    after = rss_kib(p.pid)
    p.terminate()
    p.wait()
    for s in socks:
        s.close()
    return before, after


def main():
    binary = sys.argv[1]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    with tempfile.TemporaryDirectory() as d:
        cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
                        "-subj", "/CN=localhost", "-keyout", key, "-out", cert],
                       check=True, capture_output=True)
        for n in map(int, sys.argv[2:]):
            for use_tls in (False, True):
                before, after = measure(binary, n, cert, key, use_tls)
                per = (after - before) * 1024 / n
                kind = "tls  " if use_tls else "plain"
                print(f"{kind} n={n:5}: VmRSS {before} -> {after} KiB, {per:.0f} bytes per idle connection", flush=True)


main()
