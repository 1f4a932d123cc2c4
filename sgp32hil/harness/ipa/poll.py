"""The IPAd poll cycle (SGP.32 v1.2 §3.1.1.1 eIM package retrieval, HTTPS retrieve mode).

One :meth:`Ipa.poll`:

1. opens the card (transport, ISD-R channel), reads the EID (ES10c.GetEID) and the eIM configuration
   (ES10b.GetEimConfigurationData, §5.9.x); the eIM address is the card's eimFqdn unless overridden;
2. flushes what the eUICC still holds: stored EuiccPackageResults (ES10b.RetrieveNotificationsList with
   euiccPackageResults) go to the eIM by ESipa.ProvideEimPackageResult; pending notifications (§3.6) go
   to the eIM by ESipa.HandleNotification, except a ProfileInstallationResult when the IPA downloads
   directly: that one belongs to the SM-DP+ (ES9+.HandleNotification, SGP.32 §3.2.3.1 / SGP.22 §3.5).
   Each delivered or acknowledged item is removed (ES10b.RemoveNotificationFromList);
3. ESipa.GetEimPackage until ``eimPackageError noEimPackageAvailable`` (§5.14.3), executing each package:

   - ``euiccPackageRequest`` -> ES10b.LoadEuiccPackage with the signed request unchanged -> the raw
     EuiccPackageResult, with the pending notifications as ``ePRAndNotifications`` when there are any ->
     ESipa.ProvideEimPackageResult -> RemoveNotificationFromList for every acknowledged seqNumber;
   - ``ipaEuiccDataRequest`` -> IpaEuiccData built from the card per the tag list (§2.11.2; unknown tags
     -> ``incorrectTagList``) -> ProvideEimPackageResult;
   - ``profileDownloadTriggerRequest`` -> direct (ES9+ to the SM-DP+) or indirect (ESipa relay, §3.2.3.2)
     download, per :attr:`Ipa.download_mode` -> ProfileDownloadTriggerResult -> ProvideEimPackageResult;
   - a package that does not decode -> ``eimPackageResultResponseError`` invalidPackageFormat, an unknown
     one -> unknownPackage (§5.14.4).

REFRESH: a profile switch resets the card (ETSI TS 102 221 REFRESH "UICC reset"), killing the ISD-R
channel mid-procedure.  A card-path failure that looks like a reset (transport error, or a logical
channel the card no longer knows) makes the IPA reopen the transport and the ES10 session and continue
from what the card reports (stored package results, pending notifications), counted in
:attr:`PollResult.refreshes`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from ...drivers.apdu.base import ApduError, ApduTransport, TransportError
from ...drivers.es10.client import Es10Client, Es10Error
from ...drivers.es10.decode import DecodedExchange, asn1_names, decode_trace, make_bitstring, to_jsonable
from ...drivers.es10.download import DeviceInfo
from ...drivers.es10.types import EimConfiguration, PendingNotification
from ..activation import ActivationCodeError
from ..activation import parse as parse_activation_code
from ..asn1 import Asn1Error, TlvError, parse_single
from ..asn1 import decode as asn1_decode
from ..asn1 import encode as asn1_encode
from ..es9p_client import Es9Client
from .download import DownloadResult, NotificationOutcome, ProgressEvent, _ClientPool, _deliver, download_profile
from .esipa_client import DEFAULT_TIMEOUT, EimPackage, EsipaClient, EsipaError, EsipaExchange, retag, tlv
from .indirect import EsipaRelay

__all__ = ["DOWNLOAD_MODES", "Ipa", "PackageOutcome", "PollError", "PollEvent", "PollResult"]

DOWNLOAD_MODES = ("auto", "direct", "indirect")
# SWs of a command on a logical channel the card no longer has (after a reset): ISO 7816-4 §5.1.3.
_DEAD_CHANNEL_SW = {0x6881, 0x6882, 0x6999}
_FUNCTION_NOT_SUPPORTED_SW = {0x6A88, 0x6D00, 0x6A81}
_UNDEFINED = 127
# IpaEuiccData members (SGP.32 v1.2 §2.11.2) by the tag the eIM lists in tagList, in ASN.1 order.
IPA_EUICC_DATA_TAGS: dict[bytes, str] = {
    b"\xa0": "notificationsList",
    b"\x81": "defaultSmdpAddress",
    b"\xa2": "euiccPackageResultList",
    b"\xbf\x20": "euiccInfo1",
    b"\xbf\x22": "euiccInfo2",
    b"\x83": "rootSmdsAddress",
    b"\x84": "associationToken",
    b"\xa5": "eumCertificate",
    b"\xa6": "euiccCertificate",
    b"\xa8": "ipaCapabilities",
    b"\xa9": "deviceInfo",
}
_MEMBER_ORDER = list(IPA_EUICC_DATA_TAGS.values())


class PollError(Exception):
    """The poll could not go on.  ``infrastructure``: the eIM or the card path was unreachable."""

    def __init__(self, message: str, *, infrastructure: bool = False):
        super().__init__(message)
        self.infrastructure = infrastructure


class _CardReset(Exception):
    """The card was reset under the IPA (REFRESH): the ISD-R session was reopened."""


@dataclass(frozen=True)
class PollEvent:
    """Progress of a poll: ``stage`` (eim, flush, package, download, refresh), a status and a note."""

    stage: str
    status: str
    detail: str
    duration_ms: float = 0.0


@dataclass
class PackageOutcome:
    """One eIM package executed (or a stored result delivered): what it was and what came of it."""

    kind: str
    eim_transaction_id: str | None
    counter_value: int | None
    ok: bool
    result: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    duration_ms: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "eim_transaction_id": self.eim_transaction_id,
                "counter_value": self.counter_value, "ok": self.ok, "result": to_jsonable(self.result),
                "error": self.error, "duration_ms": round(self.duration_ms, 3)}


@dataclass
class PollResult:
    """Outcome of :meth:`Ipa.poll`.  ``error`` is set when the poll stopped early (``infrastructure``
    tells whether the eIM or the card could not be reached)."""

    eid: str | None = None
    eim_id: str | None = None
    eim_url: str | None = None
    download_mode: str | None = None
    packages: list[PackageOutcome] = field(default_factory=list)
    notifications: list[NotificationOutcome] = field(default_factory=list)
    esipa: list[EsipaExchange] = field(default_factory=list)
    es10: list[DecodedExchange] = field(default_factory=list)
    refreshes: int = 0
    duration_ms: float = 0.0
    error: str = ""
    infrastructure: bool = False

    @property
    def notifications_delivered(self) -> int:
        return sum(1 for n in self.notifications if n.delivered)

    @property
    def ok(self) -> bool:
        return not self.error and all(p.ok for p in self.packages)

    def render_esipa(self) -> str:
        """The poll's ESipa exchanges as text, for a report attachment."""
        from .esipa_client import render_esipa

        return render_esipa(self.esipa) if self.esipa else "(no ESipa exchange)\n"

    def to_dict(self) -> dict[str, Any]:
        return {
            "eid": self.eid, "eim_id": self.eim_id, "eim_url": self.eim_url, "download_mode": self.download_mode,
            "ok": self.ok, "error": self.error, "infrastructure": self.infrastructure,
            "packages": [p.to_dict() for p in self.packages],
            "notifications_delivered": self.notifications_delivered,
            "notifications": [n.to_dict() for n in self.notifications],
            "refreshes": self.refreshes, "duration_ms": round(self.duration_ms, 3),
            "esipa": [e.to_dict() for e in self.esipa],
            "es10": [e.to_dict() for e in self.es10],
        }


def _looks_like_reset(exc: BaseException) -> bool:
    if isinstance(exc, TransportError):
        return True
    return isinstance(exc, ApduError) and exc.sw in _DEAD_CHANNEL_SW


class _Card:
    """The transport and the ES10 session, reopened after a reset; keeps every ES10 exchange."""

    def __init__(self, open_transport: Callable[[], ApduTransport], max_reopens: int, on_reopen: Callable[[], None]):
        self.open_transport = open_transport
        self.max_reopens = max_reopens
        self.on_reopen = on_reopen
        self.transport: ApduTransport | None = None
        self.client: Es10Client | None = None
        self.exchanges: list = []
        self.reopens = 0

    def open(self) -> Es10Client:
        last: BaseException | None = None
        for attempt in range(5):
            try:
                self.transport = self.open_transport()
                self.client = Es10Client(self.transport).open()
                return self.client
            except (TransportError, ApduError) as exc:
                last = exc
                self._drop()
                time.sleep(0.1 * (attempt + 1))
        raise PollError(f"cannot open the eUICC: {last}", infrastructure=True)

    def _drop(self) -> None:
        if self.client is not None:
            self.exchanges.extend(self.client.exchanges)
            self.client.close()
            self.client = None
        if self.transport is not None:
            try:
                self.transport.close()
            except Exception:  # noqa: BLE001 - a dead transport may fail to close
                pass
            self.transport = None

    def close(self) -> None:
        self._drop()

    def reopen(self) -> Es10Client:
        if self.reopens >= self.max_reopens:
            raise PollError(f"the card was reset more than {self.max_reopens} times in one poll", infrastructure=True)
        self.reopens += 1
        self._drop()
        client = self.open()
        self.on_reopen()
        return client

    def call(self, fn: Callable[[Es10Client], Any], *, retry: bool = True) -> Any:
        """``fn(client)``; on a reset, reopen and (``retry``) call again or raise :class:`_CardReset`."""
        try:
            return fn(self.client)
        except (TransportError, ApduError) as exc:
            if not _looks_like_reset(exc):
                raise
        self.reopen()
        if not retry:
            raise _CardReset()
        return fn(self.client)


def _hex(b: bytes | None) -> str | None:
    return b.hex().upper() if b is not None else None


def _load_package(client: Es10Client, der: bytes) -> tuple[Any, bytes]:
    """ES10b.LoadEuiccPackage; tolerant of the client returning ``(value, raw)`` or a typed outcome."""
    out = client.load_euicc_package(der)
    if isinstance(out, tuple):
        return out
    raw = getattr(out, "der", None) or getattr(out, "raw", None)
    return getattr(out, "decoded", None) or asn1_decode("EuiccPackageResult", raw), raw


def _summarise_result(value: Any) -> tuple[bool, dict[str, Any], str]:
    """(ok, summary, error text) of a decoded EuiccPackageResult."""
    names = asn1_names()
    kind, inner = value
    if kind == "euiccPackageResultSigned":
        data = inner["euiccPackageResultDataSigned"]
        results, ok, errors = [], True, []
        for alt, v in data["euiccResult"]:
            if isinstance(v, int):
                try:
                    label = names.number_name(v, "EuiccResultData", alt)
                except Exception:  # noqa: BLE001
                    label = str(v)
                if v != 0 or alt == "processingTerminated":
                    ok = False
                    errors.append(f"{alt} {label}")
                results.append({alt: label})
            else:
                if isinstance(v, tuple) and v and isinstance(v[1], int) and v[0].endswith(("Code", "Error")) and v[1]:
                    ok = False
                    errors.append(f"{alt} {v[0]} {v[1]}")
                results.append({alt: to_jsonable(v)})
        return ok, {"type": kind, "seqNumber": data["seqNumber"], "results": results}, "; ".join(errors)
    if kind == "euiccPackageErrorSigned":
        code = inner["euiccPackageErrorDataSigned"]["euiccPackageErrorCode"]
        name = names.number_name(code, "EuiccPackageErrorCode")
        return False, {"type": kind, "euiccPackageErrorCode": name}, f"euiccPackageErrorCode {name} ({code})"
    return False, {"type": kind, **to_jsonable(inner)}, "euiccPackageErrorUnsigned"


class Ipa:
    """The host IPAd (SGP.32 v1.2): polls the eIM of the card behind ``open_transport``.

    ``open_transport`` returns a fresh :class:`ApduTransport` (called again after a card reset).
    ``eim_url`` overrides the card's eimFqdn (``host:port`` or ``https://host:port``); ``ca`` /
    ``pki_dir`` / ``insecure`` set TLS verification for the eIM and the SM-DP+; ``device_info`` and
    ``rplmn`` (``MCCMNC`` digits or 3 bytes) describe the device; ``download_mode`` is ``auto`` (indirect
    when the eIM configuration has indirectProfileDownload, else direct), ``direct`` or ``indirect``;
    ``on_progress`` receives a :class:`PollEvent` per step.  ``confirmation_code`` is the Confirmation
    Code the device holds for downloads whose SM-DP+ requires one (SGP.22 §3.1.3.3 hashCc; SGP.32 leaves
    how an IoT device obtains it to the device); without it such a download ends in a
    profileDownloadError and a postponed session.  ``http_transport`` replaces the network for ESipa
    (tests).
    """

    def __init__(
        self,
        open_transport: Callable[[], ApduTransport],
        *,
        eim_url: str | None = None,
        ca: str | os.PathLike | None = None,
        pki_dir: str | os.PathLike | None = None,
        device_info: DeviceInfo | None = None,
        rplmn: str | bytes | None = None,
        insecure: bool = False,
        on_progress: Callable[[PollEvent], None] | None = None,
        download_mode: str = "auto",
        eim_id: str | None = None,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        http_transport: httpx.BaseTransport | None = None,
        max_refreshes: int = 3,
        delivery_retries: int = 3,
        confirmation_code: str | None = None,
    ):
        if download_mode not in DOWNLOAD_MODES:
            raise ValueError(f"download_mode must be one of {', '.join(DOWNLOAD_MODES)}, got {download_mode!r}")
        self.open_transport = open_transport
        self.eim_url = eim_url
        self.ca = ca
        self.pki_dir = pki_dir
        self.insecure = insecure
        self.device_info = device_info or DeviceInfo()
        self.rplmn = encode_plmn(rplmn) if isinstance(rplmn, str) else rplmn
        self.on_progress = on_progress
        self.download_mode = download_mode
        self.eim_id = eim_id
        self.timeout = timeout
        self.http_transport = http_transport
        self.max_refreshes = max_refreshes
        self.delivery_retries = delivery_retries
        self.confirmation_code = confirmation_code

    # --- helpers ---------------------------------------------------------------------------------------

    def _emit(self, stage: str, status: str, detail: str, t0: float | None = None) -> None:
        if self.on_progress is not None:
            ms = (time.perf_counter() - t0) * 1000 if t0 is not None else 0.0
            self.on_progress(PollEvent(stage, status, detail, ms))

    def _es9_factory(self, address: str) -> Es9Client:
        return Es9Client(address, ca=self.ca, insecure=self.insecure, pki_dir=self.pki_dir, timeout=self.timeout)

    # --- the poll --------------------------------------------------------------------------------------

    def poll(self, *, notify_state_change: bool = False, state_change_cause: int | str | None = None,
             max_packages: int = 20) -> PollResult:
        """One poll cycle (module docstring).  Never raises for eIM or card failures: they end up in
        :attr:`PollResult.error` (``infrastructure`` for an unreachable eIM or card) and the packages."""
        result = PollResult()
        t0 = time.perf_counter()
        card = _Card(self.open_transport, self.max_refreshes, lambda: self._refreshed(result))
        esipa: EsipaClient | None = None
        try:
            card.open()
            result.eid = card.call(lambda c: c.get_eid())
            config = self._eim_config(card)
            result.eim_id = config.eim_id if config else self.eim_id
            address = self.eim_url or (config.eim_fqdn if config else None)
            if not address:
                raise PollError("no eIM address: the card's eIM configuration has no eimFqdn; give an eIM URL")
            mode = self.download_mode
            if mode == "auto":
                mode = "indirect" if config is not None and config.indirect_profile_download else "direct"
            result.download_mode = mode
            esipa = EsipaClient(address, ca=self.ca, insecure=self.insecure, pki_dir=self.pki_dir,
                                timeout=self.timeout, transport=self.http_transport)
            result.eim_url = esipa.url
            session = _PollSession(self, card, esipa, result, config, mode)
            session.flush()
            session.packages(notify_state_change, state_change_cause, max_packages)
        except PollError as exc:
            result.error, result.infrastructure = str(exc), exc.infrastructure
        except EsipaError as exc:
            result.error, result.infrastructure = str(exc), exc.infrastructure
        except (TransportError, ApduError, Es10Error) as exc:
            result.error = f"eUICC: {exc}"
            result.infrastructure = isinstance(exc, TransportError)
        except (FileNotFoundError, ValueError) as exc:
            result.error = str(exc)
        finally:
            card.close()
            if esipa is not None:
                result.esipa = list(esipa.exchanges)
                esipa.close()
            result.es10 = decode_trace(card.exchanges)
            result.duration_ms = (time.perf_counter() - t0) * 1000
        if result.error:
            self._emit("poll", "failed", result.error)
        return result

    def _refreshed(self, result: PollResult) -> None:
        result.refreshes += 1
        self._emit("refresh", "ok", "card reset (REFRESH): ISD-R session reopened")

    def _eim_config(self, card: _Card) -> EimConfiguration | None:
        try:
            configs = card.call(lambda c: c.get_eim_configuration_data())
        except (Es10Error, ApduError) as exc:
            if self.eim_url:
                self._emit("eim", "failed", f"GetEimConfigurationData: {exc}; using {self.eim_url}")
                return None
            raise PollError(f"cannot read the eIM configuration (GetEimConfigurationData): {exc}") from None
        if self.eim_id is not None:
            for c in configs:
                if c.eim_id == self.eim_id:
                    return c
            if not self.eim_url:
                raise PollError(f"the eUICC has no eIM {self.eim_id!r} (has: {', '.join(c.eim_id for c in configs)})")
            return None
        if not configs and not self.eim_url:
            raise PollError("the eUICC has no associated eIM (GetEimConfigurationData is empty)")
        return configs[0] if configs else None


def encode_plmn(mccmnc: str) -> bytes:
    """MCC+MNC digits (``"00101"``, ``"310410"``) as the 3-byte PLMN of 3GPP TS 24.008 §10.5.1.3."""
    d = mccmnc.strip()
    if not d.isdigit() or len(d) not in (5, 6):
        raise ValueError(f"rPLMN must be 5 or 6 digits MCCMNC, got {mccmnc!r}")
    mcc, mnc = d[:3], d[3:]
    mnc3 = mnc[2] if len(mnc) == 3 else "F"
    return bytes.fromhex(mcc[1] + mcc[0] + mnc3 + mcc[2] + mnc[1] + mnc[0])


class _PollSession:
    """State of one poll: the card, the eIM client, the result being filled in."""

    def __init__(self, ipa: Ipa, card: _Card, esipa: EsipaClient, result: PollResult,
                 config: EimConfiguration | None, mode: str):
        self.ipa = ipa
        self.card = card
        self.esipa = esipa
        self.result = result
        self.config = config
        self.mode = mode
        self.eid = bytes.fromhex(result.eid)

    # --- card reads tolerant of cards without the SGP.32 search ----------------------------------------

    def _package_results(self) -> list[PendingNotification]:
        try:
            return self.card.call(lambda c: c.retrieve_notifications_list(package_results=True))
        except (Es10Error, ApduError, ValueError):
            return []

    def _notifications(self) -> list[PendingNotification]:
        try:
            return [n for n in self.card.call(lambda c: c.retrieve_notifications_list())
                    if n.kind != "euiccPackageResult"]
        except (Es10Error, ApduError):
            return []

    def _for_eim(self, n: PendingNotification) -> bool:
        """SGP.32 §3.6: notifications go to the eIM, except a ProfileInstallationResult in the direct mode."""
        return not (n.kind == "profileInstallationResult" and self.mode == "direct")

    def _remove(self, seqs) -> list[int]:
        removed = []
        for seq in seqs:
            try:
                self.card.call(lambda c, s=seq: c.remove_notification_from_list(s))
                removed.append(seq)
            except (Es10Error, ApduError):
                pass
        return removed

    def _provide(self, element: bytes) -> Any:
        """ProvideEimPackageResult, retried on a transport failure (an eIM restart)."""
        for attempt in range(self.ipa.delivery_retries):
            try:
                return self.esipa.provide_eim_package_result(element, self.eid)
            except EsipaError as exc:
                if not exc.infrastructure or attempt == self.ipa.delivery_retries - 1:
                    raise
                time.sleep(0.5 * (attempt + 1))
        raise AssertionError("unreachable")

    # --- flush ---------------------------------------------------------------------------------------

    def flush(self) -> None:
        """Deliver the stored package results and pending notifications the card still holds."""
        for stored in self._package_results():
            t0 = time.perf_counter()
            outcome = PackageOutcome("storedEuiccPackageResult", None, None, False)
            try:
                value = asn1_decode("EuiccPackageResult", stored.der)
                outcome.ok, outcome.result, outcome.error = _summarise_result(value)
                inner = value[1]
                data = inner.get("euiccPackageResultDataSigned") or inner.get("euiccPackageErrorDataSigned") or inner
                outcome.eim_transaction_id = _hex(data.get("eimTransactionId"))
                outcome.counter_value = data.get("counterValue")
                ack = self._provide(stored.der)
                outcome.result["acknowledged"] = list(ack.acknowledgements)
                outcome.result["removed"] = self._remove(ack.acknowledgements)
            except (Asn1Error, EsipaError) as exc:
                if isinstance(exc, EsipaError) and exc.infrastructure:
                    raise
                outcome.ok, outcome.error = False, str(exc)
            outcome.duration_ms = (time.perf_counter() - t0) * 1000
            self.result.packages.append(outcome)
            self.ipa._emit("flush", "ok" if outcome.ok else "failed",
                           f"stored package result seq {stored.seq_number} delivered", t0)
        for n in self._notifications():
            self._deliver_notification(n)

    def _deliver_notification(self, n: PendingNotification) -> None:
        t0 = time.perf_counter()
        if self._for_eim(n):
            try:
                self.esipa.handle_notification(n.der)
                removed = bool(self._remove([n.seq_number])) if n.seq_number is not None else False
                outcome = NotificationOutcome(n.seq_number, n.kind, self.esipa.base_url, True, removed)
            except EsipaError as exc:
                if exc.infrastructure:
                    raise
                outcome = NotificationOutcome(n.seq_number, n.kind, self.esipa.base_url, False, False, str(exc))
        else:
            pool = _ClientPool(None, self.ipa._es9_factory)
            try:
                outcome = self.card.call(lambda c: _deliver(c, n.der, n.seq_number, n.kind, n.address, pool))
            finally:
                pool.close()
        self.result.notifications.append(outcome)
        self.ipa._emit("flush", "ok" if outcome.delivered else "failed",
                       f"notification seq {n.seq_number} ({n.kind}) -> "
                       f"{'eIM' if self._for_eim(n) else n.address}" + (f": {outcome.error}" if outcome.error else ""), t0)

    # --- packages ------------------------------------------------------------------------------------

    def packages(self, notify_state_change: bool, state_change_cause: int | str | None, max_packages: int) -> None:
        for number in range(max_packages):
            t0 = time.perf_counter()
            first = number == 0
            try:
                package = self.esipa.get_eim_package(
                    self.eid, notify_state_change=notify_state_change and first,
                    state_change_cause=state_change_cause if first else None,
                    rplmn=self.ipa.rplmn if first else None)
            except EsipaError as exc:
                if exc.undecodable and self._report_unusable(t0):
                    continue
                raise
            if not package.available:
                if package.error_name == "noEimPackageAvailable":
                    self.ipa._emit("eim", "ok", "noEimPackageAvailable", t0)
                    return
                raise PollError(f"GetEimPackage: the eIM returned eimPackageError {package.error_name} "
                                f"({package.error_code})")
            if package.kind is None:  # an alternative this IPA does not know (extension)
                self._report_unusable(t0, package_known=False)
                continue
            handler = {"euiccPackageRequest": self._euicc_package, "ipaEuiccDataRequest": self._ipa_euicc_data,
                       "profileDownloadTriggerRequest": self._download_trigger}[package.kind]
            outcome = PackageOutcome(package.kind, _hex(package.eim_transaction_id), package.counter_value, False)
            self.result.packages.append(outcome)
            handler(package, outcome)
            outcome.duration_ms = (time.perf_counter() - t0) * 1000
            self.ipa._emit("package", "ok" if outcome.ok else "failed",
                           f"{package.kind}" + (f" counter {outcome.counter_value}" if outcome.counter_value is not None else "")
                           + (f": {outcome.error}" if outcome.error else ""), t0)
        self.ipa._emit("eim", "ok", f"stopped after {max_packages} packages (max_packages)")

    def _report_unusable(self, t0: float, package_known: bool | None = None) -> bool:
        """A GetEimPackage reply that does not decode: tell the eIM (invalidPackageFormat / unknownPackage)."""
        ex = self.esipa.exchanges[-1]
        try:
            top = parse_single(ex.response_der)
            inner = top.children()[0] if top.tag == b"\xbf\x4f" else None
        except (TlvError, IndexError):
            inner = None
        if inner is None:
            return False
        known = inner.tag in (b"\xbf\x51", b"\xbf\x52", b"\xbf\x54", b"\x02") if package_known is None \
            else package_known
        code = 1 if known else 2
        tid = _transaction_id_in(inner)
        outcome = PackageOutcome("invalidPackage" if known else "unknownPackage", _hex(tid), None, False,
                                 error=f"{'invalidPackageFormat' if known else 'unknownPackage'}: "
                                 + (ex.error or f"package tag {inner.tag.hex().upper()}"))
        self.result.packages.append(outcome)
        self._provide(_error_result(code, tid))
        outcome.duration_ms = (time.perf_counter() - t0) * 1000
        self.ipa._emit("package", "failed", outcome.error, t0)
        return True

    # euiccPackageRequest (SGP.32 v1.2 §3.2.1, §5.9.1) --------------------------------------------------

    def _euicc_package(self, package: EimPackage, outcome: PackageOutcome) -> None:
        signed = package.value["euiccPackageSigned"]
        tid = signed.get("eimTransactionId")
        try:
            value, raw = self.card.call(lambda c: _load_package(c, package.der), retry=False)
        except _CardReset:
            value, raw = self._recover_result(signed)
            if raw is None:
                outcome.error = "the card was reset during LoadEuiccPackage and holds no result for it"
                self._provide(_error_result(_UNDEFINED, tid))
                return
        except (Es10Error, ApduError) as exc:
            sw = f"SW {exc.sw:04X}: " if isinstance(exc, ApduError) else ""
            outcome.error = f"LoadEuiccPackage: {sw}{exc}"
            self._provide(_error_result(_UNDEFINED, tid))
            return
        outcome.ok, outcome.result, error = _summarise_result(value)
        outcome.error = error
        pending = [n for n in self._notifications() if self._for_eim(n)]
        if pending:
            element = tlv(b"\x30", raw + tlv(b"\xa0", b"".join(n.der for n in pending)))
        else:
            element = raw
        ack = self._provide(element)
        outcome.result["notifications_sent"] = [n.seq_number for n in pending]
        outcome.result["acknowledged"] = list(ack.acknowledgements)
        outcome.result["removed"] = self._remove(ack.acknowledgements)
        for n in pending:
            delivered = n.seq_number in ack.acknowledgements or ack.empty
            self.result.notifications.append(NotificationOutcome(
                n.seq_number, n.kind, self.esipa.base_url, delivered, n.seq_number in outcome.result["removed"]))

    def _recover_result(self, signed: dict) -> tuple[Any, bytes | None]:
        """After a reset during LoadEuiccPackage: the stored result for this package, if the card has one."""
        for stored in self._package_results():
            try:
                value = asn1_decode("EuiccPackageResult", stored.der)
            except Asn1Error:
                continue
            inner = value[1]
            data = inner.get("euiccPackageResultDataSigned") or inner.get("euiccPackageErrorDataSigned") or inner
            if data.get("counterValue") == signed.get("counterValue") and \
                    data.get("eimTransactionId") == signed.get("eimTransactionId"):
                return value, stored.der
        return None, None

    # ipaEuiccDataRequest (SGP.32 v1.2 §2.11.2, §5.14.4) -----------------------------------------------

    def _ipa_euicc_data(self, package: EimPackage, outcome: PackageOutcome) -> None:
        request = package.value
        tid = request.get("eimTransactionId")
        try:
            tags = _split_tags(request["tagList"])
        except ValueError as exc:
            tags = None
            outcome.error = f"tagList: {exc}"
        unknown = [t for t in tags or [] if t not in IPA_EUICC_DATA_TAGS]
        if tags is None or unknown:
            outcome.error = outcome.error or f"incorrectTagList: unknown tag(s) {', '.join(t.hex().upper() for t in unknown)}"
            self._provide(_ipa_data_error(1, tid))
            outcome.result = {"error": "incorrectTagList"}
            return
        members: dict[str, bytes] = {}
        try:
            for tag in tags:
                name = IPA_EUICC_DATA_TAGS[tag]
                der = self._member(name, request)
                if der is not None:
                    members[name] = der
        except _IpaDataError as exc:
            outcome.error = str(exc)
            self._provide(_ipa_data_error(exc.code, tid))
            outcome.result = {"error": exc.name}
            return
        body = b"".join(members[m] for m in _MEMBER_ORDER if m in members)
        if tid is not None:
            body = _insert_transaction_id(body, members, tid)
        element = tlv(b"\xbf\x52", tlv(b"\xa0", body))
        ack = self._provide(element)
        outcome.ok = True
        outcome.result = {"members": [m for m in _MEMBER_ORDER if m in members],
                          "acknowledged": list(ack.acknowledgements)}
        if ack.acknowledgements:
            outcome.result["removed"] = self._remove(ack.acknowledgements)

    def _member(self, name: str, request: dict) -> bytes | None:
        call = self.card.call
        try:
            if name == "notificationsList":
                crit = request.get("searchCriteriaNotification")
                if crit is None:
                    items = self._notifications()
                elif crit[0] == "seqNumber":
                    items = call(lambda c: c.retrieve_notifications_list(seq=crit[1]))
                else:
                    events = asn1_names().bit_names(crit[1], "NotificationEvent")
                    items = call(lambda c: c.retrieve_notifications_list(events=events))
                return tlv(b"\xa0", b"".join(n.der for n in items))
            if name == "euiccPackageResultList":
                items = self._package_results()
                crit = request.get("searchCriteriaEuiccPackageResult")
                if crit is not None:
                    items = [n for n in items if n.seq_number == crit[1]]
                return tlv(b"\xa2", b"".join(n.der for n in items))
            if name in ("defaultSmdpAddress", "rootSmdsAddress"):
                addrs = call(lambda c: c.get_euicc_configured_addresses())
                if name == "defaultSmdpAddress":
                    return tlv(b"\x81", (addrs.default_dp_address or "").encode()) if addrs.default_dp_address else None
                return tlv(b"\x83", addrs.root_ds_address.encode())
            if name == "euiccInfo1":
                return call(lambda c: c.call("GetEUICCInfo1", "GetEuiccInfo1Request", {}, "EUICCInfo1"))[1]
            if name == "euiccInfo2":
                return call(lambda c: c.call("GetEUICCInfo2", "GetEuiccInfo2Request", {}, "SGP32-EUICCInfo2"))[1]
            if name == "associationToken":
                token = self.config.association_token if self.config else None
                return None if token is None else asn1_encode_int(b"\x84", token)
            if name in ("eumCertificate", "euiccCertificate"):
                pkid = request.get("euiccCiPKIdentifierToBeUsed")
                try:
                    certs = call(lambda c: c.get_certs(pkid))
                except Es10Error as exc:
                    if exc.code is not None:
                        raise _IpaDataError(5, "euiccCiPKIdNotFound", f"GetCerts: {exc}") from None
                    raise
                cert = certs.eum_certificate if name == "eumCertificate" else certs.euicc_certificate
                return retag(cert, b"\xa5" if name == "eumCertificate" else b"\xa6")
            if name == "ipaCapabilities":
                features = {"direct": [0], "indirect": [1]}.get(self.ipa.download_mode, [0, 1])
                caps = {"ipaFeatures": make_bitstring(features), "ipaSupportedProtocols": make_bitstring([0])}
                return retag(asn1_encode("IpaCapabilities", caps), b"\xa8")
            if name == "deviceInfo":
                return retag(asn1_encode("DeviceInfo", self.ipa.device_info.to_asn1()), b"\xa9")
        except (Es10Error, ApduError) as exc:
            raise _IpaDataError(_UNDEFINED, "undefinedError", f"{name}: {exc}") from None
        raise AssertionError(name)

    # profileDownloadTriggerRequest (SGP.32 v1.2 §3.2.3) -------------------------------------------------

    def _download_trigger(self, package: EimPackage, outcome: PackageOutcome) -> None:
        request = package.value
        tid = request.get("eimTransactionId")
        data = request.get("profileDownloadData")
        try:
            ac = self._activation_code(data)
        except (ActivationCodeError, ValueError) as exc:
            outcome.error = f"invalidPackageFormat: {exc}"
            self._provide(_error_result(1, tid))
            return
        except _Unsupported as exc:
            outcome.error = str(exc)
            self._provide(_download_error(tid, None))
            return
        outcome.result["activation_code"] = str(ac)
        outcome.result["mode"] = self.mode

        def progress(ev: ProgressEvent) -> None:
            self.ipa._emit("download", ev.status, f"{ev.phase} {ev.detail}".strip(), None)

        if ac.cc_required and self.ipa.confirmation_code is None:
            outcome.error = ("the activation code requires a Confirmation Code (Confirmation Code Required Flag) and "
                             "this IPA has none (Ipa(confirmation_code=...), 'ipa poll --confirmation-code')")
            self._provide(_download_error(tid, None))
            return
        relay = EsipaRelay(self.esipa, eim_transaction_id=tid, smdp_address=ac.smdp_address) \
            if self.mode == "indirect" else None
        dl: DownloadResult = self.card.call(lambda c: download_profile(
            c, ac, es9=relay, confirmation_code=self.ipa.confirmation_code, ca=self.ipa.ca, insecure=self.ipa.insecure, pki_dir=self.ipa.pki_dir,
            timeout=self.ipa.timeout, device_info=self.ipa.device_info, progress=progress))
        outcome.result["download"] = {k: v for k, v in dl.to_dict().items() if k not in ("es9_exchanges", "es10_trace")}
        if dl.notification is not None:
            self.result.notifications.append(dl.notification)
        if dl.installation is not None:
            body = (tlv(b"\x82", tid) if tid is not None else b"") + dl.installation.der
            element = tlv(b"\xbf\x54", body)
        else:
            element = _download_error(tid, _error_response(dl))
        outcome.ok = dl.success
        outcome.error = "" if dl.success else f"{dl.error.phase}: {dl.error.message}"
        ack = self._provide(element)
        outcome.result["acknowledged"] = list(ack.acknowledgements)
        if ack.acknowledgements:
            outcome.result["removed"] = self._remove(ack.acknowledgements)

    def _activation_code(self, data):
        if data is None:
            raise ValueError("profileDownloadData is missing")
        kind, value = data
        if kind == "activationCode":
            text = value if value.upper().startswith("LPA:") else f"LPA:{value}"
            return parse_activation_code(text)
        if kind == "contactDefaultSmdp":
            addrs = self.card.call(lambda c: c.get_euicc_configured_addresses())
            if not addrs.default_dp_address:
                raise _Unsupported("contactDefaultSmdp: the eUICC has no default SM-DP+ address")
            return parse_activation_code(f"LPA:1${addrs.default_dp_address}$")
        raise _Unsupported(f"profileDownloadData {kind} (SM-DS) is not supported by this IPA")


class _Unsupported(Exception):
    pass


class _IpaDataError(Exception):
    def __init__(self, code: int, name: str, message: str):
        super().__init__(f"{name}: {message}")
        self.code = code
        self.name = name


def asn1_encode_int(tag: bytes, value: int) -> bytes:
    return tlv(tag, value.to_bytes(max(1, (value.bit_length() + 8) // 8), "big", signed=True))


def _split_tags(tag_list: bytes) -> list[bytes]:
    """The BER tags concatenated in a tagList (ISO/IEC 8825-1 §8.1.2)."""
    tags, i = [], 0
    while i < len(tag_list):
        start = i
        i += 1
        if tag_list[start] & 0x1F == 0x1F:
            while i < len(tag_list) and tag_list[i] & 0x80:
                i += 1
            i += 1
            if i > len(tag_list):
                raise ValueError(f"truncated tag in {tag_list.hex().upper()}")
        tags.append(tag_list[start:i])
    return tags


def _insert_transaction_id(body: bytes, members: dict[str, bytes], tid: bytes) -> bytes:
    """IpaEuiccData with eimTransactionId [7] in its ASN.1 place (after euiccCertificate)."""
    before = _MEMBER_ORDER[: _MEMBER_ORDER.index("euiccCertificate") + 1]
    head = b"".join(members[m] for m in before if m in members)
    tail = b"".join(members[m] for m in _MEMBER_ORDER if m in members and m not in before)
    return head + tlv(b"\x87", tid) + tail


def _transaction_id_in(node) -> bytes | None:
    """An eimTransactionId found by tag in an undecodable package (best effort, for the error report)."""
    try:
        for child in node.children():
            if child.tag in (b"\x82", b"\x83") and len(child.value) <= 16:
                return child.value
            if child.tag == b"\x30":
                for c in child.children():
                    if c.tag == b"\x82" and len(c.value) <= 16:
                        return c.value
    except TlvError:
        pass
    return None


def _error_result(code: int, tid: bytes | None) -> bytes:
    """EimPackageResult eimPackageResultResponseError (SGP.32 v1.2 §5.14.4)."""
    value: dict[str, Any] = {"eimPackageResultErrorCode": code}
    if tid is not None:
        value["eimTransactionId"] = tid
    return asn1_encode("EimPackageResult", ("eimPackageResultResponseError", value))


def _ipa_data_error(code: int, tid: bytes | None) -> bytes:
    value: dict[str, Any] = {"ipaEuiccDataErrorCode": code}
    if tid is not None:
        value["eimTransactionId"] = tid
    return asn1_encode("EimPackageResult", ("ipaEuiccDataResponse", ("ipaEuiccDataResponseError", value)))


def _download_error(tid: bytes | None, error_response: bytes | None) -> bytes:
    """ProfileDownloadTriggerResult with profileDownloadError undefinedError (+ the error response)."""
    err: dict[str, Any] = {"profileDownloadErrorReason": _UNDEFINED}
    if error_response:
        err["errorResponse"] = error_response
    value: dict[str, Any] = {"profileDownloadTriggerResultData": ("profileDownloadError", err)}
    if tid is not None:
        value["eimTransactionId"] = tid
    return asn1_encode("EimPackageResult", ("profileDownloadTriggerResult", value))


def _error_response(dl: DownloadResult) -> bytes | None:
    """The eUICC's error response of a failed download (AuthenticateServer/PrepareDownload), if any."""
    if dl.error is None or dl.error.kind != "es10":
        return None
    for ex in reversed(dl.es10_trace):
        if ex.function in (dl.error.phase, ) and getattr(ex, "response_hex", None):
            return bytes.fromhex(ex.response_hex)
    return None
