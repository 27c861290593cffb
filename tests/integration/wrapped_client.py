#!/usr/bin/env python3
"""Plain socket clients that the accept-shim tests run under the client
shim, against an echo server.

usage: wrapped_client.py once --port PORT --payload TEXT
       wrapped_client.py many --port PORT --count N
       wrapped_client.py get -o|--out FILE URL

once  sends TEXT as the first write (so it rides in msg1) and waits for
      its echo.
many  opens N connections, writes a distinct message on each, then reads
      and checks every echo, then closes them all: N handshakes in flight
      at once on the server.
get   downloads an http:// URL to FILE, for where curl cannot run.

Prints "ok ..." and exits 0 when every echo matches (get: when the server
answered 200 and the whole body arrived); otherwise says what went wrong
and exits 1.
"""

import argparse
import os
import shutil
import socket
import sys
import time
import urllib.request

TIMEOUT_SECONDS = 60


def read_exactly(sock, count):
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            break
        data += chunk
    return data


def once(port, payload):
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT_SECONDS) as sock:
        sock.sendall(payload)
        echo = read_exactly(sock, len(payload))
    if echo != payload:
        sys.exit("echo differs: sent %r, got %r" % (payload, echo))
    print("ok once")


def many(port, count):
    started = time.monotonic()
    token = os.urandom(8).hex()
    messages = [("connection %d of %d, %s\n" % (i, count, token)).encode() for i in range(count)]
    socks = []
    try:
        for _ in range(count):
            socks.append(socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT_SECONDS))
        opened = time.monotonic()
        for sock, message in zip(socks, messages):
            sock.sendall(message)
        for i, (sock, message) in enumerate(zip(socks, messages)):
            echo = read_exactly(sock, len(message))
            if echo != message:
                sys.exit("connection %d: sent %r, got %r" % (i, message, echo))
    except OSError as error:
        sys.exit("after %d connections: %s" % (len(socks), error))
    finally:
        for sock in socks:
            sock.close()
    print("ok many %d: opened in %.2f s, all echoed in %.2f s"
          % (count, opened - started, time.monotonic() - started))


def get(url, out):
    with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as response, open(out, "wb") as f:
        shutil.copyfileobj(response, f, 1 << 20)
        expected = response.headers.get("Content-Length")
        if expected is not None and f.tell() != int(expected):
            sys.exit("got %d of %s bytes" % (f.tell(), expected))
    print("ok get")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    once_parser = commands.add_parser("once")
    once_parser.add_argument("--port", type=int, required=True)
    once_parser.add_argument("--payload", required=True)
    many_parser = commands.add_parser("many")
    many_parser.add_argument("--port", type=int, required=True)
    many_parser.add_argument("--count", type=int, default=1000)
    get_parser = commands.add_parser("get")
    get_parser.add_argument("-o", "--out", required=True)
    get_parser.add_argument("url")
    args = parser.parse_args()
    try:
        if args.command == "once":
            once(args.port, args.payload.encode())
        elif args.command == "many":
            many(args.port, args.count)
        else:
            get(args.url, args.out)
    except OSError as error:
        sys.exit("%s: %s" % (args.command, error))


if __name__ == "__main__":
    main()
