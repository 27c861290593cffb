#!/bin/bash
# A first look: make a server key, print the NodeURL a client would use, and
# run a 0-RTT Noise_IK exchange between noiseshim's core (client) and an
# independent Go server built on flynn/noise.
#
#   examples/demo.sh [BUILD_DIR]
set -eu
build=${1:-build}
scratch=$(mktemp -d)
server_pid=
cleanup() {
	if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null; fi
	rm -rf "$scratch"
}
trap cleanup EXIT

pub=$("$build/noiseshim" keygen "$scratch/server.key")
"$build/tests/gopeer" respond --listen 127.0.0.1:0 --key-file "$scratch/server.key" \
	>"$scratch/server.log" 2>&1 &
server_pid=$!
port=
for _ in $(seq 100); do
	port=$(sed -n 's/^listening .*:\([0-9]*\)$/\1/p' "$scratch/server.log")
	[ -n "$port" ] && break
	sleep 0.05
done
[ -n "$port" ] || { echo "the Go server did not start:"; cat "$scratch/server.log"; exit 1; }

echo "server key generated; public key $pub"
echo "NodeURL for a client's cache:"
echo "  $("$build/noiseshim" nodeurl --key "$scratch/server.key" --addr "127.0.0.1:$port")"
start=$(date +%s%N)
result=$("$build/tests/interop_peer" initiate --connect "127.0.0.1:$port" --remote-pub "$pub" \
	--size 1000000)
end=$(date +%s%N)
echo "Noise_IK_25519_ChaChaPoly_BLAKE2b, first 65535 bytes inside msg1:"
echo "  sent 1000000 random bytes to the Go server and checked its echo: $result"
echo "  $(( (end - start) / 1000000 )) ms including process start"
