"""The run's shared parts (one PostgreSQL cluster, one misbehaving issuer, the keys of the
issuer and of the service account) and, per scenario, a fresh environment: its own
database, its own Redis, three Ferry replicas on fixed loopback ports and the load
balancer in front of them.
"""

import base64
import hashlib
import json
import os
import secrets
import signal
import subprocess
import time

import p256
from infra import Postgres, Procs, Redis, Replica, announced_port, http_status, spawn_python, wait_until

REPLICAS = ("a", "b", "c")

CONFIG = """\
issuer: {iss}
data_dir: data
limits: {{ rate_per_source: 100000, rate_global: 100000, rate_per_provider: 100000, rate_per_client: 100000, max_replay_entries_per_principal: 1000000 }}
tokens: {{ default_ttl: 5m, max_ttl: 5m, min_ttl: 10s }}
replay: {{ redis: "redis://127.0.0.1:{redis}", timeout: 1s }}
signing:
  rotation_period: {rotation}
  jwks_max_age: 2s
  leeway: 1s
  key_encryption_keys: [{keks}]
  postgres: {{ url: {{ env: FERRY_POSTGRES_URL }}, poll_interval: 250ms, timeout: 2s }}
outbound: {{ allow_insecure_origins: ["{idp}"], connect_timeout: 1s, timeout: 2s }}
service_accounts:
  - id: builder
    jwks: {{ inline: {sa_jwks} }}
clients:
  - {{ id: gateway, auth: client_secret_basic, secret_sha256: {gw_hash}, introspect: true }}
providers:
  - id: idp
    kind: oidc
    issuer: {idp}
    audiences: [{iss}]
    algorithms: [ES256]
    cache: {{ min_ttl: 10s, max_ttl: 10s, default_ttl: 10s, max_staleness: 1h, error_ttl: {error_ttl}s, refetch_interval: 5s }}
audiences:
  - audience: https://deploy.example.com
    rules:
      - allow: provider == 'service-account' && subject == 'builder'
        scopes: [deploy]
      - allow: provider == 'idp'
        scopes: [deploy]
{revocation}
"""

ERROR_TTL = 5
OLD_KEK = [("FERRY_KEK", None)]


class World:
    def __init__(self, work: str, ferry: str):
        self.work = work
        self.ferry = ferry
        self.procs = Procs(work)
        self.run_id = secrets.token_hex(4)
        self.kek = base64.b64encode(secrets.token_bytes(32)).decode()
        self.kek_new = base64.b64encode(secrets.token_bytes(32)).decode()
        self.idp_key = p256.Key()
        self.sa_key = p256.Key()
        self.pg = Postgres(self.procs, work)
        jwks_path = os.path.join(work, "idp-jwks.json")
        with open(jwks_path, "w") as f:
            json.dump({"keys": [self.idp_key.public_jwk()]}, f)
        log = os.path.join(work, "issuer.log")
        spawn_python(self.procs, "issuer.py", ["--jwks", jwks_path], log)
        self.idp_port = announced_port(log, "listening on", "the issuer's port")
        self.idp_control = announced_port(log, "control on", "the issuer's control port")
        self.idp_iss = f"http://127.0.0.1:{self.idp_port}"
        wait_until(lambda: http_status(f"127.0.0.1:{self.idp_control}", "/stats") == 200, 20, "the issuer")
        self.iss = None
        self.dbs = 0
        self.revocation = None

    def idp(self, mode: str):
        import http.client
        c = http.client.HTTPConnection("127.0.0.1", self.idp_control, timeout=5)
        c.request("POST", f"/mode/{mode}")
        c.getresponse().read()
        c.close()

    def idp_stats(self) -> dict:
        from infra import json_get
        return json_get(f"127.0.0.1:{self.idp_control}", "/stats")[1]

    def new_db(self) -> str:
        self.dbs += 1
        name = f"chaos{self.dbs}"
        self.pg.psql(f"CREATE DATABASE {name}")
        return self.pg.url(name)

    def config(self, iss, redis_port, keks, revocation, rotation="8s") -> str:
        return CONFIG.format(
            iss=iss, redis=redis_port, idp=self.idp_iss, error_ttl=ERROR_TTL, rotation=rotation,
            keks=", ".join(f"{{ env: {k} }}" for k in keks),
            sa_jwks=json.dumps({"keys": [self.sa_key.public_jwk()]}),
            gw_hash=hashlib.sha256(b"gw-secret").hexdigest(),
            revocation=revocation)

    def env(self, db_url, new_kek=False) -> dict:
        e = {"FERRY_KEK": self.kek, "FERRY_POSTGRES_URL": db_url}
        if new_kek:
            e["FERRY_KEK_NEW"] = self.kek_new
        return e

    def detect_revocation_section(self):
        """The revocation settings this binary needs for shared replicas: none on a binary
        that keeps revocations beside the replay state, `revocation: {postgres: …}` once
        `ferry check` refuses per-node revocations beside shared replay state.
        CHAOS_REVOCATION_CONFIG overrides (a line of YAML, or empty)."""
        if "CHAOS_REVOCATION_CONFIG" in os.environ:
            self.revocation = os.environ["CHAOS_REVOCATION_CONFIG"]
            return
        d = os.path.join(self.work, "check")
        os.makedirs(d, exist_ok=True)
        path = os.path.join(d, "ferry.yaml")
        errors = []
        for candidate in ("", "revocation: { postgres: { url: { env: FERRY_POSTGRES_URL } } }",
                          "revocation: { postgres: {} }"):
            with open(path, "w") as f:
                f.write(self.config("http://127.0.0.1:1", 1, ["FERRY_KEK"], candidate))
            out = subprocess.run([self.ferry, "check", "--config", path], capture_output=True, text=True,
                                 env={**os.environ, **self.env(self.pg.url("postgres"))})
            if out.returncode == 0:
                self.revocation = candidate
                return
            errors.append(out.stdout + out.stderr)
        raise RuntimeError("ferry check refuses every candidate configuration:\n" + "\n".join(errors))


class Env:
    """One scenario's environment."""

    def __init__(self, world: World, name: str, rotation: str = "8s"):
        self.world = world
        self.rotation = rotation
        self.dir = os.path.join(world.work, name)
        os.makedirs(self.dir)
        self.redis = Redis(world.procs, self.dir, "redis")
        self.db = world.new_db()
        self.replicas = []
        for n in REPLICAS:
            d = os.path.join(self.dir, n)
            os.makedirs(d)
            self.replicas.append(Replica(world.procs, world.ferry, d, n, world.env(self.db)))
        # The load balancer first: Ferry's issuer is its URL, on a port the kernel picks.
        log = os.path.join(self.dir, "proxy.log")
        self.proxy_proc = spawn_python(world.procs, "proxy.py", [
            "--backends", ",".join(r.addr for r in self.replicas)], log)
        self.proxy_port = announced_port(log, "listening on", "the load balancer's port")
        self.proxy = f"127.0.0.1:{self.proxy_port}"
        self.iss = f"http://127.0.0.1:{self.proxy_port}"
        world.iss = self.iss
        for r in self.replicas:
            self.write_config(r, ["FERRY_KEK"])
        # The first replica creates the schema and the ring; the others join it.
        self.replicas[0].start()
        for r in self.replicas[1:]:
            r.start(wait=False)
        for r in self.replicas[1:]:
            r.wait_ready()
        wait_until(lambda: all(http_status(r.addr, "/readyz") == 200 for r in self.replicas), 30,
                   "every replica ready")
        wait_until(lambda: http_status(self.proxy, "/readyz") == 200, 10, "the load balancer")
        time.sleep(1.1)  # one more readiness poll: the balancer routes to all three

    def write_config(self, replica, keks):
        with open(replica.config, "w") as f:
            f.write(self.world.config(self.iss, self.redis.port, keks, self.world.revocation, self.rotation))

    def wait_public_ready(self, replica, seconds=30):
        wait_until(lambda: http_status(replica.addr, "/readyz") == 200, seconds, f"{replica.name} /readyz 200")

    def teardown(self):
        for r in self.replicas:
            r.signal(signal.SIGKILL)
        for r in self.replicas:
            if r.proc is not None:
                r.proc.wait()
        self.proxy_proc.kill()
        self.proxy_proc.wait()
        self.redis.proc and self.redis.proc.kill()
        self.redis.proc and self.redis.proc.wait()
