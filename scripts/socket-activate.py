#!/usr/bin/env python3
"""Socket activation from a script, as systemd does it for a service.

usage: socket-activate.py ADDRESS SETUP PROGRAM [ARGS...]

Binds a listening TCP socket on ADDRESS (`127.0.0.1:0`: a port the kernel picks), runs
SETUP with `sh -c` and PORT set to the bound port (to write a configuration that names
it), then becomes PROGRAM, which inherits the socket as file descriptor 3 with
LISTEN_FDS=1 and LISTEN_PID its own pid. The port is never released in between, so no
other process can take it, as it could one found by binding and closing a socket.
"""

import os
import socket
import subprocess
import sys


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    host, port = sys.argv[1].rsplit(":", 1)
    sock = socket.socket()
    sock.bind((host, int(port)))
    sock.listen(1024)
    env = {**os.environ, "PORT": str(sock.getsockname()[1])}
    subprocess.run(["sh", "-c", sys.argv[2]], env=env, check=True)
    if sock.fileno() != 3:
        os.dup2(sock.fileno(), 3)
    os.set_inheritable(3, True)  # it survives exec
    env.update(LISTEN_FDS="1", LISTEN_PID=str(os.getpid()))
    env.pop("LISTEN_FDNAMES", None)
    os.execvpe(sys.argv[3], sys.argv[3:], env)


if __name__ == "__main__":
    main()
