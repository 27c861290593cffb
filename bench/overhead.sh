#!/bin/bash
# What the client shim costs a program on connections it does not wrap:
# redis-benchmark against a plain redis-server on 127.0.0.1, with and
# without the client shim preloaded.  The shim's cache holds an entry for
# another port, so it loads, reads the cache and then passes every call on
# the benchmark's own connections through to libc: the cost measured is
# that of the interposed calls and the fd lookups.
#
# Runs alternate, shim and no shim, starting with the other one each round;
# the figure per test is the median of the rounds' requests/s.
# redis-server runs on core 0, redis-benchmark on core 1.
#
#   bench/overhead.sh [--build DIR] [--rounds N] [--requests N] [--tests LIST]
#
# LIST: redis-benchmark tests, comma-separated (default set,get).
# Needs redis-server and redis-benchmark (redis-tools).
set -u
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source-path=SCRIPTDIR
. "$here/common.sh"

build=
rounds=7
requests=200000
tests=set,get
clients=50
addr=127.0.0.1
port=16379
server_cpu=0
client_cpu=1

parse_args() {
	while [ $# -gt 0 ]; do
		case $1 in
		--build) build=$2; shift 2 ;;
		--rounds) rounds=$2; shift 2 ;;
		--requests) requests=$2; shift 2 ;;
		--tests) tests=$2; shift 2 ;;
		*) usage ;;
		esac
	done
}

work=
cleanup() {
	bench_stop_all
	[ -n "$work" ] && rm -rf "$work"
}

# make_cache: a valid cache whose only entry is for a port nobody uses here.
make_cache() {
	"$build/noiseshim" keygen "$work/other.key" >/dev/null &&
		"$build/noiseshim" nodeurl --key "$work/other.key" --addr "$addr:$((port + 1))" \
			>"$work/cache"
}

start_redis() {
	bench_spawn taskset -c "$server_cpu" redis-server --bind "$addr" --port "$port" \
		--save '' --appendonly no --dir "$work" --daemonize no >"$work/redis.log" 2>&1
	bench_wait_port "$port" "$bench_last_pid" ||
		{ bench_say "redis-server did not start: $(tail -n 3 "$work/redis.log")"; return 1; }
}

# shim_reaches_benchmark: with a cache file that cannot be read the shim
# refuses every connect (it fails closed), so a run that still gets through
# would mean the preload never took effect and the figures compare nothing.
shim_reaches_benchmark() {
	! env LD_PRELOAD="$build/libnoiseshim.so" NOISESHIM_CACHE="$work/no-such-cache" \
		NOISESHIM_LOG_FILE="$work/probe-shim.log" \
		redis-benchmark -h "$addr" -p "$port" -t get -n 10 -c 1 --csv 2>/dev/null | grep -q '^"GET"'
}

# run_benchmark SIDE ROUND: one redis-benchmark run; appends "ROUND TEST RPS"
# lines to SIDE's file.
run_benchmark() {
	local side=$1 round=$2 preload=()
	[ "$side" = shim ] && preload=(LD_PRELOAD="$build/libnoiseshim.so" NOISESHIM_CACHE="$work/cache"
		NOISESHIM_LOG_FILE="$work/client-shim.log")
	if ! taskset -c "$client_cpu" env "${preload[@]}" redis-benchmark -h "$addr" -p "$port" \
		-t "$tests" -n "$requests" -c "$clients" -P 1 --csv >"$work/run.csv" 2>"$work/run.err"; then
		echo "$side: redis-benchmark failed: $(head -c 300 "$work/run.err")" >>"$work/failures"
		return
	fi
	# CSV lines: "TEST","RPS",...; the first line is the header.
	awk -F'"' -v r="$round" 'NR > 1 { print r, $2, $4 }' "$work/run.csv" >>"$work/rps-$side"
}

# rates SIDE TEST: the requests/s of TEST on SIDE, one a line.
rates() { awk -v t="$2" '$2 == t { print $3 }' "$work/rps-$1"; }

# paired_ratios TEST: shim over no shim, per round: the two runs of a round
# are next to each other in time, so a slow spell of the machine that
# spans them cancels out.
paired_ratios() {
	awk -v t="$1" '$2 != t { next } FILENAME ~ /none$/ { plain[$1] = $3; next }
		($1 in plain) && plain[$1] > 0 { print $3 / plain[$1] }' "$work/rps-none" "$work/rps-shim"
}

print_table() {
	local test plain shim paired
	printf '\nredis-benchmark -t %s -n %d -c %d -P 1, %d rounds; redis-server on core %d, client on core %d\n' \
		"$tests" "$requests" "$clients" "$rounds" "$server_cpu" "$client_cpu"
	printf 'shim: client shim preloaded, cache with an entry for another port\n'
	printf 'requests/s: median (min-max); paired: median (min-max) of the per-round ratios\n\n'
	printf '%-5s %22s %22s %7s %20s\n' test no-shim shim ratio paired
	: >"$work/ratios"
	awk '{ print $2 }' "$work/rps-none" | sort -u | while read -r test; do
		plain=$(rates none "$test" | bench_summary)
		shim=$(rates shim "$test" | bench_summary)
		paired=$(paired_ratios "$test" | bench_summary)
		printf '%-5s %22s %22s %7s %20s\n' "$test" "$(median_range "$plain" %.0f)" \
			"$(median_range "$shim" %.0f)" \
			"$(bench_ratio "$(field "$shim" 2)" "$(field "$plain" 2)" %.3f)" \
			"$(median_range "$paired" %.3f)"
		echo "$test $(bench_ratio "$(field "$shim" 2)" "$(field "$plain" 2)" %.3f)" >>"$work/ratios"
	done
	echo
	while read -r test ratio; do
		bench_target "$test shim / no-shim" "$ratio" '>=' 0.98
	done <"$work/ratios"
	return 0
}

# field SUMMARY N: the Nth word of a bench_summary line.
field() { awk -v n="$2" '{ print $n }' <<<"$1"; }

# median_range SUMMARY FORMAT: "MEDIAN (MIN-MAX)" of a bench_summary line.
median_range() {
	awk -v f="$2" '{ if ($1 == 0) print "-"; else printf f " (" f "-" f ")\n", $2, $5, $6 }' <<<"$1"
}

main() {
	parse_args "$@"
	bench_need redis-server redis-benchmark taskset || exit 1
	build=$(bench_build_dir "$build") || exit 1
	work=$(mktemp -d /tmp/bench-overhead.XXXXXX) || exit 1
	bench_keep_state_in "$work"
	trap cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	make_cache || { bench_say "could not make the cache"; exit 1; }
	start_redis || exit 1
	shim_reaches_benchmark || { bench_say "the client shim does not load into redis-benchmark"; exit 1; }

	local round
	for ((round = 0; round < rounds; round++)); do
		bench_say "round $((round + 1)) of $rounds"
		if ((round % 2 == 0)); then
			run_benchmark none "$round"
			run_benchmark shim "$round"
		else
			run_benchmark shim "$round"
			run_benchmark none "$round"
		fi
	done
	if [ -s "$work/failures" ]; then
		cat "$work/failures"
		[ -s "$work/client-shim.log" ] && { echo 'client shim log:'; tail -n 20 "$work/client-shim.log"; }
		exit 1
	fi
	print_table
}

main "$@"
