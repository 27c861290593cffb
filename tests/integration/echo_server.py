#!/usr/bin/env python3
"""Echo server for the accept-shim tests: every byte a client sends comes
back on the same connection, until the client closes its side.

usage: echo_server.py --port PORT [--model threads|selectors] [--log FILE]

threads    one thread per connection, blocking recv and sendall: the
           shim's blocking paths.
selectors  one thread, non-blocking sockets in an epoll selector, for
           thousands of connections at once: the shim's EAGAIN paths.
--log      append every chunk the program is handed to FILE, so that a
           test can tell exactly what reached the program.

Listens on 127.0.0.1.  A connection that fails (the shim closes one that
sends bad input) is closed and forgotten; the server carries on.
"""

import argparse
import os
import selectors
import socket
import sys
import threading

CHUNK = 65536
BACKLOG = 4096


class PayloadLog:
    """Appends received chunks to a file; one write per chunk, so that the
    threads of the threaded model never interleave inside a chunk."""

    def __init__(self, path):
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600) if path else None

    def record(self, chunk):
        if self.fd is not None:
            os.write(self.fd, chunk)


def serve_threads(listener, payload_log):
    def echo(conn):
        with conn:
            try:
                while True:
                    chunk = conn.recv(CHUNK)
                    if not chunk:
                        return
                    payload_log.record(chunk)
                    conn.sendall(chunk)
            except OSError:
                return

    while True:
        conn, _ = listener.accept()
        threading.Thread(target=echo, args=(conn,), daemon=True).start()


def serve_selectors(listener, payload_log):
    selector = selectors.DefaultSelector()
    # Per connection: bytes received and not yet echoed, and whether the
    # client has finished sending.
    pending = {}
    finished = set()

    def drop(conn):
        selector.unregister(conn)
        pending.pop(conn, None)
        finished.discard(conn)
        conn.close()

    def want(conn):
        events = selectors.EVENT_WRITE if pending[conn] else 0
        if conn not in finished:
            events |= selectors.EVENT_READ
        if events == 0:
            drop(conn)
        else:
            selector.modify(conn, events)

    listener.setblocking(False)
    selector.register(listener, selectors.EVENT_READ)
    while True:
        for key, events in selector.select():
            if key.fileobj is listener:
                try:
                    conn, _ = listener.accept()
                except (BlockingIOError, ConnectionAbortedError):
                    continue
                conn.setblocking(False)
                pending[conn] = b""
                selector.register(conn, selectors.EVENT_READ)
                continue
            conn = key.fileobj
            try:
                if events & selectors.EVENT_READ:
                    chunk = conn.recv(CHUNK)
                    if chunk:
                        payload_log.record(chunk)
                        pending[conn] += chunk
                    else:
                        finished.add(conn)
                if events & selectors.EVENT_WRITE and pending[conn]:
                    sent = conn.send(pending[conn])
                    pending[conn] = pending[conn][sent:]
            except (BlockingIOError, InterruptedError):
                # Readable in the kernel but no whole record yet: wait on.
                pass
            except OSError:
                drop(conn)
                continue
            want(conn)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model", choices=["threads", "selectors"], default="threads")
    parser.add_argument("--log")
    args = parser.parse_args()

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", args.port))
    listener.listen(BACKLOG)
    payload_log = PayloadLog(args.log)
    try:
        if args.model == "threads":
            serve_threads(listener, payload_log)
        else:
            serve_selectors(listener, payload_log)
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
