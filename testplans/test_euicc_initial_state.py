"""eUICC initial state: what a lab checks before any remote operation (SGP.32 v1.2 §2.4, §5.9; SGP.22 §4.5).

Every check reads the card through the bench's eUICC path exactly as an IPAd does, and verifies the
answers with the bench's PKI: nothing here trusts the software eUICC's own word.
"""

from __future__ import annotations

import pytest

from sgp32hil.drivers.es10.client import Es10Error
from sgp32hil.harness import flows
from sgp32hil.harness import pki as pkimod


@pytest.mark.testcase("HIL-EUICC-001", "EID is valid and matches the eUICC certificate",
                      family="SGP.33 eUICC initial state", story="EID")
def test_eid_matches_certificate(euicc):
    eid = euicc.get_eid()
    assert len(eid) == 32 and eid.isdigit(), f"GetEID returned {eid!r}"
    assert pkimod.eid_is_valid(eid), f"EID {eid} fails the ISO 7064 mod 97-10 check"
    certs = euicc.get_certs()
    cert = pkimod.x509.load_der_x509_certificate(certs.euicc_certificate)
    assert pkimod.eid_of(cert) == eid, "CERT.EUICC subject serialNumber differs from GetEID"


@pytest.mark.testcase("HIL-EUICC-002", "eUICC certificate chains to a trusted CI within the EUM's EIN range",
                      family="SGP.33 eUICC initial state", story="Certificates")
def test_certificate_chain(euicc, bench_pki):
    certs = euicc.get_certs()
    chain = pkimod.verify_chain(
        certs.euicc_certificate, [certs.eum_certificate], bench_pki.trusted_cis(),
        role=pkimod.Role.EUICC, eid=euicc.get_eid(),
    )
    info2 = euicc.get_euicc_info2()
    assert chain.ci_pkid.hex().upper() in info2.ci_pkids_verification


@pytest.mark.testcase("HIL-EUICC-003", "EUICCInfo2 declares an SGP.32 IoT eUICC (ipaMode, iotSpecificInfo)",
                      family="SGP.33 eUICC initial state", story="EUICCInfo2")
def test_euicc_info2_is_sgp32(euicc, bench):
    info2 = euicc.get_euicc_info2()
    assert info2.is_sgp32, "EUICCInfo2 carries neither ipaMode nor iotSpecificInfo"
    assert info2.ipa_mode in ("ipad", "ipae")
    assert info2.ci_pkids_signing, "empty euiccCiPKIdListForSigning: no SM-DP+ can authenticate this eUICC"
    if bench.has("fallback"):
        assert info2.iot_specific_info and info2.iot_specific_info.fallback_supported


@pytest.mark.testcase("HIL-EUICC-004", "The bootstrap profile is the one enabled profile and is the fallback profile",
                      family="SGP.33 bootstrap / first attach", story="Bootstrap profile")
def test_bootstrap_profile_enabled(request, open_es10, bench):
    if bench.eim and bench.eim.bundled and bench.ipa.mode == "host":
        # another test may have left the operational profile enabled: return to bootstrap through the eIM first
        # (a switch resets the card, so the ES10 session below is opened afterwards)
        request.getfixturevalue("bootstrapped")
    profiles = flows.es10_read(open_es10, lambda c: c.get_profiles_info(), "GetProfilesInfo")
    enabled = [p for p in profiles if p.state == "enabled"]
    assert len(enabled) == 1, f"{len(enabled)} enabled profiles: {[p.iccid for p in enabled]}"
    expected = bench.bootstrap_iccid
    if expected:
        assert enabled[0].iccid == expected, f"enabled ICCID {enabled[0].iccid}, bench expects {expected}"
    if bench.has("fallback"):
        assert enabled[0].fallback_attribute, "the bootstrap profile does not carry the fallback attribute"


@pytest.mark.testcase("HIL-EUICC-005", "eIM configuration points at the bench's eIM",
                      family="SGP.33 eIM configuration", story="GetEimConfigurationData")
def test_eim_configuration(euicc, bench_services):
    configs = euicc.get_eim_configuration_data()
    assert configs, "no eIM configured: the device cannot be managed remotely"
    address = bench_services.eim_address
    if address:
        fqdns = [c.eim_fqdn for c in configs]
        assert address in fqdns, f"eIM addresses on the card {fqdns}, bench eIM {address}"
    for c in configs:
        assert c.counter_value is None or c.counter_value >= 0


@pytest.mark.testcase("HIL-EUICC-006", "AddInitialEim is refused once an eIM is associated",
                      family="SGP.33 eIM configuration", story="AddInitialEim (negative)")
def test_add_initial_eim_refused_when_associated(euicc, bench_pki):
    existing = euicc.get_eim_configuration_data()
    assert existing, "precondition: an eIM is associated"
    cfg = {"eimId": "sgp32hil-second-eim", "eimFqdn": "127.0.0.1:9444", "counterValue": 1}
    try:
        results = euicc.add_initial_eim([cfg])
    except Es10Error as exc:
        assert exc.code != 0, str(exc)
    else:
        assert all(not r.ok for r in results), f"AddInitialEim accepted a second initial eIM: {results}"
    assert [c.eim_id for c in euicc.get_eim_configuration_data()] == [c.eim_id for c in existing]
