"""ES10a/b/c functions of the software eUICC's ISD-R (SGP.22 v2.5 §5.7, SGP.32 v1.2 ES10 additions).

:class:`IsdR` is the :class:`~.card.Es10Backend` behind :class:`~.card.EuiccCard`: it receives one
complete ES10 command (all STORE DATA blocks joined), dispatches on its top-level tag, decodes it as
the function's request type with the project's ASN.1 codec (:mod:`sgp32hil.harness.asn1`) and answers
with the codec's DER of the response type. Rules that hold for every function:

- an unknown top-level tag is answered with SW 6A88 (referenced data not found), an unreadable one
  with SW 6A80;
- a command that is not the DER of its request type (it must decode and re-encode to the same bytes,
  ITU-T X.690 §10), or holds values the function rejects, gets the function's error result where the
  response type has one (``undefinedError`` 127 ...), otherwise SW 6A80;
- a mutating function works on a copy of the NVM and persists it atomically before the response is
  returned (acknowledged => on disk); if persisting fails the card answers 6581 and keeps the old state;
- volatile session data (the eUICC challenge, later the download session) and a pending REFRESH are
  dropped on every card reset (:meth:`IsdR.on_card_reset`, registered in ``EuiccCard.on_reset``).
"""

from __future__ import annotations

import copy
import functools
import logging
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ....harness import asn1
from ....harness.pki import ci_pkid
from . import notifications
from .card import CardStatus, ResetKind
from .factory import bit_numbers, bit_string_value, decode_iccid, encode_iccid, named_bits, stored_bit_string
from .notifications import certificate, decode_exact
from .state import EimConfig, EuiccState, Profile, StateStore

if TYPE_CHECKING:
    from .download import DownloadSession

log = logging.getLogger(__name__)

SW_WRONG_DATA = 0x6A80
SW_NOT_FOUND = 0x6A88
SW_MEMORY_FAILURE = 0x6581

PROFILE_VERSION = bytes([2, 3, 1])
SVN = bytes([2, 5, 0])
FIRMWARE_VERSION = bytes([1, 0, 0])
TS102241_VERSION = bytes([15, 1, 0])
GLOBALPLATFORM_VERSION = bytes([2, 3, 1])
PP_VERSION = bytes([1, 0, 0])
IOT_VERSION = bytes([1, 2, 0])
SAS_ACCREDITATION = "SGP32HIL-TEST-SAS-0000"

UICC_CAPABILITY_BITS = (1, 2, 4, 8, 14, 19, 21)
RSP_ADDITIONAL_PROFILE = 0
RSP_TEST_PROFILE = 3
EUICC_CATEGORY_BASIC = 1
IPA_MODE_IPAD = 0
FORBIDDEN_PPRS = ("ppr1",)
PPR_BITS = {"pprUpdateControl": 0, "ppr1": 1, "ppr2": 2}
CLASS_VALUES = {"test": 0, "provisioning": 1, "operational": 2}
CLASS_NAMES = {v: k for k, v in CLASS_VALUES.items()}

NVM_BYTES = 1_048_576
PROFILE_FOOTPRINT = 65_536
VOLATILE_FREE = 8_192
MAX_EIMS = 4
COUNTER_MAX = 0x7FFFFF

OK = 0
UNDEFINED_ERROR = 127
ICCID_OR_AID_NOT_FOUND = 1
PROFILE_NOT_IN_DISABLED_STATE = 2
PROFILE_NOT_IN_ENABLED_STATE = 2
DISALLOWED_BY_POLICY = 3
WRONG_PROFILE_REENABLING = 4
CAT_BUSY = 5
NOTHING_TO_DELETE = 1
INCORRECT_INPUT_VALUES = 1
INSUFFICIENT_MEMORY = 1
ASSOCIATED_EIM_ALREADY_EXISTS = 2
CI_PK_UNKNOWN = 3
COUNTER_VALUE_OUT_OF_RANGE = 6
COMMAND_ERROR = 7
INVALID_CI_PKID = 1

PROFILE_INFO_TAGS = {
    "iccid": b"\x5a", "isdpAid": b"\x4f", "profileState": b"\x9f\x70", "profileNickname": b"\x90",
    "serviceProviderName": b"\x91", "profileName": b"\x92", "iconType": b"\x93", "icon": b"\x94",
    "profileClass": b"\x95", "notificationConfigurationInfo": b"\xb6", "profileOwner": b"\xb7",
    "profilePolicyRules": b"\x99", "fallbackAttribute": b"\x9f\x26", "fallbackAllowed": b"\x9f\x67",
}


class MalformedRequest(ValueError):
    """The command is not the DER of its request type, or holds a value the function rejects."""


@dataclass(frozen=True)
class RefreshRequest:
    """What a REFRESH listener is told (ETSI TS 102 223 REFRESH, "eUICC profile state change")."""

    reason: str
    enabled_iccid: str | None
    disabled_iccid: str | None


@dataclass
class Session:
    """Volatile ISD-R data, lost on reset (SGP.22 §5.7.10 challenge, the download session of
    :mod:`.download`, the profile it installed for SGP.32 v1.2 ImmediateEnable)."""

    euicc_challenge: bytes | None = None
    download: DownloadSession | None = None
    installed_iccid: str | None = None


@dataclass(frozen=True)
class _Function:
    """One ES10 function: ``handler`` gets the decoded ``request`` (the raw command when ``raw``) and
    returns the ``response`` value; no handler means not available yet. ``malformed`` is the DER of the
    error result, if the response type has one."""

    name: str
    request: str
    response: str | None
    handler: Callable[[Any], Any] | None
    malformed: bytes | None
    raw: bool


def _has_unknown_alternative(value: Any) -> bool:
    """True when an extensible CHOICE in ``value`` holds an alternative the modules do not define
    (asn1tools decodes it as ``(None, None)``; such a value cannot be re-encoded)."""
    if isinstance(value, tuple):
        return value == (None, None) or any(_has_unknown_alternative(v) for v in value)
    if isinstance(value, dict):
        return any(_has_unknown_alternative(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_unknown_alternative(v) for v in value)
    return False


def _check_framing(tlv: asn1.Tlv) -> None:
    """Definite lengths within bounds down to every primitive data object (X.690 §8.1)."""
    if tlv.constructed:
        for child in tlv.children():
            _check_framing(child)


def _decode_request(type_name: str, command: bytes) -> Any:
    """Decode ``command`` as ``type_name``, accepting only DER: the value must re-encode to the same
    bytes. A value holding an unknown CHOICE alternative cannot be re-encoded; it only needs to be well
    framed, and the function answers it itself."""
    try:
        value = asn1.decode(type_name, command)
        if _has_unknown_alternative(value):
            _check_framing(asn1.parse_single(command))
            return value
        if asn1.encode(type_name, value, check_constraints=False) == command:
            return value
    except asn1.Asn1Error as exc:
        raise MalformedRequest(str(exc)) from None
    raise MalformedRequest(f"{type_name} is not DER")


def _iccid(value: bytes) -> str:
    try:
        return decode_iccid(value)
    except ValueError as exc:
        raise MalformedRequest(str(exc)) from None


def _tag_at(data: bytes, pos: int) -> bytes:
    """The identifier octets starting at ``pos`` (X.690 §8.1.2; ES10 and ProfileInfo tags take 1..3)."""
    end = pos + 1
    if end > len(data):
        raise MalformedRequest("tag expected")
    if data[pos] & 0x1F == 0x1F:
        while True:
            if end >= len(data) or end - pos > 2:
                raise MalformedRequest("truncated or too long tag")
            end += 1
            if not data[end - 1] & 0x80:
                break
    return bytes(data[pos:end])


def _split_tags(data: bytes) -> list[bytes]:
    """The tags of a tagList: identifier octets back to back."""
    tags: list[bytes] = []
    pos = 0
    while pos < len(data):
        if data[pos] in (0x00, 0xFF):
            raise MalformedRequest("bad tag in tag list")
        tags.append(_tag_at(data, pos))
        pos += len(tags[-1])
    return tags


def _unsigned(n: int) -> bytes:
    return n.to_bytes(max(1, (n.bit_length() + 7) // 8), "big")


def _tls_key(der: bytes) -> tuple[str, Any]:
    """trustedPublicKeyDataTls of a stored eIM: a certificate or a SubjectPublicKeyInfo."""
    try:
        return "trustedCertificateTls", certificate(der)
    except asn1.Asn1Error:
        return "trustedEimPkTls", decode_exact("SubjectPublicKeyInfo", der)


class IsdR:
    """The ES10 function layer of the software eUICC (an :class:`~.card.Es10Backend`).

    ``store`` persists the state (None keeps it in memory only). ``refresh_listeners`` are called with a
    :class:`RefreshRequest` after a profile switch with refreshFlag set (the simulated modem subscribes);
    :attr:`pending_refresh` stays set until the next card reset. :attr:`cat_busy` simulates an ongoing
    proactive session (catBusy results when a REFRESH would be needed).
    """

    def __init__(self, state: EuiccState, store: StateStore | None = None):
        self.state = state
        self.store = store
        self.session = Session()
        self.refresh_listeners: list[Callable[[RefreshRequest], None]] = []
        self.pending_refresh = False
        self.cat_busy = False
        self._just_disabled: str | None = None
        self._lock = threading.RLock()
        self._key = serialization.load_pem_private_key(state.euicc_key_pem, password=None)
        if not isinstance(self._key, ec.EllipticCurvePrivateKey):
            raise ValueError("the eUICC key in the state is not an EC key")
        self._euicc_cert = x509.load_der_x509_certificate(state.euicc_cert)
        self._eum_cert = x509.load_der_x509_certificate(state.eum_cert)
        cis = [x509.load_der_x509_certificate(c) for c in state.ci_certs]
        self.ci_pkids_verification = [ci_pkid(c) for c in cis]
        self.ci_pkids_signing = [ci_pkid(c) for c in cis if c.subject == self._eum_cert.issuer]
        self.functions: dict[bytes, _Function] = {}
        self._register()

    # ------------------------------------------------------------------------------------------
    # plumbing

    def _register(self) -> None:
        def add(name: str, request: str, response: str | None, handler=None, malformed=None, *,
                raw: bool = False) -> None:
            error = None if malformed is None else asn1.encode(response, malformed)
            self.functions[asn1.tag_of(request)] = _Function(name, request, response, handler, error, raw)

        add("GetEuiccData", "GetEuiccDataRequest", "GetEuiccDataResponse", self.get_euicc_data)
        add("GetEUICCInfo1", "GetEuiccInfo1Request", "EUICCInfo1", self.get_euicc_info1)
        add("GetEUICCInfo2", "GetEuiccInfo2Request", "SGP32-EUICCInfo2", self.get_euicc_info2)
        add("GetEUICCChallenge", "GetEuiccChallengeRequest", "GetEuiccChallengeResponse",
            self.get_euicc_challenge)
        add("GetProfilesInfo", "ProfileInfoListRequest", "SGP32-ProfileInfoListResponse", self.get_profiles_info,
            ("profileInfoListError", UNDEFINED_ERROR))
        add("EnableProfile", "EnableProfileRequest", "EnableProfileResponse", self.enable_profile,
            {"enableResult": UNDEFINED_ERROR})
        add("DisableProfile", "DisableProfileRequest", "DisableProfileResponse", self.disable_profile,
            {"disableResult": UNDEFINED_ERROR})
        add("DeleteProfile", "DeleteProfileRequest", "DeleteProfileResponse", self.delete_profile,
            {"deleteResult": UNDEFINED_ERROR})
        add("SetNickname", "SetNicknameRequest", "SetNicknameResponse", self.set_nickname,
            {"setNicknameResult": UNDEFINED_ERROR})
        add("ListNotification", "ListNotificationRequest", "ListNotificationResponse", self.list_notification,
            ("listNotificationsResultError", UNDEFINED_ERROR))
        add("RetrieveNotificationsList", "SGP32-RetrieveNotificationsListRequest",
            "SGP32-RetrieveNotificationsListResponse", self.retrieve_notifications_list,
            ("notificationsListResultError", UNDEFINED_ERROR))
        add("RemoveNotificationFromList", "NotificationSentRequest", "NotificationSentResponse",
            self.remove_notification, {"deleteNotificationStatus": UNDEFINED_ERROR})
        add("GetEuiccConfiguredAddresses", "EuiccConfiguredAddressesRequest", "EuiccConfiguredAddressesResponse",
            self.get_configured_addresses)
        add("SetDefaultDpAddress", "SetDefaultDpAddressRequest", "SetDefaultDpAddressResponse",
            self.set_default_dp_address, {"setDefaultDpAddressResult": UNDEFINED_ERROR})
        add("SGP32-SetDefaultDpAddress", "SGP32-SetDefaultDpAddressRequest", "SGP32-SetDefaultDpAddressResponse",
            self.set_default_dp_address, {"setDefaultDpAddressResult": UNDEFINED_ERROR})
        add("GetRAT", "GetRatRequest", "GetRatResponse", self.get_rat)
        add("eUICCMemoryReset", "EuiccMemoryResetRequest", "EuiccMemoryResetResponse",
            functools.partial(self.memory_reset, sgp32=False), {"resetResult": UNDEFINED_ERROR})
        add("SGP32-eUICCMemoryReset", "SGP32-EuiccMemoryResetRequest", "SGP32-EuiccMemoryResetResponse",
            functools.partial(self.memory_reset, sgp32=True), {"resetResult": UNDEFINED_ERROR})
        add("GetEimConfigurationData", "GetEimConfigurationDataRequest", "GetEimConfigurationDataResponse",
            self.get_eim_configuration_data)
        add("AddInitialEim", "AddInitialEimRequest", "AddInitialEimResponse", self.add_initial_eim,
            ("addInitialEimError", UNDEFINED_ERROR))
        add("GetCerts", "GetCertsRequest", "GetCertsResponse", self.get_certs, ("getCertsError", UNDEFINED_ERROR))
        from .download import SEGMENT_TAGS, Downloader

        self.download = Downloader(self)
        add("AuthenticateServer", "AuthenticateServerRequest", "SGP32-AuthenticateServerResponse",
            self.download.authenticate_server, raw=True)
        add("PrepareDownload", "PrepareDownloadRequest", "SGP32-PrepareDownloadResponse",
            self.download.prepare_download, raw=True)
        add("CancelSession", "CancelSessionRequest", "CancelSessionResponse", self.download.cancel_session,
            ("cancelSessionResponseError", UNDEFINED_ERROR))
        add("LoadBoundProfilePackage", "BoundProfilePackage", None, self.download.load_segment, raw=True)
        for tag in SEGMENT_TAGS:
            self.functions[tag] = self.functions[asn1.tag_of("BoundProfilePackage")]
        add("LoadCRL", "LoadCRLRequest", None)
        from .packages import Packages

        self.packages = Packages(self)
        add("LoadEuiccPackage", "EuiccPackageRequest", None, self.packages.load, raw=True)
        add("ProfileRollback", "ProfileRollbackRequest", "ProfileRollbackResponse", self.packages.profile_rollback,
            {"cmdResult": UNDEFINED_ERROR})
        add("ConfigureImmediateProfileEnabling", "ConfigureImmediateProfileEnablingRequest",
            "ConfigureImmediateProfileEnablingResponse", self.packages.configure_immediate_enabling,
            {"configImmediateEnableResult": UNDEFINED_ERROR})
        add("ImmediateEnable", "ImmediateEnableRequest", "ImmediateEnableResponse", self.packages.immediate_enable,
            {"immediateEnableResult": UNDEFINED_ERROR})
        add("ExecuteFallbackMechanism", "ExecuteFallbackMechanismRequest", "ExecuteFallbackMechanismResponse",
            self.packages.execute_fallback, {"executeFallbackMechanismResult": UNDEFINED_ERROR})
        add("ReturnFromFallback", "ReturnFromFallbackRequest", "ReturnFromFallbackResponse",
            self.packages.return_from_fallback, {"returnFromFallbackResult": UNDEFINED_ERROR})

    def on_card_reset(self, kind: ResetKind) -> None:
        """Card reset (cold or warm): drop the session, complete any pending REFRESH and report a BPP load
        the reset interrupted."""
        with self._lock:
            self.session = Session()
            self.pending_refresh = False
            self._just_disabled = None
            self.download.report_interruption()

    def handle(self, channel: int, command: bytes) -> bytes:
        """Answer one ES10 command (see the module docstring for the error rules)."""
        with self._lock:
            try:
                tag = _tag_at(command, 0)
            except MalformedRequest as exc:
                raise CardStatus(SW_WRONG_DATA, str(exc)) from None
            function = self.functions.get(tag)
            if function is None:
                raise CardStatus(SW_NOT_FOUND, f"no ES10 function with tag {tag.hex().upper()}")
            try:
                if function.handler is None:
                    asn1.parse_single(command)
                    raise CardStatus(SW_NOT_FOUND, f"{function.name} is not available yet")
                request = command if function.raw else _decode_request(function.request, command)
                result = function.handler(request)
            except (MalformedRequest, asn1.TlvError) as exc:
                log.info("%s: malformed request (%s)", function.name, exc)
                if function.malformed is not None:
                    return function.malformed
                raise CardStatus(SW_WRONG_DATA, str(exc)) from None
            if function.response is None:
                return result
            return asn1.encode(function.response, result)

    def _draft(self) -> EuiccState:
        return copy.deepcopy(self.state)

    def _commit(self, draft: EuiccState) -> None:
        """Persist ``draft`` atomically, then make it the current state."""
        if self.store is not None:
            try:
                self.store.save(draft)
            except OSError as exc:
                log.error("cannot persist the eUICC state: %s", exc)
                raise CardStatus(SW_MEMORY_FAILURE, "NVM write failed") from exc
        self.state = draft

    def _refresh(self, request: RefreshRequest) -> None:
        self.pending_refresh = True
        for listener in list(self.refresh_listeners):
            try:
                listener(request)
            except Exception:
                log.exception("REFRESH listener %r failed", listener)

    def _find(self, state: EuiccState, ident: tuple[str | None, Any]) -> Profile | None:
        kind, value = ident
        if kind == "iccid":
            return state.profile(_iccid(value))
        if kind == "isdpAid":
            if not 1 <= len(value) <= 16:
                raise MalformedRequest("isdpAid must be 1..16 bytes")
            return state.profile_by_aid(value)
        raise MalformedRequest("unknown profile identifier")

    # ------------------------------------------------------------------------------------------
    # ES10a / ES10b / ES10c: information

    def get_euicc_data(self, request: dict) -> dict:
        """GetEID (SGP.22 §5.7.20): tagList 5C = '5A' -> BF3E { 5A EID }."""
        if request["tagList"] != b"\x5a":
            raise CardStatus(SW_WRONG_DATA, "tagList must be '5A'")
        return {"eidValue": bytes.fromhex(self.state.eid)}

    def _pkid_lists(self) -> dict:
        return {"euiccCiPKIdListForVerification": self.ci_pkids_verification,
                "euiccCiPKIdListForSigning": self.ci_pkids_signing}

    def get_euicc_info1(self, request: dict) -> dict:
        """GetEUICCInfo1 (SGP.22 §5.7.8): svn and the CI PKId lists."""
        return {"svn": SVN, **self._pkid_lists()}

    def ext_card_resource(self) -> bytes:
        """ETSI TS 102 226 §8.2.1.7.2: installed applications (81), free NVM (82), free volatile (83).

        A TS 102 226 TLV list carried in an OCTET STRING; no ASN.1 module of the project defines it."""
        used = sum(PROFILE_FOOTPRINT + len(p.package) for p in self.state.profiles)
        values = (len(self.state.profiles), max(0, NVM_BYTES - used), VOLATILE_FREE)
        return b"".join(bytes([0x81 + i, len(v)]) + v for i, v in enumerate(map(_unsigned, values)))

    def get_euicc_info2(self, request: dict) -> dict:
        """GetEUICCInfo2 (SGP.22 §5.7.8 EUICCInfo2, SGP.32 v1.2 SGP32-EUICCInfo2 with ipaMode [16]
        = ipad and iotSpecificInfo [20] = SGP.32 v1.2 with fallbackSupported)."""
        free = NVM_BYTES - sum(PROFILE_FOOTPRINT + len(p.package) for p in self.state.profiles)
        rsp_bits = [RSP_TEST_PROFILE] + ([RSP_ADDITIONAL_PROFILE] if free >= PROFILE_FOOTPRINT else [])
        return {
            "profileVersion": PROFILE_VERSION,
            "svn": SVN,
            "euiccFirmwareVer": FIRMWARE_VERSION,
            "extCardResource": self.ext_card_resource(),
            "uiccCapability": named_bits(UICC_CAPABILITY_BITS),
            "ts102241Version": TS102241_VERSION,
            "globalplatformVersion": GLOBALPLATFORM_VERSION,
            "rspCapability": named_bits(rsp_bits),
            **self._pkid_lists(),
            "euiccCategory": EUICC_CATEGORY_BASIC,
            "forbiddenProfilePolicyRules": named_bits(PPR_BITS[p] for p in FORBIDDEN_PPRS),
            "ppVersion": PP_VERSION,
            "sasAcreditationNumber": SAS_ACCREDITATION,
            "ipaMode": IPA_MODE_IPAD,
            "iotSpecificInfo": {"iotVersion": [IOT_VERSION], "fallbackSupported": None},
        }

    def get_euicc_challenge(self, request: dict) -> dict:
        """GetEUICCChallenge (SGP.22 §5.7.7): 16 random bytes, kept until the next reset."""
        self.session.euicc_challenge = secrets.token_bytes(16)
        return {"euiccChallenge": self.session.euicc_challenge}

    def get_configured_addresses(self, request: dict) -> dict:
        """GetEuiccConfiguredAddresses (SGP.22 §5.7.3): defaultDpAddress (when set), rootDsAddress."""
        response = {"rootDsAddress": self.state.root_ds_address}
        if self.state.default_dp_address:
            response["defaultDpAddress"] = self.state.default_dp_address
        return response

    def get_rat(self, request: dict, state: EuiccState | None = None) -> dict:
        """GetRAT (SGP.22 §5.7.22): the Rules Authorisation Table (of ``state``, default the current)."""
        state = state or self.state
        return {"rat": [{
            "pprIds": named_bits(PPR_BITS[p] for p in rule.pprs),
            "allowedOperators": [self._operator(op.mcc_mnc, op.gid1, op.gid2) for op in rule.allowed_operators],
            "pprFlags": named_bits([0] if rule.consent_required else []),
        } for rule in state.rat]}

    @staticmethod
    def _operator(mcc_mnc: bytes, gid1: bytes, gid2: bytes) -> dict:
        """OperatorId (SGP.22 §2.4.4): mccMnc, gid1 and gid2 when set."""
        operator = {"mccMnc": mcc_mnc}
        if gid1:
            operator["gid1"] = gid1
        if gid2:
            operator["gid2"] = gid2
        return operator

    def profile_info(self, p: Profile, tags: set[bytes]) -> dict:
        """SGP32-ProfileInfo (E3, SGP.22 §5.7.15) with the fields whose tag is in ``tags``."""
        info = {
            "iccid": encode_iccid(p.iccid),
            "isdpAid": p.isdp_aid,
            "profileState": 1 if p.state == "enabled" else 0,
            "profileNickname": p.nickname or None,
            "serviceProviderName": p.service_provider_name,
            "profileName": p.profile_name,
            "iconType": p.icon_type,
            "icon": p.icon if p.icon_type is not None else None,
            "profileClass": CLASS_VALUES[p.profile_class],
            "notificationConfigurationInfo": [
                {"profileManagementOperation": notifications.event_bits(c.events), "notificationAddress": c.address}
                for c in p.notification_config] or None,
            "profileOwner": self._operator(p.owner_mcc_mnc, p.owner_gid1, p.owner_gid2) if p.owner_mcc_mnc else None,
            "profilePolicyRules": named_bits(PPR_BITS[r] for r in p.policy_rules),
            "fallbackAttribute": True if p.fallback_attribute else None,
            "fallbackAllowed": p.fallback_allowed,
        }
        return {k: v for k, v in info.items() if v is not None and PROFILE_INFO_TAGS[k] in tags}

    def get_profiles_info(self, request: dict, state: EuiccState | None = None) -> tuple[str, Any]:
        """GetProfilesInfo (SGP.22 §5.7.15): searchCriteria {isdpAid | iccid | profileClass} and tagList;
        no match gives an empty list, an unknown criterion or an unreadable tag list incorrectInputValues.
        ``state`` is the NVM to list (the listProfileInfo PSMO lists the package's working copy)."""
        incorrect = ("profileInfoListError", INCORRECT_INPUT_VALUES)
        state = state or self.state
        profiles = list(state.profiles)
        if "searchCriteria" in request:
            kind, value = request["searchCriteria"]
            if kind in ("iccid", "isdpAid"):
                found = self._find(state, (kind, value))
                profiles = [found] if found else []
            elif kind == "profileClass" and value in CLASS_NAMES:
                profiles = [p for p in profiles if p.profile_class == CLASS_NAMES[value]]
            else:
                return incorrect
        tags = set(PROFILE_INFO_TAGS.values())
        if "tagList" in request:
            try:
                tags = set(_split_tags(request["tagList"]))
            except MalformedRequest:
                return incorrect
        return "profileInfoListOk", [self.profile_info(p, tags) for p in profiles]

    # ------------------------------------------------------------------------------------------
    # ES10c: profile management

    def enable_profile(self, request: dict) -> dict:
        """EnableProfile (SGP.22 §5.7.16, §3.2.1): disables the enabled profile, enables the target,
        generates the disable and enable notifications, persists, then REFRESHes when refreshFlag is set."""
        refresh = request["refreshFlag"]
        draft = self._draft()
        target = self._find(draft, request["profileIdentifier"])
        if target is None:
            return {"enableResult": ICCID_OR_AID_NOT_FOUND}
        if target.state == "enabled":
            return {"enableResult": PROFILE_NOT_IN_DISABLED_STATE}
        if self.pending_refresh and self._just_disabled == target.iccid:
            return {"enableResult": WRONG_PROFILE_REENABLING}
        current = draft.enabled_profile()
        if current is not None and "ppr1" in current.policy_rules:
            return {"enableResult": DISALLOWED_BY_POLICY}
        if refresh and self.cat_busy:
            return {"enableResult": CAT_BUSY}
        from .packages import switch

        switch(draft, self._key, current, target)
        draft.rollback = None
        self._commit(draft)
        self._just_disabled = current.iccid if current else None
        if refresh:
            self._refresh(RefreshRequest("enable", target.iccid, current.iccid if current else None))
        return {"enableResult": OK}

    def disable_profile(self, request: dict) -> dict:
        """DisableProfile (SGP.22 §5.7.17, §3.2.2): PPR1 forbids it; generates the disable notification."""
        refresh = request["refreshFlag"]
        draft = self._draft()
        target = self._find(draft, request["profileIdentifier"])
        if target is None:
            return {"disableResult": ICCID_OR_AID_NOT_FOUND}
        if target.state != "enabled":
            return {"disableResult": PROFILE_NOT_IN_ENABLED_STATE}
        if "ppr1" in target.policy_rules:
            return {"disableResult": DISALLOWED_BY_POLICY}
        if refresh and self.cat_busy:
            return {"disableResult": CAT_BUSY}
        target.state = "disabled"
        notifications.create(draft, self._key, target, "disable")
        draft.rollback = None
        draft.fallback_active_from = ""
        self._commit(draft)
        self._just_disabled = target.iccid
        if refresh:
            self._refresh(RefreshRequest("disable", None, target.iccid))
        return {"disableResult": OK}

    def delete_profile(self, request: tuple[str, Any]) -> dict:
        """DeleteProfile (SGP.22 §5.7.18, §3.2.3): only a disabled profile; PPR2 and the SGP.32 Fallback
        Attribute forbid it (disallowedByPolicy); generates the delete notification."""
        draft = self._draft()
        target = self._find(draft, request)
        if target is None:
            return {"deleteResult": ICCID_OR_AID_NOT_FOUND}
        if target.state == "enabled":
            return {"deleteResult": PROFILE_NOT_IN_DISABLED_STATE}
        if "ppr2" in target.policy_rules or target.fallback_attribute:
            return {"deleteResult": DISALLOWED_BY_POLICY}
        notifications.create(draft, self._key, target, "delete")
        draft.profiles.remove(target)
        if draft.rollback is not None and target.iccid in (draft.rollback.previous_iccid,
                                                           draft.rollback.enabled_iccid):
            draft.rollback = None
        if draft.fallback_active_from == target.iccid:
            draft.fallback_active_from = ""
        self._commit(draft)
        return {"deleteResult": OK}

    def set_nickname(self, request: dict) -> dict:
        """SetNickname (SGP.22 §5.7.21): iccid, profileNickname (0..64 bytes)."""
        iccid = _iccid(request["iccid"])
        nickname = request["profileNickname"]
        if len(nickname.encode()) > 64:
            raise MalformedRequest("profileNickname longer than 64 bytes")
        draft = self._draft()
        target = draft.profile(iccid)
        if target is None:
            return {"setNicknameResult": ICCID_OR_AID_NOT_FOUND}
        target.nickname = nickname
        self._commit(draft)
        return {"setNicknameResult": OK}

    def memory_reset(self, request: dict, *, sgp32: bool) -> dict:
        """eUICCMemoryReset (SGP.22 §5.7.19, BF34) and SGP32-eUICCMemoryReset (SGP.32 v1.2, BF64).

        resetOptions bits: 0 operational profiles, 1 field-loaded test profiles, 2 default SM-DP+ address;
        BF64 only: 3 pre-loaded test profiles, 4 provisioning profiles, 5 eIM configuration data (result
        resetEimResult), 6 immediate enable configuration (resetImmediateEnableConfigResult).
        A deleted enabled profile triggers a REFRESH; catBusy when that REFRESH cannot be sent.
        """
        options = bit_numbers(request["resetOptions"])
        if not sgp32:
            options &= {0, 1, 2}
        draft = self._draft()

        def doomed(p: Profile) -> bool:
            if p.profile_class == "operational":
                return 0 in options
            if p.profile_class == "test":
                return (1 in options and not p.preloaded) or (3 in options and p.preloaded)
            return 4 in options

        removed = [p for p in draft.profiles if doomed(p)]
        enabled_removed = next((p for p in removed if p.state == "enabled"), None)
        if enabled_removed is not None and self.cat_busy:
            return {"resetResult": CAT_BUSY}
        changed = bool(removed)
        draft.profiles = [p for p in draft.profiles if not doomed(p)]
        if 2 in options and draft.default_dp_address:
            draft.default_dp_address = ""
            changed = True
        response = {}
        if 5 in options:
            response["resetEimResult"] = OK if draft.eims else NOTHING_TO_DELETE
            changed = changed or bool(draft.eims)
            draft.eims = []
        if 6 in options:
            changed = changed or draft.immediate_enable or bool(draft.default_smdp_for_immediate)
            draft.immediate_enable = False
            draft.default_smdp_for_immediate = ""
            draft.immediate_enable_smdp_oid = ""
            response["resetImmediateEnableConfigResult"] = OK
        if not changed:
            return {"resetResult": NOTHING_TO_DELETE, **response}
        if draft.rollback is not None and any(p.iccid in (draft.rollback.previous_iccid, draft.rollback.enabled_iccid)
                                              for p in removed):
            draft.rollback = None
        if any(p.iccid == draft.fallback_active_from for p in removed):
            draft.fallback_active_from = ""
        self._commit(draft)
        if enabled_removed is not None:
            self._just_disabled = None
            self._refresh(RefreshRequest("memory-reset", None, enabled_removed.iccid))
        return {"resetResult": OK, **response}

    # ------------------------------------------------------------------------------------------
    # ES10b: notifications

    def list_notification(self, request: dict) -> tuple[str, Any]:
        """ListNotification (SGP.22 §5.7.9): NotificationMetadata of the pending notifications, optionally
        only those whose event is set in profileManagementOperation."""
        notes = self.state.notifications
        if "profileManagementOperation" in request:
            events = notifications.events_of(request["profileManagementOperation"])
            notes = [n for n in notes if notifications.matches(n, events)]
        return "notificationMetadataList", [notifications.metadata_of(n) for n in notes]

    def retrieve_notifications_list(self, request: dict) -> tuple[str, Any]:
        """RetrieveNotificationsList (SGP.22 §5.7.10, SGP.32 v1.2 SGP32-RetrieveNotificationsListRequest):
        searchCriteria {seqNumber | profileManagementOperation | euiccPackageResults}; notifications come
        as notificationList, stored eUICC Package Results as euiccPackageResultList."""
        notes = self.state.notifications
        if "searchCriteria" in request:
            kind, value = request["searchCriteria"]
            if kind == "seqNumber":
                notes = [n for n in notes if n.seq_number == value]
            elif kind == "profileManagementOperation":
                events = notifications.events_of(value)
                notes = [n for n in notes if notifications.matches(n, events)]
            elif kind == "euiccPackageResults":
                return "euiccPackageResultList", [decode_exact("EuiccPackageResult", r.der)
                                                  for r in self.state.package_results]
            else:
                raise MalformedRequest("unknown searchCriteria")
        return "notificationList", [notifications.pending(n) for n in notes]

    def remove_notification(self, request: dict) -> dict:
        """RemoveNotificationFromList / NotificationSent (SGP.22 §5.7.11): removes the pending notification
        with seqNumber; SGP.32 also acknowledges a stored eUICC Package Result by its seqNumber (one
        seqNumber space, :func:`.packages.allocate_seq`). Acknowledging the result of an enable with
        rollbackFlag confirms that enable: ProfileRollback is no longer possible."""
        seq = request["seqNumber"]
        draft = self._draft()
        before = (len(draft.notifications), len(draft.package_results))
        draft.notifications = [n for n in draft.notifications if n.seq_number != seq]
        if len(draft.notifications) == before[0]:
            draft.package_results = [r for r in draft.package_results if r.seq_number != seq]
            if draft.rollback is not None and draft.rollback.seq_number == seq:
                draft.rollback = None
        if (len(draft.notifications), len(draft.package_results)) == before:
            return {"deleteNotificationStatus": NOTHING_TO_DELETE}
        self._commit(draft)
        return {"deleteNotificationStatus": OK}

    # ------------------------------------------------------------------------------------------
    # ES10a: addresses

    def set_default_dp_address(self, request: dict) -> dict:
        """SetDefaultDpAddress (SGP.22 §5.7.4, BF3F; SGP.32 v1.2 BF65): an empty address removes it."""
        draft = self._draft()
        draft.default_dp_address = request["defaultDpAddress"]
        self._commit(draft)
        return {"setDefaultDpAddressResult": OK}

    # ------------------------------------------------------------------------------------------
    # SGP.32: eIM configuration and certificates

    def eim_configuration(self, e: EimConfig, *, with_token: bool = False) -> dict:
        """EimConfigurationData (SGP.32 v1.2) of a stored eIM, without its associationToken."""
        config: dict[str, Any] = {"eimId": e.eim_id, "counterValue": e.counter_value}
        if e.eim_fqdn:
            config["eimFqdn"] = e.eim_fqdn
        if e.eim_id_type is not None:
            config["eimIdType"] = e.eim_id_type
        if with_token and e.association_token is not None:
            config["associationToken"] = e.association_token
        if e.eim_public_key:
            config["eimPublicKeyData"] = ("eimPublicKey", decode_exact("SubjectPublicKeyInfo", e.eim_public_key))
        elif e.eim_certificate:
            config["eimPublicKeyData"] = ("eimCertificate", certificate(e.eim_certificate))
        if e.trusted_tls_key:
            config["trustedPublicKeyDataTls"] = _tls_key(e.trusted_tls_key)
        if e.supported_protocols:
            config["eimSupportedProtocol"] = bit_string_value(e.supported_protocols)
        if e.euicc_ci_pkid:
            config["euiccCiPKId"] = e.euicc_ci_pkid
        if e.indirect_profile_download:
            config["indirectProfileDownload"] = None
        return config

    def get_eim_configuration_data(self, request: dict) -> dict:
        """GetEimConfigurationData (SGP.32 v1.2 ES10b): all eIMs, or the one with searchCriteria eimId."""
        eims = self.state.eims
        if "searchCriteria" in request:
            kind, eim_id = request["searchCriteria"]
            if kind != "eimId":
                raise MalformedRequest("searchCriteria must be eimId")
            eims = [e for e in eims if e.eim_id == eim_id]
        return {"eimConfigurationDataList": [self.eim_configuration(e) for e in eims]}

    def _parse_eim(self, value: dict) -> EimConfig | int:
        """One EimConfigurationData of AddInitialEim, or the AddInitialEimError code it deserves.

        The key data and trustedPublicKeyDataTls are kept as the DER of the SubjectPublicKeyInfo or
        Certificate (the codec's encoding of the decoded value: the bytes received, the request being DER)."""
        eim_id = value["eimId"]
        if not 1 <= len(eim_id.encode()) <= 128:
            return COMMAND_ERROR
        config = EimConfig(eim_id=eim_id, eim_fqdn=value.get("eimFqdn", ""))
        if "eimIdType" in value:
            config.eim_id_type = value["eimIdType"]
            if config.eim_id_type not in (1, 2, 3):
                return COMMAND_ERROR
        config.counter_value = value.get("counterValue", 0)
        if not 0 <= config.counter_value <= COUNTER_MAX:
            return COUNTER_VALUE_OUT_OF_RANGE
        kind, key_data = value.get("eimPublicKeyData", (None, None))
        try:
            if kind == "eimPublicKey":
                config.eim_public_key = asn1.encode("SubjectPublicKeyInfo", key_data)
                key = serialization.load_der_public_key(config.eim_public_key)
            elif kind == "eimCertificate":
                config.eim_certificate = asn1.encode("Certificate", key_data)
                key = x509.load_der_x509_certificate(config.eim_certificate).public_key()
            else:
                return COMMAND_ERROR
            if "trustedPublicKeyDataTls" in value:
                kind, tls_data = value["trustedPublicKeyDataTls"]
                if kind not in ("trustedEimPkTls", "trustedCertificateTls"):
                    return COMMAND_ERROR
                type_name = "SubjectPublicKeyInfo" if kind == "trustedEimPkTls" else "Certificate"
                config.trusted_tls_key = asn1.encode(type_name, tls_data)
        except (ValueError, UnsupportedAlgorithm):
            return COMMAND_ERROR
        if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name not in ("secp256r1", "brainpoolP256r1"):
            return COMMAND_ERROR
        if "eimSupportedProtocol" in value:
            config.supported_protocols = stored_bit_string("EimSupportedProtocol", value["eimSupportedProtocol"])
        if "euiccCiPKId" in value:
            if value["euiccCiPKId"] not in self.ci_pkids_signing:
                return CI_PK_UNKNOWN
            config.euicc_ci_pkid = value["euiccCiPKId"]
        config.indirect_profile_download = "indirectProfileDownload" in value
        if "associationToken" in value:
            config.association_token = -1
        return config

    def add_initial_eim(self, request: dict) -> tuple[str, Any]:
        """AddInitialEim (SGP.32 v1.2 ES10b): accepted only while no eIM is associated; each entry answers
        addOk (NULL) or, when associationToken is present in the request, the token the eUICC assigns.
        Errors: insufficientMemory 1, associatedEimAlreadyExists 2, ciPKUnknown 3,
        counterValueOutOfRange 6, commandError 7."""
        parsed = [self._parse_eim(entry) for entry in request["eimConfigurationDataList"]]
        if self.state.eims:
            return "addInitialEimError", ASSOCIATED_EIM_ALREADY_EXISTS
        error = next((p for p in parsed if isinstance(p, int)), None)
        if error is not None:
            return "addInitialEimError", error
        configs = [p for p in parsed if isinstance(p, EimConfig)]
        if not configs or len({c.eim_id for c in configs}) != len(configs):
            return "addInitialEimError", COMMAND_ERROR
        if len(configs) > MAX_EIMS:
            return "addInitialEimError", INSUFFICIENT_MEMORY
        draft = self._draft()
        answers = []
        for config in configs:
            if config.association_token is not None:
                config.association_token = draft.next_association_token
                draft.next_association_token += 1
                answers.append(("associationToken", config.association_token))
            else:
                answers.append(("addOk", None))
            draft.eims.append(config)
        self._commit(draft)
        return "addInitialEimOk", answers

    def get_certs(self, request: dict) -> tuple[str, Any]:
        """GetCerts (SGP.32 v1.2 ES10b): eumCertificate and euiccCertificate of the chain for the
        requested CI PKId (invalidCiPKId 1 when the eUICC has none for it)."""
        if "euiccCiPKId" in request and request["euiccCiPKId"] not in self.ci_pkids_signing:
            return "getCertsError", INVALID_CI_PKID
        return "certs", {"eumCertificate": certificate(self.state.eum_cert),
                         "euiccCertificate": certificate(self.state.euicc_cert)}
