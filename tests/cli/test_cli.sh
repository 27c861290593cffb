#!/bin/sh
# End-to-end tests of the noiseshim command.
# usage: tests/cli/test_cli.sh PATH/TO/noiseshim
set -u

bin=${1:?usage: test_cli.sh PATH/TO/noiseshim}
# Some tests run in another directory.
case $bin in
/*) ;;
*/*) bin=$PWD/$bin ;;
esac
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

# --- command line ---------------------------------------------------------------

for args in "--help" "-h" "keygen --help" "pubkey --help" "nodeurl --help" "cache --help" \
	"cache add --help" "keygen -h" "run --help" "serve --help" "doctor --help"; do
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
	"serve --key $key --listen 7801 --proto 3 true" "doctor a b" "doctor --frobnicate"; do
	# shellcheck disable=SC2086
	run $args
	expect_rc 2 "noiseshim $args is a usage error"
	expect_err "noiseshim: " "noiseshim $args prefixes its error"
done

echo "cli: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
