"""ES10a/b/c functions of the software eUICC's ISD-R (SGP.22 v2.5 §5.7, SGP.32 v1.2 ES10 additions).

:class:`IsdR` is the :class:`~.card.Es10Backend` behind :class:`~.card.EuiccCard`: it receives one
complete ES10 command (all STORE DATA blocks joined), dispatches on its top-level tag and answers with
exact DER. Rules that hold for every function:

- an unknown top-level tag is answered with SW 6A88 (referenced data not found);
- a command that is not DER, or does not match its request type, gets the function's error result
  where the response type has one (``undefinedError`` 127 ...), otherwise SW 6A80;
- a mutating function works on a copy of the NVM and persists it atomically before the response is
  returned (acknowledged => on disk); if persisting fails the card answers 6581 and keeps the old state;
- volatile session data (the eUICC challenge, later the download session) and a pending REFRESH are
  dropped on every card reset (:meth:`IsdR.on_card_reset`, registered in ``EuiccCard.on_reset``).
"""

from __future__ import annotations

import copy
import logging
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ....harness.pki import ci_pkid
from . import der, notifications
from .card import CardStatus, ResetKind
from .der import DerError, Tlv, tlv
from .state import EimConfig, EuiccState, Profile, StateStore

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
NO_SESSION_CONTEXT = 4
INVALID_TRANSACTION_ID = 5

DEFAULT_PROFILE_TAGS = (0x5A, 0x4F, 0x9F70, 0x90, 0x91, 0x92, 0x93, 0x94, 0x95, 0xB6, 0xB7, 0x99, 0x9F26, 0x9F67)


@dataclass(frozen=True)
class RefreshRequest:
    """What a REFRESH listener is told (ETSI TS 102 223 REFRESH, "eUICC profile state change")."""

    reason: str
    enabled_iccid: str | None
    disabled_iccid: str | None


@dataclass
class Session:
    """Volatile ISD-R data, lost on reset (SGP.22 §5.7.10 challenge; later the download session)."""

    euicc_challenge: bytes | None = None


@dataclass(frozen=True)
class _Function:
    name: str
    handler: Callable[[Tlv], bytes]
    malformed: bytes | None


def _result(tag: int, code: int, inner: int = 0x80) -> bytes:
    return tlv(tag, tlv(inner, der.integer(code)))


def _int_value(tag: int, value: int) -> bytes:
    return tlv(tag, der.integer(value))


def _only_child(t: Tlv) -> Tlv:
    kids = t.children()
    if len(kids) != 1:
        raise DerError(f"{t.tag:X}: exactly one data object expected")
    return kids[0]


def _expect_empty(t: Tlv) -> None:
    if t.value:
        raise DerError(f"{t.tag:X}: no input data expected")


def _split_tags(data: bytes) -> list[int]:
    tags = []
    pos = 0
    while pos < len(data):
        first = data[pos]
        if first in (0x00, 0xFF):
            raise DerError("bad tag in tag list")
        tag = first
        pos += 1
        if first & 0x1F == 0x1F:
            for _ in range(2):
                if pos >= len(data):
                    raise DerError("truncated tag in tag list")
                tag = (tag << 8) | data[pos]
                pos += 1
                if not tag & 0x80:
                    break
            else:
                raise DerError("tag too long in tag list")
        tags.append(tag)
    return tags


def _implicit(tag: int, encoded: bytes) -> bytes:
    """Re-tag a DER SEQUENCE (certificate, SPKI) with an IMPLICIT context tag."""
    return tlv(tag, der.parse_one(encoded).value)


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
        self.functions: dict[int, _Function] = {}
        self._register()

    # ------------------------------------------------------------------------------------------
    # plumbing

    def _register(self) -> None:
        f = self.functions

        def add(tag: int, name: str, handler, malformed: bytes | None = None) -> None:
            f[tag] = _Function(name, handler, malformed)

        add(0xBF3E, "GetEuiccData", self.get_euicc_data)
        add(0xBF20, "GetEUICCInfo1", self.get_euicc_info1)
        add(0xBF22, "GetEUICCInfo2", self.get_euicc_info2)
        add(0xBF2E, "GetEUICCChallenge", self.get_euicc_challenge)
        add(0xBF2D, "GetProfilesInfo", self.get_profiles_info, _result(0xBF2D, UNDEFINED_ERROR, 0x81))
        add(0xBF31, "EnableProfile", self.enable_profile, _result(0xBF31, UNDEFINED_ERROR))
        add(0xBF32, "DisableProfile", self.disable_profile, _result(0xBF32, UNDEFINED_ERROR))
        add(0xBF33, "DeleteProfile", self.delete_profile, _result(0xBF33, UNDEFINED_ERROR))
        add(0xBF29, "SetNickname", self.set_nickname, _result(0xBF29, UNDEFINED_ERROR))
        add(0xBF28, "ListNotification", self.list_notification, _result(0xBF28, UNDEFINED_ERROR, 0x81))
        add(0xBF2B, "RetrieveNotificationsList", self.retrieve_notifications_list,
            _result(0xBF2B, UNDEFINED_ERROR, 0x81))
        add(0xBF30, "RemoveNotificationFromList", self.remove_notification, _result(0xBF30, UNDEFINED_ERROR))
        add(0xBF3C, "GetEuiccConfiguredAddresses", self.get_configured_addresses)
        add(0xBF3F, "SetDefaultDpAddress", self.set_default_dp_address, _result(0xBF3F, UNDEFINED_ERROR))
        add(0xBF65, "SGP32-SetDefaultDpAddress", self.set_default_dp_address, _result(0xBF65, UNDEFINED_ERROR))
        add(0xBF43, "GetRAT", self.get_rat)
        add(0xBF34, "eUICCMemoryReset", self.memory_reset, _result(0xBF34, UNDEFINED_ERROR))
        add(0xBF64, "SGP32-eUICCMemoryReset", self.memory_reset, _result(0xBF64, UNDEFINED_ERROR))
        add(0xBF55, "GetEimConfigurationData", self.get_eim_configuration_data)
        add(0xBF57, "AddInitialEim", self.add_initial_eim, _result(0xBF57, UNDEFINED_ERROR, 0x81))
        add(0xBF56, "GetCerts", self.get_certs, _result(0xBF56, UNDEFINED_ERROR, 0x81))
        add(0xBF21, "PrepareDownload", self.prepare_download)
        add(0xBF41, "CancelSession", self.cancel_session, _result(0xBF41, UNDEFINED_ERROR, 0x81))
        for tag, name in ((0xBF38, "AuthenticateServer"), (0xBF36, "LoadBoundProfilePackage"),
                          (0xBF35, "LoadCRL"), (0xBF51, "LoadEuiccPackage")):
            add(tag, name, self.not_available)

    def on_card_reset(self, kind: ResetKind) -> None:
        """Card reset (cold or warm): drop the session and complete any pending REFRESH."""
        with self._lock:
            self.session = Session()
            self.pending_refresh = False
            self._just_disabled = None

    def handle(self, channel: int, command: bytes) -> bytes:
        """Answer one ES10 command (see the module docstring for the error rules)."""
        with self._lock:
            tag = der.peek_tag(command)
            if tag is None:
                raise CardStatus(SW_WRONG_DATA, "no tag")
            function = self.functions.get(tag)
            if function is None:
                raise CardStatus(SW_NOT_FOUND, f"no ES10 function with tag {tag:X}")
            try:
                request = der.parse_one(command)
                return function.handler(request)
            except DerError as exc:
                log.info("%s: malformed request (%s)", function.name, exc)
                if function.malformed is not None:
                    return function.malformed
                raise CardStatus(SW_WRONG_DATA, str(exc)) from None

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

    def _find(self, state: EuiccState, ident: Tlv) -> Profile | None:
        if ident.tag == 0x5A:
            return state.profile(der.decode_iccid(ident.value))
        if ident.tag == 0x4F:
            if not 1 <= len(ident.value) <= 16:
                raise DerError("isdpAid must be 1..16 bytes")
            return state.profile_by_aid(ident.value)
        raise DerError(f"profile identifier tag {ident.tag:X}")

    # ------------------------------------------------------------------------------------------
    # ES10a / ES10b / ES10c: information

    def get_euicc_data(self, t: Tlv) -> bytes:
        """GetEID (SGP.22 §5.7.20): tagList 5C = '5A' -> BF3E { 5A EID }."""
        f = der.fields(t, [0x5C])
        if 0x5C not in f or f[0x5C].value != b"\x5A":
            raise CardStatus(SW_WRONG_DATA, "tagList must be '5A'")
        return tlv(0xBF3E, tlv(0x5A, bytes.fromhex(self.state.eid)))

    def _pkid_lists(self) -> bytes:
        return (tlv(0xA9, b"".join(tlv(0x04, k) for k in self.ci_pkids_verification))
                + tlv(0xAA, b"".join(tlv(0x04, k) for k in self.ci_pkids_signing)))

    def get_euicc_info1(self, t: Tlv) -> bytes:
        """GetEUICCInfo1 (SGP.22 §5.7.8): svn and the CI PKId lists."""
        _expect_empty(t)
        return tlv(0xBF20, tlv(0x82, SVN) + self._pkid_lists())

    def ext_card_resource(self) -> bytes:
        """ETSI TS 102 226 §8.2.1.7.2: installed applications (81), free NVM (82), free volatile (83)."""
        used = sum(PROFILE_FOOTPRINT + len(p.package) for p in self.state.profiles)
        free = max(0, NVM_BYTES - used)

        def unsigned(n: int) -> bytes:
            return n.to_bytes(max(1, (n.bit_length() + 7) // 8), "big")

        return (tlv(0x81, unsigned(len(self.state.profiles))) + tlv(0x82, unsigned(free))
                + tlv(0x83, unsigned(VOLATILE_FREE)))

    def get_euicc_info2(self, t: Tlv) -> bytes:
        """GetEUICCInfo2 (SGP.22 §5.7.8 EUICCInfo2, SGP.32 v1.2 SGP32-EUICCInfo2 with ipaMode [16]
        = ipad and iotSpecificInfo [20] = SGP.32 v1.2 with fallbackSupported)."""
        _expect_empty(t)
        free = NVM_BYTES - sum(PROFILE_FOOTPRINT + len(p.package) for p in self.state.profiles)
        rsp_bits = [RSP_TEST_PROFILE] + ([RSP_ADDITIONAL_PROFILE] if free >= PROFILE_FOOTPRINT else [])
        iot = tlv(0xA0, tlv(0x04, IOT_VERSION)) + tlv(0x82)
        body = b"".join([
            tlv(0x81, PROFILE_VERSION),
            tlv(0x82, SVN),
            tlv(0x83, FIRMWARE_VERSION),
            tlv(0x84, self.ext_card_resource()),
            tlv(0x85, der.bit_string(UICC_CAPABILITY_BITS)),
            tlv(0x86, TS102241_VERSION),
            tlv(0x87, GLOBALPLATFORM_VERSION),
            tlv(0x88, der.bit_string(rsp_bits)),
            self._pkid_lists(),
            tlv(0x8B, der.integer(EUICC_CATEGORY_BASIC)),
            tlv(0x99, der.bit_string(PPR_BITS[p] for p in FORBIDDEN_PPRS)),
            tlv(0x04, PP_VERSION),
            tlv(0x0C, SAS_ACCREDITATION.encode()),
            tlv(0x90, der.integer(0)),
            tlv(0xB4, iot),
        ])
        return tlv(0xBF22, body)

    def get_euicc_challenge(self, t: Tlv) -> bytes:
        """GetEUICCChallenge (SGP.22 §5.7.7): 16 random bytes, kept until the next reset."""
        _expect_empty(t)
        self.session.euicc_challenge = secrets.token_bytes(16)
        return tlv(0xBF2E, tlv(0x80, self.session.euicc_challenge))

    def get_configured_addresses(self, t: Tlv) -> bytes:
        """GetEuiccConfiguredAddresses (SGP.22 §5.7.3): defaultDpAddress (when set), rootDsAddress."""
        _expect_empty(t)
        body = tlv(0x80, self.state.default_dp_address.encode()) if self.state.default_dp_address else b""
        return tlv(0xBF3C, body + tlv(0x81, self.state.root_ds_address.encode()))

    def get_rat(self, t: Tlv) -> bytes:
        """GetRAT (SGP.22 §5.7.22): the Rules Authorisation Table."""
        _expect_empty(t)
        rules = []
        for rule in self.state.rat:
            ops = b"".join(
                tlv(0x30, tlv(0x80, op.mcc_mnc) + (tlv(0x81, op.gid1) if op.gid1 else b"")
                    + (tlv(0x82, op.gid2) if op.gid2 else b""))
                for op in rule.allowed_operators)
            rules.append(tlv(0x30, tlv(0x80, der.bit_string(PPR_BITS[p] for p in rule.pprs)) + tlv(0xA1, ops)
                             + tlv(0x82, der.bit_string([0] if rule.consent_required else []))))
        return tlv(0xBF43, tlv(0xA0, b"".join(rules)))

    def profile_info(self, p: Profile, tags: list[int] | tuple[int, ...]) -> bytes:
        """ProfileInfo (E3, SGP.22 §5.7.15 / SGP32-ProfileInfo) with the requested tags, in type order."""
        wanted = set(tags)
        parts: list[tuple[int, bytes | None]] = [
            (0x5A, der.encode_iccid(p.iccid)),
            (0x4F, p.isdp_aid),
            (0x9F70, der.integer(1 if p.state == "enabled" else 0)),
            (0x90, p.nickname.encode() if p.nickname else None),
            (0x91, p.service_provider_name.encode()),
            (0x92, p.profile_name.encode()),
            (0x93, der.integer(p.icon_type) if p.icon_type is not None else None),
            (0x94, p.icon if p.icon_type is not None else None),
            (0x95, der.integer(CLASS_VALUES[p.profile_class])),
            (0xB6, b"".join(tlv(0x30, tlv(0x80, notifications.event_bit_string(c.events))
                                + tlv(0x81, c.address.encode())) for c in p.notification_config)
             if p.notification_config else None),
            (0xB7, tlv(0x80, p.owner_mcc_mnc) + (tlv(0x81, p.owner_gid1) if p.owner_gid1 else b"")
             + (tlv(0x82, p.owner_gid2) if p.owner_gid2 else b"") if p.owner_mcc_mnc else None),
            (0x99, der.bit_string(PPR_BITS[r] for r in p.policy_rules)),
            (0x9F26, der.boolean(True) if p.fallback_attribute else None),
            (0x9F67, der.boolean(p.fallback_allowed) if p.fallback_allowed is not None else None),
        ]
        return tlv(0xE3, b"".join(tlv(tag, value) for tag, value in parts if tag in wanted and value is not None))

    def get_profiles_info(self, t: Tlv) -> bytes:
        """GetProfilesInfo (SGP.22 §5.7.15): searchCriteria A0 {4F | 5A | 95} and tagList 5C; no match
        gives an empty list, an unknown criterion or an unreadable tag list incorrectInputValues."""
        f = der.fields(t, [0xA0, 0x5C])
        profiles = list(self.state.profiles)
        if 0xA0 in f:
            crit = _only_child(f[0xA0])
            if crit.tag in (0x5A, 0x4F):
                found = self._find(self.state, crit)
                profiles = [found] if found else []
            elif crit.tag == 0x95:
                wanted = CLASS_NAMES.get(der.to_int(crit.value))
                if wanted is None:
                    return _result(0xBF2D, INCORRECT_INPUT_VALUES, 0x81)
                profiles = [p for p in profiles if p.profile_class == wanted]
            else:
                return _result(0xBF2D, INCORRECT_INPUT_VALUES, 0x81)
        tags: list[int] | tuple[int, ...] = DEFAULT_PROFILE_TAGS
        if 0x5C in f:
            try:
                tags = _split_tags(f[0x5C].value)
            except DerError:
                return _result(0xBF2D, INCORRECT_INPUT_VALUES, 0x81)
        return tlv(0xBF2D, tlv(0xA0, b"".join(self.profile_info(p, tags) for p in profiles)))

    # ------------------------------------------------------------------------------------------
    # ES10c: profile management

    def _switch_request(self, t: Tlv) -> tuple[Tlv, bool]:
        f = der.fields(t, [0xA0, 0x81])
        if set(f) != {0xA0, 0x81}:
            raise DerError("profileIdentifier and refreshFlag are mandatory")
        return _only_child(f[0xA0]), der.to_bool(f[0x81].value)

    def enable_profile(self, t: Tlv) -> bytes:
        """EnableProfile (SGP.22 §5.7.16, §3.2.1): disables the enabled profile, enables the target,
        generates the disable and enable notifications, persists, then REFRESHes when refreshFlag is set."""
        ident, refresh = self._switch_request(t)
        draft = self._draft()
        target = self._find(draft, ident)
        if target is None:
            return _result(0xBF31, ICCID_OR_AID_NOT_FOUND)
        if target.state == "enabled":
            return _result(0xBF31, PROFILE_NOT_IN_DISABLED_STATE)
        if self.pending_refresh and self._just_disabled == target.iccid:
            return _result(0xBF31, WRONG_PROFILE_REENABLING)
        current = draft.enabled_profile()
        if current is not None and "ppr1" in current.policy_rules:
            return _result(0xBF31, DISALLOWED_BY_POLICY)
        if refresh and self.cat_busy:
            return _result(0xBF31, CAT_BUSY)
        if current is not None:
            current.state = "disabled"
            notifications.create(draft, self._key, current, "disable")
        target.state = "enabled"
        notifications.create(draft, self._key, target, "enable")
        self._commit(draft)
        self._just_disabled = current.iccid if current else None
        if refresh:
            self._refresh(RefreshRequest("enable", target.iccid, current.iccid if current else None))
        return _result(0xBF31, OK)

    def disable_profile(self, t: Tlv) -> bytes:
        """DisableProfile (SGP.22 §5.7.17, §3.2.2): PPR1 forbids it; generates the disable notification."""
        ident, refresh = self._switch_request(t)
        draft = self._draft()
        target = self._find(draft, ident)
        if target is None:
            return _result(0xBF32, ICCID_OR_AID_NOT_FOUND)
        if target.state != "enabled":
            return _result(0xBF32, PROFILE_NOT_IN_ENABLED_STATE)
        if "ppr1" in target.policy_rules:
            return _result(0xBF32, DISALLOWED_BY_POLICY)
        if refresh and self.cat_busy:
            return _result(0xBF32, CAT_BUSY)
        target.state = "disabled"
        notifications.create(draft, self._key, target, "disable")
        self._commit(draft)
        self._just_disabled = target.iccid
        if refresh:
            self._refresh(RefreshRequest("disable", None, target.iccid))
        return _result(0xBF32, OK)

    def delete_profile(self, t: Tlv) -> bytes:
        """DeleteProfile (SGP.22 §5.7.18, §3.2.3): only a disabled profile; PPR2 and the SGP.32 Fallback
        Attribute forbid it (disallowedByPolicy); generates the delete notification."""
        ident = _only_child(t)
        draft = self._draft()
        target = self._find(draft, ident)
        if target is None:
            return _result(0xBF33, ICCID_OR_AID_NOT_FOUND)
        if target.state == "enabled":
            return _result(0xBF33, PROFILE_NOT_IN_DISABLED_STATE)
        if "ppr2" in target.policy_rules or target.fallback_attribute:
            return _result(0xBF33, DISALLOWED_BY_POLICY)
        notifications.create(draft, self._key, target, "delete")
        draft.profiles.remove(target)
        if draft.rollback_iccid == target.iccid:
            draft.rollback_iccid = ""
        self._commit(draft)
        return _result(0xBF33, OK)

    def set_nickname(self, t: Tlv) -> bytes:
        """SetNickname (SGP.22 §5.7.21): iccid 5A, profileNickname 90 (0..64 bytes)."""
        f = der.fields(t, [0x5A, 0x90])
        if set(f) != {0x5A, 0x90}:
            raise DerError("iccid and profileNickname are mandatory")
        nickname = der.utf8(f[0x90].value)
        if len(f[0x90].value) > 64:
            raise DerError("profileNickname longer than 64 bytes")
        draft = self._draft()
        target = draft.profile(der.decode_iccid(f[0x5A].value))
        if target is None:
            return _result(0xBF29, ICCID_OR_AID_NOT_FOUND)
        target.nickname = nickname
        self._commit(draft)
        return _result(0xBF29, OK)

    def memory_reset(self, t: Tlv) -> bytes:
        """eUICCMemoryReset (SGP.22 §5.7.19, BF34) and SGP32-eUICCMemoryReset (SGP.32 v1.2, BF64).

        resetOptions bits: 0 operational profiles, 1 field-loaded test profiles, 2 default SM-DP+ address;
        BF64 only: 3 pre-loaded test profiles, 4 provisioning profiles, 5 eIM configuration data (result
        resetEimResult [1]), 6 immediate enable configuration (resetImmediateEnableConfigResult [2]).
        A deleted enabled profile triggers a REFRESH; catBusy when that REFRESH cannot be sent.
        """
        f = der.fields(t, [0x82])
        if 0x82 not in f:
            raise DerError("resetOptions is mandatory")
        options = der.to_bits(f[0x82].value)
        sgp32 = t.tag == 0xBF64
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
            return _result(t.tag, CAT_BUSY)
        changed = bool(removed)
        draft.profiles = [p for p in draft.profiles if not doomed(p)]
        if 2 in options and draft.default_dp_address:
            draft.default_dp_address = ""
            changed = True
        extra = b""
        if 5 in options:
            eim_result = OK if draft.eims else NOTHING_TO_DELETE
            changed = changed or bool(draft.eims)
            draft.eims = []
            extra += tlv(0x81, der.integer(eim_result))
        if 6 in options:
            changed = changed or draft.immediate_enable or bool(draft.default_smdp_for_immediate)
            draft.immediate_enable = False
            draft.default_smdp_for_immediate = ""
            extra += tlv(0x82, der.integer(OK))
        if not changed:
            return tlv(t.tag, tlv(0x80, der.integer(NOTHING_TO_DELETE)) + extra)
        if any(p.iccid == draft.rollback_iccid for p in removed):
            draft.rollback_iccid = ""
        self._commit(draft)
        if enabled_removed is not None:
            self._just_disabled = None
            self._refresh(RefreshRequest("memory-reset", None, enabled_removed.iccid))
        return tlv(t.tag, tlv(0x80, der.integer(OK)) + extra)

    # ------------------------------------------------------------------------------------------
    # ES10b: notifications

    def list_notification(self, t: Tlv) -> bytes:
        """ListNotification (SGP.22 §5.7.9): NotificationMetadata of the pending notifications, optionally
        only those whose event is set in profileManagementOperation [1]."""
        f = der.fields(t, [0x81])
        events = None
        if 0x81 in f:
            events = {notifications.BIT_EVENTS[b] for b in der.to_bits(f[0x81].value) if b in notifications.BIT_EVENTS}
        items = [notifications.metadata_of(n) for n in self.state.notifications
                 if events is None or notifications.matches(n, events)]
        return tlv(0xBF28, tlv(0xA0, b"".join(items)))

    def retrieve_notifications_list(self, t: Tlv) -> bytes:
        """RetrieveNotificationsList (SGP.22 §5.7.10, SGP.32 v1.2 SGP32-RetrieveNotificationsListRequest):
        searchCriteria A0 { seqNumber 80 | profileManagementOperation 81 | euiccPackageResults 82 };
        notifications come as notificationList A0, stored eUICC Package Results as A2."""
        f = der.fields(t, [0xA0])
        notes = self.state.notifications
        if 0xA0 in f:
            crit = _only_child(f[0xA0])
            if crit.tag == 0x80:
                seq = der.to_int(crit.value)
                notes = [n for n in notes if n.seq_number == seq]
            elif crit.tag == 0x81:
                events = {notifications.BIT_EVENTS[b] for b in der.to_bits(crit.value)
                          if b in notifications.BIT_EVENTS}
                notes = [n for n in notes if notifications.matches(n, events)]
            elif crit.tag == 0x82:
                der.to_null(crit.value)
                return tlv(0xBF2B, tlv(0xA2, b"".join(r.der for r in self.state.package_results)))
            else:
                raise DerError(f"unknown searchCriteria {crit.tag:X}")
        return tlv(0xBF2B, tlv(0xA0, b"".join(n.der for n in notes)))

    def remove_notification(self, t: Tlv) -> bytes:
        """RemoveNotificationFromList / NotificationSent (SGP.22 §5.7.11): removes the pending notification
        with seqNumber [0]; SGP.32 also acknowledges a stored eUICC Package Result by its seqNumber."""
        f = der.fields(t, [0x80])
        if 0x80 not in f:
            raise DerError("seqNumber is mandatory")
        seq = der.to_int(f[0x80].value)
        draft = self._draft()
        before = (len(draft.notifications), len(draft.package_results))
        draft.notifications = [n for n in draft.notifications if n.seq_number != seq]
        if len(draft.notifications) == before[0]:
            draft.package_results = [r for r in draft.package_results if r.seq_number != seq]
        if (len(draft.notifications), len(draft.package_results)) == before:
            return _result(0xBF30, NOTHING_TO_DELETE)
        self._commit(draft)
        return _result(0xBF30, OK)

    # ------------------------------------------------------------------------------------------
    # ES10a: addresses

    def set_default_dp_address(self, t: Tlv) -> bytes:
        """SetDefaultDpAddress (SGP.22 §5.7.4, BF3F; SGP.32 v1.2 BF65): an empty address removes it."""
        f = der.fields(t, [0x80])
        if 0x80 not in f:
            raise DerError("defaultDpAddress is mandatory")
        address = der.utf8(f[0x80].value)
        draft = self._draft()
        draft.default_dp_address = address
        self._commit(draft)
        return _result(t.tag, OK)

    # ------------------------------------------------------------------------------------------
    # SGP.32: eIM configuration and certificates

    def eim_configuration(self, e: EimConfig, *, with_token: bool = False) -> bytes:
        """EimConfigurationData (SGP.32 v1.2) of a stored eIM, without its associationToken."""
        parts = [tlv(0x80, e.eim_id.encode())]
        if e.eim_fqdn:
            parts.append(tlv(0x81, e.eim_fqdn.encode()))
        if e.eim_id_type is not None:
            parts.append(tlv(0x82, der.integer(e.eim_id_type)))
        parts.append(tlv(0x83, der.integer(e.counter_value)))
        if with_token and e.association_token is not None:
            parts.append(tlv(0x84, der.integer(e.association_token)))
        if e.eim_public_key:
            parts.append(tlv(0xA5, _implicit(0xA0, e.eim_public_key)))
        elif e.eim_certificate:
            parts.append(tlv(0xA5, _implicit(0xA1, e.eim_certificate)))
        if e.trusted_tls_key:
            parts.append(tlv(0xA6, e.trusted_tls_key))
        if e.supported_protocols:
            parts.append(tlv(0x87, e.supported_protocols))
        if e.euicc_ci_pkid:
            parts.append(tlv(0x88, e.euicc_ci_pkid))
        if e.indirect_profile_download:
            parts.append(tlv(0x89))
        return tlv(0x30, b"".join(parts))

    def get_eim_configuration_data(self, t: Tlv) -> bytes:
        """GetEimConfigurationData (SGP.32 v1.2 ES10b): all eIMs, or the one with searchCriteria eimId."""
        f = der.fields(t, [0xA0])
        eims = self.state.eims
        if 0xA0 in f:
            crit = _only_child(f[0xA0])
            if crit.tag != 0x80:
                raise DerError("searchCriteria must be eimId [0]")
            eim_id = der.utf8(crit.value)
            eims = [e for e in eims if e.eim_id == eim_id]
        return tlv(0xBF55, tlv(0xA0, b"".join(self.eim_configuration(e) for e in eims)))

    def _parse_eim(self, t: Tlv) -> EimConfig | int:
        """One EimConfigurationData of AddInitialEim, or the AddInitialEimError code it deserves."""
        if t.tag != 0x30:
            raise DerError("EimConfigurationData must be a SEQUENCE")
        f = der.fields(t, [0x80, 0x81, 0x82, 0x83, 0x84, 0xA5, 0xA6, 0x87, 0x88, 0x89])
        if 0x80 not in f:
            return COMMAND_ERROR
        eim_id = der.utf8(f[0x80].value)
        if not 1 <= len(f[0x80].value) <= 128:
            return COMMAND_ERROR
        config = EimConfig(eim_id=eim_id, eim_fqdn=der.utf8(f[0x81].value) if 0x81 in f else "")
        if 0x82 in f:
            config.eim_id_type = der.to_int(f[0x82].value)
            if config.eim_id_type not in (1, 2, 3):
                return COMMAND_ERROR
        counter = der.to_int(f[0x83].value) if 0x83 in f else 0
        if not 0 <= counter <= COUNTER_MAX:
            return COUNTER_VALUE_OUT_OF_RANGE
        config.counter_value = counter
        if 0xA5 not in f:
            return COMMAND_ERROR
        key_data = _only_child(f[0xA5])
        encoded = tlv(0x30, key_data.value)
        try:
            if key_data.tag == 0xA0:
                key = serialization.load_der_public_key(encoded)
                config.eim_public_key = encoded
            elif key_data.tag == 0xA1:
                key = x509.load_der_x509_certificate(encoded).public_key()
                config.eim_certificate = encoded
            else:
                return COMMAND_ERROR
        except ValueError:
            return COMMAND_ERROR
        if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name not in ("secp256r1", "brainpoolP256r1"):
            return COMMAND_ERROR
        if 0xA6 in f:
            tls_data = _only_child(f[0xA6])
            if tls_data.tag not in (0xA0, 0xA1):
                return COMMAND_ERROR
            config.trusted_tls_key = tls_data.raw
        if 0x87 in f:
            der.to_bits(f[0x87].value)
            config.supported_protocols = f[0x87].value
        if 0x88 in f:
            if f[0x88].value not in self.ci_pkids_signing:
                return CI_PK_UNKNOWN
            config.euicc_ci_pkid = f[0x88].value
        if 0x89 in f:
            der.to_null(f[0x89].value)
            config.indirect_profile_download = True
        if 0x84 in f:
            der.to_int(f[0x84].value)
            config.association_token = -1
        return config

    def add_initial_eim(self, t: Tlv) -> bytes:
        """AddInitialEim (SGP.32 v1.2 ES10b): accepted only while no eIM is associated; each entry answers
        addOk (NULL) or, when associationToken [4] is present in the request, the token the eUICC assigns.
        Errors: insufficientMemory 1, associatedEimAlreadyExists 2, ciPKUnknown 3,
        counterValueOutOfRange 6, commandError 7."""
        f = der.fields(t, [0xA0])
        if 0xA0 not in f:
            raise DerError("eimConfigurationDataList is mandatory")
        entries = f[0xA0].children()
        parsed = [self._parse_eim(entry) for entry in entries]
        if self.state.eims:
            return _result(0xBF57, ASSOCIATED_EIM_ALREADY_EXISTS, 0x81)
        error = next((p for p in parsed if isinstance(p, int)), None)
        if error is not None:
            return _result(0xBF57, error, 0x81)
        configs = [p for p in parsed if isinstance(p, EimConfig)]
        if not configs or len({c.eim_id for c in configs}) != len(configs):
            return _result(0xBF57, COMMAND_ERROR, 0x81)
        if len(configs) > MAX_EIMS:
            return _result(0xBF57, INSUFFICIENT_MEMORY, 0x81)
        draft = self._draft()
        answers = []
        for config in configs:
            if config.association_token is not None:
                config.association_token = draft.next_association_token
                draft.next_association_token += 1
                answers.append(tlv(0x84, der.integer(config.association_token)))
            else:
                answers.append(tlv(0x05))
            draft.eims.append(config)
        self._commit(draft)
        return tlv(0xBF57, tlv(0xA0, b"".join(answers)))

    def get_certs(self, t: Tlv) -> bytes:
        """GetCerts (SGP.32 v1.2 ES10b): eumCertificate [5] and euiccCertificate [6] of the chain for the
        requested CI PKId (invalidCiPKId 1 when the eUICC has none for it)."""
        f = der.fields(t, [0x80])
        if 0x80 in f and f[0x80].value not in self.ci_pkids_signing:
            return _result(0xBF56, INVALID_CI_PKID, 0x81)
        certs = _implicit(0xA5, self.state.eum_cert) + _implicit(0xA6, self.state.euicc_cert)
        return tlv(0xBF56, tlv(0xA0, certs))

    # ------------------------------------------------------------------------------------------
    # ES10b: profile download (the download session comes with the SM-DP+ issue)

    def prepare_download(self, t: Tlv) -> bytes:
        """PrepareDownload (SGP.22 §5.7.5) without an authenticated session: downloadResponseError
        {transactionId, noSessionContext 4}."""
        kids = t.children()
        if not kids or kids[0].tag != 0x30:
            raise DerError("smdpSigned2 expected")
        signed = der.fields(kids[0], [0x80, 0x01, 0x5F49])
        if 0x80 not in signed or not 1 <= len(signed[0x80].value) <= 16:
            raise DerError("transactionId expected")
        error = tlv(0x80, signed[0x80].value) + tlv(0x02, der.integer(NO_SESSION_CONTEXT))
        return tlv(0xBF21, tlv(0xA1, error))

    def cancel_session(self, t: Tlv) -> bytes:
        """CancelSession (SGP.22 §5.7.14) without a session: cancelSessionResponseError invalidTransactionId."""
        f = der.fields(t, [0x80, 0x81])
        if set(f) != {0x80, 0x81}:
            raise DerError("transactionId and reason are mandatory")
        return _result(0xBF41, INVALID_TRANSACTION_ID, 0x81)

    def not_available(self, t: Tlv) -> bytes:
        """Functions of the profile download and eUICC Package issues, not built yet: SW 6A88."""
        raise CardStatus(SW_NOT_FOUND, f"{self.functions[t.tag].name} is not available yet")
