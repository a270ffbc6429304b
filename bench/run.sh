#!/usr/bin/env bash
# Load benchmark: throughput and latency (wrk) direct to an upstream, and
# through Gatehouse with no plugin, one and four warm add-header plugins on
# the route, and the quickstart's users route (jwt-auth HS256 + rate-limit +
# transform + circuit-breaker, with a valid token) against the same route
# without plugins; then the criterion micro-benchmarks (each plugin's warm
# cost, the users chain, one host call of each kind, the router); then
# start-up time with an empty and a warm compile cache (bench/startup.sh);
# and each language's example plugin: size, compile time, cold start, memory
# and warm call (benches/languages.rs).
#
#   bench/run.sh            # 10 s per case
#   DURATION=30s bench/run.sh
#   LOAD_ONLY=1 bench/run.sh   # the wrk cases only
#
# Writes bench/results/load.json. Needs wrk (Debian package `wrk`; installed
# here when running as root). Results depend on the machine: the figures in
# the README were measured on 2 cores, gateway with workers = 1.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/config.sh
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-32}
UPSTREAM_PORT=${UPSTREAM_PORT:-19001}
GATEWAY_PORT=${GATEWAY_PORT:-19080}

bench_need wrk

cargo xtask plugins
cargo build --release -p gatehouse -p demo-services

bench_start_upstream

{
    bench_server_and_plain_route
    bench_add_header_routes
    bench_users_route
} > "$work/gatehouse.toml"
# Every plugin's optimised code into the compile cache first: a gateway
# started on a cold cache serves baseline code for its first seconds.
target/release/gatehouse check --config "$work/gatehouse.toml" >/dev/null
GATEHOUSE_LOG=warn target/release/gatehouse run --config "$work/gatehouse.toml" &
pids+=($!)

for port in "$UPSTREAM_PORT" "$GATEWAY_PORT"; do
    for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
done

# wrk's latency distribution, in microseconds.
to_us() { awk -v v="$1" 'BEGIN { n = v + 0; u = v; sub(/^[0-9.]+/, "", u);
    if (u == "us") print n; else if (u == "ms") print n * 1000; else if (u == "s") print n * 1000000; else print n }'; }

run_case() {
    local name=$1 url=$2 out
    shift 2
    wrk -t1 -c"$CONNECTIONS" -d2s "$@" "$url" >/dev/null   # warm pools and instances
    out=$(wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --latency "$@" "$url")
    if grep -q "Non-2xx" <<<"$out"; then
        echo "bench: $name got non-2xx answers:" >&2; grep "Non-2xx" <<<"$out" >&2; exit 1
    fi
    local rps p50 p99
    rps=$(awk '/Requests\/sec/ { print $2 }' <<<"$out")
    p50=$(to_us "$(awk '$1 == "50%" { print $2 }' <<<"$out")")
    p99=$(to_us "$(awk '$1 == "99%" { print $2 }' <<<"$out")")
    printf '%-22s %12.0f %10.0f %10.0f\n' "$name" "$rps" "$p50" "$p99"
    echo "{\"case\":\"$name\",\"rps\":$rps,\"p50_us\":$p50,\"p99_us\":$p99}" >> "$work/cases.jsonl"
}

echo
echo "wrk -t1 -c$CONNECTIONS -d$DURATION, gateway workers = 1, $(nproc) cores"
printf '%-22s %12s %10s %10s\n' case "requests/s" "p50 µs" "p99 µs"
run_case direct "http://127.0.0.1:$UPSTREAM_PORT/none/x"
run_case "gateway, no plugin" "http://127.0.0.1:$GATEWAY_PORT/none/x"
run_case "gateway, 1 plugin" "http://127.0.0.1:$GATEWAY_PORT/one/x"
run_case "gateway, 4 plugins" "http://127.0.0.1:$GATEWAY_PORT/four/x"
# The quickstart's demo token: HS256, quickstart-secret, expires in 2100.
TOKEN=$(bench_token)
run_case "users, no plugin" "http://127.0.0.1:$GATEWAY_PORT/none/users/42" -H "Authorization: Bearer $TOKEN"
run_case "users, 4-plugin chain" "http://127.0.0.1:$GATEWAY_PORT/api/v1/users/42" -H "Authorization: Bearer $TOKEN"

mkdir -p bench/results
python3 - "$work/cases.jsonl" > bench/results/load.json <<'PY'
import json, sys
cases = [json.loads(l) for l in open(sys.argv[1])]
by = {c["case"]: c for c in cases}
none, four = by["gateway, no plugin"], by["gateway, 4 plugins"]
# CPU time per request at saturation, so the added cost per plugin is the
# difference in 1/throughput spread over the four plugins (one worker thread).
added = (1e6 / four["rps"] - 1e6 / none["rps"]) / 4
users, bare = by["users, 4-plugin chain"], by["users, no plugin"]
print(json.dumps({
    "cases": cases,
    "added_us_per_plugin_at_saturation": round(added, 2),
    # Issue target: the users chain keeps at least 75 % of the bare route's throughput.
    "users_chain_throughput_ratio": round(users["rps"] / bare["rps"], 3),
}, indent=2))
PY
python3 - <<'PY'
import json
r = json.load(open('bench/results/load.json'))
print('added per add-header plugin at saturation: %.2f µs' % r['added_us_per_plugin_at_saturation'])
print('users chain / same route without plugins: %.1f %% of the throughput (target >= 75 %%)' % (100 * r['users_chain_throughput_ratio']))
PY

[ -n "${LOAD_ONLY:-}" ] && exit 0

echo
echo "== warm plugin call, host calls and router (criterion)"
cargo bench -p gatehouse-bench --bench plugin_call --bench host_calls --bench router -- --warm-up-time 1 --measurement-time 3 2>&1 | grep -E '^(plugin|chain|host_calls|router)|time:'

echo
echo "== plugins by language: size, compile, cold start, memory, warm call (criterion)"
cargo xtask examples >/dev/null
cargo bench -p gatehouse-bench --bench languages -- --warm-up-time 1 --measurement-time 3 2>&1 \
    | grep -E '^(example|rust|c |python|js|language)|time:'

echo
echo "== start-up"
RUNS=3 bench/startup.sh
