"""Test-only builder for hand-assembled DER vectors (the software eUICC itself uses harness/asn1).

Tests assemble requests byte by byte with these helpers so that the eUICC is checked against DER that
did not come from the codec it uses.  Original notes:

The ISD-R must answer with exact DER (ITU-T X.690 §10) and must reject what is not DER, whatever
ASN.1 codec the harness uses elsewhere: signatures (SGP.22 §3.5 notifications) cover the exact bytes
of a data object, so requests are walked here as TLVs and responses assembled from TLVs. Tag numbers
are given as the integer of their identifier octets (``0xBF3E`` for ``[62]`` constructed).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

MAX_TAG_BYTES = 3
MAX_LENGTH_BYTES = 3


class DerError(ValueError):
    """The data is not well-formed DER (truncated, indefinite or non-minimal length, bad tag, ...)."""


@dataclass(frozen=True)
class Tlv:
    """One data object: ``tag`` (identifier octets as an int), ``value`` (contents), ``raw`` (all of it)."""

    tag: int
    value: bytes
    raw: bytes

    @property
    def constructed(self) -> bool:
        return bool(self.raw[0] & 0x20)

    def children(self) -> list["Tlv"]:
        if not self.constructed:
            raise DerError(f"tag {self.tag:X} is primitive, it has no inner data objects")
        return parse_all(self.value)


def read_tlv(data: bytes, pos: int = 0) -> tuple[Tlv, int]:
    """Read one DER data object at ``pos``; returns it and the position after it."""
    start = pos
    n = len(data)
    if pos >= n:
        raise DerError("truncated: tag expected")
    first = data[pos]
    pos += 1
    tag = first
    if first & 0x1F == 0x1F:
        count = 0
        number = 0
        while True:
            if pos >= n:
                raise DerError("truncated tag")
            b = data[pos]
            pos += 1
            count += 1
            if count == 1 and b == 0x80:
                raise DerError("non-minimal tag number")
            if count >= MAX_TAG_BYTES:
                raise DerError("tag number too large")
            number = (number << 7) | (b & 0x7F)
            tag = (tag << 8) | b
            if not b & 0x80:
                break
        if number < 31:
            raise DerError("low tag number in high-tag-number form")
    if pos >= n:
        raise DerError("truncated: length expected")
    lb = data[pos]
    pos += 1
    if lb < 0x80:
        length = lb
    elif lb == 0x80:
        raise DerError("indefinite length is not DER")
    else:
        count = lb & 0x7F
        if count > MAX_LENGTH_BYTES or pos + count > n:
            raise DerError("bad length field")
        length = int.from_bytes(data[pos:pos + count], "big")
        if data[pos] == 0 or length < 0x80:
            raise DerError("non-minimal length")
        pos += count
    end = pos + length
    if end > n:
        raise DerError(f"truncated value: {length} bytes announced, {n - pos} present")
    return Tlv(tag, bytes(data[pos:end]), bytes(data[start:end])), end


def parse_all(data: bytes) -> list[Tlv]:
    """All data objects of ``data`` in order; the whole input must be consumed."""
    out: list[Tlv] = []
    pos = 0
    while pos < len(data):
        item, pos = read_tlv(data, pos)
        out.append(item)
    return out


def parse_one(data: bytes) -> Tlv:
    """Exactly one data object and nothing after it."""
    item, end = read_tlv(data, 0)
    if end != len(data):
        raise DerError(f"{len(data) - end} bytes after the data object")
    return item


def peek_tag(data: bytes) -> int | None:
    """Tag of the first data object, or None when not even the tag can be read."""
    if not data:
        return None
    try:
        return _tag_only(data)
    except DerError:
        return None


def _tag_only(data: bytes) -> int:
    tag = data[0]
    if tag & 0x1F != 0x1F:
        return tag
    for i in range(1, min(len(data), MAX_TAG_BYTES)):
        tag = (tag << 8) | data[i]
        if not data[i] & 0x80:
            return tag
    raise DerError("bad tag")


def tag_bytes(tag: int) -> bytes:
    if tag <= 0:
        raise ValueError("tag must be positive")
    return tag.to_bytes((tag.bit_length() + 7) // 8, "big")


def length_bytes(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def tlv(tag: int, value: bytes = b"") -> bytes:
    """Encode one data object."""
    return tag_bytes(tag) + length_bytes(len(value)) + value


def seq(tag: int, items: Iterable[bytes]) -> bytes:
    return tlv(tag, b"".join(items))


def integer(value: int) -> bytes:
    """Contents of a DER INTEGER (two's complement, minimal)."""
    size = max(1, (value + (value < 0)).bit_length() // 8 + 1)
    return value.to_bytes(size, "big", signed=True)


def to_int(value: bytes) -> int:
    """Decode INTEGER contents, rejecting empty and non-minimal encodings."""
    if not value:
        raise DerError("empty INTEGER")
    if len(value) > 1 and ((value[0] == 0 and not value[1] & 0x80) or (value[0] == 0xFF and value[1] & 0x80)):
        raise DerError("non-minimal INTEGER")
    if len(value) > 8:
        raise DerError("INTEGER too large")
    return int.from_bytes(value, "big", signed=True)


def boolean(value: bool) -> bytes:
    return b"\xFF" if value else b"\x00"


def to_bool(value: bytes) -> bool:
    if value == b"\xFF":
        return True
    if value == b"\x00":
        return False
    raise DerError("BOOLEAN must be 00 or FF in DER")


def to_null(value: bytes) -> None:
    if value:
        raise DerError("NULL with contents")


def bit_string(bits: Iterable[int]) -> bytes:
    """Contents of a named-bit-list BIT STRING (X.690 §11.2.2: trailing zero bits removed)."""
    bits = set(bits)
    if not bits:
        return b"\x00"
    top = max(bits)
    size = top // 8 + 1
    buf = bytearray(size)
    for b in bits:
        buf[b // 8] |= 0x80 >> (b % 8)
    return bytes([7 - top % 8]) + bytes(buf)


def to_bits(value: bytes) -> set[int]:
    """Set bit numbers of BIT STRING contents (strict DER: unused bits are zero)."""
    if not value:
        raise DerError("empty BIT STRING")
    unused = value[0]
    if unused > 7 or (len(value) == 1 and unused):
        raise DerError("bad unused-bits count")
    if len(value) > 1 and value[-1] & ((1 << unused) - 1):
        raise DerError("unused bits not zero")
    out = set()
    for i, byte in enumerate(value[1:]):
        for j in range(8):
            if byte & (0x80 >> j):
                out.add(i * 8 + j)
    return out


def utf8(value: bytes) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DerError("invalid UTF8String") from exc


def fields(parent: Tlv, allowed: Iterable[int], *, ordered: bool = True) -> dict[int, Tlv]:
    """Children of a SEQUENCE by tag: unknown tags, duplicates and (with ``ordered``) wrong order are errors."""
    order = list(allowed)
    out: dict[int, Tlv] = {}
    last = -1
    for child in parent.children():
        if child.tag not in order:
            raise DerError(f"unexpected tag {child.tag:X} in {parent.tag:X}")
        if child.tag in out:
            raise DerError(f"duplicate tag {child.tag:X} in {parent.tag:X}")
        idx = order.index(child.tag)
        if ordered and idx < last:
            raise DerError(f"tag {child.tag:X} out of order in {parent.tag:X}")
        last = idx
        out[child.tag] = child
    return out


def encode_iccid(iccid: str) -> bytes:
    """ICCID digits as coded in EF.ICCID (ETSI TS 102 221 §13.2): swapped BCD nibbles, F-padded, 10 bytes."""
    if not iccid.isdigit() or not 18 <= len(iccid) <= 20:
        raise ValueError(f"ICCID must be 18..20 digits, got {iccid!r}")
    digits = iccid.ljust(20, "F")
    return bytes(int(digits[i + 1] + digits[i], 16) for i in range(0, 20, 2))


def decode_iccid(value: bytes) -> str:
    if len(value) != 10:
        raise DerError("ICCID must be 10 bytes")
    text = "".join(f"{b & 0x0F:X}{b >> 4:X}" for b in value).rstrip("F")
    if not text.isdigit():
        raise DerError("ICCID is not BCD")
    return text


def decode_eid(value: bytes) -> str:
    return value.hex().upper()


def self_signed_certificate(cn: str) -> bytes:
    """A throwaway self-signed P-256 certificate (DER) for tests that only carry certificates around."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(7).not_valid_before(now).not_valid_after(now + dt.timedelta(days=3650))
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.DER)
