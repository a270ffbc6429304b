# Pieces the load scripts share (sourced by the scripts in bench/).

# Installs the Debian packages of the tools missing among the arguments,
# each TOOL or TOOL:PACKAGE, when running as root; otherwise says how and
# exits.
bench_need() {
    local missing=() t
    for t in "$@"; do
        command -v "${t%%:*}" >/dev/null || [ -x "/usr/sbin/${t%%:*}" ] || missing+=("${t#*:}")
    done
    [ ${#missing[@]} = 0 ] && return
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null
    else
        echo "$(basename "$0"): needs ${missing[*]}: sudo apt-get install ${missing[*]}" >&2
        exit 1
    fi
}

# Waits until something accepts on 127.0.0.1:$1; if process $2 exits
# first, shows the log $3 (when given) and exits.
bench_wait_listening() {
    until (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; do
        if ! kill -0 "$2" 2>/dev/null; then
            echo "$(basename "$0"): the process meant to listen on port $1 exited" >&2
            [ -n "${3:-}" ] && cat "$3" >&2
            exit 1
        fi
        sleep 0.05
    done
}

# The server (one worker) on GATEWAY_PORT, the upstream "up" on
# UPSTREAM_PORT, and the route "none" without plugins.
bench_server_and_plain_route() {
    printf '[server]\nlisten = "127.0.0.1:%s"\nplugins_dir = "%s"\nworkers = 1\n\n' "$GATEWAY_PORT" "$PWD/target/plugins"
    printf '[upstreams.up]\ntargets = ["127.0.0.1:%s"]\n\n' "$UPSTREAM_PORT"
    printf '[[routes]]\nname = "none"\npath = "/none/*"\nupstream = "up"\n\n'
}

# The quickstart's users route and its plugin chain (read from
# examples/quickstart/gatehouse.toml), its rate limit raised so it never
# triggers.
bench_users_route() {
    printf '[[routes]]\nname = "users"\npath = "/api/v1/users/*"\nupstream = "up"\nstrip_prefix = "/api/v1"\n'
    sed -n '/^name = "users"/,/^# Orders/p' examples/quickstart/gatehouse.toml \
        | sed -n '/\[\[routes.plugins\]\]/,$p' | grep -v '^# Orders' \
        | sed 's/limit = 5, window = "1m"/limit = 1000000000, window = "1m"/'
}

# A temporary folder ($work), removed on exit with every process listed in
# $pids, and the echo upstream (demo-services) on UPSTREAM_PORT.
bench_start_upstream() {
    work=$(mktemp -d)
    pids=()
    trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"' EXIT
    target/release/demo-services "upstream=127.0.0.1:$UPSTREAM_PORT" >/dev/null &
    pids+=($!)
}

# The bench's token (bench/lib.rs): a valid HS256 JWT for the users chain.
bench_token() {
    sed -n 's/^pub const TOKEN: &str = "\(.*\)";$/\1/p' bench/lib.rs
}
