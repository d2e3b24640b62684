"""The parts the chaos run starts and breaks: a throwaway PostgreSQL cluster, Redis, Ferry
replicas, the load balancer and the misbehaving issuer, all on loopback ports no other
process can take meanwhile (see `Port` and `daemon_port`), the same way the black-box
tests start them (crates/ferry-testkit/src/postgres.rs,
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


class Port:
    """A loopback port held for one server across its restarts, so that no other process
    can take it meanwhile (as it could one found by binding a socket and closing it): a
    socket bound to it with SO_REUSEPORT that never listens. While the server is down,
    connections to the port are refused; each start gets a fresh listening socket on the
    same port (`listening()`), which the server inherits."""

    def __init__(self):
        self.holder = socket.socket()
        self.holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        self.holder.bind(("127.0.0.1", 0))
        self.port = self.holder.getsockname()[1]

    def listening(self, backlog=1024) -> socket.socket:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        s.bind(("127.0.0.1", self.port))
        s.listen(backlog)
        return s


def daemon_port() -> int:
    """A port for a daemon that cannot listen on port 0 and say where (redis-server,
    PostgreSQL): a random one below Linux's ephemeral range (32768-60999), which no outgoing
    connection takes; the daemon binds it, and the caller tries another when it is taken."""
    return 20000 + secrets.randbelow(12768)


def log_size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def log_says(path: str, text: str, since: int) -> bool:
    """Whether what was written to the log after offset `since` contains `text`."""
    try:
        with open(path, "rb") as f:
            f.seek(since)
            return text.encode() in f.read()
    except OSError:
        return False


# Execs argv[3:] with the listening sockets argv[1] and argv[2] as file descriptors 3 and
# 4 and LISTEN_PID its own pid: systemd's socket activation (LISTEN_FDS and
# LISTEN_FDNAMES come from the environment given).
ACTIVATE = (
    "import fcntl, os, sys\n"
    "high = [fcntl.fcntl(int(a), fcntl.F_DUPFD, 10) for a in sys.argv[1:3]]\n"
    "for i, fd in enumerate(high):\n"
    "    os.dup2(fd, 3 + i)\n"
    "    os.close(fd)\n"
    "os.execve(sys.argv[3], sys.argv[3:], {**os.environ, 'LISTEN_PID': str(os.getpid())})\n"
)


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

    def spawn(self, args, log_path, env=None, preexec=None, pass_fds=()) -> subprocess.Popen:
        log = open(log_path, "ab")
        p = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                             env=env, preexec_fn=preexec, pass_fds=pass_fds)
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
        self.port = daemon_port()
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
        for _ in range(20):
            if self.start(first=True):
                return
            self.port = daemon_port()  # taken: another one
        sys.exit("PostgreSQL found no free port in 20 tries")

    def cmd(self, name):
        exe = os.path.join(self.bin, name)
        if self.owner:
            return ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--", exe]
        return [exe]

    def start(self, first=False) -> bool:
        """Starts the server; False when, at the first start, its port is another process's."""
        assert self.proc is None
        log = os.path.join(self.dir, "server.log")
        since = log_size(log)
        self.proc = self.procs.spawn(self.cmd("postgres") + [
            "-D", os.path.join(self.dir, "data"), "-p", str(self.port), "-k", self.dir,
            "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "synchronous_commit=off",
            "-c", "full_page_writes=off", "-c", "shared_buffers=16MB", "-c", "max_connections=60"],
            log)

        def up():
            # Asked on its own Unix socket: another server on the same TCP port cannot answer.
            if self.proc.poll() is not None:
                return True
            return subprocess.run([os.path.join(self.bin, "pg_isready"), "-q", "-h", self.dir, "-t", "1",
                                   "-p", str(self.port)]).returncode == 0
        wait_until(up, 60, "PostgreSQL")
        if self.proc.poll() is not None:
            self.proc = None
            if first and log_says(log, "already in use", since):
                return False
            sys.exit(f"PostgreSQL did not start; see {log}")
        return True

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
        self.proc = None
        for _ in range(20):
            self.port = daemon_port()
            if self.start(first=True):
                return
        sys.exit("redis-server found no free port in 20 tries")

    def start(self, first=False) -> bool:
        """Starts the server; False when, at the first start, its port is another process's."""
        since = log_size(self.log)
        self.proc = self.procs.spawn(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no"], self.log)

        def up():
            if self.proc.poll() is not None:
                return True
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    return s.recv(16).startswith(b"+PONG")
            except OSError:
                return False
        wait_until(up, 30, "redis-server")
        if self.proc.poll() is not None:
            self.proc = None
            if first and log_says(self.log, "already in use", since):
                return False
            sys.exit(f"redis-server did not start; see {self.log}")
        return True

    def stop(self):
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=30)
            self.proc = None


class Replica:
    """One `ferry serve` on fixed loopback ports (so a restart comes back where the load
    balancer expects it), held by this harness (`Port`) and passed to each start of Ferry
    by socket activation, with its own data directory and log."""

    def __init__(self, procs: Procs, ferry: str, dir: str, name: str, env: dict):
        self.procs, self.ferry, self.dir, self.name = procs, ferry, dir, name
        self.public, self.admin_holder = Port(), Port()
        self.port, self.admin_port = self.public.port, self.admin_holder.port
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
        env.update(LISTEN_FDS="2", LISTEN_FDNAMES="public:admin")
        public, admin = self.public.listening(), self.admin_holder.listening()
        fds = (public.fileno(), admin.fileno())
        self.proc = self.procs.spawn(
            [sys.executable, "-c", ACTIVATE, str(fds[0]), str(fds[1]), self.ferry, "serve", "--config", self.config],
            os.path.join(self.dir, f"ferry-{self.starts}.log"), env=env, pass_fds=fds)
        # Ferry holds them now: once it exits, connections are refused (the ports stay held).
        public.close()
        admin.close()
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


def announced_port(log: str, prefix: str, what: str, seconds=20) -> int:
    """The port a server that let the kernel pick announced in its log (`PREFIX 127.0.0.1:PORT`)."""
    found = []

    def said():
        try:
            with open(log) as f:
                for line in f:
                    if line.startswith(f"{prefix} 127.0.0.1:"):
                        found.append(int(line.rsplit(":", 1)[1]))
                        return True
        except OSError:
            pass
        return False
    wait_until(said, seconds, what)
    return found[0]


def json_get(host_port: str, path: str, timeout=3):
    host, port = host_port.rsplit(":", 1)
    c = http.client.HTTPConnection(host, int(port), timeout=timeout)
    c.request("GET", path)
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, (json.loads(body) if body else None)
