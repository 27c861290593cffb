#!/bin/bash
# Bulk throughput of one TCP stream on loopback (127.0.0.1; no namespaces,
# no emulated delay): iperf3, unmodified, in these modes:
#
#   tcp             no shim
#   tcp-shim        both shims, NOISESHIM_TRANSPORT=tcp: the shim without crypto
#   noise-chacha    both shims, cache entry noise_proto=1 (ChaChaPoly)
#   noise-aesgcm    both shims, cache entry noise_proto=2 (AESGCM)
#   stunnel-chacha  stunnel client and server in front of plain iperf3,
#   stunnel-aesgcm  TLS 1.3 with TLS_CHACHA20_POLY1305_SHA256 or
#                   TLS_AES_256_GCM_SHA384, X25519
#
# iperf3 opens a control connection and then a data connection to the same
# port; both go through the shim (or stunnel), since both are connections
# to the wrapped port.  The two noise modes share one wrapped iperf3 server:
# the accept shim answers either suite, and only NOISESHIM_CACHE changes.
# The server side (iperf3 -s, stunnel's server) runs on core 0, the client
# side (iperf3 -c, stunnel's client) on core 1.  Modes take turns, round
# after round; the figure is iperf3's receiver rate, median of the rounds.
#
#   bench/throughput.sh [--build DIR] [--rounds N] [--seconds S]
#
# Needs iperf3, stunnel4, openssl, python3.
set -u
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source-path=SCRIPTDIR
. "$here/common.sh"

build=
rounds=5
seconds=4
addr=127.0.0.1
server_cpu=0
client_cpu=1

modes=(tcp tcp-shim noise-chacha noise-aesgcm stunnel-chacha stunnel-aesgcm)
# Where each mode's iperf3 client connects.
declare -A port=([tcp]=15201 [tcp-shim]=15202 [noise-chacha]=15203 [noise-aesgcm]=15203
	[stunnel-chacha]=15212 [stunnel-aesgcm]=15222)
# stunnel's server ends, in front of the plain iperf3 server of mode tcp.
declare -A tls_port=([stunnel-chacha]=15211 [stunnel-aesgcm]=15221)
declare -A tls_suite=([stunnel-chacha]=TLS_CHACHA20_POLY1305_SHA256
	[stunnel-aesgcm]=TLS_AES_256_GCM_SHA384)

parse_args() {
	while [ $# -gt 0 ]; do
		case $1 in
		--build) build=$2; shift 2 ;;
		--rounds) rounds=$2; shift 2 ;;
		--seconds) seconds=$2; shift 2 ;;
		*) usage ;;
		esac
	done
}

work=
cleanup() {
	bench_stop_all
	[ -n "$work" ] && rm -rf "$work"
}

# make_files: the server key, one cache per suite, a certificate.
make_files() {
	local proto
	"$build/noiseshim" keygen "$work/server.key" >/dev/null || return 1
	for proto in 1 2; do
		"$build/noiseshim" nodeurl --key "$work/server.key" --proto "$proto" \
			--addr "$addr:${port[noise-chacha]}" >"$work/cache-$proto" || return 1
	done
	# The tcp-shim client needs a cache entry too: the shim acts on cached
	# destinations only.
	"$build/noiseshim" nodeurl --key "$work/server.key" --addr "$addr:${port[tcp-shim]}" \
		>"$work/cache-tcp" || return 1
	bench_tls_cert "$work" "$addr"
}

# start_iperf_server PORT [ENV...]: iperf3 -s on the server core.
start_iperf_server() {
	local server_port=$1
	shift
	bench_spawn taskset -c "$server_cpu" env "$@" iperf3 -s -B "$addr" -p "$server_port" \
		>"$work/iperf3-$server_port.log" 2>&1
	bench_wait_port "$server_port" "$bench_last_pid" ||
		{ bench_say "iperf3 -s on port $server_port did not start: $(tail -n 3 "$work/iperf3-$server_port.log")"; return 1; }
}

# start_stunnel NAME CPU ACCEPT_PORT CONFIG_LINES: one stunnel service.
start_stunnel() {
	local name=$1 cpu=$2 accept=$3 lines=$4 conf=$work/stunnel-$1.conf
	cat >"$conf" <<-EOF
		foreground = yes
		output = $work/stunnel-$name.log
		debug = 4
		[iperf3]
		accept = $addr:$accept
		sslVersionMin = TLSv1.3
		curves = X25519
		$lines
	EOF
	bench_spawn taskset -c "$cpu" stunnel "$conf" >>"$work/stunnel-$name.log" 2>&1
	bench_wait_port "$accept" "$bench_last_pid" ||
		{ bench_say "stunnel $name did not start: $(tail -n 3 "$work/stunnel-$name.log")"; return 1; }
}

# start_stunnel_pair MODE: TLS server end on the server core, client end on
# the client core, in front of the plain iperf3 server.
start_stunnel_pair() {
	local mode=$1 suite=${tls_suite[$1]}
	start_stunnel "$mode-server" "$server_cpu" "${tls_port[$mode]}" \
		"ciphersuites = $suite
		cert = $work/cert.pem
		key = $work/key.pem
		connect = $addr:${port[tcp]}" &&
		start_stunnel "$mode-client" "$client_cpu" "${port[$mode]}" \
			"ciphersuites = $suite
			client = yes
			CAfile = $work/cert.pem
			verifyPeer = yes
			connect = $addr:${tls_port[$mode]}"
}

start_servers() {
	local shim=$build/libnoiseshim-server.so log=$work/server-shim.log
	start_iperf_server "${port[tcp]}" &&
		start_iperf_server "${port[tcp-shim]}" LD_PRELOAD="$shim" NOISESHIM_TRANSPORT=tcp \
			NOISESHIM_LISTEN="${port[tcp-shim]}" NOISESHIM_LOG_FILE="$log" &&
		start_iperf_server "${port[noise-chacha]}" LD_PRELOAD="$shim" \
			NOISESHIM_KEY="$work/server.key" NOISESHIM_LISTEN="${port[noise-chacha]}" \
			NOISESHIM_LOG_FILE="$log" &&
		start_stunnel_pair stunnel-chacha &&
		start_stunnel_pair stunnel-aesgcm
}

# client_env MODE: the environment iperf3 -c runs with, as VAR=VALUE words.
client_env() {
	local shim="LD_PRELOAD=$build/libnoiseshim.so NOISESHIM_LOG_FILE=$work/client-shim.log"
	case $1 in
	tcp-shim) echo "$shim NOISESHIM_TRANSPORT=tcp NOISESHIM_CACHE=$work/cache-tcp" ;;
	noise-chacha) echo "$shim NOISESHIM_CACHE=$work/cache-1" ;;
	noise-aesgcm) echo "$shim NOISESHIM_CACHE=$work/cache-2" ;;
	esac
}

# measure MODE: one iperf3 run; appends the receiver's Gbit/s to the mode's file.
measure() {
	local mode=$1 json=$work/$1.json rate
	# shellcheck disable=SC2046 # client_env gives one VAR=VALUE per word
	taskset -c "$client_cpu" env $(client_env "$mode") \
		timeout $((seconds + 20)) iperf3 -c "$addr" -p "${port[$mode]}" -t "$seconds" -J \
		>"$json" 2>"$work/$mode.stderr"
	rate=$(python3 -c '
import json, sys
report = json.load(open(sys.argv[1]))
print("%.3f" % (report["end"]["sum_received"]["bits_per_second"] / 1e9))' "$json" 2>/dev/null)
	if [ -z "$rate" ]; then
		echo "$mode: iperf3 failed: $(head -c 300 "$work/$mode.stderr") $(grep -o '"error":.*' "$json")" \
			>>"$work/failures"
		bench_say "FAIL $mode (see the failures below)"
		return
	fi
	echo "$rate" >>"$work/rates-$mode"
}

print_table() {
	local mode stats median tcp
	declare -A medians
	for mode in "${modes[@]}"; do
		stats=$(bench_summary <"$work/rates-$mode" 2>/dev/null || echo "0 - - - - -")
		medians[$mode]=$(awk '{ print $2 }' <<<"$stats")
		echo "$mode $stats" >>"$work/summary"
	done
	tcp=${medians[tcp]}
	printf '\nOne iperf3 stream on 127.0.0.1, %d s per run, %d rounds; server on core %d, client on core %d\n\n' \
		"$seconds" "$rounds" "$server_cpu" "$client_cpu"
	printf '%-15s %3s %8s %8s %8s %7s %11s\n' mode n Gbit/s min max x-tcp x-stunnel
	while read -r mode n median _ _ min max; do
		local versus=-
		case $mode in
		noise-chacha) versus=$(bench_ratio "$median" "${medians[stunnel-chacha]}") ;;
		noise-aesgcm) versus=$(bench_ratio "$median" "${medians[stunnel-aesgcm]}") ;;
		esac
		printf '%-15s %3s %8s %8s %8s %7s %11s\n' "$mode" "$n" "$median" "$min" "$max" \
			"$(bench_ratio "$median" "$tcp")" "$versus"
	done <"$work/summary"
	echo
	for mode in noise-chacha noise-aesgcm; do
		bench_target "$mode x-tcp" "$(bench_ratio "${medians[$mode]}" "$tcp")" '>=' 0.6
		bench_target "$mode x-stunnel (same suite)" \
			"$(bench_ratio "${medians[$mode]}" "${medians[stunnel-${mode#noise-}]}")" '>=' 2.5
	done
	return 0
}

main() {
	parse_args "$@"
	bench_need iperf3 stunnel openssl python3 taskset || exit 1
	build=$(bench_build_dir "$build") || exit 1
	work=$(mktemp -d /tmp/bench-throughput.XXXXXX) || exit 1
	bench_keep_state_in "$work"
	trap cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	make_files || { bench_say "could not make the key, caches or certificate"; exit 1; }
	start_servers || exit 1

	local round mode
	for ((round = 0; round < rounds; round++)); do
		bench_say "round $((round + 1)) of $rounds"
		for mode in "${modes[@]}"; do measure "$mode"; done
	done
	print_table
	if [ -s "$work/failures" ]; then
		printf '\nfailures:\n'
		cat "$work/failures"
		[ -s "$work/client-shim.log" ] && { echo 'client shim log:'; tail -n 20 "$work/client-shim.log"; }
		[ -s "$work/server-shim.log" ] && { echo 'server shim log:'; tail -n 20 "$work/server-shim.log"; }
		exit 1
	fi
}

main "$@"
