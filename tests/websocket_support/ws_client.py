"""A WebSocket client for tests/websocket.rs, built on Python's `websockets`
(an independent implementation of RFC 6455).

    ws_client.py URL [SUBPROTOCOL] [ORIGIN]

Connects, prints `OPEN <subprotocol>`, then bridges: each line read on stdin
is sent as one message (text, or binary for binary.ircv3.net); each message
received is printed as `MSG <text>`. When the server closes, prints
`CLOSED <code>`; an end of stdin closes from our side.
"""
import sys
import threading

from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

url = sys.argv[1]
proto = sys.argv[2] if len(sys.argv) > 2 and sys.argv[2] else None
origin = sys.argv[3] if len(sys.argv) > 3 and sys.argv[3] else None
binary = proto == "binary.ircv3.net"



def pump(ws):
    try:
        for line in sys.stdin:
            text = line.rstrip("\n")
            ws.send(text.encode() if binary else text)
        ws.close()
    except ConnectionClosed:
        pass


try:
    with connect(
        url,
        subprotocols=[proto] if proto else None,
        origin=origin,
        max_size=None,
        compression=None,
        open_timeout=10,
    ) as ws:
        print(f"OPEN {ws.subprotocol or ''}", flush=True)
        threading.Thread(target=pump, args=(ws,), daemon=True).start()
        try:
            for msg in ws:
                if isinstance(msg, bytes):
                    msg = msg.decode("utf-8", "replace")
                print("MSG " + msg, flush=True)
        except ConnectionClosed:
            pass
        print(f"CLOSED {ws.close_code}", flush=True)
except InvalidStatus as e:
    print(f"REFUSED {e.response.status_code}", flush=True)
