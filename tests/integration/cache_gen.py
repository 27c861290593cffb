#!/usr/bin/env python3
"""Write a NodeURL cache of N entries for the cache tests and benchmark.

usage: cache_gen.py OUT N [SEED] [--broken HOST:PORT]

Entries are distinct addresses (10.0.0.0/8 on port 7777, and one in eight
in 2001:db8::/32 on port 7778), each with a noise_pub and, every other
line, a node id, as satellites write them.  --broken appends a line whose
address parses but whose noise_pub does not: connects to it must be refused.
SEED varies the addresses, so that two files of the same size differ.
"""
import hashlib
import random
import sys

ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def base58(raw):
    n = int.from_bytes(raw, "big")
    out = ""
    while n > 0:
        n, d = divmod(n, 58)
        out = ALPHABET[d] + out
    return "1" * (len(raw) - len(raw.lstrip(b"\0"))) + out


def base58check(version, payload):
    body = bytes([version]) + payload
    return base58(body + hashlib.sha256(hashlib.sha256(body).digest()).digest()[:4])


def main(argv):
    broken = None
    if "--broken" in argv:
        i = argv.index("--broken")
        broken = argv[i + 1]
        del argv[i:i + 2]
    if len(argv) not in (3, 4):
        sys.exit(__doc__)
    out, count = argv[1], int(argv[2])
    seed = int(argv[3]) if len(argv) == 4 else 0
    rng = random.Random(seed)
    # A few hundred distinct keys: the parse cost per line is what it would be with a million.
    pubs = [base58check(0, rng.randbytes(32)) for _ in range(256)]
    ids = [base58check(rng.randrange(256), rng.randbytes(31) + b"\0") for _ in range(64)]
    offset = seed * 7919
    with open(out, "w") as f:
        f.write("# generated cache: %d entries\n" % count)
        for i in range(count):
            k = (i + offset) % (1 << 24)
            pub = pubs[i % len(pubs)]
            node = ids[i % len(ids)] + "@" if i % 2 else ""
            if i % 8 == 7:
                f.write("%s[2001:db8::%x:%x]:7778?noise_proto=1&noise_pub=%s\n"
                        % (node, k >> 16, k & 0xffff, pub))
            else:
                f.write("%s10.%d.%d.%d:7777?noise_proto=1&noise_pub=%s\n"
                        % (node, k >> 16, (k >> 8) & 255, k & 255, pub))
        if broken is not None:
            f.write("%s?noise_proto=1&noise_pub=%s\n" % (broken, "0" + pubs[0][1:]))


if __name__ == "__main__":
    main(sys.argv)
