#!/bin/bash
# Interop with an independent Noise implementation (Go, flynn/noise) over
# real TCP on loopback: our initiator against their responder and the
# reverse, both suites, 0-RTT first writes of several sizes; and our
# initiator against an echo server under the accept shim, whose msg2
# carries the first answer.
#
#   tests/interop/run.sh build/tests/interop_peer build/tests/gopeer build/libnoiseshim-server.so
set -u
ours=$1 theirs=$2 accept_shim=$(realpath "$3")
resp_priv=0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20
resp_pub=07a37cbc142093c8b755dc1b10e86cb426374ad16aa853ed0bdfc0b2b86d1c7c
sizes="0 1 65535 65536 1000000"
scratch=$(mktemp -d)
pids=()
passed=0 failed=0

cleanup() {
	for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; done
	wait 2>/dev/null
	rm -rf "$scratch"
}
trap cleanup EXIT

# start_responder BINARY SUITE EXTRA...: starts it on a free port, sets $port.
start_responder() {
	local bin=$1 suite=$2 log
	shift 2
	log=$scratch/resp.$RANDOM
	"$bin" respond --listen 127.0.0.1:0 --key "$resp_priv" --suite "$suite" "$@" >"$log" 2>&1 &
	pids+=($!)
	for _ in $(seq 100); do
		port=$(sed -n 's/^listening .*:\([0-9]*\)$/\1/p' "$log")
		[ -n "$port" ] && return 0
		sleep 0.05
	done
	echo "responder $bin did not start:"; cat "$log"
	return 1
}

check() {
	local name=$1
	shift
	local out
	if out=$(timeout 60 "$@" 2>&1) && [ "$out" = "ok $size" ]; then
		passed=$((passed + 1))
		echo "ok   $name"
	else
		failed=$((failed + 1))
		echo "FAIL $name: $out"
	fi
}

for suite in chachapoly aesgcm; do
	start_responder "$theirs" "$suite" --mode echo || exit 1
	for size in $sizes; do
		check "our initiator -> flynn responder, $suite, $size bytes" \
			"$ours" initiate --connect 127.0.0.1:$port --remote-pub $resp_pub --suite $suite --size $size
	done
	start_responder "$ours" "$suite" || exit 1
	for size in $sizes; do
		check "flynn initiator -> our responder, $suite, $size bytes" \
			"$theirs" initiate --connect 127.0.0.1:$port --remote-pub $resp_pub --suite $suite --size $size
	done
done

# The accept shim answers in msg2 when the program has written by then: the
# initiator must take msg2's payload as the first bytes of the echo.
echo_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
(umask 077 && echo "$resp_priv" >"$scratch/server.key")
# Its replay window and counters stay in the scratch directory, not in /run/noiseshim.
# A sanitizer build of the shim needs its runtime loaded first into python,
# whose own leaks are not under test; a report from the shim fails the check.
asan_runtime=$(ldd "$accept_shim" 2>/dev/null | awk '$1 ~ /^libasan\.so/ { print $3; exit }')
LD_PRELOAD="${asan_runtime:+$asan_runtime }$accept_shim" \
	ASAN_OPTIONS="detect_leaks=0:log_path=$scratch/sanitizer" \
	UBSAN_OPTIONS="print_stacktrace=1:log_path=$scratch/sanitizer" \
	NOISESHIM_KEY=$scratch/server.key NOISESHIM_LISTEN=$echo_port \
	NOISESHIM_LOG_FILE=$scratch/accept-shim.log NOISESHIM_REPLAY_FILE=$scratch/replay.map \
	NOISESHIM_STATS_DIR=$scratch/stats \
	python3 "$(dirname "$0")/../integration/echo_server.py" --port "$echo_port" &
pids+=($!)
for _ in $(seq 100); do
	ss -Htln "sport = :$echo_port" | grep -q . && break
	sleep 0.05
done
for size in 1 1000 65535 1000000; do
	check "our initiator -> accept shim echo (answer in msg2), $size bytes" \
		"$ours" initiate --connect 127.0.0.1:$echo_port --remote-pub $resp_pub --size $size
done
if compgen -G "$scratch/sanitizer*" >/dev/null; then
	failed=$((failed + 1))
	echo "FAIL the accept shim under the echo server: sanitizer report: $(head -c 600 "$scratch"/sanitizer*)"
fi

# A peer holding another key must be refused by both implementations.
wrong_pub=0000000000000000000000000000000000000000000000000000000000000009
refused() {
	local name=$1
	shift
	if timeout 60 "$@" >/dev/null 2>&1; then
		failed=$((failed + 1))
		echo "FAIL $name: succeeded"
	else
		passed=$((passed + 1))
		echo "ok   $name"
	fi
}
start_responder "$theirs" chachapoly --mode echo || exit 1
refused "our initiator with the wrong responder key is refused" \
	"$ours" initiate --connect 127.0.0.1:$port --remote-pub $wrong_pub --size 10
start_responder "$ours" chachapoly || exit 1
refused "flynn initiator with the wrong responder key is refused" \
	"$theirs" initiate --connect 127.0.0.1:$port --remote-pub $wrong_pub --size 10

echo "interop: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
