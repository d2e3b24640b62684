#!/usr/bin/env bash
# Ferry's main job on an embedded default: builds the binaries, starts the development
# issuer and Ferry on loopback ports the kernel picks, with examples/quickstart.yaml, mints a subject
# token, exchanges it at POST /token and prints the response and the decoded token; then does the
# same with a signed SAML assertion from the development issuer's SAML side.
# Everything runs in a temporary directory and is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "==> building ferry and ferry-dev-idp"
cargo build --quiet --bins

work=$(mktemp -d -t ferry-quickstart.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

wait_for() { # wait_for FILE PATTERN
    for _ in $(seq 1 200); do
        grep -q "$2" "$1" 2>/dev/null && return 0
        sleep 0.05
    done
    echo "timed out waiting for '$2' in $1" >&2
    cat "$1" >&2 || true
    return 1
}

echo "==> starting the development issuer (NOT FOR PRODUCTION)"
target/debug/ferry-dev-idp serve --data-dir "$work/idp" >"$work/idp.out" 2>"$work/idp.err" &
pids+=($!)
wait_for "$work/idp.out" "listening on"
idp=$(sed -n 's/.*listening on //p' "$work/idp.out")
echo "    issuer $idp"

# Ferry seals its signing keys with a key-encryption key; a fresh one for this run.
FERRY_KEK=$(target/debug/ferry keys new-kek)
export FERRY_KEK

# Ferry's configuration names its own URL (issuer, the audience of subject tokens): the
# socket is bound first, the configuration written with its port, and Ferry inherits
# the socket (socket activation), so no other process can take the port in between.
echo "==> starting ferry on a socket bound for it (socket activation)"
WORK="$work" IDP="$idp" scripts/socket-activate.py 127.0.0.1:0 '
    sed -e "s#@FERRY_URL@#http://127.0.0.1:$PORT#g" -e "s#@FERRY_LISTEN@#127.0.0.1:$PORT#" \
        -e "s#@DATA_DIR@#$WORK/ferry-data#" -e "s#@IDP_ISSUER@#$IDP#" \
        -e "s#@IDP_JWKS@#$WORK/idp/jwks.json#" -e "s#@IDP_ENTITY_ID@#$IDP/saml#" \
        -e "s#@IDP_SAML_METADATA@#$WORK/idp/saml-metadata.xml#" examples/quickstart.yaml >"$WORK/ferry.yaml"' \
    target/debug/ferry serve --config "$work/ferry.yaml" >"$work/audit.jsonl" 2>"$work/ferry.log" &
pids+=($!)
wait_for "$work/ferry.log" "ferry listening on"
ferry=$(sed -n 's/.*ferry listening on \(http[^ ]*\).*/\1/p' "$work/ferry.log" | head -n1)
echo "    $ferry"

echo "==> ferry check (the configuration it serves with)"
target/debug/ferry check --config "$work/ferry.yaml"

echo "==> minting a GitHub-shaped subject token at the development issuer"
subject=$(target/debug/ferry-dev-idp mint --data-dir "$work/idp" \
    --sub "repo:acme/app:ref:refs/heads/main" --aud "$ferry" \
    --claim repository=acme/app --claim ref=refs/heads/main --claim 'repository_owner_id="65"')

show() { # show RESPONSE: the token response, and the issued token decoded
    RESPONSE="$1" python3 - <<'PY'
import base64, json, os
r = json.loads(os.environ["RESPONSE"])
if "access_token" not in r:
    print(json.dumps(r, indent=2))
    raise SystemExit("exchange failed")
token = r["access_token"]
shown = dict(r, access_token=token[:24] + "...")
print(json.dumps(shown, indent=2))
def part(i):
    s = token.split(".")[i]
    return json.loads(base64.urlsafe_b64decode(s + "=" * (-len(s) % 4)))
print("==> the issued token, decoded (verify it against /jwks)")
print("header: ", json.dumps(part(0)))
print("payload:", json.dumps(part(1), indent=2))
PY
}

echo "==> POST $ferry/token (RFC 8693 token exchange)"
response=$(curl -sS "$ferry/token" \
    --data-urlencode "grant_type=urn:ietf:params:oauth:grant-type:token-exchange" \
    --data-urlencode "subject_token=$subject" \
    --data-urlencode "subject_token_type=urn:ietf:params:oauth:token-type:jwt" \
    --data-urlencode "audience=https://deploy.example.com" \
    --data-urlencode "scope=deploy:write")
show "$response"

echo "==> the audit event Ferry wrote for this decision"
tail -n 1 "$work/audit.jsonl"

# SAML: the development issuer signs an assertion for Ferry (audience: Ferry's URL, the
# SP entity id; recipient: its token endpoint); Ferry trusts the issuer's metadata file.
echo "==> minting a signed SAML assertion at the development issuer ($idp/saml)"
assertion=$(target/debug/ferry-dev-idp mint-saml --data-dir "$work/idp" \
    --subject alice@example.com --audience "$ferry" --recipient "$ferry/token" \
    --attribute http://schemas.xmlsoap.org/claims/Group=deployers)

echo "==> POST $ferry/token (the SAML assertion as subject_token, type saml2)"
response=$(curl -sS "$ferry/token" \
    --data-urlencode "grant_type=urn:ietf:params:oauth:grant-type:token-exchange" \
    --data-urlencode "subject_token=$assertion" \
    --data-urlencode "subject_token_type=urn:ietf:params:oauth:token-type:saml2" \
    --data-urlencode "audience=https://deploy.example.com")
show "$response"

echo "==> the audit event Ferry wrote for this decision"
tail -n 1 "$work/audit.jsonl"
