#!/usr/bin/env python3
"""The fail-closed matrix: every way a program gets bytes onto a TCP socket,
crossed with every way its fd came to be, under both shims.

usage: tests/failclosed/run.py BUILD_DIR

BUILD_DIR (build, or build/asan) must hold both shims, noiseshim,
tests/gopeer, tests/fc_client and tests/fc_server.

Client shim (fc_client under libnoiseshim.so; its usage lists the eleven
methods and the twenty-one origins, each method run with and without
TCP_FASTOPEN_CONNECT):
  recorder   a plain listener at a cached address that records every byte
             and never answers: the marker never appears in what it got,
             what it got starts with the route prefix, and the program
             either reports its write delivered or fails with an errno.
             After an exec that strips LD_PRELOAD nothing beyond the first
             flight sent before the exec may arrive, and the write fails.
  echo       gopeer's Noise echo at a cached address: the echo comes back
             equal; after a stripping exec the write fails and the shim
             says why.  In both, after fclose(fdopen()) a new socket on the
             same fd number talks plaintext to an uncached echo server,
             quickly.
  hostile    a cached server that half-closes, resets, or sends 4 bytes and
             FIN after the first flight: the program gets an errno.
  config     a cache line with a bad checksum, typos in NOISESHIM_* values.
  ipv6       [::1] destinations, and v4-mapped ones matching IPv4 entries.
Accept shim (fc_server under libnoiseshim-server.so):
  server     accept/accept4 x six ways to read x how the connection is
             handed on (dup, inetd-style stdio, fork, exec kept and
             stripped), and listeners inherited, v4-mapped, [::], [::1]:
             a plaintext client gets nothing and its bytes never reach the
             program; a wrapped client gets "ANSWER" (except after a
             stripping exec, where it gets an error).
  server-config  NOISESHIM_LISTEN and NOISESHIM_KEY that cannot be
             applied: listen() fails with EACCES, one line names the
             variable; /bin/true under the accept shim prints nothing.

Prints "ok NAME" or "FAIL NAME: reason" per case, then
"failclosed: N passed, M failed"; exits 1 if any case failed.  The work
directory is kept when a case fails.

FAILCLOSED_DRY_RUN=1 runs every program without the shims: then every
check fails except the plaintext leg of fclose-fdopen and /bin/true's
silence, which hold without a shim (that is how to see that the checks
can fail).  FAILCLOSED_JOBS sets how
many cases run at once (default 8).
"""

import concurrent.futures
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PREFIX = b"DRPC!N!1"
FRAME_HEADER_LEN = 4
MSG1_OVERHEAD = 96          # e | enc(s) | tag of the payload
MARKER_LEN = 32
# Any 8 bytes of the marker found in a recording count as a leak.
LEAK_WINDOW = 8
RESP_PRIV = "0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20"
# Cases that must end in an error wait for the handshake this long.
SHORT_HANDSHAKE_MS = "1500"
CASE_TIMEOUT = 20           # seconds; fc_client's own alarm is 12
PROBE_WAIT = "1.5"
# fclose-fdopen's plain connection must not wait for a handshake: it runs
# with this handshake timeout and must be done well before it.
FCLOSE_HANDSHAKE_MS = "3000"
QUICK_SECONDS = 2.5
SANITIZER_SIGNS = ("ERROR: AddressSanitizer", "runtime error:", "ERROR: LeakSanitizer")

METHODS = ["write", "writev", "send", "sendto", "sendto-fastopen", "sendmsg",
           "sendmsg-fastopen", "sendmmsg", "sendmmsg-fastopen", "sendfile", "splice"]
ORIGINS = ["connect", "connect-on-dup", "dup-before", "dup2-before", "dup3-before",
           "fdupfd-before", "fdupfd-cloexec-before", "fork-before", "fork-before-parent",
           "fork-after", "exec-keep", "exec-keep-spawn", "exec-strip-execve",
           "exec-strip-spawn", "exec-strip-execvp", "exec-keep-execveat", "exec-strip-execveat",
           "fclose-fdopen", "failed-dup2-onto", "scm-rights", "scm-rights-unrelated"]
SERVER_READS = ["read", "recv", "readv", "recvmsg", "recvmmsg", "splice"]
SERVER_ORIGINS = ["direct", "dup", "dup2-stdio", "fork", "exec-keep", "exec-strip", "inetd-exec"]
HOSTILE_KINDS = ["shutwr", "reset", "four"]
TYPOS = [("NOISESHIM_TFO", "maybe"), ("NOISESHIM_0RTT", "of"), ("NOISESHIM_TRANSPORT", "nosie")]
# A shell started by system() or popen() (libc's own spawn, past the exec
# wrappers) is handed the connected socket and told to write the marker.
# Both are libc's own: os.system() is system(), but os.popen() is
# subprocess, which closes every fd but 0-2 in the child, so popen() is
# called through ctypes.
SHELL_STARTS = ["system", "popen"]
SHELL_CLIENT = r"""
import ctypes, os, socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[2])))
os.set_inheritable(s.fileno(), True)
command = "printf '%%s' %s >&%d" % (sys.argv[3], s.fileno())
if sys.argv[1] == "system":
    print("shell exit", os.system(command))
else:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.popen.restype = ctypes.c_void_p
    libc.popen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    libc.pclose.argtypes = [ctypes.c_void_p]
    stream = libc.popen(command.encode(), b"r")
    if not stream:
        sys.exit("popen: " + os.strerror(ctypes.get_errno()))
    print("shell exit", libc.pclose(stream))
print("inheritable", os.get_inheritable(s.fileno()))
"""
FASTOPEN_PRE_BYTES = MARKER_LEN // 2    # what fc_client's connect step sends

# fc_client's exit codes (see fc_client.c).
CLIENT_OUTCOMES = {0: "echo-ok", 10: "delivered", 11: "errno", 12: "echo-mismatch",
                   13: "eof", 14: "timeout", 15: "signal", 2: "setup-error"}


class Result:
    def __init__(self, rc, out, err, elapsed):
        self.rc, self.out, self.err, self.elapsed = rc, out, err, elapsed

    def line(self):
        first = self.out.strip().splitlines()
        return first[0] if first else "(no output)"

    def describe(self):
        if self.rc is None:
            return "no result within %d s" % CASE_TIMEOUT
        if self.rc < 0:
            return "killed by signal %d" % -self.rc
        shim = [l for l in self.err.splitlines() if l.startswith("noiseshim")]
        return "exit %d, %s%s" % (self.rc, self.line(),
                                  ("; shim: " + shim[-1][:160]) if shim else "")


def run(argv, env, timeout=CASE_TIMEOUT, stdin=subprocess.DEVNULL):
    start = time.monotonic()
    proc = subprocess.Popen(argv, env=env, stdin=stdin, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
        rc = proc.returncode
    except subprocess.TimeoutExpired:
        kill_group(proc)
        out, err = proc.communicate()
        rc = None
    return Result(rc, out.decode(errors="replace"), err.decode(errors="replace"),
                  time.monotonic() - start)


def kill_group(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def sanitizer_report(text):
    for sign in SANITIZER_SIGNS:
        if sign in text:
            line = next(l for l in text.splitlines() if sign in l)
            return "sanitizer: " + line.strip()[:200]
    return None


def leaked(data, marker):
    for i in range(len(marker) - LEAK_WINDOW + 1):
        if marker[i:i + LEAK_WINDOW] in data:
            return True
    return False


def read_bytes(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return b""


def verdict(problems):
    """None when every check passed, else the problems found, in one line."""
    found = [p for p in problems if p]
    return "; ".join(found) if found else None


def recording_problem(data, marker, stripped_exec=False, pre_exec_bytes=0):
    """Why what a listener recorded breaks the contract, or None."""
    if leaked(data, marker):
        at = min(data.find(marker[i:i + LEAK_WINDOW]) for i in range(len(marker) - LEAK_WINDOW + 1)
                 if marker[i:i + LEAK_WINDOW] in data)
        return "the listener received marker bytes in plaintext (at offset %d of %d)" % (at, len(data))
    if data and not data.startswith(PREFIX):
        return "the listener received bytes that are not a Noise first flight: %s" % data[:16].hex()
    if stripped_exec and data:
        header = len(PREFIX) + FRAME_HEADER_LEN
        body = int.from_bytes(data[len(PREFIX) + 1:header], "big") if len(data) >= header else -1
        if len(data) != header + body:
            return "%d bytes reached the listener, more than one first flight: " \
                   "the program wrote after the exec" % len(data)
        if body > MSG1_OVERHEAD + pre_exec_bytes:
            return "the first flight carries %d bytes of payload, more than the %d written " \
                   "before the exec" % (body - MSG1_OVERHEAD, pre_exec_bytes)
    return None


class Matrix:
    def __init__(self, build):
        self.build = os.path.abspath(build)
        self.dry_run = os.environ.get("FAILCLOSED_DRY_RUN") == "1"
        self.jobs = int(os.environ.get("FAILCLOSED_JOBS", "8"))
        self.cli = os.path.join(self.build, "noiseshim")
        self.gopeer = os.path.join(self.build, "tests", "gopeer")
        self.fc_client = os.path.join(self.build, "tests", "fc_client")
        self.fc_server = os.path.join(self.build, "tests", "fc_server")
        self.client_shim = os.path.join(self.build, "libnoiseshim.so")
        self.server_shim = os.path.join(self.build, "libnoiseshim-server.so")
        for path in (self.cli, self.gopeer, self.fc_client, self.fc_server,
                     self.client_shim, self.server_shim):
            if not os.path.isfile(path):
                sys.exit("run.py: %s is missing: build it into %s first" % (path, build))
        self.work = tempfile.mkdtemp(prefix="noiseshim-failclosed.")
        self.procs = []
        self.base_env = {k: v for k, v in os.environ.items()
                         if k != "LD_PRELOAD" and not k.startswith("NOISESHIM_")}
        # The shims' counters files and the accept shim's replay window stay
        # in the work directory rather than in /run/noiseshim.
        self.stats_dir = self.path("stats")
        self.replay_file = self.path("replay.map")
        asan = self.asan_runtime()
        if asan:
            # The ASan runtime must come first in LD_PRELOAD; programs built
            # without it get it too.  Their own leaks are not under test.
            self.base_env["ASAN_OPTIONS"] = "detect_leaks=0"
            self.base_env["UBSAN_OPTIONS"] = "print_stacktrace=1"
        self.client_preload = ((asan + " ") if asan else "") + self.client_shim
        self.server_preload = ((asan + " ") if asan else "") + self.server_shim
        if self.dry_run:
            self.client_preload = self.server_preload = asan or ""

    def asan_runtime(self):
        out = subprocess.run(["ldd", self.client_shim], capture_output=True, text=True).stdout
        m = re.search(r"^\s*libasan\.so\S*\s+=>\s+(\S+)", out, re.M)
        return m.group(1) if m else None

    def path(self, *names):
        return os.path.join(self.work, *names)

    # --- servers ---------------------------------------------------------------

    def start(self, name, argv):
        out = self.path(name + ".out")
        with open(out, "wb") as f:
            proc = subprocess.Popen(argv, env=self.base_env, stdin=subprocess.DEVNULL, stdout=f,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(proc)
        return proc, out

    def wait_for(self, name, proc, out, pattern, timeout=20):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = read_bytes(out).decode(errors="replace")
            if re.search(pattern, text, re.M):
                return text
            if proc.poll() is not None:
                break
            time.sleep(0.05)
        sys.exit("run.py: %s did not start: %s" % (name, read_bytes(out)[-400:]))

    def start_listeners(self, name, host, specs):
        directory = self.path(name)
        os.mkdir(directory)
        proc, out = self.start(name, [sys.executable, os.path.join(HERE, "fc_peer.py"),
                                      "listen", directory, host] + specs)
        text = self.wait_for(name, proc, out, r"^ready$")
        ports = {}
        for kind, port in re.findall(r"^(\w+) (\d+)$", text, re.M):
            ports.setdefault(kind, []).append(int(port))
        return directory, ports

    def start_gopeer(self, name, listen):
        proc, out = self.start(name, [self.gopeer, "respond", "--listen", listen, "--key",
                                      RESP_PRIV, "--suite", "chachapoly", "--mode", "echo"])
        text = self.wait_for(name, proc, out, r"^listening .*:\d+$")
        return int(re.search(r"^listening .*:(\d+)$", text, re.M).group(1))

    def free_ports(self, count):
        """COUNT ports free on IPv4 and IPv6 alike: a dual-stack wildcard
        bind conflicts with every listener already on 127.0.0.1 or ::1."""
        code = ("import socket,sys\n"
                "s=[socket.socket(socket.AF_INET6) for _ in range(int(sys.argv[1]))]\n"
                "[x.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0) for x in s]\n"
                "[x.bind(('::',0)) for x in s]\n"
                "print(' '.join(str(x.getsockname()[1]) for x in s))")
        out = subprocess.run([sys.executable, "-c", code, str(count)], capture_output=True,
                             text=True, check=True).stdout
        return [int(p) for p in out.split()]

    def setup(self):
        key = self.path("responder.key")
        with open(key, "w") as f:
            f.write(RESP_PRIV + "\n")
        os.chmod(key, 0o600)
        self.server_key = key
        url = subprocess.run([self.cli, "nodeurl", "--key", key, "--addr", "127.0.0.1:1"],
                             capture_output=True, text=True, check=True).stdout.strip()
        self.query = url.split("?", 1)[1]

        self.recorded_v4 = (len(METHODS) * 2 * len(ORIGINS) + len(METHODS) + len(TYPOS) + 2 +
                            len(SHELL_STARTS))
        self.recorded_v6 = len(METHODS) * 2
        self.rec4_dir, ports4 = self.start_listeners(
            "listen4", "127.0.0.1",
            ["record:%d" % self.recorded_v4] + ["%s:2" % k for k in HOSTILE_KINDS])
        self.rec6_dir, ports6 = self.start_listeners("listen6", "::1",
                                                     ["record:%d" % self.recorded_v6])
        self.rec4 = ports4.pop("record")
        self.hostile = ports4
        self.rec6 = ports6["record"]
        self.echo4 = self.start_gopeer("gopeer4", "127.0.0.1:0")
        self.echo6 = self.start_gopeer("gopeer6", "[::1]:0")
        proc, out = self.start("plain-echo", [sys.executable, os.path.join(
            HERE, "..", "integration", "plain_server.py"), "echo"])
        self.plain_echo = int(re.search(r":(\d+)$", self.wait_for(
            "plain-echo", proc, out, r"^listening .*:\d+$"), re.M).group(1))
        self.server_ports = self.free_ports(len(SERVER_READS) * len(SERVER_ORIGINS) * 2 + 24)

        # Two recorder ports are kept out of the cache for the bad-checksum case.
        self.badsum_ports = [self.rec4.pop(), self.rec4.pop()]
        lines = ["# the fail-closed matrix's destinations"]
        lines += ["127.0.0.1:%d?%s" % (p, self.query) for p in [self.echo4] + self.rec4]
        lines += ["[::1]:%d?%s" % (p, self.query) for p in [self.echo6] + self.rec6]
        lines += ["127.0.0.1:%d?%s" % (p, self.query) for ps in self.hostile.values() for p in ps]
        lines += ["127.0.0.1:%d?%s" % (p, self.query) for p in self.server_ports]
        lines += ["[::1]:%d?%s" % (p, self.query) for p in self.server_ports]
        self.cache = self.path("cache")
        self.write_cache(self.cache, lines)

        # The same key with its last base58 digit changed: the checksum fails.
        pub = re.search(r"noise_pub=([1-9A-HJ-NP-Za-km-z]+)", self.query).group(1)
        bad_pub = pub[:-1] + ("2" if pub[-1] != "2" else "3")
        bad_query = self.query.replace(pub, bad_pub)
        self.badsum_cache = self.path("cache-badsum")
        self.badsum_line = 3
        self.write_cache(self.badsum_cache, [
            "# one good entry, then a bad one at line %d" % self.badsum_line,
            "127.0.0.1:%d?%s" % (self.echo4, self.query),
        ] + ["127.0.0.1:%d?%s" % (p, bad_query) for p in self.badsum_ports], check=False)
        check = subprocess.run([self.cli, "cache", "check", "--cache", self.badsum_cache],
                               capture_output=True, text=True)
        if check.returncode == 0 or ("cache-badsum:%d" % self.badsum_line) not in check.stdout + check.stderr:
            sys.exit("run.py: the bad-checksum cache does not fail its check at line %d: %s"
                     % (self.badsum_line, check.stdout + check.stderr))

    def write_cache(self, path, lines, check=True):
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        if check:
            result = subprocess.run([self.cli, "cache", "check", "--cache", path],
                                    capture_output=True, text=True)
            if result.returncode != 0:
                sys.exit("run.py: the test cache does not check out: " + result.stdout + result.stderr)

    def wait_recorded(self, *directories, timeout=5.0):
        """Until every connection the listeners accepted is recorded in full."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            behind = [name for directory in directories for name in os.listdir(directory)
                      if name.endswith(".accepted") and
                      len(read_bytes(os.path.join(directory, name))) !=
                      len(read_bytes(os.path.join(directory, name[:-len("accepted")] + "closed")))]
            if not behind:
                return
            time.sleep(0.05)
        print("# listeners still busy after %.0f s: %s" % (timeout, " ".join(behind[:5])))

    def stop_all(self):
        for proc in self.procs:
            kill_group(proc)
            proc.wait()

    # --- environments ------------------------------------------------------------

    def client_env(self, **extra):
        env = dict(self.base_env, NOISESHIM_CACHE=self.cache, NOISESHIM_STATS_DIR=self.stats_dir)
        if self.client_preload:
            env["LD_PRELOAD"] = self.client_preload
        env.update(extra)
        return env

    def server_env(self, port, **extra):
        env = dict(self.base_env, NOISESHIM_KEY=self.server_key, NOISESHIM_LISTEN=str(port),
                   NOISESHIM_HANDSHAKE_TIMEOUT_MS=SHORT_HANDSHAKE_MS,
                   NOISESHIM_REPLAY_FILE=self.replay_file, NOISESHIM_STATS_DIR=self.stats_dir)
        if self.server_preload:
            env["LD_PRELOAD"] = self.server_preload
        env.update(extra)
        return env

    # --- client-shim cases ---------------------------------------------------------

    def client_case(self, name, target, method, origin, tfo, host="127.0.0.1", port=None,
                    record_dir=None):
        """One fc_client run against a recorder or the Noise echo."""
        marker = secrets.token_bytes(MARKER_LEN)
        options = ["--tfo-connect"] if tfo else []
        if target == "echo" or origin == "fclose-fdopen":
            options.append("--read")
        if origin == "fclose-fdopen":
            options += ["--plain-port", str(self.plain_echo)]
        argv = [self.fc_client] + options + [method, origin, host, str(port), marker.hex()]
        extra = {}
        if origin == "fclose-fdopen":
            extra["NOISESHIM_HANDSHAKE_TIMEOUT_MS"] = FCLOSE_HANDSHAKE_MS
        elif target == "recorder":
            extra["NOISESHIM_HANDSHAKE_TIMEOUT_MS"] = SHORT_HANDSHAKE_MS
        # A socket cut off from its Noise state: by an exec that cannot adopt it, or by a
        # pass over a unix socket to a process that shares nothing with its sender.
        stripped = origin.startswith("exec-strip") or origin == "scm-rights-unrelated"

        def body():
            result = run(argv, self.client_env(**extra))
            return result, lambda: self.judge_client(target, origin, stripped, method, result,
                                                     marker, record_dir, port)
        return name, body

    def judge_client(self, target, origin, stripped, method, result, marker, record_dir, port):
        problems = [sanitizer_report(result.err)]
        if record_dir is not None:
            pre = FASTOPEN_PRE_BYTES if method.endswith("-fastopen") else 0
            problems.append(recording_problem(read_bytes(os.path.join(record_dir, str(port))),
                                              marker, stripped, pre))
        outcome = CLIENT_OUTCOMES.get(result.rc) if result.rc is not None else None
        if origin == "fclose-fdopen":
            if outcome != "echo-ok":
                problems.append("the new socket on the closed fd's number did not echo in "
                                "plaintext: " + result.describe())
            elif result.elapsed >= QUICK_SECONDS:
                problems.append("the plaintext echo took %.2f s (stale Noise state?)" % result.elapsed)
        elif origin == "scm-rights-unrelated":
            if outcome != "errno" or "(where: read" in result.line():
                problems.append("a wrapped socket received without its state must fail the "
                                "write: " + result.describe())
            if not re.search(r"^noiseshim.*unix socket", result.err, re.M):
                problems.append("no shim line says why the received fd fails")
        elif stripped:
            # The write itself must fail: a read error may follow plaintext.
            if outcome != "errno" or "after exec)" not in result.line() or \
                    "(where: read" in result.line():
                problems.append("after an exec without LD_PRELOAD the exec'd program's write "
                                "must fail: " + result.describe())
            if target == "echo" and not re.search(r"^noiseshim.*(exec|LD_PRELOAD)", result.err, re.M):
                problems.append("no shim line says why the exec'd program's fd fails")
        elif target == "echo":
            if outcome != "echo-ok":
                problems.append("no echo through Noise: " + result.describe())
        elif outcome not in ("delivered", "errno"):
            problems.append("neither delivered nor a clean errno: " + result.describe())
        return verdict(problems)

    def client_cases(self):
        cases = []
        rec4 = iter(self.rec4)
        for target in ("recorder", "echo"):
            for origin in ORIGINS:
                for method in METHODS:
                    for tfo in (False, True):
                        name = "%s %s%s %s" % (target, method, "+tfo-connect" if tfo else "", origin)
                        if target == "recorder":
                            cases.append(self.client_case(name, target, method, origin, tfo,
                                                          port=next(rec4), record_dir=self.rec4_dir))
                        else:
                            cases.append(self.client_case(name, target, method, origin, tfo,
                                                          port=self.echo4))
        rec6 = iter(self.rec6)
        for origin in ("connect", "fork-after"):
            for method in METHODS:
                cases.append(self.client_case("ipv6 recorder [::1] %s %s" % (method, origin),
                                              "recorder", method, origin, False, host="::1",
                                              port=next(rec6), record_dir=self.rec6_dir))
                cases.append(self.client_case("ipv6 echo [::1] %s %s" % (method, origin), "echo",
                                              method, origin, False, host="::1", port=self.echo6))
        for method in METHODS:
            cases.append(self.client_case("ipv6 recorder v4-mapped %s" % method, "recorder",
                                          method, "connect", False, host="::ffff:127.0.0.1",
                                          port=next(rec4), record_dir=self.rec4_dir))
            cases.append(self.client_case("ipv6 echo v4-mapped %s" % method, "echo", method,
                                          "connect", False, host="::ffff:127.0.0.1",
                                          port=self.echo4))
        for variable, value in TYPOS:
            cases.append(self.typo_case(variable, value, next(rec4)))
        for start in SHELL_STARTS:
            cases.append(self.shell_case(start, next(rec4)))
        # The bad lines follow one another from badsum_line on, one port each.
        for i, (method, port) in enumerate(zip(("write", "sendto-fastopen"), self.badsum_ports)):
            cases.append(self.badsum_case(method, port, self.badsum_line + i))
        for kind in HOSTILE_KINDS:
            for port, zero_rtt in zip(self.hostile[kind], ("off", "on")):
                cases.append(self.hostile_case(kind, port, zero_rtt))
        return cases

    def typo_case(self, variable, value, port):
        marker = secrets.token_bytes(MARKER_LEN)
        name = "config %s=%s" % (variable, value)
        argv = [self.fc_client, "write", "connect", "127.0.0.1", str(port), marker.hex()]

        def body():
            result = run(argv, self.client_env(**{variable: value,
                                                  "NOISESHIM_HANDSHAKE_TIMEOUT_MS": SHORT_HANDSHAKE_MS}))

            def judge():
                problems = [sanitizer_report(result.err),
                            recording_problem(read_bytes(os.path.join(self.rec4_dir, str(port))),
                                              marker)]
                if not re.search(r"^noiseshim.*%s" % variable, result.err, re.M):
                    problems.append("no error line at the default level names %s: %s" % (
                        variable, result.err.strip()[:200] or "(nothing logged)"))
                if CLIENT_OUTCOMES.get(result.rc) not in ("delivered", "errno"):
                    problems.append("neither delivered nor a clean errno: " + result.describe())
                return verdict(problems)
            return result, judge
        return name, body

    def shell_case(self, start, port):
        marker = secrets.token_bytes(MARKER_LEN)
        name = "recorder shell from %s writes on the connection" % start
        argv = [sys.executable, "-c", SHELL_CLIENT, start, str(port), marker.hex()]

        def body():
            result = run(argv, self.client_env(NOISESHIM_HANDSHAKE_TIMEOUT_MS=SHORT_HANDSHAKE_MS))

            def judge():
                problems = [sanitizer_report(result.err),
                            recording_problem(read_bytes(os.path.join(self.rec4_dir, str(port))),
                                              marker.hex().encode())]
                if result.rc != 0 or "shell exit" not in result.out:
                    problems.append("the program did not run to its end: " + result.describe())
                elif "shell exit 0" in result.out or "shell exit None" in result.out:
                    problems.append("the shell's write succeeded: " + result.out.strip()[:120])
                if "inheritable True" not in result.out:
                    problems.append("the socket's inheritance was not given back: " +
                                    result.out.strip()[:120])
                return verdict(problems)
            return result, judge
        return name, body

    def badsum_case(self, method, port, line):
        marker = secrets.token_bytes(MARKER_LEN)
        name = "config bad noise_pub checksum, %s" % method
        argv = [self.fc_client, method, "connect", "127.0.0.1", str(port), marker.hex()]
        where = "%s:%d" % (self.badsum_cache, line)

        def body():
            result = run(argv, self.client_env(NOISESHIM_CACHE=self.badsum_cache))

            def judge():
                problems = [sanitizer_report(result.err)]
                data = read_bytes(os.path.join(self.rec4_dir, str(port)))
                if data:
                    problems.append("the listener got %d bytes%s" % (
                        len(data), " including the marker in plaintext" if leaked(data, marker) else ""))
                if not result.line().startswith("errno=EACCES"):
                    problems.append("the connect must fail with EACCES: " + result.describe())
                if not re.search(r"^noiseshim.*%s" % re.escape(where), result.err, re.M):
                    problems.append("no error line at the default level names %s: %s" % (
                        where, result.err.strip()[:200] or "(nothing logged)"))
                return verdict(problems)
            return result, judge
        return name, body

    def hostile_case(self, kind, port, zero_rtt):
        marker = secrets.token_bytes(MARKER_LEN)
        if zero_rtt == "off":
            name = "hostile %s, NOISESHIM_0RTT=off" % kind
            options = ["--read"]
        else:
            name = "hostile %s, 0-RTT with a second write" % kind
            options = ["--read", "--pause", "200"]
        argv = [self.fc_client] + options + ["write", "connect", "127.0.0.1", str(port), marker.hex()]

        def body():
            result = run(argv, self.client_env(NOISESHIM_0RTT=zero_rtt,
                                               NOISESHIM_HANDSHAKE_TIMEOUT_MS=SHORT_HANDSHAKE_MS))

            def judge():
                problems = [sanitizer_report(result.err),
                            recording_problem(read_bytes(os.path.join(self.rec4_dir, str(port))),
                                              marker)]
                if CLIENT_OUTCOMES.get(result.rc) != "errno":
                    problems.append("the program must get an errno: " + result.describe())
                return verdict(problems)
            return result, judge
        return name, body

    # --- accept-shim cases -----------------------------------------------------------

    def server_case(self, name, argv, env, port, probe_hosts, ask_host, wrapped_answers=True):
        log = self.path("server-%d.log" % port)
        out = self.path("server-%d.out" % port)
        plain_marker = secrets.token_bytes(MARKER_LEN)
        wrapped_marker = secrets.token_bytes(MARKER_LEN)
        argv = argv + [str(port), log]

        def body():
            with open(out, "wb") as f:
                server = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=f,
                                          stderr=subprocess.STDOUT, start_new_session=True)
            try:
                return None, self.exercise_server(server, out, log, port, probe_hosts, ask_host,
                                                  plain_marker, wrapped_marker, wrapped_answers)
            finally:
                kill_group(server)
                server.wait()
        return name, body

    def exercise_server(self, server, out, log, port, probe_hosts, ask_host, plain_marker,
                        wrapped_marker, wrapped_answers):
        deadline = time.monotonic() + 10
        while b"listening" not in read_bytes(out):
            if server.poll() is not None or time.monotonic() > deadline:
                return "the server did not start: " + read_bytes(out).decode(errors="replace")[-300:]
            time.sleep(0.02)
        problems = []
        for host in probe_hosts:
            probe = run([sys.executable, os.path.join(HERE, "fc_peer.py"), "probe", host, str(port),
                         plain_marker.hex(), PROBE_WAIT], self.base_env)
            if probe.rc != 0:
                problems.append("a plaintext client via %s was answered: %s" % (host, probe.line()))
        ask_env = dict(self.base_env, NOISESHIM_CACHE=self.cache, NOISESHIM_STATS_DIR=self.stats_dir)
        if self.client_preload:
            ask_env["LD_PRELOAD"] = self.client_preload
        ask = run([sys.executable, os.path.join(HERE, "fc_peer.py"), "ask", ask_host, str(port),
                   wrapped_marker.hex()], ask_env)
        if ask.rc is None:
            problems.append("the wrapped client hung")
        elif wrapped_answers and ask.rc != 0:
            problems.append("the wrapped client got no answer: %s %s" % (ask.line(),
                                                                         ask.err.strip()[-160:]))
        elif not wrapped_answers and (ask.rc == 0 or "timeout" in ask.line()):
            problems.append("after an exec without LD_PRELOAD the wrapped client must get an "
                            "error, got: " + ask.line())
        # Children of the server may still be writing their log.
        time.sleep(0.05)
        seen = read_bytes(log)
        if leaked(seen, plain_marker):
            problems.append("the program read the plaintext client's bytes")
        if wrapped_answers and wrapped_marker not in seen:
            problems.append("the program did not read the wrapped client's bytes (%d bytes logged)"
                            % len(seen))
        problems.append(sanitizer_report(read_bytes(out).decode(errors="replace")))
        problems.append(sanitizer_report(ask.err))
        return verdict(problems)

    def server_cases(self):
        cases = []
        ports = iter(self.server_ports)
        for accept in ("accept", "accept4"):
            for origin in SERVER_ORIGINS:
                for read in SERVER_READS:
                    port = next(ports)
                    argv = [self.fc_server] + (["--accept4"] if accept == "accept4" else []) + [read, origin]
                    cases.append(self.server_case(
                        "server %s %s %s" % (accept, read, origin), argv, self.server_env(port), port,
                        ["127.0.0.1"], "127.0.0.1", wrapped_answers=origin != "exec-strip"))
        for origin in ("direct", "inetd-exec"):
            port = next(ports)
            env = self.server_env(port)
            env.pop("LD_PRELOAD", None)
            cases.append(self.server_case(
                "server listener inherited already listening, %s" % origin,
                [self.fc_server, "prelisten", self.server_preload, "read", origin], env, port,
                ["127.0.0.1"], "127.0.0.1"))
            port = next(ports)
            cases.append(self.server_case(
                "server listener on ::ffff:127.0.0.1, NOISESHIM_LISTEN=127.0.0.1:P, %s" % origin,
                [self.fc_server, "--bind", "::ffff:127.0.0.1", "read", origin],
                self.server_env(port, NOISESHIM_LISTEN="127.0.0.1:%d" % port), port,
                ["127.0.0.1"], "127.0.0.1"))
            port = next(ports)
            cases.append(self.server_case(
                "server listener on [::], NOISESHIM_LISTEN=P, %s" % origin,
                [self.fc_server, "--bind", "::", "read", origin], self.server_env(port), port,
                ["127.0.0.1", "::1"], "127.0.0.1"))
            port = next(ports)
            cases.append(self.server_case(
                "server listener on 0.0.0.0, NOISESHIM_LISTEN=127.0.0.1:P, %s" % origin,
                [self.fc_server, "--bind", "0.0.0.0", "read", origin],
                self.server_env(port, NOISESHIM_LISTEN="127.0.0.1:%d" % port), port,
                ["127.0.0.1"], "127.0.0.1"))
            port = next(ports)
            cases.append(self.server_case(
                "server listener on [::1], NOISESHIM_LISTEN=[::1]:P, %s" % origin,
                [self.fc_server, "--bind", "::1", "read", origin],
                self.server_env(port, NOISESHIM_LISTEN="[::1]:%d" % port), port, ["::1"], "::1"))
        return cases, ports

    def server_config_cases(self, ports):
        missing_key = self.path("no-such.key")
        bad_key = self.path("bad.key")
        with open(bad_key, "w") as f:
            f.write("this is not a key\n")
        os.chmod(bad_key, 0o600)
        cases = []
        # A list too long to hold is named twice: as a bad value, and in the refusal.
        too_long = ",".join(["1"] * 600)
        for label, variable, value, key, lines in (
                ("NOISESHIM_LISTEN=notaport", "NOISESHIM_LISTEN", "notaport", self.server_key, 1),
                ("NOISESHIM_LISTEN=8o89", "NOISESHIM_LISTEN", "8o89", self.server_key, 1),
                ("NOISESHIM_LISTEN unset", "NOISESHIM_LISTEN", None, self.server_key, 1),
                ("NOISESHIM_LISTEN empty", "NOISESHIM_LISTEN", "", self.server_key, 1),
                ("NOISESHIM_LISTEN=,", "NOISESHIM_LISTEN", ",", self.server_key, 1),
                ("NOISESHIM_LISTEN of 1,199 characters", "NOISESHIM_LISTEN", too_long,
                 self.server_key, 2),
                ("NOISESHIM_KEY unreadable", "NOISESHIM_KEY", None, missing_key, 1),
                ("NOISESHIM_KEY bad content", "NOISESHIM_KEY", None, bad_key, 1)):
            port = next(ports)
            env = self.server_env(port, NOISESHIM_KEY=key)
            if value is not None:
                env[variable] = value
            elif variable == "NOISESHIM_LISTEN":
                env.pop(variable)
            cases.append(self.config_server_case("server-config " + label, variable, env, port,
                                                 lines))
        port = next(ports)
        for label, key in (("no key", None), ("a missing key", missing_key)):
            env = self.server_env(port)
            env.pop("NOISESHIM_KEY")
            if key:
                env["NOISESHIM_KEY"] = key
            cases.append(self.quiet_true_case("server-config /bin/true under the accept shim, %s" % label,
                                              env))
        return cases

    def config_server_case(self, name, variable, env, port, lines=1):
        log = self.path("server-%d.log" % port)
        plain_marker = secrets.token_bytes(MARKER_LEN)
        argv = [self.fc_server, "read", "direct", str(port), log]

        def body():
            server = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, start_new_session=True)
            probe_argv = [sys.executable, os.path.join(HERE, "fc_peer.py"), "probe", "127.0.0.1",
                          str(port), plain_marker.hex(), PROBE_WAIT]
            try:
                out, err = server.communicate(timeout=3)
                probe = run(probe_argv, self.base_env)
            except subprocess.TimeoutExpired:
                # Still running: it serves, or it would.
                probe = run(probe_argv, self.base_env)
                kill_group(server)
                out, err = server.communicate()
            out, err = out.decode(errors="replace"), err.decode(errors="replace")

            def judge():
                problems = [sanitizer_report(err)]
                if probe.rc != 0:
                    problems.append("a plaintext client was served: " + probe.line())
                if "errno=EACCES (where: listen)" not in out:
                    problems.append("listen() must fail with EACCES; the server said: %s" % (
                        out.strip()[:160] or "(nothing: it kept running)"))
                named = [l for l in err.splitlines() if l.startswith("noiseshim") and variable in l]
                refusals = [l for l in named if "listening refused" in l]
                if len(named) != lines or (variable == "NOISESHIM_LISTEN" and len(refusals) != 1):
                    problems.append("want %d shim line(s) naming %s (for the listen list, one of "
                                    "them the refusal), got %d: %s" % (
                                        lines, variable, len(named), err.strip()[:300]))
                return verdict(problems)
            return None, judge
        return name, body

    def quiet_true_case(self, name, env):
        def body():
            result = run(["/bin/true"], env)

            def judge():
                if result.rc != 0 or result.out or result.err:
                    return "exit %s, printed: %s" % (result.rc, (result.out + result.err).strip()[:200])
                return None
            return result, judge
        return name, body

    # --- running -------------------------------------------------------------------------

    def run_all(self):
        self.setup()
        server, ports = self.server_cases()
        cases = server + self.server_config_cases(ports) + self.client_cases()
        start = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(max_workers=self.jobs) as pool:
            futures = [(name, pool.submit(body)) for name, body in cases]
            outcomes = [(name, future.result()) for name, future in futures]
        # Listeners may still be writing what the last clients sent.
        self.wait_recorded(self.rec4_dir, self.rec6_dir)
        passed = failed = 0
        for name, (_, verdict) in outcomes:
            reason = verdict() if callable(verdict) else verdict
            if reason is None:
                passed += 1
                print("ok " + name)
            else:
                failed += 1
                print("FAIL %s: %s" % (name, reason))
        print("# %d cases in %.1f s, %d at a time" % (len(cases), time.monotonic() - start, self.jobs))
        print("failclosed: %d passed, %d failed" % (passed, failed))
        return failed


def main(argv):
    if len(argv) != 2:
        sys.exit(__doc__.split("\n\n")[1])
    matrix = Matrix(argv[1])
    failed = 1
    try:
        failed = matrix.run_all()
    finally:
        matrix.stop_all()
        if failed == 0:
            shutil.rmtree(matrix.work, ignore_errors=True)
        else:
            print("# work directory kept: " + matrix.work)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
