#!/usr/bin/env python3
"""Servers for the first-flight tests and the request-shape benchmark.

usage: ff_server.py ADDR KIND:PORT [KIND:PORT ...] [--tls CERT KEY]

Listens on every PORT of ADDR, serving each with KIND, one thread per
connection, and prints "ready" once all of them listen.

  answer   reads the 500-byte request (in whatever pieces it arrives),
           then returns it: the answer leaves only once the whole request
           is in, as a server that parses a request before answering.
           TCP_NODELAY on, as Go (so every Storj node) sets it by default
  answer-nagle
           answer with Nagle's algorithm left on, as most C and Python
           servers leave it
  answer-poll
           answer as an event loop reads: a non-blocking socket, one recv
           each time poll reports it readable
  echo     returns every byte until the client closes its side
  late     echo, but each piece read goes back only 0.5 s later: a server
           that takes its time over a request
  http     HTTP/1.1; a POST is answered with the SHA-256 (hex) of its body;
           TCP_NODELAY on
  silent   accepts and reads, never answers: a cached node gone quiet
  trickle  after the first bytes, sends something that looks like the start
           of an empty msg2 (0x80, the 24-bit length 48, then random bytes)
           one byte a second
  garbage  after the first bytes, sends 44 bytes starting with 0x41 (not a
           frame's 0x80), then keeps the connection open and quiet
  sink     reads until the client closes, then prints "sink N SHA256" (the
           bytes it got) on standard output
  tls-answer, tls-http
           answer and http behind TLS 1.3 (needs --tls CERT KEY)

The accept shim, when preloaded, wraps whichever of these ports
NOISESHIM_LISTEN names; silent, trickle and garbage run without it.
"""

import hashlib
import http.server
import os
import select
import socket
import socketserver
import ssl
import sys
import threading
import time

REQUEST_BYTES = 500
LATE_ANSWER_S = 0.5
EMPTY_MSG2_BODY = 48  # e(32) + the tag of an empty payload (16)
GARBAGE = b"\x41" + os.urandom(43)


def read_exactly(conn, n):
    data = bytearray()
    while len(data) < n:
        piece = conn.recv(n - len(data))
        if not piece:
            return None
        data += piece
    return bytes(data)


def wait_for_close(conn):
    """Hold the connection until the client goes, reading what it sends."""
    try:
        while conn.recv(65536):
            pass
    except OSError:
        pass


def answer(conn):
    request = read_exactly(conn, REQUEST_BYTES)
    if request is not None:
        conn.sendall(request)
        wait_for_close(conn)


def answer_poll(conn):
    conn.setblocking(False)
    poller = select.poll()
    poller.register(conn, select.POLLIN)
    request = bytearray()
    while len(request) < REQUEST_BYTES:
        poller.poll()
        try:
            piece = conn.recv(65536)
        except BlockingIOError:
            continue
        if not piece:
            return
        request += piece
    conn.setblocking(True)
    conn.sendall(bytes(request))
    wait_for_close(conn)


def echo(conn):
    while True:
        data = conn.recv(65536)
        if not data:
            return
        conn.sendall(data)


def late(conn):
    while True:
        data = conn.recv(65536)
        if not data:
            return
        time.sleep(LATE_ANSWER_S)
        conn.sendall(data)


def trickle(conn):
    if not conn.recv(65536):
        return
    reply = b"\x80" + EMPTY_MSG2_BODY.to_bytes(3, "big") + os.urandom(EMPTY_MSG2_BODY)
    for i in range(len(reply)):
        conn.sendall(reply[i:i + 1])
        time.sleep(1)


def garbage(conn):
    if conn.recv(65536):
        conn.sendall(GARBAGE)
        wait_for_close(conn)


def sink(conn):
    data = bytearray()
    while True:
        piece = conn.recv(65536)
        if not piece:
            break
        data += piece
    print("sink %d %s" % (len(data), hashlib.sha256(data).hexdigest()), flush=True)


class PostHandler(http.server.BaseHTTPRequestHandler):
    # HTTP/1.1 so that a client sending "Expect: 100-continue" (curl does
    # for large bodies) gets its 100 at once instead of waiting it out.
    protocol_version = "HTTP/1.1"
    # The headers and the body leave in two writes: with Nagle on, the
    # second would wait for the first one's ACK.
    disable_nagle_algorithm = True

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        digest = (hashlib.sha256(body).hexdigest() + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(digest)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(digest)
        self.close_connection = True

    def log_message(self, *args):
        pass


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


def stream_server(addr, port, serve, tls, nodelay):
    class Handler(socketserver.BaseRequestHandler):
        def handle(self):
            conn = self.request
            if nodelay:
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if tls is not None:
                conn = tls.wrap_socket(conn, server_side=True)
            try:
                serve(conn)
            except OSError:
                pass  # the client went away; the test judges from its side

    return Server((addr, port), Handler)


def http_server(addr, port, tls):
    server = http.server.ThreadingHTTPServer((addr, port), PostHandler, bind_and_activate=False)
    server.daemon_threads = True
    server.request_queue_size = 128
    server.allow_reuse_address = True
    server.server_bind()
    server.server_activate()
    if tls is not None:
        # The handshake happens at the first read, in the connection's
        # thread, not in the accept loop where it would serialise clients.
        server.socket = tls.wrap_socket(server.socket, server_side=True,
                                        do_handshake_on_connect=False)
    return server


STREAM_KINDS = {"answer": answer, "answer-nagle": answer, "answer-poll": answer_poll,
                "echo": echo, "late": late, "silent": wait_for_close, "trickle": trickle,
                "garbage": garbage, "sink": sink}


def main():
    args = sys.argv[1:]
    tls = None
    if "--tls" in args:
        at = args.index("--tls")
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.minimum_version = ssl.TLSVersion.TLSv1_3
        tls.load_cert_chain(args[at + 1], args[at + 2])
        del args[at:at + 3]
    if len(args) < 2:
        sys.exit(__doc__)
    addr, servers = args[0], []
    for spec in args[1:]:
        kind, _, port = spec.partition(":")
        secure = kind.startswith("tls-")
        if secure and tls is None:
            sys.exit("ff_server.py: %s needs --tls CERT KEY" % kind)
        kind = kind[4:] if secure else kind
        if kind == "http":
            servers.append(http_server(addr, int(port), tls if secure else None))
        elif kind in STREAM_KINDS and (kind == "answer" or not secure):
            servers.append(stream_server(addr, int(port), STREAM_KINDS[kind],
                                         tls if secure else None, kind == "answer"))
        else:
            sys.exit("ff_server.py: unknown kind in %r" % spec)
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    print("ready", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
