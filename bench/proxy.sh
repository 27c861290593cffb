#!/bin/bash
# The proxy pair (noiseshim proxy client -> noiseshim proxy server) against
# the in-process shims, in one run, between two network namespaces without
# delay (bench/netns.sh), as bench/handshake.sh measures:
#
#   throughput   one iperf3 stream; median Gbit/s of the rounds
#   conn/s       wrk -t1 -c32, Connection: close, against nginx return 204
#   memory       1,000 concurrent connections held open through the pair:
#                each proxy's RSS growth divided by 1,000
#   hop bound    the same iperf3 and wrk over plain TCP on 127.0.0.1 with
#                both ends on the client's core: the loopback hop that each
#                side of a proxy pair adds, whatever the proxy does.  A core
#                that spends t_in a byte (or a connection) in-process and
#                t_hop on that hop keeps about t_in / (t_in + t_hop) =
#                hop / (hop + in-process) of the in-process rate through a
#                proxy.  An estimate: the hop measured here includes the
#                receiving program's own work, which a relay may do cheaper.
#
# In-process: iperf3 -c / wrk under the client shim, iperf3 -s / nginx under
# the accept shim.  Proxied: the same programs unwrapped, the proxy client
# beside the client (client namespace, 127.0.0.1, core 1), the proxy server
# beside the server (server namespace, core 0).  Both use ChaChaPoly and
# TCP Fast Open (f=1) on the Noise hop.
#
# Needs root (namespaces), iperf3, nginx, wrk.
#
#   bench/proxy.sh [--build DIR] [--rounds N] [--seconds S]
#
# Targets: proxy >= 0.8x in-process throughput and connection rate, and
# < 100 KB of proxy memory per connection; each line says met or missed.
set -u
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source-path=SCRIPTDIR
. "$here/common.sh"
# shellcheck source-path=SCRIPTDIR
. "$here/netns.sh"

build=
rounds=3
seconds=4
addr=
local_addr=127.0.0.1
server_cpu=0
client_cpu=1
held_connections=1000

# NAME-inproc: the shimmed server; NAME-pclient -> NAME-pserver -> NAME-plain
# (or NAME): the proxied path.  The namespaces are this run's own.
declare -A port=([iperf-inproc]=5201 [iperf-plain]=5202 [iperf-pserver]=5203 [iperf-pclient]=5204
	[http-inproc]=8001 [http-plain]=8002 [http-pserver]=8003 [http-pclient]=8004
	[echo]=7001 [echo-pserver]=7002 [echo-pclient]=7003
	[iperf-hop]=5205 [http-hop]=8005)

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
	netns_down
	[ -n "$work" ] && rm -rf "$work"
}

make_files() {
	local p
	"$build/noiseshim" keygen "$work/server.key" >/dev/null || return 1
	for p in iperf-inproc iperf-pserver http-inproc http-pserver echo-pserver; do
		"$build/noiseshim" nodeurl --key "$work/server.key" --tfo --addr "$addr:${port[$p]}" || return 1
	done >"$work/cache"
}

# start_proxy_pair NAME [HOST]: server proxy on core 0 towards HOST (default the
# server address), port NAME-plain (or NAME), without the load guard (see
# start_servers); client proxy on core 1.
start_proxy_pair() {
	local name=$1 target=${2:-$addr}:${port[$1-plain]:-${port[$1]}}
	bench_spawn ip netns exec "$NETNS_SERVER" taskset -c "$server_cpu" \
		env NOISESHIM_RATE_LIMIT=0 "$build/noiseshim" proxy server \
		--key "$work/server.key" --listen "$addr:${port[$name-pserver]}" --target "$target" \
		>"$work/pserver-$name.log" 2>&1
	pserver_pid[$name]=$bench_last_pid
	bench_wait_port "${port[$name-pserver]}" "$bench_last_pid" "$NETNS_SERVER" || return 1
	bench_spawn ip netns exec "$NETNS_CLIENT" taskset -c "$client_cpu" "$build/noiseshim" proxy client --cache "$work/cache" \
		--listen "$local_addr:${port[$name-pclient]}" --target "$addr:${port[$name-pserver]}" \
		>"$work/pclient-$name.log" 2>&1
	pclient_pid[$name]=$bench_last_pid
	bench_wait_port "${port[$name-pclient]}" "$bench_last_pid" "$NETNS_CLIENT"
}

declare -A pserver_pid pclient_pid

start_servers() {
	local shim=$build/libnoiseshim-server.so
	# One address opens every connection: the load guard of the accept shim
	# and of the proxy server would (rightly) refuse most of them, so both
	# are measured without it.
	bench_spawn ip netns exec "$NETNS_SERVER" taskset -c "$server_cpu" env LD_PRELOAD="$shim" NOISESHIM_KEY="$work/server.key" \
		NOISESHIM_RATE_LIMIT=0 NOISESHIM_LISTEN="${port[iperf-inproc]}" iperf3 -s -B "$addr" -p "${port[iperf-inproc]}" \
		>"$work/iperf-inproc.log" 2>&1
	bench_wait_port "${port[iperf-inproc]}" "$bench_last_pid" "$NETNS_SERVER" || return 1
	bench_spawn ip netns exec "$NETNS_SERVER" taskset -c "$server_cpu" iperf3 -s -B "$addr" -p "${port[iperf-plain]}" \
		>"$work/iperf-plain.log" 2>&1
	bench_wait_port "${port[iperf-plain]}" "$bench_last_pid" "$NETNS_SERVER" || return 1
	start_proxy_pair iperf || return 1

	bench_nginx_conf "$work/nginx-inproc" "$addr:${port[http-inproc]} backlog=4096" '' \
		'keepalive_timeout 0; location / { return 204; }'
	bench_nginx_start "$work/nginx-inproc" "${port[http-inproc]}" "$NETNS_SERVER" taskset -c "$server_cpu" \
		env LD_PRELOAD="$shim" NOISESHIM_KEY="$work/server.key" NOISESHIM_RATE_LIMIT=0 \
		NOISESHIM_LISTEN="${port[http-inproc]}" ||
		return 1
	bench_nginx_conf "$work/nginx-plain" "$addr:${port[http-plain]} backlog=4096" '' \
		'keepalive_timeout 0; location / { return 204; }'
	bench_nginx_start "$work/nginx-plain" "${port[http-plain]}" "$NETNS_SERVER" taskset -c "$server_cpu" || return 1
	start_proxy_pair http || return 1

	# The hop alone: plain TCP on 127.0.0.1, server and client on the client's core.
	bench_spawn ip netns exec "$NETNS_CLIENT" taskset -c "$client_cpu" iperf3 -s -B "$local_addr" \
		-p "${port[iperf-hop]}" >"$work/iperf-hop.log" 2>&1
	bench_wait_port "${port[iperf-hop]}" "$bench_last_pid" "$NETNS_CLIENT" || return 1
	bench_nginx_conf "$work/nginx-hop" "$local_addr:${port[http-hop]} backlog=4096" '' \
		'keepalive_timeout 0; location / { return 204; }'
	bench_nginx_start "$work/nginx-hop" "${port[http-hop]}" "$NETNS_CLIENT" taskset -c "$client_cpu" ||
		return 1

	# echo_server.py listens on 127.0.0.1: the echo pair's proxy server targets that.
	bench_spawn ip netns exec "$NETNS_SERVER" python3 "$bench_root/tests/integration/echo_server.py" --port "${port[echo]}" \
		--model selectors >"$work/echo.log" 2>&1
	bench_wait_port "${port[echo]}" "$bench_last_pid" "$NETNS_SERVER" || return 1
	start_proxy_pair echo 127.0.0.1
}

# iperf MODE HOST PORT [ENV...]: one iperf3 run; appends Gbit/s to the mode's file.
iperf() {
	local mode=$1 host=$2 p=$3 json=$work/$1.json rate
	shift 3
	in_client taskset -c "$client_cpu" env "$@" timeout $((seconds + 20)) iperf3 -c "$host" -p "$p" \
		-t "$seconds" -J >"$json" 2>"$work/$mode.stderr"
	rate=$(python3 -c '
import json, sys
print("%.3f" % (json.load(open(sys.argv[1]))["end"]["sum_received"]["bits_per_second"] / 1e9))' \
		"$json" 2>/dev/null)
	if [ -z "$rate" ]; then
		echo "$mode: iperf3 failed: $(head -c 300 "$work/$mode.stderr")" >>"$work/failures"
		return
	fi
	echo "$rate" >>"$work/rates-$mode"
}

# wrk_rate MODE HOST PORT [ENV...]: one wrk run; appends requests (= connections) per second.
wrk_rate() {
	local mode=$1 host=$2 p=$3 out=$work/wrk-$1.txt rate errors
	shift 3
	in_client taskset -c "$client_cpu" env "$@" timeout $((seconds + 20)) wrk -t 1 -c 32 \
		-d "${seconds}s" -H 'Connection: close' "http://$host:$p/" >"$out" 2>&1
	rate=$(awk '$1 == "Requests/sec:" { print $2 }' "$out")
	errors=$(grep -E 'Socket errors|Non-2xx' "$out")
	[ -n "$errors" ] && echo "$mode: $errors" >>"$work/failures"
	if [ -z "$rate" ]; then
		echo "$mode: wrk failed: $(tail -n 3 "$out")" >>"$work/failures"
		return
	fi
	echo "$rate" >>"$work/rates-$mode"
}

rss_kb() { awk '$1 == "VmRSS:" { print $2 }' "/proc/$1/status"; }

# measure_memory: 1,000 echoing connections through the echo pair, held
# open while both proxies' RSS is read.  Prints "CLIENT_KB SERVER_KB" per connection.
measure_memory() {
	local c0 s0 c1 s1 holder
	c0=$(rss_kb "${pclient_pid[echo]}") s0=$(rss_kb "${pserver_pid[echo]}")
	in_client python3 - "$local_addr" "${port[echo-pclient]}" "$held_connections" \
		>"$work/holder.log" 2>&1 <<-'EOF' &
		import resource, socket, sys, time
		resource.setrlimit(resource.RLIMIT_NOFILE, (8192, 8192))
		addr, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
		socks = []
		for i in range(count):
		    s = socket.create_connection((addr, port), timeout=60)
		    s.sendall(b"connection %d\n" % i)
		    socks.append(s)
		for i, s in enumerate(socks):
		    want = b"connection %d\n" % i
		    got = b""
		    while len(got) < len(want):
		        got += s.recv(len(want) - len(got))
		    assert got == want, (got, want)
		print("holding", len(socks), flush=True)
		time.sleep(600)
	EOF
	holder=$!
	bench_pids+=("$holder")
	for _ in $(seq 600); do
		grep -q '^holding' "$work/holder.log" && break
		kill -0 "$holder" 2>/dev/null || break
		sleep 0.1
	done
	if ! grep -q '^holding' "$work/holder.log"; then
		echo "memory: the $held_connections connections did not all echo: $(tail -n 3 "$work/holder.log")" \
			>>"$work/failures"
		return
	fi
	c1=$(rss_kb "${pclient_pid[echo]}") s1=$(rss_kb "${pserver_pid[echo]}")
	bench_stop "$holder"
	awk -v c0="$c0" -v c1="$c1" -v s0="$s0" -v s1="$s1" -v n="$held_connections" \
		'BEGIN { printf "%.2f %.2f\n", (c1 - c0) / n, (s1 - s0) / n }' >"$work/memory"
}

verdict() { awk -v v="$1" -v t="$2" -v op="$3" 'BEGIN {
	if (v == "-" || v == "") print "missed (no figure)"
	else if ((op == ">=" && v >= t) || (op == "<" && v < t)) print "met"
	else print "missed" }'; }

# hop_bound HOP INPROC: about the most a proxy pair keeps of INPROC on this layout.
hop_bound() { awk -v h="$1" -v i="$2" 'BEGIN {
	if (h == "-" || i == "-" || h + i == 0) print "-"; else printf "%.2f\n", h / (h + i) }'; }

print_table() {
	local m mode median inproc_tp proxy_tp inproc_cr proxy_cr tp_ratio cr_ratio client_kb server_kb
	local tp_bound cr_bound
	declare -A medians
	for mode in tp-inproc tp-proxy tp-hop cr-inproc cr-proxy cr-hop; do
		medians[$mode]=$(bench_summary <"$work/rates-$mode" 2>/dev/null | awk '{ print $2 }')
		[ -n "${medians[$mode]}" ] || medians[$mode]=-
	done
	inproc_tp=${medians[tp-inproc]} proxy_tp=${medians[tp-proxy]}
	inproc_cr=${medians[cr-inproc]} proxy_cr=${medians[cr-proxy]}
	tp_ratio=$(bench_ratio "$proxy_tp" "$inproc_tp")
	cr_ratio=$(bench_ratio "$proxy_cr" "$inproc_cr")
	tp_bound=$(hop_bound "${medians[tp-hop]}" "$inproc_tp")
	cr_bound=$(hop_bound "${medians[cr-hop]}" "$inproc_cr")
	read -r client_kb server_kb <"$work/memory" 2>/dev/null || { client_kb=- server_kb=-; }
	printf '\nProxy pair vs in-process shims, two namespaces without delay, ChaChaPoly, TFO,\n'
	printf '%d rounds of %d s (median); server side on core %d, client side on core %d\n\n' \
		"$rounds" "$seconds" "$server_cpu" "$client_cpu"
	printf '%-34s %12s %12s %7s  %s\n' measure in-process proxy ratio "target"
	printf '%-34s %12s %12s %7s  >= 0.8x: %s\n' "iperf3 one stream, Gbit/s" "$inproc_tp" "$proxy_tp" \
		"$tp_ratio" "$(verdict "$tp_ratio" 0.8 '>=')"
	printf '%-34s %12s %12s %7s  >= 0.8x: %s\n' "wrk new connections, conn/s" "$inproc_cr" "$proxy_cr" \
		"$cr_ratio" "$(verdict "$cr_ratio" 0.8 '>=')"
	m=$(awk -v a="$client_kb" -v b="$server_kb" 'BEGIN { print (a == "-" || b == "-") ? "-" : (a > b ? a : b) }')
	printf '%-34s %12s %12s %7s  < 100 KB: %s\n' "KB per held connection (of 1,000)" - \
		"$client_kb/$server_kb" - "$(verdict "$m" 100 '<')"
	printf '\nThe loopback hop each side of a proxy pair adds: plain TCP, both ends on core %d\n' \
		"$client_cpu"
	printf '%-34s %12s %12s %7s\n' measure hop "hop bound" "proxy/bound"
	printf '%-34s %12s %12s %7s\n' "iperf3 one stream, Gbit/s" "${medians[tp-hop]}" "${tp_bound}x" \
		"$(bench_ratio "$tp_ratio" "$tp_bound")"
	printf '%-34s %12s %12s %7s\n' "wrk new connections, conn/s" "${medians[cr-hop]}" "${cr_bound}x" \
		"$(bench_ratio "$cr_ratio" "$cr_bound")"
	printf '\n(memory: client proxy/server proxy RSS growth with %d connections open, / %d)\n' \
		"$held_connections" "$held_connections"
	printf '(hop bound: hop / (hop + in-process), about the most a proxy pair keeps of the\n'
	printf ' in-process rate when the program and its proxy share one core on each side)\n'
}

main() {
	local round
	parse_args "$@"
	bench_need iperf3 nginx wrk taskset python3 || exit 1
	build=$(bench_build_dir "$build") || exit 1
	work=$(mktemp -d /tmp/bench-proxy.XXXXXX) || exit 1
	bench_keep_state_in "$work"
	netns_up 0 || exit 1
	addr=$NETNS_SERVER_ADDR
	trap cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	make_files || { bench_say "could not make the key or the cache"; exit 1; }
	start_servers || exit 1
	local shim=(LD_PRELOAD="$build/libnoiseshim.so" NOISESHIM_CACHE="$work/cache")
	for ((round = 0; round < rounds; round++)); do
		bench_say "round $((round + 1)) of $rounds"
		iperf tp-inproc "$addr" "${port[iperf-inproc]}" "${shim[@]}"
		iperf tp-proxy "$local_addr" "${port[iperf-pclient]}"
		wrk_rate cr-inproc "$addr" "${port[http-inproc]}" "${shim[@]}"
		wrk_rate cr-proxy "$local_addr" "${port[http-pclient]}"
		iperf tp-hop "$local_addr" "${port[iperf-hop]}"
		wrk_rate cr-hop "$local_addr" "${port[http-hop]}"
	done
	bench_say "holding $held_connections connections"
	measure_memory
	print_table
	if [ -s "$work/failures" ]; then
		printf '\nfailures:\n'
		cat "$work/failures"
		tail -n 5 "$work"/pclient-*.log "$work"/pserver-*.log
		exit 1
	fi
}

main "$@"
