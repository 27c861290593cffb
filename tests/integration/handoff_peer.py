#!/usr/bin/env python3
"""Servers that hand an accepted socket on, and the clients that reach
them, for the hand-off tests (tests/integration/handoff.sh).

usage: handoff_peer.py inetd --port PORT -- PROGRAM [ARGS...]
       handoff_peer.py digest --record FILE
       handoff_peer.py mapped --port PORT --record FILE
       handoff_peer.py send --port PORT --file FILE
       handoff_peer.py probe --port PORT --source-port PORT --text TEXT

inetd   listens on 127.0.0.1:PORT; for each connection forks, puts the
        socket on the child's stdin and stdout and executes PROGRAM there,
        the way inetd and git daemon do.  The listener never reads.
digest  the program an inetd child runs: reads stdin to its end, appends
        "LENGTH SHA256" to FILE and answers the SHA-256 in hex and a
        newline on stdout.
mapped  the same digest service, served by this process from an AF_INET6
        socket bound to ::ffff:127.0.0.1 (IPV6_V6ONLY off), as Java binds
        an IPv4 address.
send    connects to 127.0.0.1:PORT, sends FILE, half-closes, prints the
        answer.
probe   a plaintext client from 127.0.0.1:SOURCE-PORT (so that the server's
        log can be searched for it): sends TEXT, then reads until the
        server closes, 5 s pass, or 1 s passes after the first byte of an
        answer.  Prints "reply BYTES closed|open".

Every server prints "listening PORT" once it accepts connections.
"""

import argparse
import hashlib
import os
import signal
import socket
import sys
import time

# How long a plaintext probe waits for the server's verdict.  A refusal is
# immediate; only a server that waits for more input keeps it this long.
VERDICT_SECONDS = 5
# Once an answer has begun, how long a probe keeps reading for more.
QUIET_SECONDS = 1
CLIENT_TIMEOUT_SECONDS = 60
CHUNK = 65536


def serve_inetd(port, program):
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(16)
    # Children are not waited for one by one: the kernel reaps them.
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    print(f"listening {port}", flush=True)
    while True:
        conn, _ = listener.accept()
        if os.fork() == 0:
            listener.close()
            os.dup2(conn.fileno(), 0)
            os.dup2(conn.fileno(), 1)
            conn.close()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            try:
                os.execvp(program[0], program)
            finally:
                os._exit(127)
        conn.close()


def digest_of(read_chunk):
    hasher = hashlib.sha256()
    length = 0
    while True:
        chunk = read_chunk(CHUNK)
        if not chunk:
            break
        hasher.update(chunk)
        length += len(chunk)
    return length, hasher.hexdigest()


def record(path, length, hexdigest):
    with open(path, "a") as out:
        out.write(f"{length} {hexdigest}\n")


def serve_digest_on_stdio(record_path):
    stdin = os.fdopen(0, "rb", buffering=0)
    length, hexdigest = digest_of(stdin.read)
    record(record_path, length, hexdigest)
    os.write(1, f"{hexdigest}\n".encode())


def serve_mapped(port, record_path):
    listener = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    listener.bind(("::ffff:127.0.0.1", port))
    listener.listen(16)
    print(f"listening {port}", flush=True)
    while True:
        conn, _ = listener.accept()
        with conn:
            try:
                conn.settimeout(CLIENT_TIMEOUT_SECONDS)
                length, hexdigest = digest_of(conn.recv)
                record(record_path, length, hexdigest)
                conn.sendall(f"{hexdigest}\n".encode())
            except OSError as e:
                print(f"connection failed: {e}", flush=True)


def send_file(port, path):
    with open(path, "rb") as f:
        data = f.read()
    answer = b""
    with socket.create_connection(("127.0.0.1", port), timeout=CLIENT_TIMEOUT_SECONDS) as sock:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
            while True:
                chunk = sock.recv(CHUNK)
                if not chunk:
                    break
                answer += chunk
        except OSError:
            # The server cut the connection (a refusal, mid-send or after):
            # what counts is what came back before that.
            pass
    sys.stdout.write(answer.decode(errors="replace"))


def probe(port, source_port, text):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", source_port))
    sock.settimeout(VERDICT_SECONDS)
    got = 0
    ending = "open"
    try:
        sock.connect(("127.0.0.1", port))
        sock.sendall(text.encode())
        deadline = time.monotonic() + VERDICT_SECONDS
        while time.monotonic() < deadline:
            sock.settimeout(max(deadline - time.monotonic(), 0.01))
            chunk = sock.recv(CHUNK)
            if not chunk:
                ending = "closed"
                break
            if got == 0:
                deadline = min(deadline, time.monotonic() + QUIET_SECONDS)
            got += len(chunk)
    except ConnectionError:
        ending = "closed"
    except socket.timeout:
        pass
    finally:
        sock.close()
    print(f"reply {got} {ending}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("inetd")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("program", nargs="+")
    p = sub.add_parser("digest")
    p.add_argument("--record", required=True)
    p = sub.add_parser("mapped")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--record", required=True)
    p = sub.add_parser("send")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--file", required=True)
    p = sub.add_parser("probe")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--source-port", type=int, required=True)
    p.add_argument("--text", required=True)
    args = parser.parse_args()

    if args.command == "inetd":
        serve_inetd(args.port, args.program)
    elif args.command == "digest":
        serve_digest_on_stdio(args.record)
    elif args.command == "mapped":
        serve_mapped(args.port, args.record)
    elif args.command == "send":
        send_file(args.port, args.file)
    else:
        probe(args.port, args.source_port, args.text)


if __name__ == "__main__":
    main()
