"""Unprotected Profile Packages in the TCA (SIMalliance) eUICC Profile Package format ("SAIP").

A package is the concatenation of DER ``ProfileElement`` values (TCA eUICC Profile Package:
Interoperable Format Technical Specification v2.3.1, §8; ASN.1 ``PEDefinitions``). SGP.22 carries it,
segmented and BSP-protected, in the '86' TLVs of a Bound Profile Package (SGP.22 §2.5.5).

:func:`make_profile` builds, in TCA order: ``header`` (§8.2) · ``mf`` (template MF, Annex A 9.2) ·
``pukCodes``/``pinCodes`` (§8.5) · ``usim`` (template ADF-USIM, A 9.5.1) · ``opt-usim`` (A 9.5.2, only
with an APN) · optional ``genericFileManagement`` (§8.4) padding · ``akaParameter`` (§8.6, Milenage)
· ``end`` (§8.11). File contents follow ETSI TS 102 221 (EF-ICCID, EF-DIR, EF-ARR) and 3GPP
TS 31.102 §4.2 (EF-IMSI, EF-UST, EF-SPN, EF-EST, EF-ACC, EF-AD, EF-ECC, EF-ACL).

The APN goes where a USIM carries one: the APN Control List EF-ACL (TS 31.102 §4.2.48, in the
opt-usim PE) as a TLV 'DD' in TS 23.003 §9.1 label format, with UST service n°35 available and the
EST ACL bit off (the list is informative, not enforced).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

from .asn1 import Asn1Error, decode, encode, iter_tlvs

__all__ = [
    "OID_MF",
    "OID_OPT_USIM",
    "OID_USIM",
    "USIM_AID",
    "ProfileError",
    "ProfileSummary",
    "apn_decode",
    "apn_encode",
    "bcd_to_iccid",
    "iccid_to_bcd",
    "iccid_with_luhn",
    "imsi_from_ef",
    "imsi_to_ef",
    "luhn_digit",
    "make_profile",
    "profile_elements",
    "read_profile",
    "validate_iccid",
]

# TCA template OIDs (id-eUICC 2.23.143.1, templates arc .2; TCA Annex A).
OID_MF = "2.23.143.1.2.1"
OID_USIM = "2.23.143.1.2.4"
OID_OPT_USIM = "2.23.143.1.2.5"

USIM_AID = bytes.fromhex("A0000000871002FF33FF018900000100")
ADF_USIM_TEMP_FID = bytes.fromhex("7FF1")
PROFILE_VERSION = (2, 3)

EF_DIR_RECORD = 38
EF_ARR_RECORD = 37
EF_ARR_RECORDS = 15
PAD_RECORD = 176
PAD_FID = bytes.fromhex("6F3C")

TEST_PIN1 = "0000"
TEST_PIN2 = "0000"
TEST_PUK = "12345678"
TEST_ADM1 = "88888888"

PIN_APPL1, PIN_ADM1, SECOND_PIN_APPL1 = 1, 10, 129
PUK_APPL1, SECOND_PUK_APPL1 = 1, 129

UST_SPN, UST_ACL = 19, 35

_GSM7_SAFE = re.compile(r"^[A-Za-z0-9 !\"#%&'()*+,\-./:;<=>?]*$")
_APN_LABEL = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")


class ProfileError(ValueError):
    """Invalid input for, or malformed content in, a profile package; the message names the input."""


@dataclass(frozen=True)
class ProfileSummary:
    """What :func:`read_profile` found in a package."""

    iccid: str
    imsi: str | None
    name: str | None
    spn: str | None
    apn: str | None
    pe_types: list[str]
    size: int
    key: bytes | None = field(default=None, repr=False)
    opc: bytes | None = field(default=None, repr=False)


# --- ICCID (ITU-T E.118; SGP.22 §2.4.4 / ETSI TS 102 221 §13.2 EF-ICCID) -----------------------------


def luhn_digit(digits: str) -> str:
    """Luhn (ISO/IEC 7812-1 Annex B) check digit for ``digits``."""
    if not digits.isdigit():
        raise ProfileError(f"Luhn input {digits!r} is not all decimal digits")
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return str(-total % 10)


def iccid_with_luhn(prefix_digits: str) -> str:
    """Append the Luhn check digit to an 18- or 19-digit ICCID body starting with '89'."""
    if not prefix_digits.isdigit() or len(prefix_digits) not in (18, 19):
        raise ProfileError(f"ICCID body {prefix_digits!r}: need 18 or 19 decimal digits")
    iccid = prefix_digits + luhn_digit(prefix_digits)
    validate_iccid(iccid)
    return iccid


def validate_iccid(iccid: str) -> str:
    """Check an ICCID: 19 or 20 digits, major industry identifier '89', valid Luhn check digit."""
    if not isinstance(iccid, str) or not iccid.isdigit():
        raise ProfileError(f"ICCID {iccid!r}: only decimal digits allowed")
    if len(iccid) not in (19, 20):
        raise ProfileError(f"ICCID {iccid!r}: {len(iccid)} digits, need 19 or 20")
    if not iccid.startswith("89"):
        raise ProfileError(f"ICCID {iccid!r}: must start with 89 (ITU-T E.118 telecom)")
    if luhn_digit(iccid[:-1]) != iccid[-1]:
        raise ProfileError(f"ICCID {iccid!r}: Luhn check digit should be {luhn_digit(iccid[:-1])}")
    return iccid


def _swap_nibbles(digits: str) -> bytes:
    if len(digits) % 2:
        digits += "F"
    return bytes.fromhex("".join(digits[i + 1] + digits[i] for i in range(0, len(digits), 2)))


def _unswap_nibbles(data: bytes) -> str:
    text = data.hex().upper()
    return "".join(text[i + 1] + text[i] for i in range(0, len(text), 2))


def iccid_to_bcd(iccid: str) -> bytes:
    """10-byte EF-ICCID / ProfileHeader.iccid value: digits nibble-swapped, 'F' padded."""
    return _swap_nibbles(validate_iccid(iccid))


def _header_iccid(iccid: str) -> bytes:
    """ProfileHeader.iccid: the digits in order, 'F' padded, as in the TCA SIMalliance sample profile
    (whose EF-ICCID is nibble-swapped)."""
    return bytes.fromhex(validate_iccid(iccid).ljust(20, "F"))


def _iccid_from_header(data: bytes) -> str:
    text = bytes(data).hex().upper()
    if len(data) != 10 or not text.rstrip("F").isdigit():
        raise ProfileError(f"ProfileHeader.iccid {text}: need 10 bytes of BCD digits")
    return validate_iccid(text.rstrip("F"))


def bcd_to_iccid(data: bytes) -> str:
    """Inverse of :func:`iccid_to_bcd`; the result is validated."""
    if len(data) != 10:
        raise ProfileError(f"EF-ICCID value of {len(data)} bytes, need 10")
    text = _unswap_nibbles(bytes(data))
    if text.endswith("F"):
        text = text[:-1]
    if not text.isdigit():
        raise ProfileError(f"EF-ICCID {data.hex().upper()} holds non-digit nibbles")
    return validate_iccid(text)


# --- IMSI (3GPP TS 23.003 §2.2, TS 31.102 §4.2.2) ------------------------------------------------------


def _validate_imsi(imsi: str) -> str:
    if not isinstance(imsi, str) or not imsi.isdigit():
        raise ProfileError(f"IMSI {imsi!r}: only decimal digits allowed")
    if not 6 <= len(imsi) <= 15:
        raise ProfileError(f"IMSI {imsi!r}: {len(imsi)} digits, need 6..15 (MCC + MNC + MSIN)")
    return imsi


def imsi_to_ef(imsi: str) -> bytes:
    """EF-IMSI (9 bytes): length, then parity nibble '1'/'9' and digits nibble-swapped, 'FF' padded."""
    _validate_imsi(imsi)
    parity = "9" if len(imsi) % 2 else "1"
    body = _swap_nibbles(parity + imsi)
    return (bytes([len(body)]) + body).ljust(9, b"\xff")


def imsi_from_ef(data: bytes) -> str:
    """Inverse of :func:`imsi_to_ef`."""
    if len(data) != 9 or not 1 <= data[0] <= 8:
        raise ProfileError(f"EF-IMSI {bytes(data).hex().upper()}: need 9 bytes with length 1..8")
    nibbles = _unswap_nibbles(bytes(data[1 : 1 + data[0]]))
    parity, digits = nibbles[0], nibbles[1:]
    if parity == "1" and digits.endswith("F"):
        digits = digits[:-1]
    elif parity != "9":
        raise ProfileError(f"EF-IMSI {bytes(data).hex().upper()}: bad parity/type nibble {parity}")
    return _validate_imsi(digits)


# --- other EF contents -------------------------------------------------------------------------------------


def apn_encode(apn: str) -> bytes:
    """APN network identifier in TS 23.003 §9.1 label format (length-prefixed labels)."""
    labels = apn.split(".") if apn else []
    if not labels or any(not _APN_LABEL.match(label) for label in labels):
        raise ProfileError(f"APN {apn!r}: need dot-separated labels of letters, digits and '-'")
    encoded = b"".join(bytes([len(label)]) + label.encode("ascii") for label in labels)
    if len(encoded) > 100:
        raise ProfileError(f"APN {apn!r}: {len(encoded)} bytes encoded, max 100")
    return encoded


def apn_decode(data: bytes) -> str:
    """Inverse of :func:`apn_encode`."""
    labels, pos = [], 0
    while pos < len(data):
        size = data[pos]
        label = data[pos + 1 : pos + 1 + size]
        if size == 0 or len(label) != size:
            raise ProfileError(f"APN {bytes(data).hex().upper()}: truncated label")
        labels.append(label.decode("ascii", "replace"))
        pos += 1 + size
    return ".".join(labels)


def _ef_acl(apn: str) -> bytes:
    """EF-ACL (TS 31.102 §4.2.48): number of APNs, then 'DD' TLVs; 101 bytes, 'FF' padded."""
    value = apn_encode(apn)
    return (bytes([1, 0xDD, len(value)]) + value).ljust(101, b"\xff")


def _acl_apn(data: bytes) -> str | None:
    if not data or data[0] == 0 or len(data) < 3 or data[1] != 0xDD:
        return None
    return apn_decode(data[3 : 3 + data[2]])


def _ef_spn(spn: str) -> bytes:
    """EF-SPN (TS 31.102 §4.2.12): display condition, name in the GSM 7-bit default alphabet (unpacked)."""
    if not 1 <= len(spn) <= 16 or not _GSM7_SAFE.match(spn):
        raise ProfileError(f"SPN {spn!r}: need 1..16 characters of A-Z a-z 0-9 space and basic punctuation")
    return b"\x01" + spn.encode("ascii").ljust(16, b"\xff")


def _spn_text(data: bytes) -> str | None:
    text = bytes(data[1:]).rstrip(b"\xff")
    return text.decode("ascii", "replace") if text else None


def _ef_ust(services: set[int]) -> bytes:
    ust = bytearray(17)
    for n in services:
        ust[(n - 1) // 8] |= 1 << ((n - 1) % 8)
    return bytes(ust)


def _ef_acc(imsi: str) -> bytes:
    """EF-ACC (TS 31.102 §4.2.15): access class 0..9 taken from the last IMSI digit (TS 22.011 §4.2)."""
    return (1 << int(imsi[-1])).to_bytes(2, "big")


def _ef_ad(mnc_len: int) -> bytes:
    return bytes([0x00, 0x00, 0x00, mnc_len])


def _ef_dir_record() -> bytes:
    """EF-DIR application template (TS 102 221 §13.1): '61' { '4F' AID, '50' label }."""
    inner = b"\x4f" + bytes([len(USIM_AID)]) + USIM_AID + b"\x50\x04USIM"
    return (b"\x61" + bytes([len(inner)]) + inner).ljust(EF_DIR_RECORD, b"\xff")


# Expanded-format access rules (TS 102 221 §9.2.4): AM_DO '80', SC_DO always '90' or user '(A4 (83 key) (95 08))'.
_ALW = b"\x90\x00"


def _sc_key(key_ref: int) -> bytes:
    return b"\xa4\x06\x83\x01" + bytes([key_ref]) + b"\x95\x01\x08"


_ARR_RULES: tuple[bytes, ...] = (
    b"\x80\x01\x01" + _ALW + b"\x80\x01\x02" + _sc_key(PIN_APPL1) + b"\x80\x01\x18" + _sc_key(PIN_ADM1),
    b"\x80\x01\x01" + _ALW + b"\x80\x01\x1a" + _sc_key(PIN_ADM1),
    b"\x80\x01\x03" + _sc_key(PIN_APPL1) + b"\x80\x01\x18" + _sc_key(PIN_ADM1),
    b"\x80\x01\x01" + _sc_key(PIN_APPL1) + b"\x80\x01\x1a" + _sc_key(PIN_ADM1),
    b"\x80\x01\x01" + _ALW + b"\x80\x01\x5a" + _sc_key(PIN_ADM1),
)


def _ef_arr_content() -> bytes:
    records = [_ARR_RULES[i % len(_ARR_RULES)].ljust(EF_ARR_RECORD, b"\xff") for i in range(EF_ARR_RECORDS)]
    return b"".join(records)


def _pin(value: str, what: str) -> bytes:
    if not value.isdigit() or not 4 <= len(value) <= 8:
        raise ProfileError(f"{what} {value!r}: need 4..8 decimal digits")
    return value.encode("ascii").ljust(8, b"\xff")


def _key16(value: bytes | str | None, what: str) -> bytes:
    if value is None:
        return os.urandom(16)
    if isinstance(value, str):
        try:
            value = bytes.fromhex(value)
        except ValueError:
            raise ProfileError(f"{what} {value!r}: not hexadecimal")
    if len(value) != 16:
        raise ProfileError(f"{what}: {len(value)} bytes, Milenage needs 16")
    return bytes(value)


def _lf_descriptor(record_len: int, records: int) -> dict[str, Any]:
    return {
        "fileDescriptor": bytes([0x42, 0x21, 0x00, record_len]),
        "efFileSize": (record_len * records).to_bytes(2, "big"),
    }


def _pad_records(count: int) -> bytes:
    """Records shaped like stored SMS (TS 31.102 §4.2.25: status, then TPDU area), distinct per record."""
    out = bytearray()
    for n in range(count):
        text = f"sgp32-hil download benchmark record {n + 1:05d}".encode("ascii")
        record = b"\x01\x07\x91\x11\x11\x11\x11\x11\xf1" + bytes([len(text)]) + text
        out += record.ljust(PAD_RECORD, b"\xff")
    return bytes(out)


def _pad_pe(identification: int, count: int) -> tuple[str, dict[str, Any]]:
    fcp = {
        "fileDescriptor": bytes([0x42, 0x21, 0x00, PAD_RECORD]),
        "fileID": PAD_FID,
        "securityAttributesReferenced": bytes.fromhex("6F0605"),
        "efFileSize": (PAD_RECORD * count).to_bytes(2, "big"),
    }
    return (
        "genericFileManagement",
        {
            "gfm-header": {"identification": identification},
            "fileManagementCMD": [
                [
                    ("filePath", ADF_USIM_TEMP_FID),
                    ("createFCP", fcp),
                    ("fillFileContent", _pad_records(count)),
                ]
            ],
        },
    )


# --- building and reading ------------------------------------------------------------------------------


def _encode_pes(pes: list[tuple[str, dict[str, Any]]]) -> bytes:
    try:
        return b"".join(encode("ProfileElement", pe) for pe in pes)
    except Asn1Error as exc:
        raise ProfileError(f"profile element does not encode: {exc}")


def make_profile(
    iccid: str,
    imsi: str,
    apn: str | None = None,
    name: str = "sgp32-hil test profile",
    spn: str = "sgp32-hil",
    key: bytes | str | None = None,
    opc: bytes | str | None = None,
    *,
    mnc_len: int = 2,
    pad_to: int | None = None,
) -> bytes:
    """DER Unprotected Profile Package for a Milenage USIM.

    ``key``/``opc`` (16 bytes or hex) default to fresh random values; read them back with
    :func:`read_profile`. PINs are the test values PIN1/PIN2 0000, PUK1/PUK2 12345678,
    ADM1 88888888. ``pad_to`` adds SMS-shaped records in a genericFileManagement PE until the
    package is at least that many bytes.
    """
    iccid_value = iccid_to_bcd(iccid)
    _validate_imsi(imsi)
    if mnc_len not in (2, 3):
        raise ProfileError(f"MNC length {mnc_len}: need 2 or 3")
    if not 1 <= len(name) <= 100:
        raise ProfileError(f"profile name {name!r}: need 1..100 characters")
    k, op_c = _key16(key, "Milenage K"), _key16(opc, "Milenage OPc")
    services = {UST_SPN} | ({UST_ACL} if apn else set())
    ident = iter(range(1, 1000))
    pes: list[tuple[str, dict[str, Any]]] = []

    gfste = [OID_MF, OID_USIM] + ([OID_OPT_USIM] if apn else [])
    pes.append(
        (
            "header",
            {
                "major-version": PROFILE_VERSION[0],
                "minor-version": PROFILE_VERSION[1],
                "profileType": name,
                "iccid": _header_iccid(iccid),
                "eUICC-Mandatory-services": {"usim": None, "milenage": None},
                "eUICC-Mandatory-GFSTEList": gfste,
            },
        )
    )
    pes.append(
        (
            "mf",
            {
                "mf-header": {"mandated": None, "identification": next(ident)},
                "templateID": OID_MF,
                "mf": [("fileDescriptor", {"pinStatusTemplateDO": bytes([PIN_APPL1, PIN_ADM1])})],
                "ef-iccid": [("fillFileContent", iccid_value)],
                "ef-dir": [("fileDescriptor", _lf_descriptor(EF_DIR_RECORD, 1)), ("fillFileContent", _ef_dir_record())],
                "ef-arr": [
                    ("fileDescriptor", _lf_descriptor(EF_ARR_RECORD, EF_ARR_RECORDS)),
                    ("fillFileContent", _ef_arr_content()),
                ],
            },
        )
    )
    pes.append(
        (
            "pukCodes",
            {
                "puk-Header": {"mandated": None, "identification": next(ident)},
                "pukCodes": [
                    {"keyReference": PUK_APPL1, "pukValue": _pin(TEST_PUK, "PUK1")},
                    {"keyReference": SECOND_PUK_APPL1, "pukValue": _pin(TEST_PUK, "PUK2")},
                ],
            },
        )
    )
    pes.append(
        (
            "pinCodes",
            {
                "pin-Header": {"mandated": None, "identification": next(ident)},
                "pinCodes": (
                    "pinconfig",
                    [
                        {
                            "keyReference": PIN_APPL1,
                            "pinValue": _pin(TEST_PIN1, "PIN1"),
                            "unblockingPINReference": PUK_APPL1,
                        },
                        {
                            "keyReference": SECOND_PIN_APPL1,
                            "pinValue": _pin(TEST_PIN2, "PIN2"),
                            "unblockingPINReference": SECOND_PUK_APPL1,
                        },
                        {"keyReference": PIN_ADM1, "pinValue": _pin(TEST_ADM1, "ADM1"), "pinAttributes": 1},
                    ],
                ),
            },
        )
    )
    pes.append(
        (
            "usim",
            {
                "usim-header": {"mandated": None, "identification": next(ident)},
                "templateID": OID_USIM,
                "adf-usim": [
                    (
                        "fileDescriptor",
                        {
                            "fileID": ADF_USIM_TEMP_FID,
                            "dfName": USIM_AID,
                            "pinStatusTemplateDO": bytes([PIN_APPL1, SECOND_PIN_APPL1, PIN_ADM1]),
                        },
                    )
                ],
                "ef-imsi": [("fillFileContent", imsi_to_ef(imsi))],
                "ef-arr": [
                    ("fileDescriptor", _lf_descriptor(EF_ARR_RECORD, EF_ARR_RECORDS)),
                    ("fillFileContent", _ef_arr_content()),
                ],
                "ef-ust": [("fillFileContent", _ef_ust(services))],
                "ef-spn": [("fillFileContent", _ef_spn(spn))],
                "ef-est": [("fillFileContent", b"\x00")],
                "ef-acc": [("fillFileContent", _ef_acc(imsi))],
                "ef-ad": [("fillFileContent", _ef_ad(mnc_len))],
                "ef-ecc": [("fillFileContent", bytes.fromhex("11F2FF00"))],
            },
        )
    )
    if apn:
        pes.append(
            (
                "opt-usim",
                {
                    "optusim-header": {"identification": next(ident)},
                    "templateID": OID_OPT_USIM,
                    "ef-acl": [("fillFileContent", _ef_acl(apn))],
                },
            )
        )
    pad_ident = next(ident)
    aka = (
        "akaParameter",
        {
            "aka-header": {"mandated": None, "identification": next(ident)},
            "algoConfiguration": (
                "algoParameter",
                {"algorithmID": 1, "algorithmOptions": b"\x00", "key": k, "opc": op_c},
            ),
        },
    )
    end = ("end", {"end-header": {"mandated": None, "identification": next(ident)}})

    der = _encode_pes(pes + [aka, end])
    if pad_to is not None and len(der) < pad_to:
        count = 1
        while True:
            padded = _encode_pes(pes + [_pad_pe(pad_ident, count), aka, end])
            if len(padded) >= pad_to:
                der = padded
                break
            count = max(count + 1, count + (pad_to - len(padded)) // (PAD_RECORD + 1))
    return der


def _file_content(file: list | None) -> bytes | None:
    if not file:
        return None
    chunks = [value for kind, value in file if kind == "fillFileContent"]
    return b"".join(chunks) if chunks else None


def profile_elements(der: bytes) -> list[tuple[str, dict[str, Any]]]:
    """Decode a package into ``(pe_type, value)`` pairs (asn1tools values), in order."""
    der = bytes(der)
    try:
        tlvs = list(iter_tlvs(der))
    except Asn1Error as exc:
        raise ProfileError(f"profile package is not a sequence of TLVs: {exc}")
    if not tlvs:
        raise ProfileError("profile package is empty")
    pes = []
    for tlv in tlvs:
        try:
            pes.append(decode("ProfileElement", tlv.raw))
        except Asn1Error as exc:
            raise ProfileError(f"profile element {len(pes) + 1} (tag {tlv.tag.hex().upper()}): {exc}")
    return pes


def read_profile(der: bytes) -> ProfileSummary:
    """Decode every ProfileElement of a package and summarise it. Raises :class:`ProfileError`
    when the package does not decode, does not run from header to end, or its header ICCID and
    EF-ICCID disagree."""
    pes = profile_elements(der)
    pe_types = [kind for kind, _ in pes]
    if pe_types[0] != "header":
        raise ProfileError(f"first profile element is {pe_types[0]}, must be header")
    if pe_types[-1] != "end" or pe_types.count("end") != 1:
        raise ProfileError("the package must end with exactly one end profile element")
    values: dict[str, dict[str, Any]] = {}
    for kind, value in pes:
        values.setdefault(kind, value)
    iccid = _iccid_from_header(values["header"]["iccid"])
    ef_iccid = _file_content(values.get("mf", {}).get("ef-iccid"))
    if ef_iccid is not None and bcd_to_iccid(ef_iccid) != iccid:
        raise ProfileError(f"EF-ICCID {bcd_to_iccid(ef_iccid)} differs from the header ICCID {iccid}")
    usim = values.get("usim", {})
    imsi_ef = _file_content(usim.get("ef-imsi"))
    spn_ef = _file_content(usim.get("ef-spn"))
    acl_ef = _file_content(values.get("opt-usim", {}).get("ef-acl"))
    key = opc = None
    aka = values.get("akaParameter")
    if aka and aka["algoConfiguration"][0] == "algoParameter":
        key, opc = aka["algoConfiguration"][1]["key"], aka["algoConfiguration"][1]["opc"]
    return ProfileSummary(
        iccid=iccid,
        imsi=imsi_from_ef(imsi_ef) if imsi_ef else None,
        name=values["header"].get("profileType"),
        spn=_spn_text(spn_ef) if spn_ef else None,
        apn=_acl_apn(acl_ef) if acl_ef else None,
        pe_types=pe_types,
        size=len(bytes(der)),
        key=key,
        opc=opc,
    )
