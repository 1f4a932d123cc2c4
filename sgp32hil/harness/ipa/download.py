"""Direct profile download by the IPA (SGP.32 v1.2 §3.2.3.1 "direct", performed as SGP.22 v2.5 §3.1.3).

:func:`download_profile` runs, from an Activation Code:

1. ``GetEUICCInfo``: ES10b.GetEUICCChallenge and GetEUICCInfo1 (EUICCInfo1 DER kept for ES9+);
2. ``InitiateAuthentication`` (ES9+): the SM-DP+ session (transactionId) exists from here on;
3. ``AuthenticateServer`` (ES10b) with ctxParams1 = MatchingID + DeviceInfo;
4. ``AuthenticateClient`` (ES9+) with the eUICC's signed response;
5. ``PrepareDownload`` (ES10b), with hashCc = SHA256(SHA256(CC) | transactionId) when the SM-DP+'s
   smdpSigned2 sets ccRequiredFlag;
6. ``GetBoundProfilePackage`` (ES9+);
7. ``LoadBoundProfilePackage`` (ES10b, segmented per SGP.22 §2.5.5) -> ProfileInstallationResult;
8. ``HandleNotification``: the ProfileInstallationResult to its notificationAddress (ES9+), then
   ES10b.RemoveNotificationFromList for its seqNumber.

The ES9+ side is an :class:`~sgp32hil.harness.es9p_client.Es9Client` (direct, SGP.32 §3.2.3.1) or an
:class:`~sgp32hil.harness.ipa.indirect.EsipaRelay` (indirect, SGP.32 §3.2.3.2: the same calls over ESipa
to the eIM, which relays them to the SM-DP+).

An error response of the eUICC to AuthenticateServer/PrepareDownload is forwarded to the SM-DP+ in the
next ES9+ call, as it is part of the response the ES9+ function carries (SGP.22 §5.6.2, §5.6.3).  Any
other failure once the SM-DP+ session exists cancels it (SGP.22 §3.1.3, §5.7.14, §5.6.5): ES10b.
CancelSession, then ES9+.CancelSession with the eUICC's signed response.  A ProfileInstallationResult
with an errorResult is no cancellation case: like a success it is delivered as a notification.

:func:`deliver_pending_notifications` delivers and removes what the eUICC still holds (SGP.22 §3.5).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx

from ...drivers.apdu.base import ApduError, TransportError
from ...drivers.es10 import download as es10b
from ...drivers.es10.client import Es10Client, Es10Error
from ...drivers.es10.decode import DecodedExchange, decode_trace
from ...drivers.es10.download import (
    CancelSessionResult,
    CtxParams1,
    DeviceInfo,
    ProfileInstallationResult,
    hash_confirmation_code,
)
from ...drivers.es10.types import iccid_from_bcd
from ..activation import ActivationCode
from ..activation import parse as parse_activation_code
from ..asn1 import Asn1Error
from ..asn1 import decode as asn1_decode
from ..es9p_client import DEFAULT_TIMEOUT, Es9Client, Es9Error, Es9Exchange, Es9TransportError
from .esipa_client import EsipaError

__all__ = [
    "PHASES",
    "CancelOutcome",
    "DownloadError",
    "DownloadResult",
    "NotificationOutcome",
    "ProgressEvent",
    "deliver_pending_notifications",
    "download_profile",
]

PHASES = (
    "GetEUICCInfo",
    "InitiateAuthentication",
    "AuthenticateServer",
    "AuthenticateClient",
    "PrepareDownload",
    "GetBoundProfilePackage",
    "LoadBoundProfilePackage",
    "HandleNotification",
)
CANCEL_PHASE = "CancelSession"


@dataclass(frozen=True)
class ProgressEvent:
    """One finished phase: ``status`` is ``ok`` or ``failed``; ``detail`` a short human-readable note."""

    phase: str
    status: str
    seconds: float
    detail: str = ""


@dataclass(frozen=True)
class DownloadError:
    """Why a download failed, in the terms of the interface that reported it.

    ``kind``: ``es10`` (eUICC result code), ``install`` (ProfileInstallationResult errorResult with
    ``bpp_command_id``/``error_reason``), ``es9`` (SM-DP+ functionExecutionStatus with
    ``subject_code``/``reason_code``), ``es9-transport`` (HTTP/TLS/time-out), ``apdu`` (status word),
    ``transport`` (card path), ``protocol`` (data that does not follow the specification),
    ``input`` (a missing Confirmation Code).
    """

    phase: str
    kind: str
    message: str
    es10_code: int | None = None
    es10_name: str | None = None
    subject_code: str | None = None
    reason_code: str | None = None
    bpp_command_id: str | None = None
    error_reason: str | None = None

    def to_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass(frozen=True)
class CancelOutcome:
    """The cancellation after a failure: the ES10b result and the ES9+ outcome (``""`` when accepted)."""

    reason: str
    es10: CancelSessionResult | None
    es10_error: str = ""
    es9_sent: bool = False
    es9_error: str = ""

    def to_dict(self) -> dict:
        return {"reason": self.reason, "es10": self.es10.to_dict() if self.es10 else None,
                "es10_error": self.es10_error, "es9_sent": self.es9_sent, "es9_error": self.es9_error}


@dataclass(frozen=True)
class NotificationOutcome:
    """Delivery of one pending notification: ES9+.HandleNotification, then RemoveNotificationFromList."""

    seq_number: int | None
    kind: str
    address: str | None
    delivered: bool
    removed: bool
    error: str = ""

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class DownloadResult:
    """Outcome of :func:`download_profile`: the installed profile or the error, per-phase timings,
    the number of APDUs exchanged (GET RESPONSE included), and both traces (ES9+ exchanges, decoded ES10 exchanges) for report attachments."""

    activation_code: ActivationCode
    success: bool
    iccid: str | None = None
    isdp_aid: str | None = None
    transaction_id: str | None = None
    error: DownloadError | None = None
    installation: ProfileInstallationResult | None = None
    cancel: CancelOutcome | None = None
    notification: NotificationOutcome | None = None
    timings: dict[str, float] = field(default_factory=dict)
    total_seconds: float = 0.0
    apdu_count: int = 0
    es9_exchanges: list[Es9Exchange] = field(default_factory=list)
    es10_trace: list[DecodedExchange] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "activation_code": str(self.activation_code),
            "success": self.success,
            "iccid": self.iccid,
            "isdp_aid": self.isdp_aid,
            "transaction_id": self.transaction_id,
            "error": self.error.to_dict() if self.error else None,
            "installation": self.installation.to_dict() if self.installation else None,
            "cancel": self.cancel.to_dict() if self.cancel else None,
            "notification": self.notification.to_dict() if self.notification else None,
            "timings": {k: round(v, 6) for k, v in self.timings.items()},
            "total_seconds": round(self.total_seconds, 6),
            "apdu_count": self.apdu_count,
            "es9_exchanges": [e.to_dict() for e in self.es9_exchanges],
            "es10_trace": [e.to_dict() for e in self.es10_trace],
        }


class _Failure(Exception):
    def __init__(self, error: DownloadError, cancel_reason: str | None):
        super().__init__(error.message)
        self.error = error
        self.cancel_reason = cancel_reason


def _error_of(phase: str, exc: BaseException) -> tuple[DownloadError, str]:
    """The DownloadError for ``exc`` and the CancelSessionReason to use."""
    reason = "loadBppExecutionError" if phase == "LoadBoundProfilePackage" else "undefinedReason"
    if isinstance(exc, Es10Error):
        return DownloadError(phase, "es10", str(exc), es10_code=exc.code, es10_name=exc.name), reason
    if isinstance(exc, Es9Error):
        return DownloadError(phase, "es9", str(exc), subject_code=exc.subject_code,
                             reason_code=exc.reason_code), reason
    if isinstance(exc, EsipaError):
        kind = "esipa" if exc.kind == "rejected" else "esipa-transport"
        return DownloadError(phase, kind, str(exc), reason_code=exc.name), "timeout" if exc.kind == "timeout" else reason
    if isinstance(exc, Es9TransportError):
        return DownloadError(phase, "es9-transport", str(exc)), "timeout" if exc.timeout else reason
    if isinstance(exc, ApduError):
        return DownloadError(phase, "apdu", str(exc)), reason
    if isinstance(exc, TransportError):
        return DownloadError(phase, "transport", str(exc)), reason
    return DownloadError(phase, "protocol", f"{type(exc).__name__}: {exc}"), reason


_EXPECTED = (Es10Error, Es9Error, Es9TransportError, EsipaError, ApduError, TransportError, ValueError, Asn1Error)
# The server side refused (the forwarded eUICC error may explain why): ES9+ status or ESipa error code.
_REFUSED = (Es9Error, EsipaError)


class _Procedure:
    def __init__(self, client: Es10Client, ac: ActivationCode, es9: Es9Client,
                 progress: Callable[[ProgressEvent], None] | None, result: DownloadResult,
                 es9_for: Callable[[str], Es9Client]):
        self.client = client
        self.ac = ac
        self.es9 = es9
        self.progress = progress
        self.result = result
        self.es9_for = es9_for
        self.transaction_id: bytes | None = None

    @contextmanager
    def phase(self, name: str) -> Iterator[list[str]]:
        """Time one phase, report it, and turn an expected exception into a :class:`_Failure`."""
        detail: list[str] = []
        t0 = time.perf_counter()
        try:
            yield detail
        except _Failure as failure:
            self._done(name, "failed", t0, failure.error.message)
            raise
        except _EXPECTED as exc:
            error, reason = _error_of(name, exc)
            self._done(name, "failed", t0, error.message)
            raise _Failure(error, reason if self.transaction_id is not None else None) from exc
        self._done(name, "ok", t0, " ".join(detail))

    def _done(self, name: str, status: str, t0: float, detail: str) -> None:
        seconds = time.perf_counter() - t0
        self.result.timings[name] = self.result.timings.get(name, 0.0) + seconds
        if self.progress is not None:
            self.progress(ProgressEvent(name, status, seconds, detail))

    def run(self, confirmation_code: str | None, device_info: DeviceInfo) -> None:
        client, es9, result = self.client, self.es9, self.result

        with self.phase("GetEUICCInfo") as note:
            challenge = client.get_euicc_challenge()
            _, euicc_info1 = client.call("GetEUICCInfo1", "GetEuiccInfo1Request", {}, "EUICCInfo1")
            note.append(f"challenge {challenge.hex().upper()}")

        with self.phase("InitiateAuthentication") as note:
            init = es9.initiate_authentication(challenge, euicc_info1, self.ac.smdp_address)
            self.transaction_id = init.transaction_id
            result.transaction_id = init.transaction_id.hex().upper()
            note.append(f"transactionId {result.transaction_id}")

        with self.phase("AuthenticateServer") as note:
            auth = es10b.authenticate_server(
                client, init.server_signed1, init.server_signature1, init.euicc_ci_pkid_to_be_used,
                init.server_certificate, CtxParams1(self.ac.matching_id or None, device_info))
            note.append(auth.kind)

        with self.phase("AuthenticateClient") as note:
            try:
                accepted = es9.authenticate_client(self.transaction_id, auth.der)
            except _REFUSED:
                if not auth.ok:
                    self._fail_forwarded("AuthenticateServer", auth)
                raise
            if not auth.ok:
                self._fail_forwarded("AuthenticateServer", auth, smdp_accepted=True)
            signed2 = asn1_decode("SmdpSigned2", accepted.smdp_signed2)
            self._note_iccid(accepted.profile_metadata)
            cc_required = bool(signed2["ccRequiredFlag"])
            note.append(f"ICCID {result.iccid}" if result.iccid else "")
            if cc_required:
                note.append("confirmation code required")

        hash_cc = None
        if cc_required:
            if confirmation_code is None:
                raise _Failure(DownloadError("AuthenticateClient", "input",
                                             "the SM-DP+ requires a Confirmation Code (ccRequiredFlag) and none was given"),
                               "postponed")
            hash_cc = hash_confirmation_code(confirmation_code, signed2["transactionId"])

        with self.phase("PrepareDownload") as note:
            prepared = es10b.prepare_download(client, accepted.smdp_signed2, accepted.smdp_signature2,
                                              accepted.smdp_certificate, hash_cc)
            note.append(prepared.kind)

        with self.phase("GetBoundProfilePackage") as note:
            try:
                bound = es9.get_bound_profile_package(self.transaction_id, prepared.der)
            except _REFUSED:
                if not prepared.ok:
                    self._fail_forwarded("PrepareDownload", prepared)
                raise
            if not prepared.ok:
                self._fail_forwarded("PrepareDownload", prepared, smdp_accepted=True)
            note.append(f"{len(bound.bound_profile_package)} bytes")

        with self.phase("LoadBoundProfilePackage") as note:
            pir = es10b.load_bound_profile_package(client, bound.bound_profile_package)
            result.installation = pir
            if pir.iccid:
                result.iccid = pir.iccid
            note.append(f"{pir.segments_sent}/{pir.segments_total} segments, "
                        + ("installed" if pir.success else f"{pir.error_reason} at {pir.bpp_command_id}"))
        self.transaction_id = None  # the session ended with the ProfileInstallationResult

        with self.phase("HandleNotification") as note:
            result.notification = _deliver(client, pir.der, pir.seq_number, "profileInstallationResult",
                                           pir.notification_address, self.es9_for)
            outcome = result.notification
            note.append(f"seqNumber {pir.seq_number} "
                        + ("delivered and removed" if outcome.removed
                           else "delivered" if outcome.delivered else "not delivered")
                        + (f": {outcome.error}" if outcome.error else ""))

        if not pir.success:
            raise _Failure(DownloadError("LoadBoundProfilePackage", "install",
                                         f"ProfileInstallationResult: {pir.error_reason} at {pir.bpp_command_id}",
                                         es10_code=pir.error_reason_code, es10_name=pir.error_reason,
                                         bpp_command_id=pir.bpp_command_id, error_reason=pir.error_reason), None)
        result.isdp_aid = pir.isdp_aid.hex().upper() if pir.isdp_aid else None

    def _fail_forwarded(self, phase: str, outcome: Any, *, smdp_accepted: bool = False) -> None:
        """The eUICC refused (error response forwarded to the SM-DP+); no session remains on the eUICC."""
        error = DownloadError(phase, "es10", f"{phase}: {outcome.error_name} ({outcome.error_code})",
                              es10_code=outcome.error_code, es10_name=outcome.error_name)
        raise _Failure(error, "undefinedReason" if smdp_accepted else None)

    def _note_iccid(self, profile_metadata: bytes) -> None:
        try:
            meta = asn1_decode("SGP32-StoreMetadataRequest", profile_metadata)
        except Asn1Error:
            return
        if "iccid" in meta:
            self.result.iccid = iccid_from_bcd(meta["iccid"])

    def cancel(self, reason: str) -> CancelOutcome:
        """ES10b.CancelSession, then ES9+.CancelSession with what the eUICC returned (best effort)."""
        t0 = time.perf_counter()
        es10_result = None
        es10_error = es9_error = ""
        es9_sent = False
        try:
            es10_result = es10b.cancel_session(self.client, self.transaction_id, reason)
        except _EXPECTED as exc:
            es10_error = str(exc)
        if es10_result is not None:
            try:
                self.es9.cancel_session(self.transaction_id, es10_result.der)
                es9_sent = True
            except (Es9Error, Es9TransportError, EsipaError) as exc:
                es9_sent = isinstance(exc, Es9Error) or (isinstance(exc, EsipaError) and exc.kind == "rejected")
                es9_error = str(exc)
        outcome = CancelOutcome(reason, es10_result, es10_error, es9_sent, es9_error)
        status = "ok" if es10_result is not None and es10_result.ok and es9_sent and not es9_error else "failed"
        detail = f"reason {reason}" + (f": {es10_error or es9_error}" if status == "failed" else "")
        self._done(CANCEL_PHASE, status, t0, detail)
        return outcome


def _same_address(a: str, b: str) -> bool:
    return a.strip().rstrip(".").lower() == b.strip().rstrip(".").lower()


def _deliver(client: Es10Client, der: bytes, seq: int | None, kind: str, address: str | None,
             es9_for: Callable[[str], Es9Client]) -> NotificationOutcome:
    if not address:
        return NotificationOutcome(seq, kind, address, False, False, "no notification address")
    try:
        es9_for(address).handle_notification(der)
    except (Es9Error, Es9TransportError, EsipaError, ValueError, OSError) as exc:
        return NotificationOutcome(seq, kind, address, False, False, str(exc))
    if seq is None:
        return NotificationOutcome(seq, kind, address, True, False, "no seqNumber to remove")
    try:
        client.remove_notification_from_list(seq)
    except (Es10Error, ApduError, TransportError) as exc:
        return NotificationOutcome(seq, kind, address, True, False, str(exc))
    return NotificationOutcome(seq, kind, address, True, True)


class _ClientPool:
    """Es9Client per SM-DP+ address, sharing one TLS configuration; closes the clients it created."""

    def __init__(self, first: Es9Client | None, factory: Callable[[str], Es9Client] | None):
        self.clients: list[Es9Client] = [first] if first is not None else []
        self.created: list[Es9Client] = []
        self.factory = factory

    def __call__(self, address: str) -> Es9Client:
        for c in self.clients:
            if getattr(c, "relays_all_addresses", False):  # indirect: every notification goes to the eIM
                return c
            if _same_address(c.address, address):
                return c
        if self.factory is None:
            raise ValueError(f"no ES9+ client for notification address {address!r}")
        new = self.factory(address)
        self.clients.append(new)
        self.created.append(new)
        return new

    def exchanges(self) -> list[Es9Exchange]:
        return [e for c in self.clients for e in c.exchanges]

    def close(self) -> None:
        for c in self.created:
            c.close()


def download_profile(
    client: Es10Client,
    activation_code: ActivationCode | str,
    *,
    confirmation_code: str | None = None,
    es9: Es9Client | None = None,
    ca: str | os.PathLike | None = None,
    insecure: bool = False,
    pki_dir: str | os.PathLike | None = None,
    timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
    device_info: DeviceInfo | None = None,
    progress: Callable[[ProgressEvent], None] | None = None,
) -> DownloadResult:
    """Download and install the profile of ``activation_code`` (SGP.22 §3.1.3; SGP.32 §3.2.3.1 direct).

    ``client`` is an open :class:`Es10Client`.  ``es9`` may also be an
    :class:`~sgp32hil.harness.ipa.indirect.EsipaRelay` for the indirect download.  Without ``es9`` an :class:`Es9Client` is created for the
    SM-DP+ Address with ``ca``/``insecure``/``pki_dir``/``timeout`` (and closed at the end).
    ``progress`` is called once per finished phase (:data:`PHASES`, plus ``CancelSession``).
    Failures are reported in the returned :class:`DownloadResult`, never raised; a missing Confirmation
    Code for an Activation Code that requires one raises :class:`ValueError` before anything is sent.
    """
    ac = parse_activation_code(activation_code) if isinstance(activation_code, str) else activation_code
    if ac.cc_required and confirmation_code is None:
        raise ValueError(f"activation code {ac}: a Confirmation Code is required (Confirmation Code Required Flag)")

    def factory(address: str) -> Es9Client:
        return Es9Client(address, ca=ca, insecure=insecure, pki_dir=pki_dir, timeout=timeout)

    own = es9 is None
    first = factory(ac.smdp_address) if own else es9
    pool = _ClientPool(first, factory)
    es9_start = len(first.exchanges)
    es10_start = len(client.exchanges)
    result = DownloadResult(activation_code=ac, success=False)
    procedure = _Procedure(client, ac, first, progress, result, pool)
    t0 = time.perf_counter()
    try:
        procedure.run(confirmation_code, device_info or DeviceInfo())
        result.success = True
    except _Failure as failure:
        result.error = failure.error
        if failure.cancel_reason is not None and procedure.transaction_id is not None:
            result.cancel = procedure.cancel(failure.cancel_reason)
    finally:
        result.total_seconds = time.perf_counter() - t0
        result.apdu_count = sum(len(e.apdus) for e in client.exchanges[es10_start:])
        result.es10_trace = decode_trace(client.exchanges[es10_start:])
        result.es9_exchanges = first.exchanges[es9_start:] + [e for c in pool.created for e in c.exchanges
                                                             if c is not first]
        pool.close()
        if own:
            first.close()
    return result


def deliver_pending_notifications(
    client: Es10Client,
    es9: Es9Client | Callable[[str], Es9Client],
    *,
    remove: bool = True,
) -> list[NotificationOutcome]:
    """Deliver every pending notification of the eUICC (ES10b.RetrieveNotificationsList) by
    ES9+.HandleNotification to its notificationAddress, removing each delivered one with
    RemoveNotificationFromList unless ``remove`` is False (SGP.22 §3.5, §5.6.4, §5.7.10-5.7.11).

    ``es9`` is an :class:`Es9Client` (used for notifications addressed to its SM-DP+; others are
    reported as not delivered) or a factory ``address -> Es9Client`` (clients it creates are closed).
    Compact and eUICC Package Result forms (SGP.32, for the eIM) are not ES9+ notifications and are
    reported as not delivered.  Errors are reported per notification, never raised.
    """
    pool = _ClientPool(es9, None) if isinstance(es9, Es9Client) else _ClientPool(None, es9)
    outcomes = []
    try:
        for n in client.retrieve_notifications_list():
            if n.kind not in ("profileInstallationResult", "otherSignedNotification"):
                outcomes.append(NotificationOutcome(n.seq_number, n.kind, n.address, False, False,
                                                    f"{n.kind} is not delivered over ES9+"))
                continue
            if not remove:
                try:
                    pool(n.address or "").handle_notification(n.der)
                    outcomes.append(NotificationOutcome(n.seq_number, n.kind, n.address, True, False))
                except (Es9Error, Es9TransportError, ValueError, OSError) as exc:
                    outcomes.append(NotificationOutcome(n.seq_number, n.kind, n.address, False, False, str(exc)))
                continue
            outcomes.append(_deliver(client, n.der, n.seq_number, n.kind, n.address, pool))
    finally:
        pool.close()
    return outcomes
