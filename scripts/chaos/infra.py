"""The parts the chaos run starts and breaks: a throwaway PostgreSQL cluster, Redis, Ferry
replicas, the load balancer and the misbehaving issuer, all on free loopback ports, the
same way the black-box tests start them (crates/ferry-testkit/src/postgres.rs,
tests/blackbox/replay.rs). Every process started is written to a pid file that
scripts/chaos.sh reads on exit, so nothing outlives the run even if this driver dies.
"""

import glob
import http.client
import json
import os
import pwd
import secrets
import signal
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_time(pid: int) -> str:
    """The process's start time (field 22 of /proc/PID/stat): with the pid, it names this
    process and no later one that reuses the pid."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return "?"


class Procs:
    """Every child process, recorded by pid so scripts/chaos.sh can end them by id."""

    def __init__(self, work: str):
        self.pidfile = os.path.join(work, "pids")
        self.children = []

    def spawn(self, args, log_path, env=None, preexec=None) -> subprocess.Popen:
        log = open(log_path, "ab")
        p = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                             env=env, preexec_fn=preexec)
        log.close()
        self.children.append(p)
        with open(self.pidfile, "a") as f:
            f.write(f"{p.pid} {start_time(p.pid)}\n")
        return p

    def stop_all(self):
        for p in self.children:
            if p.poll() is None:
                try:
                    p.kill()
                except OSError:
                    pass
        for p in self.children:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass


def http_status(host_port: str, path: str, timeout=0.5) -> int | None:
    host, port = host_port.rsplit(":", 1)
    try:
        c = http.client.HTTPConnection(host, int(port), timeout=timeout)
        c.request("GET", path)
        s = c.getresponse().status
        c.close()
        return s
    except (OSError, http.client.HTTPException):
        return None


def wait_until(cond, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise RuntimeError(f"timed out after {seconds:.0f}s waiting for {what}")


class Postgres:
    """A cluster with SCRAM over TCP, no durability; run as `postgres` when we are root."""

    def __init__(self, procs: Procs, work: str):
        versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                          key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
        if not versions:
            sys.exit("PostgreSQL server binaries not found: run scripts/install-test-deps.sh")
        self.bin = os.path.dirname(versions[-1])
        self.procs = procs
        self.dir = os.path.join(work, "pg")
        os.makedirs(self.dir)
        self.port = free_port()
        self.password = secrets.token_hex(12)
        self.proc = None
        self.owner = None
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            self.owner = (pw.pw_uid, pw.pw_gid)
            os.chown(self.dir, *self.owner)
        pwfile = os.path.join(self.dir, "pwfile")
        with open(pwfile, "w") as f:
            f.write(self.password)
        if self.owner:
            os.chown(pwfile, *self.owner)
        out = subprocess.run(self.cmd("initdb") + [
            "-D", os.path.join(self.dir, "data"), "-U", "postgres", "--auth-local=trust",
            "--auth-host=scram-sha-256", "-E", "UTF8", "--no-sync", f"--pwfile={pwfile}"],
            capture_output=True, text=True)
        if out.returncode != 0:
            sys.exit(f"initdb failed: {out.stderr}")
        self.start()

    def cmd(self, name):
        exe = os.path.join(self.bin, name)
        if self.owner:
            return ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--", exe]
        return [exe]

    def start(self):
        assert self.proc is None
        self.proc = self.procs.spawn(self.cmd("postgres") + [
            "-D", os.path.join(self.dir, "data"), "-p", str(self.port), "-k", self.dir,
            "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "synchronous_commit=off",
            "-c", "full_page_writes=off", "-c", "shared_buffers=16MB", "-c", "max_connections=60"],
            os.path.join(self.dir, "server.log"))
        wait_until(lambda: subprocess.run(
            [os.path.join(self.bin, "pg_isready"), "-q", "-h", "127.0.0.1", "-t", "1", "-p", str(self.port)]
        ).returncode == 0, 60, "PostgreSQL")

    def stop(self):
        """Fast shutdown: sessions are cut, as in a restart or a failover."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGINT)
            self.proc.wait(timeout=30)
            self.proc = None

    def url(self, db: str) -> str:
        return f"postgres://postgres:{self.password}@127.0.0.1:{self.port}/{db}"

    def psql(self, sql: str, db="postgres") -> str:
        out = subprocess.run(
            [os.path.join(self.bin, "psql"), "-X", "-At", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1",
             "-U", "postgres", "-p", str(self.port), "-c", sql, db],
            env={**os.environ, "PGPASSWORD": self.password}, capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(f"psql: {out.stderr.strip()}")
        return out.stdout


class Redis:
    """redis-server without persistence: a restart comes back empty, as the Compose file's
    did (and as a failover to an empty replica does)."""

    def __init__(self, procs: Procs, work: str, name: str):
        self.procs = procs
        self.log = os.path.join(work, f"{name}.log")
        self.port = free_port()
        self.proc = None
        self.start()

    def start(self):
        self.proc = self.procs.spawn(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no"], self.log)

        def up():
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    return s.recv(16).startswith(b"+PONG")
            except OSError:
                return False
        wait_until(up, 30, "redis-server")

    def stop(self):
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=30)
            self.proc = None


class Replica:
    """One `ferry serve` on fixed loopback ports (so a restart comes back where the load
    balancer expects it), with its own data directory and log."""

    def __init__(self, procs: Procs, ferry: str, dir: str, name: str, env: dict):
        self.procs, self.ferry, self.dir, self.name = procs, ferry, dir, name
        self.port, self.admin_port = free_port(), free_port()
        self.env = env
        self.proc = None
        self.config = os.path.join(dir, "ferry.yaml")
        self.starts = 0

    @property
    def addr(self):
        return f"127.0.0.1:{self.port}"

    @property
    def admin(self):
        return f"127.0.0.1:{self.admin_port}"

    def start(self, wait=True):
        self.starts += 1
        env = {k: v for k, v in os.environ.items() if not k.startswith(("FERRY_", "RUST_LOG"))}
        env.update(self.env)
        env["FERRY_LISTEN"] = self.addr
        env["FERRY_ADMIN_LISTEN"] = self.admin
        self.proc = self.procs.spawn([self.ferry, "serve", "--config", self.config],
                                     os.path.join(self.dir, f"ferry-{self.starts}.log"), env=env)
        if wait:
            self.wait_ready()

    def wait_ready(self, seconds=30):
        def ready():
            if self.proc.poll() is not None:
                raise RuntimeError(f"replica {self.name} exited ({self.proc.returncode}); see {self.log_tail()}")
            # The public listener answers and the admin listener is up.
            return http_status(self.addr, "/healthz") == 200 and http_status(self.admin, "/metrics") == 200
        wait_until(ready, seconds, f"replica {self.name}")

    def log_tail(self):
        return os.path.join(self.dir, f"ferry-{self.starts}.log")

    def signal(self, sig):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def wait_exit(self, seconds) -> float:
        t = time.monotonic()
        try:
            self.proc.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return time.monotonic() - t

    def metric(self, name: str) -> float:
        """The sum of a metric's samples at the admin listener (0 when absent)."""
        host, port = self.admin.rsplit(":", 1)
        try:
            c = http.client.HTTPConnection(host, int(port), timeout=2)
            c.request("GET", "/metrics")
            text = c.getresponse().read().decode()
            c.close()
        except (OSError, http.client.HTTPException):
            return float("nan")
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name + "{") or line.startswith(name + " "):
                try:
                    total += float(line.rsplit(" ", 1)[1])
                except ValueError:
                    pass
        return total


def spawn_python(procs: Procs, script: str, args: list, log: str) -> subprocess.Popen:
    return procs.spawn([sys.executable, os.path.join(HERE, script)] + args, log)


def json_get(host_port: str, path: str, timeout=3):
    host, port = host_port.rsplit(":", 1)
    c = http.client.HTTPConnection(host, int(port), timeout=timeout)
    c.request("GET", path)
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, (json.loads(body) if body else None)
