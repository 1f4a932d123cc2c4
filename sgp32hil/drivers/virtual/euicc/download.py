"""Profile download on the software eUICC: ES10b AuthenticateServer, PrepareDownload,
LoadBoundProfilePackage and CancelSession (SGP.22 v2.5 §3.1.2, §3.1.3, §5.7.5, §5.7.6, §5.7.13, §5.7.14;
SGP.32 v1.2 SGP32- response types and the fallbackAllowed metadata).

:class:`Downloader` holds the handlers :class:`~.isdr.IsdR` registers. Its volatile state is one
:class:`DownloadSession` in ``IsdR.session.download``, so a card reset drops it like the eUICC challenge.

Signatures are made and checked over exact bytes: serverSignature1 over the received serverSigned1,
smdpSignature2 over the received smdpSigned2 followed by the euiccSignature1 '5F37' object this eUICC
sent, euiccSignature2 over the encoded euiccSigned2 followed by the received smdpSignature2 object,
smdpSign over the received InitialiseSecureChannelRequest data followed by the '5F49' euiccOtpk object of
the sent euiccSigned2, euiccSignPIR over the encoded ProfileInstallationResultData.

Choices where SGP.22 leaves room (documented here, relied on by the tests):

- The one-time key pair of PrepareDownload is stored in the NVM (``EuiccState.download_otpk/otsk``) so
  that a download retried after a reset can reuse it when smdpSigned2.bppEuiccOtpk names it; it is
  replaced by the next fresh pair and erased once a ProfileInstallationResult ends a BPP load.
- PrepareDownload may be repeated within a session until the first BPP command arrives.
- A BPP command with no download session in the "prepared" (or loading) state gets SW 6A88 (referenced
  data not found); without a session there is no transactionId/SM-DP+ OID to sign a result with.
- CancelSession without a matching session answers invalidTransactionId, the only applicable code of the
  CancelSessionResponse error CHOICE.
- The profile is added to the NVM, disabled, only after the last '86' segment has been verified,
  decrypted and decoded; every failure, reset, CancelSession or new AuthenticateServer before that
  leaves no ISD-P behind. The ProfileInstallationResult (success or error) is stored as the pending
  install notification addressed to the SM-DP+ of the session (serverAddress).
- From the first BPP command on, a :class:`~.state.PendingInstall` marker in the NVM names the step in
  progress. A load that ends without a result (card reset, a restarted process, a new AuthenticateServer)
  is reported with errorReason installFailedDueToInterruption at the next reset or AuthenticateServer;
  CancelSession removes the marker (the SM-DP+ learns of that end through ES9+.CancelSession).
"""

from __future__ import annotations

import hmac
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ....harness import asn1, bsp, pki
from ....harness.saip import ProfileError, read_profile
from . import notifications
from .card import CardStatus
from .factory import bit_numbers, decode_iccid, encode_iccid
from .isdr import (
    CLASS_NAMES,
    FORBIDDEN_PPRS,
    NVM_BYTES,
    PPR_BITS,
    PROFILE_FOOTPRINT,
    MalformedRequest,
    _decode_request,
    _tag_at,
)
from .state import EuiccState, Notification, NotificationConfig, PendingInstall, Profile

if TYPE_CHECKING:
    from .isdr import IsdR

log = logging.getLogger(__name__)

SW_NO_SESSION = 0x6A88

# AuthenticateErrorCode / DownloadErrorCode (SGP.22 §5.7.13, §5.7.5)
INVALID_CERTIFICATE = 1
INVALID_SIGNATURE = 2
UNSUPPORTED_CURVE = 3
NO_SESSION_CONTEXT = 4
INVALID_TRANSACTION_ID_DOWNLOAD = 5
INVALID_OID = 5
EUICC_CHALLENGE_MISMATCH = 6
CI_PK_UNKNOWN = 7
UNDEFINED_ERROR = 127

# CancelSessionResponse error (SGP.22 §5.7.14)
CANCEL_INVALID_TRANSACTION_ID = 5

# BppCommandId and ErrorReason (SGP.22 §5.7.6)
INITIALISE_SECURE_CHANNEL = 0
CONFIGURE_ISDP = 1
STORE_METADATA = 2
REPLACE_SESSION_KEYS = 4
LOAD_PROFILE_ELEMENTS = 5

INCORRECT_INPUT_VALUES = 1
INVALID_SIGNATURE_BPP = 2
INVALID_TRANSACTION_ID = 3
UNSUPPORTED_CRT_VALUES = 4
UNSUPPORTED_REMOTE_OPERATION_TYPE = 5
UNSUPPORTED_PROFILE_CLASS = 6
SCP03T_STRUCTURE_ERROR = 7
SCP03T_SECURITY_ERROR = 8
ICCID_ALREADY_EXISTS = 9
INSUFFICIENT_MEMORY = 10
INSTALL_INTERRUPTED = 11
PE_PROCESSING_ERROR = 12
DATA_MISMATCH = 13
PPR_NOT_ALLOWED = 15

INSTALL_BOUND_PROFILE_PACKAGE = 1
KEY_TYPE_AES = b"\x88"
KEY_LENGTH_16 = b"\x10"

PE_STATUS_OK = 0
PE_STATUS_BAD_VALUES = 3

TAG_BPP = b"\xbf\x36"
TAG_ISC = b"\xbf\x23"
TAG_FIRST_87 = b"\xa0"
TAG_METADATA = b"\xa1"
TAG_SECOND_87 = b"\xa2"
TAG_PROFILE = b"\xa3"
TAG_87 = b"\x87"
TAG_88 = b"\x88"
TAG_86 = b"\x86"
OTPK_TAG = b"\x5f\x49"
SEGMENT_TAGS = (TAG_FIRST_87, TAG_METADATA, TAG_SECOND_87, TAG_PROFILE, TAG_87, TAG_88, TAG_86)
"""Top-level tags of the LoadBoundProfilePackage commands after the first (BF36) one."""

PPR_NAMES = {bit: name for name, bit in PPR_BITS.items()}


class InstallFailure(Exception):
    """A BPP command failed: ``command`` is the BppCommandId, ``reason`` the ErrorReason."""

    def __init__(self, command: int, reason: int, detail: str, sima_response: bytes | None = None):
        super().__init__(detail)
        self.command = command
        self.reason = reason
        self.sima_response = sima_response


@dataclass
class BppLoad:
    """Progress through one Bound Profile Package (SGP.22 §2.5.5): which command comes next and what
    the verified commands delivered so far (nothing of it is in the NVM yet)."""

    verifier: bsp.BspVerifier
    expect: str = "A0"
    bpp_left: int = 0
    container_left: int = 0
    metadata_der: bytearray = field(default_factory=bytearray)
    metadata: dict | None = None
    iccid: str = ""
    package: bytearray = field(default_factory=bytearray)


@dataclass
class DownloadSession:
    """The volatile RSP session of SGP.22 §3.1.2/§3.1.3 between AuthenticateServer and the end of the
    BPP load (``phase``: authenticated, prepared, loading)."""

    transaction_id: bytes
    server_address: str
    server_challenge: bytes
    ctx_params1: tuple
    dp_auth: x509.Certificate
    smdp_oid: str
    euicc_signature1_tlv: bytes
    phase: str = "authenticated"
    dp_pb: x509.Certificate | None = None
    euicc_otpk_tlv: bytes = b""
    one_time: pki.KeyPair | None = None
    load: BppLoad | None = None


def smdp_oid(cert: x509.Certificate) -> str | None:
    """The SM-DP+ OID of CERT.DPauth/CERT.DPpb: the registeredID of its subjectAltName (SGP.22 §4.5.2.1)."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    ids = san.get_values_for_type(x509.RegisteredID)
    return ids[0].dotted_string if ids else None


def _container_header(command: bytes, tag: bytes) -> tuple[int, int]:
    """Size of the tag+length header at the start of ``command`` and the length it declares, for a
    constructed BPP object whose value continues in later commands (X.690 §8.1.3 definite form);
    :class:`~.isdr.MalformedRequest` when the header is not one."""
    if _tag_at(command, 0) != tag:
        raise MalformedRequest(f"expected tag {tag.hex().upper()}")
    pos = len(tag)
    if pos >= len(command):
        raise MalformedRequest("length missing")
    first = command[pos]
    if first < 0x80:
        return pos + 1, first
    count = first & 0x7F
    if not 1 <= count <= 3 or pos + 1 + count > len(command):
        raise MalformedRequest("unsupported or truncated length")
    length = int.from_bytes(command[pos + 1:pos + 1 + count], "big")
    if length < 0x80 or command[pos + 1] == 0:
        raise MalformedRequest("non-minimal length")
    return pos + 1 + count, length


def _operator_matches(rule_mcc_mnc: bytes, gid1: bytes, gid2: bytes, owner: dict) -> bool:
    """RAT OperatorId matching (SGP.22 §2.9.2.2): nibble 'E' in the rule's MCC/MNC is a wildcard,
    GID1/GID2 must be equal when the rule gives them."""
    mine = owner["mccMnc"].hex().upper()
    for want, have in zip(rule_mcc_mnc.hex().upper(), mine, strict=True):
        if want != "E" and want != have:
            return False
    return (not gid1 or owner.get("gid1") == gid1) and (not gid2 or owner.get("gid2") == gid2)


class Downloader:
    """The ES10b download functions of one :class:`~.isdr.IsdR` (handlers registered by it)."""

    def __init__(self, isdr: IsdR):
        self.isdr = isdr

    # ------------------------------------------------------------------------------------------
    # helpers

    @property
    def session(self) -> DownloadSession | None:
        return self.isdr.session.download

    @session.setter
    def session(self, value: DownloadSession | None) -> None:
        self.isdr.session.download = value

    @property
    def _key(self) -> ec.EllipticCurvePrivateKey:
        return self.isdr._key

    def _trusted_cis(self) -> list[x509.Certificate]:
        return [x509.load_der_x509_certificate(c) for c in self.isdr.state.ci_certs]

    def _verify_cert(self, der: bytes, role: pki.Role) -> tuple[x509.Certificate | None, int]:
        """``(certificate, 0)`` when ``der`` chains to a CI of the eUICC with ``role``, else
        ``(None, error code)``: unsupportedCurve or invalidCertificate (SGP.22 §5.7.13, §5.7.5)."""
        try:
            chain = pki.verify_chain(der, [], self._trusted_cis(), role=role)
        except pki.ChainError as exc:
            log.info("%s certificate rejected: %s", role.value, exc)
            if exc.reason is pki.ChainReason.UNSUPPORTED_CURVE:
                return None, UNSUPPORTED_CURVE
            return None, INVALID_CERTIFICATE
        except ValueError as exc:
            log.info("%s certificate unreadable: %s", role.value, exc)
            return None, INVALID_CERTIFICATE
        return chain.leaf, 0

    def _free_memory(self, state: EuiccState) -> int:
        return NVM_BYTES - sum(PROFILE_FOOTPRINT + len(p.package) for p in state.profiles)

    # ------------------------------------------------------------------------------------------
    # AuthenticateServer

    def authenticate_server(self, command: bytes) -> tuple[str, Any]:
        """ES10b.AuthenticateServer (SGP.22 §5.7.13, SGP.32 SGP32-AuthenticateServerResponse).

        Checks in order: an eUICC challenge exists (noSessionContext), CERT.DPauth chains to a trusted CI
        with the DPauth role (invalidCertificate, unsupportedCurve) and carries an SM-DP+ OID (invalidOid),
        serverSignature1 over the received serverSigned1 (invalidSignature), serverSigned1.euiccChallenge
        (euiccChallengeMismatch), euiccCiPKIdToBeUsed among the signing CIs (ciPKUnknown). The challenge
        is used up by the attempt; a previous download session is dropped either way.
        Returns authenticateResponseOk {euiccSigned1, euiccSignature1, CERT.EUICC, CERT.EUM} or
        authenticateResponseError {transactionId, code}.
        """
        request = _decode_strict("AuthenticateServerRequest", command)
        signed = asn1.server_signed1(command)
        server_signed1 = request["serverSigned1"]
        transaction_id = server_signed1["transactionId"]
        challenge, self.isdr.session.euicc_challenge = self.isdr.session.euicc_challenge, None
        self.session = None
        self.report_interruption()

        def error(code: int) -> tuple[str, Any]:
            return "authenticateResponseError", {"transactionId": transaction_id, "authenticateErrorCode": code}

        if challenge is None:
            return error(NO_SESSION_CONTEXT)
        dp_auth, code = self._verify_cert(asn1.raw_field(command, ["BF38", 3]), pki.Role.DP_AUTH)
        if dp_auth is None:
            return error(code)
        oid = smdp_oid(dp_auth)
        if oid is None:
            return error(INVALID_OID)
        if not pki.verify_plain(dp_auth.public_key(), signed.data, signed.signature):
            return error(INVALID_SIGNATURE)
        if not hmac.compare_digest(server_signed1["euiccChallenge"], challenge):
            return error(EUICC_CHALLENGE_MISMATCH)
        if request["euiccCiPKIdToBeUsed"] not in self.isdr.ci_pkids_signing:
            return error(CI_PK_UNKNOWN)

        euicc_signed1 = {
            "transactionId": transaction_id,
            "serverAddress": server_signed1["serverAddress"],
            "serverChallenge": server_signed1["serverChallenge"],
            "euiccInfo2": self.isdr.get_euicc_info2({}),
            "ctxParams1": request["ctxParams1"],
        }
        signature = pki.sign_plain(self._key, asn1.encode("SGP32-EuiccSigned1", euicc_signed1))
        response = ("authenticateResponseOk", {
            "euiccSigned1": euicc_signed1,
            "euiccSignature1": signature,
            "euiccCertificate": notifications.certificate(self.isdr.state.euicc_cert),
            "eumCertificate": notifications.certificate(self.isdr.state.eum_cert),
        })
        sent = asn1.euicc_signed1(asn1.encode("SGP32-AuthenticateServerResponse", response))
        self.session = DownloadSession(
            transaction_id=transaction_id,
            server_address=server_signed1["serverAddress"],
            server_challenge=server_signed1["serverChallenge"],
            ctx_params1=request["ctxParams1"],
            dp_auth=dp_auth,
            smdp_oid=oid,
            euicc_signature1_tlv=sent.signature_tlv,
        )
        return response

    # ------------------------------------------------------------------------------------------
    # PrepareDownload

    def prepare_download(self, command: bytes) -> tuple[str, Any]:
        """ES10b.PrepareDownload (SGP.22 §5.7.5, §3.1.3.2).

        Checks in order: an authenticated session (noSessionContext; only smdpSigned2 is decoded
        before this check, for its transactionId), CERT.DPpb chains to a trusted CI
        with the DPpb role and has the SM-DP+ OID of CERT.DPauth (invalidCertificate, unsupportedCurve),
        smdpSignature2 over smdpSigned2 || euiccSignature1 TLV (invalidSignature), the transactionId
        (invalidTransactionId), hashCc present when ccRequiredFlag is set (undefinedError). Any error ends
        the session. Then the one-time key pair: the stored one when bppEuiccOtpk names its public key,
        else a fresh pair on the curve of CERT.DPpb, persisted before the answer.
        Returns downloadResponseOk {euiccSigned2 {transactionId, euiccOtpk, hashCc?}, euiccSignature2 over
        euiccSigned2 || smdpSignature2 TLV} or downloadResponseError {transactionId, code}.
        """
        signed = asn1.smdp_signed2(command)
        smdp_signed2 = _decode_strict("SmdpSigned2", signed.data)
        transaction_id = smdp_signed2["transactionId"]
        session = self.session

        def error(code: int) -> tuple[str, Any]:
            self.session = None
            return "downloadResponseError", {"transactionId": transaction_id, "downloadErrorCode": code}

        if session is None or session.phase not in ("authenticated", "prepared"):
            return error(NO_SESSION_CONTEXT)
        request = _decode_strict("PrepareDownloadRequest", command)
        certificates = [c for c in asn1.parse_single(command).children() if c.tag == b"\x30"]
        dp_pb, code = self._verify_cert(certificates[-1].raw, pki.Role.DP_PB)
        if dp_pb is None:
            return error(code)
        if smdp_oid(dp_pb) != session.smdp_oid:
            log.info("CERT.DPpb OID %s differs from CERT.DPauth OID %s", smdp_oid(dp_pb), session.smdp_oid)
            return error(INVALID_CERTIFICATE)
        if not pki.verify_plain(dp_pb.public_key(), signed.data + session.euicc_signature1_tlv, signed.signature):
            return error(INVALID_SIGNATURE)
        if transaction_id != session.transaction_id:
            return error(INVALID_TRANSACTION_ID_DOWNLOAD)
        hash_cc = request.get("hashCc")
        if smdp_signed2["ccRequiredFlag"] and hash_cc is None:
            return error(UNDEFINED_ERROR)

        curve = pki.Curve.of(dp_pb.public_key())
        one_time = self._one_time_key(smdp_signed2.get("bppEuiccOtpk"), curve)
        euicc_signed2: dict[str, Any] = {"transactionId": transaction_id, "euiccOtpk": one_time.public_bytes}
        if smdp_signed2["ccRequiredFlag"]:
            euicc_signed2["hashCc"] = hash_cc
        encoded = asn1.encode("EUICCSigned2", euicc_signed2)
        signature = pki.sign_plain(self._key, encoded + signed.signature_tlv)
        session.phase = "prepared"
        session.dp_pb = dp_pb
        session.one_time = one_time
        session.euicc_otpk_tlv = asn1.raw_field(encoded, ["30", OTPK_TAG])
        return "downloadResponseOk", {"euiccSigned2": euicc_signed2, "euiccSignature2": signature}

    def _one_time_key(self, bpp_euicc_otpk: bytes | None, curve: pki.Curve) -> pki.KeyPair:
        """otSK/otPK.EUICC.ECKA (SGP.22 §3.1.3.2): reuse the stored pair when the SM-DP+ names its public
        key in bppEuiccOtpk (and it is on ``curve``), otherwise generate and persist a new pair."""
        state = self.isdr.state
        if bpp_euicc_otpk and state.download_otsk and hmac.compare_digest(bpp_euicc_otpk, state.download_otpk):
            key = serialization.load_der_private_key(state.download_otsk, password=None)
            if isinstance(key, ec.EllipticCurvePrivateKey) and pki.Curve.of(key) is curve:
                return pki.KeyPair(key)
        one_time = pki.KeyPair.generate(curve)
        draft = self.isdr._draft()
        draft.download_otpk = one_time.public_bytes
        draft.download_otsk = one_time.private_key.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        self.isdr._commit(draft)
        return one_time

    # ------------------------------------------------------------------------------------------
    # CancelSession

    def cancel_session(self, request: dict) -> tuple[str, Any]:
        """ES10b.CancelSession (SGP.22 §5.7.14): with a session of that transactionId, ends it (any
        pending ISD-P is discarded) and returns cancelSessionResponseOk {euiccCancelSessionSigned
        {transactionId, smdpOid of CERT.DPauth, reason}, signature}; otherwise invalidTransactionId."""
        session = self.session
        if session is None or not hmac.compare_digest(request["transactionId"], session.transaction_id):
            return "cancelSessionResponseError", CANCEL_INVALID_TRANSACTION_ID
        self.session = None
        if self.isdr.state.pending_install is not None:
            draft = self.isdr._draft()
            draft.pending_install = None
            self.isdr._commit(draft)
        signed = {"transactionId": session.transaction_id, "smdpOid": session.smdp_oid, "reason": request["reason"]}
        signature = pki.sign_plain(self._key, asn1.encode("EuiccCancelSessionSigned", signed))
        return "cancelSessionResponseOk", {"euiccCancelSessionSigned": signed, "euiccCancelSessionSignature": signature}

    # ------------------------------------------------------------------------------------------
    # LoadBoundProfilePackage

    def load_segment(self, command: bytes) -> bytes:
        """One ES10b.LoadBoundProfilePackage command (SGP.22 §5.7.6, segmentation of §2.5.5).

        Returns b"" (SW 9000, no data) for every command but the last, and the DER of the signed
        ProfileInstallationResult (BF37) after the last '86' or at the first failing command; the
        result is also stored as the pending install notification. SW 6A88 when no download session
        expects BPP commands.
        """
        session = self.session
        first = command[:2] == TAG_BPP
        if session is None or session.phase != ("prepared" if first else "loading"):
            raise CardStatus(SW_NO_SESSION, "no download session expects this BPP command")
        if first:
            session.load = None
            session.phase = "loading"
        try:
            done = self._initialise(session, command) if first else self._step(session, session.load, command)
        except InstallFailure as failure:
            log.info("BPP command failed: %s (bppCommandId %d, errorReason %d)", failure, failure.command,
                     failure.reason)
            return self._finish(session, failure=failure)
        if done:
            return self._finish(session)
        return b""

    def _initialise(self, session: DownloadSession, command: bytes) -> bool:
        """BF36 header + InitialiseSecureChannelRequest (SGP.22 §5.5.1): remoteOpId, transactionId, CRT,
        smdpSign over the received data || '5F49' euiccOtpk; ECKA with smdpOtpk and the KDF."""
        fail = INITIALISE_SECURE_CHANNEL
        try:
            header, bpp_length = _container_header(command, TAG_BPP)
            isc_tlv = asn1.parse_single(command[header:])
            if isc_tlv.tag != TAG_ISC:
                raise InstallFailure(fail, SCP03T_STRUCTURE_ERROR, "InitialiseSecureChannelRequest expected")
            isc = _decode_strict("InitialiseSecureChannelRequest", isc_tlv.raw)
            signed = asn1.initialise_secure_channel_signed(isc_tlv.raw)
        except (asn1.Asn1Error, MalformedRequest) as exc:
            raise InstallFailure(fail, SCP03T_STRUCTURE_ERROR, str(exc)) from None
        if isc["remoteOpId"] != INSTALL_BOUND_PROFILE_PACKAGE:
            raise InstallFailure(fail, UNSUPPORTED_REMOTE_OPERATION_TYPE, f"remoteOpId {isc['remoteOpId']}")
        if not hmac.compare_digest(isc["transactionId"], session.transaction_id):
            raise InstallFailure(fail, INVALID_TRANSACTION_ID, "transactionId of another session")
        crt = isc["controlRefTemplate"]
        if crt["keyType"] != KEY_TYPE_AES or crt["keyLen"] != KEY_LENGTH_16:
            raise InstallFailure(fail, UNSUPPORTED_CRT_VALUES, f"keyType {crt['keyType'].hex()} keyLen {crt['keyLen'].hex()}")
        if not pki.verify_plain(session.dp_pb.public_key(), signed.data + session.euicc_otpk_tlv, signed.signature):
            raise InstallFailure(fail, INVALID_SIGNATURE_BPP, "smdpSign does not verify with CERT.DPpb")
        try:
            keys = bsp.session_keys_from_ecka(session.one_time, isc["smdpOtpk"], host_id=crt["hostId"],
                                              eid=self.isdr.state.eid)
        except bsp.BspError as exc:
            raise InstallFailure(fail, int(exc.reason), str(exc)) from None
        session.load = BppLoad(bsp.BspVerifier(keys), bpp_left=bpp_length - len(isc_tlv.raw))
        self._mark(session, CONFIGURE_ISDP)
        return False

    def _mark(self, session: DownloadSession, next_command: int) -> None:
        """Persist the :class:`~.state.PendingInstall` marker: the BppCommandId an interruption from now
        on is reported against, and the ICCID once the metadata named it."""
        draft = self.isdr._draft()
        draft.pending_install = PendingInstall(session.transaction_id, smdp_oid(session.dp_pb), session.server_address,
                                               next_command, session.load.iccid)
        self.isdr._commit(draft)

    def report_interruption(self) -> None:
        """A BPP load that ended without a ProfileInstallationResult (reset, power loss, new session):
        store the signed result errorResult {bppCommandId of the interrupted step,
        installFailedDueToInterruption} as install notification (SGP.22 §5.7.6). The one-time key pair
        stays for a same-otPK retry."""
        marker = self.isdr.state.pending_install
        if marker is None or (self.session is not None and self.session.phase == "loading"):
            return
        draft = self.isdr._draft()
        draft.pending_install = None
        self._installation_result(draft, marker.transaction_id, marker.smdp_oid, marker.address, marker.iccid,
                                  ("errorResult", {"bppCommandId": marker.bpp_command,
                                                   "errorReason": INSTALL_INTERRUPTED}))
        self.isdr._commit(draft)

    def _container(self, load: BppLoad, command: bytes, tag: bytes, bpp_command: int) -> tuple[int, int]:
        try:
            header, length = _container_header(command, tag)
        except MalformedRequest as exc:
            raise InstallFailure(bpp_command, SCP03T_STRUCTURE_ERROR, str(exc)) from None
        load.bpp_left -= header + length
        if length == 0 or load.bpp_left < 0:
            raise InstallFailure(bpp_command, SCP03T_STRUCTURE_ERROR, f"{tag.hex().upper()} does not fit the BPP")
        return header, length

    def _single_87(self, load: BppLoad, command: bytes, tag: bytes, bpp_command: int) -> bytes:
        """A0/A2 header plus its only '87' segment, verified and decrypted."""
        header, length = self._container(load, command, tag, bpp_command)
        if len(command) - header != length:
            raise InstallFailure(bpp_command, SCP03T_STRUCTURE_ERROR,
                                 f"{tag.hex().upper()} must hold exactly one '87' in this command")
        return self._unwrap(load, command[header:], TAG_87, True, bpp_command)

    @staticmethod
    def _unwrap(load: BppLoad, segment: bytes, tag: bytes, encrypted: bool, bpp_command: int) -> bytes:
        try:
            return load.verifier.unwrap(segment, encrypted, expected_tag=tag)
        except bsp.BspError as exc:
            raise InstallFailure(bpp_command, int(exc.reason), str(exc)) from None

    def _step(self, session: DownloadSession, load: BppLoad, command: bytes) -> bool:
        """The commands after BF23, in the order of SGP.22 §2.5.5; True once the last '86' is in."""
        try:
            tag = _tag_at(command, 0)
        except MalformedRequest as exc:
            raise InstallFailure(LOAD_PROFILE_ELEMENTS, SCP03T_STRUCTURE_ERROR, str(exc)) from None
        expected = {"A0": (TAG_FIRST_87,), "A1": (TAG_METADATA,), "88": (TAG_88,),
                    "A2/A3": (TAG_SECOND_87, TAG_PROFILE), "A3": (TAG_PROFILE,), "86": (TAG_86,)}[load.expect]
        bpp_command = {"A0": CONFIGURE_ISDP, "A1": STORE_METADATA, "88": STORE_METADATA,
                       "A2/A3": REPLACE_SESSION_KEYS if tag == TAG_SECOND_87 else LOAD_PROFILE_ELEMENTS,
                       "A3": LOAD_PROFILE_ELEMENTS, "86": LOAD_PROFILE_ELEMENTS}[load.expect]
        if tag not in expected:
            raise InstallFailure(bpp_command, SCP03T_STRUCTURE_ERROR,
                                 f"{tag.hex().upper()} where {'/'.join(t.hex().upper() for t in expected)} was expected")
        if tag == TAG_FIRST_87:
            self._configure_isdp(load, self._single_87(load, command, tag, CONFIGURE_ISDP))
            load.expect = "A1"
            self._mark(session, STORE_METADATA)
        elif tag == TAG_METADATA:
            header, load.container_left = self._container(load, command, tag, STORE_METADATA)
            if len(command) != header:
                raise InstallFailure(STORE_METADATA, SCP03T_STRUCTURE_ERROR, "A1 header must come alone")
            load.expect = "88"
        elif tag == TAG_88:
            load.container_left -= len(command)
            if load.container_left < 0:
                raise InstallFailure(STORE_METADATA, SCP03T_STRUCTURE_ERROR, "'88' overruns sequenceOf88")
            load.metadata_der += self._unwrap(load, command, TAG_88, False, STORE_METADATA)
            if load.container_left == 0:
                self._store_metadata(session, load)
                load.expect = "A2/A3"
                self._mark(session, LOAD_PROFILE_ELEMENTS)
        elif tag == TAG_SECOND_87:
            keys = self._single_87(load, command, tag, REPLACE_SESSION_KEYS)
            try:
                _decode_request("ReplaceSessionKeysRequest", keys)
                new = bsp.parse_replace_session_keys(keys)
            except MalformedRequest as exc:
                raise InstallFailure(REPLACE_SESSION_KEYS, INCORRECT_INPUT_VALUES, str(exc)) from None
            except bsp.BspError as exc:
                raise InstallFailure(REPLACE_SESSION_KEYS, int(exc.reason), str(exc)) from None
            load.verifier.replace_session_keys(new.s_enc, new.s_mac, new.initial_mcv)
            load.expect = "A3"
        elif tag == TAG_PROFILE:
            header, load.container_left = self._container(load, command, tag, LOAD_PROFILE_ELEMENTS)
            if len(command) != header:
                raise InstallFailure(LOAD_PROFILE_ELEMENTS, SCP03T_STRUCTURE_ERROR, "A3 header must come alone")
            if self._free_memory(self.isdr.state) < PROFILE_FOOTPRINT + load.container_left:
                raise InstallFailure(LOAD_PROFILE_ELEMENTS, INSUFFICIENT_MEMORY,
                                     f"{load.container_left} bytes of profile elements do not fit")
            load.expect = "86"
        else:
            load.container_left -= len(command)
            if load.container_left < 0:
                raise InstallFailure(LOAD_PROFILE_ELEMENTS, SCP03T_STRUCTURE_ERROR, "'86' overruns sequenceOf86")
            load.package += self._unwrap(load, command, TAG_86, True, LOAD_PROFILE_ELEMENTS)
            if load.container_left == 0:
                if load.bpp_left:
                    raise InstallFailure(LOAD_PROFILE_ELEMENTS, SCP03T_STRUCTURE_ERROR,
                                         f"{load.bpp_left} bytes of BF36 after sequenceOf86")
                return True
        return False

    def _configure_isdp(self, load: BppLoad, plain: bytes) -> None:
        """ConfigureISDPRequest BF24 (SGP.22 §5.5.2): the ISD-P is reserved when memory allows; it gets its
        AID and enters the NVM only with the complete profile (:meth:`_finish`)."""
        try:
            _decode_request("ConfigureISDPRequest", plain)
        except MalformedRequest as exc:
            raise InstallFailure(CONFIGURE_ISDP, INCORRECT_INPUT_VALUES, str(exc)) from None
        if self._free_memory(self.isdr.state) < PROFILE_FOOTPRINT:
            raise InstallFailure(CONFIGURE_ISDP, INSUFFICIENT_MEMORY, "no room for another ISD-P")

    def _store_metadata(self, session: DownloadSession, load: BppLoad) -> None:
        """StoreMetadataRequest BF25 (SGP.22 §5.5.3; SGP.32 fallbackAllowed): the ICCID must be new
        (installFailedDueToIccidAlreadyExistsOnEuicc) and the PPRs allowed by the RAT (pprNotAllowed)."""
        try:
            metadata = _decode_strict("SGP32-StoreMetadataRequest", bytes(load.metadata_der))
            iccid = decode_iccid(metadata["iccid"])
        except (MalformedRequest, ValueError) as exc:
            raise InstallFailure(STORE_METADATA, INCORRECT_INPUT_VALUES, str(exc)) from None
        load.metadata, load.iccid = metadata, iccid
        if _profile_class(metadata) is None:
            raise InstallFailure(STORE_METADATA, UNSUPPORTED_PROFILE_CLASS, f"profileClass {metadata['profileClass']}")
        if self.isdr.state.profile(iccid) is not None:
            raise InstallFailure(STORE_METADATA, ICCID_ALREADY_EXISTS, f"ICCID {iccid} is installed")
        if not self._pprs_allowed(metadata):
            raise InstallFailure(STORE_METADATA, PPR_NOT_ALLOWED, "profile policy rules not allowed by the RAT")

    def _pprs_allowed(self, metadata: dict) -> bool:
        """SGP.22 §2.9.2.2: every PPR set must be allowed for the profile owner by a RAT rule and not be
        forbidden by the eUICC (forbiddenProfilePolicyRules)."""
        pprs = {PPR_NAMES.get(bit, f"bit{bit}") for bit in bit_numbers(metadata.get("profilePolicyRules", (b"", 0)))}
        pprs.discard("pprUpdateControl")
        if not pprs:
            return True
        owner = metadata.get("profileOwner")
        if owner is None or pprs & set(FORBIDDEN_PPRS):
            return False
        for ppr in pprs:
            if not any(ppr in rule.pprs and any(_operator_matches(op.mcc_mnc, op.gid1, op.gid2, owner)
                                                for op in rule.allowed_operators)
                       for rule in self.isdr.state.rat):
                return False
        return True

    def _profile(self, session: DownloadSession, load: BppLoad) -> Profile:
        """The Profile the verified BPP describes; PE or data-mismatch failures raise :class:`InstallFailure`."""
        try:
            summary = read_profile(bytes(load.package))
        except ProfileError as exc:
            aborted = _sima_response(PE_STATUS_BAD_VALUES, aborted=True)
            raise InstallFailure(LOAD_PROFILE_ELEMENTS, PE_PROCESSING_ERROR, str(exc), aborted) from None
        if summary.iccid != load.iccid:
            raise InstallFailure(LOAD_PROFILE_ELEMENTS, DATA_MISMATCH,
                                 f"profile header ICCID {summary.iccid} differs from the metadata ICCID {load.iccid}")
        meta = load.metadata
        owner = meta.get("profileOwner") or {}
        return Profile(
            iccid=load.iccid,
            isdp_aid=b"",
            service_provider_name=meta["serviceProviderName"],
            profile_name=meta["profileName"],
            profile_class=_profile_class(meta),
            icon_type=meta.get("iconType"),
            icon=meta.get("icon", b""),
            owner_mcc_mnc=owner.get("mccMnc", b""),
            owner_gid1=owner.get("gid1", b""),
            owner_gid2=owner.get("gid2", b""),
            policy_rules=sorted(PPR_NAMES[b] for b in bit_numbers(meta.get("profilePolicyRules", (b"", 0)))
                                if b in PPR_NAMES),
            notification_config=[
                NotificationConfig(sorted(notifications.events_of(c["profileManagementOperation"])),
                                   c["notificationAddress"])
                for c in meta.get("notificationConfigurationInfo", [])],
            imsi=summary.imsi or "",
            apn=summary.apn or "",
            package=bytes(load.package),
            smdp_address=session.server_address,
            fallback_allowed=meta.get("fallbackAllowed"),
        )

    def _finish(self, session: DownloadSession, failure: InstallFailure | None = None) -> bytes:
        """End the BPP load: install the profile (success) or not, store the signed
        ProfileInstallationResult as pending notification, erase the one-time key, persist atomically."""
        self.session = None
        load = session.load
        draft = self.isdr._draft()
        profile = None
        if failure is None:
            try:
                profile = self._profile(session, load)
            except InstallFailure as exc:
                failure = exc
        if profile is not None:
            if self._free_memory(draft) < PROFILE_FOOTPRINT + len(profile.package):
                failure, profile = InstallFailure(LOAD_PROFILE_ELEMENTS, INSUFFICIENT_MEMORY, "NVM full"), None
            else:
                profile.isdp_aid = draft.allocate_isdp_aid()
                draft.profiles.append(profile)
        if failure is None:
            final = ("successResult", {"aid": profile.isdp_aid, "simaResponse": _sima_response(PE_STATUS_OK)})
        else:
            error: dict[str, Any] = {"bppCommandId": failure.command, "errorReason": failure.reason}
            if failure.sima_response is not None:
                error["simaResponse"] = failure.sima_response
            final = ("errorResult", error)
        iccid = load.iccid if load is not None else ""
        pir = self._installation_result(draft, session.transaction_id, smdp_oid(session.dp_pb),
                                        session.server_address, iccid, final)
        draft.download_otpk = draft.download_otsk = b""
        draft.pending_install = None
        self.isdr._commit(draft)
        if failure is None:
            self.isdr.session.installed_iccid = profile.iccid
        return pir

    def _installation_result(self, draft: EuiccState, transaction_id: bytes, oid: str, address: str, iccid: str,
                             final: tuple[str, dict]) -> bytes:
        """ProfileInstallationResult BF37 (SGP.22 §5.7.6) signed over the encoded
        ProfileInstallationResultData, appended to ``draft`` as the install notification."""
        seq = draft.next_notification_seq
        draft.next_notification_seq += 1
        metadata: dict[str, Any] = {"seqNumber": seq, "profileManagementOperation": notifications.event_bits(["install"]),
                                    "notificationAddress": address}
        if iccid:
            metadata["iccid"] = encode_iccid(iccid)
        data = {"transactionId": transaction_id, "notificationMetadata": metadata, "smdpOid": oid,
                "finalResult": final}
        signature = pki.sign_plain(self._key, asn1.encode("ProfileInstallationResultData", data))
        der = asn1.encode("SGP32-ProfileInstallationResult",
                          {"profileInstallationResultData": data, "euiccSignPIR": signature})
        draft.notifications.append(Notification(seq_number=seq, event="install", address=address, iccid=iccid,
                                                der=der))
        return der


def _decode_strict(type_name: str, der: bytes) -> Any:
    """``der`` decoded as ``type_name`` (:func:`~.isdr._decode_request`: DER only), its values also within
    the module's constraints (a transactionId of 1..16 bytes, Octet16 challenges ...), since they are
    echoed in signed responses; :class:`~.isdr.MalformedRequest` otherwise."""
    value = _decode_request(type_name, der)
    try:
        asn1.encode(type_name, value)
    except asn1.Asn1Error as exc:
        raise MalformedRequest(str(exc)) from None
    return value


def _profile_class(metadata: dict) -> str | None:
    """profileClass of StoreMetadataRequest as a name (asn1tools gives the DEFAULT by name, a present
    value as a number); None for a number the module does not name."""
    value = metadata.get("profileClass", "operational")
    return value if isinstance(value, str) else CLASS_NAMES.get(value)


def _sima_response(status: int, *, aborted: bool = False) -> bytes:
    """EUICCResponse (TCA eUICC Profile Package §9, SGP.22 simaResponse) with one PEStatus."""
    value: dict[str, Any] = {"peStatus": [{"status": status}]}
    if aborted:
        value["profileInstallationAborted"] = None
    return asn1.encode("EUICCResponse", value)
