#!/bin/bash
# TCP Fast Open end to end, between two network namespaces 50 ms apart: an
# unmodified client under the client shim and an unmodified server under the
# accept shim.  After the first connection has fetched the server's cookie,
# msg1 with the request must ride in the SYN: the kernel's TFO counters move
# on both sides and the reply arrives after one round trip, not two.
#
#   tests/integration/tfo.sh BUILD_DIR
set -u
build=$(cd "${1:-build}" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
probe=$root/tests/netns/tcp_probe.py
NETNS_NFQ_DELAY=${NETNS_NFQ_DELAY:-$root/build/bench/nfq_delay}
. "$root/bench/netns.sh"

passed=0 failed=0
ok() { passed=$((passed + 1)); echo "ok   $*"; }
fail() { failed=$((failed + 1)); echo "FAIL $*"; }
finish() {
	echo "tfo: $passed passed, $failed failed"
	[ "$failed" -eq 0 ]
	exit
}
counter() { ip netns exec "$1" nstat -asz "$2" | awk -v name="$2" '$1 == name { print $2 }'; }
preload() {
	# A sanitizer build of the shim needs the ASan runtime loaded first.
	if nm -D "$1" 2>/dev/null | grep -q __asan_init; then
		echo "$(gcc -print-file-name=libasan.so) $1"
	else
		echo "$1"
	fi
}

work=$(mktemp -d)
# The shims' counters files stay in the work directory, not in /run/noiseshim.
export NOISESHIM_STATS_DIR=$work/stats
server=
cleanup() {
	[ -n "$server" ] && kill "$server" 2>/dev/null
	netns_down
	rm -rf "$work"
}
delay=25
netns_up "$delay" || { fail "netns_up"; finish; }
trap cleanup EXIT
rtt=$((2 * delay))

port=7000
echo 0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20 >"$work/server.key"
chmod 600 "$work/server.key"
echo "$NETNS_SERVER_ADDR:$port?f=1&noise_pub=14N7s89T436KFPmWgbYtPSNergNUhPRDfDhudzwhrgSfzNFjvy" \
	>"$work/cache"

# Its replay window stays in the work directory too.
in_server env NOISESHIM_KEY="$work/server.key" NOISESHIM_LISTEN="$port" \
	NOISESHIM_LOG=info NOISESHIM_LOG_FILE="$work/server-shim.log" ASAN_OPTIONS=detect_leaks=0 \
	NOISESHIM_REPLAY_FILE="$work/replay.map" \
	LD_PRELOAD="$(preload "$build/libnoiseshim-server.so")" \
	python3 "$probe" serve "$NETNS_SERVER_ADDR" "$port" >"$work/server.log" 2>&1 &
server=$!
for _ in $(seq 50); do grep -q '^ready' "$work/server.log" && break; sleep 0.1; done
grep -q '^ready' "$work/server.log" || { fail "server did not start: $(cat "$work/server.log")"; finish; }

request() {
	in_client env NOISESHIM_CACHE="$work/cache" NOISESHIM_LOG=info \
		NOISESHIM_LOG_FILE="$work/client-shim.log" ASAN_OPTIONS=detect_leaks=0 \
		LD_PRELOAD="$(preload "$build/libnoiseshim.so")" \
		timeout 20 python3 "$probe" request "$NETNS_SERVER_ADDR" "$port" plain
}
within() { awk -v v="$1" -v lo="$2" -v hi="$3" 'BEGIN { exit !(v != "" && v >= lo && v <= hi) }'; }

active_before=$(counter "$NETNS_CLIENT" TcpExtTCPFastOpenActive)
passive_before=$(counter "$NETNS_SERVER" TcpExtTCPFastOpenPassive)

first=$(request)
# The first connection asks for the cookie; its data waits for the handshake.
if within "$first" $((2 * rtt * 9 / 10)) $((2 * rtt * 3 / 2)); then
	ok "first connection (cookie fetch): $first ms, 2 RTT"
else
	fail "first connection: '$first' ms, expected about $((2 * rtt))"
fi
for n in 2 3; do
	t=$(request)
	if within "$t" $((rtt * 9 / 10)) $((rtt * 3 / 2)); then
		ok "connection $n: request answered in $t ms, 1 RTT"
	else
		fail "connection $n: '$t' ms, expected about $rtt (msg1 in the SYN)"
	fi
done

active=$(( $(counter "$NETNS_CLIENT" TcpExtTCPFastOpenActive) - active_before ))
passive=$(( $(counter "$NETNS_SERVER" TcpExtTCPFastOpenPassive) - passive_before ))
[ "$active" -ge 2 ] && ok "client kernel sent data in 2 SYNs (TcpExtTCPFastOpenActive +$active)" \
	|| fail "TcpExtTCPFastOpenActive moved by $active, expected 2"
[ "$passive" -ge 2 ] && ok "server kernel took data from 2 SYNs (TcpExtTCPFastOpenPassive +$passive)" \
	|| fail "TcpExtTCPFastOpenPassive moved by $passive, expected 2"
# TFO holds the SYN back until the first write, and the kernel then calls the
# socket unconnected; a program that asks for its peer right after connect
# (iperf3 does) must still get it.
peer=$(in_client env NOISESHIM_CACHE="$work/cache" ASAN_OPTIONS=detect_leaks=0 \
	LD_PRELOAD="$(preload "$build/libnoiseshim.so")" timeout 20 python3 -c '
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])))
print("%s:%d" % s.getpeername())' "$NETNS_SERVER_ADDR" "$port" 2>&1)
[ "$peer" = "$NETNS_SERVER_ADDR:$port" ] && ok "getpeername() before the first write gives the server: $peer" \
	|| fail "getpeername() before the first write: '$peer', expected $NETNS_SERVER_ADDR:$port"
grep -q "Noise_IK_25519_ChaChaPoly_BLAKE2b, TCP Fast Open on" "$work/client-shim.log" 2>/dev/null &&
	ok "client shim wrapped the connections with TFO" ||
	fail "client shim log lacks the wrapped connection: $(cat "$work/client-shim.log" 2>/dev/null)"
finish
