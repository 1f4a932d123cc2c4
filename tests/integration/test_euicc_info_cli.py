"""``sgp32-hil euicc info`` end to end: the CLI as a subprocess reading the software eUICC, itself a separate
``sgp32-hil virtual euicc`` process in vpcd reader 1 (pyscard -> pcscd -> vpcd -> software eUICC)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sgp32hil.harness import pki
from sgp32hil.harness.services import SoftEuiccProcess

pytestmark = [pytest.mark.pcsc, pytest.mark.slow]

PORT = 35964
READER = "Virtual PCD 00 01"
EIM_FQDN = "eim.sgp32hil.test:8444"


def _cli() -> list[str]:
    script = Path(sys.executable).with_name("sgp32-hil")
    return [str(script)] if script.exists() else [sys.executable, "-m", "sgp32hil.harness.cli"]


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*_cli(), *args], capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def soft_euicc(tmp_path_factory, pcscd):
    base = tmp_path_factory.mktemp("euicc-info")
    pki.generate(base / "pki")
    svc = SoftEuiccProcess.start(base / "state", port=PORT, pki_dir=base / "pki", eim_fqdn=EIM_FQDN)
    try:
        yield svc
    finally:
        svc.stop()


@pytest.fixture(scope="module")
def info_json(soft_euicc) -> dict:
    result = _run("euicc", "info", "--reader", READER, "--json")
    assert result.returncode == 0, f"stderr: {result.stderr}\nsoft eUICC log:\n{soft_euicc.log_tail()}"
    return json.loads(result.stdout)


def test_eid_is_32_digits_with_valid_check_digits(info_json):
    eid = info_json["eid"]
    assert len(eid) == 32 and eid.isdigit()
    assert int(eid) % 97 == 1
    assert info_json["eid_valid"] is True


def test_euicc_info2_carries_the_sgp32_fields(info_json):
    e2 = info_json["euicc_info2"]
    assert e2["svn"].startswith("2.")
    assert e2["ipa_mode"] in ("ipad", "ipae")
    assert e2["iot_specific_info"] is not None
    assert any(v.startswith("1.2") for v in e2["iot_specific_info"]["iot_versions"])
    assert e2["fallback_supported"] is True
    assert e2["free_nvm"] and e2["free_nvm"] > 0
    assert e2["ci_pkids_verification"] and e2["ci_pkids_signing"]
    assert info_json["not_supported"] == {}


def test_bootstrap_profile_is_enabled(info_json):
    enabled = [p for p in info_json["profiles"] if p["state"] == "enabled"]
    assert len(enabled) == 1
    (boot,) = enabled
    assert boot["iccid"].isdigit() and 18 <= len(boot["iccid"]) <= 20
    assert boot["fallback_attribute"] is True


def test_eim_configuration_points_at_the_configured_eim(info_json):
    eims = info_json["eim_configuration"]
    assert len(eims) == 1
    assert eims[0]["eim_fqdn"] == EIM_FQDN
    assert eims[0]["eim_id"]
    assert "eimRetrieveHttps" in eims[0]["supported_protocols"]
    assert info_json["configured_addresses"]["root_ds_address"]


def test_text_output_is_readable(soft_euicc, info_json):
    result = _run("euicc", "info", "--reader", READER)
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert f"EID        {info_json['eid']}  (check digits ok)" in text
    for heading in ("EUICCInfo2", "Profiles", "eIM configuration", "Configured addresses"):
        assert f"\n{heading}\n" in text
    assert EIM_FQDN in text
    assert "fallback supported  yes" in text
    boot = next(p for p in info_json["profiles"] if p["state"] == "enabled")
    assert any(line.split()[:2] == [boot["iccid"], "enabled"] for line in text.splitlines())


def test_unknown_reader_is_a_one_line_error(pcscd):
    result = _run("euicc", "info", "--reader", "no such reader 42")
    assert result.returncode != 0
    assert result.stderr.startswith("sgp32-hil: ") and len(result.stderr.strip().splitlines()) == 1
