#!/bin/bash
# Fresh-connection latency over an emulated WAN: how long an unmodified
# curl takes, from its connect() to the last byte, to fetch a static file
# from an unmodified nginx one network namespace away (bench/netns.sh,
# 25 ms each way).  Every request is a new curl process, so a new TCP
# connection.  The modes differ only in environment variables:
#
#   tcp        no shim
#   tcp+tfo    both shims, NOISESHIM_TRANSPORT=tcp, cache entry with f=1
#   noise      both shims, Noise_IK, NOISESHIM_TFO=off on the client
#   noise+tfo  both shims, Noise_IK, cache entry with f=1
#   tls1.3     no shim; nginx ssl (TLS 1.3 only, X25519, self-signed
#              ECDSA P-256) and curl https --tlsv1.3 --cacert
#
# Each server mode runs its own nginx (same config, own port) so that the
# modes can take turns request by request: a slow spell of the machine then
# hits every mode alike.  Warm-up requests go first (they also fetch the
# TFO cookie) and check the bytes; measured requests write to /dev/null and
# check the size.  The figure is curl's time_total.
#
# Then the request shapes of a program's first flight, each a fresh
# connection carrying a 500-byte request and reading a 500-byte answer
# that the server sends once it has the whole request
# (tests/integration/ff_server.py):
#
#   one-write  the request in one write (tests/integration/ff_client.c)
#   two-write  a 200-byte request, then a 300-byte order, then the read:
#              the shape of a Storj download
#   post       python3 http.client POST of a 500-byte body: headers and
#              body in two writes, the answer the body's SHA-256
#
# in the modes tcp+tfo and noise+tfo (the same client program under the
# client shim) and tls1.3 (python3 ssl, TLS 1.3 only, no TFO, against
# ff_server.py behind TLS).  Each client process makes 5 connections in a
# row and times each from connect() to the answer's last byte; the modes
# take turns process by process.  Targets: two-write noise+tfo within 1.1x
# of one-write noise+tfo, and at least 1.9x faster than tcp+tfo.
#
#   bench/rtt.sh [--build DIR] [--count N] [--warmup N] [--sizes LIST]
#                [--shapes LIST] [--delay-ms D] [--results FILE]
#
# LIST: sizes among 5k 64k 1m (default all three); shapes among one-write
# two-write post (default all three; '' for none).  --results writes one
# line per cell: "SIZE MODE COUNT MEDIAN P10 P90 MIN MAX FAILURES" (ms),
# SIZE being the shape for the shape rows.
# Needs root (namespaces), nginx, curl, openssl, python3.
set -u
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source-path=SCRIPTDIR
. "$here/common.sh"
# shellcheck source-path=SCRIPTDIR
. "$here/netns.sh"

build=
count=20
warmup=3
sizes="5k 64k 1m"
shapes="one-write two-write post"
delay_ms=25
results=

modes=(tcp tcp+tfo noise noise+tfo tls1.3)
declare -A size_bytes=([5k]=5120 [64k]=65536 [1m]=1048576)
declare -A port=([tcp]=8000 [tcp+tfo]=8001 [noise]=8002 [noise+tfo]=8002 [tls1.3]=8443)
shape_modes=(tcp+tfo noise+tfo tls1.3)
# The shape servers: one ff_server.py per mode, an answer port and an HTTP port.
declare -A answer_port=([tcp+tfo]=8101 [noise+tfo]=8201 [tls1.3]=8301)
declare -A post_port=([tcp+tfo]=8102 [noise+tfo]=8202 [tls1.3]=8302)
per_process=5
ff_dir=$(cd "$here/../tests/integration" && pwd)

usage() {
	sed -n '/^#   bench/,/^# Needs/p' "$0" | sed 's/^# \{0,1\}//' >&2
	exit 2
}

parse_args() {
	while [ $# -gt 0 ]; do
		case $1 in
		--build) build=$2; shift 2 ;;
		--count) count=$2; shift 2 ;;
		--warmup) warmup=$2; shift 2 ;;
		--sizes) sizes=$2; shift 2 ;;
		--shapes) shapes=$2; shift 2 ;;
		--delay-ms) delay_ms=$2; shift 2 ;;
		--results) results=$2; shift 2 ;;
		*) usage ;;
		esac
	done
	local size shape
	for size in $sizes; do
		[ -n "${size_bytes[$size]:-}" ] || { bench_say "unknown size '$size'"; usage; }
	done
	for shape in $shapes; do
		case $shape in
		one-write | two-write | post) ;;
		*) bench_say "unknown shape '$shape'"; usage ;;
		esac
	done
}

work=
cleanup() {
	bench_stop_all
	netns_down
	[ -n "$work" ] && rm -rf "$work"
}

# make_files: the static files, a server key, the cache and a certificate.
make_files() {
	local size
	mkdir -p "$work/www" "$work/times" "$work/got"
	for size in $sizes; do
		head -c "${size_bytes[$size]}" /dev/urandom >"$work/www/$size"
	done
	"$build/noiseshim" keygen "$work/server.key" >/dev/null || return 1
	{
		"$build/noiseshim" nodeurl --key "$work/server.key" --tfo \
			--addr "$NETNS_SERVER_ADDR:${port[tcp+tfo]}" &&
			"$build/noiseshim" nodeurl --key "$work/server.key" --tfo \
				--addr "$NETNS_SERVER_ADDR:${port[noise]}"
	} >"$work/cache" || return 1
	local mode
	for mode in tcp+tfo noise+tfo; do
		"$build/noiseshim" nodeurl --key "$work/server.key" --tfo \
			--addr "$NETNS_SERVER_ADDR:${answer_port[$mode]}" >>"$work/cache" &&
			"$build/noiseshim" nodeurl --key "$work/server.key" --tfo \
				--addr "$NETNS_SERVER_ADDR:${post_port[$mode]}" >>"$work/cache" || return 1
	done
	bench_tls_cert "$work" "$NETNS_SERVER_ADDR"
}

# start_server NAME PORT [SSL_DIR] [ENV...]: one nginx serving $work/www.
start_server() {
	local server_port=$2 ssl_dir=${3:-} dir=$work/nginx-$1
	shift 3
	bench_nginx_conf "$dir" "$NETNS_SERVER_ADDR:$server_port" "$ssl_dir" \
		"location / { root $work/www; }"
	bench_nginx_start "$dir" "$server_port" "$NETNS_SERVER" env "$@"
}

# fetch MODE SIZE OUTPUT: one request in a fresh curl; prints
# "TIME_TOTAL_S SIZE_DOWNLOAD HTTP_CODE SIZE_REQUEST" and returns curl's status.
fetch() {
	local mode=$1 size=$2 output=$3 url=http://$NETNS_SERVER_ADDR:${port[$1]}/$2 tls=()
	if [ "$mode" = tls1.3 ]; then
		url=https://$NETNS_SERVER_ADDR:${port[$mode]}/$size
		tls=(--tlsv1.3 --cacert "$work/cert.pem")
	fi
	# shellcheck disable=SC2046 # client_env gives one VAR=VALUE per word
	in_client env $(client_env "$mode") curl -sS --max-time 10 "${tls[@]}" -o "$output" \
		-w '%{time_total} %{size_download} %{http_code} %{size_request}\n' "$url" \
		2>>"$work/curl-errors.log"
}

# record_failure MODE SIZE WHAT
record_failure() {
	echo "$1 $2: $3" >>"$work/failures"
	bench_say "FAIL $1 $2: $3"
}

# warm_up MODE SIZE: fetch to a file and compare it with the original.
warm_up() {
	local mode=$1 size=$2 got=$work/got/$1-$2 i
	for ((i = 0; i < warmup; i++)); do
		rm -f "$got"
		if ! fetch "$mode" "$size" "$got" >/dev/null; then
			record_failure "$mode" "$size" "warm-up request failed"
		elif ! cmp -s "$got" "$work/www/$size"; then
			record_failure "$mode" "$size" "warm-up response differs from the file served"
		fi
	done
}

# measure MODE SIZE: one measured request, its time in ms appended to the cell.
measure() {
	local mode=$1 size=$2 reply seconds bytes code request
	if ! reply=$(fetch "$mode" "$size" /dev/null); then
		record_failure "$mode" "$size" "request failed: ${reply:-no output}"
		return
	fi
	read -r seconds bytes code request <<<"$reply"
	echo "$request" >"$work/request-size"
	if [ "$code" != 200 ] || [ "$bytes" != "${size_bytes[$size]}" ]; then
		record_failure "$mode" "$size" "HTTP $code, $bytes bytes"
		return
	fi
	awk -v s="$seconds" 'BEGIN { printf "%.3f\n", s * 1000 }' >>"$work/times/$mode-$size"
}

# run_size SIZE: warm every mode up, then COUNT rounds; each round starts at
# the next mode, so no mode always runs right after the same one.
run_size() {
	local size=$1 mode round i n=${#modes[@]}
	for mode in "${modes[@]}"; do warm_up "$mode" "$size"; done
	for ((round = 0; round < count; round++)); do
		for ((i = 0; i < n; i++)); do
			measure "${modes[(round + i) % n]}" "$size"
		done
	done
}

# cell SIZE MODE: "COUNT MEDIAN P10 P90 MIN MAX FAILURES" of one cell.
cell() {
	local failures
	failures=$(grep -c "^$2 $1:" "$work/failures" 2>/dev/null)
	echo "$(bench_summary <"$work/times/$2-$1" 2>/dev/null || echo "0 - - - - -") ${failures:-0}"
}

# ms VALUE: milliseconds to one decimal, or "-" for no value.
ms() { awk -v v="$1" 'BEGIN { if (v == "-") print v; else printf "%.1f\n", v }'; }

# column WORDS N: the Nth word of WORDS.
column() { awk -v n="$2" '{ print $n }' <<<"$1"; }

print_table() {
	local size mode stats tcp tls
	printf '\nFresh connection per request, %s-byte GET, %d ms RTT (%s), %d measured after %d warm-up\n' \
		"$(cat "$work/request-size" 2>/dev/null)" $((2 * delay_ms)) "$NETNS_BACKEND" "$count" "$warmup"
	printf 'curl time_total in ms; x-columns are time ratios (below 1 is faster)\n\n'
	printf '%-5s %-10s %4s %8s %8s %8s %8s %8s %7s %7s %5s\n' \
		size mode n median p10 p90 min max x-tcp x-tls fail
	for size in $sizes; do
		tcp=$(column "$(cell "$size" tcp)" 2)
		tls=$(column "$(cell "$size" tls1.3)" 2)
		for mode in "${modes[@]}"; do
			stats=$(cell "$size" "$mode")
			# shellcheck disable=SC2086 # the words of stats are the columns
			set -- $stats
			printf '%-5s %-10s %4s %8s %8s %8s %8s %8s %7s %7s %5s\n' "$size" "$mode" "$1" \
				"$(ms "$2")" "$(ms "$3")" "$(ms "$4")" "$(ms "$5")" "$(ms "$6")" \
				"$(bench_ratio "$2" "$tcp")" "$(bench_ratio "$2" "$tls")" "$7"
			[ -n "$results" ] && echo "$size $mode $stats" >>"$results"
		done
	done
}

# print_targets: the figures the design asks of noise+TFO, for the 5 KB reply.
print_targets() {
	local noise tcp_tfo tls
	case " $sizes " in *" 5k "*) ;; *) return ;; esac
	noise=$(column "$(cell 5k noise+tfo)" 2)
	tcp_tfo=$(column "$(cell 5k tcp+tfo)" 2)
	tls=$(column "$(cell 5k tls1.3)" 2)
	echo
	bench_target "5k: noise+tfo / tcp+tfo" "$(bench_ratio "$noise" "$tcp_tfo" %.3f)" '<=' 1.05
	bench_target "5k: tls1.3 / noise+tfo" "$(bench_ratio "$tls" "$noise" %.2f)" '>=' 2.9
	return 0
}

# start_shape_servers: ff_server.py for each shape mode, the shim modes
# under the accept shim.
start_shape_servers() {
	local shim=$build/libnoiseshim-server.so log=$work/server-shim.log mode listen
	for mode in "${shape_modes[@]}"; do
		local kinds=("answer:${answer_port[$mode]}" "http:${post_port[$mode]}") env=()
		listen=${answer_port[$mode]},${post_port[$mode]}
		case $mode in
		tcp+tfo) env=(LD_PRELOAD="$shim" NOISESHIM_TRANSPORT=tcp NOISESHIM_LISTEN="$listen") ;;
		noise+tfo) env=(LD_PRELOAD="$shim" NOISESHIM_KEY="$work/server.key" NOISESHIM_LISTEN="$listen") ;;
		tls1.3) kinds=("tls-answer:${answer_port[$mode]}" "tls-http:${post_port[$mode]}"
			--tls "$work/cert.pem" "$work/key.pem") ;;
		esac
		bench_spawn ip netns exec "$NETNS_SERVER" env "${env[@]}" NOISESHIM_LOG_FILE="$log" \
			python3 "$ff_dir/ff_server.py" "$NETNS_SERVER_ADDR" "${kinds[@]}" \
			>"$work/shape-server-$mode.log" 2>&1
		if ! bench_wait_for "$work/shape-server-$mode.log" "$bench_last_pid" ||
			! bench_wait_port "${post_port[$mode]}" "$bench_last_pid" "$NETNS_SERVER"; then
			bench_say "ff_server.py for $mode did not start: $(tail -n 3 "$work/shape-server-$mode.log")"
			return 1
		fi
	done
}

# shape_client MODE SHAPE N: N fresh connections of SHAPE in MODE, in one
# client process; prints its "time_ms T" lines and returns its status.
shape_client() {
	local mode=$1 shape=$2 n=$3 client server_port=${answer_port[$1]} tls=()
	[ "$mode" = tls1.3 ] && tls=(--tls "$work/cert.pem")
	case $shape in
	one-write) client=("$build/tests/ff_client" one) ;;
	two-write) client=("$build/tests/ff_client" two) ;;
	post) client=(python3 "$ff_dir/ff_pyclient.py" post) server_port=${post_port[$mode]} ;;
	esac
	if [ "$mode" = tls1.3 ] && [ "$shape" != post ]; then
		client=(python3 "$ff_dir/ff_pyclient.py" "${shape%-write}")
	fi
	# shellcheck disable=SC2046 # client_env gives one VAR=VALUE per word
	in_client env $(client_env "$mode") timeout 30 "${client[@]}" "$NETNS_SERVER_ADDR" "$server_port" "$n" \
		"${tls[@]}" 2>>"$work/shape-errors.log"
}

# measure_shape MODE SHAPE N: N measured connections appended to the cell.
measure_shape() {
	local out
	if ! out=$(shape_client "$1" "$2" "$3"); then
		record_failure "$1" "$2" "client failed: $(tail -n 1 "$work/shape-errors.log" 2>/dev/null)"
		return
	fi
	awk '$1 == "time_ms" { print $2 }' <<<"$out" >>"$work/times/$1-$2"
}

# run_shape SHAPE: warm-up (which also fetches the TFO cookie; the clients
# check every answer themselves), then rounds of per_process connections
# per mode, each round starting at the next mode.
run_shape() {
	local shape=$1 mode round i n=${#shape_modes[@]} left=$count
	for mode in "${shape_modes[@]}"; do
		shape_client "$mode" "$shape" "$warmup" >/dev/null ||
			record_failure "$mode" "$shape" "warm-up failed: $(tail -n 1 "$work/shape-errors.log")"
	done
	for ((round = 0; left > 0; round++)); do
		local batch=$((left < per_process ? left : per_process))
		for ((i = 0; i < n; i++)); do
			measure_shape "${shape_modes[(round + i) % n]}" "$shape" "$batch"
		done
		left=$((left - batch))
	done
}

print_shape_table() {
	local shape mode stats tcp_tfo tls
	printf '\nFresh connection per request, 500-byte request, 500-byte answer, %d ms RTT (%s), %d measured after %d warm-up\n' \
		$((2 * delay_ms)) "$NETNS_BACKEND" "$count" "$warmup"
	printf 'from connect() to the last byte, in ms; x-columns are time ratios (below 1 is faster)\n\n'
	printf '%-9s %-10s %4s %8s %8s %8s %8s %8s %9s %7s %5s\n' \
		shape mode n median p10 p90 min max x-tcp+tfo x-tls fail
	for shape in $shapes; do
		tcp_tfo=$(column "$(cell "$shape" tcp+tfo)" 2)
		tls=$(column "$(cell "$shape" tls1.3)" 2)
		for mode in "${shape_modes[@]}"; do
			stats=$(cell "$shape" "$mode")
			# shellcheck disable=SC2086 # the words of stats are the columns
			set -- $stats
			printf '%-9s %-10s %4s %8s %8s %8s %8s %8s %9s %7s %5s\n' "$shape" "$mode" "$1" \
				"$(ms "$2")" "$(ms "$3")" "$(ms "$4")" "$(ms "$5")" "$(ms "$6")" \
				"$(bench_ratio "$2" "$tcp_tfo")" "$(bench_ratio "$2" "$tls")" "$7"
			[ -n "$results" ] && echo "$shape $mode $stats" >>"$results"
		done
	done
}

# print_shape_targets: what a coalesced first flight must give.
print_shape_targets() {
	local one two shape noise tcp_tfo
	case " $shapes " in *" two-write "*) ;; *) return ;; esac
	two=$(column "$(cell two-write noise+tfo)" 2)
	echo
	if case " $shapes " in *" one-write "*) true ;; *) false ;; esac then
		one=$(column "$(cell one-write noise+tfo)" 2)
		bench_target "two-write / one-write, noise+tfo" "$(bench_ratio "$two" "$one" %.3f)" \
			'<=' 1.1
	fi
	for shape in two-write post; do
		case " $shapes " in *" $shape "*) ;; *) continue ;; esac
		noise=$(column "$(cell "$shape" noise+tfo)" 2)
		tcp_tfo=$(column "$(cell "$shape" tcp+tfo)" 2)
		bench_target "$shape: tcp+tfo / noise+tfo" "$(bench_ratio "$tcp_tfo" "$noise" %.2f)" \
			'>=' 1.9
	done
}

counter() { ip netns exec "$1" nstat -asz "$2" | awk -v name="$2" '$1 == name { print $2 }'; }

main() {
	parse_args "$@"
	bench_need nginx curl openssl nstat python3 || exit 1
	build=$(bench_build_dir "$build") || exit 1
	if [ -n "$shapes" ] && [ ! -x "$build/tests/ff_client" ]; then
		bench_say "$build/tests/ff_client is missing: make $build/tests/ff_client, or --shapes ''"
		exit 1
	fi
	[ -n "$results" ] && : >"$results"
	work=$(mktemp -d /tmp/bench-rtt.XXXXXX) || exit 1
	bench_keep_state_in "$work"
	netns_up "$delay_ms" || exit 1
	trap cleanup EXIT
	make_files || { bench_say "could not make the key, cache or certificate"; exit 1; }
	start_servers || exit 1
	if [ -n "$shapes" ]; then start_shape_servers || exit 1; fi

	local size tfo_before
	tfo_before=$(counter "$NETNS_CLIENT" TcpExtTCPFastOpenActive)
	for size in $sizes; do
		bench_say "size $size"
		run_size "$size"
	done
	local shape
	for shape in $shapes; do
		bench_say "shape $shape"
		run_shape "$shape"
	done
	print_table
	print_targets
	printf 'client SYNs that carried data (TcpExtTCPFastOpenActive): %d\n' \
		$(($(counter "$NETNS_CLIENT" TcpExtTCPFastOpenActive) - tfo_before))
	if [ -n "$shapes" ]; then
		print_shape_table
		print_shape_targets
	fi
	if [ -s "$work/failures" ]; then
		printf '\nfailures:\n'
		sort "$work/failures" | uniq -c
		[ -s "$work/curl-errors.log" ] && { echo 'curl:'; sort "$work/curl-errors.log" | uniq -c; }
		[ -s "$work/shape-errors.log" ] && { echo 'shape clients:'; sort "$work/shape-errors.log" | uniq -c; }
		[ -s "$work/client-shim.log" ] && { echo 'client shim log:'; tail -n 20 "$work/client-shim.log"; }
		[ -s "$work/server-shim.log" ] && { echo 'server shim log:'; tail -n 20 "$work/server-shim.log"; }
		exit 1
	fi
}

main "$@"
