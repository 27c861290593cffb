#!/usr/bin/env python3
"""Python clients for the first-flight tests and the request-shape benchmark.

usage: ff_pyclient.py post HOST PORT REPEAT [--tls CAFILE]
       ff_pyclient.py one|two HOST PORT REPEAT --tls CAFILE
       ff_pyclient.py postfile HOST PORT FILE
       ff_pyclient.py async HOST PORT CONNECTIONS
       ff_pyclient.py closewrite HOST PORT PAUSE_MS

  post      http.client POST of a 500-byte body on a fresh connection,
            REPEAT times; the answer must be the body's SHA-256.  http.client
            sends the headers and the body in two writes.
  one, two  the 500-byte request of ff_client (one write, or 200 bytes then
            300 bytes) over TLS 1.3, answered by ff_server.py tls-answer
  postfile  POSTs FILE's bytes, prints the answer (for a program that
            cannot run curl)
  async     one asyncio connection alone (after an untimed one), then
            CONNECTIONS at once, each writing 200 then 300 bytes and reading
            the 500-byte answer
  closewrite  a non-blocking socket writes 200 bytes, waits PAUSE_MS,
            writes 300 bytes and closes at once, without reading; prints
            "close_ms T sha256 S" (how long close() took, what was sent)

Timed modes print "time_ms T" per connection (from connect to the answer's
last byte) and then "median_ms M"; async prints
"single_ms S total_ms T connections N".  Errors exit 1 with a message.
"""

import asyncio
import hashlib
import http.client
import os
import socket
import ssl
import statistics
import sys
import time

REQUEST_FIRST, REQUEST_SECOND = 200, 300
POST_BODY = 500
TIMEOUT = 20


def fail(message):
    sys.exit("ff_pyclient.py %s: %s" % (sys.argv[1], message))


def tls_context(cafile):
    context = ssl.create_default_context(cafile=cafile)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    return context


def post_once(host, port, body, tls):
    if tls is None:
        conn = http.client.HTTPConnection(host, port, timeout=TIMEOUT)
    else:
        conn = http.client.HTTPSConnection(host, port, timeout=TIMEOUT, context=tls)
    conn.request("POST", "/", body=body, headers={"Content-Type": "application/octet-stream"})
    response = conn.getresponse()
    answer = response.read()
    conn.close()
    if response.status != 200:
        fail("HTTP %d" % response.status)
    return answer.decode().strip()


def stream_once(host, port, request, shape, tls):
    raw = socket.create_connection((host, port), timeout=TIMEOUT)
    # As TLS clients do (curl, and http.client for the post mode): without
    # it the request would wait behind the handshake's Finished for an ACK.
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    conn = tls.wrap_socket(raw, server_hostname=host)
    if shape == "one":
        conn.sendall(request)
    else:
        conn.sendall(request[:REQUEST_FIRST])
        conn.sendall(request[REQUEST_FIRST:])
    answer = bytearray()
    while len(answer) < len(request):
        piece = conn.recv(len(request) - len(answer))
        if not piece:
            fail("connection closed after %d of %d answer bytes" % (len(answer), len(request)))
        answer += piece
    conn.close()
    if answer != request:
        fail("the answer differs from the request")


def timed(repeat, once):
    times = []
    for _ in range(repeat):
        start = time.monotonic()
        once()
        times.append((time.monotonic() - start) * 1000)
        print("time_ms %.1f" % times[-1], flush=True)
    print("median_ms %.1f" % statistics.median(times), flush=True)


def run_post(host, port, repeat, tls):
    def once():
        body = os.urandom(POST_BODY)
        digest = post_once(host, port, body, tls)
        if digest != hashlib.sha256(body).hexdigest():
            fail("answer %r is not the body's SHA-256" % digest[:80])
    timed(repeat, once)


async def exchange(host, port, request):
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(request[:REQUEST_FIRST])
    writer.write(request[REQUEST_FIRST:])
    answer = await reader.readexactly(len(request))
    writer.close()
    if answer != request:
        raise ValueError("an answer differs from its request")


async def run_async(host, port, connections):
    # The first exchange pays for lazy imports and the loop's first use.
    await asyncio.wait_for(exchange(host, port, os.urandom(REQUEST_FIRST + REQUEST_SECOND)),
                           TIMEOUT)
    start = time.monotonic()
    await asyncio.wait_for(exchange(host, port, os.urandom(REQUEST_FIRST + REQUEST_SECOND)),
                           TIMEOUT)
    single = (time.monotonic() - start) * 1000
    start = time.monotonic()
    requests = [os.urandom(REQUEST_FIRST + REQUEST_SECOND) for _ in range(connections)]
    await asyncio.wait_for(asyncio.gather(*(exchange(host, port, r) for r in requests)), TIMEOUT)
    total = (time.monotonic() - start) * 1000
    print("single_ms %.1f total_ms %.1f connections %d" % (single, total, connections))


def close_after_writes(host, port, pause_ms):
    request = os.urandom(REQUEST_FIRST + REQUEST_SECOND)
    conn = socket.create_connection((host, port), timeout=TIMEOUT)
    conn.setblocking(False)
    conn.send(request[:REQUEST_FIRST])
    time.sleep(pause_ms / 1000)
    if conn.send(request[REQUEST_FIRST:]) != REQUEST_SECOND:
        fail("the second write was short")
    start = time.monotonic()
    conn.close()
    print("close_ms %.1f sha256 %s" % ((time.monotonic() - start) * 1000,
                                       hashlib.sha256(request).hexdigest()))


def main():
    args = sys.argv[1:]
    cafile = None
    if "--tls" in args:
        at = args.index("--tls")
        cafile = args[at + 1]
        del args[at:at + 2]
    if len(args) != 4:
        sys.exit(__doc__)
    mode, host, port, last = args[0], args[1], int(args[2]), args[3]
    tls = tls_context(cafile) if cafile else None
    try:
        if mode == "post":
            run_post(host, port, int(last), tls)
        elif mode in ("one", "two") and tls is not None:
            timed(int(last), lambda: stream_once(
                host, port, os.urandom(REQUEST_FIRST + REQUEST_SECOND), mode, tls))
        elif mode == "postfile":
            with open(last, "rb") as f:
                print(post_once(host, port, f.read(), tls))
        elif mode == "async":
            asyncio.run(run_async(host, port, int(last)))
        elif mode == "closewrite":
            close_after_writes(host, port, int(last))
        else:
            sys.exit(__doc__)
    except (OSError, ValueError, asyncio.TimeoutError, http.client.HTTPException) as e:
        fail("%s: %s" % (type(e).__name__, e))


if __name__ == "__main__":
    main()
