#!/bin/bash
# An emulated WAN between two network namespaces, for benchmarks and tests.
#
# As a library (bash):
#     . bench/netns.sh
#     netns_up 25                  # 25 ms each way: 50 ms round trip
#     in_server python3 -m http.server --bind "$NETNS_SERVER_ADDR" 8000 &
#     in_client curl "http://$NETNS_SERVER_ADDR:8000/"
#     netns_down                   # also runs by itself on exit, INT, TERM
#
# As a command: the namespaces live as long as COMMAND, which sees the
# NETNS_* variables in its environment:
#     bench/netns.sh [--delay-ms D] COMMAND [ARG...]
#
# Needs root, iproute2, iptables and, where the kernel has no netem qdisc,
# the nfq_delay program (build/bench/nfq_delay, or $NETNS_NFQ_DELAY).
#
# Variables, set by netns_up (those marked * may be set before it):
#   NETNS_CLIENT, NETNS_SERVER             namespace names, unique per process
#   NETNS_CLIENT_DEV, NETNS_SERVER_DEV     the veth ends inside them
#   NETNS_CLIENT_ADDR, NETNS_SERVER_ADDR   10.201.0.1, 10.201.0.2
#   NETNS_CLIENT_ADDR6, NETNS_SERVER_ADDR6 fd00:201::1, fd00:201::2
#   NETNS_DELAY_MS                         one-way delay
#   NETNS_BACKEND                          how the delay is made: netem,
#                                          nfqueue, or none (delay 0)
#   NETNS_FORCE_BACKEND *                  netem or nfqueue; unset: netem
#                                          where the kernel has it
#   NETNS_NFQ_DELAY *                      path of the nfq_delay program
#
# Measure round trips with `ping -U`: the nfqueue backend holds packets on
# ingress, after the kernel stamped their arrival, and plain ping computes
# its times from that stamp, so it would see only the outbound delay.
#
# Teardown kills every process still inside the two namespaces: a process
# keeps its namespace alive after the name is deleted, and a server left
# behind would hold its port and the veth pair.
#
# The traps run only when the shell gets control back: a long foreground
# command in the caller delays them (Ctrl-C reaches that command too, so it
# ends first; for TERM, run long waits as `cmd & wait $!`).  A caller that
# needs its own EXIT trap must set it after netns_up and call netns_down
# from it.

NETNS_CLIENT_ADDR=10.201.0.1
NETNS_SERVER_ADDR=10.201.0.2
NETNS_CLIENT_ADDR6=fd00:201::1
NETNS_SERVER_ADDR6=fd00:201::2
NETNS_CLIENT_DEV=veth-cli
NETNS_SERVER_DEV=veth-srv
NETNS_CLIENT=
NETNS_SERVER=
NETNS_DELAY_MS=
NETNS_BACKEND=
NETNS_NFQ_DELAY=${NETNS_NFQ_DELAY:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/build/bench/nfq_delay}

# The nfq_delay processes and the directory holding their logs.
_netns_nfq_pids=()
_netns_dir=

_netns_say() { echo "netns: $*" >&2; }

in_client() { ip netns exec "$NETNS_CLIENT" "$@"; }
in_server() { ip netns exec "$NETNS_SERVER" "$@"; }

# _netns_stop PID...: TERM, up to 2 s of grace, then KILL.
_netns_stop() {
	local pid tries
	for pid in "$@"; do kill -TERM "$pid" 2>/dev/null || true; done
	for pid in "$@"; do
		tries=20
		while kill -0 "$pid" 2>/dev/null && [ "$tries" -gt 0 ]; do
			sleep 0.1
			tries=$((tries - 1))
		done
		kill -KILL "$pid" 2>/dev/null || true
		# Reap our own children; other processes are not ours to wait for.
		wait "$pid" 2>/dev/null || true
	done
	return 0
}

# netns_down: undo netns_up, as far as it got.  Safe to call repeatedly,
# and under `set -eu`.
netns_down() {
	local ns pids
	if [ "${#_netns_nfq_pids[@]}" -gt 0 ]; then
		_netns_stop "${_netns_nfq_pids[@]}"
		_netns_nfq_pids=()
	fi
	for ns in "$NETNS_CLIENT" "$NETNS_SERVER"; do
		if [ -z "$ns" ] || [ ! -e "/run/netns/$ns" ]; then continue; fi
		pids=$(ip netns pids "$ns" 2>/dev/null)
		# shellcheck disable=SC2086 # one PID per word
		[ -n "$pids" ] && _netns_stop $pids
		# Deleting the namespace deletes the veth pair with it.
		ip netns del "$ns" 2>/dev/null || true
	done
	NETNS_CLIENT=
	NETNS_SERVER=
	[ -n "$_netns_dir" ] && rm -rf "$_netns_dir"
	_netns_dir=
	return 0
}

# _netns_on_signal SIGNAL: tear down and exit as the shell would have on
# SIGNAL, through exit rather than the signal itself, so that the EXIT trap
# (a caller's cleanup) still runs.
_netns_on_signal() {
	netns_down
	exit $((128 + $(kill -l "$1")))
}

# _netns_start_nfq_delay NS QUEUE DEV: delay packets arriving on DEV in NS.
#
# The queue sits on ingress (raw PREROUTING), not on egress: a packet held
# on its way out still counts against the sending socket's TCP Small Queues
# budget until it leaves, so a sender stalls after a few packets (measured
# here: 0.3 MB/s instead of 51 MB/s at 50 ms RTT).  IP input has already
# detached the sender's socket when PREROUTING runs.
_netns_start_nfq_delay() {
	local ns=$1 queue=$2 dev=$3 log=$_netns_dir/nfq_delay-$1.log pid tries=50 ipt
	ip netns exec "$ns" "$NETNS_NFQ_DELAY" --queue "$queue" --delay-ms "$NETNS_DELAY_MS" \
		>"$log" 2>&1 &
	pid=$!
	_netns_nfq_pids+=("$pid")
	# Bind first, rule second: a queue with no program bound drops packets.
	until grep -q '^nfq_delay: queue' "$log"; do
		if ! kill -0 "$pid" 2>/dev/null || [ "$tries" -eq 0 ]; then
			_netns_say "nfq_delay did not start in $ns:"
			sed 's/^/  /' "$log" >&2
			return 1
		fi
		sleep 0.1
		tries=$((tries - 1))
	done
	for ipt in iptables ip6tables; do
		ip netns exec "$ns" "$ipt" -t raw -A PREROUTING -i "$dev" \
			-j NFQUEUE --queue-num "$queue" || return 1
	done
}

# _netns_address NS DEV ADDR ADDR6
_netns_address() {
	ip -n "$1" link set lo up &&
		ip -n "$1" addr add "$3/24" dev "$2" &&
		ip -n "$1" addr add "$4/64" dev "$2" nodad &&
		ip -n "$1" link set "$2" up &&
		ip netns exec "$1" sysctl -qw net.ipv4.tcp_fastopen=3
}

# _netns_pin_peer NS DEV PEER_NS PEER_DEV PEER_ADDR PEER_ADDR6
#
# Fixed neighbour entries: no ARP or neighbour discovery exchange (which
# the NFQUEUE path would not delay) lands inside a first measurement.
_netns_pin_peer() {
	local mac
	mac=$(ip -n "$3" -br link show dev "$4" | awk '{print $3}')
	[ -n "$mac" ] &&
		ip -n "$1" neigh replace "$5" lladdr "$mac" dev "$2" nud permanent &&
		ip -n "$1" neigh replace "$6" lladdr "$mac" dev "$2" nud permanent
}

# _netns_netem_works: try netem on the client's end; leaves it in place.
_netns_netem_works() {
	tc -n "$NETNS_CLIENT" qdisc add dev "$NETNS_CLIENT_DEV" root \
		netem delay "${NETNS_DELAY_MS}ms" limit 100000 2>/dev/null
}

# netns_up [D]: build the namespaces with D ms of delay each way (default 25).
netns_up() {
	local delay=${1:-25}
	case $delay in
	'' | *[!0-9]*) _netns_say "netns_up: delay must be whole milliseconds, got '$delay'"; return 1 ;;
	esac
	case ${NETNS_FORCE_BACKEND:-} in
	'' | netem | nfqueue) ;;
	*) _netns_say "NETNS_FORCE_BACKEND must be netem or nfqueue, not '$NETNS_FORCE_BACKEND'"; return 1 ;;
	esac
	if [ -n "$NETNS_CLIENT" ]; then
		_netns_say "netns_up: already up ($NETNS_CLIENT, $NETNS_SERVER)"
		return 1
	fi
	NETNS_DELAY_MS=$delay
	NETNS_CLIENT=ns-cli-$BASHPID
	NETNS_SERVER=ns-srv-$BASHPID
	trap netns_down EXIT
	trap '_netns_on_signal INT' INT
	trap '_netns_on_signal TERM' TERM
	if ! _netns_build; then
		_netns_say "netns_up failed; tearing down"
		netns_down
		return 1
	fi
}

_netns_build() {
	_netns_dir=$(mktemp -d /tmp/netns.XXXXXX) || return 1
	ip netns add "$NETNS_CLIENT" && ip netns add "$NETNS_SERVER" || return 1
	ip link add "$NETNS_CLIENT_DEV" netns "$NETNS_CLIENT" type veth \
		peer name "$NETNS_SERVER_DEV" netns "$NETNS_SERVER" || return 1
	_netns_address "$NETNS_CLIENT" "$NETNS_CLIENT_DEV" "$NETNS_CLIENT_ADDR" "$NETNS_CLIENT_ADDR6" &&
		_netns_address "$NETNS_SERVER" "$NETNS_SERVER_DEV" "$NETNS_SERVER_ADDR" "$NETNS_SERVER_ADDR6" &&
		_netns_pin_peer "$NETNS_CLIENT" "$NETNS_CLIENT_DEV" "$NETNS_SERVER" "$NETNS_SERVER_DEV" \
			"$NETNS_SERVER_ADDR" "$NETNS_SERVER_ADDR6" &&
		_netns_pin_peer "$NETNS_SERVER" "$NETNS_SERVER_DEV" "$NETNS_CLIENT" "$NETNS_CLIENT_DEV" \
			"$NETNS_CLIENT_ADDR" "$NETNS_CLIENT_ADDR6" || return 1

	if [ "$NETNS_DELAY_MS" -eq 0 ]; then
		NETNS_BACKEND=none
	elif [ "${NETNS_FORCE_BACKEND:-}" = nfqueue ]; then
		NETNS_BACKEND=nfqueue
	elif _netns_netem_works; then
		NETNS_BACKEND=netem
	elif [ "${NETNS_FORCE_BACKEND:-}" = netem ]; then
		_netns_say "netem was asked for, and this kernel has no netem qdisc"
		return 1
	else
		NETNS_BACKEND=nfqueue
	fi
	case $NETNS_BACKEND in
	none) ;;
	netem)
		tc -n "$NETNS_SERVER" qdisc add dev "$NETNS_SERVER_DEV" root \
			netem delay "${NETNS_DELAY_MS}ms" limit 100000 || return 1
		;;
	nfqueue)
		if [ ! -x "$NETNS_NFQ_DELAY" ]; then
			_netns_say "nfq_delay not found at $NETNS_NFQ_DELAY (make build/bench/nfq_delay)"
			return 1
		fi
		_netns_start_nfq_delay "$NETNS_CLIENT" 1 "$NETNS_CLIENT_DEV" &&
			_netns_start_nfq_delay "$NETNS_SERVER" 2 "$NETNS_SERVER_DEV" || return 1
		;;
	esac
	_netns_say "up: $NETNS_CLIENT ($NETNS_CLIENT_ADDR) <-> $NETNS_SERVER ($NETNS_SERVER_ADDR)," \
		"${NETNS_DELAY_MS} ms each way ($NETNS_BACKEND)"
}

# Run as a command rather than sourced.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
	netns_delay=25
	case ${1:-} in
	--delay-ms) netns_delay=${2:?--delay-ms needs a value}; shift 2 ;;
	--delay-ms=*) netns_delay=${1#*=}; shift ;;
	esac
	if [ $# -eq 0 ]; then
		echo "usage: $0 [--delay-ms D] COMMAND [ARG...]" >&2
		exit 2
	fi
	netns_up "$netns_delay" || exit 1
	export NETNS_CLIENT NETNS_SERVER NETNS_CLIENT_DEV NETNS_SERVER_DEV NETNS_CLIENT_ADDR \
		NETNS_SERVER_ADDR NETNS_CLIENT_ADDR6 NETNS_SERVER_ADDR6 NETNS_DELAY_MS NETNS_BACKEND
	"$@"
	netns_status=$?
	netns_down
	exit "$netns_status"
fi
