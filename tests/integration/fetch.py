#!/usr/bin/env python3
"""fetch.py -o FILE URL: download URL into FILE over a socket with a timeout,
which Python drives as a non-blocking socket waited on with poll(), as curl
does.  Exits non-zero on any HTTP or network error."""
import sys
import urllib.request


def main():
    if len(sys.argv) != 4 or sys.argv[1] != "-o":
        sys.exit("usage: fetch.py -o FILE URL")
    handler = urllib.request.ProxyHandler({})
    with urllib.request.build_opener(handler).open(sys.argv[3], timeout=60) as reply:
        with open(sys.argv[2], "wb") as out:
            while True:
                chunk = reply.read(65536)
                if not chunk:
                    break
                out.write(chunk)


if __name__ == "__main__":
    main()
