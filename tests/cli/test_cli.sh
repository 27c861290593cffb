#!/bin/sh
# End-to-end tests of the noiseshim command.
# usage: tests/cli/test_cli.sh PATH/TO/noiseshim PATH/TO/stats_writer PATH/TO/noiseshim.1
set -u

usage="usage: test_cli.sh PATH/TO/noiseshim PATH/TO/stats_writer PATH/TO/noiseshim.1"
bin=${1:?$usage}
stats_writer=${2:?$usage}
man_page=${3:?$usage}
here=$(cd "$(dirname "$0")" && pwd)
# Some tests run in another directory.
absolute() {
	case $1 in
	/*) echo "$1" ;;
	*/*) echo "$PWD/$1" ;;
	*) echo "$1" ;;
	esac
}
bin=$(absolute "$bin")
stats_writer=$(absolute "$stats_writer")
man_page=$(absolute "$man_page")
dir=$(mktemp -d) || exit 1
trap 'rm -rf "$dir"' EXIT
umask 022
# No test may touch the real cache of whoever runs it.
unset NOISESHIM_CACHE
HOME=$dir/home
export HOME

passed=0
failed=0

pass() { passed=$((passed + 1)); }
fail() {
	failed=$((failed + 1))
	echo "FAIL: $*"
	[ -s "$dir/err" ] && sed 's/^/  stderr: /' "$dir/err"
	return 0
}

# run ARGS...: run noiseshim; $rc, $dir/out and $dir/err hold the outcome.
run() {
	"$bin" "$@" >"$dir/out" 2>"$dir/err"
	rc=$?
}

# expect_rc CODE DESCRIPTION: the last run exited with CODE.
expect_rc() {
	if [ "$rc" -eq "$1" ]; then pass; else fail "$2 (exit $rc, expected $1)"; fi
}

# expect_err TEXT DESCRIPTION: the last run's stderr contains TEXT.
expect_err() {
	if grep -qF -- "$1" "$dir/err"; then pass; else fail "$2: stderr lacks '$1'"; fi
}

# expect_out_line TEXT DESCRIPTION: the last run's stdout has TEXT as a whole line.
expect_out_line() {
	if grep -qxF -- "$1" "$dir/out"; then pass; else fail "$2: stdout lacks line '$1'"; fi
}

mode_of() { stat -c %a "$1"; }

# --- keys -------------------------------------------------------------------

key=$dir/server.key
run keygen "$key"
expect_rc 0 "keygen"
keygen_pub=$(cat "$dir/out")
if [ "$(mode_of "$key")" = 600 ]; then pass; else fail "keygen: mode $(mode_of "$key"), expected 600"; fi

run pubkey "$key"
expect_rc 0 "pubkey"
if [ "$(cat "$dir/out")" = "$keygen_pub" ] && [ -n "$keygen_pub" ]; then
	pass
else
	fail "pubkey output '$(cat "$dir/out")' differs from keygen output '$keygen_pub'"
fi

run keygen "$key"
expect_rc 1 "keygen over an existing file"
expect_err "$key" "keygen over an existing file names it"
run pubkey "$key"
if [ "$(cat "$dir/out")" = "$keygen_pub" ]; then pass; else fail "keygen changed an existing key"; fi

(cd "$dir" && "$bin" keygen >/dev/null 2>&1)
if [ -f "$dir/noiseshim.key" ]; then pass; else fail "keygen without FILE writes ./noiseshim.key"; fi

loose=$dir/loose.key
cp "$key" "$loose"
chmod 644 "$loose"
run pubkey "$loose"
expect_rc 1 "pubkey with a 0644 key"
expect_err "chmod 600 $loose" "a 0644 key is refused with the fix"
run nodeurl --key "$loose" --addr 127.0.0.1:7777
expect_rc 1 "nodeurl with a 0644 key"

printf 'not a key\n' >"$dir/bad.key"
chmod 600 "$dir/bad.key"
run pubkey "$dir/bad.key"
expect_rc 1 "pubkey with a malformed key"
expect_err "64 hex digits" "a malformed key says what is expected"

# --- nodeurl and cache --------------------------------------------------------

cache=$dir/cache
printf '# servers\n\n' >"$cache"

run nodeurl --key "$key" --addr 127.0.0.1:7777 --tfo
expect_rc 0 "nodeurl"
url4=$(cat "$dir/out")
expect_out_line "127.0.0.1:7777?f=1&noise_proto=1&noise_pub=$keygen_pub" "nodeurl --tfo"

run nodeurl --key "$key" --addr '[::1]:7778' --proto 2
expect_rc 0 "nodeurl IPv6"
url6=$(cat "$dir/out")
expect_out_line "[::1]:7778?noise_proto=2&noise_pub=$keygen_pub" "nodeurl IPv6 with --proto 2"

run cache add "$url4" --cache "$cache"
expect_rc 0 "cache add"
run cache --cache "$cache" add "$url6"
expect_rc 0 "cache add IPv6"
run cache list --cache "$cache"
expect_rc 0 "cache list"
expect_out_line "$url4" "cache list shows the IPv4 entry"
expect_out_line "$url6" "cache list shows the IPv6 entry"
if [ "$(head -n 1 "$cache")" = "# servers" ]; then pass; else fail "cache add dropped a comment"; fi

run cache add "$url4" --cache "$cache"
expect_rc 1 "cache add of a duplicate address:port"
expect_err "127.0.0.1:7777" "the duplicate is named"
run cache add "[::ffff:127.0.0.1]:7777?noise_pub=$keygen_pub" --cache "$cache"
expect_rc 1 "cache add of the same address as IPv4-mapped IPv6"

run cache add "127.0.0.1:7779" --cache "$cache"
expect_rc 1 "cache add without noise_pub"
before=$(sha256sum <"$cache")
run cache add "127.0.0.1:7780?noise_pub=xyz" --cache "$cache"
expect_rc 1 "cache add with a bad key"
expect_err "not added (the cache is unchanged): bad noise_pub" "a refused add says nothing was added, and why"
if [ "$(sha256sum <"$cache")" = "$before" ]; then pass; else fail "a refused cache add changed the cache"; fi
run cache add "not a url" --cache "$cache"
expect_rc 1 "cache add of a malformed URL"

run cache check --cache "$cache"
expect_rc 0 "cache check of a good cache"

printf 'garbage\n' >>"$cache"
bad_line=$(wc -l <"$cache")
run cache check --cache "$cache"
expect_rc 1 "cache check with a bad line"
if grep -q "^$cache:$bad_line: " "$dir/out"; then
	pass
else
	fail "cache check reports $cache:$bad_line (got: $(cat "$dir/out"))"
fi

run cache remove 127.0.0.1:7777 --cache "$cache"
expect_rc 0 "cache remove"
run cache list --cache "$cache"
if grep -qF "127.0.0.1:7777" "$dir/out"; then fail "cache remove left the entry"; else pass; fi
expect_out_line "$url6" "cache remove kept the other entry"
if grep -qxF "garbage" "$cache" && grep -qxF "# servers" "$cache"; then
	pass
else
	fail "cache remove dropped other lines"
fi
run cache remove 127.0.0.1:7777 --cache "$cache"
expect_rc 1 "cache remove of an absent entry"

NOISESHIM_CACHE=$dir/env-cache "$bin" cache add "$url4" >/dev/null 2>&1
if grep -qxF "$url4" "$dir/env-cache" 2>/dev/null; then pass; else fail "NOISESHIM_CACHE is the default cache"; fi

run cache add "$url4"
expect_rc 0 "cache add to the default cache under HOME"
if grep -qxF "$url4" "$HOME/.config/noiseshim/cache" 2>/dev/null; then
	pass
else
	fail "the default cache is ~/.config/noiseshim/cache"
fi

# --- run and serve: launching under the shims -----------------------------------

# Paths as the command reports them: absolute and free of symbolic links.
real_dir=$(cd "$dir" && pwd -P)
shim=$real_dir/dummy-shim.so
: >"$shim"
run_cache=$dir/run-cache
printf '%s\n' "$url4" >"$run_cache"
# Commands for the launched shell, which expands them.
# shellcheck disable=SC2016
show_env='echo "$LD_PRELOAD|${NOISESHIM_CACHE-unset}|${NOISESHIM_TRANSPORT-unset}"'
# shellcheck disable=SC2016
show_preload='echo "$LD_PRELOAD"'
# shellcheck disable=SC2016
show_server_env='echo "$LD_PRELOAD|$NOISESHIM_KEY|$NOISESHIM_LISTEN|${NOISESHIM_ACCEPT-unset}"'

# The child's ld.so complains about the dummy shim on stderr; only stdout matters here.
run run --cache "$run_cache" --shim "$shim" -- sh -c "$show_env"
expect_rc 0 "run"
expect_out_line "$shim|$run_cache|unset" "run sets LD_PRELOAD and NOISESHIM_CACHE for the program"

(cd "$dir" && "$bin" run --cache run-cache --transport tcp --shim dummy-shim.so -- sh -c "$show_env") \
	>"$dir/out" 2>"$dir/err"
expect_out_line "$shim|$real_dir/run-cache|tcp" \
	"run makes relative paths absolute and sets NOISESHIM_TRANSPORT"

LD_PRELOAD=/nonexistent/first.so run run --shim "$shim" -- sh -c "$show_preload"
expect_out_line "$shim:/nonexistent/first.so" "run keeps the LD_PRELOAD entries already there"

run run --shim "$shim" -- echo one --two
expect_out_line "one --two" "run passes PROGRAM its arguments and options"

run run --shim "$dir/no-such-shim.so" -- true
expect_rc 1 "run with a missing --shim"
expect_err "$dir/no-such-shim.so" "a missing --shim is named"

run run --cache "$dir/no-such-cache" --shim "$shim" -- true
expect_rc 0 "run with a cache that does not exist yet"
expect_err "$dir/no-such-cache" "run warns about a cache it cannot read"

run run --shim "$shim" -- no-such-program-here
expect_rc 1 "run of a program that is not in PATH"
expect_err "no-such-program-here: not found in PATH" "a missing program is named"

# Without --shim: beside the binary, else ../lib/noiseshim/ from it.
mkdir -p "$dir/flat" "$dir/prefix/bin" "$dir/prefix/lib/noiseshim" "$dir/bare"
cp "$bin" "$dir/flat/noiseshim"
: >"$dir/flat/libnoiseshim.so"
cp "$bin" "$dir/prefix/bin/noiseshim"
: >"$dir/prefix/lib/noiseshim/libnoiseshim.so"
cp "$bin" "$dir/bare/noiseshim"
"$dir/flat/noiseshim" run -- sh -c "$show_preload" >"$dir/out" 2>"$dir/err"
expect_out_line "$real_dir/flat/libnoiseshim.so" "run finds the shim beside the binary"
"$dir/prefix/bin/noiseshim" run -- sh -c "$show_preload" >"$dir/out" 2>"$dir/err"
expect_out_line "$real_dir/prefix/lib/noiseshim/libnoiseshim.so" "run finds the shim in ../lib/noiseshim"
"$dir/bare/noiseshim" run -- true >"$dir/out" 2>"$dir/err"
rc=$?
expect_rc 1 "run without any shim"
expect_err "$real_dir/bare/libnoiseshim.so" "a missing shim names the places tried"
expect_err "lib/noiseshim/libnoiseshim.so" "a missing shim names the install location tried"

run serve --key "$key" --listen '7801,[::1]:7802' --tfo --shim "$shim" -- sh -c "$show_server_env"
expect_rc 0 "serve"
expect_out_line "$shim|$key|7801,[::1]:7802|unset" \
	"serve sets LD_PRELOAD, NOISESHIM_KEY and NOISESHIM_LISTEN for the program"
serve_url=$(grep '^127\.0\.0\.1:7801?' "$dir/err")
if [ "$serve_url" = "127.0.0.1:7801?f=1&noise_proto=1&noise_pub=$keygen_pub" ]; then
	pass
else
	fail "serve prints the NodeURL of a bare port at 127.0.0.1 (got '$serve_url')"
fi
if grep -qxF "[::1]:7802?f=1&noise_proto=1&noise_pub=$keygen_pub" "$dir/err"; then
	pass
else
	fail "serve prints the NodeURL of an addr:port at that address"
fi
run cache add "$serve_url" --cache "$dir/serve-cache"
expect_rc 0 "cache add takes the NodeURL serve prints"

run serve --key "$key" --listen 7801 --addr 192.0.2.7 --proto 2 --accept mixed --shim "$shim" \
	-- sh -c "$show_server_env"
expect_out_line "$shim|$key|7801|mixed" "serve --accept sets NOISESHIM_ACCEPT"
if grep -qxF "192.0.2.7:7801?noise_proto=2&noise_pub=$keygen_pub" "$dir/err"; then
	pass
else
	fail "serve --addr --proto shape the NodeURL"
fi

run serve --key "$loose" --listen 7801 --shim "$shim" -- true
expect_rc 1 "serve with a 0644 key"
expect_err "chmod 600 $loose" "serve refuses a 0644 key with the fix"

# --- programs LD_PRELOAD cannot reach -------------------------------------------

mkdir -p "$dir/bin"
printf 'int main(void) { return 0; }\n' >"$dir/hello.c"
printf '%s\n' \
	'#include <sys/syscall.h>' \
	'void _start(void) {' \
	'#if defined(__x86_64__)' \
	'	__asm__ volatile("syscall" : : "a"(SYS_exit), "D"(0));' \
	'#elif defined(__aarch64__)' \
	'	register long nr __asm__("x8") = SYS_exit, status __asm__("x0") = 0;' \
	'	__asm__ volatile("svc #0" : : "r"(nr), "r"(status));' \
	'#endif' \
	'	for (;;);' \
	'}' >"$dir/start.c"
static_bin=$dir/bin/static-hello
if cc -static -o "$static_bin" "$dir/hello.c" 2>/dev/null ||
	cc -static -nostdlib -o "$static_bin" "$dir/start.c" 2>/dev/null; then
	run run --shim "$shim" -- "$static_bin"
	expect_rc 1 "run refuses a static binary"
	expect_err "statically linked" "the refusal of a static binary says why"
	expect_err "--force" "the refusal offers --force"

	PATH=$dir/bin:$PATH run run --shim "$shim" -- static-hello
	expect_rc 1 "run refuses a static binary found through PATH"

	run run --force --shim "$shim" -- "$static_bin"
	expect_rc 0 "run --force launches a static binary"

	printf '#!%s\n' "$static_bin" >"$dir/static-script"
	chmod 755 "$dir/static-script"
	run run --shim "$shim" -- "$dir/static-script"
	expect_rc 1 "run refuses a script whose interpreter is static"
	expect_err "$static_bin is statically linked" "the static interpreter is named"

	printf '#!/usr/bin/env static-hello\n' >"$dir/env-script"
	chmod 755 "$dir/env-script"
	PATH=$dir/bin:$PATH run run --shim "$shim" -- "$dir/env-script"
	expect_rc 1 "run refuses a static program started by #!/usr/bin/env"
else
	echo "SKIP: no static binary could be built here"
fi

# A version manager's shim: a shell script that execs the real program.
printf '#!/usr/bin/env sh\nexec "$@"\n' >"$dir/bin/wrapper"
chmod 755 "$dir/bin/wrapper"
PATH=$dir/bin:$PATH run run --shim "$shim" -- wrapper sh -c 'echo wrapped'
expect_rc 0 "run launches a script run by a dynamic interpreter"
expect_out_line "wrapped" "the wrapper script ran"

# The Go toolchain marks its binaries with these sections; a C program can carry one too.
printf '%s\n' '__attribute__((section(".go.buildinfo"), used))' \
	'static const char buildinfo[] = "Go buildinf:";' \
	'int main(void) { return 0; }' >"$dir/go.c"
if cc -o "$dir/fake-go" "$dir/go.c" 2>/dev/null; then
	run run --shim "$shim" -- "$dir/fake-go"
	expect_rc 1 "run refuses a Go binary"
	expect_err "Go program" "the refusal of a Go binary says why"
else
	echo "SKIP: cc cannot build a test program"
fi

# A set-user-ID bit that names the caller changes nothing; one that names another user does.
cp /bin/true "$dir/suid-own"
chmod 4755 "$dir/suid-own"
run run --shim "$shim" -- "$dir/suid-own"
expect_rc 0 "run launches a set-user-ID program owned by the caller"

setuid_other=
if grep -q '^NoNewPrivs:[[:space:]]*1' /proc/self/status 2>/dev/null; then
	echo "SKIP: no_new_privs is set, so set-user-ID bits do nothing here"
elif [ "$(id -u)" = 0 ] && ! findmnt -n -o OPTIONS -T "$dir" 2>/dev/null | grep -qw nosuid; then
	setuid_other=$dir/suid-other
	cp /bin/true "$setuid_other"
	chown 65534 "$setuid_other"
	chmod 4755 "$setuid_other"
	cp /bin/true "$dir/sgid-other"
	chgrp 65534 "$dir/sgid-other"
	chmod 2755 "$dir/sgid-other"
	run run --shim "$shim" -- "$dir/sgid-other"
	expect_rc 1 "run refuses a set-group-ID copy"
	expect_err "set-group-ID" "the refusal of a set-group-ID program says why"
else
	for f in /usr/bin/passwd /usr/bin/gpasswd /usr/bin/chfn /bin/su /usr/bin/su; do
		if [ -u "$f" ] && [ "$(stat -c %u "$f")" = 0 ] &&
			! findmnt -n -o OPTIONS -T "$f" 2>/dev/null | grep -qw nosuid; then
			setuid_other=$f
			break
		fi
	done
fi
if [ -n "$setuid_other" ]; then
	run run --shim "$shim" -- "$setuid_other"
	expect_rc 1 "run refuses a set-user-ID program of another user"
	expect_err "set-user-ID" "the refusal of a set-user-ID program says why"
	run serve --key "$key" --listen 7801 --shim "$shim" -- "$setuid_other"
	expect_rc 1 "serve refuses a set-user-ID program of another user"
elif ! grep -q '^NoNewPrivs:[[:space:]]*1' /proc/self/status 2>/dev/null; then
	echo "SKIP: no set-user-ID program of another user to try"
fi

# --- doctor ------------------------------------------------------------------------

run doctor --key "$key" --cache "$run_cache" sh
expect_rc 0 "doctor on a good setup"
if grep -q '^error: ' "$dir/out"; then fail "doctor on a good setup reports an error"; else pass; fi
if grep -q '^[a-z]*: ' "$dir/out" && ! grep -qv '^\(ok\|warn\|error\): ' "$dir/out"; then
	pass
else
	fail "every doctor line starts with ok:, warn: or error: (got: $(cat "$dir/out"))"
fi
if grep -q '^\(ok\|warn\): .*tcp_fastopen' "$dir/out"; then pass; else fail "doctor reports TCP Fast Open"; fi
if grep -q "^ok: key: $key" "$dir/out"; then pass; else fail "doctor reports a good key as ok"; fi
if grep -q "^ok: cache: $run_cache: 1 entry" "$dir/out"; then pass; else fail "doctor counts the cache entries"; fi
if grep -q "^ok: program: .* so LD_PRELOAD reaches it" "$dir/out"; then
	pass
else
	fail "doctor reports a dynamic program as ok"
fi
if grep -q "^\(ok\|warn\): shim: .*libnoiseshim.so" "$dir/out"; then pass; else fail "doctor reports the client shim"; fi

bad_cache=$dir/bad-cache
printf '# servers\n%s\ngarbage\n' "$url4" >"$bad_cache"
run doctor --key "$loose" --cache "$bad_cache" "${static_bin:-sh}"
expect_rc 1 "doctor on a bad setup"
if grep -q "^error: key: .*chmod 600 $loose" "$dir/out"; then
	pass
else
	fail "doctor reports a 0644 key as an error with the fix (got: $(cat "$dir/out"))"
fi
if grep -q "^error: cache: $bad_cache:3: " "$dir/out"; then
	pass
else
	fail "doctor reports the bad cache line by number (got: $(cat "$dir/out"))"
fi
if [ -n "$static_bin" ]; then
	if grep -q "^error: program: .*statically linked" "$dir/out"; then
		pass
	else
		fail "doctor reports a static program as an error"
	fi
fi

chmod 666 "$run_cache"
NOISESHIM_CACHE=$run_cache run doctor
expect_rc 1 "doctor on a cache anyone can write"
if grep -q "^error: cache: $run_cache: .*chmod o-w" "$dir/out"; then
	pass
else
	fail "doctor reads NOISESHIM_CACHE and reports a world-writable cache"
fi
chmod 644 "$run_cache"

run doctor --cache "$dir/no-such-cache"
expect_rc 1 "doctor with a --cache that does not exist"
if grep -q "^error: cache: $dir/no-such-cache: " "$dir/out"; then pass; else fail "doctor names a missing cache"; fi

# --- version and man page ----------------------------------------------------------

version=$(sed -n 's/^#define NS_VERSION "\(.*\)"$/\1/p' "$here/../../lib/version.h")
run --version
expect_rc 0 "--version"
expect_out_line "noiseshim $version" "--version prints the version of lib/version.h"
if printf '%s\n' "$version" | grep -qxE '[0-9]+\.[0-9]+\.[0-9]+'; then
	pass
else
	fail "the version '$version' is X.Y.Z"
fi

if MANWIDTH=80 man -l "$man_page" >"$dir/man.txt" 2>"$dir/man.err"; then pass; else fail "man -l $man_page"; fi
if [ ! -s "$dir/man.err" ] && groff -man -ww -z "$man_page" 2>"$dir/man.err" && [ ! -s "$dir/man.err" ]; then
	pass
else
	fail "the man page renders without warnings: $(head -n 3 "$dir/man.err")"
fi
for section in NAME SYNOPSIS DESCRIPTION COMMANDS ENVIRONMENT FILES "EXIT STATUS" EXAMPLES; do
	if grep -qx "$section" "$dir/man.txt"; then pass; else fail "the man page lacks section $section"; fi
done
if grep -q "noiseshim $version" "$dir/man.txt"; then pass; else fail "the man page names version $version"; fi
# Every command and every variable the shims read is in the page.
for word in keygen pubkey nodeurl "cache add" "cache remove" "cache list" "cache check" run serve \
	stats doctor --version --json --prometheus --allow --accept --addr --proto --tfo --shim --force \
	--transport NOISESHIM_CONFIG NOISESHIM_TRANSPORT NOISESHIM_KEY NOISESHIM_ALLOW NOISESHIM_CACHE \
	NOISESHIM_TFO NOISESHIM_0RTT NOISESHIM_LISTEN NOISESHIM_ACCEPT NOISESHIM_LOG NOISESHIM_LOG_FILE \
	NOISESHIM_PREFIX NOISESHIM_HANDSHAKE_TIMEOUT_MS NOISESHIM_REPLAY_WINDOW \
	NOISESHIM_REPLAY_CAPACITY NOISESHIM_STATS_DIR; do
	if grep -qF -- "$word" "$dir/man.txt"; then pass; else fail "the man page does not mention $word"; fi
done

# --- run: a cache that wraps nothing is said so ---------------------------------------

HOME=$dir/no-home run run --shim "$shim" -- true
expect_rc 0 "run without any cache"
expect_err "no NodeURL cache" "run warns when there is no cache at all"
# The dummy shim makes ld.so complain too: count only our lines.
if [ "$(grep -c '^noiseshim: ' "$dir/err")" -eq 1 ]; then pass; else fail "the no-cache warning is one line"; fi
printf '# nothing yet\n' >"$dir/empty-cache"
run run --cache "$dir/empty-cache" --shim "$shim" -- true
expect_err "$dir/empty-cache has no usable entry" "run warns about a cache without entries"
printf 'garbage\n' >"$dir/garbage-cache"
NOISESHIM_CACHE=$dir/garbage-cache run run --shim "$shim" -- true
expect_err "$dir/garbage-cache has no usable entry" "run reads NOISESHIM_CACHE for the warning"
# Bad lines that name an address are not nothing: the shim refuses connections there.
printf '127.0.0.1:7000?noise_proto=1\n[::1]:7001?noise_pub=bad\n' >"$dir/bad-cache"
run run --cache "$dir/bad-cache" --shim "$shim" -- true
expect_rc 0 "run with a cache of bad lines only"
expect_err "$dir/bad-cache: 2 bad lines: the shim refuses every connection to their addresses (connect fails with EACCES)" \
	"run says the shim refuses the addresses of bad lines"
expect_err "and wraps no other connection" "run says nothing else is wrapped"
if grep -q "the shim wraps no connection" "$dir/err"; then fail "run says a cache of bad lines wraps nothing"; else pass; fi
if [ "$(grep -c '^noiseshim: ' "$dir/err")" -eq 1 ]; then pass; else fail "the bad-lines warning is one line"; fi
cat "$run_cache" "$dir/bad-cache" >"$dir/mixed-cache"
run run --cache "$dir/mixed-cache" --shim "$shim" -- true
expect_err "$dir/mixed-cache: 2 bad lines: the shim refuses every connection to their addresses" \
	"run warns about bad lines beside a good entry"
if grep -q "wraps no other connection" "$dir/err"; then fail "run says a cache with an entry wraps nothing else"; else pass; fi
run run --cache "$run_cache" --shim "$shim" -- true
if [ -s "$dir/err" ] && grep -q "warning" "$dir/err"; then
	fail "run warns about a cache that has an entry"
else
	pass
fi
HOME=$dir/no-home run run --transport off --shim "$shim" -- true
if grep -q "warning" "$dir/err"; then fail "run --transport off warns about the cache"; else pass; fi
HOME=$dir/no-home NOISESHIM_TRANSPORT=off run run --shim "$shim" -- true
if grep -q "warning" "$dir/err"; then fail "run with NOISESHIM_TRANSPORT=off warns about the cache"; else pass; fi
HOME=$dir/no-home NOISESHIM_TRANSPORT=off run run --transport noise --shim "$shim" -- true
expect_err "no NodeURL cache" "run --transport noise over NOISESHIM_TRANSPORT=off warns"

# --- nodeurl: a host name is no cache key ----------------------------------------------

run nodeurl --key "$key" --addr localhost:1
expect_rc 2 "nodeurl --addr localhost:1 is refused"
expect_err "needs a numeric IP address" "the refusal of a host name says why"
expect_err "127.0.0.1" "the refusal lists what localhost resolves to"
if [ -s "$dir/out" ]; then fail "nodeurl printed a NodeURL for a host name"; else pass; fi

# --- serve: key lists and wildcard ports -------------------------------------------------

key2=$dir/second.key
"$bin" keygen "$key2" >"$dir/key2.pub" 2>/dev/null
key2_pub=$(cat "$dir/key2.pub")
(cd "$dir" && "$bin" serve --key "second.key, $key" --listen 7805 --addr 192.0.2.9 --shim "$shim" \
	-- sh -c "$show_server_env") >"$dir/out" 2>"$dir/err"
expect_out_line "$shim|$real_dir/second.key,$key|7805|unset" \
	"serve passes the key list to NOISESHIM_KEY with every path absolute"
if grep -qxF "192.0.2.9:7805?noise_proto=1&noise_pub=$key2_pub" "$dir/err" &&
	! grep -qF "$keygen_pub" "$dir/err"; then
	pass
else
	fail "serve prints NodeURLs of the current (first) key only (got: $(cat "$dir/err"))"
fi
run serve --key "$key,$loose" --listen 7805 --shim "$shim" -- true
expect_rc 1 "serve with a bad second key"
expect_err "$loose" "serve names the bad key of the list"
run serve --key "$key,$dir/absent.key" --listen 7805 --shim "$shim" -- true
expect_rc 1 "serve with a missing second key"
expect_err "$dir/absent.key" "serve names the missing key of the list"

run serve --key "$key" --listen 7806 --shim "$shim" -- true
for addr in $(ip -o addr show 2>/dev/null | awk '$3 == "inet" || ($3 == "inet6" && $0 !~ / scope link/) { sub("/.*", "", $4); print $4 }'); do
	case $addr in
	*:*) want="[$addr]:7806?noise_proto=1&noise_pub=$keygen_pub" ;;
	*) want="$addr:7806?noise_proto=1&noise_pub=$keygen_pub" ;;
	esac
	if grep -qxF "$want" "$dir/err"; then pass; else fail "serve --listen 7806 prints a NodeURL for $addr"; fi
done
if [ "$(grep -m1 ':7806?' "$dir/err")" = "127.0.0.1:7806?noise_proto=1&noise_pub=$keygen_pub" ]; then
	pass
else
	fail "serve lists 127.0.0.1 first for a wildcard port"
fi
if grep -q '^\[fe80' "$dir/err"; then fail "serve printed a link-local NodeURL"; else pass; fi
run serve --key "$key" --listen 0.0.0.0:7807 --shim "$shim" -- true
if grep -q '^\[' "$dir/err"; then fail "serve --listen 0.0.0.0:PORT printed IPv6 NodeURLs"; else pass; fi
expect_err "127.0.0.1:7807?" "serve --listen 0.0.0.0:PORT prints the IPv4 loopback"

# --addr NAME: one NodeURL for each address the name resolves to, each one the cache takes.
run serve --key "$key" --listen 7808 --addr localhost --shim "$shim" -- true
expect_rc 0 "serve --addr localhost"
expect_err "127.0.0.1:7808?noise_proto=1&noise_pub=$keygen_pub" "serve --addr localhost prints the address of localhost"
if grep -q "^localhost:" "$dir/err"; then fail "serve --addr localhost printed a host name"; else pass; fi
rm -f "$dir/name-cache"
added=0
grep ':7808?' "$dir/err" >"$dir/name-urls"
while read -r url; do
	if "$bin" cache add "$url" --cache "$dir/name-cache" >/dev/null 2>&1; then
		added=$((added + 1))
	else
		fail "cache add refuses what serve --addr localhost printed: $url"
	fi
done <"$dir/name-urls"
if [ "$added" -gt 0 ]; then pass; else fail "serve --addr localhost printed no NodeURL"; fi
run serve --key "$key" --listen 7808 --addr no-such-host.invalid --shim "$shim" -- true
expect_rc 2 "serve --addr with a name that does not resolve"
expect_err "--addr 'no-such-host.invalid' does not resolve" "serve says the name does not resolve"

# --- stats ----------------------------------------------------------------------------

stats_dir=$dir/stats
mkdir "$stats_dir"
mkfifo "$dir/hold" "$dir/hold-listen"
# start_writer: a stats_writer holding its counters until fd 3 closes; sets writer, parent_pid, worker_pid.
start_writer() {
	: >"$dir/writer.out"
	NOISESHIM_STATS_DIR=$stats_dir "$stats_writer" <"$dir/hold" >"$dir/writer.out" 2>"$dir/writer.err" &
	writer=$!
	exec 3>"$dir/hold"
	tries=100
	until [ -s "$dir/writer.out" ] || [ "$tries" -eq 0 ]; do
		sleep 0.05
		tries=$((tries - 1))
	done
	read -r parent_pid worker_pid <"$dir/writer.out"
}
start_writer
NOISESHIM_STATS_DIR=$stats_dir run stats "$parent_pid"
expect_rc 0 "stats PID"
cat >"$dir/want.txt" <<-EOF_TEXT
	handshakes_ok     13
	handshakes_failed 2
	replays_refused   1
	clients_refused   4
	connections_open  3
	bytes_in          1024
	bytes_out         2345
	tfo_syn_data      6
EOF_TEXT
if cmp -s "$dir/want.txt" "$dir/out"; then pass; else fail "stats prints the counters exactly: $(cat "$dir/out")"; fi
NOISESHIM_STATS_DIR=$stats_dir run stats --json "$parent_pid"
want_json="{\"pid\":$parent_pid,\"owner\":$parent_pid,\"handshakes_ok\":13,\"handshakes_failed\":2,\"replays_refused\":1,\"clients_refused\":4,\"connections_open\":3,\"bytes_in\":1024,\"bytes_out\":2345,\"tfo_syn_data\":6}"
if [ "$(cat "$dir/out")" = "$want_json" ]; then pass; else fail "stats --json: got $(cat "$dir/out")"; fi
if python3 -c 'import json, sys; json.load(open(sys.argv[1]))' "$dir/out" 2>/dev/null; then
	pass
else
	fail "stats --json is valid JSON"
fi
NOISESHIM_STATS_DIR=$stats_dir run stats --json "$worker_pid"
if [ "$(cat "$dir/out")" = "$(printf '%s' "$want_json" | sed "s/\"pid\":$parent_pid/\"pid\":$worker_pid/")" ]; then
	pass
else
	fail "stats of a worker reads its parent's counters: got $(cat "$dir/out")"
fi
NOISESHIM_STATS_DIR=$stats_dir run stats --prometheus "$parent_pid"
{
	for m in "handshakes_ok_total counter 13" "handshakes_failed_total counter 2" \
		"replays_refused_total counter 1" "clients_refused_total counter 4" \
		"connections_open gauge 3" "bytes_in_total counter 1024" "bytes_out_total counter 2345" \
		"tfo_syn_data_total counter 6"; do
		# shellcheck disable=SC2086 # the words are meant to split
		set -- $m
		echo "# TYPE noiseshim_$1 $2"
		echo "noiseshim_$1{pid=\"$parent_pid\"} $3"
	done
} >"$dir/want.prom"
if grep -v '^# HELP ' "$dir/out" | cmp -s "$dir/want.prom" -; then
	pass
else
	fail "stats --prometheus: got $(cat "$dir/out")"
fi
if [ "$(grep -c '^# HELP noiseshim_[a-z_]* [A-Za-z]' "$dir/out")" -eq 8 ]; then
	pass
else
	fail "stats --prometheus has a # HELP line for each of the 8 metrics"
fi
exec 3>&-
wait "$writer"
if [ -z "$(ls -A "$stats_dir")" ]; then
	fail "the writer's block is gone though it forked (a child could still be adding)"
fi
# start_time PID: field 22 of /proc/PID/stat, counted after the command name.
start_time() {
	sed 's/.*) //' "/proc/$1/stat" | awk '{ print $20 }'
}
# Counters left under a live pid by an earlier process with that pid are refused, not shown.
for parent_block in "$stats_dir/$parent_pid".*; do
	ln -s "${parent_block##*/}" "$stats_dir/$$.$(($(start_time $$) - 1))"
done
NOISESHIM_STATS_DIR=$stats_dir run stats --json $$
expect_rc 1 "stats of a pid whose counters an earlier process left"
expect_err "earlier process with that pid" "stats says the counters are an earlier process's"
if [ -s "$dir/out" ]; then fail "stats printed an earlier process's counters: $(cat "$dir/out")"; else pass; fi
NOISESHIM_STATS_DIR=$stats_dir run stats "$worker_pid"
expect_rc 1 "stats of a pid that has exited"
expect_err "is not running" "stats says the pid is not running"
NOISESHIM_STATS_DIR=$stats_dir run stats "$parent_pid"
expect_rc 1 "stats of an exited parent"
if [ -z "$(ls -A "$stats_dir")" ]; then pass; else fail "stats left files of dead pids: $(ls "$stats_dir")"; fi
NOISESHIM_STATS_DIR=$stats_dir run stats $$
expect_rc 1 "stats of a process without counters"
expect_err "no counters for pid $$" "stats says a pid has no counters"

# Processes killed before their exit handlers ran leave their files until the next one attaches.
start_writer
kill -KILL "$worker_pid" "$parent_pid"
wait "$writer" 2>/dev/null
exec 3>&-
# entries: the names in the counters directory, one a line, sorted.
entries() {
	find "$stats_dir" -mindepth 1 -printf '%f\n' | sort
}
killed=$(entries | wc -l)
if [ "$killed" -eq 2 ]; then pass; else fail "a killed writer and worker left $killed entries, not 2"; fi
start_writer
want_entries=$(printf '%s.%s\n%s.%s\n' "$parent_pid" "$(start_time "$parent_pid")" "$worker_pid" \
	"$(start_time "$worker_pid")" | sort)
if [ "$(entries)" = "$want_entries" ]; then
	pass
else
	fail "a process that attaches sweeps what killed ones left: $(entries | tr '\n' ' ')"
fi
exec 3>&-
wait "$writer"
for args in "stats" "stats --json" "stats 0" "stats -5" "stats 12x" "stats 1 2" \
	"stats --json --prometheus 1"; do
	# shellcheck disable=SC2086
	run $args
	expect_rc 2 "noiseshim $args is a usage error"
done

# --- doctor: settings, key lists, the allowlist -------------------------------------------

NOISESHIM_LISTEN=1.2.3:80 run doctor
expect_rc 1 "doctor with a bad NOISESHIM_LISTEN"
if grep -q "^error: listen: NOISESHIM_LISTEN=1.2.3:80: " "$dir/out"; then
	pass
else
	fail "doctor names the bad NOISESHIM_LISTEN (got: $(cat "$dir/out"))"
fi
NOISESHIM_LISTEN='7801,[::1]:7802' run doctor
if grep -q "^ok: listen: NOISESHIM_LISTEN=7801,\[::1\]:7802: 2 entries" "$dir/out"; then
	pass
else
	fail "doctor counts good NOISESHIM_LISTEN entries (got: $(grep listen "$dir/out"))"
fi
# hold_listener ADDR: a socket listening on ADDR and a free port until
# release_listener; sets lport.
hold_listener() {
	: >"$dir/listen-port"
	python3 -c '
import socket, sys
s = socket.socket()
s.bind((sys.argv[1], 0))
s.listen()
print(s.getsockname()[1], flush=True)
sys.stdin.read()' "$1" <"$dir/hold-listen" >"$dir/listen-port" &
	listener=$!
	exec 4>"$dir/hold-listen"
	local tries=100
	until [ -s "$dir/listen-port" ] || [ "$tries" -eq 0 ]; do
		sleep 0.05
		tries=$((tries - 1))
	done
	lport=$(cat "$dir/listen-port")
}
release_listener() {
	exec 4>&-
	wait "$listener"
}
# Held against a socket that listens now: one on 127.0.0.1 only.
hold_listener 127.0.0.1
NOISESHIM_LISTEN="$lport,127.0.0.1:$lport,0.0.0.0:$lport,[::1]:$lport" run doctor
if grep -qxF "ok: listen: NOISESHIM_LISTEN entry $lport matches the socket listening on 127.0.0.1 port $lport" "$dir/out" &&
	grep -qxF "ok: listen: NOISESHIM_LISTEN entry 127.0.0.1:$lport matches the socket listening on 127.0.0.1 port $lport" "$dir/out"; then
	pass
else
	fail "doctor matches NOISESHIM_LISTEN entries to the listening socket (got: $(grep listen "$dir/out"))"
fi
if grep -q "^warn: listen: NOISESHIM_LISTEN entry 0.0.0.0:$lport matches no socket: the one on port $lport is bound to 127.0.0.1" "$dir/out" &&
	grep -q "^warn: listen: NOISESHIM_LISTEN entry \[::1\]:$lport matches no socket" "$dir/out"; then
	pass
else
	fail "doctor warns about an entry whose port listens on another address (got: $(grep listen "$dir/out"))"
fi
release_listener
# A socket bound to every address: an entry naming one address of it is
# wrapped on all of them, as the accept shim does, and doctor says so.
hold_listener 0.0.0.0
NOISESHIM_LISTEN="127.0.0.2:$lport" run doctor
if grep -q "^warn: listen: NOISESHIM_LISTEN entry 127.0.0.2:$lport: the socket on port $lport is bound to every address (0.0.0.0), so the shim wraps it on every address" "$dir/out" &&
	! grep -q "matches no socket" "$dir/out"; then
	pass
else
	fail "doctor says a wildcard socket is wrapped for an entry naming one address (got: $(grep listen "$dir/out"))"
fi
release_listener

# Cookie-less TCP Fast Open, in a network namespace of our own (the sysctl is per namespace).
tfo_ns=nscli-$$-$(od -An -tx1 -N3 /dev/urandom | tr -d ' \n')
if [ "$(id -u)" = 0 ] && ip netns add "$tfo_ns" 2>/dev/null; then
	if ip netns exec "$tfo_ns" sh -c 'echo 1539 >/proc/sys/net/ipv4/tcp_fastopen' 2>/dev/null; then
		ip netns exec "$tfo_ns" "$bin" doctor >"$dir/out" 2>"$dir/err"
		if grep -q "^warn: net.ipv4.tcp_fastopen = 1539 has bit 0x200: listeners take SYN data without a cookie" "$dir/out" &&
			grep -q "^warn: net.ipv4.tcp_fastopen = 1539 has bit 0x400: every listener takes SYN data" "$dir/out"; then
			pass
		else
			fail "doctor warns about cookie-less TFO (got: $(grep tcp_fastopen "$dir/out"))"
		fi
		ip netns exec "$tfo_ns" sh -c 'echo 3 >/proc/sys/net/ipv4/tcp_fastopen'
		ip netns exec "$tfo_ns" "$bin" doctor >"$dir/out" 2>"$dir/err"
		if grep -q "^ok: net.ipv4.tcp_fastopen = 3" "$dir/out" && ! grep -q "has bit 0x" "$dir/out"; then
			pass
		else
			fail "doctor finds TFO with cookies fine (got: $(grep tcp_fastopen "$dir/out"))"
		fi
	else
		echo "SKIP: this kernel keeps net.ipv4.tcp_fastopen global"
	fi
	ip netns del "$tfo_ns"
else
	echo "SKIP: no network namespace for the cookie-less TFO check (needs root)"
fi

NOISESHIM_LOG=loud run doctor
expect_rc 1 "doctor with a bad NOISESHIM_LOG"
if grep -q '^error: config: NOISESHIM_LOG: bad value "loud"' "$dir/out"; then
	pass
else
	fail "doctor names the bad NOISESHIM_LOG (got: $(cat "$dir/out"))"
fi
printf '# settings\nNOISESHIM_TFO=sometimes\nNOISESHIM_LOG=info\n' >"$dir/bad.conf"
NOISESHIM_CONFIG=$dir/bad.conf run doctor
expect_rc 1 "doctor with a bad config file"
if grep -q "^error: config: $dir/bad.conf:2: bad value \"sometimes\"" "$dir/out"; then
	pass
else
	fail "doctor names the config file's FILE:LINE (got: $(grep config "$dir/out"))"
fi
printf 'NOISESHIM_KEY=%s\n' "$loose" >"$dir/key.conf"
NOISESHIM_CONFIG=$dir/key.conf run doctor
if grep -q "^error: key: .*$loose" "$dir/out"; then pass; else fail "doctor checks NOISESHIM_KEY of the config file"; fi
NOISESHIM_KEY="$key,$key2" run doctor
expect_rc 0 "doctor with a good key list"
if grep -q "^ok: key: $key loads.*noise_pub=$keygen_pub" "$dir/out" &&
	grep -q "^ok: key: $key2 loads.*still accepted.*noise_pub=$key2_pub" "$dir/out"; then
	pass
else
	fail "doctor checks each key of the list (got: $(grep key "$dir/out"))"
fi
chmod 000 "$key2"
if [ "$(id -u)" = 0 ]; then
	# root reads any file: an unreadable key is one that is not there.
	unreadable=$dir/absent.key
else
	unreadable=$key2
fi
NOISESHIM_KEY="$key,$unreadable, ,$loose" run doctor
expect_rc 1 "doctor with an unreadable key"
if grep -q "^error: key: $unreadable: " "$dir/out" && grep -q "^error: key: .*chmod 600 $loose" "$dir/out" &&
	grep -q "^error: key: NOISESHIM_KEY: entry 3 of the list is empty" "$dir/out" &&
	grep -q "^ok: key: $key " "$dir/out"; then
	pass
else
	fail "doctor reports each bad key of the list on its own line (got: $(grep key "$dir/out"))"
fi
chmod 600 "$key2"

# Every setting that makes a wrapped listen() fail is an error naming the variable and value.
NOISESHIM_REPLAY_STORE=http://x run doctor --key "$key"
expect_rc 1 "doctor with a NOISESHIM_REPLAY_STORE that is not redis://"
if grep -qxF 'error: replay: NOISESHIM_REPLAY_STORE: "http://x" is not redis://HOST:PORT: the accept shim refuses every wrapped listen() (EACCES)' "$dir/out"; then
	pass
else
	fail "doctor names the bad NOISESHIM_REPLAY_STORE (got: $(grep replay "$dir/out"))"
fi
NOISESHIM_REPLAY_STORE='redis://[::1]:6390' run doctor --key "$key" --cache "$run_cache"
expect_rc 0 "doctor with a good NOISESHIM_REPLAY_STORE"
expect_out_line 'ok: replay: NOISESHIM_REPLAY_STORE=redis://[::1]:6390: Redis at ::1 port 6390 (not tried)' \
	"doctor parses a good NOISESHIM_REPLAY_STORE"
NOISESHIM_REPLAY_FILE=/nonexistent/dir/x run doctor --key "$key"
expect_rc 1 "doctor with a NOISESHIM_REPLAY_FILE in a missing directory"
if grep -q '^error: replay: NOISESHIM_REPLAY_FILE: "/nonexistent/dir/x": cannot be created in /nonexistent/dir: ' "$dir/out"; then
	pass
else
	fail "doctor names the unusable NOISESHIM_REPLAY_FILE (got: $(grep replay "$dir/out"))"
fi
NOISESHIM_REPLAY_FILE=$dir run doctor --key "$key"
expect_rc 1 "doctor with a NOISESHIM_REPLAY_FILE that is a directory"
NOISESHIM_REPLAY_FILE=$dir/replay.map run doctor --key "$key" --cache "$run_cache"
expect_rc 0 "doctor with a NOISESHIM_REPLAY_FILE it can create"
if [ -e "$dir/replay.map" ]; then fail "doctor created the replay file"; else pass; fi
NOISESHIM_LISTEN=7801 run doctor
expect_rc 1 "doctor with NOISESHIM_LISTEN and no key"
if grep -q "^error: key: none given .*NOISESHIM_LISTEN=7801: the accept shim refuses to listen" "$dir/out"; then
	pass
else
	fail "doctor says a server needs a key (got: $(grep key "$dir/out"))"
fi
NOISESHIM_LISTEN="$(seq -s, 7000 7064)" run doctor --key "$key"
expect_rc 1 "doctor with 65 NOISESHIM_LISTEN entries"
if grep -q "^error: listen: .*more than 64 entries" "$dir/out"; then pass; else fail "doctor counts NOISESHIM_LISTEN entries"; fi
NOISESHIM_KEY="$key,$key,$key,$key,$key,$key,$key,$key,$key" run doctor
expect_rc 1 "doctor with 9 key files"
if grep -q "^error: key: NOISESHIM_KEY: more than 8 key files" "$dir/out"; then pass; else fail "doctor checks the length of the key list"; fi

# A NOISESHIM_* variable that is none of noiseshim's is an error, with the likely name.
NOISESHIM_LISTN=8000 run doctor --key "$key" --cache "$run_cache"
expect_rc 1 "doctor with an unknown NOISESHIM_ variable"
expect_out_line 'error: config: environment: unknown variable NOISESHIM_LISTN="8000"; did you mean NOISESHIM_LISTEN?' \
	"doctor names an unknown variable and the likely one"
NOISESHIM_FROBNICATE=1 run doctor --key "$key" --cache "$run_cache"
expect_out_line 'error: config: environment: unknown variable NOISESHIM_FROBNICATE="1"' \
	"doctor guesses no name for a variable far from all"
printf 'NOISESHIM_LISTN=8000\n' >"$dir/typo.conf"
NOISESHIM_CONFIG=$dir/typo.conf run doctor --key "$key" --cache "$run_cache"
expect_out_line "error: config: $dir/typo.conf:1: unknown variable NOISESHIM_LISTN=\"8000\"; did you mean NOISESHIM_LISTEN?" \
	"doctor names an unknown variable of the config file and the likely one"
# What noiseshim sets or reads itself is no typo.
: >"$dir/empty.conf"
NOISESHIM_CONFIG=$dir/empty.conf NOISESHIM_STATS_DIR=$dir NOISESHIM_INHERIT=3: NOISESHIM_SHIM=$shim \
	NOISESHIM_VECTORS_DIR=$dir NOISESHIM_FLYNN_VECTORS=$dir/v.txt run doctor --key "$key" --cache "$run_cache"
expect_rc 0 "doctor with only noiseshim's own variables"
if grep -q "unknown variable" "$dir/out"; then fail "doctor flags noiseshim's own variables: $(grep unknown "$dir/out")"; else pass; fi

allow=$dir/allow
printf '# clients\n%s\nnot-a-key\n' "$keygen_pub" >"$allow"
chmod 644 "$allow"
NOISESHIM_ALLOW=$allow run doctor
expect_rc 1 "doctor with a bad allowlist line"
if grep -q "^error: allowlist: $allow:3: not a public key" "$dir/out"; then
	pass
else
	fail "doctor names the allowlist's FILE:LINE (got: $(grep allowlist "$dir/out"))"
fi
printf '# clients\n%s\n%s  # second\n' "$keygen_pub" "$key2_pub" >"$allow"
run doctor --allow "$allow"
expect_rc 0 "doctor with a good allowlist"
if grep -q "^ok: allowlist: $allow: 2 client keys" "$dir/out"; then pass; else fail "doctor counts allowlist keys"; fi
chmod 666 "$allow"
run doctor --allow "$allow"
expect_rc 1 "doctor with an allowlist others can write"
if grep -q "^error: allowlist: $allow: mode 0666.*chmod go-w" "$dir/out"; then
	pass
else
	fail "doctor refuses an allowlist others can write"
fi
run doctor --allow "$dir/no-allow"
expect_rc 1 "doctor with a missing allowlist"
if grep -q "^error: allowlist: $dir/no-allow: " "$dir/out"; then pass; else fail "doctor names a missing allowlist"; fi

# --- command line ---------------------------------------------------------------

for args in "--help" "-h" "keygen --help" "pubkey --help" "nodeurl --help" "cache --help" \
	"cache add --help" "keygen -h" "run --help" "serve --help" "doctor --help" "stats --help" \
	"proxy --help" "proxy client --help" "proxy server -h"; do
	# shellcheck disable=SC2086 # the words are meant to split
	run $args
	expect_rc 0 "noiseshim $args"
	if [ -s "$dir/out" ]; then pass; else fail "noiseshim $args prints nothing"; fi
done

for args in "" "frobnicate" "--frobnicate" "keygen --frobnicate" "keygen a b" "pubkey" \
	"nodeurl" "nodeurl --key $key" "nodeurl --key $key --addr 127.0.0.1:1 --proto 3" \
	"cache" "cache frobnicate" "cache list extra" "cache add" "cache list --cache" \
	"run" "run --frobnicate true" "run --transport tls true" "run --cache" \
	"serve --key $key true" "serve --listen 7801 true" "serve --key $key --listen 7801" \
	"serve --key $key --listen 0 true" "serve --key $key --listen 1.2.3:80 true" \
	"serve --key $key --listen 7801 --addr 192.0.2.7:80 true" \
	"serve --key $key --listen 7801 --accept plain true" \
	"serve --key $key --listen 7801 --proto 3 true" "doctor a b" "doctor --frobnicate" \
	"nodeurl --key $key --addr 127.0.0.1" "nodeurl --key $key --addr 127.0.0.1:99999" \
	"nodeurl --key $key --addr localhost:1" "proxy" "proxy frobnicate" "proxy client" \
	"proxy client --frobnicate" "proxy server --listen 127.0.0.1:0 --target 127.0.0.1:1" \
	"proxy server --key $key --listen nope --target 127.0.0.1:1" \
	"proxy server --key $key --listen 127.0.0.1:0 --target 127.0.0.1:1 --cache $dir/cache" \
	"proxy client --listen 127.0.0.1:0 --target 127.0.0.1:1 --proxy-protocol" \
	"proxy client --listen 127.0.0.1:0 --target 127.0.0.1:1 --allow $dir/allow" \
	"proxy client --listen 127.0.0.1:0 --target 127.0.0.1:1 --replay-file $dir/window" \
	"proxy server --key $key --listen 127.0.0.1:0 --target 127.0.0.1:1 --allow=" \
	"proxy client --listen 127.0.0.1:0 --target 127.0.0.1:1 --first-wait-us x"; do
	# shellcheck disable=SC2086
	run $args
	expect_rc 2 "noiseshim $args is a usage error"
	expect_err "noiseshim: " "noiseshim $args prefixes its error"
	# One line saying what is wrong, one saying where the usage is: never the whole help.
	if [ "$(wc -l <"$dir/err")" -eq 2 ] && tail -n 1 "$dir/err" | grep -qx "try 'noiseshim [a-z ]*--help'"; then
		pass
	else
		fail "noiseshim $args prints one line and the --help hint (got $(wc -l <"$dir/err") lines)"
	fi
	# The hint names a command whose --help exists.
	hint=$(tail -n 1 "$dir/err" | sed -n "s/^try 'noiseshim \([a-z ]*\)--help'\$/\1/p")
	# shellcheck disable=SC2086 # the words are meant to split
	if "$bin" $hint --help >/dev/null 2>&1; then
		pass
	else
		fail "noiseshim $args points to 'noiseshim $hint--help', which is no command"
	fi
done

echo "cli: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
