#!/usr/bin/env bash
# Start-up time: from exec to the listener accepting, with the quickstart's
# config (every built-in plugin). First with an empty compile cache: the
# gateway serves on baseline (Winch) code at once and compiles optimised
# (Cranelift) code in the background, so this also times exec to the last
# plugin running optimised code. Then with a warm cache (filled by
# `gatehouse check`, which compiles everything optimised): nothing compiled.
#
#   bench/startup.sh          # 5 starts of each kind; prints medians
#   GATEHOUSE=target/pgo/gatehouse bench/startup.sh   # `cargo xtask pgo`'s build
#
# Writes bench/results/startup.json. Expects `cargo xtask plugins` and
# `cargo build --release -p gatehouse` done (bench/run.sh does both).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-5}
PORT=${STARTUP_PORT:-19280}
GATEHOUSE=${GATEHOUSE:-target/release/gatehouse}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
sed -e "s|^listen = .*|listen = \"127.0.0.1:$PORT\"|" \
    -e "s|^plugins_dir = .*|plugins_dir = \"$PWD/target/plugins\"\ncompile_cache = \"$work/cache\"|" \
    examples/quickstart/gatehouse.toml > "$work/gatehouse.toml"

# Distinct plugins the config loads: each logs once when optimised.
plugins_loaded=$(grep -o '^ *plugin = "[^"]*"' examples/quickstart/gatehouse.toml | sort -u | wc -l)

# "READY_MS OPTIMISED_MS": milliseconds from exec until 127.0.0.1:$PORT
# accepts a connection and, with OPTIMISED=1, until every plugin runs
# optimised code (0 when not waited for).
start_ms() {
    local t0 t1 t2=0 pid
    t0=$(date +%s%N)
    GATEHOUSE_LOG=info "$GATEHOUSE" run --no-watch --config "$work/gatehouse.toml" \
        > "$work/log" 2>&1 &
    pid=$!
    until (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; do
        kill -0 "$pid" 2>/dev/null || { echo "startup: the gateway exited" >&2; cat "$work/log" >&2; exit 1; }
        sleep 0.002
    done
    t1=$(date +%s%N)
    if [ "${OPTIMISED:-0}" = 1 ]; then
        until [ "$(grep -c 'plugin optimised' "$work/log")" -ge "$plugins_loaded" ]; do
            kill -0 "$pid" 2>/dev/null || { echo "startup: the gateway exited" >&2; exit 1; }
            sleep 0.01
        done
        t2=$(date +%s%N)
        t2=$(( (t2 - t0) / 1000000 ))
    fi
    kill "$pid"; wait "$pid" 2>/dev/null || true
    echo "$(( (t1 - t0) / 1000000 )) $t2"
}

median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

cold=(); optimised=(); warm=()
for _ in $(seq "$RUNS"); do
    rm -rf "$work/cache"
    read -r ready done < <(OPTIMISED=1 start_ms)
    cold+=("$ready"); optimised+=("$done")
done
"$GATEHOUSE" check --config "$work/gatehouse.toml" >/dev/null
for _ in $(seq "$RUNS"); do read -r ready _ < <(start_ms); warm+=("$ready"); done
cold_ms=$(printf '%s\n' "${cold[@]}" | median)
optimised_ms=$(printf '%s\n' "${optimised[@]}" | median)
warm_ms=$(printf '%s\n' "${warm[@]}" | median)
plugins=$(grep -c '^plugin = \|^  plugin = ' examples/quickstart/gatehouse.toml)
echo "start-up to ready, quickstart config ($plugins plugin entries, $plugins_loaded plugins), median of $RUNS:"
echo "  empty compile cache (baseline code):  $cold_ms ms   [${cold[*]}]"
echo "    every plugin on optimised code at:  $optimised_ms ms   [${optimised[*]}]"
echo "  warm compile cache:                   $warm_ms ms   [${warm[*]}]"
mkdir -p bench/results
printf '{"plugin_entries":%s,"plugins":%s,"cold_ms":%s,"optimised_ms":%s,"warm_ms":%s,"cold_runs":[%s],"optimised_runs":[%s],"warm_runs":[%s]}\n' \
    "$plugins" "$plugins_loaded" "$cold_ms" "$optimised_ms" "$warm_ms" \
    "$(IFS=,; echo "${cold[*]}")" "$(IFS=,; echo "${optimised[*]}")" "$(IFS=,; echo "${warm[*]}")" \
    > bench/results/startup.json
