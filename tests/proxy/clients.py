#!/usr/bin/env python3
"""Socket clients for the proxy tests, run under the client shim or plain.

usage: clients.py whoami HOST PORT
       clients.py halfclose HOST PORT SIZE
       clients.py await-close HOST PORT HEX [--fin] [--timeout S]
       clients.py first-response HOST PORT PATH
       clients.py push|idle HOST PORT SECONDS
       clients.py trickle HOST PORT SECONDS
       clients.py idle-many HOST PORT COUNT SECONDS

whoami      connects, sends a line, prints "local ADDR:PORT" and the
            server's one-line answer (targets.py pp2).
halfclose   sends SIZE random bytes, shuts its sending side, and checks
            that the answer (targets.py drain) counts and hashes exactly
            those bytes: "ok SIZE" or the mismatch.
await-close sends the bytes given in HEX (with --fin, then shuts its
            sending side) and waits for the server to close: prints
            "closed BYTES SECONDS" (bytes received, time taken; "reset"
            for a reset) or "open BYTES" after the timeout.
first-response  sends an HTTP GET for PATH in one write and prints the
            milliseconds from the start of connect to the first byte of
            the response (curl's time_starttransfer).
push        writes as fast as the connection takes it for SECONDS, then
            prints "pushed BYTES" and holds the connection as long again.
idle        sends one byte, then holds the connection for SECONDS without
            reading.
idle-many   opens COUNT connections that send nothing, waits SECONDS and
            prints "open N of COUNT": how many the server has not closed.
trickle     writes one byte every 0.2 ms for SECONDS (TCP_NODELAY, never
            quiet for 1 ms), then shuts its sending side and checks that
            the echo is every byte: "ok BYTES", or what went wrong.
"""

import hashlib
import os
import socket
import sys
import time


def connect(host, port):
    return socket.create_connection((host, int(port)), timeout=60)


def read_all(sock):
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk


def whoami(host, port):
    with connect(host, port) as sock:
        sock.sendall(b"hello\n")
        local = sock.getsockname()
        addr = "[%s]:%d" % local[:2] if sock.family == socket.AF_INET6 else "%s:%d" % local
        print("local %s" % addr)
        print(read_all(sock).decode().strip())


def halfclose(host, port, size):
    data = os.urandom(int(size))
    with connect(host, port) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        answer = read_all(sock).decode().strip()
    want = "%d %s" % (len(data), hashlib.sha256(data).hexdigest())
    print("ok %d" % len(data) if answer == want else "got %r, expected %r" % (answer, want))


def await_close(host, port, hexdata, fin, timeout):
    start = time.monotonic()
    received = 0
    with connect(host, port) as sock:
        sock.sendall(bytes.fromhex(hexdata))
        if fin:
            sock.shutdown(socket.SHUT_WR)
        sock.settimeout(timeout)
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                received += len(chunk)
        except ConnectionResetError:
            print("reset %d %.2f" % (received, time.monotonic() - start))
            return
        except socket.timeout:
            print("open %d" % received)
            return
    print("closed %d %.2f" % (received, time.monotonic() - start))


def first_response(host, port, path):
    start = time.monotonic()
    with connect(host, port) as sock:
        sock.sendall(b"GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % (path.encode(), host.encode()))
        if not sock.recv(1):
            sys.exit("no response")
        print("%.1f" % ((time.monotonic() - start) * 1000))
        read_all(sock)


def push(host, port, seconds):
    sent, chunk = 0, b"y" * 65536
    with connect(host, port) as sock:
        sock.setblocking(False)
        end = time.monotonic() + float(seconds)
        while time.monotonic() < end:
            try:
                sent += sock.send(chunk)
            except BlockingIOError:
                time.sleep(0.01)
        print("pushed %d" % sent, flush=True)
        time.sleep(float(seconds))


def idle(host, port, seconds):
    with connect(host, port) as sock:
        sock.sendall(b"z")
        time.sleep(float(seconds))


def idle_many(host, port, count, seconds):
    socks = [connect(host, port) for _ in range(int(count))]
    time.sleep(float(seconds))
    still = 0
    for sock in socks:
        sock.settimeout(0.05)
        try:
            if sock.recv(1):
                still += 1
        except socket.timeout:
            still += 1
        except OSError:
            pass
        sock.close()
    print("open %d of %d" % (still, len(socks)))


def trickle(host, port, seconds):
    sent = 0
    try:
        with connect(host, port) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            end = time.monotonic() + float(seconds)
            while time.monotonic() < end:
                sock.sendall(bytes([sent % 251]))
                sent += 1
                pause = time.perf_counter() + 0.0002
                while time.perf_counter() < pause:
                    pass
            sock.shutdown(socket.SHUT_WR)
            echo = read_all(sock)
    except OSError as e:
        print("error after %d bytes: %s" % (sent, e))
        return
    want = bytes(i % 251 for i in range(sent))
    print("ok %d" % sent if echo == want else "echo of %d bytes differs (got %d)" % (sent, len(echo)))


def main():
    args = sys.argv[1:]
    if len(args) == 3 and args[0] == "whoami":
        whoami(*args[1:])
    elif len(args) == 4 and args[0] == "halfclose":
        halfclose(*args[1:])
    elif len(args) >= 4 and args[0] == "await-close":
        timeout = float(args[args.index("--timeout") + 1]) if "--timeout" in args else 10
        await_close(args[1], args[2], args[3], "--fin" in args, timeout)
    elif len(args) == 4 and args[0] in ("push", "idle"):
        (push if args[0] == "push" else idle)(*args[1:])
    elif len(args) == 5 and args[0] == "idle-many":
        idle_many(*args[1:])
    elif len(args) == 4 and args[0] == "trickle":
        trickle(*args[1:])
    elif len(args) == 4 and args[0] == "first-response":
        first_response(*args[1:])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
