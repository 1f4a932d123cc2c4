"""Pre-provisioning of extra profiles into a new software eUICC state from a YAML file.

The file is a list of profiles, or a mapping with a ``profiles`` list. Each entry::

    - iccid: "8900101000000000027"   # 18..20 digits, Luhn check digit last
      imsi: "001010000000002"
      apn: internet                   # optional
      name: Test operational          # profileName (SGP.22 ProfileInfo tag 92)
      spn: ACME                       # serviceProviderName (tag 91)
      class: operational              # test | provisioning | operational (default operational)
      state: disabled                 # enabled | disabled (default disabled)
      fallback: false                 # SGP.32 Fallback Attribute (at most one profile)
      notification_address: smdp.example.com   # optional, default: the SM-DP+ of the PKI
      policy_rules: [ppr2]            # optional: pprUpdateControl, ppr1, ppr2

Errors name the file and the key (``profiles.yaml: profiles[1].iccid: ...``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from .factory import encode_iccid, luhn_valid, plmn_bytes
from .state import EuiccState, NotificationConfig, Profile

CLASSES = ("test", "provisioning", "operational")
STATES = ("enabled", "disabled")
PPRS = ("pprUpdateControl", "ppr1", "ppr2")
KEYS = {"iccid", "imsi", "apn", "name", "spn", "class", "state", "fallback", "notification_address", "policy_rules",
        "nickname"}


class ProvisioningError(ValueError):
    """The provisioning file is unreadable or one of its entries is invalid."""


def _str(entry: dict, key: str, where: str, *, required: bool = False, default: str = "") -> str:
    if key not in entry or entry[key] is None:
        if required:
            raise ProvisioningError(f"{where}.{key}: missing")
        return default
    value = entry[key]
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ProvisioningError(f"{where}.{key}: expected a string, got {type(value).__name__}")
    return str(value)


def parse_entries(data: Any, source: str) -> list[dict]:
    if isinstance(data, dict):
        if set(data) - {"profiles"}:
            raise ProvisioningError(f"{source}: unknown top-level keys {sorted(set(data) - {'profiles'})}")
        data = data.get("profiles")
    if not isinstance(data, list):
        raise ProvisioningError(f"{source}: expected a list of profiles (or a mapping with 'profiles')")
    return data


def load_profiles(path: str | os.PathLike, *, notification_address: str = "localhost") -> list[Profile]:
    """Profiles described by a YAML file, validated; ISD-P AIDs are assigned by :func:`apply`."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ProvisioningError(f"{path}: cannot read ({exc.strerror})") from exc
    except yaml.YAMLError as exc:
        raise ProvisioningError(f"{path}: not valid YAML ({exc})") from exc
    return profiles_from(data, str(path.name), notification_address=notification_address)


def profiles_from(data: Any, source: str, *, notification_address: str = "localhost") -> list[Profile]:
    out: list[Profile] = []
    for i, entry in enumerate(parse_entries(data, source)):
        where = f"{source}: profiles[{i}]"
        if not isinstance(entry, dict):
            raise ProvisioningError(f"{where}: expected a mapping")
        unknown = set(entry) - KEYS
        if unknown:
            raise ProvisioningError(f"{where}: unknown keys {sorted(unknown)} (allowed: {sorted(KEYS)})")
        iccid = _str(entry, "iccid", where, required=True)
        if not iccid.isdigit() or not 18 <= len(iccid) <= 20:
            raise ProvisioningError(f"{where}.iccid: {iccid!r} is not 18..20 digits")
        if not luhn_valid(iccid):
            raise ProvisioningError(f"{where}.iccid: {iccid} has a wrong Luhn check digit")
        imsi = _str(entry, "imsi", where, required=True)
        if not imsi.isdigit() or not 6 <= len(imsi) <= 15:
            raise ProvisioningError(f"{where}.imsi: {imsi!r} is not 6..15 digits")
        pclass = _str(entry, "class", where, default="operational")
        if pclass not in CLASSES:
            raise ProvisioningError(f"{where}.class: {pclass!r} is not one of {list(CLASSES)}")
        pstate = _str(entry, "state", where, default="disabled")
        if pstate not in STATES:
            raise ProvisioningError(f"{where}.state: {pstate!r} is not one of {list(STATES)}")
        fallback = entry.get("fallback", False)
        if not isinstance(fallback, bool):
            raise ProvisioningError(f"{where}.fallback: expected true or false")
        rules = entry.get("policy_rules") or []
        if not isinstance(rules, list) or any(r not in PPRS for r in rules):
            raise ProvisioningError(f"{where}.policy_rules: expected a list of {list(PPRS)}")
        spn = _str(entry, "spn", where)
        name = _str(entry, "name", where)
        if len(spn.encode()) > 32 or len(name.encode()) > 64:
            raise ProvisioningError(f"{where}: spn is limited to 32 bytes and name to 64 (SGP.22 ProfileInfo)")
        address = _str(entry, "notification_address", where, default=notification_address)
        out.append(Profile(
            iccid=iccid,
            isdp_aid=b"",
            state=pstate,
            nickname=_str(entry, "nickname", where),
            service_provider_name=spn,
            profile_name=name,
            profile_class=pclass,
            owner_mcc_mnc=plmn_bytes(imsi),
            policy_rules=list(rules),
            notification_config=[NotificationConfig(events=["enable", "disable", "delete"], address=address)],
            fallback_attribute=fallback,
            imsi=imsi,
            apn=_str(entry, "apn", where),
            preloaded=True,
        ))
    return out


def apply(state: EuiccState, profiles: list[Profile], source: str = "provisioning") -> None:
    """Install pre-provisioned profiles into a (factory) state: unique ICCIDs, one enabled profile, one
    fallback profile (a profile from the file takes these over from the bootstrap profile)."""
    seen = {p.iccid for p in state.profiles}
    enabled = [p for p in profiles if p.state == "enabled"]
    fallback = [p for p in profiles if p.fallback_attribute]
    if len(enabled) > 1:
        raise ProvisioningError(f"{source}: {len(enabled)} profiles with state enabled, at most one allowed")
    if len(fallback) > 1:
        raise ProvisioningError(f"{source}: {len(fallback)} profiles with fallback true, at most one allowed")
    for p in profiles:
        if p.iccid in seen:
            raise ProvisioningError(f"{source}: ICCID {p.iccid} appears twice")
        seen.add(p.iccid)
        encode_iccid(p.iccid)
    if enabled:
        for p in state.profiles:
            p.state = "disabled"
    if fallback:
        for p in state.profiles:
            p.fallback_attribute = False
    for p in profiles:
        p.isdp_aid = state.allocate_isdp_aid()
        state.profiles.append(p)
