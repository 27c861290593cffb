#!/bin/bash
# Integration tests of the client shim: unmodified programs (python3, curl
# and client_modes) run under LD_PRELOAD against gopeer, an independent Go
# Noise_IK responder, and against plaintext servers that the cache does not
# list.
#
#   tests/integration/client.sh build/libnoiseshim.so build/tests/gopeer \
#       build/tests/client_modes build/noiseshim
#
# Prints "ok NAME" or "FAIL NAME: reason" for each check, then a count;
# exits non-zero if any check failed.
#
# CLIENT_SHIM_DRY_RUN=1 runs the same programs without the preload (the
# shim argument may then be empty), to check the test plumbing on its own:
# the checks against plaintext servers pass, the ones that need Noise fail.
set -u

if [ $# -ne 4 ]; then
	echo "usage: $0 LIBNOISESHIM GOPEER CLIENT_MODES NOISESHIM" >&2
	exit 2
fi
shim=$1 gopeer=$2 client_modes=$3 cli=$4
dry_run=${CLIENT_SHIM_DRY_RUN:-0}
here=$(cd "$(dirname "$0")" && pwd)
python=${PYTHON:-python3}
resp_priv=0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20
# Any other key: what a cache holds when it is stale or the address was
# taken over.
other_priv=2122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f40
modes="epoll-lt epoll-et poll select read1 mixed-reads bigwrite duplex dup2 fork banner fionread"
http_bytes=10485760
client_timeout=60

# What client programs get in their environment besides the cache:
# preload for all of them, modes_preload for client_modes.
preload=()
modes_preload=()
shim_asan=
if [ "$dry_run" != 1 ]; then
	if [ ! -f "$shim" ]; then
		echo "client.sh: no shim at '$shim' (CLIENT_SHIM_DRY_RUN=1 runs without one)" >&2
		exit 2
	fi
	# Under `make sanitize` the shim and client_modes link ASan. Its
	# runtime must then come before the shim in LD_PRELOAD, and programs
	# built without ASan get it preloaded too; their own leaks are not
	# what these tests look for.
	asan_runtime_of() {
		ldd "$1" 2>/dev/null | sed -n 's/^[[:space:]]*libasan\.so[^ ]* => \([^ ]*\) .*/\1/p' | head -n 1
	}
	shim_asan=$(asan_runtime_of "$shim")
	modes_asan=$(asan_runtime_of "$client_modes")
	asan_runtime=${shim_asan:-$modes_asan}
	with_asan=(LD_PRELOAD="$asan_runtime $shim" ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=0}")
	if [ -n "$shim_asan" ]; then preload=("${with_asan[@]}"); else preload=(LD_PRELOAD="$shim"); fi
	if [ -n "$asan_runtime" ]; then modes_preload=("${with_asan[@]}"); else modes_preload=("${preload[@]}"); fi
fi
# The servers must run without the shim, whatever the caller's environment.
unset LD_PRELOAD NOISESHIM_CACHE

scratch=$(mktemp -d) || exit 1
# The counters files of the programs run here stay in the scratch directory,
# not in /run/noiseshim/stats.
export NOISESHIM_STATS_DIR=$scratch/stats
pids=()
passed=0 failed=0

cleanup() {
	for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; done
	wait 2>/dev/null
	rm -rf "$scratch"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

# start_server NAME COMMAND...: starts a server that prints
# "listening HOST:PORT" (gopeer and plain_server.py both do); sets $port.
start_server() {
	local name=$1 log=$scratch/$1.log
	shift
	# Created here: the server's own redirection may come after the first look.
	: >"$log"
	"$@" >"$log" 2>&1 &
	pids+=($!)
	port=
	for _ in $(seq 100); do
		port=$(sed -n 's/^listening .*:\([0-9]*\)$/\1/p' "$log")
		[ -n "$port" ] && return 0
		sleep 0.05
	done
	echo "client.sh: server $name did not start:" >&2
	cat "$log" >&2
	exit 1
}

start_gopeer() { # NAME SUITE MODE
	start_server "$1" "$gopeer" respond --listen 127.0.0.1:0 --key "$resp_priv" --suite "$2" --mode "$3"
}

umask 077
printf '%s\n' "$resp_priv" >"$scratch/responder.key"
printf '%s\n' "$other_priv" >"$scratch/other.key"
cache=$scratch/cache

# add_to_cache PORT PROTO KEYFILE: lists 127.0.0.1:PORT in the cache.
add_to_cache() {
	local url
	if ! url=$("$cli" nodeurl --key "$3" --addr "127.0.0.1:$1" --proto "$2") ||
		! "$cli" cache add "$url" --cache "$cache" >/dev/null; then
		echo "client.sh: cannot add 127.0.0.1:$1 to the cache" >&2
		exit 1
	fi
}

start_gopeer echo chachapoly echo;              echo_port=$port
start_gopeer slowecho chachapoly slowecho;      slowecho_port=$port
start_gopeer http chachapoly http;              http_port=$port
start_gopeer banner chachapoly banner;          banner_port=$port
start_gopeer echo-aesgcm aesgcm echo;           aes_echo_port=$port
start_gopeer http-aesgcm aesgcm http;           aes_http_port=$port
start_gopeer echo-other-key chachapoly echo;    wrong_key_port=$port
record_file=$scratch/recorded
: >"$record_file"
start_server recorder "$python" "$here/plain_server.py" record "$record_file"; recorder_port=$port
start_server plain-echo "$python" "$here/plain_server.py" echo;         plain_echo_port=$port
start_server plain-slowecho "$python" "$here/plain_server.py" slowecho; plain_slowecho_port=$port
start_server plain-banner "$python" "$here/plain_server.py" banner;     plain_banner_port=$port

for p in $echo_port $slowecho_port $http_port $banner_port; do
	add_to_cache "$p" 1 "$scratch/responder.key"
done
for p in $aes_echo_port $aes_http_port; do
	add_to_cache "$p" 2 "$scratch/responder.key"
done
# Listed with a key that the server at that address does not hold.
for p in $wrong_key_port $recorder_port; do
	add_to_cache "$p" 1 "$scratch/other.key"
done
if ! "$cli" cache check --cache "$cache" >"$scratch/check.out" 2>&1; then
	echo "client.sh: the test cache does not check out:" >&2
	cat "$scratch/check.out" >&2
	exit 1
fi

pass() {
	passed=$((passed + 1))
	echo "ok $1"
}

fail() {
	failed=$((failed + 1))
	echo "FAIL $1: $2"
}

# as_client [VAR=VALUE...] COMMAND...: runs COMMAND as a program under the
# shim, time-bounded.
as_client() {
	timeout "$client_timeout" env NOISESHIM_CACHE="$cache" "${preload[@]}" "$@"
}

# outcome RC OUTPUT: why a client run failed, on one line.
outcome() {
	if [ "$1" -eq 124 ]; then
		echo "no result within $client_timeout s"
	else
		echo "exit $1: $(printf '%s' "$2" | tail -n 3 | tr '\n' ' ')"
	fi
}

# check NAME [VAR=VALUE...] COMMAND...: passes when the client exits 0.
check() {
	local name=$1 out rc
	shift
	out=$(as_client "$@" 2>&1)
	rc=$?
	if [ "$rc" -eq 0 ]; then pass "$name"; else fail "$name" "$(outcome "$rc" "$out")"; fi
}

# check_mode NAME MODE PORT [VAR=VALUE...]: client_modes MODE against PORT.
check_mode() {
	local name=$1 mode=$2 port=$3
	shift 3
	local preload=("${modes_preload[@]}")
	check "$name" "$@" "$client_modes" "$mode" 127.0.0.1 "$port"
}

# check_curl NAME PORT [VAR=VALUE...]: a 10 MiB download by curl, which uses
# a non-blocking socket and poll(), checked against the server's digest.
check_curl() {
	local name=$1 port=$2 body=$scratch/body digest=$scratch/digest out rc
	shift 2
	rm -f "$body" "$digest"
	# -q: no ~/.curlrc; --noproxy: the request must go to 127.0.0.1 itself.
	local curl=(curl -q -sS --fail --noproxy '*' --max-time 60)
	if [ -n "$shim_asan" ]; then
		# curl hangs at start-up whenever the ASan runtime is preloaded, shim
		# or not (a library it loads takes the locale lock while ASan
		# initialises).  python3 with a timeout uses the same pattern as
		# curl: a non-blocking socket waited on with poll().
		curl=(python3 "$here/wrapped_client.py" get)
		name="$name (python3 in place of curl: ASan runtime)"
	fi
	out=$(as_client "$@" "${curl[@]}" -o "$body" "http://127.0.0.1:$port/bytes/$http_bytes" 2>&1)
	rc=$?
	if [ "$rc" -ne 0 ]; then fail "$name" "body: $(outcome "$rc" "$out")"; return; fi
	out=$(as_client "$@" "${curl[@]}" -o "$digest" "http://127.0.0.1:$port/sha256/$http_bytes" 2>&1)
	rc=$?
	if [ "$rc" -ne 0 ]; then fail "$name" "digest: $(outcome "$rc" "$out")"; return; fi
	local size got want
	size=$(stat -c %s "$body")
	got=$(sha256sum <"$body" | cut -d' ' -f1)
	want=$(cat "$digest")
	if [ "$size" -eq "$http_bytes" ] && [ "$got" = "$want" ]; then
		pass "$name"
	else
		fail "$name" "$size bytes with SHA-256 $got, server says $http_bytes bytes with $want"
	fi
}

# mode_port MODE ECHO SLOWECHO BANNER: which of the servers a mode needs.
mode_port() {
	case $1 in
	bigwrite) echo "$3" ;;
	banner) echo "$4" ;;
	*) echo "$2" ;;
	esac
}

# --- passthrough: destinations not in the cache see plain TCP -----------------
check "passthrough: python bulk echo" \
	"$python" "$here/py_echo.py" bulk 127.0.0.1 "$plain_echo_port"
for mode in $modes; do
	check_mode "passthrough: client_modes $mode" "$mode" \
		"$(mode_port "$mode" "$plain_echo_port" "$plain_slowecho_port" "$plain_banner_port")"
done

# --- Noise to gopeer ---------------------------------------------------------
check "python bulk echo, noise_proto=1" \
	"$python" "$here/py_echo.py" bulk 127.0.0.1 "$echo_port"
check "python bulk echo, noise_proto=2" \
	"$python" "$here/py_echo.py" bulk 127.0.0.1 "$aes_echo_port"
check_curl "curl 10 MiB over HTTP, noise_proto=1" "$http_port"
check_curl "curl 10 MiB over HTTP, noise_proto=2" "$aes_http_port"
for mode in $modes; do
	check_mode "client_modes $mode" "$mode" "$(mode_port "$mode" "$echo_port" "$slowecho_port" "$banner_port")"
done

# TCP Fast Open forced on: the first flight rides in the SYN, or, for a
# program that only reads, leaves without waiting for a write.
check "python bulk echo, NOISESHIM_TFO=on" \
	NOISESHIM_TFO=on "$python" "$here/py_echo.py" bulk 127.0.0.1 "$echo_port"
check_mode "client_modes epoll-et, NOISESHIM_TFO=on" epoll-et "$echo_port" NOISESHIM_TFO=on
check_mode "client_modes banner, NOISESHIM_TFO=on" banner "$banner_port" NOISESHIM_TFO=on
check_curl "curl 10 MiB over HTTP, NOISESHIM_TFO=on" "$http_port" NOISESHIM_TFO=on

# --- fail closed: a listed node with another key is never talked to in
# plaintext -------------------------------------------------------------------

# refused NAME PORT [VAR=VALUE...]: a client sending a marker to PORT must get an error.
refused() {
	local name=$1 port=$2 out rc
	shift 2
	out=$(as_client "$@" "$python" "$here/py_echo.py" once 127.0.0.1 "$port" "$marker" 2>&1)
	rc=$?
	if [ "$rc" -eq 0 ]; then
		fail "$name" "the marker came back: the connection went ahead without Noise"
		return 1
	elif [ "$rc" -eq 124 ]; then
		fail "$name" "hung for $client_timeout s instead of failing"
		return 1
	fi
}

marker="plaintext-marker-$$-$RANDOM"
# A plaintext echo server in place of the node: if the shim fell back to
# plaintext, the program would get its marker back.
if refused "fail closed: plaintext server at a listed address" "$recorder_port"; then
	if grep -qF "$marker" "$record_file"; then
		fail "fail closed: plaintext server at a listed address" "the listener received the marker in plaintext"
	elif [ -s "$record_file" ] && [ "$(head -c 8 "$record_file")" != 'DRPC!N!1' ]; then
		fail "fail closed: plaintext server at a listed address" \
			"the listener received bytes other than a Noise first flight: $(head -c 16 "$record_file" | od -An -tx1 | tr -d '\n')"
	else
		pass "fail closed: plaintext server at a listed address"
	fi
fi
if refused "fail closed: Noise server with another key" "$wrong_key_port"; then
	pass "fail closed: Noise server with another key"
fi

# A configured cache that cannot be read: no TCP connect goes out at all,
# not even to a destination that is in no cache, and the log says why.
unreadable_log=$scratch/unreadable-cache.log
if refused "fail closed: unreadable cache" "$plain_echo_port" \
	NOISESHIM_CACHE="$scratch/no-such-cache" NOISESHIM_LOG_FILE="$unreadable_log"; then
	if grep -q "no-such-cache cannot be read" "$unreadable_log" 2>/dev/null; then
		pass "fail closed: unreadable cache"
	else
		fail "fail closed: unreadable cache" "no log line names the cache: $(head -c 200 "$unreadable_log" 2>/dev/null)"
	fi
fi

echo "client-shim: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
