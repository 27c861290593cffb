# Shared by replay.sh and flood.sh: checks, process control, ports, the
# test key.  Sourced after $build and $here are set.
set -u

python=$("${PYTHON:-python3}" -c 'import sys; print(sys.executable)') || {
	echo "$0: python3 is not installed" >&2
	exit 2
}
server_shim=$build/libnoiseshim-server.so
client_shim=$build/libnoiseshim.so
cli=$build/noiseshim
flood_peer=$build/tests/flood_peer
for file in "$server_shim" "$client_shim" "$cli" "$flood_peer"; do
	if [ ! -f "$file" ]; then
		echo "$0: $file is missing: build it into $build first" >&2
		exit 2
	fi
done

# The fixed test key and its public key in hex.
server_priv=0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20
server_pub_hex=07a37cbc142093c8b755dc1b10e86cb426374ad16aa853ed0bdfc0b2b86d1c7c

# Nothing of the caller's may leak into the programs under test.
unset LD_PRELOAD
for name in $(compgen -e); do
	case $name in NOISESHIM_*) unset "$name" ;; esac
done

# shellcheck source=tests/integration/harness.sh
. "$here/harness.sh"
passed=0 failed=0
background_pids=()
work=$(mktemp -d "/tmp/noiseshim-$(basename "$0" .sh).XXXXXX")
printf '%s\n' "$server_priv" >"$work/server.key"
chmod 600 "$work/server.key"
# The counters files stay in the work directory rather than in
# /run/noiseshim/stats, and so do the replay windows: every server that opens
# one is given its file there, except in tests of the default path, which
# list the files they make under /run/noiseshim in made_default_windows.
export NOISESHIM_STATS_DIR=$work/stats
made_default_windows=()

cleanup() {
	for pid in "${background_pids[@]}"; do
		stop_process "$pid"
	done
	local file
	# Made outside the work directory: removed whether checks failed or not.
	for file in "${made_default_windows[@]}"; do
		rm -f -- "$file"
	done
	if [ "$failed" -eq 0 ]; then
		rm -rf "$work"
	else
		echo "# logs kept in $work"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

summary() {
	echo "$(basename "$0" .sh): $passed passed, $failed failed"
	[ "$failed" -eq 0 ]
}

# stop_process PID [SIGNAL]: SIGNAL (TERM by default), then KILL after 5 s.
stop_process() {
	local pid=$1 signal=${2:-TERM}
	alive "$pid" || { wait "$pid" 2>/dev/null; return 0; }
	kill -"$signal" "$pid" 2>/dev/null
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

# A sanitizer build links libasan into the shims; python needs it preloaded first.
sanitizer_env=()
asan_runtime=$(ldd "$server_shim" 2>/dev/null | awk '$1 ~ /^libasan\.so/ { print $3; exit }')
if [ -n "$asan_runtime" ]; then
	mkdir -m 1777 "$work/sanitizer"
	sanitizer_env=(ASAN_OPTIONS="detect_leaks=0:log_path=$work/sanitizer/report"
		UBSAN_OPTIONS="print_stacktrace=1:log_path=$work/sanitizer/report")
fi
server_env=(env LD_PRELOAD="${asan_runtime:+$asan_runtime }$server_shim"
	NOISESHIM_KEY="$work/server.key" "${sanitizer_env[@]}")

# Any sanitizer report written so far fails check NAME.
check_sanitizer_reports() {
	local report
	[ -n "$asan_runtime" ] || return 0
	for report in "$work"/sanitizer/report.*; do
		[ -e "$report" ] || continue
		case $report in *.seen) continue ;; esac
		fail "$1-sanitizer" "$(grep -m 1 -E 'ERROR|runtime error' "$report") (full report: $report.seen)"
		mv "$report" "$report.seen"
	done
}
