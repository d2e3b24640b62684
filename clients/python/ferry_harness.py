"""Starting a real Ferry on loopback for the client tests (shared by test_*.py here).

Ferry gets its listening socket the way systemd hands one to a socket-activated service,
so the port is known before Ferry starts and no other process can take it in between.
"""

import os
import pathlib
import socket
import subprocess
import sys
import time

import requests

ROOT = pathlib.Path(__file__).resolve().parents[2]
# The binaries under test: FERRY_BIN_DIR, or this checkout's debug build.
BIN = pathlib.Path(os.environ.get("FERRY_BIN_DIR", ROOT / "target" / "debug"))
KEK = "dGVzdC1rZXktZW5jcnlwdGlvbi1rZXktMzItYnl0ZXM="

# Execs the command in argv[2:] with the file descriptors listed in argv[1] (comma-separated)
# as fds 3, 4, …, LISTEN_FDS their number, LISTEN_PID its own pid and LISTEN_FDNAMES from
# FERRY_FDNAMES when set: how systemd hands a socket-activated service its sockets.
ACTIVATE = (
    "import os, sys; fds = [int(f) for f in sys.argv[1].split(',')]; high = [os.dup(f) for f in fds]; "
    "[os.dup2(h, 3 + i) for i, h in enumerate(high)]; [os.set_inheritable(3 + i, True) for i in range(len(fds))]; "
    "env = {**os.environ, 'LISTEN_FDS': str(len(fds)), 'LISTEN_PID': str(os.getpid())}; "
    "names = env.pop('FERRY_FDNAMES', None); names and env.update(LISTEN_FDNAMES=names); "
    "os.execve(sys.argv[2], sys.argv[2:], env)"
)


def listening_socket():
    """A socket on 127.0.0.1:0, listening: its port goes into Ferry's configuration and
    Ferry inherits it, so no other process can take the port in between."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(128)
    return s


def wait_http(url, timeout=30, process=None, verify=True):
    """Waits until URL answers 200; gives up early when PROCESS (the server) has exited.
    VERIFY is requests' (a CA file for a server on TLS)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the server exited with status {process.returncode} before {url} came up")
        try:
            if requests.get(url, timeout=1, verify=verify).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url} did not come up")


def start_ferry(sock, config, log=None, admin=None, ca=None):
    """Starts `ferry serve --config CONFIG` on the listening socket SOCK (closed here: Ferry
    holds it then) and waits until it is ready. Returns the process. Its standard error
    goes to the file LOG (a path) when given, and a start that fails quotes its end. ADMIN,
    another listening socket, becomes the admin listener (socket activation, named
    `admin`). With CA (the file of the CA that issued its certificate), Ferry serves TLS."""
    port = sock.getsockname()[1]
    socks = [sock] + ([admin] if admin else [])
    fds = ",".join(str(s.fileno()) for s in socks)
    names = {"FERRY_FDNAMES": "ferry:admin"} if admin else {}
    stderr = open(log, "wb") if log else subprocess.DEVNULL
    ferry = subprocess.Popen(
        [sys.executable, "-c", ACTIVATE, fds, BIN / "ferry", "serve", "--config", config],
        stdout=subprocess.DEVNULL,
        stderr=stderr,
        pass_fds=tuple(s.fileno() for s in socks),
        env={**os.environ, "FERRY_KEK": KEK, "RUST_LOG": "warn", **names},
    )
    for s in socks:
        s.close()
    if log:
        stderr.close()  # the child has its own copy
    try:
        scheme = "https" if ca else "http"
        wait_http(f"{scheme}://127.0.0.1:{port}/readyz", process=ferry, verify=ca or True)
    except RuntimeError as e:
        if ferry.poll() is None:
            ferry.terminate()
        ferry.wait(timeout=10)
        said = pathlib.Path(log).read_text(errors="replace")[-3000:] if log else ""
        raise RuntimeError(f"{e}\n{said}") from None
    return ferry


def stop(process):
    """Stops PROCESS: terminated, then killed if it has not ended within 10 s. Module
    fixtures register it as a finalizer as soon as each process starts, so a setup that
    fails half-way leaves nothing running."""
    if process.poll() is None:
        process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
