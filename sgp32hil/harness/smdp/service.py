"""SM-DP+ procedures: ES9+ (SGP.22 v2.5 §5.6, §3.1.2/§3.1.3) and ES2+ (§5.3) on a :class:`SmdpStore`.

Signatures are checked over the exact received bytes (TLV walker, never a re-encoding):
serverSignature1 over serverSigned1; euiccSignature1 over euiccSigned1; smdpSignature2 over
smdpSigned2 || euiccSignature1 TLV ('5F37'); euiccSignature2 over euiccSigned2 || smdpSignature2 TLV;
smdpSign over the InitialiseSecureChannelRequest data || '5F49' euiccOtpk TLV (§5.5.1);
euiccSignPIR over ProfileInstallationResultData; euiccNotificationSignature over
tbsOtherNotification; euiccCancelSessionSignature over euiccCancelSessionSigned. All are TR-03111
``r || s`` in a '5F37' TLV.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import time

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from .. import asn1, bsp, es2p, es9p, pki
from ..asn1 import tlv
from ..es9p import Es9Error
from ..saip import iccid_to_bcd
from .store import Order, ProfileState, SmdpStore

__all__ = ["HOST_ID", "SmdpService"]

log = logging.getLogger(__name__)

# NotificationEvent BIT STRING: notificationEnable (1), notificationDisable (2), notificationDelete (3)
_ENABLE_DISABLE_DELETE = (bytes([0b0111_0000]), 4)

HOST_ID = b"sgp32-hil"
_SUPPORTED_MAJOR = 2


def sig_tlv(signature: bytes) -> bytes:
    return tlv(b"\x5f\x37", signature)


def _oid_of(cert: x509.Certificate) -> str | None:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    rids = san.get_values_for_type(x509.RegisteredID)
    return rids[0].dotted_string if rids else None


def _decode_first(types: tuple[str, ...], der: bytes):
    last: Exception | None = None
    for name in types:
        try:
            return asn1.decode(name, der)
        except asn1.Asn1Error as exc:
            last = exc
    raise es9p.Es9Error(*es9p.INVALID, f"{types[0]}: {last}")


def _children(der: bytes) -> list:
    try:
        return asn1.parse_single(der).children()
    except asn1.TlvError as exc:
        raise Es9Error(*es9p.INVALID, str(exc)) from None


class SmdpService:
    """The SM-DP+ state machine; every method takes a parsed request and returns a response dataclass
    or raises :class:`Es9Error` with the SGP.22 status code."""

    def __init__(
        self,
        pki_set: pki.PkiSet,
        store: SmdpStore,
        *,
        address: str | None = None,
        ppk: tuple[bytes, bytes, bytes] | None = None,
        host_id: bytes = HOST_ID,
    ):
        self.pki = pki_set
        self.store = store
        self.address = address or pki_set.smdp_address or "localhost"
        self.ppk = ppk
        self.host_id = host_id

    # -- helpers ----------------------------------------------------------------------------

    def _session(self, transaction_id: bytes):
        session = self.store.session(transaction_id)
        if session is None:
            raise Es9Error(*es9p.TRANSACTION_ID_UNKNOWN, "the RSP session identified by the transactionId is unknown")
        return session

    def _verify_euicc_chain(self, euicc_cert: bytes, eum_cert: bytes, ci_pkid: bytes) -> pki.VerifiedChain:
        ci = self.pki.ci_by_pkid(ci_pkid)
        if ci is None:
            raise Es9Error(*es9p.CI_PK_UNKNOWN, "unknown CI public key")
        try:
            eum = x509.load_der_x509_certificate(eum_cert)
            leaf = x509.load_der_x509_certificate(euicc_cert)
        except ValueError as exc:
            raise Es9Error(*es9p.EUICC_CERT_INVALID, f"unreadable certificate: {exc}") from None
        try:
            return pki.verify_chain(leaf, [eum], [ci.certificate], role=pki.Role.EUICC)
        except pki.ChainError as exc:
            on_eum = exc.certificate is not None and exc.certificate == eum
            if exc.reason is pki.ChainReason.UNKNOWN_CI:
                raise Es9Error(*es9p.CI_PK_UNKNOWN, str(exc)) from None
            if exc.reason in (pki.ChainReason.EXPIRED, pki.ChainReason.NOT_YET_VALID):
                code = es9p.EUM_CERT_EXPIRED if on_eum else es9p.EUICC_CERT_EXPIRED
            else:
                code = es9p.EUM_CERT_INVALID if on_eum else es9p.EUICC_CERT_INVALID
            raise Es9Error(*code, str(exc)) from None

    # -- ES9+ -------------------------------------------------------------------------------

    def initiate_authentication(self, req: es9p.InitiateAuthenticationRequest) -> es9p.InitiateAuthenticationResponse:
        """ES9+.InitiateAuthentication (SGP.22 §5.6.1, §3.1.2)."""
        if req.smdp_address.strip().lower() != self.address.lower():
            raise Es9Error(*es9p.SMDP_ADDRESS_REFUSED, "Invalid SM-DP+ Address")
        info1 = _decode_first(("EUICCInfo1",), req.euicc_info1)
        if info1["svn"][0] != _SUPPORTED_MAJOR:
            raise Es9Error(*es9p.SPECIFICATION_VERSION_UNSUPPORTED, f"svn {info1['svn'].hex()} not supported")
        signing = [c for c in map(self.pki.ci_by_pkid, info1["euiccCiPKIdListForSigning"]) if c is not None]
        verification = [c for c in map(self.pki.ci_by_pkid, info1["euiccCiPKIdListForVerification"]) if c is not None]
        if not signing or not verification:
            raise Es9Error(
                *es9p.SECURITY_CONFIGURATION_UNSUPPORTED,
                "None of the proposed Public Key Identifiers is supported by the SM-DP+",
            )
        signing_curve = pki.Curve.of(signing[0].certificate.public_key())
        verification.sort(key=lambda c: pki.Curve.of(c.certificate.public_key()) != signing_curve)
        curve = pki.Curve.of(verification[0].certificate.public_key())
        dp_auth = self.pki.dp_auth(curve)
        if dp_auth is None or dp_auth.private_key is None:
            raise Es9Error(*es9p.DPAUTH_CERT_UNAVAILABLE, f"no CERT.DPauth for {curve.value}")
        pkid = pki.ci_pkid(signing[0].certificate)
        transaction_id = os.urandom(16)
        server_challenge = os.urandom(16)
        server_signed1 = asn1.encode(
            "ServerSigned1",
            {
                "transactionId": transaction_id,
                "euiccChallenge": req.euicc_challenge,
                "serverAddress": self.address,
                "serverChallenge": server_challenge,
            },
        )
        signature = dp_auth.sign(server_signed1)
        self.store.new_session(transaction_id, req.euicc_challenge, server_challenge, pkid, curve.value)
        return es9p.InitiateAuthenticationResponse(
            transaction_id=transaction_id,
            server_signed1=server_signed1,
            server_signature1=sig_tlv(signature),
            euicc_ci_pkid_to_be_used=tlv(b"\x04", pkid),
            server_certificate=dp_auth.der,
        )

    def _find_order(self, matching_id: str | None, eid: str) -> Order:
        if matching_id:
            order = self.store.order(matching_id)
            if order is None:
                raise Es9Error(*es9p.MATCHING_ID_REFUSED, "MatchingID (AC_Token or EventID) is refused")
            if order.eid is not None and order.eid != eid:
                raise Es9Error(*es9p.EID_REFUSED, "EID doesn't match the expected value")
            return order
        order = self.store.order_for_eid(eid)
        if order is None:
            raise Es9Error(*es9p.MATCHING_ID_REFUSED, "no matchingId and no pending order for this EID")
        return order

    def _check_order_usable(self, order: Order) -> None:
        state = self.store.profile_state(order.iccid)
        if order.expired():
            raise Es9Error(*es9p.DOWNLOAD_ORDER_EXPIRED, "download order expired")
        if state in (ProfileState.ALLOCATED, ProfileState.LINKED, ProfileState.CONFIRMED):
            raise Es9Error(*es9p.PROFILE_NOT_RELEASED, "profile not released")
        if state not in (ProfileState.RELEASED, ProfileState.DOWNLOADED):
            raise Es9Error(*es9p.NO_ELIGIBLE_PROFILE, f"profile is {state}")
        if order.cc_required and order.cc_attempts >= order.max_cc_attempts:
            raise Es9Error(*es9p.CONFIRMATION_CODE_RETRIES_EXCEEDED, "maximum number of retries exceeded")
        if order.downloads >= order.max_downloads:
            raise Es9Error(*es9p.DOWNLOAD_ORDER_RETRIES_EXCEEDED, "maximum number of download attempts exceeded")

    def _metadata(self, order: Order) -> bytes:
        profile = self.store.profile(order.iccid)
        assert profile is not None
        value = {
            "iccid": iccid_to_bcd(order.iccid),
            "serviceProviderName": profile["spn"][:32],
            "profileName": profile["name"][:64],
            # SGP.22 §2.4.4.1: enable/disable/delete notifications of this profile come back to this SM-DP+
            "notificationConfigurationInfo": [{"profileManagementOperation": _ENABLE_DISABLE_DELETE,
                                               "notificationAddress": self.address}],
        }
        if order.fallback:
            value["fallbackAllowed"] = True
            return asn1.encode("SGP32-StoreMetadataRequest", value)
        return asn1.encode("StoreMetadataRequest", value)

    def authenticate_client(self, req: es9p.AuthenticateClientRequest) -> es9p.AuthenticateClientResponse:
        """ES9+.AuthenticateClient (SGP.22 §5.6.3, §3.1.3.1)."""
        session = self._session(req.transaction_id)
        if session.phase != "initiated":
            raise Es9Error(*es9p.TRANSACTION_ID_UNKNOWN, f"session is {session.phase}, not awaiting authenticateClient")
        asr = req.authenticate_server_response
        outer = _children(asr)
        if len(outer) != 1 or outer[0].tag != b"\xa0":
            self.store.update_session(req.transaction_id, phase="closed")
            raise Es9Error(*es9p.INVALID, "authenticateServerResponse is not authenticateResponseOk")
        try:
            signed = asn1.euicc_signed1(asr)
        except asn1.TlvError as exc:
            raise Es9Error(*es9p.INVALID, str(exc)) from None
        certs = [c.raw for c in outer[0].children() if c.tag == b"\x30"][1:]
        if len(certs) != 2:
            raise Es9Error(*es9p.INVALID, "euiccCertificate/eumCertificate missing")
        value = _decode_first(("SGP32-AuthenticateServerResponse", "AuthenticateServerResponse"), asr)[1]
        euicc_signed1 = value["euiccSigned1"]
        if euicc_signed1["transactionId"] != req.transaction_id:
            raise Es9Error(*es9p.TRANSACTION_ID_UNKNOWN, "euiccSigned1.transactionId differs from the request")
        chain = self._verify_euicc_chain(certs[0], certs[1], session.ci_pkid)
        if not pki.verify_plain(chain.leaf.public_key(), signed.data, signed.signature):
            raise Es9Error(*es9p.EUICC_SIGNATURE_INVALID, "eUICC signature is invalid")
        if not hmac.compare_digest(euicc_signed1["serverChallenge"], session.server_challenge):
            raise Es9Error(*es9p.EUICC_SIGNATURE_INVALID, "serverChallenge is invalid")
        eid = chain.eid or pki.eid_of(chain.leaf)
        # The eUICC is authenticated from here on: keep its certificate so that it can cancel the session
        # (ES9+.CancelSession, §3.1.3.4) even when its order is refused below.
        self.store.update_session(req.transaction_id, expect_phase="initiated", eid=eid, euicc_cert=certs[0])
        ctx = euicc_signed1["ctxParams1"][1]
        order = self._find_order(ctx.get("matchingId"), eid)
        self._check_order_usable(order)

        curve = pki.Curve.parse(session.curve)
        dp_pb = self.pki.dp_pb(curve)
        if dp_pb is None or dp_pb.private_key is None:
            raise Es9Error(*es9p.DPAUTH_CERT_UNAVAILABLE, f"no CERT.DPpb for {curve.value}")
        smdp_signed2_value: dict = {"transactionId": req.transaction_id, "ccRequiredFlag": order.cc_required}
        if order.bound_otpk:
            smdp_signed2_value["bppEuiccOtpk"] = order.bound_otpk
        smdp_signed2 = asn1.encode("SmdpSigned2", smdp_signed2_value)
        smdp_signature2 = dp_pb.sign(smdp_signed2 + signed.signature_tlv)
        metadata = self._metadata(order)
        if not self.store.update_session(
            req.transaction_id,
            expect_phase="initiated",
            phase="authenticated",
            eid=eid,
            matching_id=order.matching_id,
            euicc_cert=certs[0],
            smdp_signature2=sig_tlv(smdp_signature2),
            cc_required=int(order.cc_required),
        ):
            raise Es9Error(*es9p.TRANSACTION_ID_UNKNOWN, "session already authenticated")
        self.store.count_download_attempt(order.matching_id)
        self.store.record_download(
            req.transaction_id, "authenticated", matching_id=order.matching_id, iccid=order.iccid, eid=eid
        )
        return es9p.AuthenticateClientResponse(
            transaction_id=req.transaction_id,
            profile_metadata=metadata,
            smdp_signed2=smdp_signed2,
            smdp_signature2=sig_tlv(smdp_signature2),
            smdp_certificate=dp_pb.der,
        )

    def get_bound_profile_package(
        self, req: es9p.GetBoundProfilePackageRequest
    ) -> es9p.GetBoundProfilePackageResponse:
        """ES9+.GetBoundProfilePackage (SGP.22 §5.6.2, §3.1.3.2, BPP §2.5.5)."""
        session = self._session(req.transaction_id)
        if session.phase not in ("authenticated", "bound"):
            raise Es9Error(*es9p.TRANSACTION_ID_UNKNOWN, f"session is {session.phase}")
        pdr = req.prepare_download_response
        outer = _children(pdr)
        if len(outer) != 1 or outer[0].tag != b"\xa0":
            self.store.update_session(req.transaction_id, phase="closed")
            raise Es9Error(*es9p.INVALID, "prepareDownloadResponse is not downloadResponseOk")
        try:
            signed = asn1.euicc_signed2(pdr)
        except asn1.TlvError as exc:
            raise Es9Error(*es9p.INVALID, str(exc)) from None
        value = _decode_first(("SGP32-PrepareDownloadResponse", "PrepareDownloadResponse"), pdr)[1]
        euicc_signed2 = value["euiccSigned2"]
        if euicc_signed2["transactionId"] != req.transaction_id:
            raise Es9Error(*es9p.TRANSACTION_ID_UNKNOWN, "euiccSigned2.transactionId differs from the request")
        euicc_cert = x509.load_der_x509_certificate(session.euicc_cert)
        if not pki.verify_plain(euicc_cert.public_key(), signed.data + session.smdp_signature2, signed.signature):
            raise Es9Error(*es9p.EUICC_SIGNATURE_INVALID, "eUICC signature is invalid")
        order = self.store.order(session.matching_id) if session.matching_id else None
        if order is None:
            raise Es9Error(*es9p.BPP_UNAVAILABLE, "the download order was cancelled")
        euicc_otpk = euicc_signed2["euiccOtpk"]
        if session.phase == "bound" and session.otpk == euicc_otpk and session.bpp:
            return es9p.GetBoundProfilePackageResponse(req.transaction_id, session.bpp)
        if order.expired():
            raise Es9Error(*es9p.DOWNLOAD_ORDER_EXPIRED, "download order expired")
        if order.cc_required:
            if order.cc_attempts >= order.max_cc_attempts:
                raise Es9Error(*es9p.CONFIRMATION_CODE_RETRIES_EXCEEDED, "maximum number of retries exceeded")
            hash_cc = euicc_signed2.get("hashCc")
            if hash_cc is None:
                raise Es9Error(*es9p.CONFIRMATION_CODE_MISSING, "Confirmation Code is missing")
            expected = hashlib.sha256(order.cc_hash + req.transaction_id).digest()
            if not hmac.compare_digest(hash_cc, expected):
                attempts = self.store.count_cc_attempt(order.matching_id)
                if attempts >= order.max_cc_attempts:
                    self.store.update_session(req.transaction_id, phase="closed")
                    raise Es9Error(*es9p.CONFIRMATION_CODE_RETRIES_EXCEEDED, "maximum number of retries exceeded")
                raise Es9Error(*es9p.CONFIRMATION_CODE_REFUSED, "Confirmation Code is refused")

        curve = pki.Curve.parse(session.curve)
        if order.bound_otpk == euicc_otpk and order.bound_otsk:
            key = serialization.load_der_private_key(order.bound_otsk, None)
            assert isinstance(key, ec.EllipticCurvePrivateKey)
            one_time = pki.KeyPair(key)
        else:
            one_time = pki.KeyPair.generate(curve)
        otsk_der = one_time.private_key.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        try:
            bpp = self._bind(order, session.eid, req.transaction_id, one_time, euicc_otpk, curve)
        except bsp.BspError as exc:
            raise Es9Error(*es9p.EUICC_SIGNATURE_INVALID, f"otPK.EUICC rejected: {exc}") from None
        self.store.bind_order(order.matching_id, euicc_otpk, otsk_der)
        self.store.update_session(req.transaction_id, phase="bound", otpk=euicc_otpk, otsk=otsk_der, bpp=bpp)
        self.store.set_profile_state(order.iccid, ProfileState.DOWNLOADED)
        self.store.record_download(
            req.transaction_id, "bpp", matching_id=order.matching_id, iccid=order.iccid, eid=session.eid
        )
        return es9p.GetBoundProfilePackageResponse(req.transaction_id, bpp)

    def _bind(
        self, order: Order, eid: str, transaction_id: bytes, one_time: pki.KeyPair, euicc_otpk: bytes, curve
    ) -> bytes:
        """The Bound Profile Package 'BF36' (SGP.22 §2.5.5, §5.5)."""
        keys = bsp.session_keys_from_ecka(one_time, euicc_otpk, host_id=self.host_id, eid=eid)
        dp_pb = self.pki.dp_pb(curve)
        isc = {
            "remoteOpId": 1,
            "transactionId": transaction_id,
            "controlRefTemplate": {"keyType": b"\x88", "keyLen": b"\x10", "hostId": self.host_id},
            "smdpOtpk": one_time.public_bytes,
            "smdpSign": bytes(64),
        }
        unsigned = asn1.encode("InitialiseSecureChannelRequest", isc)
        signed_data = asn1.initialise_secure_channel_signed(unsigned).data
        isc["smdpSign"] = dp_pb.sign(signed_data + tlv(b"\x5f\x49", euicc_otpk))
        bf23 = asn1.encode("InitialiseSecureChannelRequest", isc)
        protector = bsp.BspProtector(keys)
        package = self.store.profile(order.iccid)["package"]
        parts = [bf23]
        parts.append(tlv(b"\xa0", protector.protect_one(bsp.TAG_CONFIGURE_ISDP, asn1.encode("ConfigureISDPRequest", {}))))
        parts.append(tlv(b"\xa1", b"".join(protector.wrap(bsp.TAG_STORE_METADATA, self._metadata(order), encrypt=False))))
        if self.ppk is not None:
            ppk_enc, ppk_mac, mcv = self.ppk
            rsk = bsp.replace_session_keys_request(ppk_enc, ppk_mac, mcv)
            parts.append(tlv(b"\xa2", protector.protect_one(bsp.TAG_REPLACE_SESSION_KEYS, rsk)))
            protector.replace_session_keys(ppk_enc, ppk_mac, mcv)
        parts.append(tlv(b"\xa3", b"".join(protector.wrap(bsp.TAG_PROFILE_ELEMENT, package))))
        return tlv(b"\xbf\x36", b"".join(parts))

    def handle_notification(self, req: es9p.HandleNotificationRequest) -> None:
        """ES9+.HandleNotification (SGP.22 §5.6.4): verify and record; never an error status."""
        raw = req.pending_notification
        try:
            tag = asn1.parse_single(raw).tag
        except asn1.TlvError:
            self.store.record_notification("malformed", raw, result="malformed")
            return
        if tag == b"\xbf\x37":
            self._installation_result(raw)
        elif tag == b"\x30":
            self._other_notification(raw)
        else:
            self.store.record_notification("unknown", raw, result="malformed")

    def _installation_result(self, raw: bytes) -> None:
        try:
            signed = asn1.profile_installation_result_data(raw)
            data = asn1.decode("ProfileInstallationResultData", signed.data)
        except (asn1.TlvError, asn1.Asn1Error):
            self.store.record_notification("install", raw, result="malformed")
            return
        tid = data["transactionId"]
        session = self.store.session(tid)
        verified = False
        if session is not None and session.euicc_cert:
            cert = x509.load_der_x509_certificate(session.euicc_cert)
            verified = pki.verify_plain(cert.public_key(), signed.data, signed.signature)
        outcome, _ = data["finalResult"]
        meta = data["notificationMetadata"]
        result = ("success" if outcome == "successResult" else "error") if verified else "unverified"
        self.store.record_notification(
            "install", raw, transaction_id=tid, eid=session.eid if session else None,
            seq_number=meta["seqNumber"], iccid=meta.get("iccid", b"").hex().upper() or None, result=result,
        )
        if verified and session.matching_id:
            order = self.store.order(session.matching_id)
            if order is not None:
                state = ProfileState.INSTALLED if result == "success" else ProfileState.ERROR
                self.store.set_profile_state(order.iccid, state)
                self.store.record_download(tid, f"installed:{result}", matching_id=order.matching_id,
                                           iccid=order.iccid, eid=session.eid)
            self.store.update_session(tid, phase="closed")

    def _other_notification(self, raw: bytes) -> None:
        try:
            signed = asn1.notification_metadata(raw)
            meta = asn1.decode("NotificationMetadata", signed.data)
            certs = [c.raw for c in asn1.parse_single(raw).children() if c.tag == b"\x30"]
        except (asn1.TlvError, asn1.Asn1Error):
            self.store.record_notification("other", raw, result="malformed")
            return
        event_bits, _ = meta["profileManagementOperation"]
        names = ("install", "enable", "disable", "delete")
        first = event_bits[0] if event_bits else 0
        kind = next((n for i, n in enumerate(names) if first & (0x80 >> i)), "other")
        result, eid = "unverified", None
        if len(certs) == 2:
            try:
                chain = pki.verify_chain(certs[0], [certs[1]], self.pki.trusted_cis(), role=pki.Role.EUICC)
                if pki.verify_plain(chain.leaf.public_key(), signed.data, signed.signature):
                    result, eid = "verified", chain.eid
            except (pki.ChainError, ValueError):
                pass
        self.store.record_notification(
            kind, raw, eid=eid, seq_number=meta["seqNumber"],
            iccid=meta.get("iccid", b"").hex().upper() or None, result=result,
        )

    def cancel_session(self, req: es9p.CancelSessionRequest) -> es9p.CancelSessionResponse:
        """ES9+.CancelSession (SGP.22 §5.6.5, §3.1.3.4/5)."""
        session = self._session(req.transaction_id)
        if session.phase == "closed":
            raise Es9Error(*es9p.TRANSACTION_ID_UNKNOWN, "session already closed")
        try:
            signed = asn1.euicc_cancel_session_signed(req.cancel_session_response)
            value = asn1.decode("EuiccCancelSessionSigned", signed.data)
        except (asn1.TlvError, asn1.Asn1Error) as exc:
            raise Es9Error(*es9p.INVALID, f"cancelSessionResponse: {exc}") from None
        if value["transactionId"] != req.transaction_id:
            raise Es9Error(*es9p.TRANSACTION_ID_UNKNOWN, "euiccCancelSessionSigned.transactionId differs")
        if not session.euicc_cert:
            raise Es9Error(*es9p.EUICC_SIGNATURE_INVALID, "no eUICC certificate known for this session")
        cert = x509.load_der_x509_certificate(session.euicc_cert)
        if not pki.verify_plain(cert.public_key(), signed.data, signed.signature):
            raise Es9Error(*es9p.EUICC_SIGNATURE_INVALID, "eUICC signature is invalid")
        dp_auth = self.pki.dp_auth(pki.Curve.parse(session.curve))
        if dp_auth is None or value["smdpOid"] != _oid_of(dp_auth.certificate):
            raise Es9Error(*es9p.SMDP_OID_INVALID, "The provided SM-DP+ OID is invalid")
        reason = value["reason"]
        self.store.update_session(req.transaction_id, phase="closed")
        order = self.store.order(session.matching_id) if session.matching_id else None
        reason_name = reason if isinstance(reason, str) else str(reason)
        if order is not None:
            final = reason_name in ("endUserRejection", "pprNotAllowed", "metadataMismatch")
            self.store.set_profile_state(order.iccid, ProfileState.ERROR if final else ProfileState.RELEASED)
        self.store.record_download(
            req.transaction_id, f"cancelled:{reason_name}", matching_id=session.matching_id,
            iccid=order.iccid if order else None, eid=session.eid,
        )
        return es9p.CancelSessionResponse()

    # -- ES2+ -------------------------------------------------------------------------------

    def download_order(self, req: es2p.DownloadOrderRequest) -> es2p.DownloadOrderResponse:
        """ES2+.DownloadOrder (SGP.22 §5.3.1): reserve a profile, optionally linked to an EID."""
        if req.eid is not None and not pki.eid_is_valid(req.eid):
            raise Es9Error(*es2p.EID_INVALID, "EID has a bad format")
        if req.iccid is not None and self.store.profile(req.iccid) is None:
            raise Es9Error(*es2p.ICCID_UNKNOWN, "Profile ICCID unknown")
        iccid = self.store.allocate_profile(req.iccid, req.profile_type)
        if iccid is None:
            code = es2p.ICCID_UNAVAILABLE if req.iccid else es2p.PROFILE_TYPE_UNAVAILABLE
            raise Es9Error(*code, "no profile available")
        self.store.add_order(f"_pending_{iccid}", iccid=iccid, eid=req.eid,
                             state=ProfileState.LINKED if req.eid else ProfileState.ALLOCATED)
        return es2p.DownloadOrderResponse(iccid=iccid)

    def _pending(self, iccid: str) -> Order:
        if self.store.profile(iccid) is None:
            raise Es9Error(*es2p.ICCID_UNKNOWN, "Profile ICCID unknown")
        order = self.store.order_for_iccid(iccid)
        if order is None:
            raise Es9Error(*es2p.ICCID_INVALID_STATE, "no download order for this ICCID")
        return order

    def confirm_order(self, req: es2p.ConfirmOrderRequest) -> es2p.ConfirmOrderResponse:
        """ES2+.ConfirmOrder (SGP.22 §5.3.2)."""
        order = self._pending(req.iccid)
        state = self.store.profile_state(req.iccid)
        if state not in (ProfileState.ALLOCATED, ProfileState.LINKED):
            raise Es9Error(*es2p.ICCID_INVALID_STATE, f"profile is {state}")
        if order.eid is not None and req.eid is not None and req.eid != order.eid:
            raise Es9Error(*es2p.EID_INVALID_ASSOCIATION, "EID differs from the one of downloadOrder")
        if req.eid is not None and not pki.eid_is_valid(req.eid):
            raise Es9Error(*es2p.EID_INVALID, "EID has a bad format")
        matching_id = req.matching_id or os.urandom(10).hex().upper()
        if self.store.order(matching_id) is not None:
            raise Es9Error(*es2p.MATCHING_ID_IN_USE, "matchingId already in use")
        profile = self.store.profile(req.iccid)
        self.store.delete_order(order.matching_id)
        self.store.add_order(
            matching_id, iccid=req.iccid, eid=req.eid or order.eid, imsi=profile["imsi"],
            confirmation_code=req.confirmation_code,
            state=ProfileState.RELEASED if req.release_flag else ProfileState.CONFIRMED,
        )
        return es2p.ConfirmOrderResponse(eid=req.eid or order.eid, matching_id=matching_id, smdp_address=self.address)

    def cancel_order(self, req: es2p.CancelOrderRequest) -> es2p.Es2Response:
        """ES2+.CancelOrder (SGP.22 §5.3.3)."""
        order = self._pending(req.iccid)
        if req.eid is not None and order.eid is not None and req.eid != order.eid:
            raise Es9Error(*es2p.EID_INVALID_ASSOCIATION, "EID differs from the order")
        if req.matching_id is not None and req.matching_id != order.matching_id:
            raise Es9Error(*es2p.MATCHING_ID_INVALID_ASSOCIATION, "matchingId differs from the order")
        state = self.store.profile_state(req.iccid)
        if state in (ProfileState.DOWNLOADED, ProfileState.INSTALLED):
            raise Es9Error(*es2p.ICCID_INVALID_STATE, f"profile is {state}")
        self.store.delete_order(order.matching_id)
        final = ProfileState.AVAILABLE if req.final_profile_status_indicator == "Available" else ProfileState.ERROR
        self.store.set_profile_state(req.iccid, final)
        return es2p.Es2Response()

    def release_profile(self, req: es2p.ReleaseProfileRequest) -> es2p.Es2Response:
        """ES2+.ReleaseProfile (SGP.22 §5.3.4)."""
        self._pending(req.iccid)
        state = self.store.profile_state(req.iccid)
        if state != ProfileState.CONFIRMED:
            raise Es9Error(*es2p.ICCID_INVALID_STATE, f"profile is {state}, not confirmed")
        self.store.set_profile_state(req.iccid, ProfileState.RELEASED)
        return es2p.Es2Response()

    @staticmethod
    def now() -> float:
        return time.time()
