#!/usr/bin/env bash
# The memory one proxied request touches: distinct 64-byte cache lines a
# request, by region (the stack, the heap, the binary's read-only and
# writable data), and in each region the functions that touch a line
# first. Traced by valgrind's lackey, one connection, requests one after
# another behind bench/compare.sh's nginx upstream; the last 100 requests
# are counted, each from one upstream response parse to the next.
#
# Where bench/instructions.sh (CACHE=1) says how many first-level data
# cache misses a request has, this says why: a request whose lines do not
# fit the 32 KiB data cache (512 lines) evicts its own data before it
# comes round again, and misses even with a single connection.
#
#   bench/footprint.sh                          # the route without plugins
#   ROUTE=users TOP=15 bench/footprint.sh       # the users chain
#   GATEHOUSE=target/pgo/gatehouse bench/footprint.sh
#
# Needs valgrind, wrk and nginx (Debian packages; installed here when
# running as root), python3, `cargo xtask plugins` and the release build.
# The trace is large (about 450 MB for the route without plugins) and is
# deleted at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/config.sh
GATEHOUSE=${GATEHOUSE:-target/release/gatehouse}
ROUTE=${ROUTE:-none}
TOP=${TOP:-8}
REQUESTS_FOR=${REQUESTS_FOR:-10s}
UPSTREAM=nginx
UPSTREAM_PORT=${UPSTREAM_PORT:-19501}
GATEWAY_PORT=${GATEWAY_PORT:-19590}

bench_need valgrind wrk nginx
case "$ROUTE" in
    none) path=/none/users/42 ;;
    users) path=/api/v1/users/42 ;;
    *) echo "$(basename "$0"): ROUTE is none or users, not \"$ROUTE\"" >&2; exit 1 ;;
esac

bench_start_upstream
{ bench_server_and_plain_route; bench_users_route; } > "$work/gatehouse.toml"
# Plugins compiled for valgrind's CPU model, before the trace starts.
GATEHOUSE_LOG=error valgrind --tool=none -q "$GATEHOUSE" check --config "$work/gatehouse.toml" >/dev/null
GATEHOUSE_LOG=error valgrind --tool=lackey --trace-mem=yes --log-file="$work/trace" \
    "$GATEHOUSE" run --no-watch --config "$work/gatehouse.toml" >/dev/null 2>"$work/log" &
vg=$!
pids+=("$vg")
bench_wait_listening "$GATEWAY_PORT" "$vg" "$work/log"
cp "/proc/$vg/maps" "$work/maps"
n=$(wrk -t1 -c1 -d"$REQUESTS_FOR" -H "Authorization: Bearer $(bench_token)" \
    "http://127.0.0.1:$GATEWAY_PORT$path" | awk '/requests in/ { print $1 }')
kill "$vg"; wait "$vg" 2>/dev/null || true
echo "$ROUTE: $n requests traced"

python3 - "$work/trace" "$work/maps" "$GATEHOUSE" "$TOP" <<'PY'
import bisect, collections, os, subprocess, sys

trace, maps_file, binary, top = sys.argv[1], sys.argv[2], os.path.realpath(sys.argv[3]), int(sys.argv[4])
maps = []
for line in open(maps_file):
    f = line.split()
    lo, hi = (int(x, 16) for x in f[0].split("-"))
    maps.append((lo, hi, f[1], int(f[2], 16), f[5] if len(f) > 5 else ""))
maps.sort()
starts = [m[0] for m in maps]
base = min(m[0] for m in maps if m[4] == binary and m[3] == 0)

def region(addr):
    i = bisect.bisect_right(starts, addr) - 1
    if i < 0 or addr >= maps[i][1]:
        return "unmapped"
    lo, _, perms, _, name = maps[i]
    if name == "[stack]" or 0x1FF0000000 <= lo < 0x2000000000:  # valgrind's main stack
        return "stack"
    if name == binary:
        return "binary " + ("writable data" if "w" in perms else "read-only data")
    if name:
        return os.path.basename(name)
    return "heap and other anonymous memory"

syms = []
nm = subprocess.run(["nm", "-C", "--defined-only", binary], capture_output=True, text=True, check=True)
for line in nm.stdout.splitlines():
    f = line.split(" ", 2)
    if len(f) == 3 and f[1] in "tTwW":
        syms.append((int(f[0], 16) + base, f[2]))
syms.sort()
sym_addrs = [a for a, _ in syms]
end_of_binary = max(m[1] for m in maps if m[4] == binary)

def function(ip):
    if not base <= ip < end_of_binary:
        return "(code outside the binary: libc, plugins' compiled code)"
    return syms[bisect.bisect_right(sym_addrs, ip) - 1][1][:110]

marks = [a for a, s in syms if s.startswith("<hyper::proto::h1::role::Client as hyper::proto::h1::Http1Transaction>::parse")]
if not marks:
    sys.exit("footprint: this build inlines hyper's client response parse; no request boundary to split at")
mark = "I  %08x" % marks[0]

requests, current, ip = [], None, 0
with open(trace) as t:
    for line in t:
        if line[0] == "I":
            if line.startswith(mark):
                if current is not None:
                    requests.append(current)
                current = {}
            ip = int(line[3:].split(",")[0], 16)
        elif current is not None and line[:2] in (" L", " S", " M"):
            current.setdefault(int(line[3:].split(",")[0], 16) >> 6, ip)
requests = requests[-100:]
if len(requests) < 20:
    sys.exit(f"footprint: only {len(requests)} requests in the trace")
n = len(requests)
lines_by_region = collections.Counter()
first_touch = collections.defaultdict(collections.Counter)
for r in requests:
    for line, ip in r.items():
        where = region(line << 6)
        lines_by_region[where] += 1
        first_touch[where][function(ip)] += 1
total = sum(lines_by_region.values()) / n
print(f"{total:.0f} distinct cache lines a request ({total * 64 / 1024:.1f} KiB), the mean of the last {n}:")
for where, count in lines_by_region.most_common():
    if count / n < 1:
        continue
    print(f"  {count / n:6.1f}  {where}")
    for fn, c in first_touch[where].most_common(top):
        if c / n >= 1:
            print(f"            {c / n:6.1f}  {fn}")
PY
