#!/usr/bin/env bash
# Checks deploy/monitoring: the Prometheus rules load and pass their promtool unit tests
# (promtool from Debian's `prometheus` package; every alert fires in one test and stays quiet in a
# twin), and every metric name in the rules and the Grafana dashboard is one a real Ferry
# exports: the built binary is started on loopback with its metrics-only listener, a few
# exchanges create labelled series, and the names are checked against the `# HELP` lines
# of its /metrics (deploy/monitoring/check_metrics.py). Expects the binaries built.
set -euo pipefail
cd "$(dirname "$0")/.."
mon=deploy/monitoring
# promtool: installed, or unpacked by scripts/install-test-deps.sh.
PATH="$PATH:$PWD/target/monitoring-tools/usr/bin"
command -v promtool >/dev/null 2>&1 || { echo "promtool is required (scripts/install-test-deps.sh)" >&2; exit 1; }

echo "==> Prometheus rules: promtool check and unit tests"
promtool check rules "$mon/ferry-rules.yaml" >/dev/null
(cd "$mon/tests" && promtool test rules ferry-rules.test.yaml >/dev/null)
work=$(mktemp -d -t ferry-monitoring.XXXXXX)
pid=
cleanup() {
    if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT
# The unit tests are not vacuous: a rule whose threshold drifted fails them.
mkdir -p "$work/mutant/tests"
sed 's/ratio_rate5m > 0.05$/ratio_rate5m > 0.5/' "$mon/ferry-rules.yaml" >"$work/mutant/ferry-rules.yaml"
if cmp -s "$mon/ferry-rules.yaml" "$work/mutant/ferry-rules.yaml"; then echo "the mutant rule changed nothing" >&2; exit 1; fi
cp "$mon/tests/ferry-rules.test.yaml" "$work/mutant/tests/"
if (cd "$work/mutant/tests" && promtool test rules ferry-rules.test.yaml >/dev/null 2>&1); then
    echo "promtool unit tests passed a rule with a changed threshold" >&2
    exit 1
fi
echo "    rules valid; every alert's unit tests pass (and fail on a changed threshold)"

echo "==> every metric in the rules and the dashboard is exported by a running Ferry"
ferry=target/debug/ferry
idp=target/debug/ferry-dev-idp
mkdir -p "$work/idp"
"$idp" jwks --data-dir "$work/idp" >"$work/idp.json"
cat >"$work/ferry.yaml" <<EOF
issuer: https://ferry.example.com
listen: 127.0.0.1:0
data_dir: $work/data
admin: { listen: "off" }
metrics: { listen: "127.0.0.1:0" }
limits: { shutdown_delay: 0s }
providers:
  - id: dev
    issuer: https://idp.example.com
    audiences: [https://ferry.example.com]
    jwks: { file: $work/idp.json }
audiences:
  - audience: https://deploy.example.com
    rules:
      - allow: provider == 'dev'
EOF
FERRY_KEK=$("$ferry" keys new-kek) "$ferry" serve --config "$work/ferry.yaml" >"$work/audit.jsonl" 2>"$work/ferry.log" &
pid=$!
for _ in $(seq 1 200); do
    grep -q "ferry metrics listening on" "$work/ferry.log" 2>/dev/null && grep -q "ferry listening on" "$work/ferry.log" && break
    sleep 0.05
done
public=$(sed -n 's/.*ferry listening on \(http[^ ]*\).*/\1/p' "$work/ferry.log" | head -n1)
metrics=$(sed -n 's/.*ferry metrics listening on \(http[^ ]*\).*/\1/p' "$work/ferry.log" | head -n1)
[ -n "$public" ] && [ -n "$metrics" ] || { cat "$work/ferry.log" >&2; exit 1; }
# Events that create labelled series: an allowed and a denied exchange, a 404.
token=$("$idp" mint --data-dir "$work/idp" --issuer https://idp.example.com --sub svc --aud https://ferry.example.com)
exchange() {
    curl -s -o /dev/null -w '%{http_code}' "$public/token" \
        --data-urlencode "grant_type=urn:ietf:params:oauth:grant-type:token-exchange" \
        --data-urlencode "subject_token=$1" \
        --data-urlencode "subject_token_type=urn:ietf:params:oauth:token-type:jwt" \
        --data-urlencode "audience=https://deploy.example.com"
}
[ "$(exchange "$token")" = 200 ]
[ "$(exchange "not-a-token")" = 400 ]
curl -s -o /dev/null "$public/nowhere"
curl -sf "$metrics/metrics" >"$work/metrics.txt"
grep -q 'ferry_token_exchanges_total{provider="dev",audience="https://deploy.example.com",decision="allow",error=""} 1' "$work/metrics.txt"
python3 "$mon/check_metrics.py" "$work/metrics.txt" "$mon/ferry-rules.yaml" \
    "$mon/grafana-dashboard.json" "$mon/tests/ferry-rules.test.yaml"
# The check is not vacuous: a dashboard naming a metric Ferry does not export is refused.
sed 's/ferry_key_store_up/ferry_key_store_reachable/' "$mon/grafana-dashboard.json" >"$work/bad-dashboard.json"
if python3 "$mon/check_metrics.py" "$work/metrics.txt" "$mon/ferry-rules.yaml" \
    "$work/bad-dashboard.json" "$mon/tests/ferry-rules.test.yaml" >/dev/null 2>&1; then
    echo "check_metrics.py accepted a dashboard naming an unexported metric" >&2
    exit 1
fi
# Nor is a counter queried without its _total suffix accepted.
sed 's/ferry_replay_state_lost_total/ferry_replay_state_lost/' "$mon/ferry-rules.yaml" >"$work/bad-rules.yaml"
if python3 "$mon/check_metrics.py" "$work/metrics.txt" "$work/bad-rules.yaml" \
    "$mon/grafana-dashboard.json" "$mon/tests/ferry-rules.test.yaml" >/dev/null 2>&1; then
    echo "check_metrics.py accepted a counter queried without _total" >&2
    exit 1
fi
echo "monitoring checks passed"
