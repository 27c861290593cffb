#!/bin/bash
# Integration tests of the compiled NodeURL cache under the client shim:
# two processes share one index file, a file replaced under four connecting
# threads is swapped in without a failed or stalled connect, a broken line
# fails closed naming FILE:LINE, a forked child reloads on its own, and an
# index with nowhere to be written is built in memory.
#
#   tests/integration/cache.sh build/libnoiseshim.so build/tests/cache_probe build/noiseshim
#
# Prints "ok NAME" or "FAIL NAME: reason" for each check, then a count;
# exits non-zero if any check failed.
set -u

if [ $# -ne 3 ]; then
	echo "usage: $0 LIBNOISESHIM CACHE_PROBE NOISESHIM" >&2
	exit 2
fi
shim=$1 probe=$2 cli=$3
here=$(cd "$(dirname "$0")" && pwd)
python=${PYTHON:-python3}
entries=100000
# The longest connect while the index is rebuilt may not exceed 200 ms, or
# twice the longest of the same loop without a rebuild (a shared machine
# stalls threads by itself): a connect that waited for the rebuild would
# take as long as the rebuild, logged by the shim.
max_connect_us=200000
max_effect_ms=2000
# Each thread pauses between connects, as a program that uses its
# connections does; a loop that saturates both CPUs would mostly measure
# how long the rebuild thread waits for a CPU.
pause_us=200

# Under `make sanitize` the shim links ASan, whose runtime must come first.
shim_asan=$(ldd "$shim" 2>/dev/null | sed -n 's/^[[:space:]]*libasan\.so[^ ]* => \([^ ]*\) .*/\1/p' | head -n 1)
preload=(LD_PRELOAD="${shim_asan:+$shim_asan }$shim" ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=0}")
unset LD_PRELOAD NOISESHIM_CACHE NOISESHIM_LOG NOISESHIM_LOG_FILE XDG_RUNTIME_DIR

scratch=$(mktemp -d) || exit 1
# The counters files of the programs run here stay in the scratch directory,
# not in /run/noiseshim/stats.
export NOISESHIM_STATS_DIR=$scratch/stats
passed=0 failed=0
trap 'rm -rf "$scratch"' EXIT
trap 'exit 1' INT TERM HUP

pass() { echo "ok $1"; passed=$((passed + 1)); }
fail() { echo "FAIL $1: $2"; failed=$((failed + 1)); }

# free_ports N: N ports that nothing listens on now.
free_ports() {
	"$python" -c '
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))' "$1"
}

# under CACHE LOG [LEVEL] PROBE-ARGS...: run the probe under the shim.
under() {
	local cache=$1 log=$2 level=$3
	shift 3
	timeout 60 env "${preload[@]}" NOISESHIM_CACHE="$cache" NOISESHIM_LOG="$level" \
		NOISESHIM_LOG_FILE="$log" "$probe" "$@"
}

value() { sed -n "s/^$1=//p" "$2"; }

read -r port_good port_broken port_canary port_fork < <(free_ports 4)
gen() { "$python" "$here/cache_gen.py" "$@"; }

# --- two processes share one index -------------------------------------------
shared=$scratch/shared/cache
mkdir -p "$scratch/shared"
gen "$shared" "$entries" 1
under "$shared" "$scratch/first.log" debug first 127.0.0.1 0 >"$scratch/first.out"
if [ "$(value result "$scratch/first.out")" = ok ] && grep -q "built index $shared.idx" "$scratch/first.log"; then
	pass "share: the first process builds $shared.idx"
else
	fail "share: the first process builds $shared.idx" "$(cat "$scratch/first.out" "$scratch/first.log" | head -c 600)"
fi
before=$(stat -c '%i %Y %y' "$shared.idx" 2>/dev/null)
under "$shared" "$scratch/second.log" debug first 127.0.0.1 0 >"$scratch/second.out"
after=$(stat -c '%i %Y %y' "$shared.idx" 2>/dev/null)
if [ "$(value result "$scratch/second.out")" = ok ] && grep -q "mapped index $shared.idx: $entries entries" "$scratch/second.log" &&
	! grep -q "built index" "$scratch/second.log" && [ -n "$before" ] && [ "$before" = "$after" ]; then
	pass "share: the second process maps the same index without building (inode, mtime unchanged; first connect $(value first_connect_us "$scratch/second.out") us)"
else
	fail "share: the second process maps the same index without building" \
		"before '$before' after '$after': $(cat "$scratch/second.out" "$scratch/second.log" | head -c 600)"
fi
if grep -qs ": error: " "$scratch/first.log" "$scratch/second.log"; then
	fail "share: a clean cache logs no error" "$(grep ": error: " "$scratch/first.log" | head -n 3)"
else
	pass "share: a clean cache logs no error"
fi

# --- the file is replaced while 4 threads connect ------------------------------
# First the same loop with nothing to reload (an unrelated file is renamed): the baseline.
: >"$scratch/unrelated"
under "$shared" "$scratch/baseline.log" error loop 4 3000 "$pause_us" 127.0.0.1 "$port_canary" "$scratch/unrelated" "$scratch/unrelated2" \
	>"$scratch/baseline.out"
baseline_us=$(value max_us "$scratch/baseline.out")
limit_us=$(awk -v b="${baseline_us:-0}" -v m="$max_connect_us" 'BEGIN { printf "%d", (2 * b > m ? 2 * b : m) }')
gen "$scratch/shared/new" "$entries" 2 --broken "127.0.0.1:$port_canary"
under "$shared" "$scratch/loop.log" debug loop 4 3000 "$pause_us" 127.0.0.1 "$port_canary" "$scratch/shared/new" "$shared" \
	>"$scratch/loop.out"
connects=$(value connects "$scratch/loop.out") failures=$(value failures "$scratch/loop.out")
max_after_us=$(value max_after_us "$scratch/loop.out") effect_ms=$(value effect_ms "$scratch/loop.out")
build_ms=$(sed -n 's/.*built index .* in \([0-9]*\) ms$/\1/p' "$scratch/loop.log" | tail -n 1)
echo "  replacement under 4 threads: $connects connects; longest after the rename ${max_after_us:-?} us" \
	"(at +$(value max_after_at_ms "$scratch/loop.out") ms), without a reload ${baseline_us:-?} us;" \
	"rebuild ${build_ms:-?} ms; new entries in effect after ${effect_ms:-?} ms"
if [ -n "$failures" ] && [ "$failures" -eq 0 ] && [ "${connects:-0}" -gt 100 ] &&
	[ "$(value failures "$scratch/baseline.out")" = 0 ]; then
	pass "replace: no connect fails ($connects connects)"
else
	fail "replace: no connect fails" "$(cat "$scratch/loop.out" "$scratch/baseline.out" | head -c 600)"
fi
if [ -z "$build_ms" ]; then
	fail "replace: the reload rebuilt the index in the background" "no 'built index' line: $(head -c 400 "$scratch/loop.log")"
elif [ -n "$max_after_us" ] && awk -v m="$max_after_us" -v lim="$limit_us" -v b="$build_ms" \
	'BEGIN { exit !(m < lim && m < b * 1000) }'; then
	pass "replace: no connect waits for the rebuild (longest $max_after_us us < $limit_us us and < the ${build_ms} ms rebuild)"
else
	fail "replace: no connect waits for the rebuild" "longest ${max_after_us:-?} us, limit $limit_us us, rebuild ${build_ms} ms"
fi
if [ -n "$effect_ms" ] && awk -v e="$effect_ms" -v lim="$max_effect_ms" 'BEGIN { exit !(e >= 0 && e <= lim) }'; then
	pass "replace: new entries take effect within $max_effect_ms ms ($effect_ms ms)"
else
	fail "replace: new entries take effect within $max_effect_ms ms" "effect_ms=${effect_ms:-?}"
fi
if grep -q "error: $shared:$((entries + 2)): bad noise_pub" "$scratch/loop.log"; then
	pass "replace: the reload reports the new broken line with FILE:LINE"
else
	fail "replace: the reload reports the new broken line with FILE:LINE" "$(head -c 400 "$scratch/loop.log")"
fi

# --- a broken line fails closed -----------------------------------------------
small=$scratch/small
(umask 077; echo 0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20 >"$scratch/k")
pub=$("$cli" nodeurl --key "$scratch/k" --addr "127.0.0.1:$port_good" 2>/dev/null)
{
	echo "# test cache"
	echo "$pub"
	echo "127.0.0.1:$port_broken?noise_proto=1&noise_pub=0OIl"
	echo "node.example:80?noise_pub=x"
} >"$small"
if ! grep -q "^127.0.0.1:$port_good?.*noise_pub=" "$small"; then
	fail "broken: the test cache has a good line" "noiseshim nodeurl printed '$pub'"
fi
under "$small" "$scratch/broken.log" error first 127.0.0.1 "$port_broken" >"$scratch/broken.out"
if [ "$(value result "$scratch/broken.out")" = EACCES ]; then
	pass "broken: connect to a broken line's address fails with EACCES"
else
	fail "broken: connect to a broken line's address fails with EACCES" "$(cat "$scratch/broken.out")"
fi
if grep -q ": error: connect to 127.0.0.1:$port_broken refused: $small:3: bad noise_pub" "$scratch/broken.log"; then
	pass "broken: the refusal is logged at error level with FILE:LINE"
else
	fail "broken: the refusal is logged at error level with FILE:LINE" "$(head -c 600 "$scratch/broken.log")"
fi
if grep -q ": error: $small:4: " "$scratch/broken.log" && ! grep "$small:4: " "$scratch/broken.log" | grep -q refused; then
	pass "broken: a line without an address is reported at error level with FILE:LINE, and skipped"
else
	fail "broken: a line without an address is reported at error level with FILE:LINE" "$(head -c 600 "$scratch/broken.log")"
fi
under "$small" "$scratch/mapped.log" error first ::ffff:127.0.0.1 "$port_broken" >"$scratch/mapped.out"
if [ "$(value result "$scratch/mapped.out")" = EACCES ]; then
	pass "broken: the IPv4-mapped IPv6 form of the address is refused too"
else
	fail "broken: the IPv4-mapped IPv6 form of the address is refused too" "$(cat "$scratch/mapped.out")"
fi
# Negative space: nothing else is refused.
under "$small" "$scratch/other.log" error first 127.0.0.1 0 >"$scratch/other.out"
if [ "$(value result "$scratch/other.out")" = ok ] && ! grep -qs "refused" "$scratch/other.log"; then
	pass "broken: an address in no line still connects"
else
	fail "broken: an address in no line still connects" "$(cat "$scratch/other.out" "$scratch/other.log" | head -c 400)"
fi
# A process that maps the index another compiled still hears that the cache has problems.
if grep -q "error: $small: 2 lines have problems (1 of them fail closed)" "$scratch/other.log" 2>/dev/null; then
	pass "broken: a process that only maps the index logs that lines have problems"
else
	fail "broken: a process that only maps the index logs that lines have problems" "$(head -c 400 "$scratch/other.log" 2>/dev/null)"
fi
under "$small" "$scratch/good.log" error first 127.0.0.1 "$port_good" >"$scratch/good.out"
if [ "$(value result "$scratch/good.out")" != EACCES ] && ! grep -qs "refused" "$scratch/good.log"; then
	pass "broken: a good line's address is not refused"
else
	fail "broken: a good line's address is not refused" "$(cat "$scratch/good.out" "$scratch/good.log" | head -c 400)"
fi

# --- the CLI keeps the index current ----------------------------------------------
cli_cache=$scratch/cli/cache
mkdir -p "$scratch/cli"
for action in add remove check; do
	case $action in
	add) "$cli" cache add "$("$cli" nodeurl --key "$scratch/k" --addr "127.0.0.1:$port_fork")" --cache "$cli_cache" >/dev/null ;;
	remove) "$cli" cache remove "127.0.0.1:$port_fork" --cache "$cli_cache" >/dev/null ;;
	check) "$cli" cache check --cache "$cli_cache" >/dev/null ;;
	esac
	rm -f "$scratch/cli.log"
	under "$cli_cache" "$scratch/cli.log" debug first 127.0.0.1 0 >"$scratch/cli.out"
	if grep -q "mapped index $cli_cache.idx" "$scratch/cli.log" && ! grep -q "built index" "$scratch/cli.log"; then
		pass "cli: after 'cache $action' a program maps the index as it is"
	else
		fail "cli: after 'cache $action' a program maps the index as it is" "$(head -c 400 "$scratch/cli.log")"
	fi
	# Keep the file from changing within one mtime tick of the next action.
	sleep 0.05
done

# --- after fork, the child reloads by itself --------------------------------------
cp "$small" "$scratch/fork-cache"
{ cat "$small"; echo "127.0.0.1:$port_fork?noise_pub=bad"; } >"$scratch/fork-new"
if under "$scratch/fork-cache" "$scratch/fork.log" error forkreload 127.0.0.1 "$port_fork" \
	"$scratch/fork-new" "$scratch/fork-cache" >"$scratch/fork.out"; then
	pass "fork: the child notices a replaced file and refuses its new broken line"
else
	fail "fork: the child notices a replaced file and refuses its new broken line" \
		"$(cat "$scratch/fork.out" "$scratch/fork.log" | head -c 400)"
fi

# --- nowhere to write: the per-user directory, then memory ---------------------------
# A read-only mount in a private mount namespace: even root cannot write there.
if unshare --mount true 2>/dev/null; then
	ro=$scratch/ro xdg=$scratch/xdg
	mkdir -p "$ro" "$xdg"
	cp "$small" "$scratch/ro-src"
	unshare --mount bash -c '
		mount -t tmpfs -o size=1m none "$1" && cp "$2" "$1/cache" && mount -o remount,ro "$1" || exit 3
		shift 2
		"$@"' _ "$ro" "$scratch/ro-src" env XDG_RUNTIME_DIR="$xdg" "${preload[@]}" NOISESHIM_CACHE="$ro/cache" \
		NOISESHIM_LOG=debug NOISESHIM_LOG_FILE="$scratch/ro.log" "$probe" first 127.0.0.1 "$port_broken" >"$scratch/ro.out"
	if [ "$(value result "$scratch/ro.out")" = EACCES ] && grep -q "built index $xdg/noiseshim/[0-9a-f]*\.idx" "$scratch/ro.log" &&
		[ "$(stat -c %a "$xdg/noiseshim" 2>/dev/null)" = 700 ]; then
		pass "fallback: a read-only cache directory puts the index in \$XDG_RUNTIME_DIR/noiseshim (mode 700)"
	else
		fail "fallback: a read-only cache directory puts the index in \$XDG_RUNTIME_DIR/noiseshim" \
			"$(cat "$scratch/ro.out" "$scratch/ro.log" | head -c 600)"
	fi
	# The per-user directory is not ours to trust when others can write it.
	chmod 0777 "$xdg/noiseshim"
	unshare --mount bash -c '
		mount -t tmpfs -o size=1m none "$1" && cp "$2" "$1/cache" && mount -o remount,ro "$1" || exit 3
		shift 2
		"$@"' _ "$ro" "$scratch/ro-src" env XDG_RUNTIME_DIR="$xdg" "${preload[@]}" NOISESHIM_CACHE="$ro/cache" \
		NOISESHIM_LOG=warn NOISESHIM_LOG_FILE="$scratch/mem.log" "$probe" first 127.0.0.1 "$port_broken" >"$scratch/mem.out"
	if [ "$(value result "$scratch/mem.out")" = EACCES ] && [ "$(grep -c "warn: .*compiled in this process's memory" "$scratch/mem.log")" = 1 ]; then
		pass "fallback: with no trusted place to write, the index is built in memory, said once at warn level"
	else
		fail "fallback: with no trusted place to write, the index is built in memory" \
			"$(cat "$scratch/mem.out" "$scratch/mem.log" | head -c 600)"
	fi
else
	fail "fallback: tests" "unshare --mount is not available (needs root)"
fi

echo "cache: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
