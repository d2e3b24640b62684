"""Steady open-loop load through the load balancer: a fixed number of requests per second,
each sent on time whatever the previous ones did (a slow or failing replica does not slow
the load down, as real clients do not), half provider-token exchanges (RFC 8693) and half
service-account JWT bearer grants (RFC 7523) with a fresh single-use assertion each.
Every outcome is recorded with its time, status and the token issued.
"""

import base64
import http.client
import itertools
import json
import socket
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
JWT_TYPE = "urn:ietf:params:oauth:token-type:jwt"
REFERENCE = "urn:ferry:params:oauth:token-type:reference_token"
AUDIENCE = "https://deploy.example.com"

_jti = itertools.count()


@dataclass
class Answer:
    status: str  # "200", "503", "proxy:refused", "client:refused", ...
    body: bytes = b""
    backend: int | None = None

    @property
    def ok(self):
        return self.status == "200"


def post(host_port: str, path: str, form: dict, basic: tuple | None = None, timeout=15) -> Answer:
    host, port = host_port.rsplit(":", 1)
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if basic:
        headers["Authorization"] = "Basic " + base64.b64encode(f"{basic[0]}:{basic[1]}".encode()).decode()
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request("POST", path, body=urllib.parse.urlencode(form), headers=headers)
        r = conn.getresponse()
        body = r.read()
        proxy = r.getheader("X-Chaos-Proxy")
        backend = r.getheader("X-Chaos-Backend")
        status = f"proxy:{proxy}" if proxy else str(r.status)
        return Answer(status, body, int(backend) if backend is not None else None)
    except ConnectionRefusedError:
        return Answer("client:refused")
    except (socket.timeout, TimeoutError):
        return Answer("client:timeout")
    except (OSError, http.client.HTTPException):
        return Answer("client:reset")
    finally:
        conn.close()


def assertion(world) -> str:
    t = int(time.time())
    return world.sa_key.jwt({"iss": "builder", "sub": "builder", "aud": world.iss, "iat": t, "exp": t + 300,
                             "jti": f"chaos-{world.run_id}-{next(_jti)}"})


def subject_token(world, sub: str) -> str:
    t = int(time.time())
    return world.idp_key.jwt({"iss": world.idp_iss, "sub": sub, "aud": world.iss, "iat": t, "exp": t + 3600})


def exchange_form(subject: str, reference=False) -> dict:
    form = {"grant_type": TOKEN_EXCHANGE, "subject_token": subject, "subject_token_type": JWT_TYPE,
            "audience": AUDIENCE}
    if reference:
        form["requested_token_type"] = REFERENCE
    return form


def bearer_form(a: str) -> dict:
    return {"grant_type": JWT_BEARER, "assertion": a, "audience": AUDIENCE}


def token_of(answer: Answer) -> str | None:
    if not answer.ok:
        return None
    try:
        return json.loads(answer.body)["access_token"]
    except (ValueError, KeyError):
        return None


@dataclass
class Outcome:
    at: float  # seconds since the load started, when sent
    done: float  # when the answer arrived
    kind: str  # "exchange" | "jwt-bearer"
    status: str
    backend: int | None
    token: str | None


@dataclass
class Load:
    world: object
    target: str
    rate: float
    outcomes: list = field(default_factory=list)

    def __post_init__(self):
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.subjects = [subject_token(self.world, f"load-{i}") for i in range(8)]
        self.pool = ThreadPoolExecutor(max_workers=48)
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.t0 = None

    def start(self):
        self.t0 = time.monotonic()
        self.thread.start()
        return self

    def now(self):
        return time.monotonic() - self.t0

    def one(self, n: int, at: float):
        if n % 2 == 0:
            kind, form = "exchange", exchange_form(self.subjects[n % len(self.subjects)])
        else:
            kind, form = "jwt-bearer", bearer_form(assertion(self.world))
        a = post(self.target, "/token", form)
        with self.lock:
            self.outcomes.append(Outcome(at, self.now(), kind, a.status, a.backend, token_of(a)))

    def run(self):
        interval = 1.0 / self.rate
        for n in itertools.count():
            due = n * interval
            delay = due - self.now()
            if delay > 0:
                if self.stop.wait(delay):
                    break
            elif self.stop.is_set():
                break
            self.pool.submit(self.one, n, due)

    def finish(self):
        self.stop.set()
        self.thread.join()
        self.pool.shutdown(wait=True)
        return self.outcomes
