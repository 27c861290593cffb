#!/bin/bash
# A/B timing: one command, run under two settings of the client shim.
#
#   examples/ab.sh [-n N] [-a 'VARS'] [-b 'VARS'] -- COMMAND [ARG...]
#
#   -n N       runs per side (default 10)
#   -a 'VARS'  side A's environment, VAR=VALUE words (default NOISESHIM_TRANSPORT=tcp)
#   -b 'VARS'  side B's environment (default NOISESHIM_TRANSPORT=noise)
#
# COMMAND runs 2N times with the client shim preloaded, sides alternating
# (A B, B A, A B, ...) so that a slow spell of the machine or the network
# falls on both alike.  Printed: each side's median and 90th percentile
# wall time, in milliseconds, and B's median over A's.  COMMAND's output is
# discarded; the first run that fails stops everything and shows its
# errors.
#
# The shim is $NOISESHIM_SHIM, else build/libnoiseshim.so in the
# repository this script belongs to.  Every other setting comes from your
# environment or from VARS: the cache (NOISESHIM_CACHE) most of all.
#
# The defaults compare the shim without and with encryption, both with TCP
# Fast Open as the cache entry says.  The server must then accept both:
# run it under the accept shim with NOISESHIM_ACCEPT=mixed, which serves
# Noise and plaintext on one port.
#
# Examples:
#   export NOISESHIM_CACHE=~/.config/noiseshim/cache
#   examples/ab.sh -n 20 -- curl -s http://10.0.0.5:7777/
#   examples/ab.sh -n 20 -a 'NOISESHIM_TFO=off' -b 'NOISESHIM_TFO=on' \
#       -- redis-cli -h 10.0.0.5 -p 7777 ping
set -u

runs=10
vars_a='NOISESHIM_TRANSPORT=tcp'
vars_b='NOISESHIM_TRANSPORT=noise'

usage() {
	sed -n '/^#   examples\/ab.sh \[/,/^# COMMAND/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
	exit 2
}

die() {
	echo "ab.sh: $*" >&2
	exit 1
}

# check_vars 'VARS': every word must be an assignment; env would run
# anything else as the command.
check_vars() {
	local word
	for word in $1; do
		[[ $word =~ ^[A-Za-z_][A-Za-z0-9_]*= ]] || die "'$word' is not VAR=VALUE"
	done
}

parse_args() {
	local opt
	while getopts 'n:a:b:h' opt; do
		case $opt in
		n) runs=$OPTARG ;;
		a) vars_a=$OPTARG ;;
		b) vars_b=$OPTARG ;;
		*) usage ;;
		esac
	done
	[[ $runs =~ ^[1-9][0-9]*$ ]] || die "-n needs a positive whole number, not '$runs'"
	check_vars "$vars_a"
	check_vars "$vars_b"
}

# run_once SIDE VARS COMMAND...: run COMMAND once under VARS; append its
# wall time in ms to SIDE's file.
run_once() {
	local side=$1 vars=$2 start end
	shift 2
	start=$EPOCHREALTIME
	# VARS comes after LD_PRELOAD so that it may override it.
	# shellcheck disable=SC2086 # VARS is a list of VAR=VALUE words
	if ! env LD_PRELOAD="$shim" $vars "$@" >/dev/null 2>"$work/stderr"; then
		echo "ab.sh: side $side ($vars) failed:" >&2
		tail -n 20 "$work/stderr" >&2
		exit 1
	fi
	end=$EPOCHREALTIME
	awk -v s="$start" -v e="$end" 'BEGIN { printf "%.3f\n", (e - s) * 1000 }' >>"$work/$side"
}

# summary FILE: "MEDIAN P90" of the numbers in FILE, interpolated between ranks.
summary() {
	sort -g "$1" | awk '
		{ v[NR] = $1 }
		function q(p,   h, lo) {
			h = (NR - 1) * p + 1
			lo = int(h)
			return lo >= NR ? v[NR] : v[lo] + (h - lo) * (v[lo + 1] - v[lo])
		}
		END { printf "%.1f %.1f\n", q(0.5), q(0.9) }'
}

report() {
	local median_a p90_a median_b p90_b
	read -r median_a p90_a < <(summary "$work/A")
	read -r median_b p90_b < <(summary "$work/B")
	printf '%-4s %5s %10s %10s  %s\n' side runs median-ms p90-ms environment
	printf '%-4s %5d %10s %10s  %s\n' A "$runs" "$median_a" "$p90_a" "$vars_a"
	printf '%-4s %5d %10s %10s  %s\n' B "$runs" "$median_b" "$p90_b" "$vars_b"
	awk -v a="$median_a" -v b="$median_b" 'BEGIN {
		if (a > 0) printf "B/A median: %.3f\n", b / a }'
}

parse_args "$@"
shift $((OPTIND - 1))
[ $# -gt 0 ] || usage
shim=${NOISESHIM_SHIM:-$(cd "$(dirname "$0")/.." && pwd)/build/libnoiseshim.so}
[ -f "$shim" ] || die "no client shim at $shim: run make, or set NOISESHIM_SHIM"

work=$(mktemp -d) || exit 1
trap 'rm -rf "$work"' EXIT

for ((i = 0; i < runs; i++)); do
	if ((i % 2 == 0)); then
		run_once A "$vars_a" "$@"
		run_once B "$vars_b" "$@"
	else
		run_once B "$vars_b" "$@"
		run_once A "$vars_a" "$@"
	fi
done
report
