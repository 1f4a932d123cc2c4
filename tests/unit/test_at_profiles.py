"""Vendor profiles: all packaged files load and validate; detection table; reply shapes; validation errors."""

from __future__ import annotations

import pytest
import yaml

from sgp32hil.drivers.at import parsers as P
from sgp32hil.drivers.at.profiles import (
    ProfileError,
    all_profiles,
    detect,
    load_profile,
    profile_from_mapping,
    profile_names,
)

EXPECTED = {
    "nordic-nrf91", "quectel-bg95", "quectel-eg25", "ublox-sara-r5", "simcom-sim7080",
    "simcom-a76xx", "telit-me910", "sierra-hl78xx", "strict-27007",
}


def test_all_profiles_load():
    assert set(profile_names()) == EXPECTED
    for profile in all_profiles():
        assert profile.name in EXPECTED
        assert profile.iccid.command.upper().startswith("AT")


@pytest.mark.parametrize(
    "cgmi, cgmm, expected",
    [
        ("Nordic Semiconductor ASA", "nRF9160-SICA", "nordic-nrf91"),
        ("Nordic Semiconductor ASA", "nRF9151-LACA", "nordic-nrf91"),
        ("Quectel", "BG96", "quectel-bg95"),
        ("Quectel", "BG95-M3", "quectel-bg95"),
        ("Quectel", "BG77", "quectel-bg95"),
        ("Quectel", "EG25", "quectel-eg25"),
        ("u-blox", "SARA-R510M8S", "ublox-sara-r5"),
        ("SIMCOM_Ltd", "SIMCOM_SIM7080G", "simcom-sim7080"),
        ("SIMCOM INCORPORATED", "A7670E-LASE", "simcom-a76xx"),
        ("SIMCOM INCORPORATED", "SIMCOM_SIM7600G-H", "simcom-a76xx"),
        ("Telit", "ME910C1-WW", "telit-me910"),
        ("Telit", "ME310G1-W1", "telit-me910"),
        ("Sierra Wireless", "HL7800", "sierra-hl78xx"),
        ("Quectel", "RM520N-GL", "strict-27007"),
        ("Acme", "X1", "strict-27007"),
    ],
)
def test_detect(cgmi, cgmm, expected):
    assert detect(cgmi, cgmm).name == expected


@pytest.mark.parametrize("profile", sorted(EXPECTED))
def test_own_identity_detects_itself(profile):
    p = load_profile(profile)
    assert detect(p.identity.cgmi, p.identity.cgmm).name == profile


@pytest.mark.parametrize("profile", sorted(EXPECTED))
def test_reply_shapes_round_trip_through_parsers(profile):
    """Whatever the simulator emits from a profile, the parsers read back."""
    p = load_profile(profile)
    assert P.ICCID_PARSERS[p.iccid.parser]([p.format_iccid("8901234567012345678")]) == "8901234567012345678"
    assert P.ICCID_PARSERS[p.iccid.parser]([p.format_iccid("89014103211118510720")]) == "89014103211118510720"
    kind = "int" if p.apdu.session_id == "bare" else p.apdu.session_id
    sid = P.parse_ccho([p.format_ccho(3)], kind)
    assert sid.value == 3 and sid.raw == p.session_token(3)
    rapdu = bytes.fromhex("BF3E035A01019000")
    assert P.parse_cgla(p.format_cgla(rapdu)) == rapdu
    assert P.parse_csim(p.format_csim(bytes.fromhex("6115"))) == bytes.fromhex("6115")
    assert P.parse_cpin(p.format_cpin("SIM PIN")).code == "SIM PIN"


def test_vendor_specific_shapes():
    assert load_profile("simcom-sim7080").format_cgla(bytes.fromhex("611A")) == '+CGLA:4,"611A"'
    assert load_profile("nordic-nrf91").format_iccid("8901234567012345678") == "%XICCID: 8901234567012345678F"
    assert load_profile("nordic-nrf91").format_cpin("SIM PIN") == '+CPIN: "SIM PIN"'
    assert load_profile("simcom-sim7080").format_iccid("89860318760228617503") == "89860318760228617503"
    assert load_profile("quectel-eg25").sim_ready.refresh_reenumerates
    assert not load_profile("quectel-bg95").sim_ready.refresh_reenumerates
    assert load_profile("nordic-nrf91").cfun_boot_level == 0


def _path(name):
    from importlib import resources

    return resources.files("sgp32hil.drivers.at").joinpath("profiles", f"{name}.yaml")


@pytest.mark.parametrize(
    "mutate, key, expected",
    [
        (lambda d: d["apdu"].update(session_id="octal"), "apdu.session_id", "one of int, hex, bare"),
        (lambda d: d["apdu"].update(cla_policy="magic"), "apdu.cla_policy", "passthrough"),
        (lambda d: d["iccid"].update(parser="nope"), "iccid.parser", "generic"),
        (lambda d: d["iccid"].update(reply="{digits}"), "iccid.reply", "placeholders"),
        (lambda d: d["reset"].update(boot_urcs=["("]), "reset.boot_urcs[0]", "regular expression"),
        (lambda d: d["apdu"].pop("cgla"), "apdu.cgla", "required"),
        (lambda d: d.update(colour="blue"), "colour", "known key"),
        (lambda d: d["timeouts"].update({"+CFUN=": -1}), "timeouts.+CFUN=", "positive"),
        (lambda d: d["registration"].update(domains=["+CXREG"]), "registration.domains", "+CEREG"),
        (lambda d: d["apdu"].update(csim=False, preferred="csim"), "apdu.preferred", "cgla"),
    ],
)
def test_validation_errors_name_key(mutate, key, expected):
    data = yaml.safe_load(_path("strict-27007").read_text())
    mutate(data)
    with pytest.raises(ProfileError) as info:
        profile_from_mapping(data, "test.yaml")
    assert info.value.key == key and expected in str(info.value) and "test.yaml" in str(info.value)


def test_unknown_profile_lists_known():
    with pytest.raises(ProfileError, match="quectel-bg95"):
        load_profile("nokia-3310")


def test_profile_is_frozen():
    p = load_profile("quectel-bg95")
    with pytest.raises(AttributeError):
        p.name = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        p.timeouts["+CFUN="] = 1  # type: ignore[index]
