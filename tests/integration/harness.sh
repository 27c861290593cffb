# Shared by the integration scripts: processes started in the background
# and stopped by PID, ports, and the "ok NAME" / "FAIL NAME: reason" lines.
# A script sets $python (an interpreter path), `passed`, `failed` and
# `background_pids=()` before using these, and may define its own variant
# of any of them after sourcing this file.

alive() {
	local stat
	stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
	stat=${stat##*) }
	[ "${stat%% *}" != Z ]
}

# start_background LOG COMMAND...: sets $started_pid (COMMAND must exec the program).
start_background() {
	local log=$1
	shift
	"$@" >"$log" 2>&1 &
	started_pid=$!
	background_pids+=("$started_pid")
}

listening() {
	awk -v want="$(printf '0100007F:%04X' "$1")" \
		'$2 == want && $4 == "0A" { found = 1 } END { exit !found }' /proc/net/tcp
}

# wait_listening PORT PID: until PORT listens, PID dies, or 20 s pass.
wait_listening() {
	for _ in $(seq 200); do
		listening "$1" && return 0
		alive "$2" || return 1
		sleep 0.1
	done
	return 1
}

tail_of() {
	tail -n "${2:-3}" "$1" 2>/dev/null | tr '\n' ' ' | cut -c1-400
}

# free_ports N: N ports that nothing listens on now.
free_ports() {
	"$python" -c '
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))' "$1"
}

random_hex() {
	od -An -tx1 -N"$1" /dev/urandom | tr -d ' \n'
}

pass() {
	passed=$((passed + 1))
	echo "ok $1"
}

fail() {
	failed=$((failed + 1))
	echo "FAIL $1: $2"
}

note() {
	echo "# $*"
}
