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

# The routes "one" and "four": one and four add-header plugins in a row,
# for what each added plugin call costs.
bench_add_header_routes() {
    local route n i
    for route in one:1 four:4; do
        n=${route#*:} route=${route%:*}
        printf '[[routes]]\nname = "%s"\npath = "/%s/*"\nupstream = "up"\n' "$route" "$route"
        for ((i = 1; i <= n; i++)); do
            printf '  [[routes.plugins]]\n  plugin = "add-header"\n  config = { name = "x-bench-%s", value = "1" }\n' "$i"
        done
        echo
    done
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

# The route "match": the users chain doing the work HAProxy's native chain
# does (bench_haproxy_config), as near as the plugins allow: the same four
# plugins and configs, but transform only adding its request header, with
# none of its response rules (headers, and the JSON edits HAProxy's side
# has no counterpart for). What is left beyond HAProxy's work: jwt-auth's
# issuer check and second forwarded claim, rate-limit's RateLimit-*
# response headers, and the circuit breaker.
bench_matched_route() {
    bench_users_route | sed -e 's|^name = "users"|name = "match"|' \
        -e 's|^path = "/api/v1/users/\*"|path = "/match/*"|' \
        -e 's|^strip_prefix = .*|strip_prefix = "/match"|' \
        -e '/\[routes.plugins.config.response\]/,/^$/{/^$/!d}'
}

# The small JSON body bench/compare.sh's upstream answers with.
BENCH_BODY='{"service":"users","id":42,"name":"Alice","email":"alice@example.com","body":""}'

# An nginx (one worker, in the foreground, logs and temporary files in
# $work/NAME) on 127.0.0.1:PORT whose one location is BODY, with the pool
# `up` on 127.0.0.1:$UP for a proxying one: bench_nginx NAME PORT BODY.
# Adds its pid to $pids.
bench_nginx() {
    mkdir -p "$work/$1"
    cat > "$work/$1/nginx.conf" <<EOF
worker_processes 1;
daemon off;
master_process off;
pid $work/$1/nginx.pid;
error_log $work/$1/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $work/$1;
    proxy_temp_path $work/$1;
    fastcgi_temp_path $work/$1;
    uwsgi_temp_path $work/$1;
    scgi_temp_path $work/$1;
    upstream up { server 127.0.0.1:${UP:-$2}; keepalive 64; }
    server {
        listen 127.0.0.1:$2 reuseport;
        location / { $3 }
    }
}
EOF
    PATH="$PATH:/usr/sbin" nginx -p "$work/$1" -c "$work/$1/nginx.conf" &
    pids+=($!)
}

# A temporary folder ($work), removed on exit with every process listed in
# $pids, and the upstream on UPSTREAM_PORT: with UPSTREAM=echo (the
# default) demo-services' echo, whose JSON body carries the request's
# headers; with UPSTREAM=nginx bench/compare.sh's, an nginx answering
# BENCH_BODY (and `Connection: keep-alive`) to every request.
bench_start_upstream() {
    work=$(mktemp -d)
    pids=()
    trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"' EXIT
    # Something already there would answer in the upstream's place.
    if (exec 3<>"/dev/tcp/127.0.0.1/$UPSTREAM_PORT") 2>/dev/null; then
        echo "$(basename "$0"): port $UPSTREAM_PORT is in use; set UPSTREAM_PORT" >&2
        exit 1
    fi
    case "${UPSTREAM:-echo}" in
        echo)
            target/release/demo-services "upstream=127.0.0.1:$UPSTREAM_PORT" >/dev/null &
            pids+=($!)
            ;;
        nginx)
            bench_need nginx
            bench_nginx upstream "$UPSTREAM_PORT" \
                "default_type application/json; return 200 '$BENCH_BODY';"
            ;;
        *)
            echo "$(basename "$0"): UPSTREAM is echo or nginx, not \"$UPSTREAM\"" >&2
            exit 1
            ;;
    esac
    bench_wait_listening "$UPSTREAM_PORT" "${pids[-1]}"
}

# HAProxy (one thread) in front of the upstream on 127.0.0.1:$1: a plain
# proxy on port $2, and on port $3 natively what the users chain does:
# jwt_verify HS256 with an `exp` check, a stick-table rate limit that never
# triggers, two headers added. bench_haproxy_config UP PLAIN CHAIN > FILE.
bench_haproxy_config() {
    cat <<EOF
global
    nbthread 1
    maxconn 8192
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    http-reuse always
backend up
    server u1 127.0.0.1:$1
frontend plain
    bind 127.0.0.1:$2
    default_backend up
frontend chain
    bind 127.0.0.1:$3
    stick-table type string len 64 size 100k expire 60s store http_req_rate(60s)
    http-request set-var(txn.bearer) http_auth_bearer
    http-request set-var(txn.alg) var(txn.bearer),jwt_header_query('\$.alg')
    http-request deny deny_status 401 unless { var(txn.alg) -m str HS256 }
    http-request deny deny_status 401 unless { var(txn.bearer),jwt_verify(txn.alg,"quickstart-secret") -m int 1 }
    http-request set-var(txn.now) date
    http-request set-var(txn.exp) var(txn.bearer),jwt_payload_query('\$.exp','int')
    http-request deny deny_status 401 if { var(txn.exp),sub(txn.now) -m int lt 0 }
    http-request set-var(txn.sub) var(txn.bearer),jwt_payload_query('\$.sub')
    http-request track-sc0 var(txn.sub)
    http-request deny deny_status 429 if { sc_http_req_rate(0) gt 1000000000 }
    http-request set-header x-user-id %[var(txn.sub)]
    http-request set-header x-internal-request true
    default_backend up
EOF
}

# The bench's token (bench/lib.rs): a valid HS256 JWT for the users chain.
bench_token() {
    sed -n 's/^pub const TOKEN: &str = "\(.*\)";$/\1/p' bench/lib.rs
}

# The CPU time a process has used, user and kernel, in clock ticks
# (BENCH_TICK of them a second), from /proc: bench_cpu_ticks PID.
BENCH_TICK=$(getconf CLK_TCK)
bench_cpu_ticks() {
    awk '{ print $14 + $15 }' "/proc/$1/stat"
}
