#!/bin/sh
# make install into scratch prefixes, then the installed command and shims at
# work: --version, the man page, and `noiseshim serve` / `noiseshim run` of the
# install wrapping python3's http.server and curl.
# usage: tests/cli/test_install.sh BUILD_DIR     (run from the source tree)
set -u

build=${1:?usage: test_install.sh BUILD_DIR}
dir=$(mktemp -d) || exit 1
server_pid=
cleanup() {
	if [ -n "$server_pid" ]; then
		kill "$server_pid" 2>/dev/null
		wait "$server_pid" 2>/dev/null
	fi
	rm -rf "$dir"
}
trap cleanup EXIT
umask 022
unset NOISESHIM_CACHE NOISESHIM_KEY NOISESHIM_LISTEN NOISESHIM_CONFIG
# The counters files of the programs run here stay in the scratch directory,
# not in /run/noiseshim/stats; so does the server's replay window (below).
NOISESHIM_STATS_DIR=$dir/stats
export NOISESHIM_STATS_DIR
HOME=$dir/home
export HOME

passed=0
failed=0
pass() { passed=$((passed + 1)); }
fail() {
	failed=$((failed + 1))
	echo "FAIL: $*"
	return 0
}
finish() {
	echo "install: $passed passed, $failed failed"
	[ "$failed" -eq 0 ]
	exit
}

# Our own make, not a child of the make that runs this test (its jobserver is not ours).
unset MAKEFLAGS MFLAGS MAKELEVEL
prefix=$dir/usr
if make -s --no-print-directory BUILD="$build" PREFIX="$prefix" install >"$dir/make.log" 2>&1; then
	pass
else
	fail "make install PREFIX=$prefix: $(tail -n 3 "$dir/make.log")"
	finish
fi
for f in bin/noiseshim lib/noiseshim/libnoiseshim.so lib/noiseshim/libnoiseshim-server.so \
	share/man/man1/noiseshim.1 share/doc/noiseshim/README.md \
	share/doc/noiseshim/noiseshim.conf.example share/doc/noiseshim/cache.example; do
	if [ -s "$prefix/$f" ]; then pass; else fail "make install left out $f"; fi
done
if [ -x "$prefix/bin/noiseshim" ]; then pass; else fail "the installed noiseshim is not executable"; fi

stage=$dir/stage
make -s --no-print-directory BUILD="$build" PREFIX=/opt/noiseshim DESTDIR="$stage" install \
	>"$dir/make.log" 2>&1
if [ -x "$stage/opt/noiseshim/bin/noiseshim" ] &&
	[ -s "$stage/opt/noiseshim/lib/noiseshim/libnoiseshim.so" ] && [ ! -e /opt/noiseshim/bin/noiseshim ]; then
	pass
else
	fail "make install DESTDIR=$stage PREFIX=/opt/noiseshim installs under DESTDIR only"
fi

ns=$prefix/bin/noiseshim
version=$(sed -n 's/^#define NS_VERSION "\(.*\)"$/\1/p' lib/version.h)
if [ "$("$ns" --version)" = "noiseshim $version" ]; then
	pass
else
	fail "installed --version prints '$("$ns" --version)', expected 'noiseshim $version'"
fi
if MANWIDTH=80 man -l "$prefix/share/man/man1/noiseshim.1" >"$dir/man.txt" 2>"$dir/man.err" &&
	[ ! -s "$dir/man.err" ] && grep -q "^EXIT STATUS" "$dir/man.txt"; then
	pass
else
	fail "man -l renders the installed page without warnings: $(head -n 3 "$dir/man.err")"
fi

# The installed command finds the installed shims, not the build's.
"$ns" doctor >"$dir/doctor.out" 2>&1
real_prefix=$(cd "$prefix" && pwd -P)
if grep -qxF "ok: shim: $real_prefix/lib/noiseshim/libnoiseshim.so" "$dir/doctor.out" &&
	grep -qxF "ok: shim: $real_prefix/lib/noiseshim/libnoiseshim-server.so" "$dir/doctor.out"; then
	pass
else
	fail "the installed doctor finds the installed shims (got: $(grep shim "$dir/doctor.out"))"
fi

# --- the installed serve and run: a real exchange ------------------------------

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir "$dir/www"
head -c 300000 /dev/urandom >"$dir/www/file.bin"
"$ns" keygen "$dir/server.key" >/dev/null
NOISESHIM_REPLAY_FILE=$dir/replay.map "$ns" serve --key "$dir/server.key" --listen "$port" -- \
	python3 -m http.server "$port" --bind 127.0.0.1 --directory "$dir/www" \
	>"$dir/server.out" 2>"$dir/server.err" &
server_pid=$!
tries=100
until ss -Hltn "sport = :$port" | grep -q . || [ "$tries" -eq 0 ]; do
	sleep 0.1
	tries=$((tries - 1))
done
url=$(grep "^127\.0\.0\.1:$port?" "$dir/server.err")
if [ -n "$url" ] && "$ns" cache add "$url" --cache "$dir/cache" >/dev/null 2>&1; then
	pass
else
	fail "the installed serve prints a NodeURL for 127.0.0.1:$port (stderr: $(head -n 5 "$dir/server.err"))"
fi

if "$ns" run --cache "$dir/cache" -- curl -sS --max-time 20 -o "$dir/got.bin" \
	"http://127.0.0.1:$port/file.bin" 2>"$dir/curl.err" && cmp -s "$dir/www/file.bin" "$dir/got.bin"; then
	pass
else
	fail "the installed run wraps curl and the bytes arrive ($(cat "$dir/curl.err"))"
fi

# What run says of a cache line that names an address but cannot be used is what the shim does.
printf '127.0.0.1:%s?noise_proto=1\n' "$port" >"$dir/bad-cache"
"$ns" run --cache "$dir/bad-cache" -- python3 -c '
import socket, sys
try:
    socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
    print("connected")
except OSError as e:
    print("errno", e.errno)' "$port" >"$dir/bad-cache.out" 2>"$dir/bad-cache.err"
if grep -q "the shim refuses every connection to its address (connect fails with EACCES)" "$dir/bad-cache.err" &&
	[ "$(cat "$dir/bad-cache.out")" = "errno 13" ]; then
	pass
else
	fail "run's warning about a bad line matches the shim (got: $(cat "$dir/bad-cache.out") / $(grep warning "$dir/bad-cache.err"))"
fi

# Negative: plain curl gets nothing from the wrapped server, and the program never sees it.
if curl -sS --max-time 5 -o "$dir/plain.bin" "http://127.0.0.1:$port/plain-request" 2>/dev/null; then
	fail "plain curl got an answer from the wrapped server"
else
	pass
fi
sleep 0.2
if grep -q "GET /file.bin" "$dir/server.err" && ! grep -q "plain-request" "$dir/server.err"; then
	pass
else
	fail "the server saw the wrapped request and not the plain one (log: $(grep GET "$dir/server.err"))"
fi

finish
