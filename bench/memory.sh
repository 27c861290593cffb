#!/bin/bash
# What an idle wrapped connection costs in memory, on each side.  A client
# (hostile_idle hold) opens N connections to an event-driven echo server
# (hostile_idle serve) on 127.0.0.1, exchanges one short line on each so
# that every handshake is done and a record went both ways, then holds
# them; later it closes them all.  The same two programs run once without
# any shim (the baseline) and once under the shims (client shim with a
# cache naming the server, accept shim requiring Noise).
#
# A process's memory is its resident set (smaps_rollup Rss) with shared
# memory counted in full: the pages of every memfd or /dev/shm file it maps
# or holds open, whether mapped here or not, replace the resident shmem
# pages of its mappings.  Pss is printed next to it.
#
#   per connection = ((held - before) with shims - (held - before) without) / N
#   after close    = memory after every connection closed, against before
#
# The server's replay window is reported on a line of its own and left out
# of both: it is one file per server key and host, shared by every process
# that uses the key, bounded by its capacity, and it holds every first
# flight for the window's length by design, whether its connection is
# still open or not.
#
# Targets: <= 1 KiB per idle connection on each side; after close, memory
# within 10 % of before.  Prints "met" or "missed" for each.
#
#   bench/memory.sh [--build DIR] [--connections N]
set -u
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source-path=SCRIPTDIR
. "$here/common.sh"

build=
connections=5000
per_connection_target=1024   # bytes
after_close_slack=10         # percent
addr=127.0.0.1
# Seconds the client may take for all its handshakes, and the server to
# see every connection closed.
open_seconds=180
close_seconds=20

parse_args() {
	while [ $# -gt 0 ]; do
		case $1 in
		--build) build=$2; shift 2 ;;
		--connections) connections=$2; shift 2 ;;
		*) usage ;;
		esac
	done
}

work=
cleanup() {
	exec 7>&- 2>/dev/null
	bench_stop_all
	[ -n "$work" ] && rm -rf "$work"
}

# shared_kb PID: kB allocated to the memfd and /dev/shm files PID maps or
# holds open, each file once.
shared_kb() {
	local link seen=() inode blocks block_size total=0
	for link in /proc/"$1"/fd/* /proc/"$1"/map_files/*; do
		case $(readlink "$link" 2>/dev/null) in
		/memfd:* | /dev/shm/*) ;;
		*) continue ;;
		esac
		read -r inode blocks block_size < <(stat -L -c '%i %b %B' "$link" 2>/dev/null) || continue
		[[ " ${seen[*]} " == *" $inode "* ]] && continue
		seen+=("$inode")
		total=$((total + blocks * block_size / 1024))
	done
	echo "$total"
}

# memory_kb PID: "FOOTPRINT RSS PSS" in kB; FOOTPRINT is Rss with the
# resident shmem of its mappings replaced by whole shared files.
memory_kb() {
	local rss pss shmem shared
	rss=$(awk '$1 == "Rss:" { print $2 }' "/proc/$1/smaps_rollup")
	pss=$(awk '$1 == "Pss:" { print $2 }' "/proc/$1/smaps_rollup")
	shmem=$(awk '$1 == "RssShmem:" { print $2 }' "/proc/$1/status")
	shared=$(shared_kb "$1")
	[ "$shared" -lt "$shmem" ] && shared=$shmem
	echo "$((rss - shmem + shared)) $rss $pss"
}

# replay_kb PID: kB of the replay window file resident in PID's mappings.
replay_kb() {
	awk -v file="$work/replay.map" '
		/^[0-9a-f]+-[0-9a-f]+ / { inside = ($6 == file) }
		inside && $1 == "Rss:" { total += $2 }
		END { print total + 0 }' "/proc/$1/smaps"
}

fd_count() {
	find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l
}

# await_line FILE PATTERN SECONDS PID: until a line of FILE matches.
await_line() {
	local tries=$(($3 * 10))
	until grep -q "$2" "$1" 2>/dev/null; do
		if ! kill -0 "$4" 2>/dev/null || [ "$tries" -le 0 ]; then
			return 1
		fi
		sleep 0.1
		tries=$((tries - 1))
	done
}

# maps_library PID NAME: whether the process has NAME mapped (the preload took).
maps_library() {
	grep -q "/$2\$" "/proc/$1/maps"
}

# run_mode MODE PORT: one open-hold-close cycle; writes
# "SIDE STAGE FOOTPRINT RSS PSS" lines to $work/MODE.mem.
run_mode() {
	local mode=$1 port=$2 server client server_fds side stage
	local server_env=() client_env=()
	if [ "$mode" = shim ]; then
		# One address opens every connection at once: the load guard would
		# (rightly) refuse most of them; this measures memory, not the guard.
		server_env=(LD_PRELOAD="$build/libnoiseshim-server.so" NOISESHIM_KEY="$work/server.key"
			NOISESHIM_LISTEN="$port" NOISESHIM_LOG_FILE="$work/server-shim.log"
			NOISESHIM_RATE_LIMIT=0 NOISESHIM_REPLAY_FILE="$work/replay.map")
		client_env=(LD_PRELOAD="$build/libnoiseshim.so" NOISESHIM_CACHE="$work/cache"
			NOISESHIM_LOG_FILE="$work/client-shim.log")
	fi
	bench_spawn env "${server_env[@]}" "$build/tests/hostile_idle" serve --port "$port" \
		>"$work/$mode.server.log" 2>&1
	server=$bench_last_pid
	bench_wait_port "$port" "$server" ||
		{ bench_say "$mode: the server did not start: $(tail -n 3 "$work/$mode.server.log")"; return 1; }
	# Ours is opened read-write, so that neither end waits for the other;
	# the client is stopped by PID at the end.
	mkfifo "$work/$mode.commands"
	exec 7<>"$work/$mode.commands"
	bench_spawn env "${client_env[@]}" "$build/tests/hostile_idle" hold --port "$port" \
		--count "$connections" --commands "$work/$mode.commands" >"$work/$mode.client.log" 2>&1
	client=$bench_last_pid
	await_line "$work/$mode.client.log" '^ready' 10 "$client" ||
		{ bench_say "$mode: the client did not start: $(tail -n 3 "$work/$mode.client.log")"; return 1; }
	if [ "$mode" = shim ] && { ! maps_library "$server" libnoiseshim-server.so ||
		! maps_library "$client" libnoiseshim.so; }; then
		bench_say "shim: the shims are not loaded in both programs"
		return 1
	fi
	server_fds=$(fd_count "$server")
	sleep 0.5

	for side in server client; do
		echo "$side before $(memory_kb "${!side}")" >>"$work/$mode.mem"
	done
	echo "replay before $(replay_kb "$server")" >>"$work/$mode.mem"
	echo open >&7
	await_line "$work/$mode.client.log" '^held' "$open_seconds" "$client" ||
		{ bench_say "$mode: the connections did not open: $(tail -n 3 "$work/$mode.client.log")"; return 1; }
	sleep 1
	if [ $(($(fd_count "$server") - server_fds)) -lt "$connections" ]; then
		bench_say "$mode: the server holds $(($(fd_count "$server") - server_fds)) of $connections connections"
		return 1
	fi
	for side in server client; do
		echo "$side held $(memory_kb "${!side}")" >>"$work/$mode.mem"
	done
	echo "replay held $(replay_kb "$server")" >>"$work/$mode.mem"

	echo close >&7
	await_line "$work/$mode.client.log" '^closed' "$close_seconds" "$client" ||
		{ bench_say "$mode: the client did not close: $(tail -n 3 "$work/$mode.client.log")"; return 1; }
	for ((stage = close_seconds * 10; stage > 0; stage--)); do
		[ "$(fd_count "$server")" -le "$server_fds" ] && break
		sleep 0.1
	done
	if [ "$(fd_count "$server")" -gt "$server_fds" ]; then
		bench_say "$mode: the server still holds $(($(fd_count "$server") - server_fds)) connections"
		return 1
	fi
	sleep 1
	for side in server client; do
		echo "$side after $(memory_kb "${!side}")" >>"$work/$mode.mem"
	done
	echo "replay after $(replay_kb "$server")" >>"$work/$mode.mem"
	exec 7>&-
	bench_stop "$client" "$server"
	[ "$mode" != shim ] || [ ! -s "$work/server-shim.log" ] ||
		bench_say "server shim log: $(tail -n 2 "$work/server-shim.log")"
}

# figure MODE SIDE STAGE [COLUMN]: kB from a run (column 1 footprint, 2 Rss, 3 Pss).
# The server's figures leave out its replay window (see the top).
figure() {
	awk -v side="$2" -v stage="$3" -v col="$((${4:-1} + 2))" '
		$1 == "replay" && $2 == stage { replay = $3 }
		$1 == side && $2 == stage { value = $col }
		END { print value - (side == "server" ? replay : 0) }' "$work/$1.mem"
}

# replay_figure STAGE: kB of the replay window resident under the shims.
replay_figure() {
	awk -v stage="$1" '$1 == "replay" && $2 == stage { print $3 }' "$work/shim.mem"
}

# verdict OK: met or missed.
verdict() { if [ "$1" -eq 1 ]; then echo met; else echo missed; fi; }

print_table() {
	local side column name delta_shim delta_none per ok after before
	printf '\n%d idle connections on %s, event-driven C echo server and a C client holding them\n' \
		"$connections" "$addr"
	printf 'kB per process: before opening, while held, after closing (footprint, Rss, Pss;\nthe server'"'"'s without its replay window)\n\n'
	printf '%-7s %-6s %26s %26s %26s\n' side mode before held after
	for side in server client; do
		for name in none shim; do
			printf '%-7s %-6s' "$side" "$name"
			for stage in before held after; do
				printf ' %26s' "$(figure "$name" "$side" "$stage" 1) / $(figure "$name" "$side" "$stage" 2) / $(figure "$name" "$side" "$stage" 3)"
			done
			printf '\n'
		done
	done
	printf '\nper idle connection, shims minus none (target <= %d bytes):\n' "$per_connection_target"
	for side in server client; do
		for column in 1 2 3; do
			delta_shim=$(($(figure shim "$side" held "$column") - $(figure shim "$side" before "$column")))
			delta_none=$(($(figure none "$side" held "$column") - $(figure none "$side" before "$column")))
			per[column]=$(((delta_shim - delta_none) * 1024 / connections))
		done
		ok=$((per[1] <= per_connection_target))
		printf '  %-7s %6d bytes (Rss %d, Pss %d): %s\n' "$side" "${per[1]}" "${per[2]}" "${per[3]}" \
			"$(verdict "$ok")"
	done
	printf '\nthe server'"'"'s replay window, left out above (one file per key and host, bounded, keeps\n'
	printf 'every first flight for its whole window): %d kB resident before, %d kB held, %d kB after\n' \
		"$(replay_figure before)" "$(replay_figure held)" "$(replay_figure after)"
	printf '\nafter closing, under the shims (target: within %d %% of before):\n' "$after_close_slack"
	for side in server client; do
		before=$(figure shim "$side" before)
		after=$(figure shim "$side" after)
		ok=$((after * 100 <= before * (100 + after_close_slack)))
		printf '  %-7s %d kB before, %d kB after: %s %s\n' "$side" "$before" "$after" \
			"$(bench_ratio "$after" "$before" %.2fx)" "$(verdict "$ok")"
	done
}

main() {
	parse_args "$@"
	build=$(bench_build_dir "$build") || exit 1
	if [ ! -x "$build/tests/hostile_idle" ]; then
		bench_say "$build/tests/hostile_idle is missing: make bench-memory builds it"
		exit 1
	fi
	# One fd per connection on each side, and the programs' own.
	ulimit -n 20000 || { bench_say "cannot raise the open-file limit to 20000"; exit 1; }
	work=$(mktemp -d /tmp/bench-memory.XXXXXX) || exit 1
	bench_keep_state_in "$work"
	trap cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	local port_none port_shim
	read -r port_none port_shim < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))')
	if ! "$build/noiseshim" keygen "$work/server.key" >/dev/null ||
		! "$build/noiseshim" nodeurl --key "$work/server.key" --addr "$addr:$port_shim" >"$work/cache"; then
		bench_say "could not make the key and the cache"
		exit 1
	fi
	bench_say "without shims: $connections connections"
	run_mode none "$port_none" || exit 1
	bench_say "under the shims: $connections connections"
	run_mode shim "$port_shim" || exit 1
	print_table
}

main "$@"
