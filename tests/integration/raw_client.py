#!/usr/bin/env python3
"""Raw-socket clients that speak the Noise wire badly on purpose, for the
accept-shim tests, and a listener that records a real first flight.

usage: raw_client.py record --port PORT --out FILE
       raw_client.py send --port PORT (--case CASE | --flight FILE)
       raw_client.py stall --port PORT
       raw_client.py storm --port PORT --count N --parallel P
                           --flight FILE [--flight FILE...]

record  listens on 127.0.0.1:PORT for one connection and writes what a
        Noise client sends first (route prefix, frame header, msg1) to
        FILE, then closes without answering.
send    sends one hostile first flight: a built-in CASE, or the bytes of
        FILE (a recorded flight, replayed or made for another key).  Prints
        "reply BYTES ENDING": how many bytes came back and how the
        connection ended: "closed" (EOF or reset from the server) or "open"
        (still open after the client stopped waiting).
stall   sends half a msg1 frame and holds the connection until killed.
storm   runs N connections, P at a time, cycling through the built-in
        cases and the given flights; every one must be closed by the
        server without a reply byte.  Prints "storm N refused R
        misbehaved M" and exits 1 if any misbehaved.

Only the truncated case closes its sending side: every other flight holds
the connection open, so the server has to refuse it on what it received,
not on the EOF that would follow.
"""

import argparse
import concurrent.futures
import os
import socket
import sys
import time

ROUTE_PREFIX = b"DRPC!N!1"
FRAME_MARK = 0x80
# A msg1 needs e (32) + enc(s) (48) + an AEAD tag (16) at the least.
MSG1_MIN = 96
# How long a client waits for the server's verdict.  A refusal is
# immediate; only a bug makes a client wait this long.
VERDICT_SECONDS = 5
# After a reply byte arrives, how long a client keeps reading for more.
QUIET_SECONDS = 1


def frame_header(length):
    return bytes([FRAME_MARK]) + length.to_bytes(3, "big")


def garbage():
    """Random bytes that cannot start a route prefix, so the server can
    refuse them at once instead of waiting for more."""
    data = bytearray(os.urandom(1 + os.urandom(2)[0] * 16))
    if data[0] == ROUTE_PREFIX[0]:
        data[0] ^= 0xFF
    return bytes(data)


def wrong_prefix():
    return b"DRPC!N!9" + frame_header(MSG1_MIN) + os.urandom(MSG1_MIN)


def truncated():
    """A header that promises more than the client sends before closing."""
    return ROUTE_PREFIX + frame_header(MSG1_MIN + 100) + os.urandom(MSG1_MIN // 2)


def oversized():
    """A header promising the largest length the wire can say, far above
    the msg1 limit: the server must refuse it before reading the body."""
    return ROUTE_PREFIX + frame_header(0xFFFFFF) + os.urandom(64)


# name: (flight maker, whether the client closes its side after sending)
CASES = {
    "garbage": (garbage, False),
    "wrong-prefix": (wrong_prefix, False),
    "truncated": (truncated, True),
    "oversized": (oversized, False),
}


def read_reply(sock):
    """Bytes the server sent and how it ended: ("closed" | "open", count)."""
    received = 0
    sock.settimeout(VERDICT_SECONDS)
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return "closed", received
            received += len(chunk)
            sock.settimeout(QUIET_SECONDS)
    except ConnectionResetError:
        return "closed", received
    except socket.timeout:
        return "open", received


def send_once(port, flight, half_close):
    """Send a first flight and return the server's answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=VERDICT_SECONDS) as sock:
        try:
            sock.sendall(flight)
            if half_close:
                sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            return "closed", 0
        return read_reply(sock)


def record(port, out):
    with socket.create_server(("127.0.0.1", port)) as listener:
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(VERDICT_SECONDS)
            head = read_exactly(conn, len(ROUTE_PREFIX) + 4)
            body = read_exactly(conn, int.from_bytes(head[-3:], "big"))
    with open(out, "wb") as f:
        f.write(head + body)


def read_exactly(conn, count):
    data = b""
    while len(data) < count:
        chunk = conn.recv(count - len(data))
        if not chunk:
            sys.exit("record: the client closed after %d of %d bytes" % (len(data), count))
        data += chunk
    return data


def stall(port):
    sock = socket.create_connection(("127.0.0.1", port), timeout=VERDICT_SECONDS)
    sock.sendall(ROUTE_PREFIX + frame_header(MSG1_MIN + 16) + os.urandom(MSG1_MIN // 2))
    print("stalling", flush=True)
    while True:
        time.sleep(3600)


def storm(port, count, parallel, flights):
    kinds = list(CASES.values()) + [(lambda f=f: f, False) for f in flights]

    def one(i):
        make, half_close = kinds[i % len(kinds)]
        try:
            ending, received = send_once(port, make(), half_close)
        except OSError:
            return False
        return ending == "closed" and received == 0

    with concurrent.futures.ThreadPoolExecutor(parallel) as pool:
        refused = sum(pool.map(one, range(count)))
    print("storm %d refused %d misbehaved %d" % (count, refused, count - refused))
    return refused == count


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["record", "send", "stall", "storm"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--out")
    parser.add_argument("--case", choices=sorted(CASES))
    parser.add_argument("--flight", action="append", default=[])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--parallel", type=int, default=8)
    args = parser.parse_args()

    def flight_bytes(path):
        with open(path, "rb") as f:
            return f.read()

    if args.command == "record":
        if not args.out:
            parser.error("record needs --out")
        record(args.port, args.out)
    elif args.command == "send":
        if (args.case is None) == (len(args.flight) != 1):
            parser.error("send needs exactly one of --case and --flight")
        if args.case:
            make, half_close = CASES[args.case]
            flight = make()
        else:
            flight, half_close = flight_bytes(args.flight[0]), False
        ending, received = send_once(args.port, flight, half_close)
        print("reply %d %s" % (received, ending))
    elif args.command == "stall":
        stall(args.port)
    else:
        if not storm(args.port, args.count, args.parallel, [flight_bytes(p) for p in args.flight]):
            sys.exit(1)


if __name__ == "__main__":
    main()
