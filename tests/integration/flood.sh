#!/bin/bash
# Load protection: one source address (127.0.0.2) floods an echo server
# under the accept shim with valid first flights as fast as it can, while
# a client from another address (127.0.0.3) completes handshakes at a
# modest pace (below the per-address limit).  Prints that client's rate
# and median handshake time unloaded, loaded with the limit on, and loaded
# with it off (NOISESHIM_RATE_LIMIT=0, for comparison), and passes when the
# loaded rate with the limit on is at least half the unloaded one.
#
#   tests/integration/flood.sh BUILD_DIR
set -u

if [ $# -ne 1 ] || ! build=$(cd "$1" 2>/dev/null && pwd); then
	echo "usage: $0 BUILD_DIR" >&2
	exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/integration/replay_common.sh
. "$here/replay_common.sh"

flood_seconds=5
measure_seconds=4
# Handshakes a second the good client asks for: under NOISESHIM_RATE_LIMIT's default of 20.
good_rate=10
flood_parallel=32
min_ratio=0.5

read -r port_on port_off < <(free_ports 2)

# start_server NAME PORT ENV...: sets $started_pid.
start_server() {
	local name=$1 port=$2
	shift 2
	start_background "$work/$name.out" "${server_env[@]}" NOISESHIM_LISTEN="$port" \
		NOISESHIM_REPLAY_FILE="$work/$name.map" NOISESHIM_LOG=warn \
		NOISESHIM_LOG_FILE="$work/$name.log" "$@" \
		"$python" "$here/echo_server.py" --port "$port" --model threads
	if ! wait_listening "$port" "$started_pid"; then
		fail "$name-start" "the echo server did not start: $(tail_of "$work/$name.out")"
		return 1
	fi
}

# good_client PORT: "handshakes ok N failed F rate X/s p50_ms M" from 127.0.0.3.
good_client() {
	timeout $((measure_seconds + 30)) "$flood_peer" handshakes --connect "127.0.0.1:$1" \
		--from 127.0.0.3 --remote-pub "$server_pub_hex" --seconds "$measure_seconds" \
		--rate "$good_rate" 2>&1
}

# loaded PORT: the good client's figures while 127.0.0.2 floods; the flood's in $work/flood-PORT.out.
loaded() {
	local flooder out
	"$flood_peer" flood --connect "127.0.0.1:$1" --from 127.0.0.2 --remote-pub "$server_pub_hex" \
		--seconds "$flood_seconds" --parallel "$flood_parallel" >"$work/flood-$1.out" 2>&1 &
	flooder=$!
	# Let the flood build up before measuring inside it.
	sleep 0.5
	out=$(good_client "$1")
	wait "$flooder"
	echo "$out"
}

# User and system CPU seconds PID has used.
cpu_seconds() {
	local stat
	stat=$(cat "/proc/$1/stat")
	stat=${stat##*) }
	echo "$stat" | awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($12 + $13) / hz }'
}

field() {
	awk -v name="$1" '{ for (i = 1; i < NF; i++) if ($i == name) { print $(i + 1); exit } }' |
		tr -d '/s'
}

test_flood() {
	local unloaded with_limit without_limit on off ratio ratio_off sent answered flood_result limited
	local cpu_on cpu_off before fast
	start_server limit-on "$port_on" || return
	on=$started_pid
	start_server limit-off "$port_off" NOISESHIM_RATE_LIMIT=0 || return
	off=$started_pid

	unloaded=$(good_client "$port_on")
	note "unloaded:            $unloaded"
	# Negative space: without load, an address far above the per-address rate is not limited.
	fast=$(timeout 60 "$flood_peer" handshakes --connect "127.0.0.1:$port_on" --from 127.0.0.4 \
		--remote-pub "$server_pub_hex" --seconds 2 --rate 100 2>&1)
	note "unloaded, 100/s:     $fast"
	if [ "$(echo "$fast" | field failed)" = 0 ] && [ "$(echo "$fast" | field ok)" -ge 100 ] 2>/dev/null; then
		pass unloaded-fast-address-not-limited
	else
		fail unloaded-fast-address-not-limited "$fast"
	fi
	before=$(cpu_seconds "$on")
	with_limit=$(loaded "$port_on")
	cpu_on=$(awk -v a="$(cpu_seconds "$on")" -v b="$before" 'BEGIN { printf "%.2f", a - b }')
	note "flooded, limit on:   $with_limit"
	flood_result=$(cat "$work/flood-$port_on.out")
	note "the flood:           $flood_result"
	sent=$(echo "$flood_result" | field sent)
	answered=$(echo "$flood_result" | field answered)
	before=$(cpu_seconds "$off")
	without_limit=$(loaded "$port_off")
	cpu_off=$(awk -v a="$(cpu_seconds "$off")" -v b="$before" 'BEGIN { printf "%.2f", a - b }')
	note "flooded, limit off:  $without_limit"
	note "the flood:           $(cat "$work/flood-$port_off.out")"

	ratio=$(awk -v a="$(echo "$with_limit" | field rate)" -v b="$(echo "$unloaded" | field rate)" \
		'BEGIN { if (b > 0) printf "%.2f", a / b; else print 0 }')
	ratio_off=$(awk -v a="$(echo "$without_limit" | field rate)" -v b="$(echo "$unloaded" | field rate)" \
		'BEGIN { if (b > 0) printf "%.2f", a / b; else print 0 }')
	note "good client's loaded/unloaded rate: $ratio with the limit, $ratio_off without (target >= $min_ratio)"
	if [ "$(echo "$unloaded" | field ok)" -gt 0 ] 2>/dev/null &&
		awk -v r="$ratio" -v min="$min_ratio" 'BEGIN { exit !(r >= min) }'; then
		pass flood-good-client-served
	else
		fail flood-good-client-served "ratio $ratio (missed: target >= $min_ratio)"
	fi
	# The flood itself must have been held back before any DH, by the shim's own refusal
	# (replays of the flooder's pool are refused too, but only after the DH that decrypts
	# them).  Load is only declared after a sustained second, so some of it gets through.
	limited=$(grep -c "127.0.0.2:.*refused before any DH" "$work/limit-on.log")
	if [ "${sent:-0}" -gt 0 ] && [ "$limited" -ge $((sent / 2)) ]; then
		pass flood-refused-before-dh
		note "flood: $sent first flights, $answered answered, $limited refused before any DH"
	else
		fail flood-refused-before-dh "sent ${sent:-?}, answered ${answered:-?}, refused before DH $limited"
	fi
	note "server CPU time over each flood: $cpu_on s with the limit, $cpu_off s without"
	if grep -q "under load" "$work/limit-on.log" &&
		grep -q "127.0.0.2:.*refused before any DH" "$work/limit-on.log"; then
		pass flood-logged
	else
		fail flood-logged "no load or refusal line: $(tail_of "$work/limit-on.log")"
	fi
	# Negative space: the good address is never the one refused, limit on or off.
	if ! grep -q "127.0.0.3:.*refused before any DH" "$work/limit-on.log" "$work/limit-off.log"; then
		pass flood-good-address-never-limited
	else
		fail flood-good-address-never-limited "$(grep -m 1 "127.0.0.3:.*refused" "$work/limit-on.log")"
	fi
	if ! grep -q "refused before any DH" "$work/limit-off.log"; then
		pass flood-limit-off-limits-nothing
	else
		fail flood-limit-off-limits-nothing "NOISESHIM_RATE_LIMIT=0 still refused flights"
	fi
	stop_process "$on"
	stop_process "$off"
	check_sanitizer_reports flood
}

test_flood
summary
