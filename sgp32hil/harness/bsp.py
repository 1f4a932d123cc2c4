"""Bound Profile Package protection: SGP.22 v2.5 §2.6.5 key agreement and §2.6.4/§5.5 BSP (SCP03t).

Key agreement (SGP.22 §3.1.3.3, GlobalPlatform Amd F §3.1.2 / BSI TR-03111 ECKA): the shared secret
``ShS`` is the ECDH x-coordinate of otSK.DP.ECKA x otPK.EUICC.ECKA (or the converse on the eUICC).
The session keys are the output of the ANSI X9.63 KDF with SHA-256 (Amd F §3.1.2.1)::

    sharedInfo = keyType ('88') || keyLength ('10') || len(hostId) || hostId || len(EID) || EID
    keyData    = initial MCV (16) || S-ENC (16) || S-MAC (16)

with ``EID`` the 16-byte EID value (tag '5A', the 32 digits packed two per byte, no nibble swap)
and ``hostId`` the CRT ``[4] hostId`` of InitialiseSecureChannelRequest.

Secure channel (SGP.22 §2.6.4.4/§2.6.4.5, GlobalPlatform Amd D SCP03 §6.2.4-§6.2.6), one protected
TLV per BPP segment:

* C-ENC: AES-128-CBC with S-ENC; ICV = AES-ECB(S-ENC, block counter as 16-byte big-endian);
  mandatory ISO/IEC 9797-1 method 2 padding ('80' then '00' up to a multiple of 16). The block
  counter starts at 1 and, as the SCP03 encryption counter, is incremented after every segment,
  MAC-only '88' StoreMetadata segments included.
* C-MAC: AES-CMAC with S-MAC over ``MCV || tag || length || data``, where tag and length are those
  of the final TLV (length includes the 8 MAC bytes) and data is the ciphertext (or the plain data
  for MAC-only segments). The TLV carries the first 8 bytes; the full 16-byte CMAC becomes the next
  MCV.
* Each protected TLV, tag and length and MAC included, is at most 1020 bytes (SGP.22 §2.5.5).
* ReplaceSessionKeys ('BF26', SGP.22 §5.5.4) switches to PPK-ENC/PPK-MAC with the given initial MCV
  and restarts the block counter at 1 for the '86' Profile Element segments.

The counter and MCV conventions are pinned by the public vectors reproduced in tests/unit/test_bsp.py.
"""

from __future__ import annotations

import enum
import hmac
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.cmac import CMAC
from cryptography.hazmat.primitives.kdf.x963kdf import X963KDF

from .asn1 import Asn1Error, decode, encode, encode_length

__all__ = [
    "AES_BLOCK",
    "KEY_TYPE_AES",
    "MAC_LENGTH",
    "MAX_SEGMENT",
    "TAG_CONFIGURE_ISDP",
    "TAG_PROFILE_ELEMENT",
    "TAG_REPLACE_SESSION_KEYS",
    "TAG_STORE_METADATA",
    "BspError",
    "BspErrorReason",
    "BspProtector",
    "BspVerifier",
    "SessionKeys",
    "derive_session_keys",
    "max_payload",
    "parse_replace_session_keys",
    "replace_session_keys_request",
    "session_keys_from_ecka",
]

AES_BLOCK = 16
MAC_LENGTH = 8
MAX_SEGMENT = 1020
KEY_TYPE_AES = 0x88
SUPPORTED_KEY_LENGTHS = (16,)
EID_LENGTH = 16

TAG_PROFILE_ELEMENT = 0x86
TAG_CONFIGURE_ISDP = 0x87
TAG_REPLACE_SESSION_KEYS = 0x87
TAG_STORE_METADATA = 0x88


class BspErrorReason(enum.IntEnum):
    """The SGP.22 §5.7.6 ``ErrorReason`` values a BSP failure maps to (RSPDefinitions ``ErrorReason``)."""

    incorrectInputValues = 1
    unsupportedCrtValues = 4
    scp03tStructureError = 7
    scp03tSecurityError = 8


class BspError(ValueError):
    """A BSP operation failed; ``reason`` is the ProfileInstallationResult ``errorReason`` to report."""

    def __init__(self, reason: BspErrorReason, detail: str):
        super().__init__(f"{reason.name}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class SessionKeys:
    """BSP session keys (SGP.22 §2.6.4.3): initial MAC chaining value, S-ENC and S-MAC."""

    initial_mcv: bytes
    s_enc: bytes
    s_mac: bytes

    def __post_init__(self) -> None:
        for name in ("initial_mcv", "s_enc", "s_mac"):
            value = getattr(self, name)
            if not isinstance(value, (bytes, bytearray)) or len(value) not in SUPPORTED_KEY_LENGTHS:
                raise BspError(BspErrorReason.incorrectInputValues, f"{name} must be 16 bytes")

    def __repr__(self) -> str:
        return "SessionKeys(<secret>)"


def _eid_bytes(eid: bytes | str) -> bytes:
    if isinstance(eid, str):
        if len(eid) != 2 * EID_LENGTH or not eid.isdigit():
            raise BspError(BspErrorReason.incorrectInputValues, f"EID {eid!r} is not 32 decimal digits")
        return bytes.fromhex(eid)
    if len(eid) != EID_LENGTH:
        raise BspError(BspErrorReason.incorrectInputValues, f"EID must be {EID_LENGTH} bytes, got {len(eid)}")
    return bytes(eid)


def derive_session_keys(
    shared_secret: bytes,
    *,
    host_id: bytes,
    eid: bytes | str,
    key_type: int = KEY_TYPE_AES,
    key_len: int = 16,
) -> SessionKeys:
    """X9.63 KDF (SHA-256) of the ECKA shared secret into initial MCV, S-ENC, S-MAC (SGP.22 §3.1.3.3,
    GP Amd F §3.1.2.1). ``eid`` is the 16-byte EID value or its 32 digits."""
    if key_type != KEY_TYPE_AES:
        raise BspError(BspErrorReason.unsupportedCrtValues, f"key type {key_type:#04x} (only '88' AES)")
    if key_len not in SUPPORTED_KEY_LENGTHS:
        raise BspError(BspErrorReason.unsupportedCrtValues, f"key length {key_len} (only 16)")
    if not 1 <= len(host_id) <= 16:
        raise BspError(BspErrorReason.incorrectInputValues, f"hostId must be 1..16 bytes, got {len(host_id)}")
    eid_value = _eid_bytes(eid)
    shared_info = (
        bytes([key_type, key_len, len(host_id)]) + bytes(host_id) + bytes([len(eid_value)]) + eid_value
    )
    key_data = X963KDF(algorithm=hashes.SHA256(), length=3 * key_len, sharedinfo=shared_info).derive(
        bytes(shared_secret)
    )
    return SessionKeys(
        initial_mcv=key_data[:key_len],
        s_enc=key_data[key_len : 2 * key_len],
        s_mac=key_data[2 * key_len :],
    )


def session_keys_from_ecka(key_pair, peer_point: bytes, *, host_id: bytes, eid: bytes | str) -> SessionKeys:
    """ECKA-DH (``pki.KeyPair.exchange``) with the peer's uncompressed one-time public key, then the KDF."""
    try:
        shared = key_pair.exchange(peer_point)
    except ValueError as exc:
        raise BspError(BspErrorReason.incorrectInputValues, f"one-time public key rejected: {exc}")
    return derive_session_keys(shared, host_id=host_id, eid=eid)


def _tag_bytes(tag: int | bytes) -> bytes:
    if isinstance(tag, int):
        if tag < 0:
            raise ValueError(f"negative tag {tag}")
        return tag.to_bytes(max(1, (tag.bit_length() + 7) // 8), "big")
    return bytes(tag)


def max_payload(tag: int | bytes = TAG_PROFILE_ELEMENT, encrypt: bool = True) -> int:
    """Largest plain payload fitting one protected TLV of at most 1020 bytes."""
    tag_len = len(_tag_bytes(tag))
    content = 0
    for candidate in range(MAX_SEGMENT, 0, -1):
        if tag_len + len(encode_length(candidate)) + candidate <= MAX_SEGMENT:
            content = candidate
            break
    room = content - MAC_LENGTH
    if not encrypt:
        return room
    return room - room % AES_BLOCK - 1


def _pad(data: bytes) -> bytes:
    padded = data + b"\x80"
    return padded + b"\x00" * (-len(padded) % AES_BLOCK)


def _unpad(data: bytes) -> bytes:
    stripped = data.rstrip(b"\x00")
    if not stripped or stripped[-1] != 0x80 or len(data) - len(stripped) >= AES_BLOCK:
        raise BspError(BspErrorReason.scp03tSecurityError, "decrypted data has no valid '80 00..' padding")
    return stripped[:-1]


class _Channel:
    """Shared SCP03t state: keys, MAC chaining value and block counter."""

    def __init__(self, keys: SessionKeys):
        self._set(keys.s_enc, keys.s_mac, keys.initial_mcv)

    def _set(self, s_enc: bytes, s_mac: bytes, mcv: bytes) -> None:
        self._s_enc = bytes(s_enc)
        self._s_mac = bytes(s_mac)
        self._mcv = bytes(mcv)
        self._counter = 1

    @property
    def mcv(self) -> bytes:
        """Current MAC chaining value (the full CMAC of the last segment)."""
        return self._mcv

    @property
    def block_counter(self) -> int:
        """Counter the next encrypted segment's ICV is derived from."""
        return self._counter

    def replace_session_keys(self, ppk_enc: bytes, ppk_mac: bytes, initial_mcv: bytes) -> None:
        """Switch to PPK-ENC / PPK-MAC and the given initial MCV (SGP.22 §5.5.4); counter back to 1."""
        SessionKeys(initial_mcv=initial_mcv, s_enc=ppk_enc, s_mac=ppk_mac)
        self._set(ppk_enc, ppk_mac, initial_mcv)

    def _icv(self) -> bytes:
        encryptor = Cipher(algorithms.AES(self._s_enc), modes.ECB()).encryptor()
        return encryptor.update(self._counter.to_bytes(AES_BLOCK, "big")) + encryptor.finalize()

    def _cbc(self, data: bytes, *, decrypt: bool) -> bytes:
        cipher = Cipher(algorithms.AES(self._s_enc), modes.CBC(self._icv()))
        ctx = cipher.decryptor() if decrypt else cipher.encryptor()
        return ctx.update(data) + ctx.finalize()

    def _cmac(self, header: bytes, body: bytes) -> bytes:
        mac = CMAC(algorithms.AES(self._s_mac))
        mac.update(self._mcv + header + body)
        return mac.finalize()


class BspProtector(_Channel):
    """SM-DP+ side of the BSP: builds the '87'/'88'/'86' TLVs of a Bound Profile Package."""

    def protect_one(self, tag: int | bytes, data: bytes, encrypt: bool = True) -> bytes:
        """One protected TLV; ``data`` must fit (see :func:`max_payload`)."""
        tag_bytes = _tag_bytes(tag)
        if len(data) > max_payload(tag_bytes, encrypt):
            raise BspError(
                BspErrorReason.incorrectInputValues,
                f"{len(data)} bytes do not fit one segment (max {max_payload(tag_bytes, encrypt)})",
            )
        body = self._cbc(_pad(bytes(data)), decrypt=False) if encrypt else bytes(data)
        header = tag_bytes + encode_length(len(body) + MAC_LENGTH)
        full_mac = self._cmac(header, body)
        self._mcv = full_mac
        self._counter += 1
        return header + body + full_mac[:MAC_LENGTH]

    def wrap(self, tag: int | bytes, data: bytes, encrypt: bool = True) -> list[bytes]:
        """Split ``data`` into segments of at most 1020 bytes each (tag, length and MAC included)
        and protect them in order. Empty data gives one segment."""
        size = max_payload(tag, encrypt)
        chunks = [data[i : i + size] for i in range(0, len(data), size)] or [b""]
        return [self.protect_one(tag, chunk, encrypt) for chunk in chunks]


class BspVerifier(_Channel):
    """eUICC side of the BSP: verifies the C-MAC and decrypts one segment at a time.

    A failed segment leaves the MCV and counter unchanged; the eUICC then aborts the installation
    with ``BspError.reason`` as ProfileInstallationResult errorReason.
    """

    def unwrap(self, segment: bytes, expect_encrypted: bool = True, *, expected_tag: int | bytes | None = None) -> bytes:
        """Verify (constant-time) and, when ``expect_encrypted``, decrypt one protected TLV."""
        header, body, mac = self._split(bytes(segment), expected_tag)
        full_mac = self._cmac(header, body)
        if not hmac.compare_digest(full_mac[:MAC_LENGTH], mac):
            raise BspError(BspErrorReason.scp03tSecurityError, f"C-MAC of segment {header.hex().upper()}.. does not verify")
        if expect_encrypted:
            if not body or len(body) % AES_BLOCK:
                raise BspError(
                    BspErrorReason.scp03tStructureError,
                    f"ciphertext of {len(body)} bytes is not a non-empty multiple of 16",
                )
            plain = _unpad(self._cbc(body, decrypt=True))
        else:
            plain = body
        self._mcv = full_mac
        self._counter += 1
        return plain

    def unwrap_all(self, segments, expect_encrypted: bool = True, *, expected_tag: int | bytes | None = None) -> bytes:
        """Unwrap a sequence of segments in order and join their payloads."""
        return b"".join(self.unwrap(s, expect_encrypted, expected_tag=expected_tag) for s in segments)

    @staticmethod
    def _split(segment: bytes, expected_tag: int | bytes | None) -> tuple[bytes, bytes, bytes]:
        def fail(detail: str) -> BspError:
            return BspError(BspErrorReason.scp03tStructureError, detail)

        if len(segment) > MAX_SEGMENT:
            raise fail(f"segment of {len(segment)} bytes exceeds {MAX_SEGMENT}")
        if len(segment) < 2:
            raise fail("segment shorter than a TLV header")
        pos = 1
        if segment[0] & 0x1F == 0x1F:
            while pos < len(segment) and segment[pos] & 0x80:
                pos += 1
            pos += 1
        tag = segment[:pos]
        if expected_tag is not None and tag != _tag_bytes(expected_tag):
            raise fail(f"tag {tag.hex().upper()} where {_tag_bytes(expected_tag).hex().upper()} was expected")
        if pos >= len(segment):
            raise fail("segment has no length")
        first = segment[pos]
        pos += 1
        if first < 0x80:
            length = first
        elif first in (0x81, 0x82):
            count = first & 0x7F
            if pos + count > len(segment):
                raise fail("truncated length field")
            length = int.from_bytes(segment[pos : pos + count], "big")
            if encode_length(length) != segment[pos - 1 : pos + count]:
                raise fail("non-minimal length encoding")
            pos += count
        else:
            raise fail(f"unsupported length octet {first:#04x}")
        if pos + length != len(segment):
            raise fail(f"length {length} does not match the {len(segment) - pos} bytes present")
        if length < MAC_LENGTH:
            raise fail(f"value of {length} bytes cannot hold an 8-byte MAC")
        header = segment[:pos]
        return header, segment[pos : len(segment) - MAC_LENGTH], segment[len(segment) - MAC_LENGTH :]


def replace_session_keys_request(ppk_enc: bytes, ppk_mac: bytes, initial_mcv: bytes) -> bytes:
    """DER ReplaceSessionKeysRequest 'BF26' (SGP.22 §5.5.4), to be protected as a '87' segment."""
    SessionKeys(initial_mcv=initial_mcv, s_enc=ppk_enc, s_mac=ppk_mac)
    return encode(
        "ReplaceSessionKeysRequest",
        {"initialMacChainingValue": bytes(initial_mcv), "ppkEnc": bytes(ppk_enc), "ppkCmac": bytes(ppk_mac)},
    )


def parse_replace_session_keys(der: bytes) -> SessionKeys:
    """The PPKs of a decrypted ReplaceSessionKeysRequest, as SessionKeys."""
    try:
        value = decode("ReplaceSessionKeysRequest", der)
    except Asn1Error as exc:
        raise BspError(BspErrorReason.incorrectInputValues, f"ReplaceSessionKeysRequest: {exc}")
    return SessionKeys(initial_mcv=value["initialMacChainingValue"], s_enc=value["ppkEnc"], s_mac=value["ppkCmac"])
