#!/bin/bash
# Integration tests of the accept shim: unmodified servers (python3
# http.server, redis-server, nginx, python echo servers) run under
# libnoiseshim-server.so and are reached by programs under the client shim,
# by gopeer (an independent Go initiator on flynn/noise) and by hostile
# raw-socket clients.  Everything stays on 127.0.0.1.
#
#   tests/integration/server.sh BUILD_DIR
#
# BUILD_DIR (build, or build/asan for the ASan+UBSan build) must hold
# libnoiseshim.so, libnoiseshim-server.so, noiseshim and tests/gopeer.
# Prints "ok NAME" or "FAIL NAME: reason" per check and "# ..." for
# timings and figures, then a summary line; exits 1 if any check failed.
# The work directory, with every log, is kept when a check fails.
set -u

if [ $# -ne 1 ]; then
	echo "usage: $0 BUILD_DIR" >&2
	exit 2
fi
if ! build=$(cd "$1" 2>/dev/null && pwd); then
	echo "server.sh: no directory $1" >&2
	exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/integration/harness.sh
. "$here/harness.sh"
client_shim=$build/libnoiseshim.so
server_shim=$build/libnoiseshim-server.so
cli=$build/noiseshim
gopeer=$build/tests/gopeer
for file in "$client_shim" "$server_shim" "$cli" "$gopeer"; do
	if [ ! -f "$file" ]; then
		echo "server.sh: $file is missing: build the shims, the CLI and gopeer into $1 first" >&2
		exit 2
	fi
done
# The interpreter itself, not a version-manager wrapper script, so that
# the PIDs the tests watch are the servers' own.
if ! python=$("${PYTHON:-python3}" -c 'import sys; print(sys.executable)'); then
	echo "server.sh: python3 is not installed" >&2
	exit 2
fi
PATH=$PATH:/usr/sbin
for program in curl redis-server redis-cli redis-benchmark nginx sha256sum; do
	if ! command -v "$program" >/dev/null; then
		echo "server.sh: $program is not installed" >&2
		exit 2
	fi
done

# The fixed test key; its public key in hex for gopeer.
server_priv=0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20
server_pub_hex=07a37cbc142093c8b755dc1b10e86cb426374ad16aa853ed0bdfc0b2b86d1c7c
gopeer_sizes="0 1 65535 65536 1000000"
storm_connections=1000
concurrent_connections=1000
# A leak of one receive buffer (64 KiB) per bad connection would add
# about 64 MiB over the storm; allocator slack stays far below this.
rss_growth_limit_kb=$((32 * 1024))
# ASan holds freed memory in a quarantine (256 MiB by default) to catch use
# after free; the server watched for leaks gets a small one, added to the
# limit, so that RSS growth still means a leak.
leak_watch_quarantine_mb=16

# Nothing of the caller's may leak into the programs under test.
unset LD_PRELOAD
for name in $(compgen -e); do
	case $name in NOISESHIM_*) unset "$name" ;; esac
done

passed=0 failed=0
background_pids=()
work=$(mktemp -d /tmp/noiseshim-server.XXXXXX)
# nginx workers drop to an unprivileged user and must read the files served.
chmod 755 "$work"
# The replay window and the counters files of the programs started here stay
# in the work directory rather than in /run/noiseshim, so that a run leaves
# nothing behind (a window there is 32 MiB per server key).
export NOISESHIM_REPLAY_FILE=$work/replay.map NOISESHIM_STATS_DIR=$work/stats

# Every process still running is ours, started below; stop each by PID.
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

now() {
	date +%s.%N
}

seconds_since() {
	awk -v start="$1" -v end="$(now)" 'BEGIN { printf "%.2f", end - start }'
}

sha256() {
	sha256sum "$1" | cut -d' ' -f1
}

# SIGTERM, then SIGKILL after 5 s to the process and the children it had
# (nginx workers outlive a master killed with SIGKILL).
stop_process() {
	local pid=$1 children
	alive "$pid" || { wait "$pid" 2>/dev/null; return 0; }
	children=$(cat /proc/"$pid"/task/*/children 2>/dev/null)
	kill -TERM "$pid" 2>/dev/null
	for _ in $(seq 50); do
		alive "$pid" || break
		sleep 0.1
	done
	if alive "$pid"; then
		# shellcheck disable=SC2086  # one PID per word
		kill -KILL "$pid" $children 2>/dev/null
	fi
	wait "$pid" 2>/dev/null
	local kept=()
	for other in "${background_pids[@]}"; do
		[ "$other" = "$pid" ] || kept+=("$other")
	done
	background_pids=("${kept[@]}")
}

fd_count() {
	find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l
}

rss_kb() {
	awk '$1 == "VmRSS:" { print $2 }' "/proc/$1/status"
}

# --- keys, cache and the environments of the two sides ---------------------

printf '%s\n' "$server_priv" >"$work/server.key"
chmod 600 "$work/server.key"
# A key no server here holds: first flights made for it must be refused.
if ! "$cli" keygen "$work/other.key" >/dev/null; then
	echo "server.sh: noiseshim keygen failed" >&2
	exit 1
fi

read -r port_http port_redis port_nginx port_mixed port_echo port_replay port_record \
	port_record_other port_concurrent port_relay port_relay_upstream < <(free_ports 11)

cache=$work/cache
for port in "$port_http" "$port_redis" "$port_nginx" "$port_mixed" "$port_echo" \
	"$port_replay" "$port_record" "$port_concurrent" "$port_relay" "$port_relay_upstream"; do
	"$cli" nodeurl --key "$work/server.key" --addr "127.0.0.1:$port" --tfo >>"$cache"
done
"$cli" nodeurl --key "$work/other.key" --addr "127.0.0.1:$port_record_other" --tfo >>"$cache"

# A sanitizer build links libasan into the shims; programs built without it
# need the runtime loaded first.  Their own leaks are not under test.
sanitizer_env=()
asan_runtime=$(ldd "$server_shim" 2>/dev/null | awk '$1 ~ /^libasan\.so/ { print $3; exit }')
if [ -n "$asan_runtime" ]; then
	# Reports go to files, one per process, which each test then looks for;
	# nginx workers run unprivileged, hence a world-writable directory.
	mkdir -m 1777 "$work/sanitizer"
	asan_options="detect_leaks=0:log_path=$work/sanitizer/report"
	sanitizer_env=(ASAN_OPTIONS="$asan_options"
		UBSAN_OPTIONS="print_stacktrace=1:log_path=$work/sanitizer/report")
	note "sanitizer build: preloading $asan_runtime first"
fi
client_env=(env LD_PRELOAD="${asan_runtime:+$asan_runtime }$client_shim" NOISESHIM_CACHE="$cache"
	"${sanitizer_env[@]}")
server_env=(env LD_PRELOAD="${asan_runtime:+$asan_runtime }$server_shim"
	NOISESHIM_KEY="$work/server.key" "${sanitizer_env[@]}")
leak_watch_env=("${server_env[@]}")
if [ -n "$asan_runtime" ]; then
	leak_watch_env+=(ASAN_OPTIONS="$asan_options:quarantine_size_mb=$leak_watch_quarantine_mb")
	rss_growth_limit_kb=$((rss_growth_limit_kb + leak_watch_quarantine_mb * 1024))
fi

# Downloads: COMMAND FILE URL.  Under the client shim that is curl, unless
# curl cannot start with the ASan runtime preloaded: on Debian 12 it
# deadlocks in setlocale before main, shim or no shim, because
# libp11-kit's constructor runs before ASan has initialised and ASan's
# late initialisation re-enters the locale lock that newlocale holds.
plain_fetch=(curl -sS --fail -o)
shim_fetch=("${client_env[@]}" curl -sS --fail -o)
if [ -n "$asan_runtime" ] &&
	! timeout 10 env LD_PRELOAD="$asan_runtime" "${sanitizer_env[@]}" curl --version >/dev/null 2>&1; then
	shim_fetch=("${client_env[@]}" "$python" "$here/wrapped_client.py" get --out)
	note "curl hangs at startup with libasan preloaded; downloads under the client shim use python3"
fi

# One socket per connection in test 7, plus the server's on the same host.
if [ "$(ulimit -n)" -lt $((2 * concurrent_connections + 512)) ]; then
	ulimit -n $((2 * concurrent_connections + 512)) 2>/dev/null
fi

# Any sanitizer report written during test NAME fails it.
check_sanitizer_reports() {
	local report
	[ -n "$asan_runtime" ] || return 0
	for report in "$work"/sanitizer/report.*; do
		[ -e "$report" ] || continue
		fail "$1-sanitizer" "$(grep -m 1 -E 'ERROR|runtime error' "$report") (full report: $report.seen)"
		mv "$report" "$report.seen"
	done
}

# fetch_and_compare NAME URL EXPECTED_FILE FETCH_COMMAND...: download URL
# with the command (shim_fetch or plain_fetch), then compare SHA-256.
fetch_and_compare() {
	local name=$1 url=$2 expected=$3 got=$work/$1.got start rc
	shift 3
	start=$(now)
	timeout 120 "$@" "$got" "$url" >"$work/$name.fetch.log" 2>&1
	rc=$?
	if [ "$rc" -ne 0 ]; then
		fail "$name" "download exit $rc: $(tail_of "$work/$name.fetch.log")"
	elif [ "$(sha256 "$got")" != "$(sha256 "$expected")" ]; then
		fail "$name" "SHA-256 differs: got $(stat -c %s "$got") bytes of $(stat -c %s "$expected")"
	else
		pass "$name"
		note "$name: $(($(stat -c %s "$expected") / 1048576)) MiB in $(seconds_since "$start") s"
	fi
	rm -f "$got"
}

mkdir -m 755 "$work/www"
head -c $((10 * 1048576)) /dev/urandom >"$work/www/file-10m"
head -c $((50 * 1048576)) /dev/urandom >"$work/www/file-50m"
chmod 644 "$work/www"/*

# --- 1. python3 http.server -------------------------------------------------

test_http_server() {
	start_background "$work/http.log" "${server_env[@]}" NOISESHIM_LISTEN="$port_http" \
		"$python" -m http.server "$port_http" --bind 127.0.0.1 --directory "$work/www"
	local pid=$started_pid
	if ! wait_listening "$port_http" "$pid"; then
		fail http-10m "http.server did not start: $(tail_of "$work/http.log")"
		return
	fi
	fetch_and_compare http-10m "http://127.0.0.1:$port_http/file-10m" "$work/www/file-10m" \
		"${shim_fetch[@]}"
	stop_process "$pid"
	check_sanitizer_reports http
}

# --- 2. redis ---------------------------------------------------------------

# redis_commands_short_of N: which of set, get, lpush, lpop the server has
# not completed N times without failure, by its own statistics.
redis_commands_short_of() {
	local stats command calls
	stats=$(timeout 20 "${client_env[@]}" redis-cli -h 127.0.0.1 -p "$port_redis" \
		INFO commandstats 2>&1) || return 1
	printf '%s\n' "$stats" | tr -d '\r' >"$work/redis-commandstats.out"
	for command in set get lpush lpop; do
		calls=$(sed -n "s/^cmdstat_$command:calls=\([0-9]*\),.*,rejected_calls=0,failed_calls=0\$/\1/p" \
			"$work/redis-commandstats.out")
		[ "${calls:-0}" -ge "$1" ] || printf ' %s' "$command"
	done
}

test_redis() {
	local out value start rc short
	start_background "$work/redis.log" "${server_env[@]}" NOISESHIM_LISTEN="$port_redis" \
		redis-server --port "$port_redis" --bind 127.0.0.1 --save '' --appendonly no \
		--dir "$work" --daemonize no
	local pid=$started_pid
	if ! wait_listening "$port_redis" "$pid"; then
		fail redis-benchmark "redis-server did not start: $(tail_of "$work/redis.log")"
		return
	fi

	start=$(now)
	timeout 300 "${client_env[@]}" redis-benchmark -h 127.0.0.1 -p "$port_redis" \
		-n 100000 -c 50 -t set,get,lpush,lpop -q >"$work/redis-benchmark.out" 2>&1
	rc=$?
	# -q redraws its progress line with carriage returns.
	out=$(tr '\r' '\n' <"$work/redis-benchmark.out")
	local missing=""
	for command in SET GET LPUSH LPOP; do
		printf '%s\n' "$out" | grep -q "^$command: [0-9.]* requests per second" ||
			missing="$missing $command"
	done
	if [ "$rc" -ne 0 ]; then
		fail redis-benchmark "exit $rc: $(tail_of "$work/redis-benchmark.out")"
	elif [ -n "$missing" ]; then
		fail redis-benchmark "no result for$missing: $(tail_of "$work/redis-benchmark.out")"
	elif printf '%s\n' "$out" | grep -qi error; then
		fail redis-benchmark "$(printf '%s\n' "$out" | grep -i -m 1 error)"
	elif ! short=$(redis_commands_short_of 100000); then
		fail redis-benchmark "could not read the server's command statistics"
	elif [ -n "$short" ]; then
		fail redis-benchmark "the server counts fewer than 100000 successful calls of:$short"
	else
		pass redis-benchmark
		note "redis-benchmark in $(seconds_since "$start") s:" \
			"$(printf '%s\n' "$out" | grep 'requests per second' | sed 's/,.*//' | tr '\n' ';')"
	fi

	value=value-$(random_hex 8)
	out=$(timeout 20 "${client_env[@]}" redis-cli -h 127.0.0.1 -p "$port_redis" \
		SET noiseshim-key "$value" 2>&1)
	if [ "$out" != OK ]; then
		fail redis-cli "SET answered: $out"
	else
		out=$(timeout 20 "${client_env[@]}" redis-cli -h 127.0.0.1 -p "$port_redis" \
			GET noiseshim-key 2>&1)
		if [ "$out" = "$value" ]; then
			pass redis-cli
		else
			fail redis-cli "GET answered: $out (expected $value)"
		fi
	fi
	stop_process "$pid"
	check_sanitizer_reports redis
}

# --- 3. nginx: pre-fork workers, epoll, sendfile, writev --------------------

# start_nginx NAME PORT ENV...: a master and two workers serving $work/www.
start_nginx() {
	local name=$1 port=$2 dir=$work/$1
	shift 2
	mkdir -m 755 "$dir"
	cat >"$dir/nginx.conf" <<-EOF
		daemon off;
		master_process on;
		worker_processes 2;
		pid $dir/nginx.pid;
		error_log $dir/error.log warn;
		events {
			use epoll;
			worker_connections 1024;
		}
		http {
			access_log $dir/access.log;
			client_body_temp_path $dir/client_body;
			proxy_temp_path $dir/proxy;
			fastcgi_temp_path $dir/fastcgi;
			uwsgi_temp_path $dir/uwsgi;
			scgi_temp_path $dir/scgi;
			sendfile on;
			server {
				listen 127.0.0.1:$port;
				root $work/www;
			}
		}
	EOF
	start_background "$dir/stderr.log" "${server_env[@]}" NOISESHIM_LISTEN="$port" "$@" \
		nginx -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf"
	if ! wait_listening "$port" "$started_pid"; then
		fail "$name" "nginx did not start: $(tail_of "$dir/error.log") $(tail_of "$dir/stderr.log")"
		return 1
	fi
}

test_nginx() {
	local url=http://127.0.0.1:$port_nginx/file-50m rc
	if start_nginx nginx "$port_nginx"; then
		fetch_and_compare nginx-50m "$url" "$work/www/file-50m" "${shim_fetch[@]}"
		# Without the shim the same request must get nothing at all.
		timeout 30 "${plain_fetch[@]}" "$work/nginx-plain.got" "$url" >"$work/nginx-plain.log" 2>&1
		rc=$?
		if [ "$rc" -ne 0 ] && [ ! -s "$work/nginx-plain.got" ]; then
			pass nginx-plain-refused
		else
			fail nginx-plain-refused "a plaintext client got an answer (curl exit $rc)"
		fi
		stop_process "$started_pid"
	fi
	check_sanitizer_reports nginx

	url=http://127.0.0.1:$port_mixed/file-50m
	if start_nginx nginx-mixed "$port_mixed" NOISESHIM_ACCEPT=mixed; then
		fetch_and_compare nginx-mixed-noise "$url" "$work/www/file-50m" "${shim_fetch[@]}"
		fetch_and_compare nginx-mixed-plain "$url" "$work/www/file-50m" "${plain_fetch[@]}"
		stop_process "$started_pid"
	fi
	check_sanitizer_reports nginx-mixed
}

# --- 4. gopeer, an independent initiator, against a threaded echo server ----

# gopeer sends its bytes in one write, so their head rides in msg1: a
# correct echo proves the 0-RTT payload reached the program.
test_gopeer() {
	local suite size out start
	start_background "$work/echo.log" "${server_env[@]}" NOISESHIM_LISTEN="$port_echo" \
		"$python" "$here/echo_server.py" --port "$port_echo" --model threads
	local pid=$started_pid
	if ! wait_listening "$port_echo" "$pid"; then
		fail gopeer "echo server did not start: $(tail_of "$work/echo.log")"
		return
	fi
	for suite in chachapoly aesgcm; do
		for size in $gopeer_sizes; do
			start=$(now)
			out=$(timeout 60 "$gopeer" initiate --connect "127.0.0.1:$port_echo" \
				--remote-pub "$server_pub_hex" --suite "$suite" --size "$size" 2>&1)
			if [ "$out" = "ok $size" ]; then
				pass "gopeer-$suite-$size"
				note "gopeer-$suite-$size: $(seconds_since "$start") s"
			else
				fail "gopeer-$suite-$size" "$(printf '%s' "$out" | tr '\n' ' ' | cut -c1-300)"
			fi
		done
	done
	stop_process "$pid"
	check_sanitizer_reports gopeer
}

# --- 5. replayed first flights ----------------------------------------------

# The route prefix "DRPC!N!1" and the frame mark, in hex.
flight_start=44525043214e213180

# record_flight NAME PORT PAYLOAD: the first flight a client-shim'd client
# sends to PORT, from a listener that records it and never answers.
record_flight() {
	local name=$1 port=$2 payload=$3 recorder
	start_background "$work/$name.recorder.log" \
		"$python" "$here/raw_client.py" record --port "$port" --out "$work/$name.bin"
	recorder=$started_pid
	if ! wait_listening "$port" "$recorder"; then
		fail "$name" "recorder did not start: $(tail_of "$work/$name.recorder.log")"
		return 1
	fi
	# The client fails by design: its handshake gets no msg2.
	timeout 30 "${client_env[@]}" "$python" "$here/wrapped_client.py" once --port "$port" \
		--payload "$payload" >"$work/$name.client.log" 2>&1
	for _ in $(seq 100); do
		alive "$recorder" || break
		sleep 0.1
	done
	stop_process "$recorder"
	if [ "$(head -c 9 "$work/$name.bin" 2>/dev/null | od -An -tx1 | tr -d ' \n')" != "$flight_start" ]; then
		fail "$name" "no first flight recorded: $(tail_of "$work/$name.recorder.log")" \
			"$(tail_of "$work/$name.client.log")"
		return 1
	fi
}

# Started by test_replay and used again by test_hostile, whose storm
# replays the same flight and watches this server for leaks.
replay_server_pid=

test_replay() {
	local marker first second copies
	marker=replay-marker-$(random_hex 12)
	start_background "$work/replay-echo.log" "${leak_watch_env[@]}" NOISESHIM_LISTEN="$port_replay" \
		NOISESHIM_LOG=warn NOISESHIM_LOG_FILE="$work/replay-shim.log" \
		"$python" "$here/echo_server.py" --port "$port_replay" --model threads \
		--log "$work/replay-payloads.log"
	replay_server_pid=$started_pid
	if ! wait_listening "$port_replay" "$replay_server_pid"; then
		fail replay "echo server did not start: $(tail_of "$work/replay-echo.log")"
		replay_server_pid=
		return
	fi
	# The recorder listens where the cache expects this server, so the
	# flight is made for this server's key.
	record_flight replay-flight "$port_record" "$marker" || return
	record_flight wrong-key-flight "$port_record_other" "wrong-key-$(random_hex 8)" || return
	pass replay-flight-recorded

	first=$(timeout 30 "$python" "$here/raw_client.py" send --port "$port_replay" \
		--flight "$work/replay-flight.bin" 2>&1)
	second=$(timeout 30 "$python" "$here/raw_client.py" send --port "$port_replay" \
		--flight "$work/replay-flight.bin" 2>&1)
	note "replay: first copy got \"$first\", second copy got \"$second\""
	case $first in
	"reply 0 "*) fail replay-first-accepted "the fresh flight got no answer: $first" ;;
	"reply "*) pass replay-first-accepted ;;
	*) fail replay-first-accepted "$first" ;;
	esac
	if [ "$second" = "reply 0 closed" ]; then
		pass replay-second-refused
	else
		fail replay-second-refused "expected \"reply 0 closed\", got \"$second\""
	fi
	copies=$(grep -a -o -F "$marker" "$work/replay-payloads.log" 2>/dev/null | wc -l)
	if [ "$copies" -eq 1 ]; then
		pass replay-delivered-once
	else
		fail replay-delivered-once "the program received the 0-RTT payload $copies times"
	fi
	if grep -qi replay "$work/replay-shim.log" 2>/dev/null; then
		pass replay-logged
		note "shim log: $(grep -i -m 1 replay "$work/replay-shim.log")"
	else
		fail replay-logged "no mention of a replay in the shim log: $(tail_of "$work/replay-shim.log")"
	fi
	check_sanitizer_reports replay
}

# --- 6. hostile input -------------------------------------------------------

# expect_refused NAME ARGS...: a raw_client.py send that the server must
# close without answering a byte.
expect_refused() {
	local name=$1 out
	shift
	out=$(timeout 30 "$python" "$here/raw_client.py" send --port "$port_replay" "$@" 2>&1)
	if [ "$out" = "reply 0 closed" ]; then
		pass "$name"
	else
		fail "$name" "expected \"reply 0 closed\", got \"$(printf '%s' "$out" | tail -n 1)\""
	fi
}

# A good client after hostile ones: the server must still serve.
expect_good_client() {
	local out
	out=$(timeout 60 "$gopeer" initiate --connect "127.0.0.1:$port_replay" \
		--remote-pub "$server_pub_hex" --suite chachapoly --size 100000 2>&1)
	if [ "$out" = "ok 100000" ]; then
		pass "$1"
	else
		fail "$1" "$(printf '%s' "$out" | tr '\n' ' ' | cut -c1-300)"
	fi
}

test_hostile() {
	local pid=$replay_server_pid staller fds_before fds_after rss_before rss_after handed start out
	if [ -z "$pid" ] || ! alive "$pid"; then
		fail hostile "the echo server of the replay test is not running"
		return
	fi
	if [ ! -s "$work/replay-flight.bin" ] || [ ! -s "$work/wrong-key-flight.bin" ]; then
		fail hostile "the replay test recorded no first flights to send"
		return
	fi
	fds_before=$(fd_count "$pid")
	rss_before=$(rss_kb "$pid")
	handed=$(stat -c %s "$work/replay-payloads.log" 2>/dev/null || echo 0)

	start_background "$work/stall.log" "$python" "$here/raw_client.py" stall --port "$port_replay"
	staller=$started_pid
	for _ in $(seq 100); do
		grep -q stalling "$work/stall.log" && break
		alive "$staller" || break
		sleep 0.1
	done
	if grep -q stalling "$work/stall.log"; then
		pass hostile-stall-open
	else
		fail hostile-stall-open "$(tail_of "$work/stall.log")"
	fi

	expect_refused hostile-garbage --case garbage
	expect_refused hostile-wrong-prefix --case wrong-prefix
	expect_refused hostile-truncated --case truncated
	expect_refused hostile-oversized --case oversized
	expect_refused hostile-wrong-key --flight "$work/wrong-key-flight.bin"
	expect_refused hostile-replayed --flight "$work/replay-flight.bin"
	if [ "$(stat -c %s "$work/replay-payloads.log" 2>/dev/null || echo 0)" = "$handed" ]; then
		pass hostile-nothing-delivered
	else
		fail hostile-nothing-delivered "the program was handed bytes from a hostile client"
	fi
	expect_good_client hostile-good-client-while-stalled
	stop_process "$staller"

	start=$(now)
	if out=$(timeout 600 "$python" "$here/raw_client.py" storm --port "$port_replay" \
		--count "$storm_connections" --parallel 8 --flight "$work/wrong-key-flight.bin" \
		--flight "$work/replay-flight.bin" 2>&1); then
		pass hostile-storm
		note "hostile-storm: $out in $(seconds_since "$start") s"
	else
		fail hostile-storm "$(printf '%s' "$out" | tail -n 1)"
	fi
	expect_good_client hostile-good-client-after-storm

	for _ in $(seq 100); do
		fds_after=$(fd_count "$pid")
		[ "$fds_after" -le "$fds_before" ] && break
		sleep 0.1
	done
	note "hostile: server fds $fds_before before, $fds_after after $storm_connections bad connections"
	if [ "$fds_after" -le "$fds_before" ]; then
		pass hostile-fds
	else
		fail hostile-fds "open fds went from $fds_before to $fds_after and stayed there"
	fi
	rss_after=$(rss_kb "$pid")
	note "hostile: server RSS $rss_before kB before, $rss_after kB after"
	if [ $((rss_after - rss_before)) -le "$rss_growth_limit_kb" ]; then
		pass hostile-rss
	else
		fail hostile-rss "RSS grew by $((rss_after - rss_before)) kB (limit $rss_growth_limit_kb kB)"
	fi
	stop_process "$pid"
	check_sanitizer_reports hostile
}

# --- 7. a thousand concurrent connections -----------------------------------

test_concurrent() {
	local out start rc
	start_background "$work/concurrent-echo.log" "${server_env[@]}" \
		NOISESHIM_LISTEN="$port_concurrent" \
		"$python" "$here/echo_server.py" --port "$port_concurrent" --model selectors
	local pid=$started_pid
	if ! wait_listening "$port_concurrent" "$pid"; then
		fail concurrent "echo server did not start: $(tail_of "$work/concurrent-echo.log")"
		return
	fi
	start=$(now)
	out=$(timeout 300 "${client_env[@]}" "$python" "$here/wrapped_client.py" many \
		--port "$port_concurrent" --count "$concurrent_connections" 2>&1)
	rc=$?
	if [ "$rc" -eq 0 ]; then
		pass "concurrent-$concurrent_connections"
		note "concurrent: ${out#ok } ($(seconds_since "$start") s with interpreter start)"
	else
		fail "concurrent-$concurrent_connections" \
			"exit $rc: $(printf '%s' "$out" | tail -n 2 | tr '\n' ' ' | cut -c1-300)"
	fi
	stop_process "$pid"
	check_sanitizer_reports concurrent
}

# --- 8. both shims in one process: a node that serves and dials -------------

test_both_shims() {
	local out rc
	start_background "$work/relay-upstream.log" "${server_env[@]}" \
		NOISESHIM_LISTEN="$port_relay_upstream" \
		"$python" "$here/echo_server.py" --port "$port_relay_upstream"
	local upstream=$started_pid
	# The accept shim for the port it serves, the client shim for the node it dials.
	start_background "$work/relay.log" env \
		LD_PRELOAD="${asan_runtime:+$asan_runtime }$client_shim $server_shim" \
		NOISESHIM_CACHE="$cache" NOISESHIM_KEY="$work/server.key" \
		NOISESHIM_LISTEN="$port_relay" "${sanitizer_env[@]}" \
		"$python" "$here/relay.py" --port "$port_relay" --upstream "$port_relay_upstream"
	local relay=$started_pid
	if ! wait_listening "$port_relay_upstream" "$upstream" || ! wait_listening "$port_relay" "$relay"; then
		fail both-shims "servers did not start: $(tail_of "$work/relay.log")"
	else
		out=$(timeout 60 "${client_env[@]}" "$python" "$here/wrapped_client.py" once \
			--port "$port_relay" --payload "through two Noise hops $(random_hex 8)" 2>&1)
		rc=$?
		if [ "$rc" -eq 0 ]; then
			pass both-shims
		else
			fail both-shims "exit $rc: $(printf '%s' "$out" | tail -n 2 | tr '\n' ' ')"
		fi
	fi
	stop_process "$relay"
	stop_process "$upstream"
	check_sanitizer_reports both-shims
}

test_http_server
test_redis
test_nginx
test_gopeer
test_replay
test_hostile
test_concurrent
test_both_shims

[ "$failed" -eq 0 ] || note "logs kept in $work"
echo "server-shim: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
