"""Rebuilds tests/data/sample/ from ../shared/data/crawl-sample/ (kept for provenance, not run by tests).

Keeps the warcinfo record and, for a deterministic hash-chosen ~half (salted: the crawl-sample was itself
chosen by sha1 of the URL) of the pages whose gzip
members are under 400 kB, the page's request + response members, byte for byte.
Usage: python tests/data/make_sample.py ../shared/data/crawl-sample tests/data/sample
"""

import hashlib
import sys
import zlib
from pathlib import Path

KEEP_PER_MILLE = 480
MAX_MEMBER = 400_000


def members(data: bytes):
    pos = 0
    while pos < len(data):
        d = zlib.decompressobj(31)
        head = d.decompress(data[pos:pos + 4096], 2048)
        rest = data[pos:]
        d = zlib.decompressobj(31)
        d.decompress(rest)
        end = pos + len(rest) - len(d.unused_data)
        yield data[pos:end], head
        pos = end


def uri(head: bytes) -> bytes:
    for line in head.split(b"\r\n"):
        if line.startswith(b"WARC-Target-URI:"):
            return line.split(b":", 1)[1].strip()
    return b""


def main(src: str, dst: str) -> None:
    Path(dst).mkdir(parents=True, exist_ok=True)
    for path in sorted(Path(src).glob("*.warc.gz")):
        out, pending = [], None
        for member, head in members(path.read_bytes()):
            if b"WARC-Type: warcinfo" in head:
                out.append(member)
            elif b"WARC-Type: request" in head:
                pending = member
            elif b"WARC-Type: response" in head:
                h = int(hashlib.sha1(b"gristmill-sample:" + uri(head)).hexdigest(), 16) % 1000
                if h < KEEP_PER_MILLE and len(member) < MAX_MEMBER and pending:
                    out += [pending, member]
                pending = None
        (Path(dst) / path.name.replace("CC-SAMPLE", "SAMPLE")).write_bytes(b"".join(out))


if __name__ == "__main__":
    main(*sys.argv[1:3])
