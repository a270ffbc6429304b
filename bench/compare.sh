#!/usr/bin/env bash
# Gatehouse beside the proxies people would pick instead, on this machine,
# in one run: nginx and HAProxy (Debian's packages) and Gatehouse, each with
# one worker thread, in front of one fast upstream (nginx answering a small
# JSON body), measured with wrk at fixed connections, rounds alternating:
#
#   direct            the upstream itself (the limit)
#   nginx             proxy_pass, keep-alive upstream pool
#   haproxy           plain proxy
#   gatehouse         a route without plugins
#   haproxy-chain     natively: jwt_verify HS256 + exp check, a stick-table
#                     rate limit that never triggers, headers added
#   gatehouse-chain   the quickstart's users route: jwt-auth (HS256) +
#                     rate-limit + transform + circuit-breaker, all Wasm
#   gatehouse-match   the same four plugins doing the work haproxy-chain
#                     does: transform without its response rules (headers
#                     and JSON edits), as bench_matched_route in
#                     bench/config.sh sets out
#
# then latency at a fixed rate (half the slowest peer's throughput), each
# request's latency counted from when it was due, so coordinated omission
# does not hide the tail (bench/fixed-rate, built here), and the gateway's
# resident memory over a million requests on the users chain, with every
# built-in plugin loaded (the quickstart's config). Around each measurement
# it reads the serving process's CPU time from /proc: CPU a request under
# wrk, and the share of a core kept busy at the fixed rate, which say what
# each proxy spends apart from how the two cores were shared out that round.
#
#   bench/compare.sh                      # 3 rounds of 5 s per case, then
#                                         # 3 latency rounds of 10 s
#   ROUNDS=5 DURATION=10s bench/compare.sh
#   GATEHOUSE=target/pgo/gatehouse bench/compare.sh   # `cargo xtask pgo`'s build
#
# Prints a table with ratios (gatehouse / peer) and writes
# bench/results/compare.json. Needs nginx, haproxy and wrk (Debian packages:
# installed here when running as root, else `sudo apt-get install nginx
# haproxy wrk`).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/config.sh
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5s}
CONNECTIONS=${CONNECTIONS:-32}
RATE_DURATION=${RATE_DURATION:-10s}
GATEHOUSE=${GATEHOUSE:-target/release/gatehouse}
LATENCY_ROUNDS=${LATENCY_ROUNDS:-3}
MILLION=${MILLION:-1000000}
BASE_PORT=${BASE_PORT:-19100}
UP=$((BASE_PORT + 1)) NGINX=$((BASE_PORT + 2)) HAPROXY=$((BASE_PORT + 3))
HAPROXY_CHAIN=$((BASE_PORT + 4)) GATEWAY=$((BASE_PORT + 5))

bench_need nginx haproxy wrk
PATH="$PATH:/usr/sbin"

cargo xtask plugins
# Another binary named in GATEHOUSE (`cargo xtask pgo`'s) is measured as it is.
if [ "$GATEHOUSE" = target/release/gatehouse ]; then cargo build --release -p gatehouse; fi
# A build of its own: built together, fixed-rate's nix would turn on libc's
# extra_traits for the gateway too, rebuilding (and changing) the gateway's
# whole dependency tree.
cargo build --release -p fixed-rate

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

# The quickstart's demo token: HS256, quickstart-secret, expires in 2100.
TOKEN=$(bench_token)

bench_nginx upstream "$UP" "default_type application/json; return 200 '$BENCH_BODY';"
upstream_pid=${pids[-1]}
bench_nginx nginx "$NGINX" 'proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection "";'
nginx_pid=${pids[-1]}

bench_haproxy_config "$UP" "$HAPROXY" "$HAPROXY_CHAIN" > "$work/haproxy.cfg"
haproxy -q -f "$work/haproxy.cfg" &
haproxy_pid=$!
pids+=("$haproxy_pid")

# The quickstart's config (every built-in plugin loaded), one worker, every
# upstream on the nginx one, the users rate limit raised so it never
# triggers, and a plain route without plugins.
sed -e "s|^listen = .*|listen = \"127.0.0.1:$GATEWAY\"|" \
    -e "s|^plugins_dir = .*|plugins_dir = \"$PWD/target/plugins\"|" \
    -e "s|^workers = .*|workers = 1|" \
    -e "s|^targets = .*|targets = [\"127.0.0.1:$UP\"]|" \
    -e 's/limit = 5, window = "1m"/limit = 1000000000, window = "1m"/' \
    examples/quickstart/gatehouse.toml > "$work/gatehouse.toml"
printf '\n[[routes]]\nname = "plain"\npath = "/users/*"\nupstream = "users"\n\n' >> "$work/gatehouse.toml"
bench_matched_route | sed 's/^upstream = "up"$/upstream = "users"/' >> "$work/gatehouse.toml"
# Every plugin's optimised code into the compile cache first: a gateway
# started on a cold cache serves baseline code for its first seconds.
"$GATEHOUSE" check --config "$work/gatehouse.toml" >/dev/null
GATEHOUSE_LOG=warn "$GATEHOUSE" run --no-watch --config "$work/gatehouse.toml" &
gateway_pid=$!
pids+=("$gateway_pid")

for port in "$UP" "$NGINX" "$HAPROXY" "$HAPROXY_CHAIN" "$GATEWAY"; do
    for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.05; done
done
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$gateway_pid/status"; }
rss_ready=$(rss_kib)

declare -A URL=(
    [direct]="http://127.0.0.1:$UP/users/42"
    [nginx]="http://127.0.0.1:$NGINX/users/42"
    [haproxy]="http://127.0.0.1:$HAPROXY/users/42"
    [gatehouse]="http://127.0.0.1:$GATEWAY/users/42"
    [haproxy-chain]="http://127.0.0.1:$HAPROXY_CHAIN/users/42"
    [gatehouse-chain]="http://127.0.0.1:$GATEWAY/api/v1/users/42"
    [gatehouse-match]="http://127.0.0.1:$GATEWAY/match/users/42"
)
CASES=(direct nginx haproxy gatehouse haproxy-chain gatehouse-chain gatehouse-match)
# The process serving each case (for direct, the upstream itself), whose
# CPU time is read around each measurement.
declare -A PID=(
    [direct]=$upstream_pid [nginx]=$nginx_pid [haproxy]=$haproxy_pid [haproxy-chain]=$haproxy_pid
    [gatehouse]=$gateway_pid [gatehouse-chain]=$gateway_pid [gatehouse-match]=$gateway_pid
)
AUTH="Authorization: Bearer $TOKEN"

for c in "${CASES[@]}"; do   # each must answer 200 before it is measured
    status=$(curl -s -o /dev/null -w '%{http_code}' -H "$AUTH" "${URL[$c]}")
    [ "$status" = 200 ] || { echo "compare: $c answered $status" >&2; exit 1; }
    wrk -t1 -c"$CONNECTIONS" -d2s -H "$AUTH" "${URL[$c]}" >/dev/null   # warm pools and instances
done
for c in haproxy-chain gatehouse-chain gatehouse-match; do   # the chains really check the token
    for auth in "Authorization: Bearer ${TOKEN}x" "Authorization: Bearer" "X-None: 1"; do
        status=$(curl -s -o /dev/null -w '%{http_code}' -H "$auth" "${URL[$c]}")
        [ "$status" = 401 ] || { echo "compare: $c let \"$auth\" through ($status)" >&2; exit 1; }
    done
done

echo "wrk -t1 -c$CONNECTIONS -d$DURATION, $ROUNDS rounds alternating, one worker per proxy, $(nproc) cores" >&2
for round in $(seq "$ROUNDS"); do
    for c in "${CASES[@]}"; do
        before=$(bench_cpu_ticks "${PID[$c]}")
        out=$(wrk -t1 -c"$CONNECTIONS" -d"$DURATION" -H "$AUTH" "${URL[$c]}")
        after=$(bench_cpu_ticks "${PID[$c]}")
        if grep -q "Non-2xx" <<<"$out"; then
            echo "compare: $c got non-2xx answers" >&2; exit 1
        fi
        rps=$(awk '/Requests\/sec/ { print $2 }' <<<"$out")
        n=$(awk '/requests in/ { print $1 }' <<<"$out")
        cpu=$(python3 -c "print(round(($after - $before) * 1e6 / $BENCH_TICK / $n, 1))")
        echo "{\"case\":\"$c\",\"round\":$round,\"rps\":$rps,\"cpu_us\":$cpu}" >> "$work/throughput.jsonl"
        printf '  round %s  %-16s %10.0f req/s %8.1f µs CPU a request\n' "$round" "$c" "$rps" "$cpu" >&2
    done
done

median_rps() { python3 - "$work/throughput.jsonl" "$1" <<'PY'
import json, statistics, sys
print(statistics.median(r["rps"] for r in map(json.loads, open(sys.argv[1])) if r["case"] == sys.argv[2]))
PY
}
declare -A RPS
for c in "${CASES[@]}"; do RPS[$c]=$(median_rps "$c"); done

# Latency at a fixed rate: half of the slowest peer's throughput, for both
# pairs, each request's latency counted from when it was due.
latency() { # case, rate
    local before after
    before=$(bench_cpu_ticks "${PID[$1]}")
    target/release/fixed-rate -q "$2" -z "$RATE_DURATION" -c "$CONNECTIONS" -H "$AUTH" \
        "${URL[$1]}" > "$work/rate-$1.json"
    after=$(bench_cpu_ticks "${PID[$1]}")
    python3 - "$work/rate-$1.json" "$1" "$2" "$((after - before))" "$BENCH_TICK" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
p = r["latency_us"]
bad = r["errors"] + sum(n for code, n in r["statuses"].items() if code != "200")
cpu_s = int(sys.argv[4]) / int(sys.argv[5])
print(json.dumps({"case": sys.argv[2], "rate": int(float(sys.argv[3])),
                  "p50_us": p["p50"], "p99_us": p["p99"], "non_200": bad,
                  "release_lag_p99_us": r["release_lag_us"]["p99"],
                  # The share of a core the proxy kept busy at the rate.
                  "busy": round(cpu_s / r["seconds"], 3)}))
PY
}
plain_rate=$(python3 -c "print(int(min(${RPS[nginx]}, ${RPS[haproxy]}, ${RPS[gatehouse]}) / 2))")
chain_rate=$(python3 -c "print(int(min(${RPS[haproxy-chain]}, ${RPS[gatehouse-chain]}) / 2))")
echo "latency at a fixed rate: $plain_rate req/s (plain), $chain_rate req/s (chain), $RATE_DURATION each, $LATENCY_ROUNDS rounds alternating" >&2
# One window's tail moves by milliseconds between runs on a shared 2-core
# machine (every proxy's alike), so the cases alternate for LATENCY_ROUNDS
# rounds as the throughput ones do, and each case's median round counts.
# The upstream alone at the plain rate is the floor: what the load tool and
# the machine add with no proxy in between.
for round in $(seq "$LATENCY_ROUNDS"); do
    for c in direct nginx haproxy gatehouse; do latency "$c" "$plain_rate" >> "$work/latency.jsonl"; done
    for c in haproxy-chain gatehouse-chain gatehouse-match; do latency "$c" "$chain_rate" >> "$work/latency.jsonl"; done
done

# Memory over a million requests on the users chain, sampled as it goes.
rss_before=$(rss_kib)
( while kill -0 "$gateway_pid" 2>/dev/null; do rss_kib; sleep 1; done ) > "$work/rss.txt" 2>/dev/null &
sampler=$!
pids+=("$sampler")
echo "memory: $MILLION requests on the users chain" >&2
target/release/fixed-rate -n "$MILLION" -c "$CONNECTIONS" -H "$AUTH" \
    "${URL[gatehouse-chain]}" > "$work/million.json"
kill "$sampler" 2>/dev/null || true
rss_after=$(rss_kib)

mkdir -p bench/results
python3 - "$work" "$rss_ready" "$rss_before" "$rss_after" "$MILLION" "$ROUNDS" "$DURATION" "$CONNECTIONS" \
    "$GATEHOUSE" > bench/results/compare.json <<'PY'
import json, statistics, sys
work, ready, before, after, million, rounds, duration, conns, binary = sys.argv[1:]
tp = [json.loads(l) for l in open(f"{work}/throughput.jsonl")]
cases = sorted({r["case"] for r in tp}, key=[r["case"] for r in tp].index)
# Each case's rounds, in order.
each = {c: [r["rps"] for r in tp if r["case"] == c] for c in cases}
rps = {c: statistics.median(v) for c, v in each.items()}
cpu_each = {c: [r["cpu_us"] for r in tp if r["case"] == c] for c in cases}
cpu = {c: statistics.median(v) for c, v in cpu_each.items()}
windows = [json.loads(l) for l in open(f"{work}/latency.jsonl")]
lat = {}
for c in sorted({w["case"] for w in windows}, key=[w["case"] for w in windows].index):
    mine = [w for w in windows if w["case"] == c]
    lat[c] = {"rate": mine[0]["rate"],
              "p50_us": round(statistics.median(w["p50_us"] for w in mine)),
              "p99_us": round(statistics.median(w["p99_us"] for w in mine)),
              "p99_us_each_round": [w["p99_us"] for w in mine],
              # How late the load tool released requests (its own share).
              "release_lag_p99_us": round(statistics.median(w["release_lag_p99_us"] for w in mine)),
              "busy": statistics.median(w["busy"] for w in mine),
              "non_200": sum(w["non_200"] for w in mine)}
samples = [int(l) for l in open(f"{work}/rss.txt") if l.strip().isdigit()]
m = json.load(open(f"{work}/million.json"))
half = samples[len(samples) // 2] if samples else int(before)
mib = lambda kib: round(int(kib) / 1024, 1)
# Each Gatehouse case's peer; Gatehouse without plugins is also set beside nginx.
peer = {"gatehouse": "haproxy", "gatehouse-chain": "haproxy-chain", "gatehouse-match": "haproxy-chain"}
pairs = [("gatehouse", "nginx"), *peer.items()]
print(json.dumps({
    "setup": {"rounds": int(rounds), "duration": duration, "connections": int(conns),
              "workers": 1, "tool": "wrk -t1; bench/fixed-rate -q RATE for latency",
              "gatehouse": binary},
    "throughput_rps": {c: round(v) for c, v in rps.items()},
    "throughput_ratio": {
        f"{a}/{b}": round(rps[a] / rps[b], 3)
        for a, b in [*pairs, ("gatehouse-chain", "gatehouse")]
    },
    # CPU time (user and kernel) the serving process spent a request under
    # wrk, median of the rounds: what each proxy's throughput costs it.
    "cpu_us_per_request": cpu,
    "cpu_ratio": {f"{a}/{b}": round(cpu[a] / cpu[b], 3) for a, b in pairs},
    "cpu_us_each_round": cpu_each,
    "cpu_ratio_each_round": {
        f"{a}/{b}": [round(x / y, 3) for x, y in zip(cpu_each[a], cpu_each[b])] for a, b in pairs
    },
    "throughput_rps_each_round": {c: [round(x) for x in v] for c, v in each.items()},
    # Each round's pair ran back to back, seconds apart: their ratio is
    # free of the machine's drift between rounds, which the ratio of the
    # medians is not.
    "throughput_ratio_each_round": {
        f"{a}/{b}": [round(x / y, 3) for x, y in zip(each[a], each[b])] for a, b in pairs
    },
    "latency_at_fixed_rate": lat,
    "p99_difference_us": {
        f"{a}-{b}": lat[a]["p99_us"] - lat[b]["p99_us"] for a, b in peer.items()
    },
    "memory": {
        "rss_ready_mib": mib(ready),
        "rss_before_million_mib": mib(before),
        "rss_halfway_mib": mib(half),
        "rss_after_million_mib": mib(after),
        "rss_max_mib": mib(max(samples + [int(after)])),
        "requests": int(million),
        "non_200": m["errors"] + sum(n for c, n in m["statuses"].items() if c != "200"),
        "million_rps": round(m["rate"]),
    },
}, indent=2))
PY

python3 - <<'PY'
import json
r = json.load(open("bench/results/compare.json"))
t, l, cpu = r["throughput_rps"], r["latency_at_fixed_rate"], r["cpu_us_per_request"]
print("\n%-16s %12s %12s %10s %10s %10s %8s" % ("case", "requests/s", "vs peer", "CPU µs/req",
                                               "p50 µs", "p99 µs", "busy"))
peer = {"gatehouse": "haproxy", "gatehouse-chain": "haproxy-chain", "gatehouse-match": "haproxy-chain"}
for c, v in t.items():
    ratio = "%.2f× %s" % (v / t[peer[c]], peer[c]) if c in peer else ""
    p50 = l.get(c, {}).get("p50_us", "")
    p99 = l.get(c, {}).get("p99_us", "")
    busy = "%.2f" % l[c]["busy"] if c in l else ""
    print("%-16s %12d %12s %10.1f %10s %10s %8s" % (c, v, ratio, cpu[c], p50, p99, busy))
print("p50/p99: median of the latency rounds; p99 each round: "
      + "; ".join("%s %s" % (c, "/".join(map(str, v["p99_us_each_round"]))) for c, v in l.items()))
print("\nratios:", ", ".join("%s %.3f" % kv for kv in r["throughput_ratio"].items()))
print("CPU a request, gatehouse / peer:", ", ".join("%s %.3f" % kv for kv in r["cpu_ratio"].items()))
print("each round's CPU ratio:", "; ".join("%s %s" % (k, " ".join("%.3f" % x for x in v))
                                          for k, v in r["cpu_ratio_each_round"].items()))
print("each round's ratio:", "; ".join("%s %s" % (k, " ".join("%.3f" % x for x in v))
                                      for k, v in r["throughput_ratio_each_round"].items()))
m = r["memory"]
print("gateway RSS: %.1f MiB ready, %.1f MiB before, %.1f MiB halfway, %.1f MiB after %d requests (max %.1f; %d non-200)"
      % (m["rss_ready_mib"], m["rss_before_million_mib"], m["rss_halfway_mib"], m["rss_after_million_mib"],
         m["requests"], m["rss_max_mib"], m["non_200"]))
PY
