#!/bin/bash
# Checks the emulated WAN of bench/netns.sh: round-trip time, TCP connect
# time, TCP Fast Open saving a round trip, and complete teardown, including
# on SIGTERM.  Needs root.
# usage: tests/netns/test_netns.sh
set -u

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
probe=$here/tcp_probe.py
# shellcheck source=bench/netns.sh
. "$root/bench/netns.sh"

passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok $*"; }
fail() { failed=$((failed + 1)); echo "FAIL $*"; }

finish() {
	echo "netns: $passed passed, $failed failed"
	[ "$failed" -eq 0 ]
	exit
}

# check_range WHAT VALUE LOW HIGH: LOW <= VALUE <= HIGH, in ms.
check_range() {
	if [ -n "$2" ] && awk -v v="$2" -v lo="$3" -v hi="$4" 'BEGIN { exit !(v >= lo && v <= hi) }'; then
		ok "$1: $2 ms (expected $3..$4)"
	else
		fail "$1: '${2}' ms (expected $3..$4)"
	fi
}

median() { sort -n | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)] }'; }

# counter NS NAME: a TcpExt counter of one namespace.
counter() { ip netns exec "$1" nstat -asz "$2" | awk -v name="$2" '$1 == name { print $2 }'; }

# wait_for_line FILE TEXT PID: until FILE has TEXT, while PID lives (5 s at most).
wait_for_line() {
	local tries=50
	until grep -q "$2" "$1" 2>/dev/null; do
		kill -0 "$3" 2>/dev/null && [ "$tries" -gt 0 ] || return 1
		sleep 0.1
		tries=$((tries - 1))
	done
}

# expect_none WHAT LEFTOVERS: teardown left nothing of WHAT behind.
expect_none() {
	if [ -z "$2" ]; then ok "$1 gone"; else fail "$1 left behind: $(echo "$2" | tr "\n" " ")"; fi
}

# alive PID...: prints the PIDs that still run.
alive() {
	local pid
	for pid in "$@"; do kill -0 "$pid" 2>/dev/null && echo "$pid"; done
}

if [ "$(id -u)" -ne 0 ]; then
	fail "needs root (network namespaces, netfilter)"
	finish
fi
work=$(mktemp -d)
# The shell of the SIGTERM test below, while it runs.
child=
# shellcheck disable=SC2317 # runs from the EXIT trap
cleanup() {
	if [ -n "$child" ]; then
		kill -TERM "$child" 2>/dev/null
		wait "$child"
	fi
	netns_down
	rm -rf "$work"
}
delay=25
netns_up "$delay"
up=$?
# Replaces the EXIT trap netns_up set, which knows nothing of this test.
trap cleanup EXIT
[ "$up" -eq 0 ] || { fail "netns_up $delay"; finish; }
rtt=$((2 * delay))
low=$((rtt * 9 / 10))
high=$((rtt * 13 / 10))
echo "# backend $NETNS_BACKEND, $delay ms each way"

# --- round-trip time ---------------------------------------------------------
# -U: time from user space to user space.  Without it ping uses the kernel's
# receive timestamp, taken before the NFQUEUE backend holds the reply on
# ingress, and would see only one direction's delay.
ping_median() {
	in_client ping -U -n -c 5 -i 0.2 "$1" | sed -n 's/.*time=\([0-9.]*\) ms.*/\1/p' | median
}
check_range "ping RTT median, IPv4" "$(ping_median "$NETNS_SERVER_ADDR")" 45 65
check_range "ping RTT median, IPv6" "$(ping_median "$NETNS_SERVER_ADDR6")" 45 65

# --- TCP connect and TFO ------------------------------------------------------
port=7000
in_server python3 "$probe" serve "$NETNS_SERVER_ADDR" "$port" >"$work/server.log" 2>&1 &
server=$!
if ! wait_for_line "$work/server.log" '^ready' "$server"; then
	fail "probe server did not start: $(cat "$work/server.log")"
	finish
fi

connect_times=$(for _ in 1 2 3; do in_client python3 "$probe" connect "$NETNS_SERVER_ADDR" "$port"; done)
check_range "TCP connect, median of 3 (1 RTT)" "$(echo "$connect_times" | median)" "$low" "$high"

request() { in_client python3 "$probe" request "$NETNS_SERVER_ADDR" "$port" "$1"; }
check_range "plain TCP request to first reply byte (2 RTT)" "$(request plain)" \
	$((2 * low)) $((2 * high))

active_before=$(counter "$NETNS_CLIENT" TcpExtTCPFastOpenActive)
passive_before=$(counter "$NETNS_SERVER" TcpExtTCPFastOpenPassive)
# The first TFO connection only fetches the server's cookie: data waits for
# the handshake.  Later ones carry the request in the SYN.
check_range "TFO, first connection, cookie request (2 RTT)" "$(request tfo-connect)" \
	$((2 * low)) $((2 * high))
check_range "TFO_CONNECT with cookie: request in the SYN (1 RTT)" "$(request tfo-connect)" "$low" "$high"
check_range "MSG_FASTOPEN with cookie: request in the SYN (1 RTT)" "$(request msg-fastopen)" "$low" "$high"
active=$(($(counter "$NETNS_CLIENT" TcpExtTCPFastOpenActive) - active_before))
passive=$(($(counter "$NETNS_SERVER" TcpExtTCPFastOpenPassive) - passive_before))
if [ "$active" -eq 2 ]; then
	ok "client TcpExtTCPFastOpenActive +2 (SYN data acknowledged)"
else
	fail "client TcpExtTCPFastOpenActive +$active, expected +2"
fi
if [ "$passive" -eq 2 ]; then
	ok "server TcpExtTCPFastOpenPassive +2 (SYN data accepted)"
else
	fail "server TcpExtTCPFastOpenPassive +$passive, expected +2"
fi

# --- teardown -----------------------------------------------------------------
namespaces=("$NETNS_CLIENT" "$NETNS_SERVER")
pids=("${_netns_nfq_pids[@]}" "$server")
netns_down
left=$(ip netns list | grep -wF -e "${namespaces[0]}" -e "${namespaces[1]}")
expect_none "netns_down: namespaces" "$left"
left=$(alive "${pids[@]}")
expect_none "netns_down: nfq_delay and server processes" "$left"

# A shell that is killed while up must tear down too.  The loop of short
# sleeps lets its TERM trap run promptly.
bash -c '
	. "$1/bench/netns.sh"
	netns_up 5 || exit 1
	in_server sleep 300 &
	echo "$NETNS_CLIENT $NETNS_SERVER ${_netns_nfq_pids[*]} $!" >"$2.tmp"
	mv "$2.tmp" "$2"
	while :; do sleep 0.1; done
' child "$root" "$work/child" 2>"$work/child.err" &
child=$!
if wait_for_line "$work/child" . "$child"; then
	read -r -a child_state <"$work/child"
	kill -TERM "$child"
	wait "$child"
	status=$?
	child=
	if [ "$status" -eq 143 ]; then
		ok "SIGTERM: shell ended by the signal"
	else
		fail "SIGTERM: exit status $status, expected 143"
	fi
	left=$(ip netns list | grep -wF -e "${child_state[0]}" -e "${child_state[1]}")
	expect_none "SIGTERM: namespaces" "$left"
	left=$(alive "${child_state[@]:2}")
	expect_none "SIGTERM: nfq_delay and server processes" "$left"
else
	fail "child harness did not come up: $(cat "$work/child.err")"
	kill -TERM "$child" 2>/dev/null
	wait "$child"
	child=
fi

finish
