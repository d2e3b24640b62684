"""A tiny round-robin HTTP load balancer on loopback, as a cloud load balancer or a
Kubernetes Service with readiness would behave: it polls each replica's public /readyz
every 500 ms and routes only to replicas whose last poll answered 200. It does not retry
(a POST is not idempotent: a load balancer passes a refused or reset connection on to
the client as 502), so every request a replica refuses is counted by the load.

    python3 proxy.py --backends 127.0.0.1:A,127.0.0.1:B,127.0.0.1:C

It listens on a port the kernel picks and says which at start (`listening on 127.0.0.1:P`).

Each answer carries `X-Chaos-Backend: <index>`; a proxy-made answer carries
`X-Chaos-Proxy: <reason>` (`refused`, `reset`, `timeout`, `no-backend`).
"""

import argparse
import http.client
import itertools
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

POLL = 0.5


class Pool:
    def __init__(self, backends):
        self.backends = backends
        self.ready = [False] * len(backends)
        self.counter = itertools.count()

    def poll_forever(self):
        while True:
            for i, (host, port) in enumerate(self.backends):
                ok = False
                try:
                    c = http.client.HTTPConnection(host, port, timeout=0.4)
                    c.request("GET", "/readyz")
                    ok = c.getresponse().status == 200
                    c.close()
                except (OSError, http.client.HTTPException):
                    ok = False
                self.ready[i] = ok
            time.sleep(POLL)

    def pick(self):
        ready = [i for i, ok in enumerate(self.ready) if ok]
        if not ready:
            return None
        return ready[next(self.counter) % len(ready)]


def handler(pool: Pool):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def forward(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            i = pool.pick()
            if i is None:
                return self.own(503, "no-backend", None)
            host, port = pool.backends[i]
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "keep-alive")}
            headers["X-Forwarded-For"] = self.client_address[0]
            conn = http.client.HTTPConnection(host, port, timeout=15)
            try:
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
            except ConnectionRefusedError:
                return self.own(502, "refused", i)
            except (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected,
                    http.client.IncompleteRead):
                return self.own(502, "reset", i)
            except (socket.timeout, TimeoutError):
                return self.own(504, "timeout", i)
            except (OSError, http.client.HTTPException):
                return self.own(502, "reset", i)
            finally:
                conn.close()
            self.send_response(resp.status)
            for k, v in resp.getheaders():
                if k.lower() not in ("connection", "keep-alive", "transfer-encoding", "content-length"):
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("X-Chaos-Backend", str(i))
            self.end_headers()
            self.wfile.write(data)

        def own(self, status, reason, i):
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.send_header("X-Chaos-Proxy", reason)
            if i is not None:
                self.send_header("X-Chaos-Backend", str(i))
            self.end_headers()

        do_GET = forward
        do_POST = forward

    return Handler


class Server(ThreadingHTTPServer):
    daemon_threads = True
    # The listen backlog (the default, 5, drops connections of a burst of load).
    request_queue_size = 512


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--backends", required=True)
    args = ap.parse_args()
    backends = []
    for b in args.backends.split(","):
        host, port = b.rsplit(":", 1)
        assert host == "127.0.0.1", "loopback only"
        backends.append((host, int(port)))
    pool = Pool(backends)
    threading.Thread(target=pool.poll_forever, daemon=True).start()
    server = Server(("127.0.0.1", 0), handler(pool))
    print(f"listening on 127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
