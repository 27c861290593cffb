#!/bin/bash
# Transport records between the shims, on 127.0.0.1:
#
#   forged-*   a peer that completes the handshake and then sends a record
#              with one ciphertext bit flipped (hostile_peer forged-record)
#              to recv_probe under the accept shim: the program gets the
#              records before it, then EPROTO, and never sees a byte of the
#              forged plaintext in its buffer, whether the record would be
#              decrypted straight into that buffer or held by the shim;
#              the shim logs why.  A bad header in the segment after a good
#              record fails the connection at once.
#   stream-*   10 MiB written in 128 KiB calls by python3 under the client
#              shim to recv_probe under the accept shim, read through one
#              buffer, several pieces and a small buffer: the bytes arrive
#              whole and in order.
#   batch-*    the same stream under strace: each 128 KiB write (after the
#              first, which starts in msg1) leaves in one call as three even
#              records, and the reader does not spend a call on a record
#              header (it comes with the end of the record before).
#
#   tests/integration/records.sh BUILD_DIR
#
# Prints "ok NAME" or "FAIL NAME: reason" per check and "# ..." for
# figures, then "records: N passed, M failed"; exits 1 if any failed.
set -u

if [ $# -ne 1 ]; then
	echo "usage: $0 BUILD_DIR" >&2
	exit 2
fi
if ! build=$(cd "$1" 2>/dev/null && pwd); then
	echo "records.sh: no directory $1" >&2
	exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/integration/harness.sh
. "$here/harness.sh"
client_shim=$build/libnoiseshim.so
server_shim=$build/libnoiseshim-server.so
cli=$build/noiseshim
hostile_peer=$build/tests/hostile_peer
recv_probe=$build/tests/recv_probe
for file in "$client_shim" "$server_shim" "$cli" "$hostile_peer" "$recv_probe"; do
	if [ ! -f "$file" ]; then
		echo "records.sh: $file is missing: build the shims, the CLI, hostile_peer and recv_probe into $1 first" >&2
		exit 2
	fi
done
for tool in python3 strace; do
	if ! command -v "$tool" >/dev/null; then
		echo "records.sh: $tool is not installed (examples/install-deps.sh --test installs it)" >&2
		exit 2
	fi
done
# The interpreter itself, so that strace follows it and not a wrapper script.
python=$(python3 -c 'import sys; print(sys.executable)')

unset LD_PRELOAD
for name in $(compgen -e); do
	case $name in NOISESHIM_*) unset "$name" ;; esac
done

passed=0
failed=0
background_pids=()
work=$(mktemp -d /tmp/noiseshim-records.XXXXXX)
# The replay window and the counters files of the programs started here stay
# in the work directory rather than in /run/noiseshim, so that a run leaves
# nothing behind (a window there is 32 MiB per server key).
export NOISESHIM_REPLAY_FILE=$work/replay.map NOISESHIM_STATS_DIR=$work/stats
cleanup() {
	local pid
	for pid in "${background_pids[@]}"; do
		kill "$pid" 2>/dev/null
	done
	wait 2>/dev/null
	if [ "$failed" -eq 0 ]; then
		rm -rf "$work"
	else
		echo "# logs kept in $work"
	fi
}
trap cleanup EXIT

stream_bytes=$((10 * 1024 * 1024))
write_size=131072
# 128 KiB as three records of at most 43,691 bytes, each with a 4-byte header and a 16-byte tag.
batch_wire=$((write_size + 3 * 20))
records_in_stream=$((stream_bytes / write_size * 3))

"$cli" keygen "$work/server.key" >/dev/null || exit 1
server_pub=$("$cli" pubkey "$work/server.key") || exit 1

sanitizer_env=()
asan_runtime=$(ldd "$server_shim" 2>/dev/null | awk '$1 ~ /^libasan\.so/ { print $3; exit }')
if [ -n "$asan_runtime" ]; then
	sanitizer_env=(ASAN_OPTIONS="detect_leaks=0" UBSAN_OPTIONS="print_stacktrace=1")
	note "sanitizer build: preloading $asan_runtime first"
fi

# probe NAME PORT ARGS...: recv_probe under the accept shim, in the background;
# strace it when STRACE_PROBE is set.
probe() {
	local name=$1 port=$2 tracer=()
	shift 2
	[ -n "${STRACE_PROBE:-}" ] && tracer=(strace -f -qq -e trace=recvfrom,recvmsg -o "$work/$name.probe.strace")
	start_background "$work/$name.probe" "${tracer[@]}" env \
		LD_PRELOAD="${asan_runtime:+$asan_runtime }$server_shim" NOISESHIM_KEY="$work/server.key" \
		NOISESHIM_LISTEN="$port" NOISESHIM_LOG=info NOISESHIM_LOG_FILE="$work/$name.server-log" "${sanitizer_env[@]}" \
		"$recv_probe" --port "$port" "$@"
	probe_pid=$started_pid
	wait_listening "$port" "$probe_pid"
}

# probe_result NAME: wait for the probe and print its report.
probe_result() {
	local i
	for i in $(seq 300); do
		alive "$probe_pid" || break
		sleep 0.1
	done
	if alive "$probe_pid"; then
		kill "$probe_pid"
		echo "probe still running after 30 s"
	fi
	cat "$work/$1.probe"
}

# forged NAME VALID PROBE_ARGS...: one forged record after VALID good bytes.
forged() {
	local name=$1 valid=$2 port report verdict marker
	shift 2
	port=$(free_ports 1)
	marker="FORGED-$(random_hex 6)"
	if ! probe "$name" "$port" --marker "$marker" "$@"; then
		fail "$name" "recv_probe did not start: $(tail_of "$work/$name.probe")"
		return
	fi
	verdict=$(timeout 20 "$hostile_peer" forged-record --connect "127.0.0.1:$port" \
		--remote-pub "$server_pub" --marker "$marker" --valid "$valid" 2>&1)
	report=$(probe_result "$name")
	if ! grep -qx "bytes $valid" <<<"$report"; then
		fail "$name" "the program did not get exactly the $valid good bytes: $(tr '\n' ' ' <<<"$report")"
	elif ! grep -qx "end EPROTO" <<<"$report"; then
		fail "$name" "the read after the forged record did not fail with EPROTO: $(tr '\n' ' ' <<<"$report")"
	elif ! grep -qx "marker absent" <<<"$report"; then
		fail "$name" "forged plaintext reached the program's buffer"
	elif ! grep -q "fails authentication" "$work/$name.server-log"; then
		fail "$name" "no log line says why: $(tail_of "$work/$name.server-log")"
	elif [ "$verdict" != closed ]; then
		fail "$name" "the server did not close the connection: $verdict"
	else
		pass "$name"
	fi
}

# One buffer: the forged record would be decrypted straight into it.
forged forged-after-record 100
forged forged-first 0
# Two pieces of 64 KiB: the record fits the first piece, behind the good bytes.
forged forged-iov-fits 100 --iov 2 --buf 131072
# Four pieces of 32 KiB: no piece holds it, so the shim holds the plaintext.
forged forged-iov-split 100 --iov 4 --buf 131072
forged forged-small-buffer 100 --buf 1000

# A good record and, in the same segment, a header that cannot start a
# record: a program whose buffer the record fills exactly, waiting in poll
# for more, gets EPROTO at once, with no FIN to wake it.
port=$(free_ports 1)
if ! probe bad-header "$port" --marker unused --poll --buf 100; then
	fail bad-header-after-record "recv_probe did not start: $(tail_of "$work/bad-header.probe")"
else
	verdict=$(timeout 20 "$hostile_peer" forged-record --connect "127.0.0.1:$port" \
		--remote-pub "$server_pub" --marker unused --valid 100 --bad-header 2>&1)
	report=$(probe_result bad-header)
	if ! grep -qx "bytes 100" <<<"$report" || ! grep -qx "end EPROTO" <<<"$report"; then
		fail bad-header-after-record "expected the 100 good bytes, then EPROTO: $(tr '\n' ' ' <<<"$report")"
	elif ! grep -q "does not start with 0x80" "$work/bad-header.server-log"; then
		fail bad-header-after-record "no log line says why: $(tail_of "$work/bad-header.server-log")"
	elif [ "$verdict" != closed ]; then
		fail bad-header-after-record "the server did not close the connection within 1 s: $verdict"
	else
		pass bad-header-after-record
	fi
fi

# writer ARGS: python3 under the client shim writing the stream in 128 KiB calls.
cat >"$work/writer.py" <<'EOF'
import socket, sys
port, total, size = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
data = (bytes(range(251)) * (total // 251 + 1))[:total]
s = socket.create_connection(("127.0.0.1", port))
view = memoryview(data)
for off in range(0, total, size):
    s.sendall(view[off:off + size])
s.close()
EOF

# stream NAME PROBE_ARGS...: the stream into recv_probe, optionally under strace.
stream() {
	local name=$1 port report tracer=()
	shift
	port=$(free_ports 1)
	"$cli" nodeurl --key "$work/server.key" --addr "127.0.0.1:$port" >"$work/$name.cache" || return 1
	probe "$name" "$port" --pattern "$@" || { echo "recv_probe did not start"; return 1; }
	[ -n "${STRACE_WRITER:-}" ] && tracer=(strace -f -qq -e trace=sendto,sendmsg -o "$work/$name.writer.strace")
	if ! timeout 60 "${tracer[@]}" env LD_PRELOAD="${asan_runtime:+$asan_runtime }$client_shim" \
		NOISESHIM_CACHE="$work/$name.cache" NOISESHIM_LOG_FILE="$work/$name.client-log" "${sanitizer_env[@]}" \
		"$python" "$work/writer.py" "$port" "$stream_bytes" "$write_size" >"$work/$name.writer" 2>&1; then
		echo "the writer failed: $(tail_of "$work/$name.writer")"
		return 1
	fi
	report=$(probe_result "$name")
	if ! grep -qx "bytes $stream_bytes" <<<"$report" || ! grep -qx "end eof" <<<"$report" ||
		! grep -qx "pattern ok" <<<"$report"; then
		echo "the stream did not arrive whole: $(tr '\n' ' ' <<<"$report")"
		return 1
	fi
}

for shape in "one-buffer:" "pieces:--iov 3" "small-buffer:--buf 1000"; do
	name=stream-${shape%%:*}
	# shellcheck disable=SC2086 # the probe's options are words
	if why=$(stream "$name" ${shape#*:}); then
		pass "$name"
	else
		fail "$name" "$why"
	fi
done

# The batch checks count the shims' own system calls.
# The reader pauses before each read, so that the writer stays ahead.
if why=$(STRACE_WRITER=1 STRACE_PROBE=1 stream batch --pause-ms 2); then
	# Socket calls only: the interpreter and a sanitizer runtime read and write files too.
	writes=$(grep -cE '^[0-9]+ +(sendto|sendmsg)\(' "$work/batch.writer.strace")
	batched=$(grep -cE "^[0-9]+ +sendto\(.*, $batch_wire, [^,]*, NULL, 0\) = $batch_wire\$" "$work/batch.writer.strace")
	reads=$(grep -cE '^[0-9]+ +(recvfrom|recvmsg)\(' "$work/batch.probe.strace")
	header_reads=$(grep -cE '^[0-9]+ +recvfrom\(.*, 4, MSG_DONTWAIT, NULL, NULL\)' "$work/batch.probe.strace")
	note "writer: $writes send calls for $((stream_bytes / write_size)) writes of 128 KiB," \
		"$batched of them one call of $batch_wire bytes; reader: $reads receive calls for" \
		"$records_in_stream records, $header_reads of them for a header alone"
	# The first write's first 64 KiB ride in msg1; every later write is one call.
	if [ "$batched" -ne $((stream_bytes / write_size - 1)) ]; then
		fail batch-send "expected every 128 KiB write after the first as one call of $batch_wire bytes (three even records): $batched of $((stream_bytes / write_size - 1))"
	else
		pass batch-send
	fi
	# A header comes with the end of the record before it (or with the
	# kept-back byte of held plaintext), not in a call of its own; how many
	# calls a record takes besides depends on how the reader's timing cuts
	# the stream.
	if [ "$header_reads" -ge $((records_in_stream / 10)) ]; then
		fail batch-receive "$header_reads of $reads receive calls read a header alone, for $records_in_stream records (fewer than $((records_in_stream / 10)) expected)"
	else
		pass batch-receive
	fi
else
	fail batch "$why"
fi

echo "records: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
