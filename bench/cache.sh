#!/bin/bash
# The NodeURL cache at 100k and 1M entries, under the client shim: what a
# program pays for a big cache, each figure next to a baseline measured in
# the same run.
#
#   build       the first process compiles the text into the index (from the
#               shim's debug log); `noiseshim cache check` on the same file
#   first       first connect() in a new process once the index exists, vs
#               the same program without the shim (median of the rounds)
#   private     Private_Clean + Private_Dirty that first connect adds, from
#               /proc/self/smaps_rollup, vs without the shim
#   uncached    mean connect() time to an address in no cache, shim with the
#               cache vs no shim (median of 2N+1 alternating rounds, one core)
#   replace     longest connect of 4 threads while the file is replaced and
#               the index rebuilt, vs the same loop with nothing to reload
#
#   bench/cache.sh [--build DIR] [--rounds N] [--sizes LIST]
#
# LIST: entry counts, comma-separated (default 100000,1000000).  Targets
# (at 1M, checked at every size): first <= 5 ms, private <= 2 MB, uncached
# within 2 % of no shim, replace <= 5 ms, cache check < 2 s.  Connects go to
# a loopback port of the probe's own.
set -u
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source-path=SCRIPTDIR
. "$here/common.sh"

build=
rounds=5
sizes=100000,1000000
rate_ms=700
rate_cpu=1
loop_threads=4
loop_pause_us=200

parse_args() {
	while [ $# -gt 0 ]; do
		case $1 in
		--build) build=$2; shift 2 ;;
		--rounds) rounds=$2; shift 2 ;;
		--sizes) sizes=$2; shift 2 ;;
		*) usage ;;
		esac
	done
}

work=
cleanup() { [ -n "$work" ] && rm -rf "$work"; }

value() { sed -n "s/^$1=//p" "$2"; }

# shim CACHE LOG PROBE-ARGS...: the probe under the client shim.  PROBE-ARGS
# may start with "taskset -c N"; taskset itself then runs under the shim too,
# which costs it nothing (it connects nowhere).
shim() {
	local cache=$1 log=$2
	shift 2
	[ "$1" = taskset ] || set -- "$probe" "$@"
	env LD_PRELOAD="$build/libnoiseshim.so" NOISESHIM_CACHE="$cache" NOISESHIM_LOG=debug \
		NOISESHIM_LOG_FILE="$log" "$@"
}

plain() { "$probe" "$@"; }

median() { bench_summary | awk '{ print $2 }'; }

# verdict VALUE LIMIT: "met" if VALUE <= LIMIT, else "missed".
verdict() { awk -v v="$1" -v l="$2" 'BEGIN { print (v != "" && v != "-" && v + 0 <= l + 0) ? "met" : "missed" }'; }

row() { printf '%-9s %-10s %14s %14s %8s   %s\n' "$@"; }

bench_size() {
	local n=$1 dir=$work/$1 out log i first_shim first_plain priv_shim priv_plain
	local build_ms check_s rate_shim rate_plain ratio loop_ms base_us max_us effect reload_ms
	mkdir -p "$dir"
	bench_say "$n entries: writing the cache files"
	"$gen" "$dir/cache" "$n" 1 || return 1
	"$gen" "$dir/new" "$n" 2 --broken 127.0.0.1:9 || return 1
	cp "$dir/cache" "$dir/cache-check"

	# build: the first process finds no index.
	shim "$dir/cache" "$dir/build.log" first 127.0.0.1 0 >"$dir/build.out"
	build_ms=$(sed -n 's/.*built index .* in \([0-9]*\) ms$/\1/p' "$dir/build.log" | tail -n 1)
	check_s=$( { /usr/bin/time -f '%e' "$build/noiseshim" cache check --cache "$dir/cache-check" >/dev/null; } 2>&1 | tail -n 1)

	# first connect and private memory, the index in place.
	: >"$dir/first-shim" ; : >"$dir/first-plain"
	for ((i = 0; i < rounds; i++)); do
		shim "$dir/cache" "$dir/first.log" first 127.0.0.1 0 >"$dir/out" && cat "$dir/out" >>"$dir/first-shim"
		plain first 127.0.0.1 0 >>"$dir/first-plain"
	done
	first_shim=$(value first_connect_us "$dir/first-shim" | median)
	first_plain=$(value first_connect_us "$dir/first-plain" | median)
	priv_shim=$(value private_kb "$dir/first-shim" | median)
	priv_plain=$(value private_kb "$dir/first-plain" | median)

	# uncached connects, alternating which goes first, both on one core.
	: >"$dir/rate-shim" ; : >"$dir/rate-plain"
	for ((i = 0; i < 2 * rounds + 1; i++)); do
		if ((i % 2)); then
			taskset -c "$rate_cpu" "$probe" rate "$rate_ms" >>"$dir/rate-plain"
			shim "$dir/cache" "$dir/rate.log" taskset -c "$rate_cpu" "$probe" rate "$rate_ms" >>"$dir/rate-shim"
		else
			shim "$dir/cache" "$dir/rate.log" taskset -c "$rate_cpu" "$probe" rate "$rate_ms" >>"$dir/rate-shim"
			taskset -c "$rate_cpu" "$probe" rate "$rate_ms" >>"$dir/rate-plain"
		fi
	done
	rate_shim=$(value per_connect_ns "$dir/rate-shim" | median)
	rate_plain=$(value per_connect_ns "$dir/rate-plain" | median)
	ratio=$(bench_ratio "$rate_shim" "$rate_plain" %.4f)

	# replacement: long enough for the rebuild to finish inside the loop.
	loop_ms=$((n >= 1000000 ? 12000 : 4000))
	: >"$dir/unrelated"
	shim "$dir/cache" "$dir/base.log" loop "$loop_threads" "$loop_ms" "$loop_pause_us" 127.0.0.1 9 \
		"$dir/unrelated" "$dir/unrelated2" >"$dir/base.out"
	shim "$dir/cache" "$dir/loop.log" loop "$loop_threads" "$loop_ms" "$loop_pause_us" 127.0.0.1 9 \
		"$dir/new" "$dir/cache" >"$dir/loop.out"
	base_us=$(value max_us "$dir/base.out")
	max_us=$(value max_after_us "$dir/loop.out")
	effect=$(value effect_ms "$dir/loop.out")
	reload_ms=$(sed -n 's/.*built index .* in \([0-9]*\) ms$/\1/p' "$dir/loop.log" | tail -n 1)

	row "$n" build "${build_ms:--} ms" "-" "-" "index compiled by the first process"
	row "$n" check "${check_s:--} s" "-" "-" "noiseshim cache check: $(verdict "$check_s" 2) (< 2 s)"
	row "$n" first "${first_shim:--} us" "${first_plain:--} us" "$(bench_ratio "$first_shim" "$first_plain")" \
		"$(verdict "$first_shim" 5000) (<= 5 ms)"
	row "$n" private "${priv_shim:--} kB" "${priv_plain:--} kB" "-" \
		"$(verdict "$(awk -v a="$priv_shim" -v b="$priv_plain" 'BEGIN { print a - b }')" 2048) (<= 2 MB added)"
	row "$n" uncached "${rate_shim:--} ns" "${rate_plain:--} ns" "$ratio" "$(verdict "$ratio" 1.02) (<= 1.02)"
	row "$n" replace "${max_us:--} us" "${base_us:--} us" "$(bench_ratio "$max_us" "$base_us")" \
		"$(verdict "$max_us" 5000) (<= 5 ms); rebuilt in ${reload_ms:--} ms, in effect after ${effect:--} ms"
	if [ "$(value failures "$dir/loop.out")" != 0 ]; then
		bench_say "$n entries: $(value failures "$dir/loop.out") connects failed during the replacement"
	fi
	rm -rf "$dir"
}

main() {
	parse_args "$@"
	bench_need python3 taskset || exit 1
	build=$(bench_build_dir "$build") || exit 1
	probe=$build/tests/cache_probe
	gen=$bench_root/tests/integration/cache_gen.py
	[ -x "$probe" ] || { bench_say "no $probe: run make bench-cache"; exit 1; }
	[ -x /usr/bin/time ] || { bench_say "/usr/bin/time is missing (apt-get install time)"; exit 1; }
	work=$(mktemp -d /tmp/bench-cache.XXXXXX) || exit 1
	bench_keep_state_in "$work"
	trap cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	printf '\nNodeURL cache under the client shim, %d rounds; %d threads pausing %d us in the replace loop\n' \
		"$rounds" "$loop_threads" "$loop_pause_us"
	printf 'medians; baseline: the same program without the shim (replace: the same loop, nothing to reload)\n\n'
	row entries figure shim baseline ratio target
	IFS=, read -r -a list <<<"$sizes"
	for n in "${list[@]}"; do
		bench_size "$n" || { bench_say "$n entries: could not write the cache"; exit 1; }
	done
}

main "$@"
