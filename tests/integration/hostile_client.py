#!/usr/bin/env python3
"""Raw-socket attackers for the hostile-peer tests of the accept shim:
connections that end, reset or stall inside the route prefix, the frame
header or msg1.  No shim is loaded here; the bytes go out as written.

usage: hostile_client.py point --port PORT --stage STAGE --end fin|rst
                               [--flight FILE]
       hostile_client.py stall --port PORT --group COUNT:STAGE [--group ...]
                               [--flight FILE] --wait SECONDS
                               [--good-log FILE -- GOOD COMMAND...]

STAGE says how far a connection gets before it stops:
  prefix-N   the first N (1..7) bytes of the route prefix
  header-N   the whole prefix and the first N (1..3) bytes of a frame header
  msg1-half  the prefix, the header and half the msg1 of a real first
             flight (FILE, from hostile_peer flight)

point  sends one STAGE, then a FIN (shutdown) or a reset (SO_LINGER 0 and
       close).  After a FIN it waits up to VERDICT_SECONDS for the server's
       verdict and prints "closed SECONDS" (EOF or reset, no byte sent
       back), "answered BYTES" or "open"; after a reset it prints "reset".
stall  opens every group's connections, sends each its STAGE and holds
       them, printing "opened N" once all are open; then runs the good
       command, if any (its output goes to the good log), and waits until
       the server has closed every connection or SECONDS have passed since
       the last one opened.  Prints one line:
         result opened=N closed=C answered=A first=F last=L good_rc=R
                good_seconds=G closed_before_good=K
       first and last: the shortest and longest time from a connection's
       connect to the server closing it (-1 if none closed); good_rc is -1
       without a good command, or if it was still running at the end.
"""

import argparse
import os
import selectors
import socket
import struct
import subprocess
import sys
import time

ROUTE_PREFIX = b"DRPC!N!1"
FRAME_MARK = 0x80
# How long a FIN'd connection waits for the server's verdict: a fixed
# server closes at once, a broken one never does.
VERDICT_SECONDS = 1
CONNECT_TIMEOUT_SECONDS = 5


def stage_bytes(stage, flight):
    """The bytes a connection sends before it stops, for STAGE."""
    kind, _, count = stage.partition("-")
    if kind == "prefix" and count.isdigit() and 1 <= int(count) < len(ROUTE_PREFIX):
        return ROUTE_PREFIX[: int(count)]
    if kind == "header" and count.isdigit() and 1 <= int(count) <= 3:
        # A header for a body of msg1's minimum length or more, cut short.
        return ROUTE_PREFIX + bytes([FRAME_MARK, 0x00, 0x00, 0x60])[: int(count)]
    if stage == "msg1-half":
        if flight is None:
            sys.exit("hostile_client: stage msg1-half needs --flight")
        head = len(ROUTE_PREFIX) + 4
        body = int.from_bytes(flight[head - 3 : head], "big")
        if flight[: len(ROUTE_PREFIX)] != ROUTE_PREFIX or len(flight) != head + body:
            sys.exit("hostile_client: --flight is not prefix, header and one whole msg1")
        return flight[: head + body // 2]
    sys.exit("hostile_client: unknown stage %r" % stage)


def connect(port):
    return socket.create_connection(("127.0.0.1", port), timeout=CONNECT_TIMEOUT_SECONDS)


def reset(sock):
    """Close with a reset instead of a FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def verdict_after_fin(sock):
    started = time.monotonic()
    sock.settimeout(VERDICT_SECONDS)
    try:
        data = sock.recv(65536)
    except ConnectionResetError:
        data = b""
    except socket.timeout:
        return "open"
    if data:
        return "answered %d" % len(data)
    return "closed %.3f" % (time.monotonic() - started)


def point(port, stage, end, flight):
    sock = connect(port)
    sock.sendall(stage_bytes(stage, flight))
    if end == "rst":
        reset(sock)
        return "reset"
    sock.shutdown(socket.SHUT_WR)
    try:
        return verdict_after_fin(sock)
    finally:
        sock.close()


class Stalled:
    """Connections that sent part of a first flight and wait for the
    server to close them, each timed from its own connect."""

    def __init__(self):
        self.selector = selectors.DefaultSelector()
        self.opened_at = {}
        self.close_after = []
        self.answered = 0

    def open(self, port, data):
        started = time.monotonic()
        sock = connect(port)
        sock.sendall(data)
        sock.setblocking(False)
        self.opened_at[sock] = started
        self.selector.register(sock, selectors.EVENT_READ)

    def watch(self, seconds):
        """Take the verdicts that arrive within seconds."""
        deadline = time.monotonic() + seconds
        while self.opened_at and time.monotonic() < deadline:
            for key, _ in self.selector.select(max(0.0, deadline - time.monotonic())):
                self.take_verdict(key.fileobj)

    def take_verdict(self, sock):
        try:
            data = sock.recv(65536)
        except ConnectionResetError:
            data = b""
        except BlockingIOError:
            return
        if data:
            self.answered += 1
        else:
            self.close_after.append(time.monotonic() - self.opened_at[sock])
        self.selector.unregister(sock)
        del self.opened_at[sock]
        sock.close()


def stall(port, groups, flight, wait_seconds, good_command, good_log):
    stalled = Stalled()
    for count, stage in groups:
        data = stage_bytes(stage, flight)
        for _ in range(count):
            stalled.open(port, data)
    opened = len(stalled.opened_at)
    last_opened = time.monotonic()
    print("opened %d" % opened, flush=True)

    good = None
    good_rc, good_seconds, closed_before_good = -1, -1.0, -1
    if good_command:
        with open(good_log, "wb") as log:
            good = subprocess.Popen(good_command, stdout=log, stderr=subprocess.STDOUT)
        good_started = time.monotonic()
    end = last_opened + wait_seconds
    while time.monotonic() < end and (stalled.opened_at or (good and good_rc == -1)):
        if stalled.opened_at:
            stalled.watch(0.02)
        else:
            time.sleep(0.02)
        if good and good_rc == -1 and good.poll() is not None:
            good_rc = good.returncode
            good_seconds = time.monotonic() - good_started
            closed_before_good = len(stalled.close_after) + stalled.answered
    if good and good_rc == -1:
        good.kill()
        good.wait()
    closed = len(stalled.close_after)
    print("result opened=%d closed=%d answered=%d first=%.3f last=%.3f good_rc=%d "
          "good_seconds=%.3f closed_before_good=%d"
          % (opened, closed, stalled.answered,
             min(stalled.close_after) if closed else -1, max(stalled.close_after) if closed else -1,
             good_rc, good_seconds, closed_before_good))


def parse_group(text):
    count, _, stage = text.partition(":")
    if not count.isdigit() or not stage:
        raise argparse.ArgumentTypeError("a group is COUNT:STAGE, not %r" % text)
    return int(count), stage


def main():
    argv = sys.argv[1:]
    good_command = []
    if "--" in argv:
        good_command = argv[argv.index("--") + 1 :]
        argv = argv[: argv.index("--")]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["point", "stall"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--stage")
    parser.add_argument("--end", choices=["fin", "rst"])
    parser.add_argument("--flight")
    parser.add_argument("--group", type=parse_group, action="append", default=[])
    parser.add_argument("--wait", type=float, default=5)
    parser.add_argument("--good-log", default=os.devnull)
    args = parser.parse_args(argv)
    flight = None
    if args.flight:
        with open(args.flight, "rb") as f:
            flight = f.read()
    if args.command == "point":
        if not args.stage or not args.end:
            parser.error("point needs --stage and --end")
        print(point(args.port, args.stage, args.end, flight))
    else:
        if not args.group:
            parser.error("stall needs at least one --group")
        stall(args.port, args.group, flight, args.wait, good_command, args.good_log)


if __name__ == "__main__":
    main()
