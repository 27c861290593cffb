# shellcheck shell=bash
# Helpers shared by the benchmark scripts in bench/: statistics, the nginx
# servers they measure, and starting and stopping their own processes.
# Sourced (bash), never run.  Callers use `set -u`.

bench_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# PIDs of every background process a script started through bench_spawn,
# so that its cleanup stops exactly those and nothing else.
bench_pids=()
# PID of the process the last bench_spawn started.
bench_last_pid=

bench_say() { echo "$(basename "$0"): $*" >&2; }

# usage: print the calling script's synopsis (its "#   bench..." header
# lines) and exit 2.  A script with a longer synopsis defines its own.
usage() {
	sed -n '/^#   bench/p' "$0" | sed 's/^# \{0,1\}//' >&2
	exit 2
}

# bench_build_dir [DIR]: the absolute build directory, checked for the shims.
bench_build_dir() {
	local dir=${1:-$bench_root/build}
	dir=$(cd "$dir" 2>/dev/null && pwd) || { bench_say "no build directory '$1'"; return 1; }
	if [ ! -f "$dir/libnoiseshim.so" ] || [ ! -f "$dir/libnoiseshim-server.so" ]; then
		bench_say "$dir lacks the shims: run make first"
		return 1
	fi
	echo "$dir"
}

# bench_need PROGRAM...: fail with the package to install when one is missing.
bench_need() {
	local program missing=0
	for program in "$@"; do
		if ! command -v "$program" >/dev/null; then
			bench_say "$program is not installed (apt-get install it; .ci/run lists the packages)"
			missing=1
		fi
	done
	return "$missing"
}

# bench_keep_state_in DIR: the replay windows and counters files of every
# program started from here on go in DIR (the work directory, removed at
# exit), not in /run/noiseshim, where each new key's 32 MiB window would stay.
bench_keep_state_in() {
	export NOISESHIM_REPLAY_FILE=$1/replay.map NOISESHIM_STATS_DIR=$1/stats
}

# bench_spawn COMMAND...: start COMMAND in the background, remember its PID.
# Its output goes wherever the caller redirected bench_spawn's.
bench_spawn() {
	"$@" &
	bench_last_pid=$!
	bench_pids+=("$bench_last_pid")
}

# bench_stop PID...: TERM, up to 3 s of grace, then KILL; reap our children.
bench_stop() {
	local pid tries
	for pid in "$@"; do kill -TERM "$pid" 2>/dev/null; done
	for pid in "$@"; do
		tries=30
		while kill -0 "$pid" 2>/dev/null && [ "$tries" -gt 0 ]; do
			sleep 0.1
			tries=$((tries - 1))
		done
		kill -KILL "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null
	done
	return 0
}

# bench_stop_all: stop every process bench_spawn started, newest first
# (a client before the server it talks to).
bench_stop_all() {
	local i
	for ((i = ${#bench_pids[@]} - 1; i >= 0; i--)); do
		bench_stop "${bench_pids[i]}"
	done
	bench_pids=()
}

# bench_wait_for FILE PID [TENTHS]: wait until FILE exists and is not empty,
# failing early when PID has died.
bench_wait_for() {
	local file=$1 pid=$2 tries=${3:-100}
	until [ -s "$file" ]; do
		if ! kill -0 "$pid" 2>/dev/null || [ "$tries" -le 0 ]; then
			return 1
		fi
		sleep 0.1
		tries=$((tries - 1))
	done
}

# bench_wait_port PORT PID [NETNS]: wait until something listens on TCP PORT
# (in network namespace NETNS, if given), failing early when PID has died.
bench_wait_port() {
	local port=$1 pid=$2 netns=${3:-} tries=100
	until [ -n "$(ss ${netns:+-N "$netns"} -Hltn "sport = :$port" 2>/dev/null)" ]; do
		if ! kill -0 "$pid" 2>/dev/null || [ "$tries" -le 0 ]; then
			return 1
		fi
		sleep 0.1
		tries=$((tries - 1))
	done
}

# bench_summary: numbers on stdin, one a line; prints
# "COUNT MEDIAN P10 P90 MIN MAX", percentiles interpolated between ranks.
bench_summary() {
	sort -g | awk '
		{ v[NR] = $1 }
		function q(p,   h, lo) {
			h = (NR - 1) * p + 1
			lo = int(h)
			return lo >= NR ? v[NR] : v[lo] + (h - lo) * (v[lo + 1] - v[lo])
		}
		END {
			if (NR == 0) { print 0, "-", "-", "-", "-", "-"; exit }
			printf "%d %.6g %.6g %.6g %.6g %.6g\n", NR, q(0.5), q(0.1), q(0.9), v[1], v[NR]
		}'
}

# bench_ratio A B [FORMAT]: A / B, or "-" when either is missing or B is 0.
bench_ratio() {
	awk -v a="$1" -v b="$2" -v f="${3:-%.2f}" 'BEGIN {
		if (a == "-" || b == "-" || a == "" || b == "" || b + 0 == 0) print "-"
		else printf f "\n", a / b }'
}

# bench_target LABEL VALUE OP LIMIT: print "LABEL = VALUE (target OP LIMIT): ok"
# or ": missed", OP being <= or >=; a VALUE of "-" (no figure) is missed too.
# Returns 1 when missed, so that a caller can fail on it.
bench_target() {
	local label=$1 value=$2 op=$3 limit=$4 verdict
	verdict=$(awk -v v="$value" -v op="$op" -v l="$limit" 'BEGIN {
		if (v == "-" || v == "") { print "missed"; exit }
		met = (op == "<=") ? (v + 0 <= l + 0) : (v + 0 >= l + 0)
		print met ? "ok" : "missed" }')
	printf '%s = %s (target %s %s): %s\n' "$label" "${value:--}" "$op" "$limit" "$verdict"
	[ "$verdict" = ok ]
}

# bench_tls_cert DIR ADDR: a self-signed ECDSA P-256 certificate for ADDR
# (an IP address) in DIR/cert.pem, its key in DIR/key.pem.  P-256 because
# it is what a TLS server most often presents, and cheap to sign with.
bench_tls_cert() {
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
		-days 2 -subj "/CN=$2" -addext "subjectAltName=IP:$2" \
		-keyout "$1/key.pem" -out "$1/cert.pem" 2>"$1/openssl.log"
}

# bench_nginx_conf DIR LISTEN [SSL_DIR] [LOCATIONS]: write DIR/nginx.conf for
# one worker serving DIR/www on LISTEN (an nginx listen value).  With
# SSL_DIR, TLS 1.3 only, X25519, the certificate of bench_tls_cert.
# LOCATIONS replaces the default static-file location.  Every file nginx
# writes (pid, logs, temp) stays in DIR.
bench_nginx_conf() {
	local dir=$1 listen=$2 ssl_dir=${3:-} locations=${4:-'location / { root www; }'} tls=''
	mkdir -p "$dir/www"
	if [ -n "$ssl_dir" ]; then
		listen="$listen ssl"
		tls="ssl_certificate $ssl_dir/cert.pem;
		ssl_certificate_key $ssl_dir/key.pem;
		ssl_protocols TLSv1.3;
		ssl_ecdh_curve X25519;"
	fi
	cat >"$dir/nginx.conf" <<-EOF
		# Runs as root: the benchmark's files sit in a private (0700) directory.
		user root;
		worker_processes 1;
		daemon off;
		pid $dir/nginx.pid;
		error_log $dir/error.log warn;
		events { worker_connections 4096; }
		http {
		    access_log off;
		    client_body_temp_path $dir/body;
		    proxy_temp_path $dir/proxy;
		    fastcgi_temp_path $dir/fastcgi;
		    uwsgi_temp_path $dir/uwsgi;
		    scgi_temp_path $dir/scgi;
		    default_type application/octet-stream;
		    sendfile on;
		    tcp_nodelay on;
		    server {
		        listen $listen;
		        $tls
		        $locations
		    }
		}
	EOF
}

# bench_nginx_start DIR PORT NETNS [PREFIX...]: run the nginx of DIR in
# network namespace NETNS ('' for this one) under PREFIX (taskset, env:
# whatever the mode needs) and wait until it listens on PORT.  Its master's
# PID is left in bench_last_pid: ip netns exec, taskset and env all exec.
bench_nginx_start() {
	local dir=$1 port=$2 netns=$3
	shift 3
	local command=("$@" nginx -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf")
	[ -n "$netns" ] && command=(ip netns exec "$netns" "${command[@]}")
	bench_spawn "${command[@]}" >"$dir/stderr.log" 2>&1
	if ! bench_wait_for "$dir/nginx.pid" "$bench_last_pid" ||
		! bench_wait_port "$port" "$bench_last_pid" "$netns"; then
		bench_say "nginx in $dir did not start:"
		tail -n 5 "$dir/error.log" "$dir/stderr.log" >&2 2>/dev/null
		return 1
	fi
}

# The nginx modes shared by rtt.sh and handshake.sh.  Each script defines
# start_server NAME PORT SSL_DIR [ENV...] for its own nginx, and sets
# port[MODE], work and build.

# start_servers: one nginx per mode; the shim modes under the accept shim.
# The benchmark client is one address making handshakes as fast as it can:
# the per-address limit, meant for floods, would measure itself instead.
start_servers() {
	local shim=$build/libnoiseshim-server.so log=$work/server-shim.log
	start_server tcp "${port[tcp]}" '' &&
		start_server tcp-shim "${port[tcp+tfo]}" '' LD_PRELOAD="$shim" \
			NOISESHIM_TRANSPORT=tcp NOISESHIM_LISTEN="${port[tcp+tfo]}" NOISESHIM_LOG_FILE="$log" &&
		start_server noise "${port[noise]}" '' LD_PRELOAD="$shim" NOISESHIM_RATE_LIMIT=0 \
			NOISESHIM_KEY="$work/server.key" NOISESHIM_LISTEN="${port[noise]}" NOISESHIM_LOG_FILE="$log" &&
		start_server tls "${port[tls1.3]}" "$work"
}

# client_env MODE: the client's environment in MODE, as VAR=VALUE words.
client_env() {
	local shim="LD_PRELOAD=$build/libnoiseshim.so NOISESHIM_CACHE=$work/cache"
	shim="$shim NOISESHIM_LOG_FILE=$work/client-shim.log"
	case $1 in
	tcp | tls1.3) ;;
	tcp+tfo) echo "$shim NOISESHIM_TRANSPORT=tcp" ;;
	noise) echo "$shim NOISESHIM_TRANSPORT=noise NOISESHIM_TFO=off" ;;
	noise+tfo) echo "$shim NOISESHIM_TRANSPORT=noise NOISESHIM_TFO=auto" ;;
	esac
}
