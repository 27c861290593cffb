#!/bin/bash
# Hostile peers against the accept shim: connections that end, reset or
# stall inside the route prefix, the frame header, msg1 or the first
# record, sent from raw sockets (hostile_client.py) or from an initiator
# that completes the handshake first (hostile_peer).  Two servers run
# under libnoiseshim-server.so: python3's http.server (a thread per
# connection, blocking calls) and a selectors echo server (one thread,
# non-blocking sockets).  Everything stays on 127.0.0.1.
#
#   tests/integration/hostile.sh BUILD_DIR
#
# For every attack each server must stay idle (CPU time from
# /proc/PID/stat, and the time its threads were runnable from schedstat, so
# that a spin starved by other work still shows), close the connection (the
# sockets it holds back to the baseline) and go on serving a client under
# the client shim.  Prints
# "ok NAME" or "FAIL NAME: reason" per check and "# ..." for figures, then
# "hostile: N passed, M failed"; exits 1 if any check failed.  The work
# directory, with every log, is kept when a check fails.
set -u

if [ $# -ne 1 ]; then
	echo "usage: $0 BUILD_DIR" >&2
	exit 2
fi
if ! build=$(cd "$1" 2>/dev/null && pwd); then
	echo "hostile.sh: no directory $1" >&2
	exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/integration/harness.sh
. "$here/harness.sh"
client_shim=$build/libnoiseshim.so
server_shim=$build/libnoiseshim-server.so
cli=$build/noiseshim
hostile_peer=$build/tests/hostile_peer
for file in "$client_shim" "$server_shim" "$cli" "$hostile_peer"; do
	if [ ! -f "$file" ]; then
		echo "hostile.sh: $file is missing: build the shims, the CLI and hostile_peer into $1 first" >&2
		exit 2
	fi
done
# The interpreter itself, so that the PIDs watched are the servers' own.
if ! python=$("${PYTHON:-python3}" -c 'import sys; print(sys.executable)'); then
	echo "hostile.sh: python3 is not installed" >&2
	exit 2
fi
if ! command -v curl >/dev/null; then
	echo "hostile.sh: curl is not installed" >&2
	exit 2
fi

server_priv=0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20
server_pub_hex=07a37cbc142093c8b755dc1b10e86cb426374ad16aa853ed0bdfc0b2b86d1c7c
clock_ticks=$(getconf CLK_TCK)

# The limits under test.
# Seconds of server CPU, and of its threads being runnable, in the 1 s after
# an attack (and in the readiness window).
cpu_limit_after_attack=0.2
close_within=1.0                # seconds until the server's sockets are back to the baseline
stall_count=500
stall_deadline_ms=2000
stall_closed_within=3.0         # seconds from connect, for every stalled connection
stall_attacker_wait=4           # seconds the attacker holds on after its last connect
# A deadline that fires well before its time would cut slow clients.
stall_not_before=1.8
readiness_clients=50            # per stage: 3 prefix bytes, half a frame header
readiness_deadline_ms=4000      # longer than the 2 s watched
readiness_window=2              # seconds of watching
readiness_closed_within=5.0
readiness_attacker_wait=6
# The point attacks must not be ended by a deadline: long enough that only
# the end of stream or the reset closes the connection in time.
point_deadline_ms=10000

unset LD_PRELOAD
for name in $(compgen -e); do
	case $name in NOISESHIM_*) unset "$name" ;; esac
done

passed=0 failed=0
background_pids=()
work=$(mktemp -d /tmp/noiseshim-hostile.XXXXXX)
# The replay window and the counters files of the programs started here stay
# in the work directory rather than in /run/noiseshim, so that a run leaves
# nothing behind (a window there is 32 MiB per server key).
export NOISESHIM_REPLAY_FILE=$work/replay.map NOISESHIM_STATS_DIR=$work/stats

cleanup() {
	for pid in "${background_pids[@]}"; do
		stop_process "$pid"
	done
	if [ "$failed" -eq 0 ]; then
		rm -rf "$work"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() {
	failed=$((failed + 1))
	echo "FAIL $1: ${*:2}"
}

stop_process() {
	local pid=$1
	alive "$pid" || { wait "$pid" 2>/dev/null; return 0; }
	kill -TERM "$pid" 2>/dev/null
	for _ in $(seq 30); do
		alive "$pid" || break
		sleep 0.1
	done
	alive "$pid" && kill -KILL "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	local kept=() other
	for other in "${background_pids[@]}"; do
		[ "$other" = "$pid" ] || kept+=("$other")
	done
	background_pids=("${kept[@]}")
}

wait_listening() {
	for _ in $(seq 200); do
		listening "$1" && return 0
		alive "$2" || return 1
		sleep 0.05
	done
	return 1
}

# Sockets PID holds open: the listener and its connections.  Other fds
# (a log file, the shim's own timers) may come and go without meaning a
# connection is open.
socket_count() {
	find "/proc/$1/fd" -mindepth 1 -maxdepth 1 -lname 'socket:*' 2>/dev/null | wc -l
}

# User plus system CPU time of every thread of PID, in clock ticks.
cpu_ticks() {
	local stat fields
	stat=$(cat "/proc/$1/stat" 2>/dev/null) || { echo 0; return; }
	# After "pid (comm) " the fields start at the state, field 3 of proc(5).
	read -r -a fields <<<"${stat##*) }"
	echo $((fields[11] + fields[12]))
}

# Per thread of PID, "TID NS": nanoseconds it was runnable (on a CPU or
# waiting for one, from schedstat).  Unlike CPU time this does not shrink
# when other work on the machine starves a spinning server.
runnable_ns() {
	awk '{ split(FILENAME, path, "/"); print path[5], $1 + $2 }' /proc/"$1"/task/*/schedstat 2>/dev/null
}

# runnable_seconds BEFORE_FILE PID: seconds PID's threads were runnable since
# runnable_ns wrote BEFORE_FILE (a thread born since counts from its start).
runnable_seconds() {
	runnable_ns "$2" | awk 'NR == FNR { before[$1] = $2; next }
		{ total += $2 - (($1 in before) ? before[$1] : 0) }
		END { printf "%.2f", total / 1e9 }' "$1" -
}

ticks_to_seconds() {
	awk -v t="$1" -v hz="$clock_ticks" 'BEGIN { printf "%.2f", t / hz }'
}

# Whether decimal A is below (or equal to, with "le") decimal B.
less() {
	awk -v a="$1" -v b="$2" -v op="${3:-lt}" 'BEGIN { exit !(op == "le" ? a <= b : a < b) }'
}

# Seconds since an $EPOCHREALTIME.
elapsed_since() {
	awk -v s="$1" -v e="$EPOCHREALTIME" 'BEGIN { printf "%.2f", e - s }'
}

# The reasons of a failed check, on one line.
joined() {
	local IFS=';'
	printf '%s' "$*" | sed 's/;/; /g'
}

tail_of() {
	tail -n "${2:-3}" "$1" 2>/dev/null | tr '\n' ' ' | cut -c1-300
}

# --- keys, cache, environments ---------------------------------------------

printf '%s\n' "$server_priv" >"$work/server.key"
chmod 600 "$work/server.key"
read -r port_threads port_selectors < <(free_ports 2)
cache=$work/cache
for port in "$port_threads" "$port_selectors"; do
	"$cli" nodeurl --key "$work/server.key" --addr "127.0.0.1:$port" --tfo >>"$cache"
done
if ! "$hostile_peer" flight --remote-pub "$server_pub_hex" --size 64 >"$work/flight.bin"; then
	echo "hostile.sh: hostile_peer could not make a first flight" >&2
	exit 1
fi

sanitizer_env=()
asan_runtime=$(ldd "$server_shim" 2>/dev/null | awk '$1 ~ /^libasan\.so/ { print $3; exit }')
if [ -n "$asan_runtime" ]; then
	mkdir -m 1777 "$work/sanitizer"
	sanitizer_env=(ASAN_OPTIONS="detect_leaks=0:log_path=$work/sanitizer/report"
		UBSAN_OPTIONS="print_stacktrace=1:log_path=$work/sanitizer/report")
	note "sanitizer build: preloading $asan_runtime first"
fi
client_env=(env LD_PRELOAD="${asan_runtime:+$asan_runtime }$client_shim" NOISESHIM_CACHE="$cache"
	"${sanitizer_env[@]}")
server_env=(env LD_PRELOAD="${asan_runtime:+$asan_runtime }$server_shim"
	NOISESHIM_KEY="$work/server.key" NOISESHIM_LOG=info "${sanitizer_env[@]}")

# curl deadlocks at startup with libasan preloaded on Debian 12 (see
# server.sh); the python3 downloader stands in for it there.
http_fetch=(curl -sS --fail --max-time 10 -o)
if [ -n "$asan_runtime" ] &&
	! timeout 10 env LD_PRELOAD="$asan_runtime" "${sanitizer_env[@]}" curl --version >/dev/null 2>&1; then
	http_fetch=("$python" "$here/wrapped_client.py" get --out)
	note "curl hangs at startup with libasan preloaded; the good http client is python3"
fi

# Two attackers of 500 connections each at most, and the servers' side.
if [ "$(ulimit -n)" -lt 4096 ]; then
	ulimit -n 4096 2>/dev/null
fi

mkdir "$work/www"
page="hostile-ok-$(random_hex 8)"
printf '%s\n' "$page" >"$work/www/page"

check_sanitizer_reports() {
	local report
	[ -n "$asan_runtime" ] || return 0
	for report in "$work"/sanitizer/report.*; do
		[ -e "$report" ] || continue
		[ "${report%.seen}" = "$report" ] || continue
		fail "$1-sanitizer" "$(grep -m 1 -E 'ERROR|runtime error' "$report") (full report: $report.seen)"
		mv "$report" "$report.seen"
	done
}

# --- the two servers ---------------------------------------------------------

servers="threads selectors"
declare -A server_pid server_port server_sockets
server_port[threads]=$port_threads
server_port[selectors]=$port_selectors

# start_server NAME DEADLINE_MS: start it, serve one good client, then take
# the sockets it holds as the baseline.
start_server() {
	local name=$1 deadline=$2 port=${server_port[$1]} count
	local shim=("${server_env[@]}" NOISESHIM_LISTEN="$port" NOISESHIM_HANDSHAKE_TIMEOUT_MS="$deadline"
		NOISESHIM_LOG_FILE="$work/$name.shim.log")
	if [ "$name" = threads ]; then
		# python3 -m http.server with a listen backlog that takes 500
		# connections at once (socketserver's default is 5).
		start_background "$work/$name.log" "${shim[@]}" "$python" -c '
import runpy, socketserver, sys
socketserver.TCPServer.request_queue_size = 1024
sys.argv = ["http.server"] + sys.argv[1:]
runpy.run_module("http.server", run_name="__main__")' "$port" --bind 127.0.0.1 --directory "$work/www"
	else
		start_background "$work/$name.log" "${shim[@]}" "$python" "$here/echo_server.py" \
			--port "$port" --model selectors
	fi
	server_pid[$name]=$started_pid
	if ! wait_listening "$port" "$started_pid"; then
		fail "$name-start" "the server did not start: $(tail_of "$work/$name.log")"
		return 1
	fi
	if ! good_client "$name" "$work/$name.start.good.log"; then
		fail "$name-start" "a good client was not served: $(tail_of "$work/$name.start.good.log")"
		return 1
	fi
	# The good client's socket may take a moment to close: the fewest seen.
	server_sockets[$name]=$(socket_count "$started_pid")
	for _ in 1 2 3 4 5; do
		sleep 0.05
		count=$(socket_count "$started_pid")
		if [ "$count" -lt "${server_sockets[$name]}" ]; then
			server_sockets[$name]=$count
		fi
	done
}

stop_server() {
	stop_process "${server_pid[$1]}"
	check_sanitizer_reports "$1"
}

# good_client NAME LOG: a client under the client shim gets a whole answer.
good_client() {
	local name=$1 log=$2 port=${server_port[$1]} text
	if [ "$name" = threads ]; then
		timeout 20 "${client_env[@]}" "${http_fetch[@]}" "$log.got" "http://127.0.0.1:$port/page" \
			>"$log" 2>&1 && [ "$(cat "$log.got" 2>/dev/null)" = "$page" ]
	else
		text="good client $(random_hex 8)"
		timeout 20 "${client_env[@]}" "$python" "$here/wrapped_client.py" once --port "$port" \
			--payload "$text" >"$log" 2>&1
	fi
}

# good_command NAME: sets good_cmd to a good client's command line, for
# hostile_client.py stall to run.
good_command() {
	local port=${server_port[$1]}
	if [ "$1" = threads ]; then
		good_cmd=("${client_env[@]}" "${http_fetch[@]}" "$work/$1.during.got" "http://127.0.0.1:$port/page")
	else
		good_cmd=("${client_env[@]}" "$python" "$here/wrapped_client.py" once --port "$port"
			--payload during-stalls)
	fi
}

# wait_sockets_back NAME SECONDS: until the server's sockets are at the baseline; prints
# the time it took, or nothing.
wait_sockets_back() {
	local pid=${server_pid[$1]} start=$EPOCHREALTIME
	while true; do
		if [ "$(socket_count "$pid")" -le "${server_sockets[$1]}" ]; then
			elapsed_since "$start"
			return 0
		fi
		less "$(elapsed_since "$start")" "$2" || return 1
		sleep 0.05
	done
}

log_lines() {
	wc -l <"$work/$1.shim.log" 2>/dev/null || echo 0
}

# wait_line FILE PATTERN PID: until a line of FILE matches, PID exits, or 10 s pass.
wait_line() {
	for _ in $(seq 200); do
		grep -q "$2" "$1" 2>/dev/null && return 0
		alive "$3" || return 1
		sleep 0.05
	done
	return 1
}

# wait_exit_within PID SECONDS: until it exits or SECONDS pass.
wait_exit_within() {
	local start=$EPOCHREALTIME
	while alive "$1" && less "$(elapsed_since "$start")" "$2"; do
		sleep 0.05
	done
}

# wait_exit PID: until it exits (at most 20 s; then it is stopped).
wait_exit() {
	for _ in $(seq 400); do
		alive "$1" || break
		sleep 0.05
	done
	stop_process "$1"
}

# --- 1. an end or a reset at each point of the handshake -----------------

# attack NAME POINT END: one connection that stops at POINT and ends with
# END (fin or rst); prints what the attacker saw.
attack() {
	local port=${server_port[$1]} point=$2 end=$3
	case $point in
	record-header) timeout 20 "$hostile_peer" partial-record --connect "127.0.0.1:$port" \
		--remote-pub "$server_pub_hex" --send 2 --end "$end" 2>&1 ;;
	record-body) timeout 20 "$hostile_peer" partial-record --connect "127.0.0.1:$port" \
		--remote-pub "$server_pub_hex" --send 40 --end "$end" 2>&1 ;;
	*) timeout 20 "$python" "$here/hostile_client.py" point --port "$port" --stage "$point" \
		--end "$end" --flight "$work/flight.bin" 2>&1 ;;
	esac
}

# After one attack on every server at once: each stays idle for 1 s, drops
# the connection within that second and then serves a good client.  A
# server that fails is restarted, so that the next attack meets a clean one.
judge_point() {
	local point=$1 end=$2 name reasons seen start waiting
	declare -A cpu_before cpu_used runnable back_after
	start=$EPOCHREALTIME
	for name in $servers; do
		cpu_before[$name]=$(cpu_ticks "${server_pid[$name]}")
		runnable_ns "${server_pid[$name]}" >"$work/runnable.$name"
	done
	while less "$(elapsed_since "$start")" "$close_within"; do
		waiting=0
		for name in $servers; do
			[ -z "${back_after[$name]:-}" ] || continue
			if [ "$(socket_count "${server_pid[$name]}")" -le "${server_sockets[$name]}" ]; then
				back_after[$name]=$(elapsed_since "$start")
			else
				waiting=1
			fi
		done
		[ "$waiting" -eq 1 ] || break
		sleep 0.05
	done
	sleep "$(awk -v left="$(elapsed_since "$start")" 'BEGIN { left = 1 - left; print (left > 0 ? left : 0) }')"
	# Every server's second ends now, before any good client adds its work.
	for name in $servers; do
		cpu_used[$name]=$(ticks_to_seconds $(($(cpu_ticks "${server_pid[$name]}") - cpu_before[$name])))
		runnable[$name]=$(runnable_seconds "$work/runnable.$name" "${server_pid[$name]}")
	done
	for name in $servers; do
		local pid=${server_pid[$name]} used=${cpu_used[$name]}
		reasons=()
		seen=$(tail -n 1 "$work/attack.$name.out")
		case $end:$seen in
		fin:closed* | rst:reset) ;;
		*) reasons+=("the attacker saw \"$seen\", not the server closing") ;;
		esac
		less "$used" "$cpu_limit_after_attack" ||
			reasons+=("server CPU +$used s in the second after the attack (limit $cpu_limit_after_attack)")
		less "${runnable[$name]}" "$cpu_limit_after_attack" ||
			reasons+=("server threads runnable ${runnable[$name]} s in that second (limit $cpu_limit_after_attack)")
		[ -n "${back_after[$name]:-}" ] ||
			reasons+=("sockets $(socket_count "$pid") > baseline ${server_sockets[$name]} after $close_within s")
		alive "$pid" || reasons+=("the server died: $(tail_of "$work/$name.log")")
		# A server that failed already is restarted; only a clean one is asked to serve.
		if [ ${#reasons[@]} -eq 0 ] && ! good_client "$name" "$work/$name.$point.$end.good.log"; then
			reasons+=("a good client was not served: $(tail_of "$work/$name.$point.$end.good.log")")
		fi
		if [ ${#reasons[@]} -eq 0 ]; then
			pass "$name-$point-$end"
		else
			fail "$name-$point-$end" "$(joined "${reasons[@]}")"
			stop_server "$name"
			start_server "$name" "$point_deadline_ms"
		fi
	done
}

test_points() {
	local point end name attackers
	for name in $servers; do
		start_server "$name" "$point_deadline_ms" || return
	done
	for point in prefix-1 prefix-2 prefix-3 prefix-4 prefix-5 prefix-6 prefix-7 header-2 \
		msg1-half record-header record-body; do
		for end in fin rst; do
			attackers=()
			for name in $servers; do
				attack "$name" "$point" "$end" >"$work/attack.$name.out" &
				attackers+=($!)
			done
			wait "${attackers[@]}"
			judge_point "$point" "$end"
		done
	done
	for name in $servers; do
		stop_server "$name"
	done
}

# --- 2. stalled half-handshakes and the handshake deadline -------------------

# stall_fields RESULT_LINE: sets the variables of hostile_client.py's result.
stall_fields() {
	local field
	for field in $1; do
		case $field in
		opened=* | closed=* | answered=* | first=* | last=* | good_rc=* | good_seconds=* | closed_before_good=*)
			printf -v "stall_${field%%=*}" '%s' "${field#*=}" ;;
		esac
	done
}

test_stalls() {
	local name out reasons back slow_payload slow_expect
	for name in $servers; do
		start_server "$name" "$stall_deadline_ms" || continue
		local pid=${server_pid[$name]} log_before log_held attacker
		log_before=$(log_lines "$name")
		good_command "$name"
		start_background "$work/$name.stalls.out" "$python" "$here/hostile_client.py" stall \
			--port "${server_port[$name]}" --group "$stall_count:msg1-half" \
			--flight "$work/flight.bin" --wait "$stall_attacker_wait" \
			--good-log "$work/$name.during.log" -- "${good_cmd[@]}"
		attacker=$started_pid
		wait_line "$work/$name.stalls.out" '^opened' "$attacker"
		# What the shim logs while the attacker still holds its side (it
		# gives up only after the limit): its own closes would be logged too.
		wait_exit_within "$attacker" "$stall_closed_within"
		log_held=$(log_lines "$name")
		wait_exit "$attacker"
		out=$(cat "$work/$name.stalls.out")
		note "$name stalls: $(printf '%s' "$out" | tail -n 1)"
		stall_opened=0 stall_closed=0 stall_answered=0 stall_first=-1 stall_last=-1
		stall_good_rc=-1 stall_good_seconds=-1 stall_closed_before_good=-1
		stall_fields "$(printf '%s' "$out" | grep '^result ')"

		reasons=()
		[ "$stall_opened" -eq "$stall_count" ] ||
			reasons+=("only $stall_opened of $stall_count opened: $(printf '%s' "$out" | tail -n 1)")
		[ "$stall_closed" -eq "$stall_opened" ] ||
			reasons+=("the server closed $stall_closed of $stall_opened")
		[ "$stall_answered" -eq 0 ] || reasons+=("$stall_answered got bytes back")
		[ "$stall_closed" -gt 0 ] && ! less "$stall_last" "$stall_closed_within" le &&
			reasons+=("the last was closed $stall_last s after its connect (limit $stall_closed_within)")
		back=$(wait_sockets_back "$name" "$close_within")
		[ -n "$back" ] || reasons+=("sockets $(socket_count "$pid") > baseline ${server_sockets[$name]}")
		if [ ${#reasons[@]} -eq 0 ]; then
			pass "$name-stalls-closed-by-deadline"
		else
			fail "$name-stalls-closed-by-deadline" "$(joined "${reasons[@]}")"
		fi

		# Closing a connection at the deadline is a refusal: the log says why.
		if [ "$log_held" -gt "$log_before" ]; then
			pass "$name-stalls-logged"
			note "$name shim log: $(tail -n 1 "$work/$name.shim.log" | cut -c1-200)"
		else
			fail "$name-stalls-logged" "nothing in $work/$name.shim.log while the stalled connections were held"
		fi

		if [ "$stall_closed" -gt 0 ] && less "$stall_first" "$stall_not_before"; then
			fail "$name-stalls-not-closed-early" "one was closed $stall_first s after its connect," \
				"before the ${stall_deadline_ms} ms deadline"
		elif [ "$stall_closed" -gt 0 ]; then
			pass "$name-stalls-not-closed-early"
		else
			fail "$name-stalls-not-closed-early" "none was closed, so there is no time to check"
		fi

		if [ "$stall_good_rc" -eq 0 ] && [ "$stall_closed_before_good" -eq 0 ]; then
			pass "$name-good-client-during-stalls"
			note "$name: good client served in $stall_good_seconds s with $stall_count stalled"
		elif [ "$stall_good_rc" -eq 0 ]; then
			fail "$name-good-client-during-stalls" "served only after $stall_closed_before_good" \
				"stalled connections were closed ($stall_good_seconds s)"
		else
			fail "$name-good-client-during-stalls" "exit $stall_good_rc: $(tail_of "$work/$name.during.log")"
		fi

		# A client that takes longer than a round trip but less than the
		# deadline must still get through: five pieces 300 ms apart.
		if [ "$name" = threads ]; then
			slow_payload=$'GET /page HTTP/1.0\r\n\r\n' slow_expect="HTTP/1.0 200"
		else
			slow_payload="slow client $(random_hex 8)" slow_expect=$slow_payload
		fi
		out=$(timeout 20 "$hostile_peer" slow --connect "127.0.0.1:${server_port[$name]}" \
			--remote-pub "$server_pub_hex" --payload "$slow_payload" --expect "$slow_expect" \
			--pieces 5 --gap-ms 300 2>&1)
		if [ "$out" = "ok slow" ]; then
			pass "$name-slow-client-within-deadline"
		else
			fail "$name-slow-client-within-deadline" "$(printf '%s' "$out" | tail -n 1)"
		fi
		stop_server "$name"
	done
}

# --- 3. what waiting costs -------------------------------------------------

test_readiness() {
	local name out reasons used back
	declare -A attacker cpu_before cpu_used runnable
	for name in $servers; do
		start_server "$name" "$readiness_deadline_ms" || return
	done
	for name in $servers; do
		start_background "$work/$name.readiness.out" "$python" "$here/hostile_client.py" stall \
			--port "${server_port[$name]}" --group "$readiness_clients:prefix-3" \
			--group "$readiness_clients:header-2" --wait "$readiness_attacker_wait"
		attacker[$name]=$started_pid
	done
	for name in $servers; do
		wait_line "$work/$name.readiness.out" '^opened' "${attacker[$name]}"
	done
	for name in $servers; do
		cpu_before[$name]=$(cpu_ticks "${server_pid[$name]}")
		runnable_ns "${server_pid[$name]}" >"$work/runnable.$name"
	done
	sleep "$readiness_window"
	for name in $servers; do
		cpu_used[$name]=$(ticks_to_seconds $(($(cpu_ticks "${server_pid[$name]}") - cpu_before[$name])))
		runnable[$name]=$(runnable_seconds "$work/runnable.$name" "${server_pid[$name]}")
	done
	for name in $servers; do
		used=${cpu_used[$name]}
		note "$name: $((2 * readiness_clients)) waiting clients cost $used s of CPU" \
			"(threads runnable ${runnable[$name]} s) in $readiness_window s"
		if ! grep -q "^opened $((2 * readiness_clients))\$" "$work/$name.readiness.out"; then
			fail "$name-readiness-cpu" "the clients did not all connect: $(tail_of "$work/$name.readiness.out")"
		elif less "$used" "$cpu_limit_after_attack" && less "${runnable[$name]}" "$cpu_limit_after_attack"; then
			pass "$name-readiness-cpu"
		else
			fail "$name-readiness-cpu" "server CPU +$used s, threads runnable ${runnable[$name]} s," \
				"in $readiness_window s (limit $cpu_limit_after_attack) with" \
				"$((2 * readiness_clients)) clients waiting"
		fi
	done
	for name in $servers; do
		wait_exit "${attacker[$name]}"
		out=$(grep '^result ' "$work/$name.readiness.out")
		stall_opened=0 stall_closed=0 stall_answered=0 stall_first=-1 stall_last=-1
		stall_fields "$out"
		reasons=()
		[ "$stall_closed" -eq $((2 * readiness_clients)) ] ||
			reasons+=("the server closed $stall_closed of $((2 * readiness_clients))")
		[ "$stall_answered" -eq 0 ] || reasons+=("$stall_answered got bytes back")
		[ "$stall_closed" -gt 0 ] && ! less "$stall_last" "$readiness_closed_within" le &&
			reasons+=("the last was closed $stall_last s after its connect (limit $readiness_closed_within)")
		back=$(wait_sockets_back "$name" "$close_within")
		[ -n "$back" ] || reasons+=("sockets $(socket_count "${server_pid[$name]}") > baseline ${server_sockets[$name]}")
		if [ ${#reasons[@]} -eq 0 ]; then
			pass "$name-readiness-closed-by-deadline"
		else
			fail "$name-readiness-closed-by-deadline" "$(joined "${reasons[@]}")"
		fi
		stop_server "$name"
	done
}

for phase in points stalls readiness; do
	started=$EPOCHREALTIME
	"test_$phase"
	note "$phase: $(elapsed_since "$started") s"
done
# A suite that ran nothing proves nothing.
[ $((passed + failed)) -gt 0 ] || fail hostile "no check ran"
[ "$failed" -eq 0 ] || note "logs kept in $work"
echo "hostile: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
