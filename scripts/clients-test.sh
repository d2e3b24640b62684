#!/usr/bin/env bash
# Unmodified standard clients against a real Ferry on loopback: Python google-auth and
# Authlib, npm google-auth-library and openid-client, Rust google-cloud-auth; SAML
# assertions signed by signxml and the xmlsec1 command line; tokens verified with PyJWT and
# jose; schemathesis against openapi/openapi.yaml; the GitHub Action in
# integrations/github-action run against a simulated runner (test_github_action.py).
# Google's clients read credential files `ferry cred-config` wrote and reach Ferry (TLS for
# sts.ferry.test, from a test CA) through the test kit's CONNECT proxy
# (target/debug/ferry-connect-proxy). Versions are
# pinned in clients/requirements.lock, clients/node/package-lock.json and
# clients/rust/Cargo.lock. A missing client fails the run: nothing is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v node >/dev/null && command -v npm >/dev/null || { echo "node and npm are required" >&2; exit 1; }

venv=target/clients/venv
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
echo "==> Python clients (pip, pinned)"
"$venv/bin/pip" install -q --disable-pip-version-check -r clients/requirements.lock

echo "==> npm clients (npm ci, pinned)"
(cd clients/node && npm ci --no-audit --no-fund --loglevel=error)

echo "==> Rust google-cloud-auth client (outside the workspace)"
CARGO_TARGET_DIR=target/clients-rust cargo build -q --locked --manifest-path clients/rust/Cargo.toml

echo "==> client tests"
PATH="$PWD/$venv/bin:$PATH" FERRY_RUST_CLIENT="$PWD/target/clients-rust/debug/ferry-client-google-cloud-auth" \
    "$venv/bin/pytest" -q -p no:cacheprovider clients/python
