#!/usr/bin/env bash
# Fuzz campaigns, outside CI: each cargo-fuzz target for SECS seconds (default 60) on the
# stable toolchain (`--sanitizer none`: no nightly here), growing fuzz/corpus/<target>.
# A crash lands in fuzz/artifacts/<target>/: commit it and turn it into a regression
# test — `cargo test -p ferry-fuzz` (run by CI) replays every corpus and artifact file.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
SECS=${SECS:-60}
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
for t in ${TARGETS:-token form config claims saml}; do
    echo "==> $t for ${SECS}s"
    cargo fuzz run --sanitizer none "$t" -- -max_total_time="$SECS" -max_len=20000 2>&1 \
        | grep -E '^Done|DONE|^==|panicked|SUMMARY' || true
    if [ -n "$(ls -A "artifacts/$t" 2>/dev/null)" ]; then
        echo "crash inputs in fuzz/artifacts/$t:" >&2
        ls "artifacts/$t" >&2
        exit 1
    fi
done
echo "==> minimising the corpora"
for t in ${TARGETS:-token form config claims saml}; do
    cargo fuzz cmin --sanitizer none "$t" >/dev/null 2>&1 || true
done
echo "no crash; corpora in fuzz/corpus (commit them)"
