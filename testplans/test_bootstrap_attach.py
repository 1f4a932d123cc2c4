"""Bootstrap attach (SGP.33 "first attach" family; SGP.32 v1.2 §3.1 eIM package retrieval, §5.9.18
GetEimConfigurationData; 3GPP TS 27.007 CFUN/CPIN/CEREG/CGACT): power on, register on the network the
bootstrap profile's IMSI belongs to, bring up the PDN, reach the eIM, check the eIM configuration."""

from __future__ import annotations

import pytest

from sgp32hil.harness import flows


@pytest.mark.requires("modem")
@pytest.mark.testcase("HIL-BOOT-001", "Power-on: bootstrap registration, PDP up, first eIM contact, eIM configuration",
                      family="SGP.33 bootstrap / first attach", story="Bootstrap attach")
def test_bootstrap_attach(bench, bench_services, bootstrapped, modem, ipa, eim, open_es10, eid, kpis):
    res = flows.bootstrap_attach(bench, modem, ipa, eim, open_es10, eid=eid, eim_id=eim.service.eim_id,
                                 eim_address=bench_services.eim_address, kpis=kpis)
    assert res.iccid == bootstrapped.iccid
    assert res.address, "no PDP address"
    for name in ("time_to_register_s", "time_to_pdp_s", "time_to_first_eim_contact_s"):
        assert name in res.kpis


@pytest.mark.testcase("HIL-BOOT-002", "The IPA's poll is recorded at the eIM (contact, poll count)",
                      family="SGP.33 bootstrap / first attach", story="eIM contact")
def test_eim_records_polls(bench, bootstrapped, ipa, eim, eid):
    before = eim.service.euicc(eid)
    polls_before = before.polls if before else 0
    poll = ipa.poll()
    assert not poll.error, poll.error
    after = eim.service.euicc(eid)
    assert after is not None and after.last_contact is not None, "the eIM recorded no contact"
    assert after.polls > polls_before, f"poll count {after.polls}, was {polls_before}"
    assert poll.eid == eid
