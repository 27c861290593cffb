#!/usr/bin/env python3
"""The plain-socket peers of the fail-closed matrix.

usage: fc_peer.py listen DIR HOST KIND:COUNT...
       fc_peer.py probe HOST PORT MARKER_HEX WAIT_SECONDS
       fc_peer.py ask HOST PORT MARKER_HEX

listen  opens COUNT listeners of each KIND on HOST (free ports), prints
        "KIND PORT" for each, then "ready", and appends every byte that
        any connection to PORT sends to DIR/PORT; DIR/PORT.accepted and
        DIR/PORT.closed grow by one byte per connection accepted and per
        connection finished with.  Nothing is ever answered in plaintext.
        KIND says what a listener does once it has the client's first
        flight (a route prefix and one whole frame):
          record  nothing: it reads until the client closes
          shutwr  half-close (shutdown SHUT_WR), keep reading
          reset   close with SO_LINGER 0 (a reset)
          four    send 4 bytes (the header of a frame that never comes)
                  and FIN, keep reading
probe   a plaintext client: sends MARKER and reports what comes back
        within WAIT_SECONDS: "refused", "nothing (eof|reset|timeout)" or
        "received N bytes: HEX".  Exits 0 for refused or nothing, 1 if it
        received anything.
ask     the client for wrapped servers: sends MARKER, expects "ANSWER"
        back; prints "answer" and exits 0, otherwise prints
        "error: ERRNO_NAME", "eof after N bytes" or "timeout" and exits 1.
"""

import errno
import os
import selectors
import socket
import struct
import sys
import threading
import time

PREFIX_LEN = 8
FRAME_HEADER_LEN = 4
# How long a listener waits for a whole first flight before acting on what
# it has (a plaintext or truncated flight).
FIRST_FLIGHT_WAIT = 2.0
ASK_TIMEOUT = 8.0
ANSWER = b"ANSWER"


class Recording:
    """DIR/PORT gets the bytes; DIR/PORT.accepted and DIR/PORT.closed one
    byte per connection accepted and per connection done with, so that a
    reader can tell when every connection has been recorded in full."""

    def __init__(self, path):
        self.path = path
        self.lock = threading.Lock()

    def add(self, data, suffix=""):
        with self.lock, open(self.path + suffix, "ab") as out:
            out.write(data)

    def count(self, event):
        self.add(b".", "." + event)


def first_flight_complete(data):
    if len(data) < PREFIX_LEN + FRAME_HEADER_LEN:
        return False
    body_len = int.from_bytes(data[PREFIX_LEN + 1:PREFIX_LEN + FRAME_HEADER_LEN], "big")
    return len(data) >= PREFIX_LEN + FRAME_HEADER_LEN + body_len


def read_first_flight(conn, recording):
    data = b""
    deadline = time.monotonic() + FIRST_FLIGHT_WAIT
    while not first_flight_complete(data):
        left = deadline - time.monotonic()
        if left <= 0:
            return True
        conn.settimeout(left)
        try:
            chunk = conn.recv(65536)
        except socket.timeout:
            return True
        finally:
            conn.settimeout(None)
        if not chunk:
            return False
        recording.add(chunk)
        data += chunk
    return True


def record_rest(conn, recording):
    while True:
        chunk = conn.recv(65536)
        if not chunk:
            return
        recording.add(chunk)


def serve(kind, conn, recording):
    try:
        serve_connection(kind, conn, recording)
    finally:
        recording.count("closed")


def serve_connection(kind, conn, recording):
    with conn:
        try:
            if kind != "record" and not read_first_flight(conn, recording):
                return
            if kind == "shutwr":
                conn.shutdown(socket.SHUT_WR)
            elif kind == "reset":
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                return
            elif kind == "four":
                conn.sendall(b"\x80\x00\x00\x30")
                conn.shutdown(socket.SHUT_WR)
            record_rest(conn, recording)
        except OSError:
            pass  # the client went away; the bytes so far are recorded


def listen(directory, host, specs):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # Hundreds of listeners: epoll, not select(), which stops at fd 1024.
    selector = selectors.DefaultSelector()
    for spec in specs:
        kind, _, count = spec.partition(":")
        if kind not in ("record", "shutwr", "reset", "four") or not count.isdigit():
            sys.exit(__doc__.split("\n\n")[1])
        for _ in range(int(count)):
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.bind((host, 0))
            sock.listen(64)
            port = sock.getsockname()[1]
            selector.register(sock, selectors.EVENT_READ,
                              (kind, Recording(os.path.join(directory, str(port)))))
            print("%s %d" % (kind, port))
    print("ready", flush=True)
    while True:
        for key, _ in selector.select():
            conn, _ = key.fileobj.accept()
            kind, recording = key.data
            recording.count("accepted")
            threading.Thread(target=serve, args=(kind, conn, recording), daemon=True).start()


def probe(host, port, marker, wait):
    try:
        sock = socket.create_connection((host, port), timeout=wait)
    except ConnectionRefusedError:
        print("refused")
        return 0
    received = b""
    why = "timeout"
    deadline = time.monotonic() + wait
    with sock:
        try:
            sock.sendall(marker)
            while time.monotonic() < deadline:
                sock.settimeout(max(deadline - time.monotonic(), 0.01))
                chunk = sock.recv(65536)
                if not chunk:
                    why = "eof"
                    break
                received += chunk
        except socket.timeout:
            why = "timeout"
        except ConnectionResetError:
            why = "reset"
        except BrokenPipeError:
            why = "reset"
    if received:
        print("received %d bytes: %s" % (len(received), received[:64].hex()))
        return 1
    print("nothing (%s)" % why)
    return 0


def ask(host, port, marker):
    received = b""
    try:
        with socket.create_connection((host, port), timeout=ASK_TIMEOUT) as sock:
            sock.sendall(marker)
            while not received.startswith(ANSWER):
                chunk = sock.recv(65536)
                if not chunk:
                    print("eof after %d bytes" % len(received))
                    return 1
                received += chunk
    except socket.timeout:
        print("timeout")
        return 1
    except OSError as error:
        print("error: %s" % errno.errorcode.get(error.errno, str(error)))
        return 1
    print("answer")
    return 0


def main(args):
    if len(args) >= 4 and args[0] == "listen":
        listen(args[1], args[2], args[3:])
    elif len(args) == 5 and args[0] == "probe":
        return probe(args[1], int(args[2]), bytes.fromhex(args[3]), float(args[4]))
    elif len(args) == 4 and args[0] == "ask":
        return ask(args[1], int(args[2]), bytes.fromhex(args[3]))
    sys.exit(__doc__.split("\n\n")[1])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
