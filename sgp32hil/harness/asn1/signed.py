"""Extract the signed parts of RSP messages exactly as received.

Each function takes the DER of the enclosing message and returns a
:class:`SignedPart`: ``data`` is the byte string the signature covers (the raw
TLV of the signed structure, before any suffix the procedure appends) and
``signature`` the value of the sibling '5F37' object.
"""

from __future__ import annotations

from dataclasses import dataclass

from .tlv import Tlv, TlvError, parse_single

SIGNATURE = b"\x5f\x37"
SEQ = b"\x30"


@dataclass(frozen=True)
class SignedPart:
    data: bytes
    signature: bytes
    signature_tlv: bytes


def _pair(container: Tlv, signed_tags: tuple[bytes, ...], what: str) -> SignedPart:
    children = container.children()
    signed = next((c for c in children if c.tag in signed_tags), None)
    sig = next((c for c in children if c.tag == SIGNATURE), None)
    if signed is None or sig is None:
        missing = what if signed is None else "signature 5F37"
        raise TlvError(f"{missing} not found in {container.tag.hex().upper()}")
    return SignedPart(signed.raw, sig.value, sig.raw)


def _ok_alternative(der: bytes, top: bytes, alternatives: dict[bytes, str], message: str) -> tuple[Tlv, str]:
    outer = parse_single(der)
    if outer.tag != top:
        raise TlvError(f"{message}: expected tag {top.hex().upper()}, got {outer.tag.hex().upper()}")
    children = outer.children()
    if len(children) != 1:
        raise TlvError(f"{message}: expected one CHOICE alternative, found {len(children)}")
    alt = children[0]
    if alt.tag not in alternatives:
        raise TlvError(f"{message}: alternative {alt.tag.hex().upper()} carries no signature")
    return alt, alternatives[alt.tag]


def euicc_signed1(authenticate_server_response: bytes) -> SignedPart:
    """euiccSigned1 (or compactEuiccSigned1) and euiccSignature1 from
    AuthenticateServerResponse 'BF38' (SGP.22 5.7.13; SGP.32 compact form 'A2')."""
    alt, _ = _ok_alternative(authenticate_server_response, b"\xbf\x38",
                             {b"\xa0": "ok", b"\xa2": "compact"}, "AuthenticateServerResponse")
    return _pair(alt, (SEQ, b"\xa0"), "euiccSigned1")


def euicc_signed2(prepare_download_response: bytes) -> SignedPart:
    """euiccSigned2 (or compactEuiccSigned2) and euiccSignature2 from
    PrepareDownloadResponse 'BF21' (SGP.22 5.7.5). The signature also covers the
    smdpSignature2 TLV appended by the verifier."""
    alt, _ = _ok_alternative(prepare_download_response, b"\xbf\x21",
                             {b"\xa0": "ok", b"\xa2": "compact"}, "PrepareDownloadResponse")
    return _pair(alt, (SEQ,), "euiccSigned2")


def server_signed1(message: bytes) -> SignedPart:
    """serverSigned1 and serverSignature1 from AuthenticateServerRequest 'BF38'
    (SGP.22 5.7.13) or from an InitiateAuthentication response 'BF39' (ES9+ or ESipa)."""
    outer = parse_single(message)
    if outer.tag == b"\xbf\x38":
        return _pair(outer, (SEQ,), "serverSigned1")
    alt, _ = _ok_alternative(message, b"\xbf\x39", {b"\xa0": "ok"}, "InitiateAuthenticationResponse")
    return _pair(alt, (SEQ,), "serverSigned1")


def smdp_signed2(message: bytes) -> SignedPart:
    """smdpSigned2 and smdpSignature2 from PrepareDownloadRequest 'BF21' (SGP.22 5.7.5)
    or from an AuthenticateClient response 'BF3B' (ES9+ or ESipa OkDP)."""
    outer = parse_single(message)
    if outer.tag == b"\xbf\x21":
        return _pair(outer, (SEQ,), "smdpSigned2")
    alt, _ = _ok_alternative(message, b"\xbf\x3b", {b"\xa0": "ok"}, "AuthenticateClientResponse")
    return _pair(alt, (SEQ,), "smdpSigned2")


def euicc_package_signed(euicc_package_request: bytes) -> SignedPart:
    """euiccPackageSigned and eimSignature from EuiccPackageRequest 'BF51' (SGP.32 2.11.1)."""
    outer = parse_single(euicc_package_request)
    if outer.tag != b"\xbf\x51":
        raise TlvError(f"EuiccPackageRequest: expected tag BF51, got {outer.tag.hex().upper()}")
    return _pair(outer, (SEQ,), "euiccPackageSigned")


def euicc_package_result_signed(euicc_package_result: bytes) -> SignedPart:
    """euiccPackageResultDataSigned + euiccSignEPR, or euiccPackageErrorDataSigned +
    euiccSignEPE, from EuiccPackageResult 'BF51' (SGP.32 2.11.2). The unsigned error
    alternative 'A2' raises :class:`TlvError`."""
    alt, _ = _ok_alternative(euicc_package_result, b"\xbf\x51",
                             {b"\xa0": "result", b"\xa1": "error"}, "EuiccPackageResult")
    return _pair(alt, (SEQ,), "signed result data")


def profile_installation_result_data(profile_installation_result: bytes) -> SignedPart:
    """ProfileInstallationResultData 'BF27' and euiccSignPIR from
    ProfileInstallationResult 'BF37' (SGP.22 5.7.6)."""
    outer = parse_single(profile_installation_result)
    if outer.tag != b"\xbf\x37":
        raise TlvError(f"ProfileInstallationResult: expected tag BF37, got {outer.tag.hex().upper()}")
    return _pair(outer, (b"\xbf\x27",), "profileInstallationResultData")


def notification_metadata(other_signed_notification: bytes) -> SignedPart:
    """tbsOtherNotification 'BF2F' and euiccNotificationSignature from
    OtherSignedNotification (SGP.22 5.7.10) or its SGP.32 compact form."""
    outer = parse_single(other_signed_notification)
    return _pair(outer, (b"\xbf\x2f",), "tbsOtherNotification")


def euicc_cancel_session_signed(cancel_session_response: bytes) -> SignedPart:
    """euiccCancelSessionSigned and its signature from CancelSessionResponse 'BF41'
    (SGP.22 5.7.14; SGP.32 compact form 'A2')."""
    alt, _ = _ok_alternative(cancel_session_response, b"\xbf\x41",
                             {b"\xa0": "ok", b"\xa2": "compact"}, "CancelSessionResponse")
    return _pair(alt, (SEQ,), "euiccCancelSessionSigned")


def initialise_secure_channel_signed(initialise_secure_channel_request: bytes) -> SignedPart:
    """The data preceding smdpSign in InitialiseSecureChannelRequest 'BF23' (remoteOpId,
    transactionId, controlRefTemplate, smdpOtpk TLVs, concatenated as received) and
    smdpSign (SGP.22 5.5.1). The verifier appends the '5F49' euiccOtpk TLV."""
    outer = parse_single(initialise_secure_channel_request)
    if outer.tag != b"\xbf\x23":
        raise TlvError(
            f"InitialiseSecureChannelRequest: expected tag BF23, got {outer.tag.hex().upper()}")
    children = outer.children()
    index = next((i for i, c in enumerate(children) if c.tag == SIGNATURE), None)
    if index is None or index == 0:
        raise TlvError("InitialiseSecureChannelRequest: smdpSign 5F37 not found after the signed data")
    sig = children[index]
    data = outer.data[children[0].start:children[index - 1].end]
    return SignedPart(data, sig.value, sig.raw)



def association_token_tlv(association_token: int | None) -> bytes:
    """The associationToken data object '84' appended to signed eUICC Package data (SGP.32 v1.2 §2.11.1.1,
    §2.11.2.1); empty when the eIM has no association token."""
    if association_token is None:
        return b""
    if association_token < 0:
        raise ValueError("associationToken must not be negative")
    value = association_token.to_bytes(max(1, (association_token.bit_length() + 8) // 8), "big", signed=True)
    return b"\x84" + bytes([len(value)]) + value


def eim_signature_input(euicc_package_signed_der: bytes, association_token: int | None) -> bytes:
    """What eimSignature covers (SGP.32 v1.2 §2.11.1.1): the DER of euiccPackageSigned as sent, followed
    by the associationToken data object when one was assigned to the eIM."""
    return euicc_package_signed_der + association_token_tlv(association_token)


def euicc_result_signature_input(signed_data_der: bytes, association_token: int | None) -> bytes:
    """What euiccSignEPR / euiccSignEPE cover (SGP.32 v1.2 §2.11.2.1): euiccPackageResultDataSigned (or
    euiccPackageErrorDataSigned) as sent, followed by the eIM's associationToken data object if any.
    (SGP.32 v1.0 used eimSignature as the suffix; v1.1 changed it to the association token.)"""
    return signed_data_der + association_token_tlv(association_token)
