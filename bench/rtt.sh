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
#   bench/rtt.sh [--build DIR] [--count N] [--warmup N] [--sizes LIST]
#                [--delay-ms D] [--results FILE]
#
# LIST: sizes among 5k 64k 1m (default all three).  --results writes one
# line per cell: "SIZE MODE COUNT MEDIAN P10 P90 MIN MAX FAILURES" (ms).
# Needs root (namespaces), nginx, curl, openssl.
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
delay_ms=25
results=

modes=(tcp tcp+tfo noise noise+tfo tls1.3)
declare -A size_bytes=([5k]=5120 [64k]=65536 [1m]=1048576)
declare -A port=([tcp]=8000 [tcp+tfo]=8001 [noise]=8002 [noise+tfo]=8002 [tls1.3]=8443)

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
		--delay-ms) delay_ms=$2; shift 2 ;;
		--results) results=$2; shift 2 ;;
		*) usage ;;
		esac
	done
	local size
	for size in $sizes; do
		[ -n "${size_bytes[$size]:-}" ] || { bench_say "unknown size '$size'"; usage; }
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

counter() { ip netns exec "$1" nstat -asz "$2" | awk -v name="$2" '$1 == name { print $2 }'; }

main() {
	parse_args "$@"
	bench_need nginx curl openssl nstat || exit 1
	build=$(bench_build_dir "$build") || exit 1
	[ -n "$results" ] && : >"$results"
	work=$(mktemp -d /tmp/bench-rtt.XXXXXX) || exit 1
	netns_up "$delay_ms" || exit 1
	trap cleanup EXIT
	make_files || { bench_say "could not make the key, cache or certificate"; exit 1; }
	start_servers || exit 1

	local size tfo_before
	tfo_before=$(counter "$NETNS_CLIENT" TcpExtTCPFastOpenActive)
	for size in $sizes; do
		bench_say "size $size"
		run_size "$size"
	done
	print_table
	print_targets
	printf 'client SYNs that carried data (TcpExtTCPFastOpenActive): %d\n' \
		$(($(counter "$NETNS_CLIENT" TcpExtTCPFastOpenActive) - tfo_before))
	if [ -s "$work/failures" ]; then
		printf '\nfailures:\n'
		sort "$work/failures" | uniq -c
		[ -s "$work/curl-errors.log" ] && { echo 'curl:'; sort "$work/curl-errors.log" | uniq -c; }
		[ -s "$work/client-shim.log" ] && { echo 'client shim log:'; tail -n 20 "$work/client-shim.log"; }
		[ -s "$work/server-shim.log" ] && { echo 'server shim log:'; tail -n 20 "$work/server-shim.log"; }
		exit 1
	fi
}

main "$@"
