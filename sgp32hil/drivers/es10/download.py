"""ES10b profile download functions (SGP.22 v2.5 §5.7.5, §5.7.6, §5.7.13, §5.7.14; SGP.32 v1.2 §5.9).

Each function sends one ES10b command through an :class:`~sgp32hil.drivers.es10.client.Es10Client`'s
session and returns a typed result carrying the response's exact DER (signed by the eUICC: forward
it to the SM-DP+ unchanged).

Signed inputs that arrive from the SM-DP+ (serverSigned1, smdpSigned2, certificates) are placed in the
request byte for byte, never re-encoded.  ``serverSignature1``/``smdpSignature2`` and
``euiccCiPKIdToBeUsed`` are accepted both as their complete TLV (``5F37 40 ..``, ``04 14 ..``, the form
ES9+ JSON carries, SGP.22 §6.5.2) and as the bare value.

Outcomes the eUICC reports inside a well-formed response (``authenticateResponseError``,
``downloadResponseError``, an ``errorResult`` ProfileInstallationResult, ``cancelSessionResponseError``)
are returned typed with ``ok``/``success`` False, because an LPA forwards them to the SM-DP+ (SGP.22
§3.1.3); ``raise_for_error()`` turns them into :class:`~sgp32hil.drivers.es10.client.Es10Error`.  An
empty or undecodable response raises :class:`Es10Error`; status words raise
:class:`~sgp32hil.drivers.apdu.base.ApduError`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ...harness.asn1 import Asn1Error, Tlv, TlvError, parse_single, tlv
from ...harness.asn1 import decode as asn1_decode
from ...harness.asn1 import encode as asn1_encode
from .client import Es10Client, Es10Error
from .decode import asn1_names, tag_int
from .types import _Record, iccid_from_bcd

__all__ = [
    "AuthenticateServerResult",
    "BppSegment",
    "CancelSessionResult",
    "CtxParams1",
    "DeviceInfo",
    "PrepareDownloadResult",
    "ProfileInstallationResult",
    "authenticate_server",
    "bpp_segments",
    "cancel_session",
    "hash_confirmation_code",
    "load_bound_profile_package",
    "prepare_download",
]

CANCEL_SESSION_REASONS = {
    "endUserRejection": 0,
    "postponed": 1,
    "timeout": 2,
    "pprNotAllowed": 3,
    "metadataMismatch": 4,
    "loadBppExecutionError": 5,
    "undefinedReason": 127,
}


# --- ctxParams1 -------------------------------------------------------------------------------------


def _bcd(digits: str, size: int, what: str) -> bytes:
    if not digits.isdigit() or len(digits) > size * 2:
        raise ValueError(f"{what} must be up to {size * 2} decimal digits, got {digits!r}")
    padded = digits.ljust(size * 2, "F")
    return bytes.fromhex(padded)


@dataclass(frozen=True)
class DeviceInfo:
    """DeviceInfo (SGP.22 §4.2): the TAC (8 digits, BCD in Octet4), DeviceCapabilities and an optional IMEI.

    ``capabilities`` maps DeviceCapabilities member names to ``"major.minor.revision"``
    (VersionType) or, for the bit strings, to asn1tools values.  The default describes an LTE (Rel-15)
    IoT device.
    """

    tac: str = "35290611"
    capabilities: tuple[tuple[str, Any], ...] = (
        ("gsmSupportedRelease", "15.0.0"),
        ("utranSupportedRelease", "15.0.0"),
        ("eutranEpcSupportedRelease", "15.0.0"),
    )
    imei: str | None = None

    def to_asn1(self) -> dict:
        caps: dict[str, Any] = {}
        for name, value in self.capabilities:
            if isinstance(value, str):
                parts = value.split(".")
                if len(parts) != 3 or not all(p.isdigit() and int(p) < 256 for p in parts):
                    raise ValueError(f"DeviceCapabilities.{name} must be 'major.minor.revision', got {value!r}")
                value = bytes(int(p) for p in parts)
            caps[name] = value
        info: dict[str, Any] = {"tac": _bcd(self.tac, 4, "TAC"), "deviceCapabilities": caps}
        if self.imei is not None:
            info["imei"] = _bcd(self.imei, 8, "IMEI")
        return info


@dataclass(frozen=True)
class CtxParams1:
    """CtxParams1 / CtxParamsForCommonAuthentication (SGP.22 §5.7.13): the MatchingID (None: omitted,
    as in the default SM-DP+ and SM-DS cases) and the DeviceInfo."""

    matching_id: str | None
    device_info: DeviceInfo = field(default_factory=DeviceInfo)

    def to_asn1(self) -> tuple[str, dict]:
        body: dict[str, Any] = {"deviceInfo": self.device_info.to_asn1()}
        if self.matching_id is not None:
            body["matchingId"] = self.matching_id
        return ("ctxParamsForCommonAuthentication", body)


def hash_confirmation_code(confirmation_code: str | bytes, transaction_id: bytes) -> bytes:
    """Hashed Confirmation Code (SGP.22 §3.1.3, §5.7.5 hashCc):
    ``SHA256(SHA256(Confirmation Code) | TransactionID)``; a str code is taken as UTF-8."""
    cc = confirmation_code.encode("utf-8") if isinstance(confirmation_code, str) else bytes(confirmation_code)
    return hashlib.sha256(hashlib.sha256(cc).digest() + bytes(transaction_id)).digest()


# --- helpers ----------------------------------------------------------------------------------------


def _as_tlv(tag: bytes, data: bytes, what: str) -> bytes:
    """``data`` if it is exactly one TLV with ``tag``, else ``data`` wrapped as the value of ``tag``."""
    data = bytes(data)
    if data[: len(tag)] == tag:
        try:
            if parse_single(data).tag == tag:
                return data
        except TlvError:
            pass
    if not data:
        raise ValueError(f"{what} is empty")
    return tlv(tag, data)


def _der_element(data: bytes, tag: int, what: str) -> bytes:
    data = bytes(data)
    try:
        element = parse_single(data)
    except TlvError as exc:
        raise ValueError(f"{what} is not one DER element: {exc}") from None
    if tag_int(element) != tag:
        raise ValueError(f"{what} starts with tag {element.tag.hex().upper()}, expected {tag:02X}")
    return data


def _send(client: Es10Client, function: str, command: bytes, response_type: str) -> tuple[Any, bytes]:
    raw = client.session.store_data(command, function=function)
    if not raw:
        raise Es10Error(function, None, "emptyResponse", der=raw, detail=f"expected {response_type}")
    try:
        return asn1_decode(response_type, raw), raw
    except Asn1Error as exc:
        raise Es10Error(function, None, "malformedResponse", der=raw, detail=str(exc)) from None


def _checked(request_type: str, command: bytes, function: str) -> bytes:
    try:
        asn1_decode(request_type, command)
    except Asn1Error as exc:
        raise ValueError(f"{function}: the request is not a valid {request_type}: {exc}") from None
    return command


# --- AuthenticateServer -------------------------------------------------------------------------------


class _ErrorChoiceResult(_Record):
    """A response CHOICE whose ``ERROR_KIND`` alternative carries an error code (SGP.22 §5.7.13/§5.7.5/§5.7.14)."""

    FUNCTION: ClassVar[str]
    ERROR_KIND: ClassVar[str]

    @property
    def ok(self) -> bool:
        return self.kind != self.ERROR_KIND

    def raise_for_error(self) -> None:
        if not self.ok:
            raise Es10Error(self.FUNCTION, self.error_code, self.error_name or "", der=self.der)


@dataclass(frozen=True)
class AuthenticateServerResult(_ErrorChoiceResult):
    """ES10b.AuthenticateServer response (SGP.22 §5.7.13, SGP.32 §5.9 SGP32-AuthenticateServerResponse).

    ``kind`` is the CHOICE alternative; ``error_code``/``error_name`` are set for
    ``authenticateResponseError``; ``der`` is the exact response for ES9+.AuthenticateClient.
    """

    FUNCTION = "AuthenticateServer"
    ERROR_KIND = "authenticateResponseError"

    kind: str
    transaction_id: bytes | None
    error_code: int | None
    error_name: str | None
    der: bytes = field(repr=False)
    decoded: Any = field(repr=False, compare=False)


def authenticate_server(
    client: Es10Client,
    server_signed1: bytes,
    server_signature1: bytes,
    ci_pkid: bytes,
    server_certificate: bytes,
    ctx_params1: CtxParams1,
) -> AuthenticateServerResult:
    """ES10b.AuthenticateServer (SGP.22 §5.7.13): the SM-DP+'s signed challenge, the CI key to use,
    CERT.DPauth and ctxParams1 (MatchingID, DeviceInfo)."""
    ctx = asn1_encode("CtxParams1", ctx_params1.to_asn1())
    body = (_der_element(server_signed1, 0x30, "serverSigned1")
            + _as_tlv(b"\x5f\x37", server_signature1, "serverSignature1")
            + _as_tlv(b"\x04", ci_pkid, "euiccCiPKIdToBeUsed")
            + _der_element(server_certificate, 0x30, "serverCertificate")
            + ctx)
    command = _checked("AuthenticateServerRequest", tlv(b"\xbf\x38", body), "AuthenticateServer")
    value, raw = _send(client, "AuthenticateServer", command, "SGP32-AuthenticateServerResponse")
    kind, inner = value
    if kind == "authenticateResponseError":
        code = inner["authenticateErrorCode"]
        return AuthenticateServerResult(kind, inner["transactionId"], code,
                                        asn1_names().number_name(code, "AuthenticateErrorCode"), raw, value)
    tid = None
    if kind == "authenticateResponseOk":
        tid = inner["euiccSigned1"]["transactionId"]
    elif inner["signedData"][0] == "euiccSigned1":
        tid = inner["signedData"][1]["transactionId"]
    return AuthenticateServerResult(kind, tid, None, None, raw, value)


# --- PrepareDownload ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PrepareDownloadResult(_ErrorChoiceResult):
    """ES10b.PrepareDownload response (SGP.22 §5.7.5, SGP.32 §5.9 SGP32-PrepareDownloadResponse):
    the one-time public key and the hashCc echoed in euiccSigned2, or the downloadErrorCode."""

    FUNCTION = "PrepareDownload"
    ERROR_KIND = "downloadResponseError"

    kind: str
    transaction_id: bytes | None
    euicc_otpk: bytes | None
    hash_cc: bytes | None
    error_code: int | None
    error_name: str | None
    der: bytes = field(repr=False)
    decoded: Any = field(repr=False, compare=False)


def prepare_download(
    client: Es10Client,
    smdp_signed2: bytes,
    smdp_signature2: bytes,
    smdp_certificate: bytes,
    hash_cc: bytes | None = None,
) -> PrepareDownloadResult:
    """ES10b.PrepareDownload (SGP.22 §5.7.5): smdpSigned2 and its signature, CERT.DPpb, and hashCc
    (see :func:`hash_confirmation_code`) when the SM-DP+ set ccRequiredFlag."""
    body = (_der_element(smdp_signed2, 0x30, "smdpSigned2")
            + _as_tlv(b"\x5f\x37", smdp_signature2, "smdpSignature2"))
    if hash_cc is not None:
        if len(hash_cc) != 32:
            raise ValueError(f"hashCc must be 32 bytes, got {len(hash_cc)}")
        body += tlv(b"\x04", bytes(hash_cc))
    body += _der_element(smdp_certificate, 0x30, "smdpCertificate")
    command = _checked("PrepareDownloadRequest", tlv(b"\xbf\x21", body), "PrepareDownload")
    value, raw = _send(client, "PrepareDownload", command, "SGP32-PrepareDownloadResponse")
    kind, inner = value
    if kind == "downloadResponseError":
        code = inner["downloadErrorCode"]
        return PrepareDownloadResult(kind, inner["transactionId"], None, None, code,
                                     asn1_names().number_name(code, "DownloadErrorCode"), raw, value)
    signed = inner["euiccSigned2"] if kind == "downloadResponseOk" else inner["compactEuiccSigned2"]
    return PrepareDownloadResult(kind, signed.get("transactionId"), signed.get("euiccOtpk"),
                                 signed.get("hashCc"), None, None, raw, value)


# --- LoadBoundProfilePackage ----------------------------------------------------------------------------


@dataclass(frozen=True)
class BppSegment:
    """One ES10b.LoadBoundProfilePackage command: ``part`` names what it carries, ``data`` is sent as is."""

    part: str
    data: bytes


_BPP_LAYOUT = (  # container tag, name, element tag, optional
    (0xA0, "firstSequenceOf87", 0x87, False),
    (0xA1, "sequenceOf88", 0x88, False),
    (0xA2, "secondSequenceOf87", 0x87, True),
    (0xA3, "sequenceOf86", 0x86, False),
)


def _header(tlv: Tlv) -> bytes:
    return tlv.data[tlv.start:tlv.value_start]


def bpp_segments(bpp: bytes) -> list[BppSegment]:
    """Split a BoundProfilePackage (BF36) into the LoadBoundProfilePackage commands (SGP.22 §2.5.5,
    §5.7.6), in order:

    1. tag and length of BF36 plus the whole InitialiseSecureChannelRequest (BF23);
    2. tag and length of firstSequenceOf87 (A0) plus its first '87' (ConfigureISDP);
    3. tag and length of sequenceOf88 (A1), then each '88' (StoreMetadata);
    4. if present, tag and length of secondSequenceOf87 (A2) plus its first '87' (ReplaceSessionKeys);
    5. tag and length of sequenceOf86 (A3), then each '86' (profile elements).

    A further '87' in A0 or A2 (not produced by an SGP.22 SM-DP+) is sent as a command of its own.
    Raises :class:`ValueError` naming the first structural problem.
    """
    try:
        top = parse_single(bytes(bpp))
        if tag_int(top) != 0xBF36:
            raise ValueError(f"BoundProfilePackage must start with BF36, got {top.tag.hex().upper()}")
        parts = top.children()
    except TlvError as exc:
        raise ValueError(f"BoundProfilePackage is not valid BER-TLV: {exc}") from None
    if not parts or tag_int(parts[0]) != 0xBF23:
        raise ValueError("BoundProfilePackage must begin with initialiseSecureChannelRequest (BF23)")
    segments = [BppSegment("initialiseSecureChannelRequest", _header(top) + parts[0].raw)]
    rest = parts[1:]
    for container_tag, name, element_tag, optional in _BPP_LAYOUT:
        if not rest or tag_int(rest[0]) != container_tag:
            if optional:
                continue
            found = rest[0].tag.hex().upper() if rest else "the end"
            raise ValueError(f"BoundProfilePackage: expected {name} ({container_tag:02X}), found {found}")
        container, rest = rest[0], rest[1:]
        try:
            elements = container.children()
        except TlvError as exc:
            raise ValueError(f"BoundProfilePackage {name}: {exc}") from None
        if not elements:
            raise ValueError(f"BoundProfilePackage {name} ({container_tag:02X}) is empty")
        for element in elements:
            if tag_int(element) != element_tag:
                raise ValueError(f"BoundProfilePackage {name} holds tag {element.tag.hex().upper()}, "
                                 f"expected {element_tag:02X}")
        element_name = f"{name} '{element_tag:02X}'"
        if element_tag == 0x87:
            segments.append(BppSegment(f"{name} + first '87'", _header(container) + elements[0].raw))
            segments.extend(BppSegment(element_name, e.raw) for e in elements[1:])
        else:
            segments.append(BppSegment(f"{name} header", _header(container)))
            segments.extend(BppSegment(element_name, e.raw) for e in elements)
    if rest:
        raise ValueError(f"BoundProfilePackage: unexpected {rest[0].tag.hex().upper()} after sequenceOf86")
    return segments


@dataclass(frozen=True)
class ProfileInstallationResult(_Record):
    """ProfileInstallationResult (SGP.22 §5.7.6, BF37), returned after the last command or early on error.

    On success ``isdp_aid`` is set; on error ``bpp_command_id``/``error_reason`` carry the
    ErrorResult names (``configureISDP``, ``installFailedDueToIccidAlreadyExistsOnEuicc``...).
    ``segments_sent``/``segments_total`` show where the eUICC stopped; ``der`` is the signed result,
    also stored by the eUICC as the install notification with ``seq_number``.
    """

    success: bool
    transaction_id: bytes
    seq_number: int
    iccid: str | None
    notification_address: str
    smdp_oid: str
    isdp_aid: bytes | None
    bpp_command_id: str | None
    bpp_command_code: int | None
    error_reason: str | None
    error_reason_code: int | None
    segments_sent: int
    segments_total: int
    der: bytes = field(repr=False)

    @classmethod
    def from_der(cls, der: bytes, *, segments_sent: int = 0, segments_total: int = 0) -> "ProfileInstallationResult":
        try:
            value = asn1_decode("SGP32-ProfileInstallationResult", der)
        except Asn1Error as exc:
            raise Es10Error("LoadBoundProfilePackage", None, "malformedResponse", der=der, detail=str(exc)) from None
        data = value["profileInstallationResultData"]
        meta = data["notificationMetadata"]
        kind, final = data["finalResult"]
        names = asn1_names()
        command = reason = None
        if kind == "errorResult":
            command, reason = final["bppCommandId"], final["errorReason"]
        return cls(
            success=kind == "successResult",
            transaction_id=data["transactionId"],
            seq_number=meta["seqNumber"],
            iccid=iccid_from_bcd(meta["iccid"]) if "iccid" in meta else None,
            notification_address=meta["notificationAddress"],
            smdp_oid=data["smdpOid"],
            isdp_aid=final["aid"] if kind == "successResult" else None,
            bpp_command_id=names.number_name(command, "BppCommandId") if command is not None else None,
            bpp_command_code=command,
            error_reason=names.number_name(reason, "ErrorReason") if reason is not None else None,
            error_reason_code=reason,
            segments_sent=segments_sent,
            segments_total=segments_total,
            der=bytes(der),
        )

    def raise_for_error(self) -> None:
        if not self.success:
            raise Es10Error("LoadBoundProfilePackage", self.error_reason_code,
                            f"{self.error_reason} at {self.bpp_command_id}", der=self.der)


def load_bound_profile_package(client: Es10Client, bpp: bytes) -> ProfileInstallationResult:
    """ES10b.LoadBoundProfilePackage (SGP.22 §5.7.6): send the segments of :func:`bpp_segments`, each as
    its own ES10 command, stopping at the first that returns the ProfileInstallationResult (BF37)."""
    segments = bpp_segments(bpp)
    for number, segment in enumerate(segments, 1):
        raw = client.session.store_data(segment.data, function=f"LoadBoundProfilePackage ({segment.part})")
        if raw:
            if raw[:2] != b"\xbf\x37":
                raise Es10Error("LoadBoundProfilePackage", None, "malformedResponse", der=raw,
                                detail=f"after segment {number}/{len(segments)} ({segment.part}): "
                                       "expected ProfileInstallationResult (BF37)")
            return ProfileInstallationResult.from_der(raw, segments_sent=number, segments_total=len(segments))
    raise Es10Error("LoadBoundProfilePackage", None, "emptyResponse", der=b"",
                    detail=f"no ProfileInstallationResult after the last of {len(segments)} segments")


# --- CancelSession ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CancelSessionResult(_ErrorChoiceResult):
    """ES10b.CancelSession response (SGP.22 §5.7.14, SGP.32 §5.9 SGP32-CancelSessionResponse):
    ``der`` is what ES9+.CancelSession forwards, signed by the eUICC when ``ok``."""

    FUNCTION = "CancelSession"
    ERROR_KIND = "cancelSessionResponseError"

    kind: str
    transaction_id: bytes | None
    smdp_oid: str | None
    reason: str | None
    error_code: int | None
    error_name: str | None
    der: bytes = field(repr=False)


def cancel_session(client: Es10Client, transaction_id: bytes, reason: int | str) -> CancelSessionResult:
    """ES10b.CancelSession (SGP.22 §5.7.14) with a CancelSessionReason name (``undefinedReason``,
    ``loadBppExecutionError``...) or number."""
    if isinstance(reason, str):
        if reason not in CANCEL_SESSION_REASONS:
            raise ValueError(f"unknown CancelSessionReason {reason!r} (known: {', '.join(CANCEL_SESSION_REASONS)})")
        reason = CANCEL_SESSION_REASONS[reason]
    try:
        command = asn1_encode("CancelSessionRequest", {"transactionId": bytes(transaction_id), "reason": reason})
    except Asn1Error as exc:
        raise ValueError(f"CancelSession: {exc}") from None
    value, raw = _send(client, "CancelSession", command, "SGP32-CancelSessionResponse")
    kind, inner = value
    names = asn1_names()
    if kind == "cancelSessionResponseError":
        name = names.number_name(inner, "SGP32-CancelSessionResponse", "cancelSessionResponseError")
        return CancelSessionResult(kind, None, None, None, inner, name, raw)
    if kind == "cancelSessionResponseOk":
        signed = inner["euiccCancelSessionSigned"]
        return CancelSessionResult(kind, signed["transactionId"], signed["smdpOid"],
                                   names.number_name(signed["reason"], "CancelSessionReason"), None, None, raw)
    compact = inner["compactEuiccCancelSessionSigned"]
    shown = names.number_name(compact["reason"], "CancelSessionReason") if "reason" in compact else None
    return CancelSessionResult(kind, None, None, shown, None, None, raw)
