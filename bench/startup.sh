#!/usr/bin/env bash
# Start-up time: from exec to the listener accepting, with the quickstart's
# config (every built-in plugin), first with an empty compile cache (every
# plugin compiled) and then with the cache the first start filled.
#
#   bench/startup.sh          # 5 starts of each kind; prints medians
#
# Writes bench/results/startup.json. Expects `cargo xtask plugins` and
# `cargo build --release -p gatehouse` done (bench/run.sh does both).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-5}
PORT=${STARTUP_PORT:-19280}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
sed -e "s|^listen = .*|listen = \"127.0.0.1:$PORT\"|" \
    -e "s|^plugins_dir = .*|plugins_dir = \"$PWD/target/plugins\"\ncompile_cache = \"$work/cache\"|" \
    examples/quickstart/gatehouse.toml > "$work/gatehouse.toml"

# Milliseconds from exec until 127.0.0.1:$PORT accepts a connection.
start_ms() {
    local t0 t1 pid
    t0=$(date +%s%N)
    GATEHOUSE_LOG=error target/release/gatehouse run --no-watch --config "$work/gatehouse.toml" &
    pid=$!
    until (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; do
        kill -0 "$pid" 2>/dev/null || { echo "startup: the gateway exited" >&2; exit 1; }
        sleep 0.002
    done
    t1=$(date +%s%N)
    kill "$pid"; wait "$pid" 2>/dev/null || true
    echo $(( (t1 - t0) / 1000000 ))
}

median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

cold=(); warm=()
for _ in $(seq "$RUNS"); do rm -rf "$work/cache"; cold+=("$(start_ms)"); done
for _ in $(seq "$RUNS"); do warm+=("$(start_ms)"); done
cold_ms=$(printf '%s\n' "${cold[@]}" | median)
warm_ms=$(printf '%s\n' "${warm[@]}" | median)
plugins=$(grep -c '^plugin = \|^  plugin = ' examples/quickstart/gatehouse.toml)
echo "start-up to ready, quickstart config ($plugins plugin entries), median of $RUNS:"
echo "  empty compile cache (all compiled): $cold_ms ms   [${cold[*]}]"
echo "  warm compile cache:                 $warm_ms ms   [${warm[*]}]"
mkdir -p bench/results
printf '{"plugin_entries":%s,"cold_ms":%s,"warm_ms":%s,"cold_runs":[%s],"warm_runs":[%s]}\n' \
    "$plugins" "$cold_ms" "$warm_ms" "$(IFS=,; echo "${cold[*]}")" "$(IFS=,; echo "${warm[*]}")" \
    > bench/results/startup.json
