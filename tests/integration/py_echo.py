#!/usr/bin/env python3
"""Echo clients on plain blocking sockets, for the client-shim tests.

usage: py_echo.py bulk HOST PORT
       py_echo.py once HOST PORT MARKER

bulk  sends 1,000,000 random bytes from a second thread, then half-closes;
      reads the echo back with recv(1) calls, then recv(7), then
      recv(65536), and checks that the SHA-256 of the echo matches and that
      the stream ends right after it.
once  sends MARKER and waits for its echo.

Prints "ok ..." and exits 0 on success; otherwise says what went wrong and
exits 1.  A connection error counts as failure, which is what the
fail-closed tests want to see.
"""

import hashlib
import os
import socket
import sys
import threading

BULK_BYTES = 1_000_000
# How many bytes of the echo each recv size reads; the last takes the rest.
READ_PLAN = [(1, 10_000), (7, 100_000), (65536, BULK_BYTES)]


def bulk(host, port):
    sent = os.urandom(BULK_BYTES)
    sock = socket.create_connection((host, port))
    write_error = []

    def write_all():
        try:
            sock.sendall(sent)
            sock.shutdown(socket.SHUT_WR)
        except OSError as error:
            write_error.append(error)

    # A daemon, so that a failed read ends the program even while the
    # writer is stuck.
    writer = threading.Thread(target=write_all, daemon=True)
    writer.start()
    echoed = hashlib.sha256()
    received = 0
    for size, upto in READ_PLAN:
        while received < upto:
            data = sock.recv(size)
            if not data:
                return "connection closed after %d of %d echoed bytes%s" % (
                    received, BULK_BYTES,
                    ", writing failed: %s" % write_error[0] if write_error else "")
            echoed.update(data)
            received += len(data)
    writer.join()
    if write_error:
        return "writing failed: %s" % write_error[0]
    extra = sock.recv(65536)
    if extra:
        return "%d bytes after the %d-byte echo" % (len(extra), BULK_BYTES)
    sock.close()
    if echoed.digest() != hashlib.sha256(sent).digest():
        return "echo SHA-256 %s, sent %s" % (echoed.hexdigest(), hashlib.sha256(sent).hexdigest())
    print("ok python bulk echo of %d bytes" % BULK_BYTES)
    return None


def once(host, port, marker):
    wanted = marker.encode()
    sock = socket.create_connection((host, port))
    sock.sendall(wanted)
    echoed = b""
    while len(echoed) < len(wanted):
        data = sock.recv(len(wanted) - len(echoed))
        if not data:
            return "connection closed after %d of %d echoed bytes" % (len(echoed), len(wanted))
        echoed += data
    sock.close()
    if echoed != wanted:
        return "echo %r, sent %r" % (echoed, wanted)
    print("ok marker echoed")
    return None


def main():
    args = sys.argv[1:]
    if len(args) == 3 and args[0] == "bulk":
        run = lambda: bulk(args[1], int(args[2]))
    elif len(args) == 4 and args[0] == "once":
        run = lambda: once(args[1], int(args[2]), args[3])
    else:
        sys.exit(__doc__.split("\n\n")[1])
    try:
        problem = run()
    except OSError as error:
        problem = "connection error: %s" % error
    if problem:
        print("py_echo %s: %s" % (args[0], problem), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
