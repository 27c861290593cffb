#!/bin/bash
# Integration tests of the accept shim with real servers that hand an
# accepted socket on to other processes: git daemon (fork, exec of
# git-daemon --serve, which runs git-upload-pack on the socket), sshd in its
# default re-exec mode and with -r (a sandboxed pre-authentication child,
# then the monitor), an inetd-style python server (fork, dup2 onto stdin
# and stdout, exec), and a Java server whose 127.0.0.1 listener is an
# AF_INET6 socket bound to ::ffff:127.0.0.1.  Each server runs under the
# accept shim, once started by hand (LD_PRELOAD, NOISESHIM_KEY,
# NOISESHIM_LISTEN) and once by `noiseshim serve`; each is reached by the
# real client under the client shim, bytes verified by SHA-256, and each
# must refuse plaintext: a plain client fails, a plaintext probe gets no
# byte back, and the server's log names the refused connection.
#
#   tests/integration/handoff.sh BUILD_DIR [SERVER...]
#
# BUILD_DIR (build, or build/asan for the ASan+UBSan build) must hold
# libnoiseshim.so, libnoiseshim-server.so and noiseshim.  SERVER is any of
# git, sshd, inetd, mapped (default: all).  sshd needs root.
# Prints "ok NAME" or "FAIL NAME: reason" per check and "# ..." for notes,
# then "handoff: N passed, M failed"; exits 1 if any check failed.  The
# work directory, with every log, is kept when a check fails.
set -u

if [ $# -lt 1 ]; then
	echo "usage: $0 BUILD_DIR [git|sshd|inetd|mapped]..." >&2
	exit 2
fi
if ! build=$(cd "$1" 2>/dev/null && pwd); then
	echo "handoff.sh: no directory $1" >&2
	exit 2
fi
shift
servers=${*:-git sshd inetd mapped}
for server in $servers; do
	case $server in
	git | sshd | inetd | mapped) ;;
	*)
		echo "handoff.sh: unknown server $server (git, sshd, inetd or mapped)" >&2
		exit 2
		;;
	esac
done
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/integration/harness.sh
. "$here/harness.sh"
client_shim=$build/libnoiseshim.so
server_shim=$build/libnoiseshim-server.so
cli=$build/noiseshim
peer=$here/handoff_peer.py
for file in "$client_shim" "$server_shim" "$cli"; do
	if [ ! -f "$file" ]; then
		echo "handoff.sh: $file is missing: build the shims and the CLI into $build first" >&2
		exit 2
	fi
done
# The interpreter itself, not a version-manager wrapper script, so that
# the PIDs the tests watch are the servers' own.
if ! python=$("${PYTHON:-python3}" -c 'import sys; print(sys.executable)'); then
	echo "handoff.sh: python3 is not installed" >&2
	exit 2
fi
PATH=$PATH:/usr/sbin
sshd=/usr/sbin/sshd
for program in git ssh ssh-keygen "$sshd" java javac sha256sum; do
	if ! command -v "$program" >/dev/null; then
		echo "handoff.sh: $program is not installed (packages: git, openssh-server," \
			"openssh-client, default-jdk-headless)" >&2
		exit 2
	fi
done

git_file_bytes=$((2 * 1048576))
ssh_file_bytes=$((300 * 1024))
digest_file_bytes=1048576
plain_file_bytes=1000

# Nothing of the caller's may leak into the programs under test.
unset LD_PRELOAD
for name in $(compgen -e); do
	case $name in NOISESHIM_* | GIT_* | SSH_*) unset "$name" ;; esac
done
# Neither side may read the machine's or the user's git configuration.
export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null

passed=0 failed=0
background_pids=()
work=$(mktemp -d /tmp/noiseshim-handoff.XXXXXX)
# The replay window and the counters files of the programs started here stay
# in the work directory rather than in /run/noiseshim, so that a run leaves
# nothing behind (a window there is 32 MiB per server key).
export NOISESHIM_REPLAY_FILE=$work/replay.map NOISESHIM_STATS_DIR=$work/stats

# Every process still running is ours, started below; stop each by PID.
cleanup() {
	for pid in "${background_pids[@]}"; do
		stop_process "$pid"
	done
	if [ "$failed" -eq 0 ]; then
		rm -rf "$work"
	else
		echo "# logs kept in $work"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

sha256() {
	sha256sum "$1" | cut -d' ' -f1
}

# start_background LOG COMMAND...: sets $started_pid.  COMMAND must exec
# the program (env does), so that the PID is the program's.  The log is
# written through a pipe, as a service manager's journal is: sshd's
# pre-authentication child may not write to a regular file (RLIMIT_FSIZE 0
# kills it with SIGXFSZ), and its stderr is the server's.
start_background() {
	local log=$1
	shift
	"$@" > >(exec cat >"$log") 2>&1 &
	started_pid=$!
	background_pids+=("$started_pid")
}

# SIGTERM to the process and the children it had (git runs git-daemon as
# a child; sshd's sessions outlive it), SIGKILL after 5 s.
stop_process() {
	local pid=$1 children
	alive "$pid" || { wait "$pid" 2>/dev/null; return 0; }
	children=$(cat /proc/"$pid"/task/*/children 2>/dev/null)
	# shellcheck disable=SC2086  # one PID per word
	kill -TERM "$pid" $children 2>/dev/null
	for _ in $(seq 50); do
		alive "$pid" || break
		sleep 0.1
	done
	if alive "$pid"; then
		# shellcheck disable=SC2086
		kill -KILL "$pid" $children 2>/dev/null
	fi
	wait "$pid" 2>/dev/null
	local kept=()
	for other in "${background_pids[@]}"; do
		[ "$other" = "$pid" ] || kept+=("$other")
	done
	background_pids=("${kept[@]}")
}

# Whether something listens on PORT at 127.0.0.1 (tcp) or ::ffff:127.0.0.1
# (tcp6), read from the kernel's tables so that no probe connection
# reaches the server under test.
listening() {
	awk -v v4="$(printf '0100007F:%04X' "$1")" -v v6="$(printf '0000000000000000FFFF00000100007F:%04X' "$1")" \
		'($2 == v4 || $2 == v6) && $4 == "0A" { found = 1 } END { exit !found }' \
		/proc/net/tcp /proc/net/tcp6
}

# --- keys, cache, test data and the environments of the two sides ---------

if ! "$cli" keygen "$work/server.key" >/dev/null; then
	echo "handoff.sh: noiseshim keygen failed" >&2
	exit 1
fi
cache=$work/cache

# allocate_ports RUN: a server port and a probe source port for RUN, taken
# just before it starts (other suites on this host take free ports too),
# and the server's NodeURL in the clients' cache.
declare -A server_port probe_port
allocate_ports() {
	local ports
	read -r -a ports < <(free_ports 2)
	server_port[$1]=${ports[0]}
	probe_port[$1]=${ports[1]}
	"$cli" nodeurl --key "$work/server.key" --addr "127.0.0.1:${ports[0]}" --tfo >>"$cache"
}

# A sanitizer build links libasan into the shims; programs built without it
# need the runtime loaded first.  Their own leaks are not under test.
sanitizer_env=()
asan_runtime=$(ldd "$server_shim" 2>/dev/null | awk '$1 ~ /^libasan\.so/ { print $3; exit }')
if [ -n "$asan_runtime" ]; then
	mkdir -m 1777 "$work/sanitizer"
	# noiseshim serve and run put the shim first in LD_PRELOAD, ahead of
	# the runtime that is already there; the runtime is still loaded
	# before libc, which is what its interceptors need.
	sanitizer_env=(ASAN_OPTIONS="detect_leaks=0:verify_asan_link_order=0:log_path=$work/sanitizer/report"
		UBSAN_OPTIONS="print_stacktrace=1:log_path=$work/sanitizer/report")
	note "sanitizer build: preloading $asan_runtime first"
fi
# Refusals are logged at warn; the tests look for them.
server_log_env=(NOISESHIM_LOG=warn)
client_env=(env LD_PRELOAD="${asan_runtime:+$asan_runtime }$client_shim" NOISESHIM_CACHE="$cache"
	"${sanitizer_env[@]}")
client_run=(env ${asan_runtime:+LD_PRELOAD="$asan_runtime"} "${sanitizer_env[@]}"
	"$cli" run --cache "$cache" --shim "$client_shim" --)

# server_command RUN PORT_SPEC PROGRAM...: sets $server_cmd to run PROGRAM
# under the accept shim, by hand for a run ending in -env, through
# noiseshim serve for one ending in -serve.
server_command() {
	local run=$1 spec=$2
	shift 2
	case $run in
	*-env)
		server_cmd=(env LD_PRELOAD="${asan_runtime:+$asan_runtime }$server_shim"
			NOISESHIM_KEY="$work/server.key" NOISESHIM_LISTEN="$spec"
			"${server_log_env[@]}" "${sanitizer_env[@]}" "$@")
		;;
	*-serve)
		server_cmd=(env ${asan_runtime:+LD_PRELOAD="$asan_runtime"} "${server_log_env[@]}"
			"${sanitizer_env[@]}" "$cli" serve --key "$work/server.key" --listen "$spec" --tfo
			--shim "$server_shim" -- "$@")
		;;
	esac
}

# client_command RUN: sets $client_cmd, the prefix that runs a client
# under the client shim: by hand for -env runs, noiseshim run for -serve.
client_command() {
	case $1 in
	*-env) client_cmd=("${client_env[@]}") ;;
	*-serve) client_cmd=("${client_run[@]}") ;;
	esac
}

# start_server RUN PORT_SPEC PROGRAM...: starts it, sets $server_pid and
# $server_log; fails RUN-start and returns 1 if it does not listen.
start_server() {
	local run=$1 spec=$2
	shift 2
	server_log=$work/$run.server.log
	run_started=$(date +%s.%N)
	server_command "$run" "$spec" "$@"
	start_background "$server_log" "${server_cmd[@]}"
	server_pid=$started_pid
	if ! wait_listening "${server_port[$run]}" "$server_pid"; then
		fail "$run-start" "the server does not listen on ${server_port[$run]}: $(tail_of "$server_log")"
		stop_process "$server_pid"
		return 1
	fi
}

# finish_run RUN: stops the server, notes how long RUN took, and fails it
# for any sanitizer report written meanwhile.
finish_run() {
	stop_process "$server_pid"
	note "$1: $(awk -v start="$run_started" -v end="$(date +%s.%N)" 'BEGIN { printf "%.1f", end - start }') s"
	check_sanitizer_reports "$1"
}

# Any sanitizer report written during run RUN fails it.
check_sanitizer_reports() {
	local report
	[ -n "$asan_runtime" ] || return 0
	for report in "$work"/sanitizer/report.*; do
		[ -e "$report" ] || continue
		case $report in *.seen) continue ;; esac
		fail "$1-sanitizer" "$(grep -m 1 -E 'ERROR|runtime error' "$report") (full report: $report.seen)"
		mv "$report" "$report.seen"
	done
}

# expect_probe_refused RUN TEXT: a plaintext client from the run's probe
# port sends TEXT (the protocol's own opening); it must get no byte back
# and be closed, and the server's log must name that connection at warn or
# error level within 3 s.
expect_probe_refused() {
	local run=$1 text=$2 out sport=${probe_port[$1]}
	out=$(timeout 30 "$python" "$peer" probe --port "${server_port[$run]}" --source-port "$sport" \
		--text "$text" 2>&1)
	if [ "$out" = "reply 0 closed" ]; then
		pass "$run-probe-gets-nothing"
	else
		fail "$run-probe-gets-nothing" "a plaintext probe: expected \"reply 0 closed\", got \"$(printf '%s' "$out" | tail -n 1)\""
	fi
	for _ in $(seq 30); do
		grep -qE "noiseshim\[[0-9]+\]: (warn|error): .*[^0-9]$sport([^0-9]|$)" "$server_log" && break
		sleep 0.1
	done
	if grep -qE "noiseshim\[[0-9]+\]: (warn|error): .*[^0-9]$sport([^0-9]|$)" "$server_log"; then
		pass "$run-refusal-logged"
	else
		fail "$run-refusal-logged" "no shim line names the plaintext probe from port $sport: $(tail_of "$server_log")"
	fi
}

head -c "$plain_file_bytes" /dev/urandom >"$work/plain.bin"

# --- 1. git daemon ----------------------------------------------------------

mkdir -p "$work/git"
setup_git_repository() {
	git init -q "$work/git/repo" &&
		head -c "$git_file_bytes" /dev/urandom >"$work/git/repo/blob.bin" &&
		git -C "$work/git/repo" add blob.bin &&
		git -C "$work/git/repo" -c user.name=test -c user.email=test@localhost \
			commit -qm 'a random file'
}

# git daemon accepts, forks and execs git-daemon --serve with the socket on
# stdin and stdout; that one reads the request and runs git-upload-pack on
# the same socket, which streams the pack that git-pack-objects makes.
test_git() {
	allocate_ports "$1"
	local run=$1 port=${server_port[$1]} clone=$work/$1.clone rc requests
	# --verbose logs each request the daemon serves: "Request upload-pack for '/repo'".
	start_server "$run" "$port" git daemon --verbose --export-all --base-path="$work/git" \
		--reuseaddr --port="$port" --listen=127.0.0.1 || return
	client_command "$run"

	timeout 60 "${client_cmd[@]}" git clone -q "git://127.0.0.1:$port/repo" "$clone" \
		>"$work/$run.clone.log" 2>&1
	rc=$?
	if [ "$rc" -ne 0 ]; then
		fail "$run-clone" "the wrapped clone exited $rc: $(tail_of "$work/$run.clone.log")"
	elif [ "$(sha256 "$clone/blob.bin")" != "$(sha256 "$work/git/repo/blob.bin")" ]; then
		fail "$run-clone" "blob.bin differs: $(stat -c %s "$clone/blob.bin") bytes of $git_file_bytes"
	else
		pass "$run-clone"
	fi

	requests=$(grep -c 'Request upload-pack' "$server_log")
	timeout 30 git clone -q "git://127.0.0.1:$port/repo" "$clone-plain" >"$work/$run.plain.log" 2>&1
	rc=$?
	# The first pkt-line a git client sends: length, then the command.
	expect_probe_refused "$run" "0019git-upload-pack /repo"
	sleep 0.2
	requests=$(($(grep -c 'Request upload-pack' "$server_log") - requests))
	if [ "$rc" -ne 0 ] && [ ! -e "$clone-plain/blob.bin" ] && [ "$requests" -eq 0 ]; then
		pass "$run-plain-refused"
	else
		fail "$run-plain-refused" "a plain git clone exited $rc$([ -e "$clone-plain/blob.bin" ] && echo ' with the file'); the daemon served $requests plaintext requests"
	fi
	finish_run "$run"
	rm -rf "$clone" "$clone-plain"
}

# --- 2. sshd ----------------------------------------------------------------

setup_ssh() {
	ssh-keygen -q -t ed25519 -N '' -C handoff-host -f "$work/ssh_host_ed25519_key" &&
		ssh-keygen -q -t ed25519 -N '' -C handoff-client -f "$work/client_key" &&
		cp "$work/client_key.pub" "$work/authorized_keys" &&
		head -c "$ssh_file_bytes" /dev/urandom >"$work/ssh-down.bin" &&
		head -c "$ssh_file_bytes" /dev/urandom >"$work/ssh-up.bin" &&
		# sshd chroots its pre-authentication child here; the package's
		# service creates it at boot, a machine that never ran it lacks it.
		{ [ -d /run/sshd ] || mkdir -m 755 /run/sshd; }
}

# seccomp_kills_since UPTIME: what the kernel logged since UPTIME (seconds
# since boot, /proc/uptime) about sshd processes killed by a seccomp filter,
# with the syscall named: why a pre-authentication child died, which sshd
# does not log.  Empty if nothing was, or the kernel log cannot be read.
seccomp_kills_since() {
	local unistd=/usr/include/x86_64-linux-gnu/asm/unistd_64.h
	dmesg 2>/dev/null | awk -v since="$1" -v unistd="$unistd" '
		BEGIN {
			while ((getline line < unistd) > 0)
				if (split(line, f, " ") == 3 && f[1] == "#define" && f[2] ~ /^__NR_/)
					name[f[3]] = substr(f[2], 6)
		}
		/type=1326/ && /comm="sshd"/ {
			stamp = $0
			sub(/^\[ */, "", stamp)
			sub(/\].*/, "", stamp)
			if (stamp + 0 < since + 0 || !match($0, /syscall=[0-9]+/))
				next
			nr = substr($0, RSTART + 8, RLENGTH - 8)
			printf "an sshd process was killed by its seccomp filter at syscall %s (%s); ", nr, (nr in name) ? name[nr] : "?"
		}'
}

ssh_options=(-F /dev/null -i "$work/client_key" -o IdentitiesOnly=yes -o BatchMode=yes
	-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o ConnectTimeout=20)

# test_sshd RUN [-r]: sshd re-execs itself for each connection (-R, with
# the socket on stdin and stdout) unless -r; then a sandboxed child does
# the key exchange and authentication and the monitor takes the socket
# back for the session.  300 KB go each way in one session.
test_sshd() {
	allocate_ports "$1"
	local run=$1 port=${server_port[$1]} config=$work/$1.sshd_config rc up_sum accepted kernel_log_since
	shift
	cat >"$config" <<-EOF
		Port $port
		ListenAddress 127.0.0.1
		HostKey $work/ssh_host_ed25519_key
		PidFile $work/$run.sshd.pid
		AuthorizedKeysFile $work/authorized_keys
		PermitRootLogin prohibit-password
		PasswordAuthentication no
		KbdInteractiveAuthentication no
		UsePAM no
		StrictModes no
		PrintMotd no
	EOF
	kernel_log_since=$(cut -d' ' -f1 /proc/uptime)
	start_server "$run" "$port" "$sshd" -D -e -f "$config" "$@" || return
	client_command "$run"

	timeout 60 "${client_cmd[@]}" ssh "${ssh_options[@]}" -p "$port" root@127.0.0.1 \
		"sha256sum | cut -c1-64 >'$work/$run.up.sum'; cat '$work/ssh-down.bin'" \
		<"$work/ssh-up.bin" >"$work/$run.down" 2>"$work/$run.ssh.log"
	rc=$?
	up_sum=$(cat "$work/$run.up.sum" 2>/dev/null)
	if [ "$rc" -ne 0 ]; then
		fail "$run-ssh" "the wrapped ssh exited $rc: $(tail_of "$work/$run.ssh.log") / $(seccomp_kills_since "$kernel_log_since")sshd: $(tail_of "$server_log")"
	elif [ "$(sha256 "$work/$run.down")" != "$(sha256 "$work/ssh-down.bin")" ]; then
		fail "$run-ssh" "the file read through ssh differs: $(stat -c %s "$work/$run.down") bytes of $ssh_file_bytes"
	elif [ "$up_sum" != "$(sha256 "$work/ssh-up.bin")" ]; then
		fail "$run-ssh" "the SHA-256 of what sshd received differs: ${up_sum:-none}"
	else
		pass "$run-ssh"
	fi

	accepted=$(grep -c '^Accepted publickey' "$server_log")
	timeout 30 ssh "${ssh_options[@]}" -p "$port" root@127.0.0.1 true >"$work/$run.plain.log" 2>&1
	rc=$?
	if [ "$rc" -ne 0 ] && [ "$(grep -c '^Accepted publickey' "$server_log")" = "$accepted" ]; then
		pass "$run-plain-refused"
	else
		fail "$run-plain-refused" "a plain ssh exited $rc; sshd: $(tail_of "$server_log" 1)"
	fi
	expect_probe_refused "$run" $'SSH-2.0-OpenSSH_9.2p1 probe\r\n'
	finish_run "$run"
}

# --- 3. an inetd-style server -----------------------------------------------

# The listener forks for each connection, the child puts the socket on
# stdin and stdout and execs the digest program, which alone reads it.
test_inetd() {
	allocate_ports "$1"
	local run=$1 port=${server_port[$1]} record=$work/$1.record out
	: >"$record"
	start_server "$run" "$port" "$python" "$peer" inetd --port "$port" -- \
		"$python" "$peer" digest --record "$record" || return
	client_command "$run"
	expect_digest_service "$run" "$record"
	expect_probe_refused "$run" $'a plaintext request\n'
	finish_run "$run"
}

# expect_digest_service RUN RECORD: a wrapped client sends 1 MiB and gets
# its SHA-256, which the program recorded; a plain client sending its own
# bytes gets no answer, and the program never sees them.
expect_digest_service() {
	local run=$1 record=$2 out
	out=$(timeout 60 "${client_cmd[@]}" "$python" "$peer" send --port "${server_port[$run]}" \
		--file "$work/digest.bin" 2>"$work/$run.send.log")
	if [ "$out" = "$(sha256 "$work/digest.bin")" ] &&
		grep -qx "$digest_file_bytes $(sha256 "$work/digest.bin")" "$record"; then
		pass "$run-1m"
	else
		fail "$run-1m" "answer \"$out\"; program saw: $(tail_of "$record" 2) $(tail_of "$work/$run.send.log")"
	fi

	out=$(timeout 30 "$python" "$peer" send --port "${server_port[$run]}" --file "$work/plain.bin" 2>&1)
	sleep 0.2
	if [ -z "$out" ] && ! grep -q "$(sha256 "$work/plain.bin")" "$record"; then
		pass "$run-plain-refused"
	else
		fail "$run-plain-refused" "a plain client got \"$(printf '%s' "$out" | tail -n 1)\"; program saw: $(tail_of "$record" 2)"
	fi
}

# --- 4. a server bound to ::ffff:127.0.0.1 -----------------------------------

# Java opens its 127.0.0.1 listener as AF_INET6 bound to ::ffff:127.0.0.1;
# NOISESHIM_LISTEN names 127.0.0.1:PORT, which must match it.
test_mapped() {
	allocate_ports "$1"
	local run=$1 port=${server_port[$1]} record=$work/$1.record
	: >"$record"
	start_server "$run" "127.0.0.1:$port" java -cp "$work/java" MappedServer "$port" "$record" || return
	client_command "$run"
	expect_digest_service "$run" "$record"
	expect_probe_refused "$run" $'a plaintext request\n'
	finish_run "$run"
}

# --- run ----------------------------------------------------------------------

head -c "$digest_file_bytes" /dev/urandom >"$work/digest.bin"
for server in $servers; do
	case $server in
	git)
		if setup_git_repository >"$work/git-setup.log" 2>&1; then
			test_git git-env
			test_git git-serve
		else
			fail git-setup "$(tail_of "$work/git-setup.log")"
		fi
		;;
	sshd)
		if [ "$(id -u)" -ne 0 ]; then
			fail sshd "sshd must start as root to log a client in; run this as root"
		elif setup_ssh >"$work/ssh-setup.log" 2>&1; then
			test_sshd sshd-reexec-env
			test_sshd sshd-reexec-serve
			test_sshd sshd-r-env -r
			test_sshd sshd-r-serve -r
		else
			fail sshd-setup "$(tail_of "$work/ssh-setup.log")"
		fi
		;;
	inetd)
		test_inetd inetd-env
		test_inetd inetd-serve
		;;
	mapped)
		if javac -d "$work/java" "$here/MappedServer.java" >"$work/javac.log" 2>&1; then
			test_mapped mapped-env
			test_mapped mapped-serve
		else
			fail mapped-javac "$(tail_of "$work/javac.log")"
		fi
		;;
	esac
done

echo "handoff: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
