"""eUICC Packages and the SGP.32 v1.2 profile state functions of the software eUICC.

ES10b.LoadEuiccPackage (SGP.32 v1.2 §5.9.1, §2.11.1/§2.11.2): a STORE DATA of EuiccPackageRequest
'BF51', answered with EuiccPackageResult 'BF51'. Also ProfileRollback 'BF58',
ConfigureImmediateProfileEnabling 'BF59', ImmediateEnable 'BF5A', ExecuteFallbackMechanism 'BF5D' and
ReturnFromFallback 'BF5E' (SGP.32 v1.2 §5.9).

How this eUICC reads the specification (facts where the text is explicit, choices where it is not):

- **Verification order.** eimId unknown, or eimSignature (ECDSA-SHA256, TR-03111 r||s, over the
  euiccPackageSigned bytes as received followed by the eIM's associationToken DO '84' when it has one,
  :func:`~sgp32hil.harness.asn1.signed.eim_signature_input`) not verifying with the stored eIM key or
  certificate: EuiccPackageErrorUnsigned {eimId, eimTransactionId, associationToken when the eIM is
  known}. After the signature: package over :data:`MAX_PACKAGE_BYTES` -> sizeOverflow(15), not DER of
  EuiccPackageRequest -> undefinedError(127), EID not ours -> invalidEid(3), counterValue outside
  1..:data:`COUNTER_MAX` (2^23-1, our choice) -> counterValueOutOfRange(6), counterValue not above the
  stored one -> replayError(4). Signed errors are EuiccPackageErrorSigned, euiccSignEPE over the DER of
  euiccPackageErrorDataSigned followed by the associationToken DO
  (:func:`~sgp32hil.harness.asn1.signed.euicc_result_signature_input`). Errors change nothing and are
  not stored (they carry no seqNumber to acknowledge them by).
- **Execution.** The counter is stored, then the PSMOs (or eCOs) run in order on one copy of the NVM.
  The first one whose result is not a success ends the package: its result is the last of the list
  and the remaining ones are neither executed nor reported. An unknown or damaged PSMO/eCO ends the
  package with ``processingTerminated`` unknownOrDamagedCommand(2); a result list beyond
  :data:`MAX_RESULT_BYTES` ends it with resultSizeOverflow(1). What ran before stays done: counter,
  profile changes, notifications, the signed EuiccPackageResult are persisted in one atomic commit.
- **Results.** euiccPackageResultSigned {eimId, counterValue, eimTransactionId, seqNumber,
  euiccResult}, euiccSignEPR over euiccPackageResultDataSigned || associationToken DO (token as the
  eIM had it when the package arrived). The result is stored until RemoveNotificationFromList names its
  seqNumber (the IPA does so on EimAcknowledgements). seqNumbers of package results and notifications
  come from one counter (:func:`allocate_seq`), so an acknowledgement is never ambiguous.
- **REFRESH.** A package (or BF58/BF5A/BF5D/BF5E with refreshFlag) that changes the enabled profile
  answers first; the REFRESH listeners are called after the commit. PSMOs carry no refreshFlag: a
  package that switches profiles always requests a REFRESH, and gets catBusy when a proactive session
  is open.
- **Rollback.** An enable PSMO with rollbackFlag remembers the profile it disabled (rollbackNotAvailable
  when none was enabled). ProfileRollback goes back while that profile change is still in place and
  its package result has not been acknowledged; its response carries a new signed EuiccPackageResult
  (same eimId, counterValue, eimTransactionId, a new seqNumber, the original euiccResult plus
  rollbackResult ok) that replaces the stored result of the rolled-back package.
- **Fallback.** setFallbackAttribute: iccidOrAidNotFound, fallbackNotAllowed when the profile metadata
  says fallbackAllowed false, fallbackProfileEnabled when the profile holding the attribute today is
  enabled; the attribute moves (at most one holder). unsetFallbackAttribute: noFallbackAttribute,
  fallbackProfileEnabled likewise. ExecuteFallbackMechanism enables the holder and remembers the profile
  it replaced; ReturnFromFallback re-enables that one; any other profile change ends the fallback.
- **Immediate enable.** ConfigureImmediateProfileEnabling (ES10b) is refused with
  associatedEimAlreadyExists while an eIM is associated (then the eIM configures it by PSMO).
  ImmediateEnable enables the profile installed last in this card session (noSessionContext after a
  reset or when none was), from the configured default SM-DP+ when one is set.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ....harness import asn1
from ....harness.asn1 import signed as signed_parts
from ....harness.pki import sign_plain, verify_plain
from . import notifications
from .factory import decode_iccid
from .isdr import COUNTER_MAX, MAX_EIMS, MalformedRequest, RefreshRequest, _decode_request
from .state import EimConfig, EuiccState, PackageResult, Profile, RollbackContext

if TYPE_CHECKING:
    from .isdr import IsdR

log = logging.getLogger(__name__)

MAX_PACKAGE_BYTES = 8192
MAX_RESULT_BYTES = 8192

OK = 0
UNDEFINED_ERROR = 127
# EuiccPackageErrorCode
INVALID_EID = 3
REPLAY_ERROR = 4
COUNTER_VALUE_OUT_OF_RANGE = 6
SIZE_OVERFLOW = 15
# processingTerminated
RESULT_SIZE_OVERFLOW = 1
UNKNOWN_OR_DAMAGED_COMMAND = 2
# PSMO / eCO result codes
ICCID_OR_AID_NOT_FOUND = 1
PROFILE_NOT_IN_DISABLED_STATE = 2
PROFILE_NOT_IN_ENABLED_STATE = 2
DISALLOWED_BY_POLICY = 3
CAT_BUSY = 5
ROLLBACK_NOT_AVAILABLE = 20
RETURN_FALLBACK_PROFILE = 21
FALLBACK_NOT_ALLOWED = 2
FALLBACK_PROFILE_ENABLED = 3
NO_FALLBACK_ATTRIBUTE = 2
INSUFFICIENT_MEMORY = 1
ASSOCIATED_EIM_ALREADY_EXISTS = 2
EIM_NOT_FOUND = 1
LAST_EIM_DELETED = 2
COMMAND_ERROR = 7
# ES10b results
ROLLBACK_NOT_ALLOWED = 1
IMMEDIATE_ENABLE_NOT_AVAILABLE = 1
NO_SESSION_CONTEXT = 4
FALLBACK_NOT_AVAILABLE = 6

SUCCESS_CODES: dict[str, tuple[int, ...]] = {"deleteEimResult": (OK, LAST_EIM_DELETED)}


def allocate_seq(state: EuiccState) -> int:
    """The next seqNumber for a stored eUICC Package Result, from the counter notifications use too
    (notifications only ever advance ``next_notification_seq``, which never falls behind)."""
    seq = max(state.next_notification_seq, state.next_result_seq)
    state.next_notification_seq = state.next_result_seq = seq + 1
    return seq


def switch(state: EuiccState, key, current: Profile | None, target: Profile | None) -> None:
    """Disable ``current`` and enable ``target`` with their notifications (SGP.22 §3.2.1/§3.2.2 as used
    by the SGP.32 v1.2 §3.3 PSMOs); any such change ends an active fallback."""
    if current is not None:
        current.state = "disabled"
        notifications.create(state, key, current, "disable")
    if target is not None:
        target.state = "enabled"
        notifications.create(state, key, target, "enable")
    state.fallback_active_from = ""


def sign_result(key, data: dict, association_token: int | None) -> bytes:
    """EuiccPackageResult with euiccPackageResultSigned: ``data`` (EuiccPackageResultDataSigned) and
    euiccSignEPR over its DER followed by the associationToken DO (SGP.32 v1.2 §2.11.2.1)."""
    data_der = asn1.encode("EuiccPackageResultDataSigned", data)
    signature = sign_plain(key, signed_parts.euicc_result_signature_input(data_der, association_token))
    return asn1.encode("EuiccPackageResult", ("euiccPackageResultSigned", {
        "euiccPackageResultDataSigned": data, "euiccSignEPR": signature}))


def _int(value: bytes) -> int:
    return int.from_bytes(value, "big", signed=True)


@dataclass
class _Run:
    """One package being executed: the results so far and an enable-with-rollback to remember."""

    results: list[tuple[str, Any]] = field(default_factory=list)
    size: int = 0
    rollback: tuple[str, str] | None = None
    rollback_cleared: bool = False


class Packages:
    """SGP.32 v1.2 eUICC Package processing and profile state functions of one :class:`~.isdr.IsdR`."""

    def __init__(self, isdr: IsdR):
        self.isdr = isdr

    @property
    def _key(self):
        return self.isdr._key

    # ------------------------------------------------------------------------------------------
    # ES10b.LoadEuiccPackage

    def load(self, command: bytes) -> bytes:
        """ES10b.LoadEuiccPackage (SGP.32 v1.2 §5.9.1): the EuiccPackageResult DER (see the module
        docstring). A command whose eimId cannot be read gets SW 6A80 (no result can name the eIM)."""
        part = signed_parts.euicc_package_signed(command)
        fields = {c.tag: c for c in asn1.parse_single(part.data).children()}
        try:
            eim_id = fields[b"\x80"].value.decode("utf-8")
        except (KeyError, UnicodeDecodeError):
            raise MalformedRequest("euiccPackageSigned without a readable eimId") from None
        if not 1 <= len(eim_id) <= 128:
            raise MalformedRequest("eimId must be 1..128 characters")
        tid_tlv = fields.get(b"\x82")
        tid = tid_tlv.value if tid_tlv is not None and 1 <= len(tid_tlv.value) <= 16 else None
        state = self.isdr.state
        eim = state.eim(eim_id)
        if eim is None:
            log.info("LoadEuiccPackage: unknown eIM %r", eim_id)
            return self._unsigned(eim_id, tid, None)
        token = eim.association_token
        if not self._verify(eim, signed_parts.eim_signature_input(part.data, token), part.signature):
            log.info("LoadEuiccPackage: eimSignature of %r does not verify", eim_id)
            return self._unsigned(eim_id, tid, token)
        counter_tlv = fields.get(b"\x81")
        counter = _int(counter_tlv.value) if counter_tlv is not None and 1 <= len(counter_tlv.value) <= 8 else 0
        if len(part.data) > MAX_PACKAGE_BYTES:
            return self._signed_error(eim_id, counter, tid, SIZE_OVERFLOW, token)
        try:
            request = _decode_request("EuiccPackageRequest", command)
        except MalformedRequest as exc:
            log.info("LoadEuiccPackage: %s", exc)
            return self._signed_error(eim_id, counter, tid, UNDEFINED_ERROR, token)
        signed = request["euiccPackageSigned"]
        counter = signed["counterValue"]
        if tid != signed.get("eimTransactionId"):
            return self._signed_error(eim_id, counter, tid, UNDEFINED_ERROR, token)
        if signed["eidValue"] != bytes.fromhex(state.eid):
            return self._signed_error(eim_id, counter, tid, INVALID_EID, token)
        if not 0 < counter <= COUNTER_MAX:
            return self._signed_error(eim_id, counter, tid, COUNTER_VALUE_OUT_OF_RANGE, token)
        if counter <= eim.counter_value:
            return self._signed_error(eim_id, counter, tid, REPLAY_ERROR, token)

        try:
            return self._execute(eim_id, counter, tid, token, signed["euiccPackage"])
        except asn1.Asn1Error as exc:
            log.warning("LoadEuiccPackage: result cannot be encoded (%s); nothing executed", exc)
            return self._signed_error(eim_id, counter, tid, UNDEFINED_ERROR, token)

    def _execute(self, eim_id: str, counter: int, tid: bytes | None, token: int | None,
                 package: tuple[str, Any]) -> bytes:
        """Run a verified package on one draft, sign and store its result, commit, then REFRESH."""
        draft = self.isdr._draft()
        draft.eim(eim_id).counter_value = counter
        before = draft.enabled_profile()
        before_iccid = before.iccid if before else None
        run = _Run()
        kind, items = package
        step = self._psmo if kind == "psmoList" else self._eco
        if kind not in ("psmoList", "ecoList"):
            items = [(None, None)]
        for item in items:
            if item == (None, None):
                self._add(run, ("processingTerminated", UNKNOWN_OR_DAMAGED_COMMAND))
                break
            try:
                result = step(draft, item, run)
            except (ValueError, KeyError) as exc:
                log.info("LoadEuiccPackage: damaged %s: %s", item[0], exc)
                result = ("processingTerminated", UNKNOWN_OR_DAMAGED_COMMAND)
            if not self._add(run, result):
                break
        seq = allocate_seq(draft)
        data: dict[str, Any] = {"eimId": eim_id, "counterValue": counter, "seqNumber": seq,
                                "euiccResult": run.results}
        if tid is not None:
            data["eimTransactionId"] = tid
        der = sign_result(self._key, data, token)
        draft.package_results.append(PackageResult(seq_number=seq, eim_id=eim_id, der=der))
        if run.rollback is not None:
            draft.rollback = RollbackContext(previous_iccid=run.rollback[0], enabled_iccid=run.rollback[1],
                                             seq_number=seq,
                                             result_data=signed_parts.euicc_package_result_signed(der).data,
                                             association_token=token)
        elif run.rollback_cleared:
            draft.rollback = None
        self.isdr._commit(draft)
        after = draft.enabled_profile()
        after_iccid = after.iccid if after else None
        if after_iccid != before_iccid:
            self.isdr._just_disabled = before_iccid
            self.isdr._refresh(RefreshRequest("euicc-package", after_iccid, before_iccid))
        return der

    def _verify(self, eim: EimConfig, data: bytes, signature: bytes) -> bool:
        try:
            if eim.eim_public_key:
                key = serialization.load_der_public_key(eim.eim_public_key)
            elif eim.eim_certificate:
                key = x509.load_der_x509_certificate(eim.eim_certificate).public_key()
            else:
                return False
            return verify_plain(key, data, signature)
        except (ValueError, TypeError) as exc:
            log.warning("eIM %r: unusable stored key (%s)", eim.eim_id, exc)
            return False

    @staticmethod
    def _unsigned(eim_id: str, tid: bytes | None, token: int | None) -> bytes:
        value: dict[str, Any] = {"eimId": eim_id}
        if tid is not None:
            value["eimTransactionId"] = tid
        if token is not None:
            value["associationToken"] = token
        return asn1.encode("EuiccPackageResult", ("euiccPackageErrorUnsigned", value))

    def _signed_error(self, eim_id: str, counter: int, tid: bytes | None, code: int, token: int | None) -> bytes:
        """EuiccPackageErrorSigned: euiccSignEPE over euiccPackageErrorDataSigned || associationToken DO."""
        data: dict[str, Any] = {"eimId": eim_id, "counterValue": counter, "euiccPackageErrorCode": code}
        if tid is not None:
            data["eimTransactionId"] = tid
        data_der = asn1.encode("EuiccPackageErrorDataSigned", data)
        signature = sign_plain(self._key, signed_parts.euicc_result_signature_input(data_der, token))
        return asn1.encode("EuiccPackageResult", ("euiccPackageErrorSigned", {
            "euiccPackageErrorDataSigned": data, "euiccSignEPE": signature}))

    @staticmethod
    def _add(run: _Run, result: tuple[str, Any]) -> bool:
        """Append ``result``; False when the package must stop here (failure, termination, overflow)."""
        size = len(asn1.encode("EuiccResultData", result, check_constraints=False))
        if run.size + size > MAX_RESULT_BYTES:
            run.results.append(("processingTerminated", RESULT_SIZE_OVERFLOW))
            return False
        run.size += size
        run.results.append(result)
        name, value = result
        if name == "processingTerminated":
            return False
        if isinstance(value, int):
            return value in SUCCESS_CODES.get(name, (OK,))
        if name == "addEimResult":
            return value[0] == "associationToken" or value[1] == OK
        if name == "listProfileInfoResult":
            return value[0] == "profileInfoListOk"
        return True

    # ------------------------------------------------------------------------------------------
    # PSMOs (SGP.32 v1.2 §2.11.1.1, §3.3)

    def _profile(self, draft: EuiccState, value: dict) -> Profile | None:
        return draft.profile(decode_iccid(value["iccid"]))

    def _psmo(self, draft: EuiccState, psmo: tuple[str, Any], run: _Run) -> tuple[str, Any]:
        name, value = psmo
        if name == "enable":
            return "enableResult", self._enable(draft, value, run)
        if name == "disable":
            return "disableResult", self._disable(draft, value, run)
        if name == "delete":
            return "deleteResult", self._delete(draft, value)
        if name == "listProfileInfo":
            return "listProfileInfoResult", self.isdr.get_profiles_info(value, state=draft)
        if name == "getRAT":
            return "getRATResult", self.isdr.get_rat({}, state=draft)["rat"]
        if name == "configureImmediateEnable":
            draft.immediate_enable = "immediateEnableFlag" in value
            draft.immediate_enable_smdp_oid = value.get("defaultSmdpOid", "")
            draft.default_smdp_for_immediate = value.get("defaultSmdpAddress", "")
            return "configureImmediateEnableResult", OK
        if name == "setFallbackAttribute":
            return "setFallbackAttributeResult", self._set_fallback(draft, value)
        if name == "unsetFallbackAttribute":
            holder = draft.fallback_profile()
            if holder is None:
                return "unsetFallbackAttributeResult", NO_FALLBACK_ATTRIBUTE
            if holder.state == "enabled":
                return "unsetFallbackAttributeResult", FALLBACK_PROFILE_ENABLED
            holder.fallback_attribute = False
            return "unsetFallbackAttributeResult", OK
        if name == "setDefaultDpAddress":
            draft.default_dp_address = value["defaultDpAddress"]
            return "setDefaultDpAddressResult", {"setDefaultDpAddressResult": OK}
        return "processingTerminated", UNKNOWN_OR_DAMAGED_COMMAND

    def _enable(self, draft: EuiccState, value: dict, run: _Run) -> int:
        target = self._profile(draft, value)
        if target is None:
            return ICCID_OR_AID_NOT_FOUND
        if target.state == "enabled":
            return PROFILE_NOT_IN_DISABLED_STATE
        current = draft.enabled_profile()
        if current is not None and "ppr1" in current.policy_rules:
            return DISALLOWED_BY_POLICY
        rollback = "rollbackFlag" in value
        if rollback and current is None:
            return ROLLBACK_NOT_AVAILABLE
        if self.isdr.cat_busy:
            return CAT_BUSY
        switch(draft, self._key, current, target)
        run.rollback = (current.iccid, target.iccid) if rollback else None
        run.rollback_cleared = True
        return OK

    def _disable(self, draft: EuiccState, value: dict, run: _Run) -> int:
        target = self._profile(draft, value)
        if target is None:
            return ICCID_OR_AID_NOT_FOUND
        if target.state != "enabled":
            return PROFILE_NOT_IN_ENABLED_STATE
        if "ppr1" in target.policy_rules:
            return DISALLOWED_BY_POLICY
        if self.isdr.cat_busy:
            return CAT_BUSY
        switch(draft, self._key, target, None)
        run.rollback = None
        run.rollback_cleared = True
        return OK

    def _delete(self, draft: EuiccState, value: dict) -> int:
        target = self._profile(draft, value)
        if target is None:
            return ICCID_OR_AID_NOT_FOUND
        if target.state == "enabled":
            return PROFILE_NOT_IN_DISABLED_STATE
        if draft.fallback_active_from == target.iccid:
            return RETURN_FALLBACK_PROFILE
        if draft.rollback is not None and draft.rollback.previous_iccid == target.iccid:
            return ROLLBACK_NOT_AVAILABLE
        if "ppr2" in target.policy_rules or target.fallback_attribute:
            return DISALLOWED_BY_POLICY
        notifications.create(draft, self._key, target, "delete")
        draft.profiles.remove(target)
        return OK

    def _set_fallback(self, draft: EuiccState, value: dict) -> int:
        target = self._profile(draft, value)
        if target is None:
            return ICCID_OR_AID_NOT_FOUND
        if target.fallback_allowed is False:
            return FALLBACK_NOT_ALLOWED
        holder = draft.fallback_profile()
        if holder is not None and holder is not target and holder.state == "enabled":
            return FALLBACK_PROFILE_ENABLED
        if holder is not None:
            holder.fallback_attribute = False
        target.fallback_attribute = True
        return OK

    # ------------------------------------------------------------------------------------------
    # eCOs (SGP.32 v1.2 §2.11.1.2)

    def _eco(self, draft: EuiccState, eco: tuple[str, Any], run: _Run) -> tuple[str, Any]:
        name, value = eco
        if name == "addEim":
            parsed = self.isdr._parse_eim(value)
            if isinstance(parsed, int):
                return "addEimResult", ("addEimResultCode", parsed)
            if draft.eim(parsed.eim_id) is not None:
                return "addEimResult", ("addEimResultCode", ASSOCIATED_EIM_ALREADY_EXISTS)
            if len(draft.eims) >= MAX_EIMS:
                return "addEimResult", ("addEimResultCode", INSUFFICIENT_MEMORY)
            draft.eims.append(parsed)
            if parsed.association_token is not None:
                parsed.association_token = draft.next_association_token
                draft.next_association_token += 1
                return "addEimResult", ("associationToken", parsed.association_token)
            return "addEimResult", ("addEimResultCode", OK)
        if name == "deleteEim":
            target = draft.eim(value["eimId"])
            if target is None:
                return "deleteEimResult", EIM_NOT_FOUND
            draft.eims.remove(target)
            return "deleteEimResult", OK if draft.eims else LAST_EIM_DELETED
        if name == "updateEim":
            return "updateEimResult", self._update_eim(draft, value)
        if name == "listEim":
            return "listEimResult", ("eimIdList", [
                {"eimId": e.eim_id, **({"eimIdType": e.eim_id_type} if e.eim_id_type is not None else {})}
                for e in draft.eims])
        return "processingTerminated", UNKNOWN_OR_DAMAGED_COMMAND

    def _update_eim(self, draft: EuiccState, value: dict) -> int:
        """updateEim: the fields present replace the stored ones; associationToken is kept (UpdateEimResult
        has no room for a new one)."""
        target = draft.eim(value["eimId"])
        if target is None:
            return EIM_NOT_FOUND
        merged = {**self.isdr.eim_configuration(target), **value}
        merged.pop("associationToken", None)
        parsed = self.isdr._parse_eim(merged)
        if isinstance(parsed, int):
            return parsed
        parsed.association_token = target.association_token
        draft.eims[draft.eims.index(target)] = parsed
        return OK

    # ------------------------------------------------------------------------------------------
    # ES10b functions (SGP.32 v1.2 §5.9)

    def _refresh_switch(self, draft: EuiccState, reason: str, current: Profile | None, target: Profile | None,
                        refresh: bool) -> None:
        """Commit ``draft`` and then, when ``refresh``, request the REFRESH."""
        self.isdr._commit(draft)
        self.isdr._just_disabled = current.iccid if current else None
        if refresh:
            self.isdr._refresh(RefreshRequest(reason, target.iccid if target else None,
                                              current.iccid if current else None))

    def profile_rollback(self, request: dict) -> dict:
        """ProfileRollback BF58: back to the profile the last enable-with-rollbackFlag replaced;
        rollbackNotAllowed(1) when there is none, catBusy(5), commandError(7) when PPR1 forbids it."""
        refresh = request["refreshFlag"]
        draft = self.isdr._draft()
        context = draft.rollback
        if context is None:
            return {"cmdResult": ROLLBACK_NOT_ALLOWED}
        current = draft.enabled_profile()
        previous = draft.profile(context.previous_iccid)
        if current is None or current.iccid != context.enabled_iccid or previous is None:
            return {"cmdResult": ROLLBACK_NOT_ALLOWED}
        if "ppr1" in current.policy_rules:
            return {"cmdResult": COMMAND_ERROR}
        if refresh and self.isdr.cat_busy:
            return {"cmdResult": CAT_BUSY}
        switch(draft, self._key, current, previous)
        data = asn1.decode("EuiccPackageResultDataSigned", context.result_data)
        data["seqNumber"] = allocate_seq(draft)
        data["euiccResult"].append(("rollbackResult", OK))
        der = sign_result(self._key, data, context.association_token)
        draft.package_results = [r for r in draft.package_results if r.seq_number != context.seq_number]
        draft.package_results.append(PackageResult(seq_number=data["seqNumber"], eim_id=data["eimId"], der=der))
        draft.rollback = None
        self._refresh_switch(draft, "rollback", current, previous, refresh)
        return {"cmdResult": OK, "eUICCPackageResult": asn1.decode("EuiccPackageResult", der)}

    def configure_immediate_enabling(self, request: dict) -> dict:
        """ConfigureImmediateProfileEnabling BF59: immediateEnableFlag, defaultSmdpOid, defaultSmdpAddress;
        associatedEimAlreadyExists(2) while an eIM is associated."""
        if self.isdr.state.eims:
            return {"configImmediateEnableResult": ASSOCIATED_EIM_ALREADY_EXISTS}
        draft = self.isdr._draft()
        draft.immediate_enable = "immediateEnableFlag" in request
        draft.immediate_enable_smdp_oid = request.get("defaultSmdpOid", "")
        draft.default_smdp_for_immediate = request.get("defaultSmdpAddress", "")
        self.isdr._commit(draft)
        return {"configImmediateEnableResult": OK}

    def immediate_enable(self, request: dict) -> dict:
        """ImmediateEnable BF5A: enable the profile installed last in this session.
        immediateEnableNotAvailable(1) unless configured (and from the configured default SM-DP+),
        noSessionContext(4) without such a profile, catBusy(5), undefinedError when PPR1 forbids it."""
        refresh = request["refreshFlag"]
        if not self.isdr.state.immediate_enable:
            return {"immediateEnableResult": IMMEDIATE_ENABLE_NOT_AVAILABLE}
        draft = self.isdr._draft()
        iccid = self.isdr.session.installed_iccid
        target = draft.profile(iccid) if iccid else None
        if target is None or target.state == "enabled":
            return {"immediateEnableResult": NO_SESSION_CONTEXT}
        wanted = draft.default_smdp_for_immediate
        if wanted and wanted.lower() != target.smdp_address.lower():
            return {"immediateEnableResult": IMMEDIATE_ENABLE_NOT_AVAILABLE}
        current = draft.enabled_profile()
        if current is not None and "ppr1" in current.policy_rules:
            return {"immediateEnableResult": UNDEFINED_ERROR}
        if refresh and self.isdr.cat_busy:
            return {"immediateEnableResult": CAT_BUSY}
        switch(draft, self._key, current, target)
        draft.rollback = None
        self._refresh_switch(draft, "immediate-enable", current, target, refresh)
        self.isdr.session.installed_iccid = None
        return {"immediateEnableResult": OK}

    def execute_fallback(self, request: dict) -> dict:
        """ExecuteFallbackMechanism BF5D: enable the profile with the Fallback Attribute.
        profileNotInDisabledState(2) when it is enabled, catBusy(5), fallbackNotAvailable(6) without one."""
        refresh = request["refreshFlag"]
        draft = self.isdr._draft()
        fallback = draft.fallback_profile()
        if fallback is None:
            return {"executeFallbackMechanismResult": FALLBACK_NOT_AVAILABLE}
        if fallback.state == "enabled":
            return {"executeFallbackMechanismResult": PROFILE_NOT_IN_DISABLED_STATE}
        if refresh and self.isdr.cat_busy:
            return {"executeFallbackMechanismResult": CAT_BUSY}
        current = draft.enabled_profile()
        switch(draft, self._key, current, fallback)
        draft.fallback_active_from = current.iccid if current else ""
        draft.rollback = None
        self._refresh_switch(draft, "fallback", current, fallback, refresh)
        return {"executeFallbackMechanismResult": OK}

    def return_from_fallback(self, request: dict) -> dict:
        """ReturnFromFallback BF5E: re-enable the profile ExecuteFallbackMechanism replaced.
        fallbackNotAvailable(6) when not in fallback, commandError(7) when that profile is gone, catBusy(5)."""
        refresh = request["refreshFlag"]
        draft = self.isdr._draft()
        fallback = draft.fallback_profile()
        if not draft.fallback_active_from or fallback is None or fallback.state != "enabled":
            return {"returnFromFallbackResult": FALLBACK_NOT_AVAILABLE}
        target = draft.profile(draft.fallback_active_from)
        if target is None:
            return {"returnFromFallbackResult": COMMAND_ERROR}
        if refresh and self.isdr.cat_busy:
            return {"returnFromFallbackResult": CAT_BUSY}
        switch(draft, self._key, fallback, target)
        self._refresh_switch(draft, "return-from-fallback", fallback, target, refresh)
        return {"returnFromFallbackResult": OK}
