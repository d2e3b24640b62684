#!/usr/bin/env bash
# Ferry's load benchmark (not part of CI; figures in BENCHMARKS.md). Builds release
# binaries, starts Ferry pinned to core 0 with a realistic configuration (10 providers,
# GitHub-shaped RS256 subject tokens from a pool of 2,000 distinct ones, an audience with
# 20 rules), drives it from core 1 with wrk and with ferry-bench's busy-polling
# generator (wrk sleeps between responses, and waking it costs the server's core; see
# BENCHMARKS.md), and prints: exchanges/s, p50/p99, the
# cryptographic floor measured on core 0 in the same run and the ratio, the server's
# RSS; p99 at half the maximum rate with a fixed-rate generator; 100 concurrent requests
# against a cold issuer (its fetches counted); 10 vs 10,000 providers (throughput and
# startup); a soak (RSS at 10 s and at the end). Loopback only; everything stops by
# itself. Environment: SECS (each throughput run, default 10), SOAK (default 60).
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${SECS:-10}
SOAK=${SOAK:-60}
CONNS=${CONNS:-32}

command -v wrk >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk; }
[ "$(nproc)" -ge 2 ] || { echo "needs two cores (server and load generator apart)" >&2; exit 1; }

echo "==> release build"
cargo build --release --locked -q -p ferry-server -p ferry-bench --bins
ferry=$PWD/target/release/ferry
fb=$PWD/target/release/ferry-bench

work=$(mktemp -d -t ferry-bench.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
FERRY_KEK=$("$ferry" keys new-kek)
export FERRY_KEK

rss_mib() { awk '/VmRSS/ {printf "%.1f", $2/1024}' "/proc/$1/status"; }

# start DIR: starts Ferry on core 0; sets PID, URL and STARTUP_MS.
# Ferry binds port 0 and logs where (`ferry=info` keeps that line, `ferry_=warn` keeps
# the library crates quiet): no port is picked for it by binding and releasing a socket,
# which another process could take meanwhile.
start() {
    local dir=$1
    local t0
    t0=$(date +%s%N)
    FERRY_LISTEN=127.0.0.1:0 FERRY_ADMIN_LISTEN=off FERRY_LOG_LEVEL=warn,ferry=info,ferry_=warn \
        taskset -c 0 "$ferry" serve --config "$dir/ferry.yaml" >/dev/null 2>"$dir/ferry.log" &
    PID=$!
    pids+=("$PID")
    URL=
    until [ -n "$URL" ]; do
        kill -0 "$PID" 2>/dev/null || { cat "$dir/ferry.log" >&2; exit 1; }
        URL=$(sed -n 's/.*ferry listening on \(http[^ ]*\).*/\1/p' "$dir/ferry.log" | head -n1)
        [ -n "$URL" ] || sleep 0.01
    done
    until curl -fsS "$URL/healthz" >/dev/null 2>&1; do
        kill -0 "$PID" 2>/dev/null || { cat "$dir/ferry.log" >&2; exit 1; }
        sleep 0.01
    done
    STARTUP_MS=$((($(date +%s%N) - t0) / 1000000))
}
stop() { kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; }
wrk_run() { # wrk_run URL BODIES SECS
    BODIES=$2 taskset -c 1 wrk -t1 -c"$CONNS" -d"$3"s -s scripts/bench/exchange.lua "$1" | grep '^wrk_'
}
field() { sed -n "s/.*$1=\([^ ]*\).*/\1/p"; }
max_run() { # max_run URL BODIES SECS: the busy-polling closed-loop generator on core 1
    taskset -c 1 "$fb" max --url "$1" --bodies "$2" --conns "$CONNS" --secs "$3"
}

echo "==> fixtures"
"$fb" setup --dir "$work/p10" --providers 10 --tokens 2000
"$fb" setup --dir "$work/p10000" --providers 10000 --tokens 2000

echo "    limits: Ferry's defaults, except rate_per_source (raised: every request comes from one loopback address)"
echo "==> 10 providers: maximum throughput (server on core 0, wrk on core 1, $CONNS connections, ${SECS}s)"
start "$work/p10"
startup10=$STARTUP_MS
BODIES=$work/p10/bodies.txt taskset -c 1 wrk -t1 -c"$CONNS" -d2s -s scripts/bench/exchange.lua "$URL" >/dev/null # warm-up
out=$(wrk_run "$URL" "$work/p10/bodies.txt" "$SECS")
echo "    $out"
rps=$(echo "$out" | field wrk_rps)
echo "==> the same with the busy-polling generator (ferry-bench max, core 1)"
spin=$(max_run "$URL" "$work/p10/bodies.txt" "$SECS")
echo "    $spin"
rps_spin=$(echo "$spin" | field max_rps)
rss=$(rss_mib "$PID")
echo "==> HTTP alone: GET /healthz at full load (hyper, TCP, router and middleware)"
healthz=$(taskset -c 1 wrk -t1 -c"$CONNS" -d5s "$URL/healthz" | awk '/Requests\/sec/ {print $2}')
echo "    $healthz requests/s"
echo "==> HTTP, form parsing and an audited refusal: POST /token with an unsupported grant_type (busy-polling)"
sed 's/grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange/grant_type=urn%3Aexample%3Aunsupported/' \
    "$work/p10/bodies.txt" >"$work/p10/refusals.txt"
refusal=$(max_run "$URL" "$work/p10/refusals.txt" 5)
echo "    $refusal (every response a 400, as intended)"
refusal_rps=$(echo "$refusal" | field max_rps)
echo "==> the floor on core 0 (jsonwebtoken: RS256-2048 verify + ES256 sign)"
floor=$(taskset -c 0 "$fb" floor --secs 3)
echo "    $floor"
floor_per_s=$(echo "$floor" | field floor_per_s)
half=$((${rps_spin%.*} / 2))
echo "==> fixed rate at half the maximum ($half/s for ${SECS}s, latency from the scheduled send time)"
fixed=$(taskset -c 1 "$fb" load --url "$URL" --bodies "$work/p10/bodies.txt" --rate "$half" --secs "$SECS")
echo "    $fixed"
stop

echo "==> 10,000 providers"
start "$work/p10000"
startup10k=$STARTUP_MS
BODIES=$work/p10000/bodies.txt taskset -c 1 wrk -t1 -c"$CONNS" -d2s -s scripts/bench/exchange.lua "$URL" >/dev/null
out10k=$(wrk_run "$URL" "$work/p10000/bodies.txt" "$SECS")
echo "    $out10k"
rps10k=$(echo "$out10k" | field wrk_rps)
spin10k=$(max_run "$URL" "$work/p10000/bodies.txt" "$SECS")
echo "    $spin10k"
rps10k_spin=$(echo "$spin10k" | field max_rps)
rss10k=$(rss_mib "$PID")
stop

echo "==> cold issuer: 100 concurrent exchanges"
stampede=$("$fb" stampede --ferry "$ferry" --dir "$work/cold")
echo "    $stampede"

echo "==> soak: ${SOAK}s of maximum load"
start "$work/p10"
BODIES=$work/p10/bodies.txt taskset -c 1 wrk -t1 -c"$CONNS" -d"$SOAK"s -s scripts/bench/exchange.lua "$URL" >"$work/soak.out" &
wrk_pid=$!
sleep 10
rss_10s=$(rss_mib "$PID")
wait "$wrk_pid"
rss_end=$(rss_mib "$PID")
soak=$(grep '^wrk_' "$work/soak.out")
stop

echo
echo "================ summary ================"
printf 'floor exchanges/s (same core, same run) %s\n' "$floor_per_s"
printf 'exchanges/s, busy-polling generator     %s (%s of the floor; %s us each)\n' "$rps_spin" "$(python3 -c "print(f'{$rps_spin / $floor_per_s:.2f}')")" "$(python3 -c "print(f'{1e6 / $rps_spin:.1f}')")"
printf 'exchanges/s, wrk                        %s (%s of the floor)\n' "$rps" "$(python3 -c "print(f'{$rps / $floor_per_s:.2f}')")"
printf 'latency at max (busy-polling)           p50 %s ms, p99 %s ms\n' "$(echo "$spin" | field max_p50_ms)" "$(echo "$spin" | field max_p99_ms)"
printf 'latency at max (wrk)                    p50 %s ms, p99 %s ms\n' "$(echo "$out" | field wrk_p50_ms)" "$(echo "$out" | field wrk_p99_ms)"
printf 'latency at half max (fixed rate)        p50 %s ms, p99 %s ms, errors %s\n' "$(echo "$fixed" | field p50_ms)" "$(echo "$fixed" | field p99_ms)" "$(echo "$fixed" | field errors)"
printf 'RSS after the run                       %s MiB\n' "$rss"
printf 'HTTP alone (GET /healthz)               %s requests/s (%s us each)\n' "$healthz" "$(python3 -c "print(f'{1e6 / $healthz:.1f}')")"
printf 'refusal over TCP (busy-polling)         %s requests/s (%s us each)\n' "$refusal_rps" "$(python3 -c "print(f'{1e6 / $refusal_rps:.1f}')")"
printf '10,000 providers: exchanges/s           %s busy-polling (%s of 10 providers), %s wrk (%s)\n' "$rps10k_spin" "$(python3 -c "print(f'{$rps10k_spin / $rps_spin:.2f}')")" "$rps10k" "$(python3 -c "print(f'{$rps10k / $rps:.2f}')")"
printf 'startup: 10 / 10,000 providers          %s ms / %s ms (RSS %s MiB with 10,000)\n' "$startup10" "$startup10k" "$rss10k"
printf 'cold issuer                             %s\n' "${stampede#stampede: }"
printf 'soak %ss                                RSS %s MiB at 10 s, %s MiB at the end (%s)\n' "$SOAK" "$rss_10s" "$rss_end" "$(python3 -c "print(f'{($rss_end - $rss_10s) / $rss_10s * 100:+.1f} %')")"
printf 'soak wrk                                %s\n' "$soak"
