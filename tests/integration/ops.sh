#!/bin/bash
# Operations tests of the shims: key rotation (NOISESHIM_KEY listing
# several files, re-read when they change), the client allowlist
# (NOISESHIM_ALLOW), the per-connection log lines at NOISESHIM_LOG=info,
# syslog, the counters that `noiseshim stats` reads, and the settings that
# stop a server from listening or are no variable of ours.  python echo
# servers run under libnoiseshim-server.so and record every byte they are
# handed; python clients run under libnoiseshim.so.  Everything stays on
# 127.0.0.1.
#
#   tests/integration/ops.sh BUILD_DIR
#
# BUILD_DIR (build, or build/asan for the ASan+UBSan build) must hold
# libnoiseshim.so, libnoiseshim-server.so and noiseshim.  Prints "ok NAME"
# or "FAIL NAME: reason" per check and "# ..." for figures, then a summary
# line; exits 1 if any check failed.  The work directory, with every log,
# is kept when a check fails.
set -u

if [ $# -ne 1 ]; then
	echo "usage: $0 BUILD_DIR" >&2
	exit 2
fi
if ! build=$(cd "$1" 2>/dev/null && pwd); then
	echo "ops.sh: no directory $1" >&2
	exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/integration/harness.sh
. "$here/harness.sh"
client_shim=$build/libnoiseshim.so
server_shim=$build/libnoiseshim-server.so
cli=$build/noiseshim
for file in "$client_shim" "$server_shim" "$cli"; do
	if [ ! -f "$file" ]; then
		echo "ops.sh: $file is missing: build the shims and the CLI into $1 first" >&2
		exit 2
	fi
done
# The interpreter itself, not a wrapper script, so that the PIDs the tests
# read counters of are the servers' own.
if ! python=$("${PYTHON:-python3}" -c 'import sys; print(sys.executable)'); then
	echo "ops.sh: python3 is not installed" >&2
	exit 2
fi
if ! version=$("$cli" --version) || [ "${version#noiseshim }" = "$version" ]; then
	echo "ops.sh: noiseshim --version printed \"$version\"" >&2
	exit 2
fi
version=${version#noiseshim }

# A changed key file or allowlist must be in use for the first connection
# this long after the change (the shim looks at most once a second).
reload_wait_s=1.1

# Nothing of the caller's may leak into the programs under test.
unset LD_PRELOAD
for name in $(compgen -e); do
	case $name in NOISESHIM_*) unset "$name" ;; esac
done

passed=0 failed=0
background_pids=()
work=$(mktemp -d /tmp/noiseshim-ops.XXXXXX)

# The namespace of the SYN-data test, unique to this run; made there.
netns=
cleanup() {
	for pid in "${background_pids[@]}"; do
		stop_process "$pid"
	done
	[ -z "$netns" ] || ip netns delete "$netns" 2>/dev/null
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

stop_process() {
	local pid=$1
	alive "$pid" || { wait "$pid" 2>/dev/null; return 0; }
	kill -TERM "$pid" 2>/dev/null
	for _ in $(seq 50); do
		alive "$pid" || break
		sleep 0.1
	done
	alive "$pid" && kill -KILL "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	local kept=()
	for other in "${background_pids[@]}"; do
		[ "$other" = "$pid" ] || kept+=("$other")
	done
	background_pids=("${kept[@]}")
}

# How many times the fixed string occurs in a file (0 when it is missing).
occurrences() {
	grep -a -o -F -- "$1" "$2" 2>/dev/null | wc -l
}

# How many lines of a file match the extended regular expression (0 when it is missing).
matching_lines() {
	grep -a -E -- "$1" "$2" 2>/dev/null | wc -l
}

# --- keys, caches, environments ------------------------------------------------

for key in new old third listed unlisted old-next; do
	if ! "$cli" keygen "$work/$key.key" >/dev/null; then
		echo "ops.sh: noiseshim keygen failed" >&2
		exit 1
	fi
done
listed_pub=$("$cli" pubkey "$work/listed.key")
unlisted_pub=$("$cli" pubkey "$work/unlisted.key")

read -r port_rotate port_allow port_stats port_record port_bad port_syslog port_names < <(free_ports 7)

# cache_for KEY PORT...: a cache naming the server with KEY at each port.
cache_for() {
	local key=$1 port
	shift
	for port in "$@"; do
		"$cli" nodeurl --key "$work/$key.key" --addr "127.0.0.1:$port" --tfo
	done >"$work/$key.cache"
}
cache_for new "$port_rotate" "$port_allow" "$port_stats" "$port_record" "$port_syslog" "$port_names"
cache_for old "$port_rotate"
cache_for third "$port_rotate" "$port_stats"
cache_for old-next "$port_rotate"

# A sanitizer build links libasan into the shims; the programs need the
# runtime loaded first.  Their own leaks are not under test.
sanitizer_env=()
asan_runtime=$(ldd "$server_shim" 2>/dev/null | awk '$1 ~ /^libasan\.so/ { print $3; exit }')
if [ -n "$asan_runtime" ]; then
	mkdir -m 1777 "$work/sanitizer"
	sanitizer_env=(ASAN_OPTIONS="detect_leaks=0:log_path=$work/sanitizer/report"
		UBSAN_OPTIONS="print_stacktrace=1:log_path=$work/sanitizer/report")
	note "sanitizer build: preloading $asan_runtime first"
fi
preload_client="${asan_runtime:+$asan_runtime }$client_shim"
preload_server="${asan_runtime:+$asan_runtime }$server_shim"
stats_dir=$work/stats
mkdir "$stats_dir"
# Every shim's counters file, and every server's replay window, stay in the
# work directory rather than in /run/noiseshim, where a 32 MiB window per new
# key would outlive every run.  The window file is set per server, not
# exported: the doctor checks here see only the settings they name.
export NOISESHIM_STATS_DIR=$stats_dir
replay_file=$work/replay.map

check_sanitizer_reports() {
	local report
	[ -n "$asan_runtime" ] || return 0
	for report in "$work"/sanitizer/report.*; do
		[ -e "$report" ] || continue
		fail "$1-sanitizer" "$(grep -m 1 -E 'ERROR|runtime error' "$report") (full report: $report.seen)"
		mv "$report" "$report.seen"
	done
}

# start_server NAME PORT KEYS [VAR=VALUE...]: the echo server under the
# accept shim, its shim log in NAME.shim.log, every byte it is handed in
# NAME.program; sets $server_pid, or fails NAME-start.
start_server() {
	local name=$1 port=$2 keys=$3
	shift 3
	start_background "$work/$name.server.out" env LD_PRELOAD="$preload_server" \
		NOISESHIM_KEY="$keys" NOISESHIM_LISTEN="$port" NOISESHIM_LOG_FILE="$work/$name.shim.log" \
		NOISESHIM_STATS_DIR="$stats_dir" NOISESHIM_REPLAY_FILE="$replay_file" "${sanitizer_env[@]}" "$@" \
		"$python" "$here/echo_server.py" --port "$port" --model threads --log "$work/$name.program"
	server_pid=$started_pid
	if ! wait_listening "$port" "$server_pid"; then
		fail "$name-start" "the server did not start: $(tail_of "$work/$name.server.out")"
		return 1
	fi
}

# client NAME PORT CACHE PAYLOAD [VAR=VALUE...]: one connection under the
# client shim that sends PAYLOAD and waits for its echo; its shim log at
# info in NAME.shim.log.  Succeeds when the echo came back whole.
client() {
	local name=$1 port=$2 cache=$3 payload=$4
	shift 4
	timeout 30 env LD_PRELOAD="$preload_client" NOISESHIM_CACHE="$work/$cache.cache" \
		NOISESHIM_LOG=info NOISESHIM_LOG_FILE="$work/$name.shim.log" \
		NOISESHIM_STATS_DIR="$stats_dir" "${sanitizer_env[@]}" "$@" \
		"$python" "$here/wrapped_client.py" once --port "$port" --payload "$payload" \
		>"$work/$name.out" 2>&1
}

# expect_served NAME PORT CACHE SERVER [VAR=VALUE...]: a client that must
# get its echo, with its payload handed to SERVER's program exactly once.
expect_served() {
	local name=$1 port=$2 cache=$3 server=$4 payload
	shift 4
	payload=$name-$(random_hex 8)
	if ! client "$name" "$port" "$cache" "$payload" "$@"; then
		fail "$name" "the client failed: $(tail_of "$work/$name.out") $(tail_of "$work/$name.shim.log")"
	elif [ "$(occurrences "$payload" "$work/$server.program")" -ne 1 ]; then
		fail "$name" "the program was handed the payload $(occurrences "$payload" "$work/$server.program") times"
	else
		pass "$name"
	fi
}

# expect_kept_out NAME PORT CACHE SERVER [VAR=VALUE...]: a client that must
# fail, with not one byte of its payload reaching SERVER's program.
expect_kept_out() {
	local name=$1 port=$2 cache=$3 server=$4 payload
	shift 4
	payload=$name-$(random_hex 8)
	if client "$name" "$port" "$cache" "$payload" "$@"; then
		fail "$name" "the client was served: $(tail_of "$work/$name.out")"
	elif [ "$(occurrences "$payload" "$work/$server.program")" -ne 0 ]; then
		fail "$name" "the program was handed the payload of a client it must not see"
	else
		pass "$name"
	fi
}

# served_after_change NAME PORT CACHE SERVER [VAR=VALUE...]: files are
# looked at again at most once a second, so the first connection that
# comes a second after a change must find it.
served_after_change() {
	local name=$1
	shift
	sleep "$reload_wait_s"
	expect_served "$name" "$@"
}

# Replace a file by rename, as editors and configuration tools do.
replace_file() {
	cp "$2" "$1.next" && chmod 600 "$1.next" && mv "$1.next" "$1"
}

# --- 1. key rotation -------------------------------------------------------------

test_rotation() {
	local server=rotate
	start_server "$server" "$port_rotate" "$work/new.key, $work/old.key" NOISESHIM_LOG=info || return
	expect_served rotate-new-key "$port_rotate" new "$server"
	expect_served rotate-old-key "$port_rotate" old "$server"
	expect_kept_out rotate-third-key-refused "$port_rotate" third "$server"
	if grep -q "server key 0\$" "$work/$server.shim.log" && grep -q "server key 1\$" "$work/$server.shim.log"; then
		pass rotate-key-logged
	else
		fail rotate-key-logged "no handshake line names server key 0 and key 1: $(tail_of "$work/$server.shim.log")"
	fi
	if grep -q "msg1 does not decrypt" "$work/$server.shim.log"; then
		pass rotate-third-key-logged
	else
		fail rotate-third-key-logged "no line says why the third key was refused"
	fi

	# The second entry's file gets a new key; no restart.
	replace_file "$work/old.key" "$work/old-next.key"
	served_after_change rotate-reloaded-key "$port_rotate" old-next "$server"
	expect_kept_out rotate-replaced-key-refused "$port_rotate" old "$server"
	expect_served rotate-current-key-kept "$port_rotate" new "$server"

	# A file that no longer loads: the keys loaded before stay, and the log says why once.
	printf 'not a key\n' >"$work/broken.key"
	replace_file "$work/old.key" "$work/broken.key"
	sleep "$reload_wait_s"
	expect_served rotate-bad-reload-keeps-new "$port_rotate" new "$server"
	sleep "$reload_wait_s"
	expect_served rotate-bad-reload-keeps-second "$port_rotate" old-next "$server"
	local reasons
	reasons=$(matching_lines "NOISESHIM_KEY: reload failed: .*old\.key" "$work/$server.shim.log")
	if [ "$reasons" -eq 1 ]; then
		pass rotate-bad-reload-logged-once
	else
		fail rotate-bad-reload-logged-once "the failed reload was logged $reasons times"
	fi
	stop_process "$server_pid"
	check_sanitizer_reports rotate
}

# --- 2. client allowlist ---------------------------------------------------------

test_allowlist() {
	local server=allow refused_lines
	printf '# clients let in\n%s   # the listed client\n\n' "$listed_pub" >"$work/allow.list"
	# At the default log level: a refused client must show without asking for more.
	start_server "$server" "$port_allow" "$work/new.key" NOISESHIM_ALLOW="$work/allow.list" || return
	expect_served allow-listed "$port_allow" new "$server" NOISESHIM_KEY="$work/listed.key"
	expect_kept_out allow-unlisted-refused "$port_allow" new "$server" NOISESHIM_KEY="$work/unlisted.key"
	expect_kept_out allow-fresh-key-refused "$port_allow" new "$server"
	refused_lines=$(matching_lines "error: .*client $unlisted_pub refused" "$work/$server.shim.log")
	if [ "$refused_lines" -eq 1 ]; then
		pass allow-refusal-names-key
	else
		fail allow-refusal-names-key "$refused_lines error lines name $unlisted_pub: $(tail_of "$work/$server.shim.log")"
	fi
	if grep -q "client $listed_pub refused" "$work/$server.shim.log"; then
		fail allow-listed-not-refused "the listed client was logged as refused"
	else
		pass allow-listed-not-refused
	fi
	if grep -q "handshake complete" "$work/$server.shim.log"; then
		fail allow-quiet-by-default "info lines at the default level: $(grep -m 1 'handshake complete' "$work/$server.shim.log")"
	else
		pass allow-quiet-by-default
	fi

	# The list changes: the client it now names gets in, no restart.
	printf '%s\n%s\n' "$listed_pub" "$unlisted_pub" >"$work/allow.next"
	replace_file "$work/allow.list" "$work/allow.next"
	served_after_change allow-reloaded "$port_allow" new "$server" NOISESHIM_KEY="$work/unlisted.key"
	stop_process "$server_pid"
	check_sanitizer_reports allow
}

# expect_listen_refused NAME EXPECTED_TEXT VAR=VALUE...: a server whose
# settings cannot be applied must not listen: listen() fails with EACCES
# and one error line says why.
expect_listen_refused() {
	local name=$1 expected=$2 pid errors
	shift 2
	start_background "$work/$name.server.out" env LD_PRELOAD="$preload_server" \
		NOISESHIM_KEY="$work/new.key" NOISESHIM_LISTEN="$port_bad" \
		NOISESHIM_REPLAY_FILE="$replay_file" "$@" \
		NOISESHIM_LOG_FILE="$work/$name.shim.log" "${sanitizer_env[@]}" \
		"$python" "$here/echo_server.py" --port "$port_bad" --log "$work/$name.program"
	pid=$started_pid
	for _ in $(seq 100); do
		alive "$pid" || break
		listening "$port_bad" && break
		sleep 0.1
	done
	errors=$(matching_lines "error:" "$work/$name.shim.log")
	if listening "$port_bad" || alive "$pid"; then
		fail "$name" "the server listens with $*"
	elif ! grep -q "PermissionError: \[Errno 13\]" "$work/$name.server.out"; then
		fail "$name" "listen() did not fail with EACCES: $(tail_of "$work/$name.server.out")"
	elif [ "$errors" -ne 1 ] || ! grep "listening refused: " "$work/$name.shim.log" | grep -qF -- "$expected"; then
		fail "$name" "expected one error line naming $expected, got $errors: $(tail_of "$work/$name.shim.log")"
	else
		pass "$name"
	fi
	stop_process "$pid"
}

test_bad_allowlist() {
	printf '%s\nnot-a-key\n' "$listed_pub" >"$work/bad.list"
	expect_listen_refused allow-bad-line-refuses-listen "NOISESHIM_ALLOW: $work/bad.list:2" \
		NOISESHIM_ALLOW="$work/bad.list"
	expect_listen_refused allow-missing-refuses-listen "NOISESHIM_ALLOW: $work/missing.list" \
		NOISESHIM_ALLOW="$work/missing.list"
	check_sanitizer_reports allow-bad
}

# expect_doctor_agrees NAME REFUSED VAR=VALUE...: `noiseshim doctor` with the
# settings that made the server of test REFUSED refuse to listen fails, with
# the shim's own reason on an error line.
expect_doctor_agrees() {
	local name=$1 refused=$2 why
	shift 2
	why=$(sed -n 's/.*listening refused: //p' "$work/$refused.shim.log" | head -n 1)
	env NOISESHIM_KEY="$work/new.key" NOISESHIM_LISTEN="$port_bad" "$@" "$cli" doctor \
		>"$work/$name.out" 2>&1
	if [ $? -ne 1 ]; then
		fail "$name" "doctor did not fail with $*: $(grep -v '^ok' "$work/$name.out" | tail -n 3)"
	elif [ -z "$why" ] || ! grep '^error: ' "$work/$name.out" | grep -qF -- "$why"; then
		fail "$name" "no error line says \"$why\": $(grep '^error' "$work/$name.out")"
	else
		pass "$name"
	fi
}

# A replay store or file that cannot be used refuses to serve, and the doctor says so beforehand.
test_bad_replay_settings() {
	expect_listen_refused replay-store-refuses-listen \
		'NOISESHIM_REPLAY_STORE: "http://x" is not redis://HOST:PORT' NOISESHIM_REPLAY_STORE=http://x
	expect_doctor_agrees replay-store-doctor-agrees replay-store-refuses-listen \
		NOISESHIM_REPLAY_STORE=http://x
	expect_listen_refused replay-file-refuses-listen \
		'NOISESHIM_REPLAY_FILE: "/nonexistent/dir/x"' NOISESHIM_REPLAY_FILE=/nonexistent/dir/x
	expect_doctor_agrees replay-file-doctor-agrees replay-file-refuses-listen \
		NOISESHIM_REPLAY_FILE=/nonexistent/dir/x
	check_sanitizer_reports replay-bad
}

# --- 3. counters and log lines ---------------------------------------------------

# record_flight NAME PAYLOAD: the first flight a listed client sends to
# port_record (a NodeURL of new.key), from a listener that never answers.
record_flight() {
	local name=$1 payload=$2 recorder
	start_background "$work/$name.recorder.log" \
		"$python" "$here/raw_client.py" record --port "$port_record" --out "$work/$name.bin"
	recorder=$started_pid
	if ! wait_listening "$port_record" "$recorder"; then
		fail "$name" "the recorder did not start: $(tail_of "$work/$name.recorder.log")"
		return 1
	fi
	# The client fails by design: its handshake gets no msg2.
	client "$name" "$port_record" new "$payload" NOISESHIM_KEY="$work/listed.key"
	for _ in $(seq 100); do
		alive "$recorder" || break
		sleep 0.1
	done
	stop_process "$recorder"
	[ -s "$work/$name.bin" ] || { fail "$name" "no first flight recorded"; return 1; }
}

# json_field FILE NAME: a number from `noiseshim stats --json` output.
json_field() {
	"$python" -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"
}

test_stats_and_logs() {
	local server=stats good=3 wrong_key=2 refused=2 bytes=0 i payload flight_payload open=-1
	flight_payload=flight-$(random_hex 8)
	record_flight stats-flight "$flight_payload" || return
	printf '%s\n' "$listed_pub" >"$work/stats.list"
	start_server "$server" "$port_stats" "$work/new.key" NOISESHIM_ALLOW="$work/stats.list" \
		NOISESHIM_LOG=info || return
	for i in $(seq "$good"); do
		payload=stats-good-$i-$(random_hex $((i * 4)))
		bytes=$((bytes + ${#payload}))
		client "stats-good-$i" "$port_stats" new "$payload" NOISESHIM_KEY="$work/listed.key" ||
			fail "stats-good-$i" "the client failed: $(tail_of "$work/stats-good-$i.out")"
	done
	for i in $(seq "$wrong_key"); do
		client "stats-wrong-key-$i" "$port_stats" third "wrong-key-$i" NOISESHIM_KEY="$work/listed.key" &&
			fail "stats-wrong-key-$i" "a client with the wrong server key was served"
	done
	for i in $(seq "$refused"); do
		client "stats-refused-$i" "$port_stats" new "refused-$i" NOISESHIM_KEY="$work/unlisted.key" &&
			fail "stats-refused-$i" "an unlisted client was served"
	done
	# The recorded flight twice: a handshake, then a replay.
	timeout 30 "$python" "$here/raw_client.py" send --port "$port_stats" \
		--flight "$work/stats-flight.bin" >"$work/stats-replay-1.out" 2>&1
	timeout 30 "$python" "$here/raw_client.py" send --port "$port_stats" \
		--flight "$work/stats-flight.bin" >"$work/stats-replay-2.out" 2>&1
	bytes=$((bytes + ${#flight_payload}))

	# Every connection has ended once the server closed its side of each.
	for _ in $(seq 50); do
		NOISESHIM_STATS_DIR=$stats_dir "$cli" stats "$server_pid" --json >"$work/stats.json" 2>&1 &&
			open=$(json_field "$work/stats.json" connections_open) && [ "$open" -eq 0 ] && break
		sleep 0.1
	done
	note "stats: $(cat "$work/stats.json")"
	local syn_lines expect field want got
	syn_lines=$(matching_lines "handshake complete: .*SYN data yes" "$work/$server.shim.log")
	expect="handshakes_ok=$((good + 1)) handshakes_failed=$wrong_key replays_refused=1"
	expect="$expect clients_refused=$refused connections_open=0 bytes_in=$bytes bytes_out=$bytes"
	expect="$expect tfo_syn_data=$syn_lines"
	for field in $expect; do
		want=${field#*=}
		got=$(json_field "$work/stats.json" "${field%%=*}" 2>/dev/null)
		if [ "$got" = "$want" ]; then
			pass "stats-${field%%=*}"
		else
			fail "stats-${field%%=*}" "expected $want, got ${got:-nothing}"
		fi
	done

	# The handshake and end lines of the first good connection, on both sides.
	payload=$(grep -a -o "stats-good-1-[0-9a-f]*" "$work/$server.program" | head -n 1)
	local suite='(ChaChaPoly|AESGCM)' peer="127\.0\.0\.1:[0-9]+" n=${#payload}
	if grep -Eq "info: fd [0-9]+, $peer: handshake complete: $suite, [0-9]+ ms, 0-RTT $n bytes, SYN data (yes|no|unknown), client $listed_pub, server key 0\$" \
		"$work/$server.shim.log"; then
		pass log-server-handshake
	else
		fail log-server-handshake "no line with peer, suite, ms, 0-RTT $n bytes, SYN data, client key: $(grep -m 1 'handshake complete' "$work/$server.shim.log")"
	fi
	if grep -Eq "info: fd [0-9]+, 127\.0\.0\.1:$port_stats: handshake complete: $suite, [0-9]+ ms, 0-RTT $n bytes, SYN data (yes|no)\$" \
		"$work/stats-good-1.shim.log"; then
		pass log-client-handshake
	else
		fail log-client-handshake "no line with server, suite, ms, 0-RTT $n bytes, SYN data: $(tail_of "$work/stats-good-1.shim.log")"
	fi
	if grep -Eq "info: $peer: connection ended: $n bytes in, $n bytes out, closed\$" "$work/$server.shim.log"; then
		pass log-server-end
	else
		fail log-server-end "no end line with $n bytes each way: $(grep -m 1 'ended' "$work/$server.shim.log")"
	fi
	if grep -Eq "info: 127\.0\.0\.1:$port_stats: connection ended: $n bytes in, $n bytes out, closed\$" \
		"$work/stats-good-1.shim.log"; then
		pass log-client-end
	else
		fail log-client-end "no end line with $n bytes each way: $(tail_of "$work/stats-good-1.shim.log")"
	fi
	if grep -Eq "info: 127\.0\.0\.1:$port_stats: connection ended: 0 bytes in, [0-9]+ bytes out, failed: .+" \
		"$work/stats-wrong-key-1.shim.log"; then
		pass log-client-end-failed
	else
		fail log-client-end-failed "no failed end line: $(tail_of "$work/stats-wrong-key-1.shim.log")"
	fi
	if grep -q "handshake complete" "$work/stats-wrong-key-1.shim.log" "$work/stats-refused-1.shim.log"; then
		fail log-no-handshake-line-when-failed "a failed handshake was logged as complete"
	else
		pass log-no-handshake-line-when-failed
	fi
	stop_process "$server_pid"
	check_sanitizer_reports stats
}

# The first debug line of a shim process names the release.
test_version_line() {
	local first
	timeout 30 env LD_PRELOAD="$preload_client" NOISESHIM_LOG=debug \
		NOISESHIM_LOG_FILE="$work/version.shim.log" "${sanitizer_env[@]}" "$python" -c 'pass'
	first=$(grep -m 1 ": debug: " "$work/version.shim.log" 2>/dev/null)
	if [ "${first#*: debug: }" = "noiseshim $version, client shim" ]; then
		pass log-version-first
	else
		fail log-version-first "the first debug line is \"$first\", not noiseshim $version"
	fi
}

# --- 4. SYN data -----------------------------------------------------------------

# With TCP Fast Open on both sides (a namespace of its own, where the
# sysctl is this test's), the first connection fetches the cookie and the
# next ones carry data in the SYN: both sides' lines say so, and the
# server's tfo_syn_data counts exactly those.
test_syn_data() {
	local port=7000 i pid yes_server yes_client got
	netns=nsops$$-$(random_hex 3)
	if ! ip netns add "$netns" 2>/dev/null; then
		fail syn-data "cannot make a network namespace (needs root)"
		netns=
		return
	fi
	ip netns exec "$netns" ip link set lo up
	ip netns exec "$netns" sysctl -q -w net.ipv4.tcp_fastopen=3
	"$cli" nodeurl --key "$work/new.key" --addr "127.0.0.1:$port" --tfo >"$work/tfo.cache"
	start_background "$work/tfo.server.out" ip netns exec "$netns" env LD_PRELOAD="$preload_server" \
		NOISESHIM_KEY="$work/new.key" NOISESHIM_LISTEN="$port" NOISESHIM_LOG=info \
		NOISESHIM_LOG_FILE="$work/tfo.shim.log" NOISESHIM_STATS_DIR="$stats_dir" \
		NOISESHIM_REPLAY_FILE="$replay_file" "${sanitizer_env[@]}" \
		"$python" "$here/echo_server.py" --port "$port" --model threads --log "$work/tfo.program"
	pid=$started_pid
	for _ in $(seq 100); do
		grep -q "listening on" "$work/tfo.shim.log" 2>/dev/null && break
		sleep 0.1
	done
	for i in 1 2 3; do
		timeout 30 ip netns exec "$netns" env LD_PRELOAD="$preload_client" \
			NOISESHIM_CACHE="$work/tfo.cache" NOISESHIM_LOG=info \
			NOISESHIM_LOG_FILE="$work/tfo-$i.shim.log" "${sanitizer_env[@]}" \
			"$python" "$here/wrapped_client.py" once --port "$port" --payload "tfo-$i" \
			>"$work/tfo-$i.out" 2>&1 || fail "syn-data-client-$i" "$(tail_of "$work/tfo-$i.out")"
	done
	yes_server=$(matching_lines "handshake complete: .*SYN data yes" "$work/tfo.shim.log")
	yes_client=$(cat "$work"/tfo-[23].shim.log | grep -c "handshake complete: .*SYN data yes\$")
	if [ "$yes_server" -eq 2 ] && [ "$yes_client" -eq 2 ] &&
		grep -q "handshake complete: .*SYN data no\$" "$work/tfo-1.shim.log"; then
		pass syn-data-logged
	else
		fail syn-data-logged "expected no, yes, yes on both sides; server said yes $yes_server times, the later clients $yes_client: $(tail_of "$work/tfo.shim.log")"
	fi
	# The server's own namespace sees the same counters file.
	NOISESHIM_STATS_DIR=$stats_dir "$cli" stats --json "$pid" >"$work/tfo.json" 2>&1
	got=$(json_field "$work/tfo.json" tfo_syn_data 2>/dev/null)
	if [ "$got" = 2 ]; then
		pass syn-data-counted
	else
		fail syn-data-counted "tfo_syn_data is ${got:-missing} after two SYNs with data: $(cat "$work/tfo.json")"
	fi
	stop_process "$pid"
	ip netns delete "$netns"
	netns=
	check_sanitizer_reports syn-data
}

# --- 5. syslog -------------------------------------------------------------------

# NOISESHIM_LOG_FILE=syslog: the lines reach /dev/log.  Done in a mount
# namespace whose /dev holds a /dev/log that this test listens on, so the
# machine's own logging is left alone.
test_syslog() {
	local sock=$work/syslog.sock listener
	if ! unshare -m true 2>/dev/null; then
		fail syslog "cannot make a mount namespace (needs root)"
		return
	fi
	start_background "$work/syslog.received" "$python" -u -c '
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
print("ready", flush=True)
while True:
    print(s.recv(4096).decode(errors="replace"), flush=True)' "$sock"
	listener=$started_pid
	for _ in $(seq 50); do
		grep -q ready "$work/syslog.received" 2>/dev/null && break
		sleep 0.1
	done
	start_server syslog "$port_syslog" "$work/new.key" NOISESHIM_LOG=info || { stop_process "$listener"; return; }
	local payload=syslog-$(random_hex 8)
	mkdir "$work/dev"
	# shellcheck disable=SC2016  # expanded by the inner shell
	timeout 30 unshare -m sh -c '
		mount --make-rprivate / && mount --rbind /dev "$1" && mount -t tmpfs tmpfs /dev &&
		for f in null zero random urandom; do touch /dev/$f && mount --bind "$1/$f" /dev/$f; done &&
		ln -s "$2" /dev/log && shift 2 && exec "$@"' sh "$work/dev" "$sock" \
		env LD_PRELOAD="$preload_client" NOISESHIM_CACHE="$work/new.cache" NOISESHIM_LOG=info \
		NOISESHIM_LOG_FILE=syslog "${sanitizer_env[@]}" \
		"$python" "$here/wrapped_client.py" once --port "$port_syslog" --payload "$payload" \
		>"$work/syslog.out" 2>&1
	sleep 0.2
	if ! grep -q "^ok once" "$work/syslog.out"; then
		fail syslog "the client failed: $(tail_of "$work/syslog.out")"
	elif grep -Eq "^<30>.*noiseshim\[[0-9]+\]: info: fd [0-9]+, 127\.0\.0\.1:$port_syslog: handshake complete" \
		"$work/syslog.received"; then
		pass syslog
	else
		fail syslog "no handshake line at daemon.info on /dev/log: $(tail_of "$work/syslog.received")"
	fi
	if grep -q "noiseshim" "$work/syslog.out"; then
		fail syslog-not-on-stderr "with syslog, lines still reach stderr: $(tail_of "$work/syslog.out")"
	else
		pass syslog-not-on-stderr
	fi
	stop_process "$server_pid"
	stop_process "$listener"
	check_sanitizer_reports syslog
}

# --- 6. variable names -----------------------------------------------------------

# A NOISESHIM_* variable that is none of ours is one error line at start,
# naming the variable it is likely a typo of.
test_unknown_variable() {
	local lines
	timeout 30 env LD_PRELOAD="$preload_client" NOISESHIM_LISTN=8000 \
		NOISESHIM_LOG_FILE="$work/typo.shim.log" "${sanitizer_env[@]}" "$python" -c 'pass'
	lines=$(matching_lines "error: " "$work/typo.shim.log")
	if [ "$lines" -eq 1 ] && grep -qF 'error: environment: unknown variable NOISESHIM_LISTN="8000"; did you mean NOISESHIM_LISTEN?' \
		"$work/typo.shim.log"; then
		pass config-unknown-variable-logged
	else
		fail config-unknown-variable-logged "expected one error line naming NOISESHIM_LISTEN, got $lines: $(tail_of "$work/typo.shim.log")"
	fi
}

# The names noiseshim sets itself are no typo: a client execs a new image
# that takes its wrapped connection over (NOISESHIM_INHERIT), with the
# counters' directory and a config file set; neither image says a word.
test_own_variables() {
	local server=names payload=names-$(random_hex 8)
	start_server "$server" "$port_names" "$work/new.key" || return
	: >"$work/empty.conf"
	timeout 30 env LD_PRELOAD="$preload_client" NOISESHIM_CACHE="$work/new.cache" \
		NOISESHIM_CONFIG="$work/empty.conf" NOISESHIM_STATS_DIR="$stats_dir" \
		NOISESHIM_LOG_FILE="$work/names.shim.log" "${sanitizer_env[@]}" "$python" -c '
import os, socket, sys
port, payload = int(sys.argv[1]), sys.argv[2]
s = socket.create_connection(("127.0.0.1", port), timeout=30)
s.sendall(b"before ")
if s.recv(64) != b"before ":
    sys.exit("no echo before exec")
os.set_inheritable(s.fileno(), True)
os.execv(sys.executable, [sys.executable, "-c", """
import socket, sys
s = socket.socket(fileno=int(sys.argv[1]))
s.settimeout(30)
s.sendall(sys.argv[2].encode())
got = b""
while len(got) < len(sys.argv[2]):
    chunk = s.recv(4096)
    if not chunk:
        break
    got += chunk
print("ok" if got == sys.argv[2].encode() else "echo differs: %r" % got)
""", str(s.fileno()), payload])' "$port_names" "$payload" >"$work/names.out" 2>&1
	if ! grep -qx ok "$work/names.out" || [ "$(occurrences "$payload" "$work/$server.program")" -ne 1 ]; then
		fail config-handover "the exec'd image did not carry on the wrapped connection: $(tail_of "$work/names.out") $(tail_of "$work/names.shim.log")"
	else
		pass config-handover
	fi
	if grep -q "unknown variable" "$work/names.shim.log" "$work/$server.shim.log" 2>/dev/null; then
		fail config-own-variables-not-flagged "$(grep -h 'unknown variable' "$work/names.shim.log" "$work/$server.shim.log")"
	else
		pass config-own-variables-not-flagged
	fi
	stop_process "$server_pid"
	check_sanitizer_reports names
}

start=$(now)
test_rotation
test_allowlist
test_bad_allowlist
test_bad_replay_settings
test_stats_and_logs
test_version_line
test_syn_data
test_syslog
test_unknown_variable
test_own_variables
note "ops tests took $(seconds_since "$start") s"
echo "ops: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
