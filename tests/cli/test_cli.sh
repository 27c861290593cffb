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

# --- command line ---------------------------------------------------------------

for args in "--help" "-h" "keygen --help" "pubkey --help" "nodeurl --help" "cache --help" \
	"cache add --help" "keygen -h"; do
	# shellcheck disable=SC2086 # the words are meant to split
	run $args
	expect_rc 0 "noiseshim $args"
	if [ -s "$dir/out" ]; then pass; else fail "noiseshim $args prints nothing"; fi
done

for args in "" "frobnicate" "--frobnicate" "keygen --frobnicate" "keygen a b" "pubkey" \
	"nodeurl" "nodeurl --key $key" "nodeurl --key $key --addr 127.0.0.1:1 --proto 3" \
	"cache" "cache frobnicate" "cache list extra" "cache add" "cache list --cache"; do
	# shellcheck disable=SC2086
	run $args
	expect_rc 2 "noiseshim $args is a usage error"
	expect_err "noiseshim: " "noiseshim $args prefixes its error"
done

echo "cli: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
