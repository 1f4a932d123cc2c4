"""``sgp32-hil euicc info``: what an IPAd reads from an eUICC, as JSON-able data and as text.

The calls follow an IPAd's first contact (SGP.32 §3.1 / §5.9): ES10c.GetEID, ES10b.GetEUICCInfo2,
ES10c.GetProfilesInfo, ES10b.GetEimConfigurationData, ES10a.GetEuiccConfiguredAddresses.  A function
the eUICC does not have (an SGP.22 consumer eUICC answering BF55 with 6A88 or an error) is reported
under ``not_supported`` instead of failing, so the command works unchanged on real cards.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ...harness.pki import eid_is_valid
from ..apdu.base import ApduError
from .client import Es10Client, Es10Error


def _euicc_info2_summary(info) -> dict:
    iot = info.iot_specific_info
    return {
        "svn": info.svn,
        "profile_version": info.profile_version,
        "firmware_version": info.firmware_version,
        "free_nvm": info.ext_card_resource.free_nvm,
        "free_volatile": info.ext_card_resource.free_volatile,
        "installed_applications": info.ext_card_resource.installed_applications,
        "ci_pkids_verification": list(info.ci_pkids_verification),
        "ci_pkids_signing": list(info.ci_pkids_signing),
        "euicc_category": info.euicc_category,
        "pp_version": info.pp_version,
        "sas_accreditation_number": info.sas_accreditation_number,
        "globalplatform_version": info.globalplatform_version,
        "ts102241_version": info.ts102241_version,
        "rsp_capability": list(info.rsp_capability),
        "ipa_mode": info.ipa_mode,
        "iot_specific_info": iot.to_dict() if iot is not None else None,
        "fallback_supported": iot.fallback_supported if iot is not None else False,
    }


def _profile_summary(p) -> dict:
    return {
        "iccid": p.iccid,
        "state": p.state,
        "class": p.profile_class,
        "name": p.profile_name,
        "service_provider": p.service_provider_name,
        "nickname": p.nickname,
        "isdp_aid": p.isdp_aid,
        "fallback_attribute": p.fallback_attribute,
    }


def _eim_summary(e) -> dict:
    return {
        "eim_id": e.eim_id,
        "eim_fqdn": e.eim_fqdn,
        "eim_id_type": e.eim_id_type,
        "counter_value": e.counter_value,
        "association_token": e.association_token,
        "supported_protocols": list(e.supported_protocols),
        "euicc_ci_pkid": e.euicc_ci_pkid,
        "eim_public_key": e.eim_public_key_kind,
        "trusted_tls": e.trusted_tls_kind,
        "indirect_profile_download": e.indirect_profile_download,
    }


def _optional(info: dict, key: str, fetch: Callable[[], Any]) -> None:
    try:
        info[key] = fetch()
    except ApduError as exc:
        info[key] = None
        info["not_supported"][key] = f"SW {exc.sw:04X} ({exc})"
    except Es10Error as exc:
        info[key] = None
        info["not_supported"][key] = str(exc)


def collect_info(client: Es10Client) -> dict:
    """Read EID, EUICCInfo2, profiles, eIM configuration and configured addresses (JSON-able dict).

    ``eid`` is required (every eUICC has GetEID); each other section is None with the reason under
    ``not_supported`` when the eUICC refuses or lacks the function.
    """
    eid = client.get_eid()
    info: dict[str, Any] = {
        "transport": client.transport.name,
        "eid": eid,
        "eid_valid": eid_is_valid(eid),
        "not_supported": {},
    }
    _optional(info, "euicc_info2", lambda: _euicc_info2_summary(client.get_euicc_info2()))
    _optional(info, "profiles", lambda: [_profile_summary(p) for p in client.get_profiles_info()])
    _optional(info, "eim_configuration", lambda: [_eim_summary(e) for e in client.get_eim_configuration_data()])
    _optional(info, "configured_addresses", lambda: client.get_euicc_configured_addresses().to_dict())
    return info


def _rows(pairs: list[tuple[str, Any]], indent: str = "  ") -> list[str]:
    width = max((len(k) for k, _ in pairs), default=0)
    out = []
    for key, value in pairs:
        if value is None or value == "" or value == []:
            value = "-"
        elif isinstance(value, bool):
            value = "yes" if value else "no"
        elif isinstance(value, (list, tuple)):
            value = ", ".join(str(v) for v in value)
        out.append(f"{indent}{key.ljust(width)}  {value}")
    return out


def _table(headers: list[str], rows: list[list[str]], indent: str = "  ") -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def fmt(cells: list[str]) -> str:
        return indent + "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    return [fmt(headers), fmt(["-" * w for w in widths]), *(fmt(r) for r in rows)]


def format_info(info: dict) -> str:
    """Text rendering of :func:`collect_info` for a lab engineer: aligned sections, one fact per line."""
    lines = ["eUICC"]
    lines += _rows([("EID", f"{info['eid']}  ({'check digits ok' if info['eid_valid'] else 'INVALID check digits'})"),
                    ("transport", info.get("transport"))])
    unsupported = info.get("not_supported", {})

    e2 = info.get("euicc_info2")
    lines.append("")
    lines.append("EUICCInfo2")
    if e2 is None:
        lines.append(f"  not supported: {unsupported.get('euicc_info2', '')}")
    else:
        iot = e2.get("iot_specific_info")
        free = e2.get("free_nvm")
        lines += _rows([
            ("SVN (SGP.22)", e2["svn"]),
            ("SGP.32 versions", iot["iot_versions"] if iot else "none (not an IoT eUICC)"),
            ("profile version", e2["profile_version"]),
            ("firmware", e2["firmware_version"]),
            ("free NVM", f"{free} bytes" if free is not None else None),
            ("category", e2.get("euicc_category")),
            ("IPA mode", e2.get("ipa_mode")),
            ("fallback supported", e2.get("fallback_supported")),
            ("eCall supported", iot["ecall_supported"] if iot else None),
            ("CI PKIds (verify)", e2["ci_pkids_verification"]),
            ("CI PKIds (sign)", e2["ci_pkids_signing"]),
            ("PP version", e2.get("pp_version")),
            ("SAS accreditation", e2.get("sas_accreditation_number")),
            ("RSP capability", e2.get("rsp_capability")),
        ])

    profiles = info.get("profiles")
    lines.append("")
    lines.append("Profiles")
    if profiles is None:
        lines.append(f"  not supported: {unsupported.get('profiles', '')}")
    elif not profiles:
        lines.append("  (none)")
    else:
        rows = [[p["iccid"] or "-", p["state"] or "-", p["class"] or "-", "yes" if p["fallback_attribute"] else "",
                 p["name"] or "-", p["service_provider"] or "-", p["nickname"] or ""] for p in profiles]
        lines += _table(["ICCID", "state", "class", "fallback", "name", "provider", "nickname"], rows)

    eims = info.get("eim_configuration")
    lines.append("")
    lines.append("eIM configuration")
    if eims is None:
        lines.append(f"  not supported: {unsupported.get('eim_configuration', '')}")
    elif not eims:
        lines.append("  (no eIM associated)")
    else:
        for i, e in enumerate(eims):
            if i:
                lines.append("")
            lines += _rows([
                ("eIM ID", e["eim_id"]),
                ("FQDN", e["eim_fqdn"]),
                ("ID type", e["eim_id_type"]),
                ("counter value", e["counter_value"]),
                ("association token", e["association_token"]),
                ("protocols", e["supported_protocols"]),
                ("eUICC CI PKId", e["euicc_ci_pkid"]),
                ("eIM public key", e["eim_public_key"]),
                ("indirect download", e["indirect_profile_download"]),
            ])

    addresses = info.get("configured_addresses")
    lines.append("")
    lines.append("Configured addresses")
    if addresses is None:
        lines.append(f"  not supported: {unsupported.get('configured_addresses', '')}")
    else:
        lines += _rows([("default SM-DP+", addresses.get("default_dp_address")),
                        ("root SM-DS", addresses.get("root_ds_address"))])
    return "\n".join(lines) + "\n"
