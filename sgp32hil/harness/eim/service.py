"""eIM procedures (SGP.32 v1.2): orders, ESipa GetEimPackage / ProvideEimPackageResult / HandleNotification
(§5.14.3-§5.14.5), eUICC package signing (§2.11.1) and result verification (§2.11.2), on an :class:`EimStore`.

Matching a result to its order: (EID, counterValue) through the stored issued packages, else the
eimTransactionId, else the eUICC's one sent order — all from the database, so it works after a restart.
Result signatures (euiccSignEPR / euiccSignEPE) are checked with the eUICC certificate over the signed data
as received followed by the associationToken DO (§2.11.2.1); without a certificate the per-eUICC policy
decides: ``verify`` refuses, ``verify-if-known`` and ``accept`` store the result as unverified.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from .. import asn1, pki
from ..asn1 import Tlv, TlvError, tlv
from ..asn1.signed import euicc_result_signature_input
from . import packages
from .esipa import EsipaAnswer, get_package_error, provide_result_error
from .packages import OrderError
from .policy import Policy, PolicyContext, mcc_mnc
from .relay import EsipaRelay
from .store import EimStore, EuiccRecord, Event, Order, OrderStatus, StoreError

__all__ = ["EimService", "RESULT_POLICIES", "UnknownEid"]

log = logging.getLogger(__name__)

RESULT_POLICIES = ("verify", "verify-if-known", "accept")
_ACK_EMPTY = asn1.encode("EsipaMessageFromEimToIpa", ("provideEimPackageResultResponse", ("emptyResponse", {})))


class UnknownEid(LookupError):
    """An EID the eIM has no registration for."""


def _names():
    from ...drivers.es10.decode import asn1_names

    return asn1_names()


def _jsonable(value: Any) -> Any:
    from ...drivers.es10.decode import to_jsonable

    return to_jsonable(value)


def _check_eid(eid: str) -> str:
    if not isinstance(eid, str) or not pki.eid_is_valid(eid.upper()):
        raise OrderError("expected 32 digits with valid MOD 97-10 check digits", "eid")
    return eid.upper()


class EimService:
    """The eIM: operator API (orders, registrations) and the ESipa functions."""

    def __init__(self, pki_set: pki.PkiSet, store: EimStore, *, eim_id: str = "sgp32hil-eim",
                 policy: Policy | None = None, accept_unknown_eids: bool = False,
                 smdp_ca: str | Path | None = None, curve: pki.Curve | str = pki.Curve.NIST):
        self.pki = pki_set
        self.store = store
        self.eim_id = eim_id
        self.policy = policy
        self.accept_unknown_eids = accept_unknown_eids
        self.credential = pki_set.require(pki.Role.EIM, curve)
        self.relay = EsipaRelay(store, smdp_ca=smdp_ca, pki_dir=pki_set.root)
        self._changed = threading.Condition()
        self._forward_wake = threading.Event()
        self._forward_stop = threading.Event()
        self._forwarder: threading.Thread | None = None

    def close(self) -> None:
        if self._forwarder is not None:
            self._forward_stop.set()
            self._forward_wake.set()
            self._forwarder.join(5)
            self._forwarder = None
        self.store.close()

    # -- notification forwarding (SGP.32 v1.2 §3.6: the eIM passes profile notifications on) ---------

    FORWARD_ATTEMPTS = 6
    FORWARD_BACKOFF_S = 2.0

    def forward_notifications(self) -> int:
        """One pass: ES9+.HandleNotification of every due notification to its notificationAddress
        (the SM-DP+ that installed the profile). Returns how many were delivered."""
        delivered = 0
        for row in self.store.due_forwards(time.time(), self.FORWARD_ATTEMPTS, self.FORWARD_BACKOFF_S):
            error = self.relay.forward_notification(row["forward_address"], row["raw"])
            if error is None:
                self.store.forward_done(row["id"], row["forward_address"], row["eid"], row["seq_number"], row["kind"])
                delivered += 1
            else:
                self.store.forward_failed(row["id"], error)
                if row["forward_attempts"] + 1 >= self.FORWARD_ATTEMPTS:
                    log.warning("notification seq %s of %s: giving up forwarding to %s after %d attempts: %s",
                                row["seq_number"], row["eid"], row["forward_address"], self.FORWARD_ATTEMPTS, error)
        return delivered

    def start_forwarder(self, interval_s: float = 1.0) -> None:
        """Forward in a background thread: at once when a notification arrives, retries with backoff."""
        if self._forwarder is not None:
            return

        def run() -> None:
            while not self._forward_stop.is_set():
                self._forward_wake.wait(interval_s)
                self._forward_wake.clear()
                if self._forward_stop.is_set():
                    break
                try:
                    self.forward_notifications()
                except Exception:  # noqa: BLE001 - the thread must outlive one bad pass
                    log.exception("notification forwarding pass failed")

        self._forwarder = threading.Thread(target=run, name="eim-forwarder", daemon=True)
        self._forwarder.start()

    # -- operator API ------------------------------------------------------------------------------

    def register_euicc(self, eid: str, *, counter_value: int = 0, association_token: int | None = None,
                       euicc_certificate: bytes | str | x509.Certificate | None = None,
                       result_policy: str = "verify-if-known") -> EuiccRecord:
        """Register (or update) an eUICC: the counterValue last used by this eIM (the next package uses
        counter_value + 1), the association token it holds, the eUICC certificate (DER, PEM or x509)."""
        eid = _check_eid(eid)
        if not isinstance(counter_value, int) or isinstance(counter_value, bool) or counter_value < 0:
            raise OrderError("expected a non-negative integer", "counter_value")
        if association_token is not None and (not isinstance(association_token, int)
                                              or isinstance(association_token, bool)):
            raise OrderError("expected an integer or null", "association_token")
        if result_policy not in RESULT_POLICIES:
            raise OrderError(f"expected one of {', '.join(RESULT_POLICIES)}", "result_policy")
        cert_der = None
        if euicc_certificate is not None:
            cert = _load_cert(euicc_certificate)
            cert_eid = pki.eid_of(cert)
            if cert_eid is not None and cert_eid != eid:
                raise OrderError(f"the certificate is for EID {cert_eid}", "euicc_certificate")
            cert_der = cert.public_bytes(serialization.Encoding.DER)
        return self.store.register(eid, counter_value=counter_value, association_token=association_token,
                                   euicc_certificate=cert_der, result_policy=result_policy)

    def create_order(self, eid: str, kind: str, **params: Any) -> Order:
        """Queue an order for ``eid`` (FIFO). Raises OrderError (bad parameters) or UnknownEid."""
        eid = _check_eid(eid)
        if not self.store.is_known(eid):
            raise UnknownEid(f"EID {eid} is not registered")
        normal = packages.validate(kind, params)
        order = self.store.add_order(eid, kind, normal, os.urandom(16).hex().upper())
        self._notify()
        return order

    def get_order(self, order_id: int) -> Order:
        order = self.store.order(int(order_id))
        if order is None:
            raise KeyError(f"no order {order_id}")
        return order

    def orders(self, eid: str | None = None, status: str | None = None) -> list[Order]:
        return self.store.orders(eid, status)

    def wait_order(self, order_id: int, timeout_s: float) -> Order:
        """Block until the order is done, failed or cancelled; TimeoutError after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while True:
            order = self.get_order(order_id)
            if order.final:
                return order
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"order {order_id} still {order.status} after {timeout_s} s")
            with self._changed:
                self._changed.wait(min(left, 0.1))

    def cancel_order(self, order_id: int) -> Order:
        order = self.store.cancel_order(int(order_id))
        self._notify()
        return order

    def euicc(self, eid: str) -> EuiccRecord:
        record = self.store.euicc(eid.upper())
        if record is None:
            raise UnknownEid(f"EID {eid} is not registered")
        return record

    def euiccs(self) -> list[EuiccRecord]:
        return self.store.euiccs()

    def events(self, eid: str) -> list[Event]:
        return self.store.events(eid.upper())

    def _notify(self) -> None:
        with self._changed:
            self._changed.notify_all()

    # -- ESipa.GetEimPackage (§5.14.3) ------------------------------------------------------------------

    def fast_poll(self, body: bytes) -> EsipaAnswer | None:
        """The common poll, answered without a thread hop: a registered EID, no state change, nothing
        queued and no policy -> noEimPackageAvailable. None when the full path is needed."""
        if body[:2] != b"\xbf\x4f" or self.policy is not None:
            return None
        try:
            alt, value = asn1.decode("EsipaMessageFromIpaToEim", body)
        except asn1.Asn1Error:
            return None
        eid_b = value.get("eidValue", b"")
        if len(eid_b) != 16 or "notifyStateChange" in value or "stateChangeCause" in value:
            return None
        eid = eid_b.hex().upper()
        if not self.store.is_known(eid) or self.store.has_open_orders(eid):
            return None
        rplmn = value.get("rPLMN")
        self.store.note_poll(eid, rplmn.hex().upper() if rplmn else None, None,
                             {"rplmn": rplmn.hex().upper() if rplmn else None})
        return get_package_error(1)

    def get_eim_package(self, value: dict[str, Any]) -> EsipaAnswer:
        eid_b = value["eidValue"]
        if len(eid_b) != 16:
            return get_package_error(3)
        eid = eid_b.hex().upper()
        if not pki.eid_is_valid(eid):
            return get_package_error(3)
        if not self.store.is_known(eid):
            if not self.accept_unknown_eids:
                return get_package_error(2)
            self.store.register(eid)
            self.store.add_event(eid, "auto_registered", {})
        rplmn = value.get("rPLMN")
        rplmn_hex = rplmn.hex().upper() if rplmn else None
        cause = value.get("stateChangeCause")
        cause_name = _names().number_name(cause, "StateChangeCause") if cause is not None else None
        detail = {"rplmn": rplmn_hex, "notify_state_change": "notifyStateChange" in value,
                  "state_change_cause": cause_name}
        self.store.note_poll(eid, rplmn_hex, cause_name, detail)
        if "notifyStateChange" in value or cause is not None:
            self.store.add_event(eid, "state_change", detail)
        if not self.store.has_open_orders(eid) and self.policy is not None:
            self._apply_policy(eid, rplmn_hex, cause_name)
        if not self.store.has_open_orders(eid):
            return get_package_error(1)
        order = self.store.next_open_order(eid)
        if order is None:
            return get_package_error(1)
        return self._issue(order)

    def _issue(self, order: Order) -> EsipaAnswer:
        txid = bytes.fromhex(order.eim_transaction_id)

        def build(counter: int | None, euicc: EuiccRecord) -> bytes:
            if order.kind in ("psmo", "eco"):
                return packages.euicc_package_request(
                    order.kind, order.params, eim=self.credential, eim_id=self.eim_id, eid=order.eid,
                    counter_value=counter, eim_transaction_id=txid, association_token=euicc.association_token)
            if order.kind == "euicc_data":
                return asn1.encode("GetEimPackageResponse", packages.ipa_euicc_data_request(order.params, txid))
            return asn1.encode("GetEimPackageResponse", packages.profile_download_trigger(order.params, txid))

        try:
            order, der = self.store.issue_package(order.id, build)
        except StoreError:  # cancelled meanwhile
            return get_package_error(1)
        self._notify()
        if order.kind in ("psmo", "eco"):
            der = tlv(b"\xbf\x4f", der)
        return EsipaAnswer(200, der, "getEimPackageResponse")

    def _apply_policy(self, eid: str, rplmn: str | None, cause: str | None) -> None:
        last_rplmn, failed = self.store.contact_info(eid)
        mcc, mnc = mcc_mnc(rplmn or last_rplmn)
        ctx = PolicyContext(eid, mcc, mnc, None, cause, failed)
        rule = self.policy.choose(ctx, self.store.policy_history(eid))
        if rule is None:
            return
        order = self.store.add_order(eid, rule.kind, rule.params, os.urandom(16).hex().upper(),
                                     source=f"policy:{rule.index}")
        self.store.add_event(eid, "policy", {**rule.describe(), "order_id": order.id, "mcc": mcc, "mnc": mnc,
                                             "failed_attempts": failed})

    # -- ESipa.ProvideEimPackageResult (§5.14.4) / HandleNotification (§5.14.5) --------------------------

    def provide_eim_package_result(self, node: Tlv, value: dict[str, Any], *, answer: bool = True) -> EsipaAnswer:
        eid = None
        if "eidValue" in value:
            eid_b = value["eidValue"]
            if len(eid_b) != 16 or not pki.eid_is_valid(eid_b.hex().upper()):
                return provide_result_error(3)
            eid = eid_b.hex().upper()
            if not self.store.is_known(eid):
                return provide_result_error(2)
        element = next((c for c in node.children() if c.tag != b"\x5a"), None)
        kind, inner = value["eimPackageResult"]
        matched, acks = self._result(eid, kind, inner, element)
        if not answer:
            return EsipaAnswer(204, b"", "handleNotificationEsipa")
        if eid is None and not matched:
            return provide_result_error(4)
        if not acks:
            return EsipaAnswer(200, _ACK_EMPTY, "provideEimPackageResultResponse")
        return EsipaAnswer(200, asn1.encode("EsipaMessageFromEimToIpa", (
            "provideEimPackageResultResponse", ("eimAcknowledgements", sorted(set(acks))))),
            "provideEimPackageResultResponse")

    def handle_notification(self, node: Tlv, value: Any) -> EsipaAnswer:
        alt, inner = value
        if alt == "provideEimPackageResult":
            return self.provide_eim_package_result(node.children()[0], inner, answer=False)
        raw = node.children()[0].children()[0].raw
        self._notification(None, raw, inner)
        return EsipaAnswer(204, b"", "handleNotificationEsipa")

    def _result(self, eid: str | None, kind: str, inner: Any, element: Tlv) -> tuple[bool, list[int]]:
        if kind == "euiccPackageResult":
            order, acks = self._euicc_package_result(eid, inner, element.raw)
            return order is not None, acks
        if kind == "ePRAndNotifications":
            children = element.children()
            epr = next(c for c in children if c.tag == b"\xbf\x51")
            order, acks = self._euicc_package_result(eid, inner["euiccPackageResult"], epr.raw)
            eid = eid or (order.eid if order else None)
            lst = next(c for c in children if c.tag == b"\xa0")
            for raw_n, decoded in zip(lst.children(), inner["notificationList"], strict=False):
                seq = self._notification(eid, raw_n.raw, decoded)
                if seq is not None:
                    acks.append(seq)
            return order is not None, acks
        if kind == "ipaEuiccDataResponse":
            return self._ipa_euicc_data(eid, inner, element)
        if kind == "profileDownloadTriggerResult":
            return self._download_result(eid, inner, element)
        # eimPackageResultResponseError: the IPA could not process the package
        order = self._match(eid, inner.get("eimTransactionId"), None, None)
        if order is None:
            return False, []
        code = inner["eimPackageResultErrorCode"]
        name = _names().number_name(code, "EimPackageResultErrorCode")
        self._finish(order, OrderStatus.FAILED, {"eimPackageResultError": name}, f"IPA reported {name}")
        return True, []

    def _match(self, eid: str | None, txid: bytes | None, counter: int | None, kinds: tuple[str, ...] | None
               ) -> Order | None:
        order = None
        if eid is not None and counter is not None:
            order = self.store.order_by_counter(eid, counter)
        if order is None and txid is not None:
            order = self.store.order_by_transaction_id(txid.hex().upper())
        if order is None and eid is not None:
            sent = [o for o in self.store.orders(eid, OrderStatus.SENT) if kinds is None or o.kind in kinds]
            order = sent[0] if sent else None
        if order is not None and eid is not None and order.eid != eid:
            return None
        return order

    def _finish(self, order: Order, status: str, result: dict | None, error: str | None,
                event: dict | None = None) -> None:
        if order.final:
            return
        self.store.finish_order(order.id, status, result, error, event=event)
        if order.kind == "download" or (order.kind == "psmo" and any("enable" in p for p in order.params["psmos"])):
            self.store.add_failed_attempt(order.eid, reset=status == OrderStatus.DONE)
        self._notify()

    def _verify(self, record: EuiccRecord, raw: bytes, signed: bool) -> tuple[bool, str | None]:
        """(verified, rejection reason or None) for an EuiccPackageResult (SGP.32 v1.2 §2.11.2.1)."""
        if not signed:
            if record.result_policy == "verify":
                return False, "unsigned euiccPackageErrorUnsigned refused (result policy 'verify')"
            return False, None
        if record.euicc_certificate:
            part = asn1.euicc_package_result_signed(raw)
            cert = x509.load_der_x509_certificate(record.euicc_certificate)
            data = euicc_result_signature_input(part.data, record.association_token)
            if not pki.verify_plain(cert, data, part.signature):
                return False, "the eUICC signature (euiccSignEPR/EPE) does not verify with the eUICC certificate"
            return True, None
        if record.result_policy == "verify":
            return False, "no eUICC certificate known to verify the result (result policy 'verify')"
        return False, None

    def _euicc_package_result(self, eid: str | None, value: Any, raw: bytes) -> tuple[Order | None, list[int]]:
        alt, body = value
        if alt == "euiccPackageResultSigned":
            data, signed = body["euiccPackageResultDataSigned"], True
        elif alt == "euiccPackageErrorSigned":
            data, signed = body["euiccPackageErrorDataSigned"], True
        else:
            data, signed = body, False
        if data.get("eimId") != self.eim_id:
            if eid:
                self.store.add_event(eid, "result_unmatched", {"reason": f"eimId {data.get('eimId')!r}"})
            return None, []
        order = self._match(eid, data.get("eimTransactionId"), data.get("counterValue"), ("psmo", "eco"))
        if order is None:
            if eid:
                self.store.add_event(eid, "result_unmatched", {"counter_value": data.get("counterValue")})
            return None, []
        record = self.euicc(order.eid)
        seq = data.get("seqNumber")
        if order.final:  # a repeated delivery: acknowledge again, change nothing
            return order, [seq] if seq is not None else []
        try:
            verified, reason = self._verify(record, raw, signed)
        except (TlvError, ValueError) as exc:
            verified, reason = False, f"result signature unreadable: {exc}"
        if reason is not None:
            self._finish(order, OrderStatus.FAILED, {"rejected": reason}, f"result rejected: {reason}")
            return order, []
        counter = data.get("counterValue")
        if alt == "euiccPackageResultSigned":
            result: dict[str, Any] = {"verified": verified, "counter_value": counter, "seq_number": seq,
                                      "results": []}
            errors = []
            for i, (name, item) in enumerate(data["euiccResult"]):
                text, ok = packages.describe_result(name, item)
                result["results"].append({name: text})
                result.setdefault(name, text)
                if not ok:
                    errors.append(f"{name}: {text}")
                if name in ("addEimResult", "updateEimResult") and isinstance(text, dict):
                    self._learn_token(order, i, text.get("associationToken"))
            status = OrderStatus.FAILED if errors else OrderStatus.DONE
            self._finish(order, status, result, "; ".join(errors) or None,
                         {"counter_value": counter, "seq_number": seq, "verified": verified})
            return order, [seq] if seq is not None else []
        if alt == "euiccPackageErrorSigned":
            name = packages.error_code_name(data["euiccPackageErrorCode"])
            self._finish(order, OrderStatus.FAILED, {"verified": verified, "counter_value": counter,
                                                     "euiccPackageError": name}, f"euiccPackageError {name}")
            return order, []
        self._finish(order, OrderStatus.FAILED, {"verified": False, "euiccPackageErrorUnsigned": _jsonable(data)},
                     "the eUICC refused the package (euiccPackageErrorUnsigned)")
        return order, []

    def _learn_token(self, order: Order, index: int, token: int | None) -> None:
        try:
            op = order.params["ecos"][index]
        except (KeyError, IndexError):
            return
        body = next(iter(op.values()))
        if token is not None and body.get("eim_id") == self.eim_id:
            self.store.set_association_token(order.eid, token)

    # -- IpaEuiccDataResponse --------------------------------------------------------------------------

    def _ipa_euicc_data(self, eid: str | None, value: Any, element: Tlv) -> tuple[bool, list[int]]:
        alt, body = value
        order = self._match(eid, body.get("eimTransactionId"), None, ("euicc_data",))
        eid = eid or (order.eid if order else None)
        acks: list[int] = []
        if alt == "ipaEuiccDataResponseError":
            if order is not None:
                name = _names().number_name(body["ipaEuiccDataErrorCode"], "IpaEuiccDataErrorCode")
                self._finish(order, OrderStatus.FAILED, {"ipaEuiccDataError": name}, f"ipaEuiccDataError {name}")
            return order is not None, acks
        data_node = element.children()[0]
        raw = {c.tag: c for c in data_node.children()}
        if eid is not None and b"\xa6" in raw:
            self._learn_certificate(eid, raw[b"\xa6"], raw.get(b"\xa5"))
        if eid is not None and b"\xbf\x20" in raw and self.store.is_known(eid):
            self.store.set_euicc_info1(eid, raw[b"\xbf\x20"].raw)
        if eid is not None and b"\xa0" in raw:
            for raw_n, decoded in zip(raw[b"\xa0"].children(), body.get("notificationsList", []), strict=False):
                seq = self._notification(eid, raw_n.raw, decoded)
                if seq is not None:
                    acks.append(seq)
        if b"\xa2" in raw:
            for raw_r, decoded in zip(raw[b"\xa2"].children(), body.get("euiccPackageResultList", []), strict=False):
                _, more = self._euicc_package_result(eid, decoded, raw_r.raw)
                acks.extend(more)
        if order is not None:
            self._finish(order, OrderStatus.DONE, _jsonable(body), None)
        return order is not None, acks

    def _learn_certificate(self, eid: str, cert_node: Tlv, eum_node: Tlv | None) -> None:
        try:
            cert = x509.load_der_x509_certificate(tlv(b"\x30", cert_node.value))
            eum = [x509.load_der_x509_certificate(tlv(b"\x30", eum_node.value))] if eum_node else []
            chain = pki.verify_chain(cert, eum, self.pki.trusted_cis(), role=pki.Role.EUICC)
            if chain.eid not in (None, eid) or pki.eid_of(cert) != eid:
                raise ValueError(f"certificate EID {pki.eid_of(cert)} is not {eid}")
        except (ValueError, pki.ChainError) as exc:
            self.store.add_event(eid, "certificate_refused", {"reason": str(exc)})
            return
        self.store.set_certificate(eid, cert.public_bytes(serialization.Encoding.DER))
        self.store.add_event(eid, "certificate_learned", {"subject": cert.subject.rfc4514_string()})

    # -- profile download results -----------------------------------------------------------------------

    def _download_result(self, eid: str | None, value: dict, element: Tlv) -> tuple[bool, list[int]]:
        order = self._match(eid, value.get("eimTransactionId"), None, ("download",))
        eid = eid or (order.eid if order else None)
        alt, data = value["profileDownloadTriggerResultData"]
        if alt == "profileDownloadError":
            if order is not None:
                reason = _names().number_name(data["profileDownloadErrorReason"], "ProfileDownloadTriggerResult",
                                              "profileDownloadTriggerResultData", "profileDownloadError",
                                              "profileDownloadErrorReason")
                result = {"profileDownloadError": reason}
                if data.get("errorResponse") is not None:
                    result["errorResponse"] = data["errorResponse"].hex().upper()
                self._finish(order, OrderStatus.FAILED, result, f"profileDownloadError {reason}")
            return order is not None, []
        pir = next((c for c in element.children() if c.tag == b"\xbf\x37"), None)
        acks = []
        if pir is not None:
            seq = self._notification(eid, pir.raw, ("profileInstallationResult", data), order=order)
            if seq is not None:
                acks.append(seq)
        return order is not None, acks

    def _complete_download(self, order: Order, pir_data: dict) -> None:
        final_alt, final = pir_data["finalResult"]
        meta = pir_data.get("notificationMetadata", {})
        iccid = meta.get("iccid")
        base = {"transaction_id": pir_data["transactionId"].hex().upper(),
                "iccid": _iccid_text(iccid) if iccid else None}
        if final_alt == "successResult":
            self._finish(order, OrderStatus.DONE, {"profileInstallationResult": "ok", **base,
                                                   "aid": final["aid"].hex().upper()}, None)
        else:
            reason = _names().number_name(final["errorReason"], "ErrorResult", "errorReason")
            self._finish(order, OrderStatus.FAILED, {"profileInstallationResult": "error", **base,
                                                     "errorReason": reason,
                                                     "bppCommandId": final.get("bppCommandId")},
                         f"profile installation failed: {reason}")

    # -- notifications (§5.14.5) -------------------------------------------------------------------------

    def _notification(self, eid: str | None, raw: bytes, decoded: Any, order: Order | None = None) -> int | None:
        """Record one PendingNotification; forward a ProfileInstallationResult of a relayed (indirect)
        download to its SM-DP+. Returns the seqNumber to acknowledge, or None."""
        alt, body = decoded
        seq = tx = None
        forward_to = None
        pir_data = None
        if alt == "profileInstallationResult":
            pir_data = body["profileInstallationResultData"]
            seq = pir_data["notificationMetadata"]["seqNumber"]
            tx = pir_data["transactionId"].hex().upper()
        elif alt == "compactProfileInstallationResult":
            data = body["compactProfileInstallationResultData"]
            seq, tx = data["seqNumber"], data["transactionId"].hex().upper()
        elif alt == "otherSignedNotification":
            seq = body["tbsOtherNotification"]["seqNumber"]
            if eid is None:
                try:
                    eid = pki.eid_of(x509.load_der_x509_certificate(asn1.encode("Certificate",
                                                                                 body["euiccCertificate"])))
                except (ValueError, asn1.Asn1Error):
                    eid = None
        elif alt == "compactOtherSignedNotification":
            seq = body["tbsOtherNotification"]["seqNumber"]
            if eid is None and body.get("eidValue"):
                eid = body["eidValue"].hex().upper()
        session = self.store.relay_session(tx) if tx else None
        forward_address = None
        if session is not None:
            eid = eid or session.eid
            if order is None and session.order_id is not None:
                order = self.store.order(session.order_id)
            if alt == "profileInstallationResult" and not self.store.forwarded_pir(tx):
                # the relayed download's SM-DP+ learns the outcome within the IPA's request
                forward_address = session.smdp_address
                if self.relay.forward_notification(forward_address, raw) is None:
                    forward_to = forward_address
        elif alt == "otherSignedNotification":
            forward_address = body["tbsOtherNotification"].get("notificationAddress") or None
        if eid is not None and not self.store.is_known(eid):
            eid = None
        self.store.add_notification(eid, seq, alt, tx, raw, forward_to, forward_address)
        if forward_address and forward_to is None:
            self._forward_wake.set()
        if order is not None and pir_data is not None:
            self._complete_download(order, pir_data)
        # Acknowledge what the eIM took charge of: anything but a PIR of a direct download, which the IPA
        # still has to deliver to the SM-DP+ itself.
        if alt in ("profileInstallationResult", "compactProfileInstallationResult") and session is None:
            return None
        return seq


def _iccid_text(raw: bytes) -> str:
    digits = []
    for b in raw:
        digits.append("%X" % (b & 0x0F))
        digits.append("%X" % (b >> 4))
    return "".join(digits).rstrip("F")


def _load_cert(obj: bytes | str | x509.Certificate) -> x509.Certificate:
    if isinstance(obj, x509.Certificate):
        return obj
    try:
        if isinstance(obj, str):
            if "BEGIN CERTIFICATE" in obj:
                return x509.load_pem_x509_certificate(obj.encode())
            return x509.load_der_x509_certificate(bytes.fromhex(obj))
        if obj.startswith(b"-----BEGIN"):
            return x509.load_pem_x509_certificate(obj)
        return x509.load_der_x509_certificate(obj)
    except ValueError as exc:
        raise OrderError(f"not a certificate (DER, hex or PEM): {exc}", "euicc_certificate") from None
