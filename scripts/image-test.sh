#!/usr/bin/env bash
# Builds Ferry's container image and runs it on a real engine (Debian's docker.io):
#  1. starts dockerd with its own socket and data root, outside the clone, with
#     --bridge=none --iptables=false (containers use the host's network), unless one
#     already answers on that socket. Where the engine cannot start, says so and skips
#     (exit 0): nothing is faked;
#  2. builds two base images from Debian packages of the host's own suite and mirror
#     (debootstrap --variant=minbase, then docker import): one for Ferry (minbase and
#     ca-certificates), one with postgresql and redis-server. The root filesystems are
#     cached as tarballs in /var/cache/ferry-ci, keyed by suite, mirror, architecture and
#     package list, and the images stay in the engine's data root between runs;
#  3. builds Ferry's images from the host's release build (deploy/Dockerfile,
#     BINARIES=prebuilt) through docker-compose with deploy/compose/host-network.yaml;
#  4. runs Ferry's image alone: host networking, read-only root filesystem, uid 65532,
#     no capabilities, a tmpfs for data_dir only; a token from the development issuer on
#     the host is exchanged and the result verified against the container's /jwks;
#  5. docker-compose up: two replicas, PostgreSQL, Redis and the development issuer;
#     a token minted in the issuer's container is exchanged at one replica and verifies
#     at the other's /jwks; `ferry keys rotate` in a replica; both replicas then publish
#     the same new key set and sign with the rotated key.
# Containers and volumes are removed on exit, whatever happens, and an engine this script
# started is stopped; images and the debootstrap cache stay for the next run.
# Expects target/release/{ferry,ferry-dev-idp} (builds them if missing).
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")/.."
start=$(date +%s)
step() { echo "==> image: $* ($(($(date +%s) - start)) s)"; }

state=${FERRY_CI_STATE:-/var/lib/ferry-ci-docker}
cache=${FERRY_CI_CACHE:-/var/cache/ferry-ci}
run=/run/ferry-ci-docker
export DOCKER_HOST=unix://$run.sock
project=ferry-ci

mkdir -p "$cache"
# One run at a time on a machine (they share the engine, the cache and host ports).
exec 9>"$cache/lock"
flock -w 900 9

work=$(mktemp -d -t ferry-image.XXXXXX)
# Debian's docker client (engine 20.10's own), first on PATH for docker-compose too.
mkdir -p "$work/bin"
ln -s /usr/bin/docker "$work/bin/docker"
export PATH=$work/bin:$PATH

dockerd_pid=
idp_pid=
single=
compose_up=
rootfs=
# docker-compose.yml as it is but for its published ports: with host networking there
# are none, docker-compose 1.29 refuses the two together, and an override can add to a
# list but not remove it.
/usr/bin/python3 - docker-compose.yml "$work/docker-compose.yml" <<'PY'
import sys, yaml
compose = yaml.safe_load(open(sys.argv[1]))
for service in compose["services"].values():
    service.pop("ports", None)
yaml.safe_dump(compose, open(sys.argv[2], "w"), sort_keys=False)
PY
compose() {
    docker-compose -p "$project" --project-directory "$PWD" -f "$work/docker-compose.yml" \
        -f deploy/compose/host-network.yaml "$@"
}
cleanup() {
    status=$?
    set +e
    if [ "$status" != 0 ]; then
        echo "image test failed (exit $status); container logs follow" >&2
        [ -n "$single" ] && docker logs --tail 30 "$single" >&2
        [ -n "$compose_up" ] && compose logs --no-color --tail 30 >&2
    fi
    [ -n "$single" ] && docker rm -f "$single" >/dev/null 2>&1
    [ -n "$compose_up" ] && compose down -v --remove-orphans -t 5 >/dev/null 2>&1
    [ -n "$compose_up" ] && remove_leftovers 2>/dev/null
    [ -n "$idp_pid" ] && kill "$idp_pid" 2>/dev/null
    if [ -n "$dockerd_pid" ]; then
        kill "$dockerd_pid" 2>/dev/null
        for _ in $(seq 1 100); do kill -0 "$dockerd_pid" 2>/dev/null || break; sleep 0.2; done
        kill -9 "$dockerd_pid" 2>/dev/null
    fi
    [ -n "$rootfs" ] && rm -rf "$rootfs"
    rm -rf "$work"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

skip() {
    echo "==> image: SKIPPED, the Docker engine cannot start here: $*"
    echo "    (the image build and run, and docker-compose up, were NOT tested)"
    exit 0
}

step "Docker engine"
if ! docker info >/dev/null 2>&1; then
    command -v dockerd >/dev/null 2>&1 || skip "dockerd is not installed (Debian's docker.io)"
    mkdir -p "$state" "$run"
    dockerd --data-root "$state" --exec-root "$run" --pidfile "$run.pid" -H "$DOCKER_HOST" \
        --bridge=none --iptables=false >"$work/dockerd.log" 2>&1 9>&- &
    dockerd_pid=$!
    for _ in $(seq 1 120); do
        docker info >/dev/null 2>&1 && break
        if ! kill -0 "$dockerd_pid" 2>/dev/null; then
            dockerd_pid=
            tail -n 5 "$work/dockerd.log" >&2
            skip "dockerd exited at start (its last lines above)"
        fi
        sleep 0.25
    done
    if ! docker info >/dev/null 2>&1; then
        tail -n 5 "$work/dockerd.log" >&2
        skip "dockerd did not answer within 30 s"
    fi
    echo "    started dockerd $(docker version -f '{{.Server.Version}}') (data root $state)"
else
    echo "    an engine already answers on $DOCKER_HOST: using it"
fi
remove_leftovers() { # containers and volumes of this script, whatever state they are in
    docker ps -aq --filter label=ferry-ci | xargs -r docker rm -f >/dev/null
    docker ps -aq --filter label=com.docker.compose.project=$project | xargs -r docker rm -f >/dev/null
    docker volume ls -q --filter label=com.docker.compose.project=$project | xargs -r docker volume rm >/dev/null
}
remove_leftovers # of an interrupted run

if [ ! -x target/release/ferry ] || [ ! -x target/release/ferry-dev-idp ]; then
    step "release build (the image packages it)"
    cargo build --release --locked --workspace --bins
fi

# Debian's suite and mirror, as the host's apt knows them.
suite=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
mirror=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk -v s="$suite" '
    BEGIN { RS = ""; FS = "\n" }
    { u = ""; ok = 0; on = 1
      for (i = 1; i <= NF; i++) {
          if ($i ~ /^URIs:/) { split($i, a, " "); u = a[2] }
          if ($i ~ /^Suites:/) { n = split($i, b, " "); for (j = 2; j <= n; j++) if (b[j] == s) ok = 1 }
          if ($i ~ /^Enabled: *[Nn]o/) on = 0
      }
      if (ok && on && u != "") { print u; exit } }')
if [ -z "$mirror" ]; then
    mirror=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
        sed -nE "s/^deb +(\[[^]]*\] +)?([a-z]+:\/\/[^ ]+) +$suite( .*)?$/\2/p" | head -n 1)
fi
[ -n "$suite" ] && [ -n "$mirror" ] || { echo "no Debian suite or mirror found in apt's sources" >&2; exit 1; }
arch=$(dpkg --print-architecture)

# base_image NAME PACKAGES PREPARE: sets $image to an image of Debian's minbase plus
# PACKAGES, made by debootstrap (root filesystem cached as a tarball), PREPARE run on
# the root filesystem ($ROOT) first. The ISO week is part of the key, so Debian's
# updates reach the bases within a week; older bases are removed.
week=$(date -u +%G-W%V)
base_image() {
    local name=$1 packages=$2 prepare=$3 key tag tarball
    key=$(printf '%s\n' "$suite" "$mirror" "$arch" minbase "$packages" "$prepare" "$week" |
        sha256sum | cut -c1-16)
    tag=ferry-ci-$name:$suite-$key
    if ! docker image inspect "$tag" >/dev/null 2>&1; then
        tarball=$cache/$name-$suite-$key.tar
        if [ ! -s "$tarball" ]; then
            echo "    debootstrap $suite ($name: minbase ${packages:-}) from the host's mirror"
            # On a tmpfs where there is one (dpkg's many fsyncs cost nothing there).
            rootfs=$(mktemp -d /dev/shm/ferry-rootfs.XXXXXX 2>/dev/null || mktemp -d "$cache/rootfs.XXXXXX")
            if ! timeout 1200 debootstrap --variant=minbase --cache-dir="$cache/debs" \
                ${packages:+--include="${packages// /,}"} "$suite" "$rootfs" "$mirror" \
                >"$work/debootstrap-$name.log" 2>&1; then
                tail -n 20 "$work/debootstrap-$name.log" >&2
                echo "debootstrap failed" >&2
                exit 1
            fi
            ROOT=$rootfs sh -ec "$prepare"
            rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
                "$rootfs"/var/log/*.log
            tar -C "$rootfs" --numeric-owner -cf "$tarball.tmp" .
            mv "$tarball.tmp" "$tarball"
            rm -rf "$rootfs"
            rootfs=
            # Keep the newest tarball of each kind only.
            find "$cache" -maxdepth 1 -name "$name-*.tar" ! -name "$(basename "$tarball")" -delete
        fi
        docker import "$tarball" "$tag" >/dev/null
        docker images --format '{{.Repository}}:{{.Tag}}' "ferry-ci-$name" | grep -vxF "$tag" |
            xargs -r docker rmi >/dev/null 2>&1 || true
    fi
    image=$tag
}

step "base images from Debian $suite packages"
mkdir -p "$cache/debs"
find "$cache/debs" -name '*.deb' -mtime +30 -delete
base_image base "ca-certificates" ":"
FERRY_BASE_IMAGE=$image
# PostgreSQL and Redis: empty data directories owned by their users (a named volume
# mounted there starts with that ownership), without the cluster the package made.
base_image services "postgresql redis-server" '
    rm -rf "$ROOT"/var/lib/postgresql/[0-9]* "$ROOT"/etc/postgresql/[0-9]*
    mkdir -p "$ROOT/var/lib/postgresql/data" "$ROOT/data"
    chroot "$ROOT" chown postgres:postgres /var/lib/postgresql/data
    chroot "$ROOT" chown redis:redis /data
    chmod 0700 "$ROOT/var/lib/postgresql/data" "$ROOT/data"'
FERRY_SERVICES_IMAGE=$image
export FERRY_BASE_IMAGE FERRY_SERVICES_IMAGE
echo "    $FERRY_BASE_IMAGE, $FERRY_SERVICES_IMAGE"

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
ports=" "
for v in FERRY_1_PORT FERRY_2_PORT FERRY_1_ADMIN_PORT FERRY_2_ADMIN_PORT FERRY_IDP_PORT \
    FERRY_PG_PORT FERRY_REDIS_PORT; do
    p=$(free_port)
    while [[ $ports == *" $p "* ]]; do p=$(free_port); done
    ports="$ports$p "
    export "$v=$p"
done
FERRY_KEK=$(target/release/ferry keys new-kek)
FERRY_DB_PASSWORD=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
export FERRY_KEK FERRY_DB_PASSWORD
export FERRY_COMPOSE_CONFIG=$work/compose-ferry.yaml
sed -e "s#^signing:#signing:\n  jwks_max_age: 1s\n  leeway: 0s#" \
    -e "s#postgres: { url: { env: FERRY_POSTGRES_URL } }#postgres: { url: { env: FERRY_POSTGRES_URL }, poll_interval: 100ms }#" \
    -e "s#redis://redis:6379#redis://127.0.0.1:$FERRY_REDIS_PORT#" \
    -e "s#issuer: http://127.0.0.1:8081#issuer: http://127.0.0.1:$FERRY_IDP_PORT#" \
    deploy/compose/ferry.yaml >"$FERRY_COMPOSE_CONFIG"
grep -q 'poll_interval: 100ms' "$FERRY_COMPOSE_CONFIG"
grep -q "redis://127.0.0.1:$FERRY_REDIS_PORT" "$FERRY_COMPOSE_CONFIG"
grep -q "issuer: http://127.0.0.1:$FERRY_IDP_PORT" "$FERRY_COMPOSE_CONFIG"

step "Ferry's images from the host's release build (docker-compose build)"
if ! COMPOSE_DOCKER_CLI_BUILD=1 DOCKER_BUILDKIT=1 compose build ferry-1 dev-idp >"$work/build.log" 2>&1; then
    tail -n 40 "$work/build.log" >&2
    exit 1
fi
ferry_image=$(compose config | /usr/bin/python3 -c 'import sys, yaml; print(yaml.safe_load(sys.stdin)["services"]["ferry-1"]["image"])')
docker image inspect "$ferry_image" >/dev/null
docker image prune -f >/dev/null # the images these tags held before
echo "    $ferry_image: $(docker image inspect -f '{{.Size}}' "$ferry_image" | awk '{printf "%.0f MB", $1 / 1e6}')"

# verify TOKEN JWKS_URL AUDIENCE: the token's signature checks against the JWKS; prints its kid.
cat >"$work/verify.py" <<'PY'
import json, sys, urllib.request
import jwt
token, jwks_url, audience = sys.argv[1:4]
jwks = json.load(urllib.request.urlopen(jwks_url, timeout=5))
kid = jwt.get_unverified_header(token)["kid"]
key = next(k for k in jwks["keys"] if k["kid"] == kid)
alg = jwt.get_unverified_header(token)["alg"]
claims = jwt.decode(token, jwt.PyJWK(key).key, algorithms=[alg], audience=audience)
print(kid)
PY
verify() { /usr/bin/python3 "$work/verify.py" "$@"; }
# exchange URL SUBJECT_TOKEN: prints the access token of an RFC 8693 exchange.
exchange() {
    curl -sS --max-time 10 "$1/token" \
        --data-urlencode "grant_type=urn:ietf:params:oauth:grant-type:token-exchange" \
        --data-urlencode "subject_token=$2" \
        --data-urlencode "subject_token_type=urn:ietf:params:oauth:token-type:jwt" \
        --data-urlencode "audience=https://deploy.example.com" >"$work/response.json"
    python3 -c 'import json, sys
r = json.load(open(sys.argv[1]))
if "access_token" not in r: sys.exit("exchange refused: %s" % r)
print(r["access_token"])' "$work/response.json"
}
wait_ready() { # wait_ready URL SECONDS
    for _ in $(seq 1 $(($2 * 4))); do
        curl -fsS --max-time 2 "$1/readyz" >/dev/null 2>&1 && return 0
        sleep 0.25
    done
    echo "$1 was not ready within $2 s" >&2
    return 1
}
jwks_kids() { curl -fsS --max-time 5 "$1/jwks" | python3 -c 'import json, sys; print(" ".join(sorted(k["kid"] for k in json.load(sys.stdin)["keys"])))'; }

step "the image alone: host network, read-only root, uid 65532, no capabilities"
target/release/ferry-dev-idp serve --data-dir "$work/idp" --listen 127.0.0.1:0 >"$work/idp.out" 2>"$work/idp.err" 9>&- &
idp_pid=$!
for _ in $(seq 1 100); do grep -q "listening on" "$work/idp.out" 2>/dev/null && break; sleep 0.05; done
idp=$(sed -n 's/.*listening on //p' "$work/idp.out")
[ -n "$idp" ] || { cat "$work/idp.err" >&2; exit 1; }
port=$FERRY_1_PORT
ferry=http://127.0.0.1:$port
mkdir -p "$work/single"
cat >"$work/single/ferry.yaml" <<EOF
issuer: $ferry
data_dir: /var/lib/ferry
providers:
  - id: dev
    issuer: $idp
    audiences: [$ferry]
    jwks: { file: /idp-jwks/jwks.json }
    condition: assertion.repository_owner_id == '65'
    mapping:
      subject: "'repo:' + assertion.repository + ':' + assertion.ref"
      attributes: { repository: assertion.repository }
audiences:
  - audience: https://deploy.example.com
    rules:
      - allow: provider == 'dev' && attribute.repository == 'acme/app'
        scopes: [deploy:read]
EOF
chmod -R a+rX "$work"
single=ferry-ci-single-$$
docker run -d --name "$single" --label ferry-ci --network host --read-only \
    --user 65532:65532 --cap-drop ALL --security-opt no-new-privileges \
    --tmpfs /var/lib/ferry:rw,noexec,nosuid,size=16m,uid=65532,gid=65532,mode=0700 \
    -v "$work/single/ferry.yaml:/etc/ferry/ferry.yaml:ro" \
    -v "$work/idp/jwks.json:/idp-jwks/jwks.json:ro" \
    -e FERRY_KEK -e FERRY_LISTEN="127.0.0.1:$port" -e FERRY_ADMIN_LISTEN="127.0.0.1:$FERRY_1_ADMIN_PORT" \
    "$ferry_image" >/dev/null
wait_ready "$ferry" 30
[ "$(docker inspect -f '{{.HostConfig.ReadonlyRootfs}} {{.Config.User}}' "$single")" = "true 65532:65532" ]
[ "$(docker exec "$single" id -u)" = 65532 ]
if docker exec "$single" sh -c 'echo x >/usr/local/bin/probe' 2>"$work/rofs.err"; then
    echo "the container could write its root filesystem" >&2
    exit 1
fi
grep -q 'Read-only file system' "$work/rofs.err"
docker exec "$single" sh -c 'echo x >/var/lib/ferry/probe && rm /var/lib/ferry/probe' # its twin: data_dir is writable
echo "    running as uid 65532 on a read-only root filesystem (data_dir on a tmpfs)"
subject=$(target/release/ferry-dev-idp mint --data-dir "$work/idp" \
    --sub "repo:acme/app:ref:refs/heads/main" --aud "$ferry" \
    --claim repository=acme/app --claim ref=refs/heads/main --claim 'repository_owner_id="65"')
token=$(exchange "$ferry" "$subject")
kid=$(verify "$token" "$ferry/jwks" https://deploy.example.com)
echo "    exchanged at $ferry; the token verifies against its /jwks (kid $kid)"
# Its twin: a subject token for another audience is refused.
other=$(target/release/ferry-dev-idp mint --data-dir "$work/idp" \
    --sub "repo:acme/app:ref:refs/heads/main" --aud "http://elsewhere.example" \
    --claim repository=acme/app --claim ref=refs/heads/main --claim 'repository_owner_id="65"')
if exchange "$ferry" "$other" >/dev/null 2>&1; then
    echo "the container accepted a subject token for another audience" >&2
    exit 1
fi
docker rm -f "$single" >/dev/null
single=
kill "$idp_pid"
idp_pid=

step "docker-compose up (docker-compose.yml + deploy/compose/host-network.yaml)"
compose_up=1
compose up -d --no-build 2>"$work/compose-up.log" || { cat "$work/compose-up.log" >&2; exit 1; }
ferry1=http://127.0.0.1:$FERRY_1_PORT
ferry2=http://127.0.0.1:$FERRY_2_PORT
wait_ready "$ferry1" 60
wait_ready "$ferry2" 30
echo "    ferry-1 at $ferry1, ferry-2 at $ferry2: ready"
mint() {
    compose exec -T dev-idp ferry-dev-idp mint --data-dir /idp --aud http://localhost:8080 \
        --sub repo:acme/app:ref:refs/heads/main --claim repository=acme/app \
        --claim ref=refs/heads/main --claim 'repository_owner_id="65"'
}
token=$(exchange "$ferry1" "$(mint)")
kid1=$(verify "$token" "$ferry2/jwks" https://deploy.example.com)
echo "    exchanged at ferry-1; verifies against ferry-2's /jwks (kid $kid1)"
before=$(jwks_kids "$ferry1")
[ "$before" = "$(jwks_kids "$ferry2")" ]

step "key rotation: ferry keys rotate in ferry-1, on the shared PostgreSQL key store"
# The standby must have been published for jwks_max_age + leeway (1 s here).
sleep 1.2
compose exec -T ferry-1 ferry keys rotate | sed 's/^/    /'
rotated=
for _ in $(seq 1 80); do
    token=$(exchange "$ferry2" "$(mint)")
    kid2=$(verify "$token" "$ferry1/jwks" https://deploy.example.com)
    k1=$(jwks_kids "$ferry1")
    k2=$(jwks_kids "$ferry2")
    if [ "$kid2" != "$kid1" ] && [ "$k1" = "$k2" ] && [ "$k1" != "$before" ]; then
        rotated=1
        break
    fi
    sleep 0.25
done
if [ -z "$rotated" ]; then
    echo "after the rotation: signing kid $kid2 (was $kid1); ferry-1 publishes $k1, ferry-2 $k2 (were $before)" >&2
    exit 1
fi
case " $before " in *" $kid2 "*) ;; *) echo "the new signing key $kid2 was not published before it signed" >&2; exit 1 ;; esac
echo "    ferry-2 now signs with $kid2 (published before it signed), ferry-1 verifies it;"
echo "    both publish the same new key set: $k1"
compose exec -T ferry-2 ferry keys list | sed 's/^/    /'

step "done"
echo "image checks passed in $(($(date +%s) - start)) s"
