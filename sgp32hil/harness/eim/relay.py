"""Indirect profile download relay (SGP.32 v1.2 §3.2.3.2, §5.14.1/.2/.6/.8): the eIM forwards the IPA's
InitiateAuthentication / AuthenticateClient / GetBoundProfilePackage / CancelSession to the SM-DP+ as
ES9+ JSON calls (SGP.22 v2.5 §5.6) and answers with the ESipa CHOICE.

Signed data crosses the eIM untouched: the eUICC's responses are taken from the received DER with the
TLV walker and the SM-DP+'s (serverSigned1, smdpSigned2, the BPP) are spliced into the ESipa answer as
the bytes the SM-DP+ sent; every assembled answer is checked by decoding it before it is returned.
ES9+ failures map to the ESipa error INTEGERs; unreachable SM-DP+ -> undefinedError(127).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from .. import asn1, es9p
from ..asn1 import Tlv, TlvError, parse_single, tlv
from ..es9p_client import Es9Client, Es9TransportError
from .packages import smdp_address_of
from .store import EimStore

__all__ = ["EsipaRelay"]

log = logging.getLogger(__name__)

UNDEFINED = 127

_INIT_ERRORS = {es9p.SMDP_ADDRESS_REFUSED: 1, es9p.SPECIFICATION_VERSION_UNSUPPORTED: 2,
                es9p.SECURITY_CONFIGURATION_UNSUPPORTED: 3, es9p.CI_PK_UNKNOWN: 3}
_AUTH_ERRORS = {es9p.EUM_CERT_INVALID: 1, es9p.EUM_CERT_EXPIRED: 2, es9p.EUICC_CERT_INVALID: 3,
                es9p.EUICC_CERT_EXPIRED: 4, es9p.EUICC_SIGNATURE_INVALID: 5, es9p.MATCHING_ID_REFUSED: 6,
                es9p.EID_REFUSED: 7, es9p.NO_ELIGIBLE_PROFILE: 8, es9p.CI_PK_UNKNOWN: 9,
                es9p.TRANSACTION_ID_UNKNOWN: 10, es9p.INSUFFICIENT_MEMORY: 11,
                es9p.DOWNLOAD_ORDER_EXPIRED: 8, es9p.DOWNLOAD_ORDER_RETRIES_EXCEEDED: 8}
_BPP_ERRORS = {es9p.EUICC_SIGNATURE_INVALID: 1, es9p.CONFIRMATION_CODE_MISSING: 2,
               es9p.CONFIRMATION_CODE_REFUSED: 3, es9p.CONFIRMATION_CODE_RETRIES_EXCEEDED: 4,
               es9p.DOWNLOAD_ORDER_EXPIRED: 6, es9p.TRANSACTION_ID_UNKNOWN: 95}
_CANCEL_ERRORS = {es9p.TRANSACTION_ID_UNKNOWN: 1, es9p.EUICC_SIGNATURE_INVALID: 2}


def _child(node: Tlv, *tags: bytes) -> Tlv | None:
    return next((c for c in node.children() if c.tag in tags), None)


def _element(node: Tlv, tag: bytes) -> bytes | None:
    """The raw element ``tag`` among ``node``'s children, undoing an automatic context tag that replaced it
    (a constructed [n] whose only child is the CHOICE alternative gets the type's own tag back)."""
    child = _child(node, tag)
    if child is not None:
        return child.raw
    for c in node.children():
        if c.constructed and c.tag[0] & 0xC0 == 0x80 and c.tag != b"\x80":
            return tlv(tag, c.value)
    return None


class EsipaRelay:
    """ES9+ client side of the eIM. ``smdp_ca`` is the CA bundle for the SM-DP+ TLS certificate (default:
    the PKI's trust bundle)."""

    def __init__(self, store: EimStore, *, smdp_ca: str | Path | None = None, pki_dir: str | Path | None = None,
                 timeout: float = 30.0):
        self.store = store
        self.smdp_ca = smdp_ca
        self.pki_dir = pki_dir
        self.timeout = timeout

    def client(self, address: str) -> Es9Client:
        return Es9Client(address, ca=self.smdp_ca, pki_dir=self.pki_dir, timeout=self.timeout)

    # -- helpers --------------------------------------------------------------------------------------

    @staticmethod
    def _answer(alternative: str, der: bytes | None, error: int | None = None) -> bytes:
        if der is not None:
            try:
                asn1.decode("EsipaMessageFromEimToIpa", der)
                return der
            except asn1.Asn1Error as exc:
                log.warning("relay: assembled %s does not decode (%s); answering undefinedError", alternative, exc)
                error = UNDEFINED
        error_alt = {
            "initiateAuthenticationResponseEsipa": "initiateAuthenticationErrorEsipa",
            "authenticateClientResponseEsipa": "authenticateClientErrorEsipa",
            "getBoundProfilePackageResponseEsipa": "getBoundProfilePackageErrorEsipa",
            "cancelSessionResponseEsipa": "cancelSessionError",
        }[alternative]
        return asn1.encode("EsipaMessageFromEimToIpa", (alternative, (error_alt, error)))

    def _call(self, address: str, what: str, fn, errors: dict, alternative: str, eid: str | None = None):
        """Run one ES9+ call; (response, None) or (None, error DER)."""
        try:
            with self.client(address) as client:
                return fn(client), None
        except es9p.Es9Error as exc:
            code = errors.get(exc.code, UNDEFINED)
            log.info("relay %s at %s: %s -> %d", what, address, exc, code)
            if eid:
                self.store.add_event(eid, "relay", {"function": what, "smdp_address": address, "error": str(exc),
                                                    "esipa_error": code})
            return None, self._answer(alternative, None, code)
        except (Es9TransportError, OSError, ValueError) as exc:
            log.warning("relay %s at %s: %s", what, address, exc)
            if eid:
                self.store.add_event(eid, "relay", {"function": what, "smdp_address": address, "error": str(exc)})
            return None, self._answer(alternative, None, UNDEFINED)

    # -- §5.14.1 InitiateAuthentication ---------------------------------------------------------------

    def initiate_authentication(self, node: Tlv, value: dict[str, Any]) -> bytes:
        alt = "initiateAuthenticationResponseEsipa"
        order = None
        tx = value.get("eimTransactionId")
        if tx is not None:
            order = self.store.order_by_transaction_id(tx.hex().upper())
            if order is None or order.kind != "download":
                return self._answer(alt, None, 52)  # invalidEimTransactionId
        address = value.get("smdpAddress")
        if order is not None:
            ordered = smdp_address_of(order.params["activation_code"])
            if address is None:
                address = ordered
            elif address.lower() != ordered.lower():
                return self._answer(alt, None, 50)  # smdpAddressMismatch
        info1 = _child(node, b"\xbf\x20")
        info1_der = info1.raw if info1 is not None else None
        if not address:
            return self._answer(alt, None, 1)  # invalidDpAddress
        eid = order.eid if order else None
        if info1_der is None and eid is not None:
            info1_der = self.store.euicc_info1(eid)  # learnt from an earlier IpaEuiccData
        if info1_der is None:
            log.info("relay: InitiateAuthentication without euiccInfo1 and none stored for EID %s", eid)
            return self._answer(alt, None, UNDEFINED)
        resp, err = self._call(address, "initiateAuthentication",
                               lambda c: c.initiate_authentication(value["euiccChallenge"], info1_der, address),
                               _INIT_ERRORS, alt, eid)
        if err is not None:
            return err
        txid = resp.transaction_id
        self.store.put_relay_session(txid.hex().upper(), address, eid, order.id if order else None,
                                     "initiateAuthentication")
        body = (tlv(b"\x80", txid) + resp.server_signed1 + resp.server_signature1 + resp.euicc_ci_pkid_to_be_used
                + resp.server_certificate)
        return self._answer(alt, tlv(b"\xbf\x39", tlv(b"\xa0", body)))

    # -- §5.14.2 AuthenticateClient -------------------------------------------------------------------

    def authenticate_client(self, node: Tlv, value: dict[str, Any]) -> bytes:
        alt = "authenticateClientResponseEsipa"
        txid = value["transactionId"]
        session = self.store.relay_session(txid.hex().upper())
        if session is None:
            return self._answer(alt, None, 10)  # invalidTransactionId
        asr = _element(node, b"\xbf\x38")
        if asr is None:
            return self._answer(alt, None, UNDEFINED)
        eid = session.eid or _eid_from_asr(asr)
        resp, err = self._call(session.smdp_address, "authenticateClient",
                               lambda c: c.authenticate_client(txid, asr), _AUTH_ERRORS, alt, eid)
        if err is not None:
            return err
        self.store.put_relay_session(session.transaction_id, session.smdp_address, eid, session.order_id,
                                     "authenticateClient")
        body = tlv(b"\x80", resp.transaction_id)
        if resp.profile_metadata:
            body += resp.profile_metadata
        body += resp.smdp_signed2 + resp.smdp_signature2 + resp.smdp_certificate
        return self._answer(alt, tlv(b"\xbf\x3b", tlv(b"\xa0", body)))

    # -- §5.14.6 GetBoundProfilePackage ----------------------------------------------------------------

    def get_bound_profile_package(self, node: Tlv, value: dict[str, Any]) -> bytes:
        alt = "getBoundProfilePackageResponseEsipa"
        txid = value["transactionId"]
        session = self.store.relay_session(txid.hex().upper())
        if session is None:
            return self._answer(alt, None, 95)  # invalidTransactionId
        pdr = _element(node, b"\xbf\x21")
        if pdr is None:
            return self._answer(alt, None, UNDEFINED)
        resp, err = self._call(session.smdp_address, "getBoundProfilePackage",
                               lambda c: c.get_bound_profile_package(txid, pdr), _BPP_ERRORS, alt, session.eid)
        if err is not None:
            return err
        self.store.put_relay_session(session.transaction_id, session.smdp_address, session.eid, session.order_id,
                                     "getBoundProfilePackage")
        body = tlv(b"\x80", resp.transaction_id) + resp.bound_profile_package
        return self._answer(alt, tlv(b"\xbf\x3a", tlv(b"\xa0", body)))

    # -- §5.14.8 CancelSession --------------------------------------------------------------------------

    def cancel_session(self, node: Tlv, value: dict[str, Any]) -> bytes:
        alt = "cancelSessionResponseEsipa"
        txid = value["transactionId"]
        session = self.store.relay_session(txid.hex().upper())
        if session is None:
            return self._answer(alt, None, 1)  # invalidTransactionId
        csr = _element(node, b"\xbf\x41")
        if csr is None:
            return self._answer(alt, None, UNDEFINED)
        _, err = self._call(session.smdp_address, "cancelSession", lambda c: c.cancel_session(txid, csr),
                            _CANCEL_ERRORS, alt, session.eid)
        if err is not None:
            return err
        self.store.put_relay_session(session.transaction_id, session.smdp_address, session.eid, session.order_id,
                                     "cancelled")
        return asn1.encode("EsipaMessageFromEimToIpa", (alt, ("cancelSessionOk", {})))

    # -- §5.14.5 HandleNotification forwarding ------------------------------------------------------------

    def forward_notification(self, address: str, pending_notification: bytes) -> str | None:
        """ES9+.HandleNotification to ``address``; None on success, else what went wrong."""
        try:
            with self.client(address) as client:
                client.handle_notification(pending_notification)
            return None
        except (es9p.Es9Error, Es9TransportError, OSError, ValueError) as exc:
            log.info("forwarding a notification to %s failed: %s", address, exc)
            return f"{type(exc).__name__}: {exc}"


def _eid_from_asr(asr: bytes) -> str | None:
    """EID of the eUICC certificate in an AuthenticateServerResponse (SGP.22 §4.5.2.1), or None."""
    from cryptography import x509

    from .. import pki

    try:
        ok = parse_single(asr).children()[0]
        certs = [c for c in ok.children() if c.tag == b"\x30"]
        if len(certs) < 3:  # euiccSigned1, euiccCertificate, eumCertificate
            return None
        return pki.eid_of(x509.load_der_x509_certificate(certs[1].raw))
    except (TlvError, ValueError, IndexError):
        return None
