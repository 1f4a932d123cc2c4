"""Typed results of the ES10 functions (SGP.22 v2.5 §5.7, SGP.32 v1.2 §5.9).

Frozen dataclasses built from the values asn1tools decodes (``from_asn1``); every one has ``to_dict()``
giving a JSON-able dict (bytes as uppercase hex).  Names of enumerations and flags are the ones of the
ASN.1 modules (``profileState`` ``enabled``, ``NotificationEvent`` ``notificationEnable`` ...).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ...harness.asn1 import TlvError, iter_tlvs, parse_single
from ...harness.asn1 import decode as asn1_decode
from .decode import asn1_names, tag_int

# --- value codings ----------------------------------------------------------------------------------


def iccid_from_bcd(data: bytes) -> str:
    """ICCID digits from its EF ICCID coding (SGP.22 §2.4.4 Iccid, ETSI TS 102 221 §13.2): BCD with the
    nibbles of each byte swapped, 'F' padding stripped."""
    digits = []
    for b in data:
        digits.append("%X" % (b & 0x0F))
        digits.append("%X" % (b >> 4))
    return "".join(digits).rstrip("F")


def iccid_to_bcd(iccid: str) -> bytes:
    """EF ICCID coding of an ICCID (18-20 digits): nibble-swapped BCD, padded with 'F' to 10 bytes."""
    iccid = iccid.strip().upper()
    if not iccid or len(iccid) > 20 or any(c not in "0123456789ABCDEF" for c in iccid):
        raise ValueError(f"ICCID must be up to 20 digits, got {iccid!r}")
    padded = iccid.ljust(20, "F")
    return bytes(int(padded[i + 1] + padded[i], 16) for i in range(0, 20, 2))


def version_str(value: bytes | None) -> str | None:
    """VersionType (SGP.22 §2.4 / Annex H: major, minor, revision, one byte each) as ``"x.y.z"``."""
    if value is None:
        return None
    return ".".join(str(b) for b in value)


def _hex(value: bytes | None) -> str | None:
    return None if value is None else bytes(value).hex().upper()


def _jsonable(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).hex().upper()
    if dataclasses.is_dataclass(value):
        return value.to_dict()
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


class _Record:
    def to_dict(self) -> dict:
        return {f.name: _jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}


def _names(value, *path: str) -> tuple[str, ...]:
    return asn1_names().bit_names(value, *path) if value is not None else ()


# --- EUICCInfo1 / EUICCInfo2 --------------------------------------------------------------------------


@dataclass(frozen=True)
class EuiccInfo1(_Record):
    """EUICCInfo1 (SGP.22 §5.7.8): SVN and the CI public key identifiers (hex)."""

    svn: str
    ci_pkids_verification: tuple[str, ...]
    ci_pkids_signing: tuple[str, ...]

    @classmethod
    def from_asn1(cls, v: dict) -> "EuiccInfo1":
        return cls(
            svn=version_str(v["svn"]),
            ci_pkids_verification=tuple(_hex(k) for k in v["euiccCiPKIdListForVerification"]),
            ci_pkids_signing=tuple(_hex(k) for k in v["euiccCiPKIdListForSigning"]),
        )


@dataclass(frozen=True)
class ExtCardResource(_Record):
    """Extended Card Resource Information (ETSI TS 102 226 §8.2.1.3.2.1): '81' installed applications,
    '82' free non-volatile memory, '83' free volatile memory (bytes)."""

    installed_applications: int | None
    free_nvm: int | None
    free_volatile: int | None

    @classmethod
    def parse(cls, data: bytes) -> "ExtCardResource":
        found: dict[int, int] = {}
        try:
            for tlv in iter_tlvs(data):
                found[tag_int(tlv)] = int.from_bytes(tlv.value, "big")
        except TlvError:
            pass
        return cls(found.get(0x81), found.get(0x82), found.get(0x83))


@dataclass(frozen=True)
class IotSpecificInfo(_Record):
    """IoTSpecificInfo of EUICCInfo2 (SGP.32 §5.9): SGP.32 versions, eCall and fallback support."""

    iot_versions: tuple[str, ...]
    ecall_supported: bool
    fallback_supported: bool


@dataclass(frozen=True)
class EuiccInfo2(_Record):
    """EUICCInfo2 (SGP.22 §5.7.8 with the SGP.32 §5.9 additions ipaMode and iotSpecificInfo)."""

    profile_version: str
    svn: str
    firmware_version: str
    ext_card_resource: ExtCardResource
    uicc_capability: tuple[str, ...]
    ts102241_version: str | None
    globalplatform_version: str | None
    rsp_capability: tuple[str, ...]
    ci_pkids_verification: tuple[str, ...]
    ci_pkids_signing: tuple[str, ...]
    euicc_category: str | None
    forbidden_profile_policy_rules: tuple[str, ...]
    pp_version: str
    sas_accreditation_number: str
    certification_data: dict | None
    tre_properties: tuple[str, ...]
    tre_product_reference: str | None
    additional_profile_versions: tuple[str, ...]
    ipa_mode: str | None
    highest_svn: str | None
    iot_specific_info: IotSpecificInfo | None
    raw: bytes = dataclasses.field(default=b"", repr=False, compare=False)

    @property
    def free_nvm(self) -> int | None:
        return self.ext_card_resource.free_nvm

    @property
    def is_sgp32(self) -> bool:
        """True when the eUICC reports SGP.32 support (iotSpecificInfo present)."""
        return self.iot_specific_info is not None

    @classmethod
    def from_asn1(cls, v: dict, raw: bytes = b"") -> "EuiccInfo2":
        t = "SGP32-EUICCInfo2"
        names = asn1_names()
        iot = v.get("iotSpecificInfo")
        cdo = v.get("certificationDataObject")
        return cls(
            profile_version=version_str(v["profileVersion"]),
            svn=version_str(v["svn"]),
            firmware_version=version_str(v["euiccFirmwareVer"]),
            ext_card_resource=ExtCardResource.parse(v["extCardResource"]),
            uicc_capability=_names(v.get("uiccCapability"), t, "uiccCapability"),
            ts102241_version=version_str(v.get("ts102241Version")),
            globalplatform_version=version_str(v.get("globalplatformVersion")),
            rsp_capability=_names(v.get("rspCapability"), t, "rspCapability"),
            ci_pkids_verification=tuple(_hex(k) for k in v["euiccCiPKIdListForVerification"]),
            ci_pkids_signing=tuple(_hex(k) for k in v["euiccCiPKIdListForSigning"]),
            euicc_category=(names.number_name(v["euiccCategory"], t, "euiccCategory")
                            if v.get("euiccCategory") is not None else None),
            forbidden_profile_policy_rules=_names(v.get("forbiddenProfilePolicyRules"), t,
                                                  "forbiddenProfilePolicyRules"),
            pp_version=version_str(v["ppVersion"]),
            sas_accreditation_number=v["sasAcreditationNumber"],
            certification_data=({"platform_label": cdo["platformLabel"],
                                 "discovery_base_url": cdo["discoveryBaseURL"]} if cdo else None),
            tre_properties=_names(v.get("treProperties"), t, "treProperties"),
            tre_product_reference=v.get("treProductReference"),
            additional_profile_versions=tuple(version_str(x) for x in
                                              v.get("additionalEuiccProfilePackageVersions") or ()),
            ipa_mode=(names.number_name(v["ipaMode"], t, "ipaMode") if v.get("ipaMode") is not None else None),
            highest_svn=version_str(v.get("highestSvn")),
            iot_specific_info=(IotSpecificInfo(
                iot_versions=tuple(version_str(x) for x in iot.get("iotVersion", ())),
                ecall_supported="ecallSupported" in iot,
                fallback_supported="fallbackSupported" in iot,
            ) if iot is not None else None),
            raw=raw,
        )


# --- profiles -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OperatorId(_Record):
    """OperatorId (SGP.22 §2.4.4): MCC/MNC (3GPP TS 24.008 coding, hex) and optional GID1/GID2."""

    mcc_mnc: str
    gid1: str | None = None
    gid2: str | None = None

    @property
    def plmn(self) -> str:
        """``"MCC-MNC"`` decoded from the 3-byte TS 24.008 §10.5.1.3 coding."""
        d = bytes.fromhex(self.mcc_mnc)
        n = [f"{x:X}" for b in d for x in (b & 0x0F, b >> 4)]
        mcc = n[0] + n[1] + n[2]
        mnc = n[4] + n[5] + ("" if n[3] == "F" else n[3])
        return f"{mcc}-{mnc}"

    @classmethod
    def from_asn1(cls, v: dict) -> "OperatorId":
        return cls(_hex(v["mccMnc"]), _hex(v.get("gid1")), _hex(v.get("gid2")))


@dataclass(frozen=True)
class NotificationConfig(_Record):
    """NotificationConfigurationInformation (SGP.22 §2.4.4): events that notify ``address``."""

    events: tuple[str, ...]
    address: str


@dataclass(frozen=True)
class ProfileInfo(_Record):
    """ProfileInfo (SGP.22 §5.7.15; SGP.32 §5.9 adds ecallIndication, fallbackAttribute, fallbackAllowed).

    ``iccid`` is the digit string (BCD nibbles swapped back, 'F' padding stripped).  ``fallback_attribute``
    is False when absent (DER omits the DEFAULT FALSE value).
    """

    iccid: str | None
    isdp_aid: str | None
    state: str | None
    nickname: str | None
    service_provider_name: str | None
    profile_name: str | None
    profile_class: str | None
    icon_type: str | None
    notification_config: tuple[NotificationConfig, ...]
    profile_owner: OperatorId | None
    profile_policy_rules: tuple[str, ...]
    ecall_indication: bool | None
    fallback_attribute: bool
    fallback_allowed: bool | None
    icon: bytes = dataclasses.field(default=b"", repr=False)

    @property
    def enabled(self) -> bool:
        return self.state == "enabled"

    @classmethod
    def from_asn1(cls, v: dict) -> "ProfileInfo":
        t = "SGP32-ProfileInfo"
        names = asn1_names()
        return cls(
            iccid=iccid_from_bcd(v["iccid"]) if "iccid" in v else None,
            isdp_aid=_hex(v.get("isdpAid")),
            state=names.number_name(v["profileState"], t, "profileState") if "profileState" in v else None,
            nickname=v.get("profileNickname"),
            service_provider_name=v.get("serviceProviderName"),
            profile_name=v.get("profileName"),
            profile_class=names.number_name(v["profileClass"], t, "profileClass") if "profileClass" in v else None,
            icon_type=names.number_name(v["iconType"], t, "iconType") if "iconType" in v else None,
            notification_config=tuple(
                NotificationConfig(_names(n["profileManagementOperation"], "NotificationEvent"),
                                   n["notificationAddress"])
                for n in v.get("notificationConfigurationInfo") or ()
            ),
            profile_owner=OperatorId.from_asn1(v["profileOwner"]) if "profileOwner" in v else None,
            profile_policy_rules=_names(v.get("profilePolicyRules"), "PprIds"),
            ecall_indication=v.get("ecallIndication"),
            fallback_attribute=bool(v.get("fallbackAttribute", False)),
            fallback_allowed=v.get("fallbackAllowed"),
            icon=bytes(v.get("icon", b"")),
        )


# --- notifications ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NotificationMetadata(_Record):
    """NotificationMetadata (SGP.22 §5.7.9): sequence number, event, notification address, ICCID."""

    seq_number: int
    event: str
    address: str
    iccid: str | None

    @classmethod
    def from_asn1(cls, v: dict) -> "NotificationMetadata":
        events = _names(v["profileManagementOperation"], "NotificationEvent")
        return cls(
            seq_number=v["seqNumber"],
            event=",".join(events) or "none",
            address=v["notificationAddress"],
            iccid=iccid_from_bcd(v["iccid"]) if "iccid" in v else None,
        )


@dataclass(frozen=True)
class PendingNotification(_Record):
    """One element of RetrieveNotificationsList (SGP.22 §5.7.10, SGP.32 §5.9): its metadata and the exact
    DER as the eUICC returned it (signed: forward ``der`` unchanged).

    ``kind`` is the CHOICE alternative: profileInstallationResult, otherSignedNotification, the SGP.32
    compact forms, or euiccPackageResult for an entry of euiccPackageResultList.  ``event``/``address``
    are None where the form carries no metadata (compact installation result, package result).
    """

    kind: str
    seq_number: int | None
    event: str | None
    address: str | None
    iccid: str | None
    der: bytes = dataclasses.field(repr=False)

    @classmethod
    def from_asn1(cls, choice: tuple[str, Any], der: bytes) -> "PendingNotification":
        kind, v = choice
        meta: dict | None = None
        seq = None
        if kind == "profileInstallationResult":
            meta = v["profileInstallationResultData"]["notificationMetadata"]
        elif kind in ("otherSignedNotification", "compactOtherSignedNotification"):
            meta = v["tbsOtherNotification"]
        elif kind == "compactProfileInstallationResult":
            seq = v["compactProfileInstallationResultData"]["seqNumber"]
        elif kind == "euiccPackageResult":
            inner_kind, inner = v
            if inner_kind == "euiccPackageResultSigned":
                seq = inner["euiccPackageResultDataSigned"]["seqNumber"]
        if meta is not None:
            m = NotificationMetadata.from_asn1(meta)
            return cls(kind, m.seq_number, m.event, m.address, m.iccid, der)
        return cls(kind, seq, None, None, None, der)


# --- eIM configuration, addresses, RAT, certificates ---------------------------------------------------


@dataclass(frozen=True)
class EimConfiguration(_Record):
    """EimConfigurationData (SGP.32 §2.11.1, ES10b.GetEimConfigurationData §5.9).

    Public key / certificate fields hold the DER of the SubjectPublicKeyInfo or Certificate; their
    ``*_kind`` tells which CHOICE alternative the eUICC returned.
    """

    eim_id: str
    eim_fqdn: str | None
    eim_id_type: str | None
    counter_value: int | None
    association_token: int | None
    supported_protocols: tuple[str, ...]
    euicc_ci_pkid: str | None
    indirect_profile_download: bool
    eim_public_key_kind: str | None = None
    eim_public_key_data: bytes = dataclasses.field(default=b"", repr=False)
    trusted_tls_kind: str | None = None
    trusted_tls_data: bytes = dataclasses.field(default=b"", repr=False)

    @classmethod
    def from_asn1(cls, v: dict, raw: dict[int, bytes] | None = None) -> "EimConfiguration":
        """``raw`` maps context tags 0xA5/0xA6 to the exact inner DER (from the TLV walk), if known."""
        t = "EimConfigurationData"
        raw = raw or {}
        pk = v.get("eimPublicKeyData")
        tls = v.get("trustedPublicKeyDataTls")
        return cls(
            eim_id=v["eimId"],
            eim_fqdn=v.get("eimFqdn"),
            eim_id_type=(asn1_names().number_name(v["eimIdType"], t, "eimIdType")
                         if v.get("eimIdType") is not None else None),
            counter_value=v.get("counterValue"),
            association_token=v.get("associationToken"),
            supported_protocols=_names(v.get("eimSupportedProtocol"), "EimSupportedProtocol"),
            euicc_ci_pkid=_hex(v.get("euiccCiPKId")),
            indirect_profile_download="indirectProfileDownload" in v,
            eim_public_key_kind=pk[0] if pk else None,
            eim_public_key_data=raw.get(0xA5, b""),
            trusted_tls_kind=tls[0] if tls else None,
            trusted_tls_data=raw.get(0xA6, b""),
        )

    def to_asn1(self) -> dict:
        """This configuration as an asn1tools EimConfigurationData value (for AddInitialEim, eCOs)."""
        t = "EimConfigurationData"
        names = asn1_names()
        v: dict[str, Any] = {"eimId": self.eim_id}
        if self.eim_fqdn is not None:
            v["eimFqdn"] = self.eim_fqdn
        if self.eim_id_type is not None:
            by_name = {name: number for number, name in names.numbers(t, "eimIdType").items()}
            if self.eim_id_type not in by_name:
                raise ValueError(f"unknown eimIdType {self.eim_id_type!r} (known: {', '.join(by_name)})")
            v["eimIdType"] = by_name[self.eim_id_type]
        if self.counter_value is not None:
            v["counterValue"] = self.counter_value
        if self.association_token is not None:
            v["associationToken"] = self.association_token
        for member, kind, data in (("eimPublicKeyData", self.eim_public_key_kind, self.eim_public_key_data),
                                   ("trustedPublicKeyDataTls", self.trusted_tls_kind, self.trusted_tls_data)):
            if kind is not None:
                inner = "Certificate" if kind in ("eimCertificate", "trustedCertificateTls") else "SubjectPublicKeyInfo"
                v[member] = (kind, asn1_decode(inner, data))
        if self.supported_protocols:
            v["eimSupportedProtocol"] = names.bitstring(self.supported_protocols, "EimSupportedProtocol")
        if self.euicc_ci_pkid is not None:
            v["euiccCiPKId"] = bytes.fromhex(self.euicc_ci_pkid)
        if self.indirect_profile_download:
            v["indirectProfileDownload"] = None
        return v


@dataclass(frozen=True)
class ConfiguredAddresses(_Record):
    """EuiccConfiguredAddressesResponse (SGP.22 §5.7.3): default SM-DP+ and root SM-DS addresses."""

    default_dp_address: str | None
    root_ds_address: str


@dataclass(frozen=True)
class RatRule(_Record):
    """ProfilePolicyAuthorisationRule (SGP.22 §2.9.2.2): PPRs, allowed operators, consent flag."""

    ppr_ids: tuple[str, ...]
    allowed_operators: tuple[OperatorId, ...]
    consent_required: bool

    @classmethod
    def from_asn1(cls, v: dict) -> "RatRule":
        return cls(
            ppr_ids=_names(v["pprIds"], "PprIds"),
            allowed_operators=tuple(OperatorId.from_asn1(o) for o in v["allowedOperators"]),
            consent_required="consentRequired" in _names(v["pprFlags"], "ProfilePolicyAuthorisationRule",
                                                         "pprFlags"),
        )


@dataclass(frozen=True)
class Certs(_Record):
    """GetCertsResponse (SGP.32 §5.9): CERT.EUM.ECDSA and CERT.EUICC.ECDSA as exact DER."""

    eum_certificate: bytes = dataclasses.field(repr=False)
    euicc_certificate: bytes = dataclasses.field(repr=False)


@dataclass(frozen=True)
class MemoryResetResult(_Record):
    """eUICCMemoryReset results (SGP.22 §5.7.19 BF34; SGP.32 §5.9 BF64 adds the eIM and immediate-enable
    results).  ``reset_result`` ``nothingToDelete`` is a normal outcome, so results are returned, not raised."""

    reset_result: str
    reset_eim_result: str | None = None
    reset_immediate_enable_config_result: str | None = None

    @property
    def ok(self) -> bool:
        return self.reset_result in ("ok", "nothingToDelete")


@dataclass(frozen=True)
class AddInitialEimResult(_Record):
    """One entry of AddInitialEimResponse.addInitialEimOk (SGP.32 §5.9): ok or the association token."""

    ok: bool
    association_token: int | None = None


_PACKAGE_KINDS = {"euiccPackageResultSigned": "result", "euiccPackageErrorSigned": "error_signed",
                  "euiccPackageErrorUnsigned": "error_unsigned"}


@dataclass(frozen=True)
class EuiccPackageOutcome(_Record):
    """An EuiccPackageResult 'BF51' (SGP.32 v1.2 §2.11.2, §5.9.1), as ES10b.LoadEuiccPackage or
    ProfileRollback returned it.

    ``kind`` is ``result`` (euiccPackageResultSigned), ``error_signed`` or ``error_unsigned``.
    ``results`` are the euiccResult entries as (alternative, decoded value), e.g. ``("enableResult", 0)``;
    :meth:`named_results` gives the result codes their ASN.1 names. ``error`` is the
    EuiccPackageErrorCode name of a signed error. ``signed_data``/``signature`` are the signed part as
    returned and euiccSignEPR/euiccSignEPE (both empty for the unsigned error); the signature covers
    ``signed_data`` followed by the eIM's associationToken DO. ``der`` is the result exactly as the eUICC
    returned it: the IPA forwards it to the eIM byte for byte.
    """

    kind: str
    eim_id: str
    counter_value: int | None
    eim_transaction_id: bytes | None
    seq_number: int | None
    results: tuple[tuple[str, Any], ...]
    error_code: int | None
    error: str | None
    association_token: int | None
    signed_data: bytes = dataclasses.field(repr=False)
    signature: bytes = dataclasses.field(repr=False)
    der: bytes = dataclasses.field(repr=False)

    @classmethod
    def from_der(cls, der: bytes) -> "EuiccPackageOutcome":
        """Decode an EuiccPackageResult; :class:`~sgp32hil.harness.asn1.Asn1Error` or
        :class:`~sgp32hil.harness.asn1.TlvError` when it is not one."""
        from ...harness.asn1 import euicc_package_result_signed

        alternative, value = asn1_decode("EuiccPackageResult", der)
        kind = _PACKAGE_KINDS[alternative]
        if kind == "error_unsigned":
            return cls(kind, value["eimId"], None, value.get("eimTransactionId"), None, (), None, None,
                       value.get("associationToken"), b"", b"", bytes(der))
        part = euicc_package_result_signed(der)
        data = value["euiccPackageResultDataSigned" if kind == "result" else "euiccPackageErrorDataSigned"]
        code = data.get("euiccPackageErrorCode")
        return cls(
            kind=kind,
            eim_id=data["eimId"],
            counter_value=data["counterValue"],
            eim_transaction_id=data.get("eimTransactionId"),
            seq_number=data.get("seqNumber"),
            results=tuple(tuple(r) for r in data.get("euiccResult", [])),
            error_code=code,
            error=None if code is None else asn1_names().number_name(code, "EuiccPackageErrorCode"),
            association_token=None,
            signed_data=part.data,
            signature=part.signature,
            der=bytes(der),
        )

    @property
    def ok(self) -> bool:
        """A signed result whose every entry succeeded (no PSMO/eCO failed or was left out)."""
        return self.kind == "result" and all(
            not isinstance(v, int) or v == 0 or (n, v) == ("deleteEimResult", 2) for n, v in self.results
        ) and not any(n == "processingTerminated" for n, _ in self.results)

    def named_results(self) -> list[tuple[str, Any]]:
        """``results`` with integer result codes replaced by their names (``("enableResult", "ok")``)."""
        names = asn1_names()
        return [(n, names.number_name(v, "EuiccResultData", n) if isinstance(v, int) else v)
                for n, v in self.results]


def certificate_der(container: bytes) -> bytes:
    """The DER of an implicitly tagged ``[n] Certificate`` (or SubjectPublicKeyInfo) TLV, retagged as the
    SEQUENCE it is ('An' -> '30')."""
    tlv = parse_single(container)
    return b"\x30" + tlv.data[tlv.start + len(tlv.tag) : tlv.end]
