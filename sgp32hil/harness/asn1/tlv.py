"""Strict BER-TLV walker returning byte spans of the input (ITU-T X.690 section 8.1).

Signatures in RSP are computed over the exact bytes received, never over a
re-encoding; these helpers locate such parts without decoding them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from .codec import Asn1Error

PathStep = int | bytes | str

_MAX_LENGTH_OCTETS = 4


class TlvError(Asn1Error):
    """Malformed or truncated TLV, or a path that does not exist."""


@dataclass(frozen=True)
class Tlv:
    """One TLV inside ``data``: ``data[start:end]`` is the whole element."""

    data: bytes
    start: int
    value_start: int
    end: int
    tag: bytes

    @property
    def constructed(self) -> bool:
        return bool(self.tag[0] & 0x20)

    @property
    def raw(self) -> bytes:
        return self.data[self.start:self.end]

    @property
    def value(self) -> bytes:
        return self.data[self.value_start:self.end]

    @property
    def length(self) -> int:
        return self.end - self.value_start

    def children(self) -> list["Tlv"]:
        if not self.constructed:
            raise TlvError(f"tag {self.tag.hex().upper()} at offset {self.start} is primitive")
        return list(iter_tlvs(self.data, self.value_start, self.end))


def parse_tlv(data: bytes, offset: int = 0, end: int | None = None) -> Tlv:
    """Parse the TLV at ``offset``; it must fit within ``data[:end]``."""
    data = bytes(data)
    end = len(data) if end is None else end
    if not 0 <= offset < end <= len(data):
        raise TlvError(f"no TLV at offset {offset}: out of data")
    pos = offset
    first = data[pos]
    pos += 1
    if first & 0x1F == 0x1F:
        while True:
            if pos >= end:
                raise TlvError(f"truncated tag at offset {offset}")
            octet = data[pos]
            pos += 1
            if pos - offset == 2 and octet == 0x80:
                raise TlvError(f"non-minimal tag at offset {offset}")
            if not octet & 0x80:
                break
            if pos - offset > 4:
                raise TlvError(f"tag too long at offset {offset}")
    tag = data[offset:pos]
    if pos >= end:
        raise TlvError(f"missing length after tag {tag.hex().upper()} at offset {offset}")
    first_len = data[pos]
    pos += 1
    if first_len < 0x80:
        length = first_len
    elif first_len == 0x80:
        raise TlvError(f"indefinite length for tag {tag.hex().upper()} at offset {offset}")
    else:
        count = first_len & 0x7F
        if count > _MAX_LENGTH_OCTETS:
            raise TlvError(f"length of tag {tag.hex().upper()} at offset {offset} uses {count} octets")
        if pos + count > end:
            raise TlvError(f"truncated length for tag {tag.hex().upper()} at offset {offset}")
        length = int.from_bytes(data[pos:pos + count], "big")
        pos += count
    if pos + length > end:
        raise TlvError(
            f"tag {tag.hex().upper()} at offset {offset} declares {length} bytes, "
            f"only {end - pos} available"
        )
    return Tlv(data, offset, pos, pos + length, tag)


def iter_tlvs(data: bytes, start: int = 0, end: int | None = None) -> Iterator[Tlv]:
    """The consecutive TLVs filling ``data[start:end]`` exactly."""
    data = bytes(data)
    end = len(data) if end is None else end
    pos = start
    while pos < end:
        tlv = parse_tlv(data, pos, end)
        yield tlv
        pos = tlv.end


def parse_single(data: bytes) -> Tlv:
    """The one TLV that ``data`` consists of (trailing bytes are an error)."""
    tlv = parse_tlv(data)
    if tlv.end != len(data):
        raise TlvError(f"{len(data) - tlv.end} unexpected byte(s) after tag {tlv.tag.hex().upper()}")
    return tlv


def _tag_bytes(step: bytes | str) -> bytes:
    if isinstance(step, str):
        try:
            return bytes.fromhex(step)
        except ValueError:
            raise TlvError(f"bad tag {step!r} in path") from None
    return bytes(step)


def find(der: bytes, path: Sequence[PathStep]) -> Tlv:
    """Follow ``path`` from the top-level element and return the TLV reached.

    Each step selects among the elements of one level, the first step among the
    top-level element(s): a tag (bytes, or hex text such as ``"BF38"``) picks the
    first element with that tag, an ``int`` picks by position.
    """
    if not path:
        raise TlvError("empty path")
    level = list(iter_tlvs(der))
    current: Tlv | None = None
    for depth, step in enumerate(path):
        if depth:
            level = current.children()
        if isinstance(step, int) and not isinstance(step, bool):
            if not 0 <= step < len(level):
                raise TlvError(f"path step {depth}: no element #{step} (level has {len(level)})")
            current = level[step]
        else:
            tag = _tag_bytes(step)
            current = next((t for t in level if t.tag == tag), None)
            if current is None:
                have = ", ".join(t.tag.hex().upper() for t in level) or "nothing"
                raise TlvError(f"path step {depth}: no tag {tag.hex().upper()} (found {have})")
    return current


def raw_field(der: bytes, path: Sequence[PathStep]) -> bytes:
    """The complete TLV bytes (tag, length, value) at ``path``, exactly as in ``der``."""
    return find(der, path).raw


def encode_length(n: int) -> bytes:
    """Definite-form length octets (X.690 §8.1.3): short form below 128, else 0x8k + k big-endian octets."""
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def tlv(tag: bytes, value: bytes) -> bytes:
    """One TLV: ``tag`` (complete tag bytes), definite length, ``value``."""
    return bytes(tag) + encode_length(len(value)) + value
