"""Factory (as-manufactured) state of a software eUICC.

What an EUM personalises before an IoT eUICC ships (SGP.22 §2.4, SGP.32 v1.2 eUICC architecture):

- an EID inside the EUM's EIN range (SGP.29: 32 digits, ISO/IEC 7064 MOD 97-10 check digits) and its own
  eUICC key pair with CERT.EUICC.ECDSA issued by the EUM (SGP.22 §4.5.2.1), the EUM and CI certificates;
- one enabled bootstrap profile. SGP.32 relies on a pre-installed profile for the device's first
  connectivity to the eIM; class ``provisioning`` profiles are limited to reaching SM-DP+/SM-DS (SGP.22
  §2.9.1) and could not reach an eIM, so the bootstrap profile is ``operational`` and carries the SGP.32
  v1.2 Fallback Attribute, which is what lets the device return to it;
- one eIM configuration (SGP.32 EimConfigurationData) with the eIM's public key and counter 0;
- the Rules Authorisation Table (SGP.22 §2.9.2.2).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization

from ....harness import asn1
from ....harness.pki import Curve, PkiSet, ci_pkid, eid_is_valid, make_eid
from .state import EimConfig, EuiccState, NotificationConfig, Profile, RatOperator, RatRule

EIM_ID_TYPE_OID = 1
EIM_ID_TYPE_FQDN = 2
EIM_ID_TYPE_PROPRIETARY = 3
EIM_RETRIEVE_HTTPS = 0


def luhn_digit(body: str) -> str:
    """Luhn (ISO/IEC 7812-1 Annex B) check digit for a digit string, as used in ICCIDs (ITU-T E.118)."""
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return str((10 - total % 10) % 10)


def luhn_valid(number: str) -> bool:
    return number.isdigit() and len(number) >= 2 and luhn_digit(number[:-1]) == number[-1]


def make_iccid(body: str) -> str:
    """ICCID = ``body`` (starting with the 89 telecom prefix) + Luhn check digit."""
    if not body.isdigit() or not 17 <= len(body) <= 19:
        raise ValueError(f"ICCID body must be 17..19 digits, got {body!r}")
    return body + luhn_digit(body)


def encode_iccid(iccid: str) -> bytes:
    """Iccid (SGP.22 Annex H, coded as EF.ICCID, ETSI TS 102 221 §13.2): 18..20 digits as nibble-swapped
    BCD, padded with 'F' to 10 bytes."""
    if not iccid.isdigit() or not 18 <= len(iccid) <= 20:
        raise ValueError(f"ICCID must be 18..20 digits, got {iccid!r}")
    digits = iccid.ljust(20, "F")
    return bytes(int(digits[i + 1] + digits[i], 16) for i in range(0, 20, 2))


def decode_iccid(value: bytes) -> str:
    """The digits of an Iccid value; ``ValueError`` unless it is 10 bytes of BCD digits and 'F' padding."""
    text = "".join(f"{b & 0x0F:X}{b >> 4:X}" for b in value).rstrip("F")
    if len(value) != 10 or not text.isdigit():
        raise ValueError(f"Iccid {value.hex().upper()} is not 10 bytes of BCD digits")
    return text


def named_bits(bits: Iterable[int]) -> tuple[bytes, int]:
    """asn1tools value of a named-bit BIT STRING with ``bits`` set (DER, X.690 §11.2.2: no trailing zero bits)."""
    bits = set(bits)
    size = max(bits, default=-1) + 1
    data = bytearray((size + 7) // 8)
    for bit in bits:
        data[bit // 8] |= 0x80 >> (bit % 8)
    return bytes(data), size


def bit_numbers(value: tuple[bytes, int]) -> set[int]:
    """The bit numbers set in an asn1tools BIT STRING value."""
    data, size = value
    return {i for i in range(size) if data[i // 8] & (0x80 >> (i % 8))}


def stored_bit_string(type_name: str, value: tuple[bytes, int]) -> bytes:
    """A BIT STRING as the state keeps it (``EimConfig.supported_protocols``): the contents octets of its DER."""
    return asn1.parse_single(asn1.encode(type_name, value)).value


def bit_string_value(contents: bytes) -> tuple[bytes, int]:
    """asn1tools value of stored BIT STRING contents (X.690 §8.6.2: first octet = number of unused bits)."""
    return contents[1:], 8 * (len(contents) - 1) - contents[0]


def plmn_bytes(imsi: str, mnc_digits: int = 2) -> bytes:
    """MCC/MNC of an IMSI coded as in 3GPP TS 24.008 §10.5.1.3 (3 bytes, F-padded 2-digit MNC)."""
    if not imsi.isdigit() or len(imsi) < 5 + (mnc_digits == 3):
        raise ValueError(f"IMSI must be digits with MCC and MNC, got {imsi!r}")
    mcc, mnc = imsi[:3], imsi[3:3 + mnc_digits]
    mnc3 = mnc[2] if len(mnc) == 3 else "F"
    return bytes.fromhex(mcc[1] + mcc[0] + mnc3 + mcc[2] + mnc[1] + mnc[0])


@dataclass(frozen=True)
class BootstrapSpec:
    """The pre-installed bootstrap profile of a factory-fresh software eUICC."""

    iccid: str = make_iccid("890010100000000001")
    imsi: str = "001010000000001"
    apn: str = "sgp32hil"
    name: str = "sgp32-hil bootstrap"
    service_provider: str = "sgp32-hil bootstrap"
    profile_class: str = "operational"
    fallback: bool = True
    notification_address: str | None = None
    policy_rules: tuple[str, ...] = ()


DEFAULT_RAT = (RatRule(pprs=["ppr2"], allowed_operators=[RatOperator(mcc_mnc=b"\xEE\xEE\xEE")]),)


def random_eid(pkiset: PkiSet) -> str:
    """A fresh EID in the first EIN of the EUM (random serial, valid MOD 97-10 check digits)."""
    if not pkiset.eum_eins:
        raise ValueError("the PKI set names no EUM EIN range (pki.yaml eum_eins)")
    prefix = pkiset.eum_eins[0]
    return make_eid(prefix, secrets.randbelow(10 ** (30 - len(prefix))))


def factory_state(
    pkiset: PkiSet,
    *,
    eid: str | None = None,
    curve: Curve | str = "nist",
    eim_fqdn: str = "127.0.0.1:8444",
    eim_id: str = "sgp32hil-eim",
    bootstrap: BootstrapSpec = BootstrapSpec(),
    default_dp_address: str = "",
) -> EuiccState:
    """A new eUICC as it leaves the EUM: fresh EID and eUICC certificate, bootstrap profile, eIM config."""
    curve = Curve.parse(curve)
    if eid is None:
        eid = random_eid(pkiset)
    elif not eid_is_valid(eid):
        raise ValueError(f"invalid EID {eid!r} (32 digits with MOD 97-10 check digits)")
    elif pkiset.eum_eins and not any(eid.startswith(ein) for ein in pkiset.eum_eins):
        raise ValueError(f"EID {eid} is outside the EUM EIN range {list(pkiset.eum_eins)}")
    euicc = pkiset.issue_euicc(eid, curve)
    eum = pkiset.require("EUM", curve)
    ci = pkiset.require("CI", curve)
    state = EuiccState(
        eid=eid,
        euicc_key_pem=euicc.key_pem(),
        euicc_cert=euicc.der,
        eum_cert=eum.der,
        ci_certs=[c.public_bytes(serialization.Encoding.DER) for c in pkiset.trusted_cis()],
        curve=curve.value.lower(),
        default_dp_address=default_dp_address,
        rat=[RatRule(r.pprs[:], [RatOperator(o.mcc_mnc, o.gid1, o.gid2) for o in r.allowed_operators],
                     r.consent_required) for r in DEFAULT_RAT],
    )
    # the bundled SM-DP+'s default address ('smdp serve' listens on 127.0.0.1:8443), as the eIM's is 8444
    address = bootstrap.notification_address or "127.0.0.1:8443"
    state.profiles.append(bootstrap_profile(state, bootstrap, address))
    eim = pkiset.eim(curve)
    if eim is None:
        raise ValueError(f"the PKI set has no eIM {curve.value} credential")
    state.eims.append(EimConfig(
        eim_id=eim_id,
        eim_fqdn=eim_fqdn,
        eim_id_type=EIM_ID_TYPE_PROPRIETARY,
        counter_value=0,
        eim_public_key=eim.public_key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo),
        supported_protocols=stored_bit_string("EimSupportedProtocol", named_bits([EIM_RETRIEVE_HTTPS])),
        euicc_ci_pkid=ci_pkid(ci.certificate),
    ))
    return state


def bootstrap_profile(state: EuiccState, spec: BootstrapSpec, notification_address: str) -> Profile:
    """The enabled, pre-loaded bootstrap profile described by ``spec``."""
    encode_iccid(spec.iccid)
    return Profile(
        iccid=spec.iccid,
        isdp_aid=state.allocate_isdp_aid(),
        state="enabled",
        service_provider_name=spec.service_provider,
        profile_name=spec.name,
        profile_class=spec.profile_class,
        owner_mcc_mnc=plmn_bytes(spec.imsi),
        policy_rules=list(spec.policy_rules),
        notification_config=[NotificationConfig(events=["enable", "disable", "delete"], address=notification_address)],
        fallback_attribute=spec.fallback,
        imsi=spec.imsi,
        apn=spec.apn,
        preloaded=True,
    )
