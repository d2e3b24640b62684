#!/usr/bin/env bash
# Checks deploy/ and docker-compose.yml without a cluster or a Docker engine (the image
# is built and run by scripts/image-test.sh): renders each Kustomize overlay with the
# kubectl on the machine (a deprecation warning fails the run), validates the objects
# against the Kubernetes schemas shipped by PyPI's kubernetes-validate (strict), checks
# what schemas cannot (deploy/check.py), runs `ferry check` on every bundled
# configuration, and validates the Compose file with Debian's docker-compose. Expects
# the ferry binary built (the test command builds it).
set -euo pipefail
cd "$(dirname "$0")/.."
ferry=target/debug/ferry

# The current kubectl only: the manifests use today's kustomize fields (labels,
# resources, patches), which kustomize v2 (kubectl <= 1.20) does not know.
command -v kubectl >/dev/null 2>&1 || { echo "kubectl is required (kustomize)" >&2; exit 1; }
kubectls=("$(command -v kubectl)")

venv=target/deploy-tools/venv
if [ ! -x "$venv/bin/kubernetes-validate" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check -r deploy/requirements.lock
fi

work=$(mktemp -d -t ferry-deploy.XXXXXX)
trap 'rm -rf "$work"' EXIT
kek=$("$ferry" keys new-kek)

echo "==> Kubernetes: render, validate, check"
cp -r deploy/kubernetes "$work/k8s"
for overlay in staging production with-datastores; do
    dir="$work/k8s/overlays/$overlay"
    printf '%s' "$kek" >"$dir/kek"
    printf '%s' 'postgres://ferry:pw@ferry-postgres:5432/ferry' >"$dir/postgres-url"
    printf '%s' 'pw' >"$dir/postgres-password"
    min=2; [ "$overlay" = production ] && min=3
    for kc in "${kubectls[@]}"; do
        version=$("$kc" version --client 2>/dev/null | grep -o 'v1\.[0-9]*' | head -1)
        out="$work/$overlay-$version.yaml"
        "$kc" kustomize "$dir" >"$out" 2>"$out.err"
        if [ -s "$out.err" ]; then
            echo "kubectl $version warned rendering $overlay:" >&2; cat "$out.err" >&2; exit 1
        fi
        for k in 1.30.0 1.37.0; do
            "$venv/bin/kubernetes-validate" --strict --quiet -k "$k" "$out"
        done
        "$venv/bin/python" deploy/check.py "$out" "$min" deploy/monitoring/kubernetes/servicemonitor.yaml
        echo "    $overlay rendered by kubectl $version (no warning): valid for Kubernetes 1.30 and 1.37"
    done
    # The configuration in the ConfigMap loads (data_dir moved somewhere writable).
    sed "s#/var/lib/ferry#$work/data-$overlay#" "$out.ferry.yaml" >"$work/$overlay-ferry.yaml"
    FERRY_KEK=$kek FERRY_POSTGRES_URL=unused "$ferry" check --config "$work/$overlay-ferry.yaml" >/dev/null
done
# The validator is not vacuous: a replica count that is not a number is refused.
sed 's/^  replicas: 3$/  replicas: three/' "$work/production-$version.yaml" >"$work/broken.yaml"
grep -q 'replicas: three' "$work/broken.yaml"
if "$venv/bin/kubernetes-validate" --strict --quiet -k 1.37.0 "$work/broken.yaml" >/dev/null 2>&1; then
    echo "kubernetes-validate accepted a broken Deployment" >&2
    exit 1
fi
# Nor is check.py: Redis without persistence, the admin port admitted, the metrics port
# open to every namespace, and a deprecated kustomize field are each refused.
datastores="$work/with-datastores-$version.yaml"
sed 's/^        - "yes"$/        - "no"/; s/^        - yes$/        - "no"/' "$datastores" >"$work/mutant-1.yaml"
sed 's/^    - port: 9464$/    - port: 9090/' "$datastores" >"$work/mutant-2.yaml"
sed 's#kubernetes.io/metadata.name: monitoring#kubernetes.io/metadata.name: default#' "$datastores" >"$work/mutant-3.yaml"
for m in 1 2 3; do
    if cmp -s "$datastores" "$work/mutant-$m.yaml"; then echo "mutant $m changed nothing" >&2; exit 1; fi
    if "$venv/bin/python" deploy/check.py "$work/mutant-$m.yaml" 2 >/dev/null 2>&1; then
        echo "deploy/check.py accepted mutant $m" >&2
        exit 1
    fi
done
sed -i 's/^resources:$/bases:/' "$work/k8s/overlays/staging/kustomization.yaml"
kubectl kustomize "$work/k8s/overlays/staging" 2>"$work/deprecated.err" >/dev/null
grep -qi deprecated "$work/deprecated.err"
echo "    check.py refuses Redis without appendonly, the admin port admitted, metrics open to another namespace; kubectl warns on bases:"

echo "==> docker-compose.yml"
FERRY_KEK=$kek FERRY_DB_PASSWORD=pw docker-compose -f docker-compose.yml config -q
# Without the secrets in the environment it refuses to render (nothing secret in the file).
if docker-compose -f docker-compose.yml config -q >/dev/null 2>&1; then
    echo "docker-compose.yml renders without FERRY_KEK and FERRY_DB_PASSWORD" >&2
    exit 1
fi
# Ferry's containers mount no volume the development issuer keeps its private key in.
FERRY_KEK=$kek FERRY_DB_PASSWORD=pw docker-compose -f docker-compose.yml config >"$work/compose.yaml"
"$venv/bin/python" - "$work/compose.yaml" <<'PY'
import sys, yaml
services = yaml.safe_load(open(sys.argv[1]))["services"]
def sources(svc):
    out = set()
    for v in services[svc].get("volumes", []):
        out.add(v["source"] if isinstance(v, dict) else v.split(":")[0])
    return out
key_volumes = {s for s in sources("dev-idp")} - {
    v for svc in services if svc != "dev-idp" and svc.startswith("ferry") for v in sources(svc)}
assert key_volumes, "the development issuer keeps a volume of its own (its private key)"
for svc in services:
    if svc.startswith("ferry"):
        shared = sources(svc) & sources("dev-idp")
        assert shared and all("jwks" in v for v in shared), f"{svc} mounts {shared}"
print("    the development issuer's key volume is mounted into no Ferry replica")
PY
# Ferry's containers have a read-only root filesystem and a writable data_dir (or readiness
# fails: "data directory not writable"), on a tmpfs or a volume.
"$venv/bin/python" - "$work/compose.yaml" <<'PY'
import sys, yaml
services = yaml.safe_load(open(sys.argv[1]))["services"]
for name, svc in services.items():
    if not name.startswith("ferry"):
        continue
    assert svc.get("read_only") is True, f"{name}: the root filesystem is not read-only"
    tmpfs = svc.get("tmpfs", [])
    tmpfs = [tmpfs] if isinstance(tmpfs, str) else tmpfs
    targets = [t.split(":")[0] for t in tmpfs] + [
        v.get("target") if isinstance(v, dict) else v.split(":")[1] for v in svc.get("volumes", [])]
    assert "/var/lib/ferry" in targets, f"{name}: data_dir /var/lib/ferry is not writable"
print("    Ferry's root filesystems are read-only, data_dir on a tmpfs")
PY
# Redis persists the replay state: append-only on, its data directory on a volume.
cat >"$work/redis_persists.py" <<'PY'
import sys, yaml
redis = yaml.safe_load(open(sys.argv[1]))["services"]["redis"]
command = redis.get("command", [])
command = command.split() if isinstance(command, str) else command
def option(name):
    return next((command[i + 1] for i, a in enumerate(command[:-1]) if a == name), None)
assert option("--appendonly") == "yes", f"Redis runs without appendonly yes: {command}"
data = option("--dir") or "/data"
targets = [v.get("target") if isinstance(v, dict) else v.split(":")[1]
           for v in redis.get("volumes", [])]
assert data in targets, f"Redis' {data} is not on a volume"
PY
"$venv/bin/python" "$work/redis_persists.py" "$work/compose.yaml"
# The check is not vacuous: Redis without persistence is refused.
sed 's/- "yes"$/- "no"/; s/- yes$/- "no"/' "$work/compose.yaml" >"$work/compose-nopersist.yaml"
if "$venv/bin/python" "$work/redis_persists.py" "$work/compose-nopersist.yaml" 2>/dev/null; then
    echo "the Redis persistence check accepted appendonly no" >&2
    exit 1
fi
echo "    Redis persists (appendonly yes, data on a volume)"
mkdir -p "$work/idp"
target/debug/ferry-dev-idp jwks --data-dir "$work/idp" >"$work/idp/jwks.json"
sed -e "s#/idp-jwks/jwks.json#$work/idp/jwks.json#" -e "s#/var/lib/ferry#$work/data-compose#" \
    deploy/compose/ferry.yaml >"$work/compose-ferry.yaml"
FERRY_KEK=$kek FERRY_POSTGRES_URL=unused "$ferry" check --config "$work/compose-ferry.yaml" >/dev/null
echo "    valid; its Ferry configuration passes ferry check"

echo "==> Dockerfile"
"$venv/bin/python" - <<'PY'
import re
text = open("deploy/Dockerfile").read()
stages = re.findall(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?", text, re.M)
names = [name for _, name in stages]
assert {"build", "prebuilt", "dev-idp", "runtime"} <= set(names), names
assert names[-1] == "runtime", "the runtime stage is last (the default target)"
# The standard bases are build arguments (a mirror or a local base can stand in).
args = dict(re.findall(r"^ARG\s+(\w+)=(\S+)", text[:text.index("\nFROM ")], re.M))
for stage, base in stages:
    if stage in ("build", "dev-idp", "runtime"):
        assert re.fullmatch(r"\$\{\w+\}", base), f"{stage} is FROM {base}, not a build argument"
assert "BINARIES" in args and args["BINARIES"] == "build", args
last = text[text.rindex("\nFROM "):]
user = re.findall(r"^USER\s+(\S+)", last, re.M)
assert user and not user[-1].startswith(("0", "root")), "the runtime runs as a non-root user"
assert "/usr/local/bin/ferry" in last
print("    stages", ", ".join(names), "; bases", ", ".join(f"{k}={v}" for k, v in args.items()),
      "; runtime as", user[-1])
PY
# Only the host's two release binaries pass .dockerignore from target/ (for the prebuilt stage).
grep -qx '!target/release/ferry' .dockerignore
grep -qx '!target/release/ferry-dev-idp' .dockerignore
echo "deploy checks passed"
