"""One gzip member from parts compressed separately, so that text known before the scrape is
compressed before it.

Prometheus asks for gzip, and at 10,000 sensors the body is ≈ 1.8 MB a second: ≈ 5 ms
of zlib at level 1, the largest cost left in a scrape.  Most of that text is known
ahead: the modelled sensors' lines (rendered a second ahead, exporter/ahead.py) and the
devices' rejection counts and info (the same from one scrape to the next).

Each part is compressed on its own into a raw deflate stream ended by a full flush:
byte-aligned, not final, and referring to nothing before it.  Such streams can follow
one another inside one deflate stream (RFC 1951, 3.2.3), so a member is the gzip
header, the parts' streams in order, an empty final block, then the CRC-32 and length
of the whole text (RFC 1952).  A scrape compresses only the text it made (the devices'
values) and runs the CRC-32 over the whole body, which is 4 times faster than
compressing it.  The result is an ordinary single-member gzip: gzip.decompress, Go's
compress/gzip (Prometheus) and browsers read it; only the ratio is a little lower
(each part starts with an empty dictionary).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property

LEVEL = 1  # the body is new every second: level 6 would take 4 times longer for 20 % less

# ID1 ID2, CM deflate, no flags, MTIME 0 (none), XFL 0, OS 255 (unknown).
_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
_LAST = b"\x03\x00"  # an empty fixed-Huffman block with BFINAL set


def deflate(text: bytes) -> bytes:
    """`text` as a raw deflate stream that others may follow (full flush, not final)."""
    c = zlib.compressobj(LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)
    return c.compress(text) + c.flush(zlib.Z_FULL_FLUSH)


@dataclass(frozen=True)
class Part:
    """Text whose compressed form is kept with it: compressed once, on first use."""

    text: bytes

    @cached_property
    def deflated(self) -> bytes:
        return deflate(self.text)


def plain(pieces: Iterable[Part | bytes]) -> bytes:
    return b"".join(p.text if isinstance(p, Part) else p for p in pieces)


def member(pieces: Iterable[Part | bytes]) -> bytes:
    """One gzip member of the pieces' text in order: the Parts' ready streams, and each run of
    plain bytes between them compressed now."""
    out: list[bytes] = [_HEADER]
    run: list[bytes] = []  # plain pieces waiting to be compressed together
    texts: list[bytes] = []
    for p in pieces:
        text = p.text if isinstance(p, Part) else p
        texts.append(text)
        if isinstance(p, Part):
            if run:
                out.append(deflate(b"".join(run)))
                run = []
            out.append(p.deflated)
        elif p:
            run.append(p)
    if run:
        out.append(deflate(b"".join(run)))
    # One CRC-32 over the joined text, not one per piece: each call on a large buffer lets
    # go of the GIL, and a scrape that waits to take it back 40 times waits for every
    # device thread that took it meanwhile.
    whole = b"".join(texts)
    out += [_LAST, struct.pack("<II", zlib.crc32(whole), len(whole) & 0xFFFFFFFF)]
    return b"".join(out)
