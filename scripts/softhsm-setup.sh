#!/usr/bin/env bash
# Creates a throwaway SoftHSM2 token for the tests under target/softhsm and prints the
# environment the tests read (eval "$(scripts/softhsm-setup.sh)"). Needs softhsm2.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)/target/softhsm"
rm -rf "$root"
mkdir -p "$root/tokens"
cat >"$root/softhsm2.conf" <<CONF
directories.tokendir = $root/tokens
objectstore.backend = file
log.level = ERROR
slots.removable = false
CONF
export SOFTHSM2_CONF="$root/softhsm2.conf"
softhsm2-util --init-token --free --label ferry-test --pin 1234 --so-pin 5678 >/dev/null
module=""
for m in /usr/lib/softhsm/libsofthsm2.so /usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so /usr/local/lib/softhsm/libsofthsm2.so; do
    if [ -f "$m" ]; then module="$m"; break; fi
done
[ -n "$module" ] || { echo "libsofthsm2.so not found" >&2; exit 1; }
echo "export SOFTHSM2_CONF=$root/softhsm2.conf"
echo "export FERRY_TEST_PKCS11_MODULE=$module"
echo "export FERRY_TEST_PKCS11_TOKEN=ferry-test"
echo "export FERRY_TEST_PKCS11_PIN=1234"
