"""A burst of TLS handshakes against a running server, for the longest
loop turn it causes (docs/benchmarks.md, "TLS").

    handshake_burst.py SERVER_BINARY [N]

Starts SERVER_BINARY with --trace-turns and a fresh self-signed P-256
certificate, has two plain users ping-pong chat lines, opens N (200) TLS
connections at once from threads, and prints the chat round trips (p50,
p99, max) during the burst and the longest turns from the server's log.
"""
import os
import re
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time


def main():
    binary = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 200
    with tempfile.TemporaryDirectory() as d:
        cert, key, log = (os.path.join(d, f) for f in ("cert.pem", "key.pem", "log"))
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
                        "-subj", "/CN=localhost", "-keyout", key, "-out", cert],
                       check=True, capture_output=True)
        p = subprocess.Popen([binary, "--listen", "127.0.0.1:0", "--tls-cert", cert,
                              "--tls-key", key, "--tls-listen", "127.0.0.1:0",
                              "--max-clients", str(n + 100), "--max-rate", "0",
                              "--quiet-joins-above", "10", "--trace-turns"],
                             stdout=subprocess.PIPE, stderr=open(log, "w"))
        plain = int(p.stdout.readline().split(b":")[-1])
        tls_port = int(p.stdout.readline().split(b":")[-1])

        def join(nick):
            s = socket.create_connection(("127.0.0.1", plain))
            s.sendall(f"{nick}\n".encode())
            f = s.makefile("rb")
            while b"Welcome, " + nick.encode() not in f.readline():
                pass
            return s, f

        a, _ = join("pinger")
        b, bf = join("ponger")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        socks = []
        go = threading.Event()

        def hello():
            go.wait()
            s = socket.create_connection(("127.0.0.1", tls_port))
            socks.append(ctx.wrap_socket(s, server_hostname="localhost"))

        threads = [threading.Thread(target=hello) for _ in range(n)]
        for t in threads:
            t.start()
        rtts = []
        t0 = time.monotonic()
        go.set()
        i = 0
        while any(t.is_alive() for t in threads) or i < 20:
            sent = time.monotonic()
            a.sendall(f"ping {i}\n".encode())
            while f"ping {i}".encode() not in bf.readline():
                pass
            rtts.append((time.monotonic() - sent) * 1000)
            i += 1
        burst = time.monotonic() - t0
        p.terminate()
        p.wait()
        rtts.sort()
        q = lambda x: rtts[min(len(rtts) - 1, int(x * len(rtts)))]
        print(f"{len(socks)} handshakes in {burst * 1000:.0f} ms; {len(rtts)} chat round trips meanwhile: "
              f"p50 {q(0.5):.2f} ms, p99 {q(0.99):.2f} ms, max {rtts[-1]:.2f} ms")
        print("\n".join(l for l in open(log).read().splitlines() if re.search(r"took (\d\d+\.\d+) ms", l))[:3000])
        took = [float(m) for m in re.findall(r"took ([0-9.]+) ms", open(log).read())]
        took.sort()
        print(f"longest turns: {', '.join(f'{t:.2f}' for t in took[-5:])} ms")


main()
