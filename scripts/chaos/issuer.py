"""A misbehaving OpenID Connect issuer on loopback: discovery and JWKS for one public key,
and, on command, 500s, refused connections (the listening socket closed) or hangs. It
counts every request it receives, so the chaos run can compare Ferry's fetches with the
bound `error_ttl` promises.

    python3 issuer.py --jwks FILE

It listens on two ports the kernel picks and says which at start (`listening on
127.0.0.1:P`, `control on 127.0.0.1:C`). While refusing, it keeps its port (infra.Port).
The control listener (loopback): `POST /mode/<ok|500|refuse|hang>`, `GET /stats`.
"""

import argparse
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from infra import Port


class State:
    def __init__(self, issuer: str, jwks: dict):
        self.issuer = issuer
        self.jwks = jwks
        self.mode = "ok"
        self.lock = threading.Lock()
        self.counts = {"discovery": 0, "jwks": 0, "other": 0}
        self.server = None


def serving_handler(state: State):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def do_GET(self):
            kind = {
                "/.well-known/openid-configuration": "discovery",
                "/jwks": "jwks",
            }.get(self.path.split("?")[0], "other")
            with state.lock:
                state.counts[kind] += 1
                mode = state.mode
            if mode == "refuse":
                # A connection kept alive from before the listener closed: cut it too.
                self.close_connection = True
                return
            if mode == "hang":
                # Hold the request without answering until the mode changes (at most 60 s).
                deadline = time.monotonic() + 60
                while state.mode == "hang" and time.monotonic() < deadline:
                    time.sleep(0.05)
                self.close_connection = True
                return
            if mode == "500":
                return self.reply(500, {"error": "internal"})
            if kind == "discovery":
                return self.reply(200, {"issuer": state.issuer, "jwks_uri": state.issuer + "/jwks"})
            if kind == "jwks":
                return self.reply(200, state.jwks)
            return self.reply(404, {"error": "not found"})

        def reply(self, status, body):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            # Short-lived keys: Ferry's own min_ttl decides how often it refreshes.
            self.send_header("Cache-Control", "max-age=1")
            self.end_headers()
            self.wfile.write(data)

    return Handler


def start_serving(state: State, port: Port):
    server = ThreadingHTTPServer(("127.0.0.1", port.port), serving_handler(state), bind_and_activate=False)
    server.socket.close()
    server.socket = port.listening()
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    state.server = server


def control_handler(state: State, port: Port):
    class Control(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            with state.lock:
                body = {"mode": state.mode, **state.counts}
            self.answer(body)

        def do_POST(self):
            mode = self.path.rsplit("/", 1)[-1]
            if mode not in ("ok", "500", "refuse", "hang"):
                self.send_response(400)
                self.end_headers()
                return
            with state.lock:
                previous = state.mode
                state.mode = mode
            if mode == "refuse" and state.server is not None:
                state.server.shutdown()
                state.server.server_close()
                state.server = None
            if previous == "refuse" and mode != "refuse":
                start_serving(state, port)
            self.answer({"mode": mode})

        def answer(self, body):
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Control


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--jwks", required=True)
    args = ap.parse_args()
    with open(args.jwks) as f:
        jwks = json.load(f)
    port = Port()
    state = State(f"http://127.0.0.1:{port.port}", jwks)
    start_serving(state, port)
    control = ThreadingHTTPServer(("127.0.0.1", 0), control_handler(state, port))
    print(f"listening on 127.0.0.1:{port.port}", flush=True)
    print(f"control on 127.0.0.1:{control.server_address[1]}", flush=True)
    control.serve_forever()


if __name__ == "__main__":
    main()
