#!/usr/bin/env python3
"""Plaintext servers that sit behind `noiseshim proxy server` in the proxy
tests.

usage: targets.py pp2|drain|hold|flood

pp2    expects a PROXY protocol v2 header first; once the client's first
       line has arrived, answers "src ADDR:PORT dst ADDR:PORT" as the
       header names them, or "no header" when the first bytes are not
       one, then closes.
drain  reads until EOF, then answers "N HEX" (byte count and SHA-256 of
       what arrived) and closes: end of stream must pass both ways.
hold   never reads; keeps each connection open for a minute.
flood  writes without end, for a minute or until the client goes.

Listens on 127.0.0.1 and ::1 (the same free port) and prints
"listening 127.0.0.1:PORT".
"""

import hashlib
import ipaddress
import socket
import struct
import sys
import threading
import time

SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def read_exactly(conn, count):
    data = b""
    while len(data) < count:
        chunk = conn.recv(count - len(data))
        if not chunk:
            break
        data += chunk
    return data


def proxy_header(conn):
    # The proxy writes the header and the first bytes in one go.
    if not conn.recv(16, socket.MSG_PEEK).startswith(SIGNATURE):
        return "no header"
    head = read_exactly(conn, 16)
    if len(head) < 16 or head[:12] != SIGNATURE or head[12] != 0x21:
        return "no header"
    family, length = head[13], struct.unpack("!H", head[14:16])[0]
    addrs = read_exactly(conn, length)
    if family == 0x11 and length >= 12:
        src, dst = ipaddress.IPv4Address(addrs[0:4]), ipaddress.IPv4Address(addrs[4:8])
        sport, dport = struct.unpack("!HH", addrs[8:12])
        return "src %s:%d dst %s:%d" % (src, sport, dst, dport)
    if family == 0x21 and length >= 36:
        src, dst = ipaddress.IPv6Address(addrs[0:16]), ipaddress.IPv6Address(addrs[16:32])
        sport, dport = struct.unpack("!HH", addrs[32:36])
        return "src [%s]:%d dst [%s]:%d" % (src, sport, dst, dport)
    return "bad family %#x length %d" % (family, length)


def handle(mode, conn):
    with conn:
        if mode == "hold":
            time.sleep(60)
            return
        if mode == "flood":
            chunk, end = b"x" * 65536, time.monotonic() + 60
            try:
                while time.monotonic() < end:
                    conn.sendall(chunk)
            except OSError:
                pass
            return
        if mode == "pp2":
            answer = proxy_header(conn)
            # Closing with the line unread would reset the connection.
            while not conn.recv(4096).endswith(b"\n"):
                pass
            conn.sendall(answer.encode() + b"\n")
            return
        digest, count = hashlib.sha256(), 0
        while True:
            chunk = conn.recv(65536)
            if not chunk:
                break
            digest.update(chunk)
            count += len(chunk)
        conn.sendall(b"%d %s\n" % (count, digest.hexdigest().encode()))


def accept_loop(mode, listener):
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=handle, args=(mode, conn), daemon=True).start()


def main():
    if len(sys.argv) != 2 or sys.argv[1] not in ("pp2", "drain", "hold", "flood"):
        sys.exit(__doc__)
    v4 = socket.create_server(("127.0.0.1", 0))
    port = v4.getsockname()[1]
    v6 = socket.create_server(("::1", port), family=socket.AF_INET6)
    threading.Thread(target=accept_loop, args=(sys.argv[1], v6), daemon=True).start()
    print("listening 127.0.0.1:%d" % port, flush=True)
    accept_loop(sys.argv[1], v4)


if __name__ == "__main__":
    main()
