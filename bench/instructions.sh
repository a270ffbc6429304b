#!/usr/bin/env bash
# Instructions per proxied request, counted by callgrind: the steadiest
# measure of the gateway's own work on a shared machine, where the CPU time
# of one binary moves 10-20 % between runs. It counts user space only (the
# kernel's socket work is not in it) and repeats to about 0.1 %, so a
# change of a few hundred instructions shows. For the route without
# plugins and the quickstart's users chain (jwt-auth, rate-limit,
# transform, circuit-breaker); TOP=N also lists the N costliest functions.
# ROUTES="one four" counts routes with one and four add-header plugins and
# the instructions each added plugin call costs: the warm cost of a call
# through the contract (a guest entry and its one host call), which
# criterion's timing of the same (`--bench plugin_call`) cannot give apart
# from the machine's speed that day. ROUTES=match counts the users chain
# doing the work HAProxy's native chain does (transform without its
# response rules: bench_matched_route in bench/config.sh), which shows how
# much of the users chain's count is work HAProxy's side does not do.
#
#   bench/instructions.sh
#   GATEHOUSE=/tmp/gatehouse-before bench/instructions.sh
#   ROUTES=none TOP=25 bench/instructions.sh
#   ROUTES="one four" bench/instructions.sh  # a plugin call's cost
#   UPSTREAM=nginx bench/instructions.sh   # bench/compare.sh's upstream
#   UPSTREAM=nginx PROXY=haproxy bench/instructions.sh
#   CACHE=1 bench/instructions.sh            # and cache misses a request
#
# PROXY=haproxy counts HAProxy instead, as bench/compare.sh configures it:
# its plain proxy for the route without plugins, its native JWT + rate
# limit + headers for the users chain. CACHE=1 adds callgrind's model of the
# first-level caches (sized as this machine's CPU reports them) and prints
# the instruction- and data-cache misses a request: how much of the path's
# code and data stays in those caches, which the instruction count alone
# does not show. CONNECTIONS=N sets wrk's connections (4): with one, the
# misses are what a single request's own data costs; with 32, as
# compare.sh loads, each request also finds its connection's state evicted
# by the others'.
#
# The upstream is demo-services' echo (its JSON body carries the request's
# headers), or with UPSTREAM=nginx the one bench/compare.sh measures
# behind: nginx answering an 80-byte JSON body with `Connection:
# keep-alive`, so the counts match the requests compare.sh times.
#
# Valgrind runs the gateway on a CPU model of its own, so plugins are
# compiled for that model once (the `check` below fills the compile cache).
# Under valgrind the plugin memory pool cannot be reserved and the gateway
# gives each instance its own bounds-checked memory (it logs a warning), so
# the chain's count includes bounds checks the pooled gateway does not run.
# Needs valgrind and wrk (and nginx for UPSTREAM=nginx: Debian packages;
# installed here when running as root), `cargo xtask plugins` and the release builds.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/config.sh
GATEHOUSE=${GATEHOUSE:-target/release/gatehouse}
ROUTES=${ROUTES:-none users}
REQUESTS_FOR=${REQUESTS_FOR:-5s}
TOP=${TOP:-0}
CONNECTIONS=${CONNECTIONS:-4}
PROXY=${PROXY:-gatehouse}
CACHE=${CACHE:-0}
UPSTREAM_PORT=${UPSTREAM_PORT:-19401}
GATEWAY_PORT=${GATEWAY_PORT:-19480}

bench_need valgrind wrk
case "$PROXY" in
    gatehouse) ;;
    haproxy) bench_need haproxy; PATH="$PATH:/usr/sbin" ;;
    *) echo "$(basename "$0"): PROXY is gatehouse or haproxy, not \"$PROXY\"" >&2; exit 1 ;;
esac
for route in $ROUTES; do
    case "$PROXY:$route" in
        *:none | *:users | gatehouse:one | gatehouse:four | gatehouse:match) ;;
        *) echo "$(basename "$0"): no route \"$route\" for $PROXY" \
                "(none and users; one, four and match for gatehouse)" >&2
           exit 1 ;;
    esac
done
sim=()
[ "$CACHE" = 1 ] && sim=(--cache-sim=yes)

bench_start_upstream
AUTH="Authorization: Bearer $(bench_token)"
if [ "$PROXY" = haproxy ]; then
    bench_haproxy_config "$UPSTREAM_PORT" "$GATEWAY_PORT" "$((GATEWAY_PORT + 1))" > "$work/haproxy.cfg"
else
    {
        bench_server_and_plain_route
        bench_add_header_routes
        bench_users_route
        bench_matched_route
    } > "$work/gatehouse.toml"
    GATEHOUSE_LOG=error valgrind --tool=none -q "$GATEHOUSE" check --config "$work/gatehouse.toml" >/dev/null
fi

declare -A per_request
printf '%-6s %10s %14s' route requests "instr/request"
[ "$CACHE" = 1 ] && printf ' %14s %14s' "I1 miss/req" "D1 miss/req"
printf '\n'
for route in $ROUTES; do
    port=$GATEWAY_PORT
    path=/none/users/42
    if [ "$PROXY" = haproxy ]; then
        cmd=(haproxy -q -f "$work/haproxy.cfg")
        [ "$route" = users ] && port=$((GATEWAY_PORT + 1)) path=/users/42
    else
        cmd=("$GATEHOUSE" run --no-watch --config "$work/gatehouse.toml")
        case "$route" in
            users) path=/api/v1/users/42 ;;
            one | four | match) path=/$route/users/42 ;;
        esac
    fi
    rm -f "$work"/cg.out*
    GATEHOUSE_LOG=error valgrind --tool=callgrind "${sim[@]}" --callgrind-out-file="$work/cg.out" \
        "${cmd[@]}" >/dev/null 2>"$work/valgrind.log" &
    vg=$!
    pids+=("$vg")
    bench_wait_listening "$port" "$vg" "$work/valgrind.log"
    # Warm connections, pools and instances; then count from zero.
    wrk -t1 -c"$CONNECTIONS" -d3s -H "$AUTH" "http://127.0.0.1:$port$path" >/dev/null
    callgrind_control -z "$vg" >/dev/null 2>&1
    n=$(wrk -t1 -c"$CONNECTIONS" -d"$REQUESTS_FOR" -H "$AUTH" "http://127.0.0.1:$port$path" \
        | awk '/requests in/ { print $1 }')
    callgrind_control -d "$vg" >/dev/null 2>&1
    kill "$vg"; wait "$vg" 2>/dev/null || true
    out="$work/cg.out.1"   # the dump above: the counted requests only
    total=$(callgrind_annotate "$out" | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }')
    per_request[$route]=$(( total / n ))
    printf '%-6s %10s %14s' "$route" "$n" "${per_request[$route]}"
    if [ "$CACHE" = 1 ]; then
        callgrind_annotate --show=I1mr,D1mr,D1mw "$out" | sed 's/([^)]*)//g; s/,//g' \
            | awk -v n="$n" '/PROGRAM TOTALS/ { printf " %14d %14d", $1 / n, ($2 + $3) / n }'
    fi
    printf '\n'
    if [ "$TOP" -gt 0 ]; then
        # Each function's own instructions (not its callees'), per request;
        # instructions alone, so a CACHE=1 run's miss columns stay out of the names.
        callgrind_annotate --show=Ir --inclusive=no --auto=no --threshold=100 "$out" \
            | awk -v n="$n" -v total="$total" '/^ *[0-9,]+ \(/ {
                c = $1; gsub(",", "", c); c += 0; sub(/^ *[0-9,]+ +\( *[0-9.]+%\) +/, "")
                # The frames every request runs under are not costs of their own.
                if (c < total / 2) printf "%10d  %s\n", c / n, substr($0, 1, 140) }' \
            | sort -rn | head -n "$TOP"
    fi
done
if [ -n "${per_request[one]:-}" ] && [ -n "${per_request[four]:-}" ]; then
    echo "each added add-header call: $(( (per_request[four] - per_request[one]) / 3 )) instructions"
fi
