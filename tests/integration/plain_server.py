#!/usr/bin/env python3
"""Plaintext TCP servers for the client-shim integration tests.

usage: plain_server.py echo|slowecho|banner
       plain_server.py record FILE

Listens on a free port of 127.0.0.1 and prints "listening 127.0.0.1:PORT",
the line gopeer prints, so that test scripts start both the same way.

  echo      returns every byte; closes when the client has closed its side
  slowecho  like echo, but reads 4 KB at a time with a 2 ms pause after each
            read, so that a bulk writer's socket buffer fills up
  banner    sends gopeer's banner line first, then echoes; the same text lets
            one client check work against both servers
  record    echoes, and appends every byte received to FILE; a plaintext
            server in place of a Noise one, to show what a client leaks
"""

import socket
import sys
import threading
import time

BANNER = b"HELLO from gopeer\n"
SLOW_CHUNK = 4096
SLOW_PAUSE = 0.002


def echo(conn, chunk=65536, pause=0.0, record=None):
    while True:
        data = conn.recv(chunk)
        if not data:
            return
        if record:
            record(data)
        conn.sendall(data)
        if pause:
            time.sleep(pause)


def recorder(path):
    lock = threading.Lock()

    def record(data):
        with lock, open(path, "ab") as out:
            out.write(data)

    return record


def handler_for(args):
    mode = args[0] if args else ""
    if mode == "echo" and len(args) == 1:
        return echo
    if mode == "slowecho" and len(args) == 1:
        return lambda conn: echo(conn, SLOW_CHUNK, SLOW_PAUSE)
    if mode == "banner" and len(args) == 1:
        return lambda conn: (conn.sendall(BANNER), echo(conn))
    if mode == "record" and len(args) == 2:
        record = recorder(args[1])
        return lambda conn: echo(conn, record=record)
    sys.exit(__doc__.split("\n\n")[1])


def serve_connection(conn, handler):
    with conn:
        try:
            handler(conn)
        except OSError:
            pass  # the client went away; other connections carry on


def main():
    handler = handler_for(sys.argv[1:])
    listener = socket.create_server(("127.0.0.1", 0))
    print("listening 127.0.0.1:%d" % listener.getsockname()[1], flush=True)
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=serve_connection, args=(conn, handler), daemon=True).start()


if __name__ == "__main__":
    main()
