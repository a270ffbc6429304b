#!/usr/bin/env bash
# Two gatehouse binaries, alternating, on the same upstream and config: for
# the route without plugins and the quickstart's users chain, the gateway's
# CPU time per request (user + system, from /proc) at saturation, and
# p50/p99 at a fixed rate (bench/fixed-rate, latency from when each request
# was due; RATE for the bare route, CHAIN_RATE for the chain). CPU per request
# varies less on a shared VM than requests/s does, so a change's effect is
# read from it; run several rounds all the same.
#
#   bench/ab.sh OLD_BINARY NEW_BINARY
#   ROUNDS=5 RATE=12000 CHAIN_RATE=5000 bench/ab.sh /tmp/gatehouse-before target/release/gatehouse
#
# Expects `cargo xtask plugins`, the release builds of demo-services and
# fixed-rate, and wrk.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/config.sh
[ $# = 2 ] || { echo "usage: bench/ab.sh OLD_BINARY NEW_BINARY" >&2; exit 2; }
ROUNDS=${ROUNDS:-3}
RATE=${RATE:-12000}
CHAIN_RATE=${CHAIN_RATE:-5000}
DURATION=${DURATION:-4s}
UPSTREAM_PORT=${UPSTREAM_PORT:-19301}
GATEWAY_PORT=${GATEWAY_PORT:-19380}

bench_start_upstream
AUTH="Authorization: Bearer $(bench_token)"
{
    bench_server_and_plain_route
    bench_users_route
} > "$work/gatehouse.toml"
# Optimised code for both binaries' engines, so neither runs baseline code.
for bin in "$1" "$2"; do "$bin" check --config "$work/gatehouse.toml" >/dev/null; done

# "REQUESTS_PER_S CPU_US_PER_REQUEST" for one wrk run against PATH.
saturate() {
    local before after out n
    before=$(bench_cpu_ticks "$1")
    out=$(wrk -t1 -c32 -d"$DURATION" -H "$AUTH" "http://127.0.0.1:$GATEWAY_PORT$2")
    after=$(bench_cpu_ticks "$1")
    n=$(awk '/requests in/ { print $1 }' <<<"$out")
    echo "$(awk '/Requests\/sec/ { printf "%d", $2 }' <<<"$out") $(( (after - before) * 1000000 / BENCH_TICK / n ))"
}
# "P50_US P99_US" at RATE requests/s on PATH.
fixed_rate() {
    target/release/fixed-rate -z "$DURATION" -c 32 -q "$2" -H "$AUTH" \
        "http://127.0.0.1:$GATEWAY_PORT$1" > "$work/rate.json"
    python3 -c 'import json, sys
p = json.load(open(sys.argv[1]))["latency_us"]
print(p["p50"], p["p99"])' "$work/rate.json"
}

printf '%-6s %-6s %12s %12s %18s\n' binary route "requests/s" "CPU µs/req" "p50/p99 µs (rate)"
for _ in $(seq "$ROUNDS"); do
    for side in old new; do
        bin=$1; [ "$side" = new ] && bin=$2
        GATEHOUSE_LOG=warn "$bin" run --no-watch --config "$work/gatehouse.toml" >/dev/null 2>&1 &
        pid=$!
        bench_wait_listening "$GATEWAY_PORT" "$pid"
        for path in /none/users/42 /api/v1/users/42; do   # warm pools and instances
            wrk -t1 -c32 -d1s -H "$AUTH" "http://127.0.0.1:$GATEWAY_PORT$path" >/dev/null
        done
        for path in /none/users/42 /api/v1/users/42; do
            route=none rate=$RATE
            [ "$path" = /none/users/42 ] || { route=users; rate=$CHAIN_RATE; }
            read -r rps cpu < <(saturate "$pid" "$path")
            read -r p50 p99 < <(fixed_rate "$path" "$rate")
            printf '%-6s %-6s %12s %12s %18s\n' "$side" "$route" "$rps" "$cpu" "$p50/$p99 ($rate)"
        done
        kill "$pid"; wait "$pid" 2>/dev/null || true
    done
done
