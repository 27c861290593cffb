#!/usr/bin/env python3
"""relay.py --port PORT --upstream PORT: for every connection accepted on
127.0.0.1:PORT, dial 127.0.0.1:UPSTREAM and copy bytes both ways until
either side closes.  Run with both shims preloaded, it is a node that
serves (accept shim) and dials (client shim) in one process."""

import argparse
import socket
import threading

CHUNK = 65536


def pump(src, dst):
    try:
        while True:
            chunk = src.recv(CHUNK)
            if not chunk:
                break
            dst.sendall(chunk)
        dst.shutdown(socket.SHUT_WR)
    except OSError:
        # One side failed: the other must not wait for it.
        for sock in (src, dst):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def serve(conn, upstream):
    with conn, socket.create_connection(("127.0.0.1", upstream)) as out:
        back = threading.Thread(target=pump, args=(out, conn))
        back.start()
        pump(conn, out)
        back.join()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", type=int, required=True)
    args = parser.parse_args()
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", args.port))
    listener.listen(64)
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=serve, args=(conn, args.upstream), daemon=True).start()


if __name__ == "__main__":
    main()
