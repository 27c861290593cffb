#!/bin/bash
# A first look at noiseshim: an unmodified python3 web server under the
# accept shim, fetched by an unmodified curl under the client shim, then the
# same fetch with the shims switched off.
#
#   examples/demo.sh [BUILD_DIR]      (make demo does the installing and building)
set -eu
build=$(cd "${1:-build}" && pwd)
scratch=$(mktemp -d)
# The shims' counters files go in the scratch directory, removed at exit,
# rather than in /run/noiseshim/stats.
export NOISESHIM_STATS_DIR=$scratch/stats
server_pid=
cleanup() {
	if [ -n "$server_pid" ]; then
		kill "$server_pid" 2>/dev/null
		wait "$server_pid" 2>/dev/null || true
	fi
	rm -rf "$scratch"
}
trap cleanup EXIT

free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

port=$(free_port)
mkdir "$scratch/www"
head -c 1048576 /dev/urandom >"$scratch/www/file.bin"
want=$(sha256sum <"$scratch/www/file.bin" | cut -c1-16)

"$build/noiseshim" keygen "$scratch/server.key" >/dev/null
url=$("$build/noiseshim" nodeurl --key "$scratch/server.key" --addr "127.0.0.1:$port")
echo "$url" >"$scratch/cache"

echo "1. server: python3 -m http.server on port $port, under the accept shim"
# The key is new on every run: its replay window (32 MiB) goes in the scratch
# directory too, not in /run/noiseshim/replay-KEYID.map, where it would stay.
(cd "$scratch/www" && NOISESHIM_KEY="$scratch/server.key" NOISESHIM_LISTEN="$port" \
	NOISESHIM_LOG_FILE="$scratch/server.log" NOISESHIM_LOG=info \
	NOISESHIM_REPLAY_FILE="$scratch/replay.map" \
	LD_PRELOAD="$build/libnoiseshim-server.so" \
	exec python3 -m http.server "$port" --bind 127.0.0.1 >/dev/null 2>&1) &
server_pid=$!
# Ready once the port accepts a connection (one that sends nothing is no Noise error).
python3 - "$port" <<'PY'
import socket, sys, time
for _ in range(100):
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1).close()
        break
    except OSError:
        time.sleep(0.05)
PY

echo "2. the client's NodeURL cache holds one line:"
echo "     $url"

fetch() {
	local summary
	if summary=$(curl -sS --max-time 20 -o "$scratch/got" \
		-w '%{size_download} bytes in %{time_total} s' \
		"http://127.0.0.1:$port/file.bin" 2>"$scratch/curl.err"); then
		echo "$summary"
	else
		head -1 "$scratch/curl.err"
	fi
}
result=$(NOISESHIM_CACHE="$scratch/cache" NOISESHIM_LOG=info NOISESHIM_LOG_FILE="$scratch/client.log" \
	LD_PRELOAD="$build/libnoiseshim.so" fetch)
got=$(sha256sum <"$scratch/got" 2>/dev/null | cut -c1-16)
suite=$(sed -n 's/.*: \(Noise_IK_[A-Za-z0-9_]*\).*/\1/p' "$scratch/client.log" | head -1)
echo "3. curl under the client shim: $result"
echo "     suite ${suite:-none}; SHA-256 ${got:-none} (file: $want)"
[ "$got" = "$want" ] || { echo "   the wrapped fetch did not return the file"; exit 1; }

rm -f "$scratch/got"
result=$(NOISESHIM_TRANSPORT=off LD_PRELOAD="$build/libnoiseshim.so" fetch)
echo "4. the same curl with NOISESHIM_TRANSPORT=off (plain HTTP): $result"
echo "     the server only speaks Noise on this port, so the plaintext request is dropped"
