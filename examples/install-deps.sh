#!/bin/sh
# Install the Debian packages noiseshim's build and demo need, if missing.
set -eu
needed="build-essential pkg-config libsodium-dev libssl-dev uthash-dev libcmocka-dev libhiredis-dev curl python3"
missing=
for p in $needed; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
	echo "noiseshim needs:$missing" >&2
	echo "run: sudo apt-get install -y$missing" >&2
	exit 1
fi
apt-get update
apt-get install -y --no-install-recommends $missing
