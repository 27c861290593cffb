#!/bin/bash
# The first flight (DESIGN §4.3, §4.4): what a client's first writes turn
# into, and how its waits for the server's handshake end.
#
#   tests/integration/firstflight.sh [--part all|local|wan] BUILD_DIR
#
# local: on loopback, in a private network namespace of its own (so that
#   TCP Fast Open can be on for both ends, net.ipv4.tcp_fastopen=3, and
#   loopback can have an Ethernet MTU and a 10 ms round trip, without
#   touching the machine's):
#   - non-blocking first writes of 1,500 B, 4 KB and 60 KB into a 4 KB
#     send buffer, poll-driven, TFO on and off, against gopeer (the
#     independent Go responder) and against the accept shim: every byte
#     echoed back, no busy loop;
#   - curl --data-binary POSTs of 4 KB and 64 KB bodies through both
#     shims, answered with the body's SHA-256;
#   - msg2 held for the answer (a 3 s quiet time): a server that answers
#     the request from msg1 at once has the answer ride in msg2, not
#     behind an empty one; a server that waits in poll for the rest of
#     its request sends msg2 at once, empty;
#   - a cached server that never answers, with
#     NOISESHIM_HANDSHAKE_TIMEOUT_MS=1000: a blocking read, a blocking
#     write loop, a poll() caller and an epoll() caller all get ETIMEDOUT
#     within the deadline plus 1 s, not before it, without spinning;
#   - a server that sends a plausible msg2 one byte a second, with a
#     2000 ms deadline: the same callers get ETIMEDOUT within 3 s;
#   - a reply of 44 bytes that cannot start a msg2: non-blocking callers
#     are woken with EPROTO or ECONNRESET within 1 s, never the bytes;
#   - non-blocking writers that write past what the shim holds before the
#     handshake, waiting for writability in poll, select and epoll: the
#     wait sleeps until the deadline fails the connection, without
#     spinning on a writability the shim would answer with EAGAIN;
#   - a non-blocking program that writes, pauses, writes again and closes
#     at once: close() returns at once, as the kernel's does, and every
#     byte reaches the server (or, for a server that never answers,
#     close() still returns at once);
#   - msg2 as gopeer (--report-msg2) sees it, after a 100-byte request in
#     msg1, with the accept shim's quiet time (NOISESHIM_FIRST_FLIGHT_US)
#     at its default and at 100 ms: an echo, threaded or in a selector,
#     has its answer ride in msg2, which leaves as the program writes it,
#     not when the quiet time runs out; a server that answers 500 ms later
#     gets an empty msg2 when the quiet time runs out, and its answer after
#     it; an empty msg1 gets msg2 at once.
# wan: two namespaces 50 ms apart (bench/netns.sh), TFO on both sides:
#   - each request shape of ff_client (one write; write, write; MSG_MORE;
#     TCP_CORK) and an http.client POST, median of 5 fresh connections,
#     through the shims with Noise_IK and with NOISESHIM_TRANSPORT=tcp
#     (TCP+TFO): Noise answers in about 1 RTT (< 1.5), while TCP+TFO needs
#     about 2 RTT (> 1.5) for every two-write shape: the win is real.  The
#     servers set TCP_NODELAY, as Go's do; one more row has a server that
#     leaves Nagle on, whose answer must not wait behind msg2's ACK;
#   - asyncio (a non-blocking socket in epoll) writing twice then reading:
#     1 RTT for one connection; 20 connections at once finish within
#     2.5 RTT in all: not one after another;
#   - what holding a first flight must not do: delay a single write, or
#     put data into msg1 under NOISESHIM_0RTT=off;
#   - MSG_EOR on the last write sends the first flight at once;
#   - the non-blocking first writes of the local part, over 50 ms.
#
# Prints "ok NAME" or "FAIL NAME: reason" per check, then
# "firstflight: N passed, M failed"; exits non-zero if any check failed.
# Needs root (namespaces).  Takes about 30 s when the checks pass.
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

part=all
if [ "${1:-}" = --part ]; then
	part=${2:-}
	shift 2
fi
if [ $# -ne 1 ] || ! case $part in all | local | wan) true ;; *) false ;; esac then
	echo "usage: $0 [--part all|local|wan] BUILD_DIR" >&2
	exit 2
fi
build=$(cd "$1" && pwd) || exit 2
cli=$build/noiseshim
ff_client=$build/tests/ff_client
gopeer=$build/tests/gopeer
hostile_peer=$build/tests/hostile_peer
ff_server=$here/ff_server.py
ff_pyclient=$here/ff_pyclient.py
server_priv=0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20
# Its public key in hex, for gopeer.
server_pub_hex=07a37cbc142093c8b755dc1b10e86cb426374ad16aa853ed0bdfc0b2b86d1c7c

# all: each part in turn, the count over both.
if [ "$part" = all ]; then
	out=$(mktemp) || exit 1
	trap 'rm -f "$out"' EXIT
	for p in local wan; do
		"$0" --part "$p" "$build" | tee "$out.part"
		rc=${PIPESTATUS[0]}
		if [ "$rc" -ne 0 ] && ! grep -q "^FAIL" "$out.part"; then
			echo "FAIL part $p: exited with status $rc and no failed check" | tee -a "$out.part"
		fi
		cat "$out.part" >>"$out"
	done
	rm -f "$out.part"
	passed=$(grep -c '^ok ' "$out") failed=$(grep -c '^FAIL ' "$out")
	echo "firstflight: $passed passed, $failed failed"
	[ "$failed" -eq 0 ]
	exit
fi

# The local part re-runs itself in a network namespace of its own.
if [ "$part" = local ] && [ -z "${FF_PRIVATE_NET:-}" ]; then
	exec env FF_PRIVATE_NET=1 unshare --net -- "$0" --part local "$build"
fi

for program in "$cli" "$ff_client" "$hostile_peer" "$build/libnoiseshim.so" "$build/libnoiseshim-server.so"; do
	[ -e "$program" ] || { echo "firstflight.sh: $program is missing (make first)" >&2; exit 2; }
done

passed=0 failed=0
ok() { passed=$((passed + 1)); echo "ok $*"; }
fail() { failed=$((failed + 1)); echo "FAIL $1: $2"; }
finish() {
	echo "firstflight ($part): $passed passed, $failed failed"
	[ "$failed" -eq 0 ]
	exit
}

# A sanitizer build links libasan into the shims; programs built without it
# need the runtime loaded first.  Their own leaks are not under test.
asan_runtime=$(ldd "$build/libnoiseshim.so" 2>/dev/null | awk '$1 ~ /^libasan\.so/ { print $3; exit }')
client_shim="${asan_runtime:+$asan_runtime }$build/libnoiseshim.so"
server_shim="${asan_runtime:+$asan_runtime }$build/libnoiseshim-server.so"
unset LD_PRELOAD NOISESHIM_CACHE NOISESHIM_TRANSPORT NOISESHIM_TFO NOISESHIM_HANDSHAKE_TIMEOUT_MS \
	NOISESHIM_FIRST_FLIGHT_US

work=$(mktemp -d) || exit 1
# The servers' replay window and the shims' counters files stay in the work
# directory rather than in /run/noiseshim, so that a run leaves nothing behind.
export NOISESHIM_REPLAY_FILE=$work/replay.map NOISESHIM_STATS_DIR=$work/stats
pids=()
umask 077
printf '%s\n' "$server_priv" >"$work/server.key"
cache=$work/cache
: >"$cache"

# as_client [VAR=VALUE...] COMMAND...: COMMAND under the client shim, in
# the client's namespace (client_netns, when the wan part has one).
client_netns=()
as_client() {
	"${client_netns[@]}" timeout 30 env LD_PRELOAD="$client_shim" ASAN_OPTIONS=detect_leaks=0 \
		NOISESHIM_CACHE="$cache" NOISESHIM_LOG_FILE="$work/client-shim.log" "$@"
}

# start_listener NAME READY_PATTERN COMMAND...: start a server in the
# background and wait for its log to match READY_PATTERN.
start_listener() {
	local name=$1 pattern=$2 log=$work/$1.log
	shift 2
	: >"$log"
	"$@" >"$log" 2>&1 &
	pids+=($!)
	for _ in $(seq 100); do
		grep -q "$pattern" "$log" && return 0
		kill -0 "${pids[-1]}" 2>/dev/null || break
		sleep 0.1
	done
	echo "firstflight.sh: $name did not start: $(tail -n 5 "$log")" >&2
	return 1
}

# free_ports N: N ports that nothing listens on now.
free_ports() {
	python3 -c '
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))' "$1"
}

# cache_add ADDR PORT: list ADDR:PORT with the server key and f=1.
cache_add() {
	"$cli" nodeurl --key "$work/server.key" --addr "$1:$2" --tfo >>"$cache" ||
		{ echo "firstflight.sh: cannot make the NodeURL of $1:$2" >&2; exit 1; }
}

# field LINE NAME: the value of NAME=VALUE (or "NAME VALUE") in LINE.
field() {
	sed -n "s/.*\\b$2[= ]\\([^ ]*\\).*/\\1/p" <<<"$1" | head -n 1
}

# last_lines: the last two lines of stdin, on one line.
last_lines() { tail -n 2 | paste -sd ' '; }

# below A B: A < B, as numbers.  within V LO HI: LO <= V <= HI.
below() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a != "" && a + 0 < b + 0) }'; }
within() { awk -v v="$1" -v lo="$2" -v hi="$3" 'BEGIN { exit !(v != "" && v >= lo && v <= hi) }'; }

# --- local part ----------------------------------------------------------------

# CPU a waiting client may use in all (its start-up included): a caller
# that spins through a 1-3 s wait burns that much instead.
wait_cpu_ms=250
# Wakeups with nothing to read that a waiting caller may see.
wait_wakeups=20
# The quiet time of the accept shims that the msg2 checks measure against:
# far above the time an echo takes to answer.
quiet_ms=100

# nbwrite_check NAME HOST PORT SIZE TFO [MODE]
nbwrite_check() {
	local name=$1 host=$2 port=$3 size=$4 tfo=$5 mode=${6:-nbwrite} out rc echoed cpu idle
	out=$(as_client NOISESHIM_TFO="$tfo" "$ff_client" "$mode" "$host" "$port" "$size" 2>&1)
	rc=$?
	echoed=$(field "$out" echoed) cpu=$(field "$out" cpu_ms) idle=$(field "$out" idle_wakeups)
	if [ "$rc" -ne 0 ]; then
		fail "$name" "exit $rc: $(last_lines <<<"$out")"
	elif [ "$echoed" != "$size" ]; then
		fail "$name" "echoed '$echoed' of $size bytes"
	elif ! below "$idle" 100 || ! below "$cpu" 500; then
		fail "$name" "busy loop: $idle wakeups with nothing to do, $cpu ms of CPU"
	else
		ok "$name: $size bytes echoed and checked, $idle idle wakeups, $cpu ms CPU"
	fi
}

tfo_active() {
	"${client_netns[@]}" nstat -asz TcpExtTCPFastOpenActive |
		awk '$1 == "TcpExtTCPFastOpenActive" { print $2 }'
}

# nbwrite_suite WHERE HOST ECHO_PORT GOPEER_PORT: the non-blocking first
# writes against the accept shim's echo and against gopeer, TFO on and off.
nbwrite_suite() {
	local where=$1 host=$2 echo_port=$3 go_port=$4 tfo size syn_data mode
	# The first TFO connection to a host fetches its cookie; after it, the
	# first flight rides in the SYN, and only part of it fits there.
	as_client NOISESHIM_TFO=on "$ff_client" nbwrite "$host" "$echo_port" 100 >/dev/null 2>&1
	syn_data=$(tfo_active)
	for tfo in on off; do
		for size in 1500 4096 61440; do
			nbwrite_check "$where: non-blocking first write, $size B, TFO $tfo, accept shim" \
				"$host" "$echo_port" "$size" "$tfo"
			nbwrite_check "$where: non-blocking first write, $size B, TFO $tfo, gopeer" \
				"$host" "$go_port" "$size" "$tfo"
		done
	done
	# More than the shim holds before msg2: the writer waits for room, then goes on.
	for mode in nbwrite nbwrite-epoll; do
		nbwrite_check "$where: non-blocking first write, 307200 B (past the early buffer), $mode, accept shim" \
			"$host" "$echo_port" 307200 off "$mode"
		nbwrite_check "$where: non-blocking first write, 307200 B (past the early buffer), $mode, gopeer" \
			"$host" "$go_port" 307200 off "$mode"
	done
	syn_data=$(($(tfo_active) - syn_data))
	if [ "$syn_data" -ge 3 ]; then
		ok "$where: TFO on: $syn_data first flights to the accept shim rode in the SYN"
	else
		fail "$where: TFO on" "only $syn_data SYNs carried data (TcpExtTCPFastOpenActive), expected 3"
	fi
}

# post_check NAME PORT SIZE: a POST of SIZE random bytes through both shims.
post_check() {
	local name=$1 body=$work/body-$3 out rc want
	head -c "$3" /dev/urandom >"$body"
	want=$(sha256sum <"$body" | cut -d' ' -f1)
	if [ -n "$asan_runtime" ]; then
		# curl hangs at start-up with the ASan runtime preloaded (see
		# client.sh); http.client POSTs the file the same way.
		name="$name (python3 in place of curl: ASan runtime)"
		out=$(as_client python3 "$ff_pyclient" postfile 127.0.0.1 "$2" "$body" 2>&1)
	else
		out=$(as_client curl -q -sS --noproxy '*' --max-time 20 --data-binary "@$body" \
			"http://127.0.0.1:$2/" 2>&1)
	fi
	rc=$?
	if [ "$rc" -ne 0 ]; then
		fail "$name" "exit $rc: $(last_lines <<<"$out")"
	elif [ "$out" != "$want" ]; then
		fail "$name" "server saw SHA-256 '${out:0:80}', sent $want"
	else
		ok "$name: server's SHA-256 matches"
	fi
}

# wait_start ID TIMEOUT_MS MODE PORT: one waiting caller in the background;
# its result goes to $work/wait-ID, its shim's log to $work/wait-ID.log.
declare -A wait_port
wait_start() {
	as_client NOISESHIM_HANDSHAKE_TIMEOUT_MS="$2" NOISESHIM_LOG_FILE="$work/wait-$1.log" \
		"$ff_client" "$3" 127.0.0.1 "$4" >"$work/wait-$1" 2>&1 &
	wait_pids+=($!)
	wait_port[$1]=$4
}

# wait_judge ID NAME ERRNOS LO_MS HI_MS: the caller ID must have failed
# with one of ERRNOS (a |-list) after LO_MS..HI_MS, woken (for poll and
# epoll) by readiness, without spinning, and its shim must have logged an
# error naming the server.
wait_judge() {
	local result got ms cpu wakeups peer=127.0.0.1:${wait_port[$1]}
	result=$(grep '^result' "$work/wait-$1")
	got=$(field "$result" errno) ms=$(field "$result" ms)
	cpu=$(field "$result" cpu_ms) wakeups=$(field "$result" wakeups)
	if [ -z "$result" ]; then
		fail "$2" "no result: $(last_lines <"$work/wait-$1")"
	elif [ "$result" = "result hung" ]; then
		fail "$2" "still waiting after 20 s"
	elif [ -z "$got" ]; then
		fail "$2" "the call did not fail: $result"
	elif ! [[ "|$3|" == *"|$got|"* ]]; then
		fail "$2" "errno $got after $ms ms, expected $3"
	elif ! within "$ms" "$4" "$5"; then
		fail "$2" "$got after $ms ms, expected within $4..$5 ms"
	elif ! below "$cpu" "$wait_cpu_ms" || ! below "$wakeups" "$wait_wakeups"; then
		fail "$2" "$got after $ms ms, but spun: $cpu ms CPU, $wakeups empty wakeups"
	elif ! grep -F "$peer" "$work/wait-$1.log" 2>/dev/null | grep -q 'error'; then
		fail "$2" "$got after $ms ms, but no error line names $peer: $(head -c 300 "$work/wait-$1.log" 2>/dev/null)"
	else
		ok "$2: $got after $ms ms, $cpu ms CPU, $wakeups empty wakeups"
	fi
}

# loopback_delay: hold every packet on lo for lo_delay_ms (nfq_delay on
# PREROUTING), so that a SYN-ACK takes a round trip to come back: the
# tail of a first flight longer than the SYN then meets EAGAIN, as it does
# on a real link and never does on a bare loopback.
lo_delay_ms=5
loopback_delay() {
	local nfq=${NETNS_NFQ_DELAY:-$root/build/bench/nfq_delay} log=$work/nfq_delay.log
	if [ ! -x "$nfq" ]; then
		fail "loopback delay" "no nfq_delay at $nfq (make build/bench/nfq_delay)"
		return 1
	fi
	"$nfq" --queue 7 --delay-ms "$lo_delay_ms" >"$log" 2>&1 &
	pids+=($!)
	for _ in $(seq 50); do
		grep -q '^nfq_delay: queue' "$log" && break
		sleep 0.1
	done
	if ! grep -q '^nfq_delay: queue' "$log" ||
		! iptables -t raw -A PREROUTING -i lo -j NFQUEUE --queue-num 7; then
		fail "loopback delay" "nfq_delay did not start: $(tail -n 2 "$log")"
		return 1
	fi
}

run_local() {
	# An Ethernet MTU, as on a real link: a SYN then carries about 1,400
	# bytes of a first flight, and a longer one leaves in pieces.
	if ! ip link set lo mtu 1500 up || ! sysctl -qw net.ipv4.tcp_fastopen=3; then
		fail "private namespace" "cannot set up lo or turn TFO on"
		finish
	fi
	loopback_delay || finish
	local echo_port http_port silent_port trickle_port garbage_port sink_port go_port size tfo
	local held_echo_port held_poll_port late_port quiet_echo_port quiet_late_port quiet_selector_port
	read -r echo_port http_port silent_port trickle_port garbage_port sink_port held_echo_port \
		held_poll_port late_port quiet_echo_port quiet_late_port quiet_selector_port < <(free_ports 12)
	start_listener gopeer '^listening' "$gopeer" respond --listen 127.0.0.1:0 --key "$server_priv" \
		--suite chachapoly --mode echo || { fail "gopeer" "did not start"; finish; }
	go_port=$(sed -n 's/^listening .*:\([0-9]*\)$/\1/p' "$work/gopeer.log")
	start_listener accept-shim '^ready' env LD_PRELOAD="$server_shim" ASAN_OPTIONS=detect_leaks=0 \
		NOISESHIM_KEY="$work/server.key" NOISESHIM_LISTEN="$echo_port,$http_port,$sink_port,$late_port" \
		NOISESHIM_LOG_FILE="$work/server-shim.log" \
		python3 "$ff_server" 127.0.0.1 "echo:$echo_port" "http:$http_port" "sink:$sink_port" \
		"late:$late_port" || { fail "accept shim" "python3 under the accept shim did not start"; finish; }
	# The same servers with a quiet time long enough to tell an answer
	# that rode in msg2 at once from one that waited for it to run out.
	start_listener accept-shim-quiet '^ready' env LD_PRELOAD="$server_shim" ASAN_OPTIONS=detect_leaks=0 \
		NOISESHIM_KEY="$work/server.key" NOISESHIM_LISTEN="$quiet_echo_port,$quiet_late_port" \
		NOISESHIM_FIRST_FLIGHT_US=$((quiet_ms * 1000)) NOISESHIM_LOG_FILE="$work/server-shim.log" \
		python3 "$ff_server" 127.0.0.1 "echo:$quiet_echo_port" "late:$quiet_late_port" ||
		{ fail "accept shim" "python3 under the accept shim did not start"; finish; }
	# msg2 held up to 3 s for the answer: whatever sends it sooner shows.
	start_listener held-msg2 '^ready' env LD_PRELOAD="$server_shim" ASAN_OPTIONS=detect_leaks=0 \
		NOISESHIM_KEY="$work/server.key" NOISESHIM_LISTEN="$held_echo_port,$held_poll_port" \
		NOISESHIM_FIRST_FLIGHT_US=3000000 NOISESHIM_LOG_FILE="$work/server-shim.log" \
		python3 "$ff_server" 127.0.0.1 "echo:$held_echo_port" "answer-poll:$held_poll_port" ||
		{ fail "accept shim" "python3 under the accept shim, msg2 held, did not start"; finish; }
	# echo_server.py prints nothing: the shim's line saying it listens tells.
	start_listener accept-shim-selector 'listening on' env LD_PRELOAD="$server_shim" \
		ASAN_OPTIONS=detect_leaks=0 NOISESHIM_KEY="$work/server.key" \
		NOISESHIM_LISTEN="$quiet_selector_port" NOISESHIM_FIRST_FLIGHT_US=$((quiet_ms * 1000)) \
		NOISESHIM_LOG=info python3 "$here/echo_server.py" --port "$quiet_selector_port" \
		--model selectors || { fail "accept shim" "echo_server.py under the accept shim did not start"; finish; }
	start_listener impostors '^ready' python3 "$ff_server" 127.0.0.1 "silent:$silent_port" \
		"trickle:$trickle_port" "garbage:$garbage_port" || { fail "servers" "did not start"; finish; }
	for port in "$go_port" "$echo_port" "$http_port" "$sink_port" "$silent_port" "$trickle_port" \
		"$garbage_port"; do
		cache_add 127.0.0.1 "$port"
	done

	# The waiting callers take seconds of sleep each: all at once.
	wait_pids=()
	local caller
	for caller in read write poll epoll; do
		wait_start "silent-$caller" 1000 "$caller" "$silent_port"
		wait_start "trickle-$caller" 2000 "$caller" "$trickle_port"
	done
	for caller in read poll epoll; do
		wait_start "garbage-$caller" 5000 "$caller" "$garbage_port"
	done
	for caller in fill-poll fill-select fill-epoll; do
		wait_start "silent-$caller" 1000 "$caller" "$silent_port"
	done

	nbwrite_suite loopback 127.0.0.1 "$echo_port" "$go_port"
	post_check "curl POST 4 KB through both shims" "$http_port" 4096
	post_check "curl POST 64 KB through both shims" "$http_port" 65536
	close_check "non-blocking close with a write waiting for msg2, accept shim" "$sink_port" sink
	close_check "non-blocking close with a write waiting for msg2, silent server" "$silent_port" ""
	msg2_check "an answer written as the request is read rides in msg2" "$held_echo_port" 500 \
		"reply 552 open"
	msg2_check "a server that waits in poll for the rest of its request sends msg2 at once" \
		"$held_poll_port" 200 "reply 52 open"
	msg2_checks "$echo_port" "$late_port" "$quiet_echo_port" "$quiet_late_port" "$quiet_selector_port"

	wait "${wait_pids[@]}" 2>/dev/null
	for caller in read write poll epoll; do
		wait_judge "silent-$caller" "silent server, 1000 ms deadline, $caller" ETIMEDOUT 900 2000
	done
	for caller in read write poll epoll; do
		wait_judge "trickle-$caller" "msg2 one byte a second, 2000 ms deadline, $caller" \
			ETIMEDOUT 1800 3000
	done
	for caller in read poll epoll; do
		wait_judge "garbage-$caller" "44-byte garbage reply, $caller" "EPROTO|ECONNRESET" 0 1000
	done
	for caller in fill-poll fill-select fill-epoll; do
		wait_judge "silent-$caller" "silent server, 1000 ms deadline, writes past the early buffer, ${caller#fill-}" \
			ETIMEDOUT 900 2000
	done
}

# msg2_check NAME PORT SIZE EXPECT: a raw first flight with SIZE bytes of
# payload to PORT; the reply (raw_client.py's "reply BYTES ENDING") must be
# EXPECT, and come well before the server's 3 s quiet time would have sent
# msg2 (raw_client.py then waits 1 s more for anything else).  An empty
# msg2 is 52 bytes on the wire (frame header, e, tag); one carrying a
# 500-byte answer is 552, where an empty msg2 and a record would be 572.
msg2_check() {
	local flight=$work/flight-$3.bin out start ms
	if ! "$hostile_peer" flight --remote-pub "$server_pub_hex" --size "$3" >"$flight"; then
		fail "$1" "hostile_peer could not make a first flight"
		return
	fi
	start=$(date +%s%N)
	out=$(timeout 30 python3 "$here/raw_client.py" send --port "$2" --flight "$flight" 2>&1)
	ms=$((($(date +%s%N) - start) / 1000000))
	if [ "$out" != "$4" ]; then
		fail "$1" "expected \"$4\", got \"$(last_lines <<<"$out")\""
	elif ! below "$ms" 3000; then
		fail "$1" "$out, but after $ms ms: msg2 waited for the quiet time"
	else
		ok "$1: $out, $ms ms, 1 s of it raw_client's wait for more"
	fi
}

# How long close() may take on a non-blocking socket with bytes still to send.
close_ms_max=100

# close_check NAME PORT SINK: a non-blocking close with bytes waiting for
# msg2; when SINK is set, the server's log must show every byte.
close_check() {
	local name=$1 port=$2 sink=$3 out close_ms sha got
	out=$(as_client python3 "$ff_pyclient" closewrite 127.0.0.1 "$port" 50 2>&1)
	close_ms=$(field "$out" close_ms) sha=$(field "$out" sha256)
	if [ -z "$close_ms" ]; then
		fail "$name" "$(last_lines <<<"$out")"
		return
	elif ! below "$close_ms" "$close_ms_max"; then
		fail "$name" "close() took $close_ms ms (limit $close_ms_max)"
		return
	fi
	if [ -n "$sink" ]; then
		for _ in $(seq 30); do
			got=$(grep -c "^sink 500 $sha\$" "$work/accept-shim.log")
			[ "$got" -ge 1 ] && break
			sleep 0.1
		done
		if [ "$got" -lt 1 ]; then
			fail "$name" "close() took $close_ms ms, but the server did not get the 500 bytes: $(grep '^sink' "$work/accept-shim.log" | tail -n 2 | paste -sd ' ')"
			return
		fi
	fi
	ok "$name: close() took $close_ms ms${sink:+, the server got all 500 bytes}"
}

# msg2_timing_check NAME PORT SIZE PAYLOAD LO_MS HI_MS: gopeer sends SIZE random
# bytes in msg1 to an echo under the accept shim; msg2 must carry PAYLOAD
# bytes and arrive LO_MS..HI_MS after msg1 left, and the echo must come
# back whole.
msg2_timing_check() {
	local name=$1 port=$2 size=$3 want=$4 lo=$5 hi=$6 out rc report payload ms
	out=$(timeout 30 "$gopeer" initiate --connect "127.0.0.1:$port" --remote-pub "$server_pub_hex" \
		--size "$size" --report-msg2 2>&1)
	rc=$?
	report=$(grep '^msg2 payload' <<<"$out")
	payload=$(field "$report" payload) ms=$(field "$report" after)
	if [ -z "$report" ]; then
		fail "$name" "exit $rc, no msg2 report: $(last_lines <<<"$out")"
	elif [ "$payload" != "$want" ]; then
		fail "$name" "msg2 carried $payload bytes (after $ms ms), expected $want"
	elif ! within "$ms" "$lo" "$hi"; then
		fail "$name" "msg2 ($payload bytes) came $ms ms after msg1, expected within $lo..$hi ms"
	elif [ "$rc" -ne 0 ]; then
		fail "$name" "msg2 as expected, but exit $rc: $(last_lines <<<"$out")"
	else
		ok "$name: msg2 payload $payload bytes, $ms ms after msg1; the echo of $size bytes checked"
	fi
}

# msg2_checks ECHO LATE QUIET_ECHO QUIET_LATE QUIET_SELECTOR: the ports of
# the accept shim's servers, the last three with a quiet time of quiet_ms.
msg2_checks() {
	# A writer sends msg2 with its answer as soon as it writes; the service
	# thread sends it empty once the quiet time has passed with no answer.
	msg2_timing_check "msg2 carries the answer, threaded echo, default quiet time" "$1" 100 100 0 200
	msg2_timing_check "msg2 carries the answer, threaded echo, ${quiet_ms} ms quiet time" "$3" 100 100 0 "$quiet_ms"
	msg2_timing_check "msg2 carries the answer, echo in a selector, ${quiet_ms} ms quiet time" "$5" 100 100 0 "$quiet_ms"
	msg2_timing_check "msg2 does not wait for an answer 500 ms late, default quiet time" "$2" 100 0 0 200
	msg2_timing_check "msg2 does not wait for an answer 500 ms late, ${quiet_ms} ms quiet time" "$4" 100 0 \
		"$quiet_ms" 400
	# No request, nothing to wait for.
	msg2_timing_check "msg2 goes at once after an empty msg1, ${quiet_ms} ms quiet time" "$3" 0 0 0 "$quiet_ms"
}

# --- wan part --------------------------------------------------------------------

# shape_median TRANSPORT SHAPE PORT [VAR=VALUE...]: the median of 5
# connections, in ms.
shape_median() {
	local transport=$1 shape=$2 port=$3 client=("$ff_client" "$2") out
	shift 3
	[ "$shape" = post ] && client=(python3 "$ff_pyclient" post)
	out=$(as_client NOISESHIM_TRANSPORT="$transport" "$@" "${client[@]}" "$NETNS_SERVER_ADDR" \
		"$port" 5 2>&1)
	if ! grep -q '^median_ms' <<<"$out"; then
		echo "failed: $(last_lines <<<"$out")" >&2
		return 1
	fi
	field "$(grep '^median_ms' <<<"$out")" median_ms
}

run_wan() {
	NETNS_NFQ_DELAY=${NETNS_NFQ_DELAY:-$root/build/bench/nfq_delay}
	# shellcheck source-path=SCRIPTDIR
	. "$root/bench/netns.sh"
	local delay=25 rtt=50
	netns_up "$delay" || { fail "netns_up" "the two namespaces did not come up"; finish; }
	trap 'kill "${pids[@]}" 2>/dev/null; netns_down; rm -rf "$work"' EXIT
	client_netns=(ip netns exec "$NETNS_CLIENT")

	local noise_answer noise_nagle noise_http noise_echo tcp_answer tcp_nagle tcp_http go_port
	# The server's namespace is new: every port is free there, and
	# free_ports (on this one's loopback) says which to take.
	read -r noise_answer noise_nagle noise_http noise_echo tcp_answer tcp_nagle tcp_http go_port \
		< <(free_ports 8)
	start_listener noise-server '^ready' in_server env LD_PRELOAD="$server_shim" \
		ASAN_OPTIONS=detect_leaks=0 NOISESHIM_KEY="$work/server.key" \
		NOISESHIM_LISTEN="$noise_answer,$noise_nagle,$noise_http,$noise_echo" \
		NOISESHIM_LOG_FILE="$work/server-shim.log" python3 "$ff_server" "$NETNS_SERVER_ADDR" \
		"answer:$noise_answer" "answer-nagle:$noise_nagle" "http:$noise_http" "echo:$noise_echo" ||
		{ fail "noise server" "did not start"; finish; }
	start_listener tcp-server '^ready' in_server env LD_PRELOAD="$server_shim" \
		ASAN_OPTIONS=detect_leaks=0 NOISESHIM_TRANSPORT=tcp \
		NOISESHIM_LISTEN="$tcp_answer,$tcp_nagle,$tcp_http" NOISESHIM_LOG_FILE="$work/server-shim.log" \
		python3 "$ff_server" "$NETNS_SERVER_ADDR" "answer:$tcp_answer" "answer-nagle:$tcp_nagle" \
		"http:$tcp_http" || { fail "tcp server" "did not start"; finish; }
	start_listener gopeer '^listening' in_server "$gopeer" respond \
		--listen "$NETNS_SERVER_ADDR:$go_port" --key "$server_priv" --suite chachapoly --mode echo ||
		{ fail "gopeer" "did not start"; finish; }
	for port in "$noise_answer" "$noise_nagle" "$noise_http" "$noise_echo" "$tcp_answer" \
		"$tcp_nagle" "$tcp_http" "$go_port"; do
		cache_add "$NETNS_SERVER_ADDR" "$port"
	done

	# Warm-up: the first connection to the server fetches its TFO cookie.
	shape_median noise one "$noise_answer" >/dev/null 2>&1
	shape_median tcp one "$tcp_answer" >/dev/null 2>&1

	local row shape noise tcp noise_port tcp_port table=$work/table one_rtt two_rtt
	one_rtt=($((rtt * 9 / 10)) $((rtt * 3 / 2)))
	two_rtt=($((rtt * 3 / 2)) $((rtt * 3)))
	declare -A label=([one]="one write" [two]="write(200 B), write(300 B), read"
		[more]="send(200 B, MSG_MORE), send(300 B)" [cork]="TCP_CORK, two writes, uncork"
		[post]="http.client POST, 500 B body" [one/nagle]="one write, server with Nagle on")
	printf '%-34s %10s %10s %10s\n' "request (500 B, answer 500 B)" noise+tfo tcp+tfo tcp/noise >"$table"
	for row in one two more cork post one/nagle; do
		shape=${row%/*} noise_port=$noise_answer tcp_port=$tcp_answer
		[ "$row" = post ] && noise_port=$noise_http tcp_port=$tcp_http
		[ "$row" = one/nagle ] && noise_port=$noise_nagle tcp_port=$tcp_nagle
		noise=$(shape_median noise "$shape" "$noise_port" 2>"$work/err") ||
			{ fail "${label[$row]}, noise+tfo" "$(cat "$work/err")"; noise=-; }
		tcp=$(shape_median tcp "$shape" "$tcp_port" 2>"$work/err") ||
			{ fail "${label[$row]}, tcp+tfo" "$(cat "$work/err")"; tcp=-; }
		printf '%-34s %10s %10s %10s\n' "${label[$row]}" "$noise" "$tcp" \
			"$(awk -v a="$tcp" -v b="$noise" 'BEGIN {
				if (a == "-" || b == "-" || b == 0) print "-"; else printf "%.2f", a / b }')" >>"$table"
		if [ "$noise" = - ]; then
			:
		elif within "$noise" "${one_rtt[@]}"; then
			ok "${label[$row]}, noise+tfo: answered in $noise ms, 1 RTT"
		else
			fail "${label[$row]}, noise+tfo" "answered in $noise ms, expected 1 RTT (${one_rtt[0]}..${one_rtt[1]} ms)"
		fi
		# TCP+TFO is the baseline: one write rides in its SYN, a second
		# write waits for the SYN-ACK.  Both must hold here, or the
		# harness does not measure what it claims.
		if [ "$tcp" = - ]; then
			:
		elif [ "$shape" = one ]; then
			if within "$tcp" "${one_rtt[@]}"; then
				ok "${label[$row]}, tcp+tfo: answered in $tcp ms, 1 RTT"
			else
				fail "${label[$row]}, tcp+tfo" "answered in $tcp ms, expected 1 RTT (${one_rtt[0]}..${one_rtt[1]} ms)"
			fi
		elif within "$tcp" "${two_rtt[@]}"; then
			ok "${label[$row]}, tcp+tfo: answered in $tcp ms, 2 RTT (the second write waits)"
		else
			fail "${label[$row]}, tcp+tfo" "answered in $tcp ms, expected 2 RTT (${two_rtt[0]}..${two_rtt[1]} ms)"
		fi
	done
	printf '\nmedians of 5 fresh connections in ms, %d ms RTT (%s):\n' "$rtt" "$NETNS_BACKEND"
	cat "$table"
	echo

	# What holding the first flight must not do: delay a program that
	# writes its request at once (beyond what the crypto costs), or put
	# data into msg1 when NOISESHIM_0RTT=off says it must wait for msg2.
	local one_noise one_tcp slack=$((rtt * 3 / 10)) no_0rtt
	one_noise=$(awk '$1 == "one" && $2 == "write" { print $3 }' "$table")
	one_tcp=$(awk '$1 == "one" && $2 == "write" { print $4 }' "$table")
	if [ "$one_noise" = - ] || [ "$one_tcp" = - ]; then
		fail "one write, no hold-back" "no figures to compare"
	elif below "$one_noise" "$(awk -v t="$one_tcp" -v s="$slack" 'BEGIN { print t + s }')"; then
		ok "one write, no hold-back: noise+tfo $one_noise ms, tcp+tfo $one_tcp ms"
	else
		fail "one write, no hold-back" "noise+tfo $one_noise ms, more than $slack ms over tcp+tfo ($one_tcp ms)"
	fi
	for shape in one two; do
		local what="NOISESHIM_0RTT=off, ${label[$shape]}"
		if ! no_0rtt=$(shape_median noise "$shape" "$noise_answer" NOISESHIM_0RTT=off 2>"$work/err"); then
			fail "$what" "$(cat "$work/err")"
		elif within "$no_0rtt" "${two_rtt[0]}" $((rtt * 4)); then
			# 2 RTT, or 3 where Nagle holds a second write behind the first.
			ok "$what: $no_0rtt ms, over 1.5 RTT (the data waited for msg2)"
		else
			fail "$what" "$no_0rtt ms, expected 2 to 3 RTT (${two_rtt[0]}..$((rtt * 4)) ms)"
		fi
	done

	# MSG_EOR sends the gathered first flight at once, even when the
	# program does something else for 2 RTT before it reads and the quiet
	# time is long: the answer is then waiting for it.
	local eor
	if ! eor=$(shape_median noise eor "$noise_answer" NOISESHIM_FIRST_FLIGHT_US=1000000 2>"$work/err"); then
		fail "MSG_EOR releases the first flight" "$(cat "$work/err")"
	elif within "$eor" 100 $((100 + rtt / 2)); then
		ok "MSG_EOR releases the first flight: answered in $eor ms, the program read at 100 ms"
	else
		fail "MSG_EOR releases the first flight" "answered in $eor ms, expected 100..$((100 + rtt / 2)) ms (a held flight would leave at the read: 100 ms + 1 RTT)"
	fi

	local out single total
	out=$(as_client python3 "$ff_pyclient" async "$NETNS_SERVER_ADDR" "$noise_answer" 20 2>&1)
	single=$(field "$out" single_ms) total=$(field "$out" total_ms)
	if [ -z "$total" ]; then
		fail "asyncio" "$(last_lines <<<"$out")"
	elif ! within "$single" "${one_rtt[@]}"; then
		fail "asyncio, one connection writing twice then reading" \
			"answered in $single ms, expected 1 RTT (${one_rtt[0]}..${one_rtt[1]} ms)"
	else
		ok "asyncio, one connection writing twice then reading: answered in $single ms, 1 RTT"
	fi
	if [ -z "$total" ]; then
		:
	elif below "$total" $((rtt * 5 / 2)); then
		ok "asyncio, 20 connections writing twice then reading: $total ms in all, one alone $single ms"
	else
		fail "asyncio, 20 connections" "$total ms in all (one alone: $single ms), expected < $((rtt * 5 / 2)) ms"
	fi

	nbwrite_suite "50 ms RTT" "$NETNS_SERVER_ADDR" "$noise_echo" "$go_port"
}

if [ "$part" = local ]; then
	trap 'kill "${pids[@]}" 2>/dev/null; rm -rf "$work"' EXIT
	run_local
else
	run_wan
fi
finish
