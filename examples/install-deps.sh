#!/bin/sh
# Install the Debian 12 packages noiseshim needs, when missing.
#
#   examples/install-deps.sh          what the build and `make demo` need
#   examples/install-deps.sh --test   that, and everything the test suites run
#
# The one list of packages: `make demo`, `make test`, `make sanitize` and
# .ci/run all call this script.  Each package is checked with dpkg-query;
# apt-get runs (after apt-get update) only when one is missing.
set -eu

build="build-essential pkg-config ca-certificates libsodium-dev libssl-dev uthash-dev
	libcmocka-dev libhiredis-dev curl python3"
# What the suites and the smoke run start: real servers and clients, the Go
# peer, network namespaces, the WAN emulator's delay line, the man page.
suite="golang-go golang-github-flynn-noise-dev procps iproute2 iptables iputils-ping
	nginx redis-server redis-tools libnetfilter-queue-dev libmnl-dev iperf3 stunnel4 wrk
	openssl openssh-server openssh-client git socat netcat-openbsd
	default-jre-headless default-jdk-headless man-db groff-base strace"

case "${1:-}" in
'') needed=$build ;;
--test) needed="$build $suite" ;;
*)
	echo "usage: examples/install-deps.sh [--test]" >&2
	exit 2
	;;
esac

missing=
for p in $needed; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
		missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
	echo "noiseshim needs:$missing" >&2
	echo "run: sudo apt-get install -y$missing" >&2
	exit 1
fi
echo "installing:$missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update
# shellcheck disable=SC2086
apt-get install -y --no-install-recommends $missing
