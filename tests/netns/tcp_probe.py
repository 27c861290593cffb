#!/usr/bin/env python3
"""Timed TCP exchanges for the emulated-WAN test.

  tcp_probe.py serve ADDR PORT         TFO listener: answers every request
  tcp_probe.py connect ADDR PORT       prints the connect() time in ms
  tcp_probe.py request ADDR PORT MODE  prints the ms from the first call to the
                                       first reply byte; MODE is plain,
                                       tfo-connect (TCP_FASTOPEN_CONNECT, as the
                                       client shim does) or msg-fastopen
"""
import socket
import sys
import time

# Not exported by Python's socket module; from linux/tcp.h.
TCP_FASTOPEN_CONNECT = 30
REQUEST = b"R" * 99 + b"\n"
REPLY = b"A" * 5000


def serve(addr, port):
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((addr, port))
    # Backlog of connections that may carry data in their SYN.
    listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_FASTOPEN, 16)
    listener.listen(16)
    print("ready", flush=True)
    while True:
        conn, _ = listener.accept()
        with conn:
            request = b""
            while not request.endswith(b"\n"):
                chunk = conn.recv(4096)
                if not chunk:
                    break
                request += chunk
            if request:
                conn.sendall(REPLY)


def timed_connect(addr, port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        start = time.monotonic()
        s.connect((addr, port))
        return time.monotonic() - start


def timed_request(addr, port, mode):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        if mode == "tfo-connect":
            s.setsockopt(socket.IPPROTO_TCP, TCP_FASTOPEN_CONNECT, 1)
        start = time.monotonic()
        if mode == "msg-fastopen":
            s.sendto(REQUEST, socket.MSG_FASTOPEN, (addr, port))
        elif mode in ("plain", "tfo-connect"):
            # With TCP_FASTOPEN_CONNECT, connect() returns at once and the
            # SYN leaves with the first send.
            s.connect((addr, port))
            s.sendall(REQUEST)
        else:
            sys.exit(f"tcp_probe: unknown mode {mode}")
        first = s.recv(65536)
        elapsed = time.monotonic() - start
        received = len(first)
        while first:
            first = s.recv(65536)
            received += len(first)
        if received != len(REPLY):
            sys.exit(f"tcp_probe: reply of {received} bytes, expected {len(REPLY)}")
        return elapsed


def main(argv):
    if len(argv) < 4:
        sys.exit(__doc__)
    command, addr, port = argv[1], argv[2], int(argv[3])
    if command == "serve":
        serve(addr, port)
    elif command == "connect":
        print(f"{timed_connect(addr, port) * 1000:.1f}")
    elif command == "request" and len(argv) == 5:
        print(f"{timed_request(addr, port, argv[4]) * 1000:.1f}")
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
