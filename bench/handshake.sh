#!/bin/bash
# New connections per second: wrk sends `Connection: close` requests, so
# every request is a new connection, to an nginx that answers `return 204`
# and keeps nothing alive.  The server does almost nothing but accept, so
# the handshake's cost is what is left to measure.  Modes:
#
#   tcp        no shim
#   tcp+tfo    both shims, NOISESHIM_TRANSPORT=tcp, cache entry with f=1
#   noise      both shims, Noise_IK (ChaChaPoly), NOISESHIM_TFO=off
#   noise+tfo  both shims, Noise_IK (ChaChaPoly), cache entry with f=1
#   tls1.3     no shim; nginx ssl (TLS 1.3 only, X25519, ECDSA P-256),
#              wrk https
#
# Server and client sit in two network namespaces with no delay
# (bench/netns.sh), so TCP Fast Open is on there without touching this
# machine's settings.  nginx (one worker) runs on core 0, wrk (one thread)
# on core 1.  Modes take turns, round after round; the figure is wrk's
# requests/s, median of the rounds.  The X25519 ceiling (bench_core: a key
# generation and four Diffie-Hellman per handshake, on the server's core)
# is measured in the same run, after every round.
#
# Targets: Noise+TFO at least 0.75x the X25519 ceiling and at least 1.6x
# TLS 1.3.
#
#   bench/handshake.sh [--build DIR] [--rounds N] [--seconds S] [--connections C]
#
# Needs root (namespaces), nginx, wrk, openssl.
set -u
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source-path=SCRIPTDIR
. "$here/common.sh"
# shellcheck source-path=SCRIPTDIR
. "$here/netns.sh"

build=
rounds=5
seconds=5
connections=32
server_cpu=0
client_cpu=1

modes=(tcp tcp+tfo noise noise+tfo tls1.3)
declare -A port=([tcp]=8000 [tcp+tfo]=8001 [noise]=8002 [noise+tfo]=8002 [tls1.3]=8443)

parse_args() {
	while [ $# -gt 0 ]; do
		case $1 in
		--build) build=$2; shift 2 ;;
		--rounds) rounds=$2; shift 2 ;;
		--seconds) seconds=$2; shift 2 ;;
		--connections) connections=$2; shift 2 ;;
		*) usage ;;
		esac
	done
}

work=
cleanup() {
	bench_stop_all
	netns_down
	[ -n "$work" ] && rm -rf "$work"
}

make_files() {
	"$build/noiseshim" keygen "$work/server.key" >/dev/null || return 1
	{
		"$build/noiseshim" nodeurl --key "$work/server.key" --tfo \
			--addr "$NETNS_SERVER_ADDR:${port[tcp+tfo]}" &&
			"$build/noiseshim" nodeurl --key "$work/server.key" --tfo \
				--addr "$NETNS_SERVER_ADDR:${port[noise]}"
	} >"$work/cache" || return 1
	bench_tls_cert "$work" "$NETNS_SERVER_ADDR"
}

# start_server NAME PORT SSL_DIR [ENV...]: nginx answering 204 on core 0.
start_server() {
	local server_port=$2 ssl_dir=$3 dir=$work/nginx-$1
	shift 3
	bench_nginx_conf "$dir" "$NETNS_SERVER_ADDR:$server_port backlog=4096" "$ssl_dir" \
		'keepalive_timeout 0; location / { return 204; }'
	bench_nginx_start "$dir" "$server_port" "$NETNS_SERVER" taskset -c "$server_cpu" env "$@"
}

# measure MODE: one wrk run; appends requests/s to the mode's file and
# wrk's error counts, if any, to the failures.
measure() {
	local mode=$1 scheme=http out=$work/wrk-$1.txt rate errors
	[ "$mode" = tls1.3 ] && scheme=https
	# shellcheck disable=SC2046 # client_env gives one VAR=VALUE per word
	in_client taskset -c "$client_cpu" env $(client_env "$mode") \
		timeout $((seconds + 20)) wrk -t 1 -c "$connections" -d "${seconds}s" \
		-H 'Connection: close' "$scheme://$NETNS_SERVER_ADDR:${port[$mode]}/" >"$out" 2>&1
	rate=$(awk '$1 == "Requests/sec:" { print $2 }' "$out")
	errors=$(grep -E 'Socket errors|Non-2xx' "$out")
	[ -n "$errors" ] && echo "$mode: $errors" >>"$work/failures"
	if [ -z "$rate" ]; then
		echo "$mode: wrk failed: $(tail -n 3 "$out")" >>"$work/failures"
		bench_say "FAIL $mode (see the failures below)"
		return
	fi
	echo "$rate" >>"$work/rates-$mode"
}

print_table() {
	local mode stats tcp tls ceiling
	declare -A medians
	for mode in "${modes[@]}"; do
		stats=$(bench_summary <"$work/rates-$mode" 2>/dev/null || echo "0 - - - - -")
		medians[$mode]=$(awk '{ print $2 }' <<<"$stats")
		echo "$mode $stats" >>"$work/summary"
	done
	tcp=${medians[tcp]}
	tls=${medians[tls1.3]}
	printf '\nNew connection per request (wrk -t1 -c%d, Connection: close, %d s, %d rounds)\n' \
		"$connections" "$seconds" "$rounds"
	printf 'nginx return 204 on core %d, wrk on core %d, namespaces without delay\n\n' \
		"$server_cpu" "$client_cpu"
	printf '%-10s %3s %9s %9s %9s %7s %7s\n' mode n conn/s min max x-tcp x-tls
	while read -r mode n median _ _ min max; do
		printf '%-10s %3s %9.0f %9.0f %9.0f %7s %7s\n' "$mode" "$n" "$median" "$min" "$max" \
			"$(bench_ratio "$median" "$tcp")" "$(bench_ratio "$median" "$tls")"
	done <"$work/summary"
	echo
	ceiling=$(bench_summary <"$work/ceiling" | awk '{ print $2 }')
	printf '\nX25519 ceiling on the server core (a key generation and four DH): %.0f/s\n' "$ceiling"
	bench_target "noise+tfo x-x25519-ceiling" "$(bench_ratio "${medians[noise+tfo]}" "$ceiling")" '>=' 0.75
	bench_target "noise+tfo x-tls" "$(bench_ratio "${medians[noise+tfo]}" "$tls")" '>=' 1.6
	return 0
}

main() {
	parse_args "$@"
	bench_need nginx wrk openssl taskset || exit 1
	build=$(bench_build_dir "$build") || exit 1
	work=$(mktemp -d /tmp/bench-handshake.XXXXXX) || exit 1
	bench_keep_state_in "$work"
	netns_up 0 || exit 1
	trap cleanup EXIT
	make_files || { bench_say "could not make the key, cache or certificate"; exit 1; }
	start_servers || exit 1

	local round mode
	for ((round = 0; round < rounds; round++)); do
		bench_say "round $((round + 1)) of $rounds"
		for mode in "${modes[@]}"; do measure "$mode"; done
		taskset -c "$server_cpu" "$build/bench/bench_core" --ceiling >>"$work/ceiling"
	done
	print_table
	if [ -s "$work/failures" ]; then
		printf '\nerrors:\n'
		cat "$work/failures"
		[ -s "$work/client-shim.log" ] && { echo 'client shim log:'; tail -n 20 "$work/client-shim.log"; }
		[ -s "$work/server-shim.log" ] && { echo 'server shim log:'; tail -n 20 "$work/server-shim.log"; }
		exit 1
	fi
}

main "$@"
