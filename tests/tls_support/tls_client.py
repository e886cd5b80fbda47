"""TLS clients for tests/tls.rs, on Python's `ssl` (OpenSSL, an
implementation independent of rustls). Certificates are not verified: the
tests use a self-signed one and compare its fingerprint instead.

    tls_client.py lines HOST PORT   stdin lines -> socket; prints
                                    `OPEN <sha256 of the server's cert>`,
                                    then `LINE <text>` per line received,
                                    then `CLOSED` at the server's end
    tls_client.py get HOST PORT PATH    one HTTPS request; prints the response
    tls_client.py stall HOST PORT NICK  handshake, send NICK, print `OPEN`,
                                    then never read until stdin ends
    tls_client.py wss URL           like websocket_support/ws_client.py,
                                    over wss:// (needs `websockets`)
"""
import hashlib
import os
import selectors
import socket
import ssl
import sys
import threading


def context():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def connect(host, port):
    raw = socket.create_connection((host, int(port)), timeout=15)
    return context().wrap_socket(raw, server_hostname="localhost")


def lines(host, port):
    # One thread: OpenSSL's SSL object must not be read in one thread while
    # another writes to it (that lost lines now and then), so stdin and the
    # socket are multiplexed with select, like a little event loop.
    s = connect(host, port)
    cert = s.getpeercert(binary_form=True)
    print("OPEN " + hashlib.sha256(cert).hexdigest(), flush=True)
    s.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(s, selectors.EVENT_READ)
    sel.register(0, selectors.EVENT_READ)
    buf = b""
    open_ = True
    while open_:
        for key, _ in sel.select():
            if key.fileobj == 0:
                data = os.read(0, 4096)
                if not data:
                    sel.unregister(0)
                    continue
                try:
                    s.setblocking(True)
                    s.sendall(data)
                    s.setblocking(False)
                except (OSError, ssl.SSLError):
                    sel.unregister(0)
                continue
            try:
                while True:
                    data = s.recv(4096)
                    if not data:
                        open_ = False
                        break
                    buf += data
                    while b"\n" in buf:
                        line, buf = buf.split(b"\n", 1)
                        text = line.rstrip(b"\r").decode("utf-8", "replace")
                        print("LINE " + text, flush=True)
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                pass
            except (OSError, ssl.SSLError):
                open_ = False
    print("CLOSED", flush=True)


def stall(host, port, nick):
    s = connect(host, port)
    s.sendall(f"{nick}\n".encode())
    print("OPEN", flush=True)
    sys.stdin.read()
    s.close()


def get(host, port, path):
    s = connect(host, port)
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
    out = b""
    try:
        while True:
            data = s.recv(4096)
            if not data:
                break
            out += data
    except (OSError, ssl.SSLError):
        pass
    sys.stdout.write(out.decode("utf-8", "replace"))


def wss(url):
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect as ws_connect

    with ws_connect(url, ssl=context(), compression=None, open_timeout=10) as ws:
        print("OPEN", flush=True)

        def pump():
            try:
                for line in sys.stdin:
                    ws.send(line.rstrip("\n"))
                ws.close()
            except ConnectionClosed:
                pass

        threading.Thread(target=pump, daemon=True).start()
        try:
            for msg in ws:
                print("MSG " + msg, flush=True)
        except ConnectionClosed:
            pass
        print(f"CLOSED {ws.close_code}", flush=True)


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "lines":
        lines(sys.argv[2], sys.argv[3])
    elif mode == "stall":
        stall(sys.argv[2], sys.argv[3], sys.argv[4])
    elif mode == "get":
        get(sys.argv[2], sys.argv[3], sys.argv[4])
    elif mode == "wss":
        wss(sys.argv[2])
