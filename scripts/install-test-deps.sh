#!/usr/bin/env bash
# Installs what the test suite needs beyond the Rust toolchain. Idempotent: skips what is
# already there. Debian packages need root (CI and the developer machines run as root).
set -euo pipefail

need=()
command -v python3 >/dev/null 2>&1 || need+=(python3)
command -v curl >/dev/null 2>&1 || need+=(curl)
# Client certificates made by a tool Ferry did not write, presented by Python requests.
command -v openssl >/dev/null 2>&1 || need+=(openssl)
python3 -c 'import requests' >/dev/null 2>&1 || need+=(python3-requests)
command -v softhsm2-util >/dev/null 2>&1 || need+=(softhsm2)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
# PostgreSQL server binaries (the tests run a throwaway cluster with initdb; no service).
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v setpriv >/dev/null 2>&1 || need+=(util-linux)
# The deploy checks: Compose validation (no engine needed) and package downloads.
command -v docker-compose >/dev/null 2>&1 || need+=(docker-compose)
command -v dpkg-deb >/dev/null 2>&1 || need+=(dpkg)
# The image test (scripts/image-test.sh): Debian's Docker engine, base images made with
# debootstrap, tokens verified with Debian's PyJWT.
command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
/usr/bin/python3 -c 'import jwt' >/dev/null 2>&1 || need+=(python3-jwt)
# SAML assertions signed and checked by a tool Ferry did not write (clients/python).
command -v xmlsec1 >/dev/null 2>&1 || need+=(xmlsec1)

if [ ${#need[@]} -gt 0 ]; then
    echo "==> installing ${need[*]}"
    apt-get update -qq
    # No service a package brings is started (docker.io's would add a bridge and iptables
    # rules; scripts/image-test.sh starts its own engine without either).
    policy=
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        policy=1
    fi
    status=0
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=300 "${need[@]}" ||
        status=$?
    [ -z "$policy" ] || rm -f /usr/sbin/policy-rc.d
    [ "$status" = 0 ] || exit "$status"
fi

# promtool, for the Prometheus rules' unit tests (deploy/monitoring): Debian's
# `prometheus` package unpacked under target/monitoring-tools, not installed — installing
# it would start a Prometheus server on :9090 wherever services may start, the port of
# Ferry's admin listener by default. promtool needs only libc.
tools="$(cd "$(dirname "$0")/.." && pwd)/target/monitoring-tools"
if ! command -v promtool >/dev/null 2>&1 && [ ! -x "$tools/usr/bin/promtool" ]; then
    echo "==> unpacking promtool (Debian's prometheus package) into target/monitoring-tools"
    mkdir -p "$tools"
    (cd "$tools" && { apt-get download prometheus >/dev/null 2>&1 || { apt-get update -qq && apt-get download prometheus; }; })
    dpkg -x "$tools"/prometheus_*.deb "$tools"
fi

for component in rustfmt clippy; do
    if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
        rustup component add "$component"
    fi
done
