"""ES10a/b/c client (SGP.22 v2.5 §5.7, SGP.32 v1.2 §5.9) over any APDU transport.

One method per ES10 function, each encoding the request with the project's ASN.1 modules, sending it
through an :class:`~sgp32hil.drivers.es10.session.Es10Session` (ISD-R channel, STORE DATA chaining) and
returning a typed result from :mod:`sgp32hil.drivers.es10.types`.

Errors:

- a result code other than ``ok`` raises :class:`Es10Error` carrying the function, the code and its
  name from the ASN.1 module (``iccidOrAidNotFound``); results that are normal outcomes
  (``nothingToDelete`` of a memory reset, per-eIM results of AddInitialEim) are returned typed instead;
- a response that is empty or not the DER the function defines raises :class:`Es10Error` naming the
  function and quoting the bytes;
- a status word other than 9000 (e.g. 6A88 for a function the eUICC does not have) raises
  :class:`~sgp32hil.drivers.apdu.base.ApduError` from the session; transport failures raise
  :class:`~sgp32hil.drivers.apdu.base.TransportError`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ...harness.asn1 import Asn1Error, TlvError, parse_single
from ...harness.asn1 import decode as asn1_decode
from ...harness.asn1 import encode as asn1_encode
from ..apdu.base import ApduTransport
from .decode import BY_NAME, DecodedExchange, asn1_names, decode_trace, make_bitstring, tag_int
from .session import Es10Exchange, Es10Session
from .types import (
    AddInitialEimResult,
    Certs,
    ConfiguredAddresses,
    EimConfiguration,
    EuiccInfo1,
    EuiccInfo2,
    EuiccPackageOutcome,
    MemoryResetResult,
    NotificationMetadata,
    PendingNotification,
    ProfileInfo,
    RatRule,
    certificate_der,
    iccid_to_bcd,
)

_PROFILE_CLASSES = {"test": 0, "provisioning": 1, "operational": 2}
_EVENTS = ("notificationInstall", "notificationEnable", "notificationDisable", "notificationDelete")


class Es10Error(Exception):
    """An ES10 function failed: a non-ok result code, or a response that is not valid DER for it.

    ``code`` is the integer result (None for a malformed response), ``name`` its ASN.1 name
    (``iccidOrAidNotFound``; ``malformedResponse`` / ``emptyResponse`` for bad data), ``der`` the
    response bytes.
    """

    def __init__(self, function: str, code: int | None, name: str, *, der: bytes = b"", detail: str = ""):
        self.function = function
        self.code = code
        self.name = name
        self.der = der
        self.detail = detail
        if code is not None:
            text = f"{function}: {name} ({code})"
        else:
            shown = der[:64].hex().upper() + ("..." if len(der) > 64 else "")
            text = f"{function}: {name}: {shown or '(no data)'}" + (f" ({detail})" if detail else "")
        super().__init__(text)


def _as_bytes(value: bytes | str, what: str) -> bytes:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    try:
        return bytes.fromhex(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be bytes or hex, got {value!r}") from None


def _events(events: Iterable[str]) -> tuple[bytes, int]:
    numbers = []
    for event in events:
        full = event if event in _EVENTS else "notification" + event[:1].upper() + event[1:]
        if full not in _EVENTS:
            raise ValueError(f"unknown notification event {event!r} (known: {', '.join(_EVENTS)})")
        numbers.append(_EVENTS.index(full))
    return make_bitstring(numbers)


def _tag_list(tags: bytes | str | Iterable[int]) -> bytes:
    if isinstance(tags, (bytes, bytearray, str)):
        return _as_bytes(tags, "tags")
    out = b""
    for tag in tags:
        out += tag.to_bytes((tag.bit_length() + 7) // 8 or 1, "big")
    return out


class Es10Client:
    """ES10 functions on the ISD-R of one eUICC.

    Use as a context manager (opens and closes the ISD-R logical channel) or call :meth:`open` /
    :meth:`close`.  ``session`` lets callers share an already opened :class:`Es10Session`.
    """

    def __init__(self, transport: ApduTransport, *, block_size: int | None = None, session: Es10Session | None = None):
        self.transport = transport
        self.session = session if session is not None else Es10Session(transport, block_size=block_size)

    def open(self) -> "Es10Client":
        self.session.open()
        return self

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> "Es10Client":
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def exchanges(self) -> list[Es10Exchange]:
        """Every ES10 call of this session with its raw APDUs (see :mod:`.decode`)."""
        return self.session.exchanges

    def trace(self) -> list[DecodedExchange]:
        """The exchanges so far, decoded (function names, JSON-able request/response, APDUs)."""
        return decode_trace(self.session.exchanges)

    # --- low level -------------------------------------------------------------------------------

    def call(self, function_name: str, request_type: str, value: Any, response_type: str) -> tuple[Any, bytes]:
        """Encode ``value`` as ``request_type``, send it, decode the response as ``response_type``.

        Returns ``(decoded, raw_der)``.  Raises :class:`ValueError` for a request value that does not
        encode, :class:`Es10Error` for an empty or undecodable response.
        """
        try:
            command = asn1_encode(request_type, value)
        except Asn1Error as exc:
            raise ValueError(f"{function_name}: {exc}") from None
        raw = self.session.store_data(command, function=function_name)
        if not raw:
            raise Es10Error(function_name, None, "emptyResponse", der=raw, detail=f"expected {response_type}")
        try:
            return asn1_decode(response_type, raw), raw
        except Asn1Error as exc:
            raise Es10Error(function_name, None, "malformedResponse", der=raw, detail=str(exc)) from None

    def _call(self, name: str, value: Any) -> tuple[Any, bytes]:
        f = BY_NAME[name]
        return self.call(f.name, f.request_type, value, f.response_type)

    @staticmethod
    def _check(function: str, code: int, *path: str) -> None:
        if code != 0:
            raise Es10Error(function, code, asn1_names().number_name(code, *path))

    @staticmethod
    def _fail(function: str, code: int, *path: str) -> Es10Error:
        return Es10Error(function, code, asn1_names().number_name(code, *path))

    def _walk(self, function: str, raw: bytes, *tags: int) -> list:
        """Children of the element reached through ``tags`` below the response's top-level TLV."""
        try:
            node = parse_single(raw)
            for tag in tags:
                node = next((c for c in node.children() if tag_int(c) == tag), None)
                if node is None:
                    return []
            return node.children()
        except TlvError as exc:
            raise Es10Error(function, None, "malformedResponse", der=raw, detail=str(exc)) from None

    # --- ES10c: identity, profiles (SGP.22 §5.7.15-5.7.21) ----------------------------------------

    def get_eid(self) -> str:
        """ES10c.GetEID (SGP.22 §5.7.20): the EID as 32 hex digits."""
        value, _ = self._call("GetEID", {"tagList": b"\x5a"})
        return value["eidValue"].hex().upper()

    def get_profiles_info(
        self,
        iccid: str | None = None,
        isdp_aid: bytes | str | None = None,
        profile_class: str | int | None = None,
        tags: bytes | str | Iterable[int] | None = None,
    ) -> list[ProfileInfo]:
        """ES10c.GetProfilesInfo (SGP.22 §5.7.15, SGP.32 §5.9): profiles matching at most one search
        criterion; ``tags`` restricts the returned fields (tag list, e.g. ``[0x5A, 0x9F70]``)."""
        criteria = [c for c in (iccid, isdp_aid, profile_class) if c is not None]
        if len(criteria) > 1:
            raise ValueError("give at most one of iccid, isdp_aid, profile_class")
        request: dict[str, Any] = {}
        if iccid is not None:
            request["searchCriteria"] = ("iccid", iccid_to_bcd(iccid))
        elif isdp_aid is not None:
            request["searchCriteria"] = ("isdpAid", _as_bytes(isdp_aid, "isdp_aid"))
        elif profile_class is not None:
            if isinstance(profile_class, str):
                if profile_class not in _PROFILE_CLASSES:
                    raise ValueError(f"profile_class must be one of {', '.join(_PROFILE_CLASSES)}")
                profile_class = _PROFILE_CLASSES[profile_class]
            request["searchCriteria"] = ("profileClass", profile_class)
        if tags is not None:
            request["tagList"] = _tag_list(tags)
        value, _ = self._call("GetProfilesInfo", request)
        kind, body = value
        if kind != "profileInfoListOk":
            raise self._fail("GetProfilesInfo", body, "SGP32-ProfileInfoListResponse", "profileInfoListError")
        return [ProfileInfo.from_asn1(p) for p in body]

    @staticmethod
    def _profile_id(iccid: str | None, isdp_aid: bytes | str | None) -> tuple[str, bytes]:
        if (iccid is None) == (isdp_aid is None):
            raise ValueError("give exactly one of iccid, isdp_aid")
        if iccid is not None:
            return ("iccid", iccid_to_bcd(iccid))
        return ("isdpAid", _as_bytes(isdp_aid, "isdp_aid"))

    def enable_profile(self, iccid: str | None = None, *, isdp_aid: bytes | str | None = None,
                       refresh: bool = True) -> None:
        """ES10c.EnableProfile (SGP.22 §5.7.16); ``refresh`` asks the eUICC for a REFRESH afterwards."""
        value, _ = self._call("EnableProfile", {"profileIdentifier": self._profile_id(iccid, isdp_aid),
                                                "refreshFlag": refresh})
        self._check("EnableProfile", value["enableResult"], "EnableProfileResponse", "enableResult")

    def disable_profile(self, iccid: str | None = None, *, isdp_aid: bytes | str | None = None,
                        refresh: bool = True) -> None:
        """ES10c.DisableProfile (SGP.22 §5.7.17)."""
        value, _ = self._call("DisableProfile", {"profileIdentifier": self._profile_id(iccid, isdp_aid),
                                                 "refreshFlag": refresh})
        self._check("DisableProfile", value["disableResult"], "DisableProfileResponse", "disableResult")

    def delete_profile(self, iccid: str | None = None, *, isdp_aid: bytes | str | None = None) -> None:
        """ES10c.DeleteProfile (SGP.22 §5.7.18)."""
        value, _ = self._call("DeleteProfile", self._profile_id(iccid, isdp_aid))
        self._check("DeleteProfile", value["deleteResult"], "DeleteProfileResponse", "deleteResult")

    def set_nickname(self, iccid: str, nickname: str) -> None:
        """ES10c.SetNickname (SGP.22 §5.7.21)."""
        value, _ = self._call("SetNickname", {"iccid": iccid_to_bcd(iccid), "profileNickname": nickname})
        self._check("SetNickname", value["setNicknameResult"], "SetNicknameResponse", "setNicknameResult")

    def euicc_memory_reset(self, options: Iterable[str], *, sgp32: bool = True) -> MemoryResetResult:
        """eUICCMemoryReset: SGP.32 §5.9 (BF64, with eIM and immediate-enable options) when ``sgp32``,
        else SGP.22 §5.7.19 (BF34).  ``options`` are resetOptions bit names, e.g.
        ``["deleteOperationalProfiles", "resetDefaultSmdpAddress"]``.  ``ok`` and ``nothingToDelete``
        are returned; other results raise :class:`Es10Error`."""
        name = "SGP32-eUICCMemoryReset" if sgp32 else "eUICCMemoryReset"
        f = BY_NAME[name]
        bits = asn1_names().bitstring(options, f.request_type, "resetOptions")
        value, _ = self._call(name, {"resetOptions": bits})
        names = asn1_names()
        code = value["resetResult"]
        if code not in (0, 1):
            raise self._fail(name, code, f.response_type, "resetResult")
        return MemoryResetResult(
            reset_result=names.number_name(code, f.response_type, "resetResult"),
            reset_eim_result=(names.number_name(value["resetEimResult"], f.response_type, "resetEimResult")
                              if "resetEimResult" in value else None),
            reset_immediate_enable_config_result=(
                names.number_name(value["resetImmediateEnableConfigResult"], f.response_type,
                                  "resetImmediateEnableConfigResult")
                if "resetImmediateEnableConfigResult" in value else None),
        )

    # --- ES10b: eUICC information, download helpers (SGP.22 §5.7.7-5.7.8, §5.7.22) ------------------

    def get_euicc_info1(self) -> EuiccInfo1:
        """ES10b.GetEUICCInfo (EUICCInfo1, SGP.22 §5.7.8)."""
        value, _ = self._call("GetEUICCInfo1", {})
        return EuiccInfo1.from_asn1(value)

    def get_euicc_info2(self) -> EuiccInfo2:
        """ES10b.GetEUICCInfo (EUICCInfo2, SGP.22 §5.7.8 with the SGP.32 §5.9 fields)."""
        value, raw = self._call("GetEUICCInfo2", {})
        return EuiccInfo2.from_asn1(value, raw)

    def get_euicc_challenge(self) -> bytes:
        """ES10b.GetEUICCChallenge (SGP.22 §5.7.7): 16 random bytes."""
        value, _ = self._call("GetEUICCChallenge", {})
        return value["euiccChallenge"]

    def get_rat(self) -> list[RatRule]:
        """ES10b.GetRAT (SGP.22 §5.7.22): the Rules Authorisation Table."""
        value, _ = self._call("GetRAT", {})
        return [RatRule.from_asn1(r) for r in value["rat"]]

    # --- ES10b: notifications (SGP.22 §5.7.9-5.7.11) --------------------------------------------------

    def list_notification(self, events: Iterable[str] | None = None) -> list[NotificationMetadata]:
        """ES10b.ListNotification (SGP.22 §5.7.9); ``events`` filters by NotificationEvent names
        (``notificationEnable`` or short ``enable``)."""
        request = {"profileManagementOperation": _events(events)} if events else {}
        value, _ = self._call("ListNotification", request)
        kind, body = value
        if kind != "notificationMetadataList":
            raise self._fail("ListNotification", body, "ListNotificationResponse", "listNotificationsResultError")
        return [NotificationMetadata.from_asn1(m) for m in body]

    def retrieve_notifications_list(
        self, seq: int | None = None, events: Iterable[str] | None = None, *, package_results: bool = False,
        euicc_package_results: bool = False,
    ) -> list[PendingNotification]:
        """ES10b.RetrieveNotificationsList (SGP.22 §5.7.10, SGP.32 §5.9): the signed notifications, each
        with its exact DER.  Search by ``seq``, by ``events``, or (SGP.32) ``package_results`` (alias
        ``euicc_package_results``) for the stored EuiccPackageResults (kind ``euiccPackageResult``, ``der``
        the result as returned; :meth:`retrieve_euicc_package_results` gives just the DERs)."""
        package_results = package_results or euicc_package_results
        if (seq is not None) + bool(events) + bool(package_results) > 1:
            raise ValueError("give at most one of seq, events, package_results")
        request: dict[str, Any] = {}
        if seq is not None:
            request["searchCriteria"] = ("seqNumber", seq)
        elif events:
            request["searchCriteria"] = ("profileManagementOperation", _events(events))
        elif package_results:
            request["searchCriteria"] = ("euiccPackageResults", None)
        value, raw = self._call("RetrieveNotificationsList", request)
        kind, body = value
        if kind == "notificationsListResultError":
            raise self._fail("RetrieveNotificationsList", body, "SGP32-RetrieveNotificationsListResponse",
                             "notificationsListResultError")
        container = 0xA0 if kind == "notificationList" else 0xA2
        elements = self._walk("RetrieveNotificationsList", raw, container)
        if len(elements) != len(body):
            raise Es10Error("RetrieveNotificationsList", None, "malformedResponse", der=raw,
                            detail=f"{len(body)} decoded entries but {len(elements)} TLVs")
        if kind == "notificationList":
            return [PendingNotification.from_asn1(n, e.raw) for n, e in zip(body, elements, strict=True)]
        return [PendingNotification.from_asn1(("euiccPackageResult", r), e.raw) for r, e in zip(body, elements, strict=True)]

    def remove_notification_from_list(self, seq: int) -> None:
        """ES10b.RemoveNotificationFromList (SGP.22 §5.7.11); ``nothingToDelete`` raises :class:`Es10Error`.
        SGP.32: also acknowledges a stored EuiccPackageResult by its seqNumber (one seqNumber space)."""
        value, _ = self._call("RemoveNotificationFromList", {"seqNumber": seq})
        self._check("RemoveNotificationFromList", value["deleteNotificationStatus"],
                    "NotificationSentResponse", "deleteNotificationStatus")

    # --- ES10a: addresses (SGP.22 §5.7.3-5.7.4; SGP.32 §5.9 BF65) ---------------------------------------

    def get_euicc_configured_addresses(self) -> ConfiguredAddresses:
        """ES10a.GetEuiccConfiguredAddresses (SGP.22 §5.7.3)."""
        value, _ = self._call("GetEuiccConfiguredAddresses", {})
        return ConfiguredAddresses(value.get("defaultDpAddress"), value["rootDsAddress"])

    def set_default_dp_address(self, address: str, *, sgp32: bool = False) -> None:
        """ES10a.SetDefaultDpAddress (SGP.22 §5.7.4, BF3F), or SGP32-SetDefaultDpAddress (BF65) when
        ``sgp32``.  An empty address removes the default SM-DP+ address."""
        name = "SGP32-SetDefaultDpAddress" if sgp32 else "SetDefaultDpAddress"
        value, _ = self._call(name, {"defaultDpAddress": address})
        self._check(name, value["setDefaultDpAddressResult"], BY_NAME[name].response_type,
                    "setDefaultDpAddressResult")

    # --- SGP.32 additions (§5.9) ----------------------------------------------------------------------

    def get_eim_configuration_data(self, eim_id: str | None = None) -> list[EimConfiguration]:
        """ES10b.GetEimConfigurationData (SGP.32 §5.9): the associated eIMs (one when ``eim_id``)."""
        request = {"searchCriteria": ("eimId", eim_id)} if eim_id is not None else {}
        value, raw = self._call("GetEimConfigurationData", request)
        configs = value["eimConfigurationDataList"]
        elements = self._walk("GetEimConfigurationData", raw, 0xA0)
        if len(elements) != len(configs):
            raise Es10Error("GetEimConfigurationData", None, "malformedResponse", der=raw,
                            detail=f"{len(configs)} decoded entries but {len(elements)} TLVs")
        out = []
        for config, element in zip(configs, elements, strict=True):
            # [5]/[6] are explicit CHOICEs whose alternative (SPKI or Certificate) is implicitly tagged.
            spans = {tag_int(c): certificate_der(c.value) for c in element.children() if tag_int(c) in (0xA5, 0xA6)}
            out.append(EimConfiguration.from_asn1(config, spans))
        return out

    def add_initial_eim(self, configs: Iterable[EimConfiguration | dict]) -> list[AddInitialEimResult]:
        """ES10b.AddInitialEim (SGP.32 §5.9): associate the first eIM(s).  ``configs`` are
        :class:`EimConfiguration` or EimConfigurationData values in asn1tools form.  A list error
        (``associatedEimAlreadyExists``, ``ciPKUnknown``...) raises :class:`Es10Error`."""
        items = [c.to_asn1() if isinstance(c, EimConfiguration) else c for c in configs]
        value, _ = self._call("AddInitialEim", {"eimConfigurationDataList": items})
        kind, body = value
        if kind != "addInitialEimOk":
            raise self._fail("AddInitialEim", body, "AddInitialEimResponse", "addInitialEimError")
        return [AddInitialEimResult(ok=True, association_token=v if k == "associationToken" else None)
                for k, v in body]

    def get_certs(self, ci_pkid: bytes | str | None = None) -> Certs:
        """ES10b.GetCerts (SGP.32 §5.9): CERT.EUM and CERT.EUICC for ``ci_pkid`` (exact DER)."""
        request = {"euiccCiPKId": _as_bytes(ci_pkid, "ci_pkid")} if ci_pkid is not None else {}
        value, raw = self._call("GetCerts", request)
        kind, body = value
        if kind != "certs":
            raise self._fail("GetCerts", body, "GetCertsResponse", "getCertsError")
        spans = {tag_int(c): c.raw for c in self._walk("GetCerts", raw, 0xA0)}
        if 0xA5 not in spans or 0xA6 not in spans:
            raise Es10Error("GetCerts", None, "malformedResponse", der=raw, detail="certificates A5/A6 missing")
        return Certs(certificate_der(spans[0xA5]), certificate_der(spans[0xA6]))

    def load_euicc_package(self, euicc_package_request: bytes) -> EuiccPackageOutcome:
        """ES10b.LoadEuiccPackage (SGP.32 v1.2 §5.9.1): send a signed EuiccPackageRequest (BF51) unchanged.

        Returns the EuiccPackageResult as :class:`EuiccPackageOutcome` (``der`` exactly as returned, to
        forward to the eIM). Error results (signed or unsigned) are outcomes, not exceptions; a response
        that is not an EuiccPackageResult raises :class:`Es10Error`."""
        raw = self.session.store_data(bytes(euicc_package_request), function="LoadEuiccPackage")
        return self._package_outcome("LoadEuiccPackage", raw)

    @staticmethod
    def _package_outcome(function: str, raw: bytes) -> EuiccPackageOutcome:
        if not raw:
            raise Es10Error(function, None, "emptyResponse", der=raw, detail="expected EuiccPackageResult")
        try:
            return EuiccPackageOutcome.from_der(raw)
        except (Asn1Error, TlvError) as exc:
            raise Es10Error(function, None, "malformedResponse", der=raw, detail=str(exc)) from None

    def _refresh_call(self, name: str, result_field: str, refresh: bool) -> tuple[Any, bytes]:
        value, raw = self._call(name, {"refreshFlag": refresh})
        self._check(name, value[result_field], BY_NAME[name].response_type, result_field)
        return value, raw

    def profile_rollback(self, refresh: bool = True) -> EuiccPackageOutcome | None:
        """ES10b.ProfileRollback (SGP.32 v1.2 §5.9): back to the profile enabled before the last enable PSMO
        with rollbackFlag. Returns the EuiccPackageResult the response carries (the rolled-back package's
        result with rollbackResult; forward ``der`` to the eIM), None when it has none. A cmdResult other
        than ok (``rollbackNotAllowed``, ``catBusy`` ...) raises :class:`Es10Error`."""
        _, raw = self._refresh_call("ProfileRollback", "cmdResult", refresh)
        inner = [c for c in self._walk("ProfileRollback", raw) if tag_int(c) == 0xBF51]
        return self._package_outcome("ProfileRollback", inner[0].raw) if inner else None

    def configure_immediate_profile_enabling(self, enable: bool = True, *, smdp_oid: str | None = None,
                                             smdp_address: str | None = None) -> None:
        """ES10b.ConfigureImmediateProfileEnabling (SGP.32 v1.2 §5.9, BF59): allow ImmediateEnable, for
        profiles from the default SM-DP+ ``smdp_oid``/``smdp_address`` when given. A non-ok result
        (``associatedEimAlreadyExists`` while an eIM is associated ...) raises :class:`Es10Error`."""
        request: dict[str, Any] = {}
        if enable:
            request["immediateEnableFlag"] = None
        if smdp_oid is not None:
            request["defaultSmdpOid"] = smdp_oid
        if smdp_address is not None:
            request["defaultSmdpAddress"] = smdp_address
        name = "ConfigureImmediateProfileEnabling"
        value, _ = self._call(name, request)
        self._check(name, value["configImmediateEnableResult"], BY_NAME[name].response_type,
                    "configImmediateEnableResult")

    def execute_fallback_mechanism(self, refresh: bool = True) -> None:
        """ES10b.ExecuteFallbackMechanism (SGP.32 v1.2 §5.9, BF5D): enable the profile with the Fallback
        Attribute. ``profileNotInDisabledState``, ``catBusy``, ``fallbackNotAvailable`` ... raise
        :class:`Es10Error`."""
        self._refresh_call("ExecuteFallbackMechanism", "executeFallbackMechanismResult", refresh)

    def return_from_fallback(self, refresh: bool = True) -> None:
        """ES10b.ReturnFromFallback (SGP.32 v1.2 §5.9, BF5E): re-enable the profile active before the
        fallback; ``fallbackNotAvailable`` when not in fallback raises :class:`Es10Error`."""
        self._refresh_call("ReturnFromFallback", "returnFromFallbackResult", refresh)

    def immediate_enable(self, refresh: bool = True) -> None:
        """ES10b.ImmediateEnable (SGP.32 v1.2 §5.9, BF5A): enable the profile just downloaded
        (``immediateEnableNotAvailable``, ``noSessionContext``, ``catBusy`` raise :class:`Es10Error`)."""
        self._refresh_call("ImmediateEnable", "immediateEnableResult", refresh)

    def retrieve_euicc_package_results(self) -> list[bytes]:
        """ES10b.RetrieveNotificationsList with searchCriteria euiccPackageResults (SGP.32 v1.2 §5.9): the
        stored EuiccPackageResults, each exactly as returned (forward them to the eIM unchanged)."""
        return [n.der for n in self.retrieve_notifications_list(package_results=True)]
