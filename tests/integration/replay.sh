#!/bin/bash
# Replay protection of the accept shim beyond one process: a recorded
# first flight is refused after a restart with the same key, by a second
# server started on its own with the same key, and by a second "host"
# (its own window file) sharing a redis-server with the first.  The store
# is killed mid-run: data-carrying first flights are refused with one
# error line, empty ones accepted; restarted, all is back to normal.  Also:
# a corrupt window file is rebuilt and said so, misconfiguration refuses
# to serve, what a refused flight gets back (amplification, also counted on
# the wire between two network namespaces), and that the
# listener does not turn on cookie-less TCP Fast Open.
#
#   tests/integration/replay.sh BUILD_DIR
set -u

if [ $# -ne 1 ] || ! build=$(cd "$1" 2>/dev/null && pwd); then
	echo "usage: $0 BUILD_DIR" >&2
	exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/integration/replay_common.sh
. "$here/replay_common.sh"
PATH=$PATH:/usr/sbin
for program in redis-server redis-cli; do
	if ! command -v "$program" >/dev/null; then
		echo "$0: $program is not installed" >&2
		exit 2
	fi
done

read -r port_a port_b port_host1 port_host2 port_redis port_misc < <(free_ports 6)
cache=$work/cache
for port in "$port_host1" "$port_host2"; do
	"$cli" nodeurl --key "$work/server.key" --addr "127.0.0.1:$port" --tfo >>"$cache"
done
client_env=(env LD_PRELOAD="${asan_runtime:+$asan_runtime }$client_shim" NOISESHIM_CACHE="$cache"
	"${sanitizer_env[@]}")

# start_echo NAME PORT ENV...: an echo server under the accept shim; sets $started_pid.
start_echo() {
	local name=$1 port=$2
	shift 2
	start_background "$work/$name.out" "${server_env[@]}" NOISESHIM_LISTEN="$port" \
		NOISESHIM_LOG=warn NOISESHIM_LOG_FILE="$work/$name.log" "$@" \
		"$python" "$here/echo_server.py" --port "$port" --model threads \
		--log "$work/payloads.log"
	if ! wait_listening "$port" "$started_pid"; then
		fail "$name-start" "the echo server did not start: $(tail_of "$work/$name.out")"
		return 1
	fi
}

# flight NAME: a new first flight carrying a marker ($work/NAME.marker), in $work/NAME.bin.
flight() {
	printf 'marker-%s-%s' "$1" "$(random_hex 8)" >"$work/$1.marker"
	"$flood_peer" flight --remote-pub "$server_pub_hex" --payload "$(cat "$work/$1.marker")" \
		--out "$work/$1.bin"
}

# send NAME PORT: what the server on PORT answers to flight NAME.
send() {
	timeout 30 "$flood_peer" send --connect "127.0.0.1:$2" --from 127.0.0.1 \
		--remote-pub "$server_pub_hex" --flight "$work/$1.bin" 2>&1
}

# expect CHECK NAME PORT accepted|refused
expect() {
	local out
	out=$(send "$2" "$3")
	case $4:$out in
	accepted:"reply 0 "*) fail "$1" "expected an answer, got \"$out\"" ;;
	accepted:"reply "*) pass "$1" ;;
	refused:"reply 0 closed") pass "$1" ;;
	*) fail "$1" "expected the flight $4, got \"$out\"" ;;
	esac
}

# delivered NAME: how many times the program was handed flight NAME's marker.
delivered() {
	grep -a -o -F "$(cat "$work/$1.marker")" "$work/payloads.log" 2>/dev/null | wc -l
}

# --- restart, and a second process with the same key -------------------------

test_restart_and_second_process() {
	local env=(NOISESHIM_REPLAY_FILE="$work/host1.map")
	start_echo first "$port_a" "${env[@]}" || return
	local first=$started_pid
	flight restart && flight second-process && flight reverse && flight after-restart || {
		fail flights "flood_peer could not build first flights"
		return
	}
	expect restart-fresh-accepted restart "$port_a" accepted
	stop_process "$first"
	start_echo restarted "$port_a" "${env[@]}" || return
	local restarted=$started_pid
	expect restart-replay-refused restart "$port_a" refused
	expect restart-fresh-still-accepted after-restart "$port_a" accepted
	if [ "$(delivered restart)" -eq 1 ]; then
		pass restart-delivered-once
	else
		fail restart-delivered-once "the program got the 0-RTT data $(delivered restart) times"
	fi
	if grep -q "replayed first flight refused" "$work/restarted.log"; then
		pass restart-refusal-logged
	else
		fail restart-refusal-logged "no refusal in the log: $(tail_of "$work/restarted.log")"
	fi

	start_echo second "$port_b" "${env[@]}" || return
	expect second-process-fresh-accepted second-process "$port_a" accepted
	expect second-process-replay-refused second-process "$port_b" refused
	expect second-process-other-way-accepted reverse "$port_b" accepted
	expect second-process-other-way-refused reverse "$port_a" refused
	if [ "$(stat -c %a "$work/host1.map")" = 600 ]; then
		pass window-file-private
	else
		fail window-file-private "mode $(stat -c %a "$work/host1.map")"
	fi
	stop_process "$started_pid"
	stop_process "$restarted"
	check_sanitizer_reports restart
}

# --- the default file, named by the key ----------------------------------------

test_default_path() {
	local id file
	id=$("$python" -c 'import hashlib, sys
print(hashlib.blake2b(bytes.fromhex(sys.argv[1]), digest_size=16).hexdigest())' "$server_pub_hex")
	file=/run/noiseshim/replay-$id.map
	# A window this test makes there is removed at exit; one that was there is left alone.
	[ -e "$file" ] || made_default_windows+=("$file")
	start_echo default "$port_misc" || return
	local pid=$started_pid
	flight default || return
	expect default-path-fresh-accepted default "$port_misc" accepted
	expect default-path-replay-refused default "$port_misc" refused
	if [ -f "$file" ] && [ "$(stat -c %a /run/noiseshim)" = 700 ]; then
		pass default-path-named-by-key
	else
		fail default-path-named-by-key "no $file, or /run/noiseshim is not 0700"
	fi
	stop_process "$pid"
}

# --- a corrupt file, and configurations that must refuse to serve ---------------

test_corrupt_file_rebuilt() {
	head -c 8192 /dev/urandom >"$work/corrupt.map"
	start_echo corrupt "$port_misc" NOISESHIM_REPLAY_FILE="$work/corrupt.map" || return
	local pid=$started_pid lines
	flight corrupt || return
	expect corrupt-file-serves corrupt "$port_misc" accepted
	expect corrupt-file-then-refuses corrupt "$port_misc" refused
	lines=$(grep -c "error: replay window $work/corrupt.map: .*rebuilt" "$work/corrupt.log")
	if [ "$lines" -eq 1 ]; then
		pass corrupt-file-rebuilt-logged-once
		note "$(grep -m 1 rebuilt "$work/corrupt.log")"
	else
		fail corrupt-file-rebuilt-logged-once "$lines lines: $(tail_of "$work/corrupt.log")"
	fi
	stop_process "$pid"
}

# refuses_to_serve NAME EXPECTED_LOG ENV...: listen() fails with EACCES and the log says why.
refuses_to_serve() {
	local name=$1 expected=$2 out
	shift 2
	out=$(timeout 20 "${server_env[@]}" "$@" NOISESHIM_LISTEN="$port_misc" \
		NOISESHIM_LOG_FILE="$work/$name.log" "$python" -c '
import socket, sys
s = socket.socket()
s.bind(("127.0.0.1", int(sys.argv[1])))
try:
    s.listen()
    print("listening")
except OSError as e:
    print("refused", e.errno)' "$port_misc" 2>&1)
	if [ "$out" = "refused 13" ] && grep -q "error: .*listening refused: .*$expected" "$work/$name.log"; then
		pass "$name"
		note "$(grep -m 1 "listening refused" "$work/$name.log")"
	else
		fail "$name" "listen gave \"$out\"; log: $(tail_of "$work/$name.log")"
	fi
}

test_misconfiguration() {
	refuses_to_serve bad-store-url-refused "NOISESHIM_REPLAY_STORE" \
		NOISESHIM_REPLAY_STORE="redis:/127.0.0.1:6379"
	refuses_to_serve store-url-with-path-refused "NOISESHIM_REPLAY_STORE" \
		NOISESHIM_REPLAY_STORE="redis://127.0.0.1:6379/0"
	refuses_to_serve unusable-file-refused "NOISESHIM_REPLAY_FILE" \
		NOISESHIM_REPLAY_FILE="$work/no-such-dir/window.map"
}

# --- two hosts sharing a redis-server ----------------------------------------

start_redis() {
	start_background "$work/redis.log" redis-server --port "$port_redis" --bind 127.0.0.1 \
		--save '' --appendonly no
	redis_pid=$started_pid
	wait_listening "$port_redis" "$redis_pid"
}

redis_keys() {
	redis-cli -p "$port_redis" --scan --pattern 'noiseshim:replay:*' 2>/dev/null | wc -l
}

# An empty first flight (0-RTT off) through the client shim, echoed: "ok once".
empty_flight_to() {
	timeout 30 "${client_env[@]}" NOISESHIM_0RTT=off "$python" "$here/wrapped_client.py" once \
		--port "$1" --payload "empty-first-$(random_hex 4)" 2>&1
}

test_fleet_through_redis() {
	local store=NOISESHIM_REPLAY_STORE=redis://127.0.0.1:$port_redis host1 host2 keys out lines ttl
	start_redis || { fail redis-start "redis-server did not start: $(tail_of "$work/redis.log")"; return; }
	start_echo host1 "$port_host1" NOISESHIM_REPLAY_FILE="$work/fleet-host1.map" "$store" || return
	host1=$started_pid
	start_echo host2 "$port_host2" NOISESHIM_REPLAY_FILE="$work/fleet-host2.map" "$store" || return
	host2=$started_pid
	for name in fleet outage-1 outage-2 back; do
		flight "$name" || return
	done

	expect fleet-fresh-accepted fleet "$port_host1" accepted
	expect fleet-other-host-refuses fleet "$port_host2" refused
	ttl=$(redis-cli -p "$port_redis" --scan --pattern 'noiseshim:replay:*' | head -n 1 |
		xargs -r redis-cli -p "$port_redis" pttl)
	if [ "$(redis_keys)" -eq 1 ] && [ "${ttl:-0}" -gt 0 ] && [ "$ttl" -le 600000 ]; then
		pass fleet-one-key-with-expiry
	else
		fail fleet-one-key-with-expiry "$(redis_keys) keys, PTTL ${ttl:-none}"
	fi
	keys=$(redis_keys)
	out=$(empty_flight_to "$port_host1")
	if [ "$out" = "ok once" ] && [ "$(redis_keys)" -eq "$keys" ]; then
		pass fleet-empty-flight-skips-store
	else
		fail fleet-empty-flight-skips-store "\"$out\", keys $keys -> $(redis_keys)"
	fi

	# SIGKILL, so that the store vanishes mid-conversation; the shell's notice of it is not ours.
	stop_process "$redis_pid" KILL 2>/dev/null
	expect outage-data-refused outage-1 "$port_host1" refused
	expect outage-data-refused-again outage-2 "$port_host1" refused
	out=$(empty_flight_to "$port_host1")
	if [ "$out" = "ok once" ]; then
		pass outage-empty-flight-accepted
	else
		fail outage-empty-flight-accepted "$out"
	fi
	lines=$(grep -c "error: replay store .* unreachable" "$work/host1.log")
	if [ "$lines" -eq 1 ]; then
		pass outage-one-error-line
		note "$(grep -m 1 unreachable "$work/host1.log")"
	else
		fail outage-one-error-line "$lines lines: $(tail_of "$work/host1.log")"
	fi
	if [ "$(delivered fleet)" -eq 1 ] && [ "$(delivered outage-1)" -eq 0 ] &&
		[ "$(delivered outage-2)" -eq 0 ]; then
		pass outage-data-never-delivered
	else
		fail outage-data-never-delivered "the program got 0-RTT data during the outage"
	fi

	start_redis || { fail redis-restart "redis-server did not start again"; return; }
	# The shim waits a moment after a failure before trying the store again.
	sleep 1
	expect store-back-accepted back "$port_host1" accepted
	expect store-back-other-host-refuses back "$port_host2" refused
	if [ "$(grep -c "reachable again" "$work/host1.log")" -eq 1 ]; then
		pass store-back-logged-once
	else
		fail store-back-logged-once "$(tail_of "$work/host1.log")"
	fi
	stop_process "$host1"
	stop_process "$host2"
	test_store_after_fork "$store"
	stop_process "$redis_pid"
	check_sanitizer_reports fleet
}

redis_connections_received() {
	redis-cli -p "$port_redis" info stats | awk -F: '$1 == "total_connections_received" { print $2 + 0 }'
}

# A process that used the store, then forks children that serve a flight
# each, then serves one more itself: every child must open its own
# connection (sharing the parent's would mix up replies), and the parent's
# must survive its children closing their copies.
test_store_after_fork() {
	local before pid after
	before=$(redis_connections_received)
	start_background "$work/fork-server.out" "${server_env[@]}" NOISESHIM_LISTEN="$port_misc" \
		NOISESHIM_LOG=warn NOISESHIM_LOG_FILE="$work/fork-server.log" \
		NOISESHIM_REPLAY_FILE="$work/fork.map" "$1" "$python" -c '
import os, socket, sys
s = socket.create_server(("127.0.0.1", int(sys.argv[1])))
def serve_one():
    c, _ = s.accept()
    try:
        data = c.recv(65536)
        if data:
            c.sendall(data)
    except OSError:
        pass
    c.close()
serve_one()
for _ in range(2):
    pid = os.fork()
    if pid == 0:
        serve_one()
        os._exit(0)
    os.waitpid(pid, 0)
serve_one()' "$port_misc"
	pid=$started_pid
	wait_listening "$port_misc" "$pid" || { fail store-after-fork "the server did not start"; return; }
	for i in 1 2 3 4; do
		flight "fork-$i" || return
		expect "store-after-fork-$i-accepted" "fork-$i" "$port_misc" accepted
	done
	stop_process "$pid"
	# The count includes the redis-cli connection that asks for it.
	after=$(($(redis_connections_received) - 1))
	if [ $((after - before)) -eq 3 ]; then
		pass store-connection-per-process
	else
		fail store-connection-per-process "$((after - before)) connections to the store for a parent and two children"
	fi
}

# --- what a refused first flight gets back; no cookie-less TFO ---------------

test_amplification() {
	local out bytes
	start_echo amplification "$port_misc" NOISESHIM_REPLAY_FILE="$work/amplification.map" || return
	local pid=$started_pid
	flight amplification || return
	send amplification "$port_misc" >/dev/null
	out=$(send amplification "$port_misc")
	bytes=$(stat -c %s "$work/amplification.bin")
	if [ "$out" = "reply 0 closed" ]; then
		pass replayed-flight-gets-nothing
		note "a replayed first flight of $bytes bytes got 0 bytes of payload back, then a close"
	else
		fail replayed-flight-gets-nothing "got \"$out\""
	fi
	stop_process "$pid"
	# TCP_FASTOPEN is 23, TCP_FASTOPEN_NO_COOKIE 34 in linux/tcp.h.
	out=$(timeout 20 "${server_env[@]}" NOISESHIM_LISTEN="$port_misc" \
		NOISESHIM_REPLAY_FILE="$work/amplification.map" "$python" -c '
import socket, sys
s = socket.socket()
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen()
print(s.getsockopt(socket.IPPROTO_TCP, 23), s.getsockopt(socket.IPPROTO_TCP, 34))' "$port_misc" 2>&1)
	if [ "${out#* }" = 0 ] && [ "${out% *}" -gt 0 ] 2>/dev/null; then
		pass listener-keeps-tfo-cookies
	else
		fail listener-keeps-tfo-cookies "TCP_FASTOPEN, TCP_FASTOPEN_NO_COOKIE on the listener: $out"
	fi
	note "net.ipv4.tcp_fastopen = $(cat /proc/sys/net/ipv4/tcp_fastopen)"
}

# "SEGMENTS OCTETS": TCP segments and IPv4 bytes the namespace has sent.
sent_by_namespace() {
	ip netns exec "$1" awk '
		$1 == "Tcp:" && !tcp_names { for (i = 2; i <= NF; i++) tcp[$i] = i; tcp_names = 1; next }
		$1 == "Tcp:" { segs = $tcp["OutSegs"] }
		$1 == "IpExt:" && !ip_names { for (i = 2; i <= NF; i++) ip[$i] = i; ip_names = 1; next }
		$1 == "IpExt:" { octets = $ip["OutOctets"] }
		END { print segs, octets }' /proc/net/snmp /proc/net/netstat
}

# Between two namespaces, nothing else on the wire: every byte either side
# sends for one replayed first flight, headers included, counted by the kernel.
test_amplification_on_the_wire() (
	# shellcheck source=bench/netns.sh
	. "$here/../../bench/netns.sh"
	netns_up 0 2>"$work/netns.log" || {
		fail replay-wire-bytes "no network namespaces: $(tail_of "$work/netns.log")"
		exit 1
	}
	local port=7700 server client_before client_after server_before server_after out
	ip netns exec "$NETNS_SERVER" "${server_env[@]}" NOISESHIM_LISTEN="$port" \
		NOISESHIM_REPLAY_FILE="$work/wire.map" "$python" -c '
import socket, sys
s = socket.create_server((sys.argv[1], int(sys.argv[2])))
while True:
    c, _ = s.accept()
    try:
        data = c.recv(65536)
        if data:
            c.sendall(data)
    except OSError:
        pass
    c.close()' "$NETNS_SERVER_ADDR" "$port" >"$work/wire-server.log" 2>&1 &
	server=$!
	for _ in $(seq 100); do
		ip netns exec "$NETNS_SERVER" ss -Hltn "sport = :$port" | grep -q . && break
		sleep 0.1
	done
	flight wire || exit 1
	wire_send() {
		timeout 30 ip netns exec "$NETNS_CLIENT" "$flood_peer" send \
			--connect "$NETNS_SERVER_ADDR:$port" --from "$NETNS_CLIENT_ADDR" \
			--remote-pub "$server_pub_hex" --flight "$work/wire.bin" 2>&1
	}
	out=$(wire_send)
	case $out in "reply 0 "*|"") fail replay-wire-fresh-accepted "got \"$out\""; exit 1 ;; esac
	sleep 0.3
	read -r client_before_segs client_before < <(sent_by_namespace "$NETNS_CLIENT")
	read -r server_before_segs server_before < <(sent_by_namespace "$NETNS_SERVER")
	out=$(wire_send)
	# Let the closing segments of both sides go out.
	sleep 0.5
	read -r client_after_segs client_after < <(sent_by_namespace "$NETNS_CLIENT")
	read -r server_after_segs server_after < <(sent_by_namespace "$NETNS_SERVER")
	local from_server=$((server_after - server_before)) from_client=$((client_after - client_before))
	note "replayed flight on the wire: client sent $((client_after_segs - client_before_segs)) segments," \
		"$from_client bytes; server sent $((server_after_segs - server_before_segs)) segments," \
		"$from_server bytes (IPv4, headers included); the client got \"$out\""
	if [ "$out" = "reply 0 closed" ] && [ "$from_server" -gt 0 ] && [ "$from_server" -le "$from_client" ]; then
		pass replay-wire-no-amplification
	else
		fail replay-wire-no-amplification "server sent $from_server bytes for $from_client; client got \"$out\""
	fi
	kill "$server" 2>/dev/null
	wait "$server" 2>/dev/null
	echo "$passed $failed" >"$work/wire.result"
)

test_restart_and_second_process
test_default_path
test_corrupt_file_rebuilt
test_misconfiguration
test_fleet_through_redis
test_amplification
test_amplification_on_the_wire
if [ -f "$work/wire.result" ]; then
	read -r passed failed <"$work/wire.result"
else
	fail replay-wire "the namespace test ended early; see $work/netns.log"
fi
summary
