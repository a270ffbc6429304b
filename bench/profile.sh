#!/usr/bin/env bash
# Where the gateway's CPU time goes under load: perf samples of the gateway
# process (user space and kernel) while wrk drives one route, summed by
# part: the kernel, wasmtime's runtime, each plugin's own code (by plugin
# name), hyper, tokio, header maps, the allocator, libc and Gatehouse's own
# code; then the costliest functions. Code the compiler inlined counts
# toward the function it was inlined into, so the split is approximate;
# `bench/instructions.sh` is the steadier measure of a change.
#
#   bench/profile.sh                    # the quickstart's users chain
#   ROUTE=none bench/profile.sh         # the route without plugins
#   FLAME=1 bench/profile.sh            # and a flame graph (inferno)
#   UPSTREAM=nginx bench/profile.sh     # behind bench/compare.sh's upstream
#
# Writes bench/results/profile-ROUTE.txt (and profile-ROUTE.svg with
# FLAME=1, from a second run recording call stacks). Needs perf (Debian's linux-perf) and wrk, `cargo xtask plugins`
# and the release builds; FLAME=1 installs inferno into target/bench-tools.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/config.sh
GATEHOUSE=${GATEHOUSE:-target/release/gatehouse}
ROUTE=${ROUTE:-users}
DURATION=${DURATION:-5}
TOP=${TOP:-20}
UPSTREAM_PORT=${UPSTREAM_PORT:-19521}
GATEWAY_PORT=${GATEWAY_PORT:-19580}
export PATH="$PATH:$PWD/target/bench-tools/bin"

bench_need perf:linux-perf wrk
if [ -n "${FLAME:-}" ] && ! command -v inferno-flamegraph >/dev/null; then
    echo "profile: installing inferno into target/bench-tools (a minute or two, once)" >&2
    cargo install --locked --quiet --root target/bench-tools inferno
fi

bench_start_upstream
AUTH="Authorization: Bearer $(bench_token)"
{
    bench_server_and_plain_route
    bench_users_route
} > "$work/gatehouse.toml"
path=/none/users/42
[ "$ROUTE" = users ] && path=/api/v1/users/42
url="http://127.0.0.1:$GATEWAY_PORT$path"

# Plugin code named for perf (/tmp/perf-PID.map), optimised into the compile
# cache first for these engine settings, so no sample is of baseline code or
# of the optimiser.
export GATEHOUSE_WASM_PROFILE=perfmap
"$GATEHOUSE" check --config "$work/gatehouse.toml" >/dev/null &
check=$!
wait "$check"
rm -f "/tmp/perf-$check.map"
GATEHOUSE_LOG=error "$GATEHOUSE" run --no-watch --config "$work/gatehouse.toml" >/dev/null 2>&1 &
gw=$!
pids+=("$gw")
bench_wait_listening "$GATEWAY_PORT" "$gw"
wrk -t1 -c16 -d2s -H "$AUTH" "$url" >/dev/null

# Samples under wrk for DURATION seconds into $1, with perf options $2...;
# prints the requests served meanwhile.
sample() {
    local data=$1
    shift
    perf record -q -F 999 "$@" -p "$gw" -o "$data" -- sleep "$DURATION" 2>/dev/null &
    local rec=$!
    wrk -t1 -c16 -d"${DURATION}s" -H "$AUTH" "$url" | awk '/requests in/ { print $1 }'
    wait "$rec"
}
before=$(bench_cpu_ticks "$gw")
requests=$(sample "$work/perf.data")
after=$(bench_cpu_ticks "$gw")
cpu_us=$(( (after - before) * 1000000 / BENCH_TICK ))
# Call stacks for the flame graph in a run of their own: copying stacks
# costs the gateway time, which the table above must not include.
[ -n "${FLAME:-}" ] && sample "$work/flame.data" --call-graph dwarf,16384 >/dev/null

# The compile cache names each plugin's code after its .wasm's SHA-256.
for f in target/plugins/*.wasm; do
    echo "$(sha256sum "$f" | cut -c1-64) $(basename "$f" .wasm)"
done > "$work/plugins.txt"
perf report -i "$work/perf.data" --no-children --sort dso,sym --stdio -g none 2>/dev/null \
    > "$work/report.txt"
[ -n "${FLAME:-}" ] && perf script -i "$work/flame.data" --no-inline 2>/dev/null \
    > "$work/flame.txt"
# Symbols are resolved: the gateway's perf map is no longer needed.
rm -f "/tmp/perf-$gw.map"

mkdir -p bench/results
out=bench/results/profile-$ROUTE.txt
python3 - "$work/report.txt" "$work/plugins.txt" "$ROUTE" "$requests" "$cpu_us" "$TOP" <<'PY' | tee "$out"
import re, sys
report, plugins, route, requests, cpu_us, top = sys.argv[1:]
requests, cpu_us, top = int(requests), int(cpu_us), int(top)
names = dict(line.split() for line in open(plugins))

def part(dso, sym):
    if dso.startswith("[kernel"):
        return "kernel"
    m = re.match(r"([0-9a-f]{64})-.*\.cwasm$", dso)
    if m:
        return f"plugin {names.get(m.group(1), m.group(1)[:12])} (its own code)"
    if dso.startswith("libc") or dso == "[vdso]":
        return "libc and vDSO (memcpy, syscall wrappers, clock)"
    for pattern, name in [
        (r"wasmtime|cranelift|winch", "wasmtime (entries, host calls, resources)"),
        (r"gatehouse::plugin", "gatehouse plugin host (chain, pool, host calls)"),
        (r"hyper|httparse|want::", "hyper (HTTP/1 server and client)"),
        (r"tokio|mio::", "tokio (scheduler, I/O readiness, timers)"),
        (r"http::|HeaderMap|HeaderName|HeaderValue", "http (header maps, URIs)"),
        (r"^_?mi_|mimalloc", "mimalloc"),
        (r"bytes::", "bytes (shared buffers)"),
        (r"gatehouse::", "gatehouse (router, handler, upstreams, metrics)"),
    ]:
        if re.search(pattern, sym):
            return name
    return "other (std, core, prometheus, ...)"

parts, syms = {}, []
for line in open(report):
    m = re.match(r"\s+([0-9.]+)%\s+(\S+)\s+\[[.k]\]\s+(.*\S)", line)
    if not m:
        continue
    pct, dso, sym = float(m.group(1)), m.group(2), m.group(3)
    p = part(dso, sym)
    parts[p] = parts.get(p, 0) + pct
    syms.append((pct, p, sym))

per_req = cpu_us / requests if requests else 0
print(f"route {route}: {requests} requests in the sampled window, "
      f"{per_req:.1f} µs of gateway CPU each (user + system)")
print(f"{'part':<52} {'share':>6} {'µs/request':>10}")
for p, pct in sorted(parts.items(), key=lambda kv: -kv[1]):
    print(f"{p:<52} {pct:5.1f}% {pct * per_req / 100:10.2f}")
print(f"\nthe {top} costliest functions")
for pct, p, sym in sorted(syms, reverse=True)[:top]:
    print(f"{pct:5.2f}%  {sym[:100]}")
PY

if [ -n "${FLAME:-}" ]; then
    inferno-collapse-perf < "$work/flame.txt" \
        | inferno-flamegraph --title "gatehouse, route $ROUTE" > "bench/results/profile-$ROUTE.svg"
    echo "flame graph: bench/results/profile-$ROUTE.svg"
fi
