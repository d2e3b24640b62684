#!/usr/bin/env bash
# Ferry's whole test suite, from a fresh machine: installs what the tests need, then
# checks formatting and lints, builds the binaries the black-box tests start, and runs
# every test, the standard clients, the deployment files and the fault drills. This is
# the command CI runs (.ci/run) and the README's second command.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-test-deps.sh

echo "==> cargo fmt --check"
cargo fmt --all -- --check

echo "==> clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "==> build the binaries the black-box tests start"
cargo build --workspace --bins --locked

echo "==> a throwaway SoftHSM2 token for the PKCS#11 tests"
eval "$(scripts/softhsm-setup.sh)"

echo "==> tests"
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --locked --no-fail-fast
else
    cargo test --workspace --locked --no-fail-fast
fi

echo "==> unmodified standard clients against a real Ferry"
scripts/clients-test.sh

echo "==> deploy/ and docker-compose.yml (rendered and validated; no cluster)"
scripts/deploy-test.sh

echo "==> deploy/monitoring (promtool unit tests; metric names against a running Ferry)"
scripts/monitoring-test.sh

echo "==> release build (the container image packages the host's binaries)"
cargo build --release --locked -p ferry-server -p ferry-dev-idp --bins

echo "==> the container image, built and run on Debian's Docker engine, and docker-compose up"
timeout 1800 scripts/image-test.sh

echo "==> chaos (short)"
scripts/chaos.sh
