#!/usr/bin/env bash
# Ferry's fault scenarios (issue 20), scripted: three replicas sharing a throwaway
# PostgreSQL and Redis behind a round-robin load balancer that polls /readyz every 500 ms,
# a misbehaving issuer, steady load, and per scenario one fault — Redis restarted empty,
# kill -9 of a replica, a rolling restart, a key-encryption-key rollout, an issuer outage
# (500s, refused connections, hangs), a PostgreSQL outage. Prints per scenario what was
# sent, succeeded and failed, tokens unverifiable against any replica's /jwks, revocations
# and replay protections lost, issuer fetches against the error_ttl bound, then a table;
# exits non-zero when any "Done when" criterion of the issue fails.
#
#   scripts/chaos.sh            the short variant (CI): about 30 s per scenario
#   scripts/chaos.sh --long     four times longer phases at 50 requests/s
#   scripts/chaos.sh --only ce  some scenarios only (letters a-f)
#
# Builds nothing: uses target/debug/ferry (or $FERRY_BIN), built by
# `cargo build --workspace --bins`. Needs python3 (standard library only), redis-server and
# Debian's postgresql binaries (scripts/install-test-deps.sh). Everything listens on
# 127.0.0.1 and nothing reaches beyond loopback. Every process it starts is ended on exit.
# CHAOS_REVOCATION_CONFIG: the revocation section (one line of YAML) the replicas run with,
# if the automatic choice (see scripts/chaos/world.py) does not fit.
set -euo pipefail
cd "$(dirname "$0")/.."

ferry=${FERRY_BIN:-target/debug/ferry}
if [ ! -x "$ferry" ]; then
    echo "$ferry is missing: run cargo build --workspace --bins first (or set FERRY_BIN)" >&2
    exit 2
fi
for tool in python3 redis-server setpriv; do
    command -v "$tool" >/dev/null 2>&1 || { echo "$tool is missing: run scripts/install-test-deps.sh" >&2; exit 2; }
done
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { echo "PostgreSQL binaries missing: run scripts/install-test-deps.sh" >&2; exit 2; }

work=$(mktemp -d -t ferry-chaos.XXXXXX)
chmod 755 "$work"   # the PostgreSQL cluster inside runs as the postgres user
driver=
cleanup() {
    if [ -n "$driver" ]; then kill "$driver" 2>/dev/null || true; fi
    # Every process the driver started, by id (it records each one with its start time as
    # it starts it; a pid reused since by another process is left alone).
    if [ -f "$work/pids" ]; then
        while read -r pid started; do
            now=$(cut -d')' -f2- "/proc/$pid/stat" 2>/dev/null | awk '{print $20}') || true
            if [ -n "$now" ] && [ "$now" = "$started" ]; then
                kill -9 "$pid" 2>/dev/null || true
            fi
        done <"$work/pids"
    fi
    if [ -n "${CHAOS_KEEP:-}" ]; then
        echo "chaos: work directory kept in $work" >&2
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

PYTHONDONTWRITEBYTECODE=1 python3 -u scripts/chaos/chaos.py --work "$work" --ferry "$(realpath "$ferry")" "$@" &
driver=$!
status=0
wait "$driver" || status=$?
driver=
exit "$status"
